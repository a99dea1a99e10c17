"""Loading CSV and Parquet data, local or on S3, with a fingerprint of exactly what was read."""

from __future__ import annotations

import csv
import hashlib
import io
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mlops_airflow.exceptions import ArtifactNotFound, DataError
from mlops_airflow.storage import open_store, split_uri

if TYPE_CHECKING:
    import pandas as pd

_FORMATS = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}


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


def _parse(name: str, data: bytes, fmt: str, columns: list[str] | None) -> pd.DataFrame:
    import pandas as pd

    if not data.strip():
        raise DataError(f"data file {name} is empty")
    if fmt == "csv":
        try:
            frame = pd.read_csv(io.BytesIO(data), usecols=columns, low_memory=False)
        except UnicodeDecodeError as exc:
            raise DataError(f"{name} is not valid UTF-8 text (byte {exc.start}): {exc.reason}") from exc
        except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError) as exc:
            raise DataError(f"{name} is not a readable CSV file: {str(exc).strip()}") from exc
        header = next(csv.reader([data[:65536].decode("utf-8", "replace").splitlines()[0]]))
        duplicated = sorted({column for column in header if header.count(column) > 1})
        if duplicated:
            raise DataError(f"{name} has duplicate column names: {', '.join(duplicated)}")
    else:
        try:
            frame = pd.read_parquet(io.BytesIO(data), columns=columns)
        except Exception as exc:  # pyarrow raises several types for a damaged file
            raise DataError(f"{name} is not a readable Parquet file: {exc}") from exc
    if frame.empty:
        raise DataError(f"data file {name} has no rows")
    return frame


def resolve_files(uri: str, *, s3_client: Any | None = None) -> tuple[Any, list[str]]:
    """The store holding ``uri`` and the keys it names (a file, or a shell pattern of files)."""
    root, key = split_uri(uri)
    store = open_store(root, s3_client=s3_client)
    if any(ch in key for ch in "*?["):
        keys = store.glob(key)
        if not keys:
            raise DataError(f"no data files match {uri}")
        return store, keys
    return store, [key]


def load_dataset(uri: str, *, s3_client: Any | None = None, columns: list[str] | None = None) -> Dataset:
    """Read ``uri`` (a ``.csv``/``.parquet`` path or ``s3://`` URI; ``*`` matches several files).

    Several files are concatenated in name order and must share their columns. Raises
    :class:`DataError` naming the file and the problem for anything unreadable.
    """
    import pandas as pd

    if not isinstance(uri, str) or not uri.strip():
        raise DataError("data_uri is empty: give a path or s3:// URI of a CSV or Parquet file")
    store, keys = resolve_files(uri.strip(), s3_client=s3_client)
    digest = hashlib.sha256()
    frames = []
    formats = set()
    for key in keys:
        name = store.url(key)
        fmt = _format_of(key)
        formats.add(fmt)
        try:
            data = store.read_bytes(key)
        except ArtifactNotFound as exc:
            raise DataError(f"data file not found: {name}") from exc
        digest.update(key.rsplit("/", 1)[-1].encode() + b"\0" + hashlib.sha256(data).digest())
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
        fingerprint="sha256:" + digest.hexdigest(),
    )
