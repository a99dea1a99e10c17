"""Loading CSV and Parquet data, local or on S3, or a SQL table or query, with a fingerprint of exactly what was read."""

from __future__ import annotations

import csv
import hashlib
import io
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mlops_airflow import settings
from mlops_airflow.exceptions import ArtifactNotFound, DataError
from mlops_airflow.storage import open_store, split_uri

if TYPE_CHECKING:
    import pandas as pd

_FORMATS = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}
#: URI schemes read through SQLAlchemy (``postgresql+psycopg://`` and the like included).
_SQL_SCHEMES = ("postgresql",)
_MAX_SHOWN_QUERY = 200


@dataclass
class Dataset:
    """A loaded frame and where it came from."""

    frame: pd.DataFrame
    uri: str
    files: list[str]
    format: str
    #: ``sha256:<hex>`` over the names and bytes of every file read.
    fingerprint: str
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def rows(self) -> int:
        return len(self.frame)


def _format_of(name: str) -> str:
    for suffix, fmt in _FORMATS.items():
        if name.lower().endswith(suffix):
            return fmt
    raise DataError(f"cannot tell the format of {name!r}: use a .csv or .parquet file")


#: Leading bytes of files that are often misnamed ``.csv``, and what they are.
_SIGNATURES = (
    (b"\x1f\x8b", "gzip-compressed: decompress it first"),
    (b"PK\x03\x04", "a ZIP archive (an Excel .xlsx workbook?): export it as CSV"),
    (b"PAR1", "a Parquet file: name it .parquet"),
    (b"\xff\xfe", "UTF-16 text: save it as UTF-8"),
    (b"\xfe\xff", "UTF-16 text: save it as UTF-8"),
)
#: A header line longer than this is not a CSV header (a file with no line breaks, say).
_MAX_HEADER_BYTES = 1 << 20
_OTHER_DELIMITERS = (";", "\t", "|")


def _parse(name: str, data: bytes, fmt: str, columns: list[str] | None) -> pd.DataFrame:
    import pandas as pd

    if not data.strip():
        raise DataError(f"data file {name} is empty")
    if fmt == "csv":
        _check_csv_bytes(name, data)
        try:
            # A callable keeps only the wanted columns that exist: a missing one is the validation's to report.
            wanted = None if columns is None else set(columns).__contains__
            frame = pd.read_csv(io.BytesIO(data), usecols=wanted, low_memory=False)
        except UnicodeDecodeError as exc:
            raise DataError(_not_utf8(name, data, exc)) from exc
        except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError) as exc:
            raise DataError(f"{name} is not a readable CSV file: {str(exc).strip()}") from exc
        header = next(csv.reader([data[:65536].decode("utf-8", "replace").splitlines()[0]]))
        duplicated = sorted({column for column in header if header.count(column) > 1})
        if duplicated:
            raise DataError(f"{name} has duplicate column names: {', '.join(duplicated)}")
        _check_csv_shape(name, data, header, frame)
    else:
        try:
            if columns is not None:
                import pyarrow.parquet as pq

                present = set(pq.read_schema(io.BytesIO(data)).names)
                columns = [c for c in columns if c in present]
            frame = pd.read_parquet(io.BytesIO(data), columns=columns)
        except Exception as exc:  # pyarrow raises several types for a damaged file
            raise DataError(f"{name} is not a readable Parquet file: {exc}") from exc
    if frame.empty:
        raise DataError(f"data file {name} has no rows")
    return frame


def _check_csv_bytes(name: str, data: bytes) -> None:
    """Refuse, with what they are, files that are not CSV text at all (before pandas guesses)."""
    for signature, what in _SIGNATURES:
        # Parquet also ends with its magic: a CSV whose first header happens to start with PAR1 is not one.
        if data.startswith(signature) and (signature != b"PAR1" or data.endswith(signature)):
            raise DataError(f"{name} is not a CSV text file: it is {what}")
    nul = data.find(b"\0", 0, 65536)
    if nul >= 0:
        raise DataError(f"{name} is not a CSV text file: it holds binary data (a NUL byte at offset {nul})")
    first_break = data.find(b"\n", 0, _MAX_HEADER_BYTES + 1)
    if first_break < 0 and len(data) > _MAX_HEADER_BYTES:
        raise DataError(
            f"{name} has no line break in its first {_MAX_HEADER_BYTES // (1 << 20)} MB: "
            "not a CSV file with one record per line"
        )


def _not_utf8(name: str, data: bytes, exc: UnicodeDecodeError) -> str:
    # pandas decodes in chunks, so its exception's offset is within a chunk: find the real one.
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as whole:
        exc = whole
    line = data.count(b"\n", 0, exc.start) + 1
    bad = data[exc.start : exc.start + 1].hex()
    return (
        f"{name} is not valid UTF-8 text: byte 0x{bad} at line {line} (offset {exc.start}): {exc.reason}; "
        "save it as UTF-8 (Latin-1 or Windows-1252 files are the usual cause)"
    )


def _check_csv_shape(name: str, data: bytes, header: list[str], frame: pd.DataFrame) -> None:
    """Refuse two shapes pandas reads without complaint: another delimiter, and a cut-off last row."""
    if len(header) == 1:
        for delimiter in _OTHER_DELIMITERS:
            if header[0].count(delimiter) >= 1:
                shown = repr(header[0][:80] + ("..." if len(header[0]) > 80 else ""))
                raise DataError(
                    f"{name} has a single column named {shown}: it looks {_delimiter_name(delimiter)}-separated;"
                    " CSV files must be comma-separated"
                )
    if not data.endswith((b"\n", b"\r")) and len(frame) and len(header) > 1:
        last_line = data[data.rfind(b"\n") + 1 :].decode("utf-8", "replace")
        try:
            fields = next(csv.reader([last_line]), [])
        except csv.Error:  # a field beyond the csv module's limit: count the commas instead
            fields = last_line.split(",")
        if len(fields) < len(header):
            line = data.count(b"\n") + 1
            raise DataError(
                f"{name} ends in an incomplete row: line {line} has {len(fields)} of {len(header)} fields"
                " and no line break (the file looks truncated)"
            )


def _delimiter_name(delimiter: str) -> str:
    return {";": "semicolon", "\t": "tab", "|": "pipe"}[delimiter]


def check_data_path(uri: str, *, param: str = "data_uri") -> None:
    """Refuse a local data path outside the ``data_roots`` setting, if one is set, judged by its real path.

    Whoever may trigger a DAG chooses ``data_uri``; a deployment that lists its data folders
    keeps that from reading the worker's other files (``..`` and symlinks resolved first).
    """
    import os
    from pathlib import Path

    roots = [Path(os.path.realpath(Path(root).expanduser())) for root in settings.data_roots()]
    if not roots or uri.startswith("s3://"):
        return
    real = Path(os.path.realpath(Path(uri.removeprefix("file://")).expanduser()))
    if not any(real == root or real.is_relative_to(root) for root in roots):
        raise DataError(f"{param}: {uri!r} is outside the folders data is read from ({', '.join(map(str, roots))}): "
                        "add its folder to the data_roots setting (MLOPS_AIRFLOW_DATA_ROOTS, or data_roots in the "
                        "[mlops_airflow] section of airflow.cfg; comma-separated)")


def _relative_hint(uri: str) -> str:
    """How a relative local path was read, for a not-found message (the worker's directory is not the user's)."""
    import os

    if uri.startswith(("s3://", "/", "file://", "~")):
        return ""
    return (f" (a relative path is read from the worker's working directory, {os.getcwd()}: "
            "give an absolute path or an s3:// URI)")


def resolve_files(uri: str, *, s3_client: Any | None = None, param: str = "data_uri") -> tuple[Any, list[str]]:
    """The store holding ``uri`` and the keys it names (a file, or a shell pattern of files)."""
    check_data_path(uri, param=param)
    root, key = split_uri(uri)
    store = open_store(root, s3_client=s3_client)
    if any(ch in key for ch in "*?["):
        keys = store.glob(key)
        if not keys:
            raise DataError(f"no data files match {uri}{_relative_hint(uri)}")
        for found in keys:  # a symlink matched by the pattern may lead out of the roots
            check_data_path(store.url(found), param=param)
        return store, keys
    return store, [key]


def load_dataset(uri: str, *, s3_client: Any | None = None, columns: list[str] | None = None) -> Dataset:
    """Read ``uri`` (a ``.csv``/``.parquet`` path or ``s3://`` URI; ``*`` matches several files).

    Several files are concatenated in name order and must share their columns. A
    ``postgresql://user@host:port/db?table=NAME`` (or ``?query=SELECT ...``, URL-encoded)
    URI reads a table or query through SQLAlchemy; see :func:`parse_sql_uri`. Raises
    :class:`DataError` naming the file, table or query and the problem for anything unreadable.
    """
    import pandas as pd

    if not isinstance(uri, str) or not uri.strip():
        raise DataError("data_uri is empty: give a path or s3:// URI of a CSV or Parquet file")
    if is_sql_uri(uri):
        return _load_sql(uri.strip(), columns)
    store, keys = resolve_files(uri.strip(), s3_client=s3_client)
    digests = []
    frames = []
    formats = set()
    for key in keys:
        name = store.url(key)
        fmt = _format_of(key)
        formats.add(fmt)
        try:
            data = store.read_bytes(key)
        except ArtifactNotFound as exc:
            raise DataError(f"data file not found: {name}{_relative_hint(uri.strip())}") from exc
        digests.append((key, hashlib.sha256(data).digest()))
        frames.append(_parse(name, data, fmt, columns))
    first = list(frames[0].columns)
    for key, frame in zip(keys[1:], frames[1:], strict=True):
        if list(frame.columns) != first:
            raise DataError(f"{store.url(key)} has columns {list(frame.columns)}, but {store.url(keys[0])} has {first}")
    frame = frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)
    return Dataset(
        frame=frame,
        uri=uri,
        files=[store.url(k) for k in keys],
        format=formats.pop() if len(formats) == 1 else "mixed",
        fingerprint=files_fingerprint(digests),
    )


def files_fingerprint(digests: list[tuple[str, bytes]]) -> str:
    """``sha256:<hex>`` over each file's name (not its folder) and the sha256 digest of its bytes, in order."""
    combined = hashlib.sha256()
    for key, digest in digests:
        combined.update(key.rsplit("/", 1)[-1].encode() + b"\0" + digest)
    return "sha256:" + combined.hexdigest()


# -- SQL ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SqlSource:
    """A table or query in a SQL database, parsed from a ``postgresql://...?table=`` URI."""

    #: The connection URL without ``table``/``query`` (it may hold a password: never log it).
    dsn: str
    table: str | None
    query: str | None

    @property
    def masked_dsn(self) -> str:
        return mask_dsn(self.dsn)

    @property
    def label(self) -> str:
        """``table 'trips'`` or ``query 'SELECT ...'``, for messages."""
        if self.table is not None:
            return f"table {self.table!r}"
        query = self.query or ""
        shown = query if len(query) <= _MAX_SHOWN_QUERY else query[:_MAX_SHOWN_QUERY] + "..."
        return f"query {shown!r}"

    def selectable(self) -> Any:
        """The table or the query as a SQLAlchemy FROM clause (``schema.table`` names a schema)."""
        import sqlalchemy as sa

        if self.table is not None:
            schema, _, name = self.table.rpartition(".")
            return sa.table(name, schema=schema or None)
        return sa.text(self.query or "").columns().subquery("source")


def is_sql_uri(uri: str) -> bool:
    """Whether ``uri`` names a SQL database rather than a file."""
    scheme = uri.strip().split(":", 1)[0].lower()
    return scheme.split("+", 1)[0] in _SQL_SCHEMES and "://" in uri


def mask_dsn(dsn: str) -> str:
    """``dsn`` with its password (if any) replaced by ``***``: safe to log and to store."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        url = make_url(dsn)
    except (ArgumentError, ValueError):
        return "<unparseable database URL>"
    secret_keys = {"password", "sslpassword", "passfile", "sslkey"}
    query = {key: ("***" if key.lower() in secret_keys else value) for key, value in url.query.items()}
    return url.set(query=query).render_as_string(hide_password=True)


def parse_sql_uri(uri: str, *, table: str | None = None, query: str | None = None) -> SqlSource:
    """Split ``postgresql://user@host:port/db?table=NAME`` (or ``?query=...``) into DSN and source.

    ``table``/``query`` given here take the place of the URI's. Exactly one of them must be
    set; other URL parameters (``sslmode=...``) stay in the DSN for the driver. Raises
    :class:`DataError` for a URL that is not one of a supported database.
    """
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        url = make_url(uri.strip())
    except (ArgumentError, ValueError) as exc:
        raise DataError(f"not a database URL: {mask_dsn(uri)} ({exc})") from exc
    if url.get_backend_name() not in _SQL_SCHEMES:
        raise DataError(f"unsupported database {url.get_backend_name()!r}: use a postgresql:// URL")
    params = dict(url.query)
    table = table if table is not None else _one(params.get("table"), "table")
    query = query if query is not None else _one(params.get("query"), "query")
    dsn = url.difference_update_query(["table", "query"]).render_as_string(hide_password=False)
    if (table is None) == (query is None):
        raise DataError(
            f"{mask_dsn(dsn)}: name exactly one of a table (?table=NAME) or a query (?query=SELECT...)"
        )
    if query is not None:
        query = query.strip().rstrip(";").strip()
        if not query:
            raise DataError(f"{mask_dsn(dsn)}: the query is empty")
    if table is not None and not table.strip():
        raise DataError(f"{mask_dsn(dsn)}: the table name is empty")
    return SqlSource(dsn=dsn, table=table, query=query)


def _one(value: str | tuple[str, ...] | None, name: str) -> str | None:
    if isinstance(value, tuple):
        raise DataError(f"the database URL names {name} more than once")
    return value


def _load_sql(uri: str, columns: list[str] | None) -> Dataset:
    """Read a whole table or query into memory (training needs the rows).

    The fingerprint is the sha256 of the rows sorted and written as CSV, so it does not
    depend on the order the database returns them in; it costs a sort and a serialisation
    of the data on top of the read.
    """
    import pandas as pd
    import sqlalchemy as sa
    from sqlalchemy.exc import SQLAlchemyError

    source = parse_sql_uri(uri)
    masked = source.masked_dsn + (
        f"?table={source.table}" if source.table is not None else f" ({source.label})"
    )
    selected: list[Any] = [sa.column(c) for c in columns] if columns else [sa.text("*")]
    statement = sa.select(*selected).select_from(source.selectable())
    engine = sa.create_engine(source.dsn, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as connection:
            frame = pd.read_sql(statement, connection)
    except (SQLAlchemyError, pd.errors.DatabaseError) as exc:
        cause = exc.__cause__ if isinstance(exc.__cause__, SQLAlchemyError) else exc  # pandas wraps it
        reason = (str(getattr(cause, "orig", None) or cause).strip().splitlines() or [type(exc).__name__])[0]
        raise DataError(f"cannot read {source.label} from {source.masked_dsn}: {reason}") from exc
    finally:
        engine.dispose()
    if frame.empty:
        raise DataError(f"{source.label} in {source.masked_dsn} has no rows")
    return Dataset(
        frame=frame,
        uri=masked,
        files=[masked],
        format="sql",
        fingerprint="sha256:" + rows_digest(frame),
    )


def rows_digest(frame: pd.DataFrame) -> str:
    """sha256 of the column names and types and of the rows, in a canonical (sorted) order."""
    names = list(frame.columns)
    try:
        ordered = frame.sort_values(names, kind="mergesort", na_position="last", ignore_index=True)
    except TypeError:  # values that do not compare (mixed types): order by their text
        ordered = frame.iloc[frame.astype(str).sort_values(names, kind="mergesort").index]
    digest = hashlib.sha256()
    digest.update("\0".join(f"{name}:{frame[name].dtype}" for name in names).encode() + b"\n")
    digest.update(ordered.to_csv(index=False, lineterminator="\n").encode())
    return digest.hexdigest()
