"""A corpus of bad data files, each stopped by the validation stage with a message that names the problem.

Every file is made in ``tmp_path`` from the sample data, and validated for a model that
already has a champion (so the champion's feature check runs too). Each test asserts
where the file was stopped (at load: ``DataError``; by the checks: ``DataValidationError``),
that the message names the column or the problem, and that nothing was registered.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml
from testsupport import SAMPLE, SPEC

from mlops_airflow.exceptions import DataError, DataValidationError
from mlops_airflow.pipeline.validate import run_validation

pytestmark = pytest.mark.integration

TRIPS = SAMPLE / "trips_2026_01.csv"


@pytest.fixture
def champion(registry: Any, build_version: Callable[..., dict[str, Any]]) -> Any:
    """Model "m" with champion v1, trained on the sample data through the whole pipeline."""
    build_version("m", str(TRIPS))
    assert registry.get_alias("m", "champion")["version"] == 1
    return registry


@pytest.fixture(scope="module")
def trips() -> pd.DataFrame:
    return pd.read_csv(TRIPS)


@pytest.fixture(scope="module")
def text() -> str:
    return TRIPS.read_text(encoding="utf-8")


def write(tmp_path: Path, name: str, content: str | bytes) -> str:
    path = tmp_path / name
    path.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
    return str(path)


def rejected(registry: Any, data_uri: str, error: type[Exception], validation: Any = None) -> str:
    """Run the validation stage on ``data_uri``; assert it raised exactly ``error`` and registered nothing."""
    with pytest.raises(DataError) as caught:
        run_validation(
            registry, model_name="m", data_uri=data_uri, target="tipped",
            validation=str(SPEC) if validation is None else validation,
        )
    assert type(caught.value) is error, f"{type(caught.value).__name__}: {caught.value}"
    assert registry.list_versions("m") == [1]
    assert registry.get_alias("m", "champion")["version"] == 1
    return str(caught.value)


# -- stopped at load: the file cannot be read as the table it claims to be -------------------


def test_semicolon_delimiter(champion: Any, tmp_path: Path, text: str) -> None:
    message = rejected(champion, write(tmp_path, "semi.csv", text.replace(",", ";")), DataError)
    assert "semi.csv has a single column named 'trip_id;hour;" in message
    assert "looks semicolon-separated" in message


def test_header_only(champion: Any, tmp_path: Path, text: str) -> None:
    message = rejected(champion, write(tmp_path, "header.csv", text.splitlines(keepends=True)[0]), DataError)
    assert message.endswith("header.csv has no rows")


def test_empty_file(champion: Any, tmp_path: Path) -> None:
    message = rejected(champion, write(tmp_path, "empty.csv", b"\n\n"), DataError)
    assert message.endswith("empty.csv is empty")


def test_duplicate_header_names(champion: Any, tmp_path: Path, text: str) -> None:
    header, rest = text.split("\n", 1)
    data = write(tmp_path, "dup.csv", header.replace("passengers", "hour") + "\n" + rest)
    message = rejected(champion, data, DataError)
    assert message.endswith("dup.csv has duplicate column names: hour")


def test_ragged_row(champion: Any, tmp_path: Path, text: str) -> None:
    lines = text.splitlines(keepends=True)
    lines[5] = lines[5].rstrip("\n") + ",surplus\n"
    message = rejected(champion, write(tmp_path, "ragged.csv", "".join(lines)), DataError)
    assert "ragged.csv is not a readable CSV file" in message
    assert "Expected 10 fields in line 6, saw 11" in message


def test_truncated_mid_row(champion: Any, tmp_path: Path, text: str) -> None:
    data = text.encode()
    cut = data.index(b"\n", len(data) // 2) + 20  # 20 bytes into a row
    message = rejected(champion, write(tmp_path, "cut.csv", data[:cut]), DataError)
    assert "cut.csv ends in an incomplete row: line" in message
    assert "of 10 fields and no line break (the file looks truncated)" in message


def test_binary_garbage(champion: Any, tmp_path: Path) -> None:
    noise = random.Random(7).randbytes(8192)
    message = rejected(champion, write(tmp_path, "noise.csv", noise), DataError)
    assert "noise.csv is not a CSV text file: it holds binary data (a NUL byte at offset" in message


def test_gzip_named_csv(champion: Any, tmp_path: Path, text: str) -> None:
    import gzip

    message = rejected(champion, write(tmp_path, "packed.csv", gzip.compress(text.encode())), DataError)
    assert message.endswith("packed.csv is not a CSV text file: it is gzip-compressed: decompress it first")


def test_utf16(champion: Any, tmp_path: Path, text: str) -> None:
    message = rejected(champion, write(tmp_path, "wide.csv", text.encode("utf-16")), DataError)
    assert message.endswith("wide.csv is not a CSV text file: it is UTF-16 text: save it as UTF-8")


def test_latin1(champion: Any, tmp_path: Path, text: str) -> None:
    lines = text.splitlines(keepends=True)
    lines[3] = lines[3].replace("downtown", "centre-ville \u00e9t\u00e9")
    message = rejected(champion, write(tmp_path, "latin.csv", "".join(lines).encode("latin-1")), DataError)
    offset = len("".join(lines[:3]).encode()) + lines[3].index("\u00e9")
    # The line and offset are the file's own, not those of a chunk pandas happened to decode.
    assert f"latin.csv is not valid UTF-8 text: byte 0xe9 at line 4 (offset {offset})" in message
    assert "save it as UTF-8" in message


def test_huge_single_line(champion: Any, tmp_path: Path, text: str) -> None:
    one_line = (text.replace("\n", " ") * 20)[:5_000_000]
    message = rejected(champion, write(tmp_path, "oneline.csv", one_line), DataError)
    assert message.endswith("oneline.csv has no line break in its first 1 MB: not a CSV file with one record per line")


def test_damaged_parquet(champion: Any, tmp_path: Path, trips: pd.DataFrame) -> None:
    path = tmp_path / "damaged.parquet"
    trips.to_parquet(path)
    path.write_bytes(path.read_bytes()[:-100])  # footer gone
    message = rejected(champion, str(path), DataError)
    assert "damaged.parquet is not a readable Parquet file" in message


# -- stopped by the checks: readable, but not the data the spec describes ----------------------


def test_missing_column(champion: Any, tmp_path: Path, trips: pd.DataFrame) -> None:
    data = write(tmp_path, "missing.csv", trips.drop(columns=["fare_usd"]).to_csv(index=False))
    message = rejected(champion, data, DataValidationError)
    assert "- fare_usd: expect_column_to_exist: column 'fare_usd' is not in the data" in message
    assert "1 feature(s) of the champion are missing: fare_usd" in message


def test_extra_column_when_not_allowed(champion: Any, tmp_path: Path, trips: pd.DataFrame) -> None:
    spec = {**yaml.safe_load(SPEC.read_text()), "allow_extra_columns": False}
    data = write(tmp_path, "extra.csv", trips.assign(driver_name="ann").to_csv(index=False))
    message = rejected(champion, data, DataValidationError, validation=spec)
    assert "- table: expect_table_columns_to_match_set: 1 undeclared column(s): driver_name" in message


def test_text_in_numeric_column(champion: Any, tmp_path: Path, trips: pd.DataFrame) -> None:
    frame = trips.astype({"fare_usd": object})
    frame.loc[5, "fare_usd"] = "twelve"
    message = rejected(champion, write(tmp_path, "text.csv", frame.to_csv(index=False)), DataValidationError)
    assert "- fare_usd: expect_column_values_to_be_of_type number: 1 value is not a number, e.g. 'twelve'" in message


def test_float_in_parquet_integer_column(champion: Any, tmp_path: Path, trips: pd.DataFrame) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pandas(trips, preserve_index=False)
    hours = trips["hour"].astype(float)
    hours.iloc[3] = 7.5
    table = table.set_column(table.schema.get_field_index("hour"), "hour", pa.array(hours, type=pa.float64()))
    # Only hour is wrong. (passengers has nulls in the sample, and pandas reads a Parquet integer
    # column with nulls as float64, which the strict check refuses: filled here to keep this about hour.)
    passengers = pa.array(trips["passengers"].fillna(1).astype("int64"), type=pa.int64())
    table = table.set_column(table.schema.get_field_index("passengers"), "passengers", passengers)
    pq.write_table(table, tmp_path / "typed.parquet")
    message = rejected(champion, str(tmp_path / "typed.parquet"), DataValidationError)
    assert (
        "- hour: expect_column_values_to_be_of_type integer: dtype float64 is not integer"
        " (Parquet columns must carry their type)" in message
    )
    assert "passengers" not in message


def test_out_of_range_value(champion: Any, tmp_path: Path, trips: pd.DataFrame) -> None:
    frame = trips.copy()
    frame.loc[10, "hour"] = 77
    message = rejected(champion, write(tmp_path, "hour.csv", frame.to_csv(index=False)), DataValidationError)
    assert "- hour: expect_column_values_to_be_between [0, 23]: 1 unexpected (0.025%), e.g. 77" in message


def test_unseen_category(champion: Any, tmp_path: Path, trips: pd.DataFrame) -> None:
    frame = trips.copy()
    frame.loc[10, "payment_type"] = "bitcoin"
    message = rejected(champion, write(tmp_path, "pay.csv", frame.to_csv(index=False)), DataValidationError)
    assert (
        "- payment_type: expect_column_values_to_be_in_set in {'card', 'cash', 'app'}: 1 unexpected (0.025%),"
        " e.g. 'bitcoin'" in message
    )


def test_too_many_nulls(champion: Any, tmp_path: Path, trips: pd.DataFrame) -> None:
    frame = trips.copy()
    frame.loc[frame.index[:800], "passengers"] = None
    nulls = int(frame["passengers"].isna().sum())
    message = rejected(champion, write(tmp_path, "nulls.csv", frame.to_csv(index=False)), DataValidationError)
    assert f"- passengers: expect_column_values_to_not_be_null mostly 0.95: {nulls} unexpected (" in message


def test_duplicated_key(champion: Any, tmp_path: Path, trips: pd.DataFrame) -> None:
    frame = trips.copy()
    frame.loc[10, "trip_id"] = frame.loc[9, "trip_id"]
    message = rejected(champion, write(tmp_path, "dupkey.csv", frame.to_csv(index=False)), DataValidationError)
    assert f"- trip_id: expect_column_values_to_be_unique: 2 unexpected (0.05%), e.g. {frame.loc[9, 'trip_id']}" in message


def test_null_target(champion: Any, tmp_path: Path, trips: pd.DataFrame) -> None:
    frame = trips.astype({"tipped": "Int64"})
    frame.loc[frame.index[:3], "tipped"] = None
    message = rejected(champion, write(tmp_path, "label.csv", frame.to_csv(index=False)), DataValidationError)
    assert f"- tipped: expect_target_values_to_not_be_null: 3 of {len(frame)} target values are null" in message


def test_every_message_points_at_the_report(champion: Any, tmp_path: Path, trips: pd.DataFrame) -> None:
    frame = trips.copy()
    frame.loc[10, "hour"] = 77
    with pytest.raises(DataValidationError) as caught:
        run_validation(champion, model_name="m", data_uri=write(tmp_path, "r.csv", frame.to_csv(index=False)),
                       target="tipped", validation=str(SPEC))
    report = caught.value.summary["report_uri"]
    assert str(caught.value).endswith(f"full report: {report}")
    assert Path(report).is_file()
