"""Reading large CSV and Parquet inputs in bounded-memory chunks, and splitting them into partitions.

Nothing here loads a whole file: CSV is streamed through pandas in ``chunk_rows`` pieces,
Parquet is read a record batch at a time from the row groups asked for, and S3 objects are
read through ranged GETs (see :meth:`~mlops_airflow.storage.ArtifactStore.open_read`).

A *partition* is a list of segments, each a whole file or a range of a Parquet file's row
groups; partitions are small JSON-able lists, so they can travel through XCom to mapped
tasks. CSV files are never split (finding record boundaries inside a CSV needs the quoting
state from the start of the file), so a single large CSV is one partition.
"""

from __future__ import annotations

import csv
import hashlib
import io
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from mlops_airflow.data.loading import (
    _check_csv_bytes,
    _check_csv_shape,
    _format_of,
    check_data_path,
    resolve_files,
)
from mlops_airflow.exceptions import ArtifactNotFound, DataError, MlopsError
from mlops_airflow.storage import ArtifactStore, open_store

if TYPE_CHECKING:
    import pandas as pd

_BLOCK = 8 << 20
_HEAD = (1 << 20) + 1


def input_files(uri: str, *, s3_client: Any | None = None) -> tuple[ArtifactStore, list[str]]:
    """The store holding ``uri`` and the data files it names: a file, a shell pattern, or a folder / prefix.

    A folder (a local directory, or a URI ending in ``/``) names every ``.csv`` and
    ``.parquet`` file directly in it. Raises :class:`DataError` when nothing matches.
    """
    uri = uri.strip()
    if not uri:
        raise DataError("input_uri is empty: give a path or s3:// URI of CSV or Parquet files")
    from pathlib import Path

    local_dir = not uri.startswith("s3://") and Path(uri.removeprefix("file://")).expanduser().is_dir()
    if uri.endswith("/") or local_dir:
        check_data_path(uri, param="input_uri")
        store = open_store(uri.rstrip("/") if local_dir else uri, s3_client=s3_client)
        keys = [key for key in store.list() if "/" not in key and key.lower().endswith((".csv", ".parquet", ".pq"))]
        if not keys:
            raise DataError(f"no .csv or .parquet files in {uri}")
        return store, keys
    store, keys = resolve_files(uri, s3_client=s3_client, param="input_uri")
    for key in keys:
        _format_of(key)
    return store, keys


def describe_file(store: ArtifactStore, key: str) -> dict[str, Any]:
    """Name, format, size, sha256 and (Parquet) rows per row group of one file, read as a stream.

    The whole file is read once to hash it; a CSV file is also checked for what pandas
    would read without complaint (binary data, another delimiter, duplicate columns, a
    cut-off last row). Raises :class:`DataError` naming the file and the problem.
    """
    name = store.url(key)
    fmt = _format_of(key)
    digest = hashlib.sha256()
    head = b""
    tail = b""
    lines = 0
    size = 0
    with _open(store, key) as fh:
        while block := fh.read(_BLOCK):
            digest.update(block)
            if len(head) < _HEAD:
                head += block[: _HEAD - len(head)]
            tail = (tail + block)[-65536:]
            lines += block.count(b"\n")
            size += len(block)
        if not size or not head.strip():
            raise DataError(f"data file {name} is empty")
        info: dict[str, Any] = {"uri": name, "key": key, "format": fmt, "size": size, "sha256": digest.hexdigest()}
        if fmt == "csv":
            _check_csv_text(name, head, tail, lines)
            info["row_groups"] = None
        else:
            info["row_groups"] = _row_groups(name, fh)
    return info


def _open(store: ArtifactStore, key: str) -> Any:
    try:
        return store.open_read(key)
    except ArtifactNotFound as exc:
        raise DataError(f"data file not found: {store.url(key)}") from exc


def _check_csv_text(name: str, head: bytes, tail: bytes, lines: int) -> None:
    import pandas as pd

    _check_csv_bytes(name, head)
    first = head.split(b"\n", 1)[0].decode("utf-8", "replace").rstrip("\r")
    header = next(csv.reader([first]), [])
    duplicated = sorted({column for column in header if header.count(column) > 1})
    if duplicated:
        raise DataError(f"{name} has duplicate column names: {', '.join(duplicated)}")
    _check_csv_shape(name, b"\n", header, pd.DataFrame())  # the delimiter check: it needs the header only
    if not tail.endswith((b"\n", b"\r")) and len(header) > 1 and lines:
        last = tail[tail.rfind(b"\n") + 1 :].decode("utf-8", "replace")
        try:
            fields = next(csv.reader([last]), [])
        except csv.Error:  # a field beyond the csv module's limit: count the commas instead
            fields = last.split(",")
        if len(fields) < len(header):
            raise DataError(
                f"{name} ends in an incomplete row: line {lines + 1} has {len(fields)} of {len(header)} fields"
                " and no line break (the file looks truncated)"
            )


def _row_groups(name: str, fh: Any) -> list[int]:
    import pyarrow.parquet as pq

    try:
        metadata = pq.ParquetFile(fh).metadata
    except MlopsError:  # a storage error may be transient: leave it as it is
        raise
    except Exception as exc:  # pyarrow raises several types for a damaged file
        raise DataError(f"{name} is not a readable Parquet file: {exc}") from exc
    return [metadata.row_group(index).num_rows for index in range(metadata.num_row_groups)]


def split_partitions(files: list[dict[str, Any]], partitions: int) -> list[list[dict[str, Any]]]:
    """At most ``partitions`` contiguous partitions of similar size, in input order.

    The units are whole CSV files and single Parquet row groups (weighed by bytes and
    rows); adjacent row groups of one file in the same partition merge into one segment
    ``{"file": i, "row_groups": [start, stop]}`` (``None`` for a whole file).
    """
    units: list[tuple[int, int | None, float]] = []
    for index, info in enumerate(files):
        groups = info.get("row_groups")
        if groups is None:
            units.append((index, None, float(info["size"])))
        else:
            total = sum(groups) or 1
            units.extend((index, group, info["size"] * rows / total) for group, rows in enumerate(groups))
    weight = sum(unit[2] for unit in units) or 1.0
    count = max(1, min(int(partitions), len(units)))
    result: list[list[dict[str, Any]]] = [[] for _ in range(count)]
    done = 0.0
    for file_index, group, size in units:
        # each unit goes where its midpoint falls: contiguous, balanced, and the same answer every time
        slot = min(count - 1, int((done + size / 2) * count / weight))
        done += size
        segments = result[slot]
        last = segments[-1] if segments else None
        if group is None:
            segments.append({"file": file_index, "row_groups": None})
        elif last and last["file"] == file_index and last["row_groups"] and last["row_groups"][1] == group:
            last["row_groups"][1] = group + 1
        else:
            segments.append({"file": file_index, "row_groups": [group, group + 1]})
    return [segments for segments in result if segments]


def read_chunks(
    store: ArtifactStore,
    info: dict[str, Any],
    row_groups: list[int] | None,
    *,
    chunk_rows: int,
    skip_columns: list[str] | None = None,
) -> Iterator[tuple[int, pd.DataFrame]]:
    """``(first_row, frame)`` pieces of at most ``chunk_rows`` rows of one file (or of its row groups ``[start, stop)``).

    ``first_row`` numbers data rows from 1 at the top of the file (the CSV header is not
    a row). CSV cells come as text (CSV has no types: the reader of the chunk parses
    them); Parquet columns keep their types. Raises :class:`DataError` if the file changed
    size since it was described, or cannot be parsed.
    """
    name = info["uri"]
    skip = set(skip_columns or [])
    with _open(store, info["key"]) as fh:
        size = fh.seek(0, io.SEEK_END)
        fh.seek(0)
        if size != info["size"]:
            raise DataError(f"{name} changed since the batch was planned ({info['size']} bytes then, {size} now)")
        if info["format"] == "csv":
            yield from _csv_chunks(name, fh, chunk_rows, skip)
        else:
            yield from _parquet_chunks(name, fh, info["row_groups"], row_groups, chunk_rows, skip)


def _csv_chunks(name: str, fh: Any, chunk_rows: int, skip: set[str]) -> Iterator[tuple[int, pd.DataFrame]]:
    import pandas as pd

    wanted = (lambda column: column not in skip) if skip else None
    first = 1
    try:
        reader = pd.read_csv(fh, chunksize=chunk_rows, dtype=str, usecols=wanted, encoding="utf-8")
        for chunk in reader:
            yield first, chunk.reset_index(drop=True)
            first += len(chunk)
    except UnicodeDecodeError as exc:
        raise DataError(f"{name} is not valid UTF-8 text ({exc.reason}, near data row {first}): save it as UTF-8") from exc
    except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError) as exc:
        raise DataError(f"{name} is not a readable CSV file: {str(exc).strip()}") from exc


def _parquet_chunks(
    name: str, fh: Any, groups: list[int], wanted: list[int] | None, chunk_rows: int, skip: set[str]
) -> Iterator[tuple[int, pd.DataFrame]]:
    import pyarrow.parquet as pq

    start, stop = wanted if wanted is not None else (0, len(groups))
    first = sum(groups[:start]) + 1
    try:
        parquet = pq.ParquetFile(fh)
        columns = [column for column in parquet.schema_arrow.names if column not in skip]
        batches = parquet.iter_batches(batch_size=chunk_rows, row_groups=list(range(start, stop)), columns=columns)
        for batch in batches:
            frame = batch.to_pandas()
            yield first, frame
            first += len(frame)
    except MlopsError:  # a storage error may be transient: leave it as it is
        raise
    except Exception as exc:  # pyarrow raises several types for a damaged file
        raise DataError(f"{name} is not a readable Parquet file: {exc}") from exc
