"""SQL tables and queries validate in the database (GX's SQL data source) and load for training.

Against a real PostgreSQL server started by tools/postgres.sh (see conftest.py).
"""

from __future__ import annotations

import copy
import json
import tracemalloc
from typing import Any
from urllib.parse import quote

import pytest
import yaml
from testsupport import SAMPLE, SPEC

from mlops_airflow.data import load_dataset
from mlops_airflow.exceptions import DataError
from mlops_airflow.validation.sql import validate_sql

pytestmark = pytest.mark.integration

ROWS = 50_000
BIG_ROWS = 1_000_000
PASSWORD = "not-a-real-secret"  # trust authentication ignores it; it must never show up

# Typed as a user would declare them: several integer and number types, and `ratio`, a float column.
TRIPS_DDL = """
CREATE TABLE {name} (
    trip_id bigint, hour integer, day_of_week text, pickup_zone varchar(20), passengers smallint,
    trip_distance_km double precision, trip_duration_min real, fare_usd numeric(10, 2),
    payment_type text, tipped integer, ratio double precision
)
"""


def _sa() -> Any:
    import sqlalchemy as sa

    return sa


@pytest.fixture(scope="session")
def db(postgres_dsn: str) -> str:
    """The server's DSN (with a password, to check it is masked), holding the test tables."""
    import pandas as pd

    sa = _sa()
    dsn = postgres_dsn.replace("postgresql://postgres@", f"postgresql://postgres:{PASSWORD}@")
    sample = pd.read_csv(SAMPLE / "trips_2026_01.csv")
    repeats = -(-ROWS // len(sample))
    frame = pd.concat([sample] * repeats, ignore_index=True).head(ROWS)
    frame["trip_id"] = range(1, ROWS + 1)
    frame["passengers"] = frame["passengers"].astype("Int64")
    frame["ratio"] = frame["fare_usd"] / frame["trip_distance_km"].clip(lower=0.1)
    engine = sa.create_engine(dsn)
    with engine.begin() as connection:
        for name in ("trips", "trips_bad", "trips_empty", "trips_big"):
            connection.exec_driver_sql(f"DROP TABLE IF EXISTS {name}")
        connection.exec_driver_sql(TRIPS_DDL.format(name="trips"))
        with connection.connection.dbapi_connection.cursor() as cursor:
            with cursor.copy("COPY trips FROM STDIN (FORMAT csv, HEADER)") as copy_in:
                copy_in.write(frame.to_csv(index=False))
        connection.exec_driver_sql("CREATE TABLE trips_bad AS SELECT * FROM trips")
        connection.exec_driver_sql("UPDATE trips_bad SET hour = 77 WHERE trip_id = 4242")
        connection.exec_driver_sql("CREATE TABLE trips_empty (LIKE trips)")
        # Made in the database: these rows never pass through Python.
        connection.execute(
            sa.text(
                f"""CREATE TABLE trips_big AS SELECT
                   i::bigint AS trip_id, (i % 24)::integer AS hour,
                   (ARRAY['mon','tue','wed','thu','fri','sat','sun'])[1 + i % 7] AS day_of_week,
                   'downtown' AS pickup_zone, 'an undeclared text column, to give each row weight' AS note,
                   (1 + i % 4)::smallint AS passengers, (i % 300)::double precision / 7 AS trip_distance_km,
                   (i % 600)::real AS trip_duration_min, ((i % 900) / 3.0)::numeric(10, 2) AS fare_usd,
                   'card' AS payment_type, (i % 2)::integer AS tipped
               FROM generate_series(1, {BIG_ROWS}) AS i"""
            )
        )
        connection.exec_driver_sql("ANALYZE")
    engine.dispose()
    return dsn


@pytest.fixture(scope="session")
def spec() -> dict:
    return yaml.safe_load(SPEC.read_text())


def _check(outcome: Any, check: str, column: str | None) -> dict:
    matches = [c for c in outcome.summary["checks"] if c["check"] == check and c["column"] == column]
    assert len(matches) == 1, outcome.summary["checks"]
    return matches[0]


def _count(dsn: str, sql: str) -> int:
    sa = _sa()
    engine = sa.create_engine(dsn)
    with engine.connect() as connection:
        value = connection.execute(sa.text(sql)).scalar_one()
    engine.dispose()
    return int(value)


def test_a_typed_table_passes_its_spec_with_rows_counted_by_the_database(db: str, spec: dict) -> None:
    outcome = validate_sql(db, table="trips", spec=spec, target="tipped")

    assert outcome.success, outcome.failure_message()
    assert outcome.frame is None  # nothing was read into the worker
    summary = outcome.summary
    assert summary["rows"] == ROWS
    assert summary["source_format"] == "sql"
    assert summary["column_types"]["fare_usd"] == "numeric"
    assert (
        _check(outcome, "expect_column_values_to_be_unique", "trip_id")["observed"]["element_count"] == ROWS
    )
    # About 1% of passenger counts are missing: within the spec's `mostly: 0.95`.
    assert (
        _check(outcome, "expect_column_values_to_not_be_null", "passengers")["observed"]["unexpected_count"]
        > 0
    )
    assert summary["columns_profile"]["hour"]["max"] == 23
    text = json.dumps(summary, allow_nan=False)
    assert PASSWORD not in text
    assert "postgres:***@" in summary["source"]["database"]


def test_an_out_of_range_value_fails_naming_the_column_and_the_value(db: str, spec: dict) -> None:
    outcome = validate_sql(db, table="trips_bad", spec=spec, target="tipped")

    assert not outcome.success
    check = _check(outcome, "expect_column_values_to_be_between", "hour")
    assert not check["success"]
    assert check["observed"]["unexpected_count"] == 1
    assert check["observed"]["sample"] == [77]
    message = outcome.failure_message()
    assert "hour" in message and "77" in message
    assert PASSWORD not in message

    redacted = validate_sql(db, table="trips_bad", spec=spec, target="tipped", redact_samples=True)
    assert (
        _check(redacted, "expect_column_values_to_be_between", "hour")["observed"]["sample"] == "<redacted>"
    )
    assert "max" not in redacted.summary["columns_profile"]["hour"]
    assert "77" not in redacted.failure_message()


def test_types_are_checked_strictly_a_float_column_is_not_an_integer(db: str, spec: dict) -> None:
    strict = copy.deepcopy(spec)
    strict["columns"]["ratio"] = {"type": "integer"}
    strict["columns"]["fare_usd"] = {"type": "integer"}  # numeric(10, 2): a number, not an integer
    strict["columns"]["payment_type"] = {"type": "boolean"}

    outcome = validate_sql(db, table="trips", spec=strict, target="tipped")

    assert not outcome.success
    failed = {c["column"]: c for c in outcome.summary["checks"] if not c["success"]}
    assert set(failed) == {"ratio", "fare_usd", "payment_type"}
    assert failed["ratio"]["check"] == "expect_column_values_to_be_of_type"
    assert failed["ratio"]["observed"]["dtype"] == "double precision"
    assert "double precision is not integer" in outcome.failure_message()


def test_a_declared_column_missing_from_the_table_fails(db: str, spec: dict) -> None:
    with_missing = copy.deepcopy(spec)
    with_missing["columns"]["surge_multiplier"] = {"type": "number", "min": 1}

    outcome = validate_sql(db, table="trips", spec=with_missing, target="tipped")

    assert not outcome.success
    assert not _check(outcome, "expect_column_to_exist", "surge_multiplier")["success"]
    assert "surge_multiplier" in outcome.failure_message()


def test_a_query_validates_as_its_own_batch(db: str, spec: dict) -> None:
    query = "SELECT * FROM trips WHERE hour < 12"
    morning = _count(db, "SELECT count(*) FROM trips WHERE hour < 12")

    outcome = validate_sql(db, query=query, spec=spec, target="tipped")
    assert outcome.success, outcome.failure_message()
    assert outcome.summary["rows"] == morning
    assert outcome.summary["source"]["query"] == query

    # The same query named in the URL, as a data_uri would carry it.
    from_uri = validate_sql(f"{db}?query={quote(query)}", spec=None, target="tipped")
    assert from_uri.success and from_uri.summary["rows"] == morning

    afternoon = validate_sql(db, query="SELECT * FROM trips_bad WHERE hour >= 12", spec=spec, target="tipped")
    assert not afternoon.success
    assert "77" in afternoon.failure_message()


def test_the_minimal_check_fails_on_an_empty_table_and_a_missing_target(db: str) -> None:
    empty = validate_sql(db, table="trips_empty", spec=None, target="tipped")
    assert not empty.success
    assert empty.summary["rows"] == 0
    assert "the data has no rows" in empty.failure_message()

    no_target = validate_sql(db, table="trips", spec=None, target="tip_amount")
    assert not no_target.success
    assert "target column 'tip_amount' is not in the data" in no_target.failure_message()


def test_an_unknown_table_or_bad_query_is_a_data_error_naming_it(db: str) -> None:
    with pytest.raises(DataError, match="trips_nope") as caught:
        validate_sql(db, table="trips_nope", spec=None, target="tipped")
    assert PASSWORD not in str(caught.value)
    with pytest.raises(DataError, match="trips_nope") as caught:
        load_dataset(f"{db}?table=trips_nope")
    assert PASSWORD not in str(caught.value)
    with pytest.raises(DataError, match="SELEKT"):
        load_dataset(f"{db}?query={quote('SELEKT 1')}")
    with pytest.raises(DataError, match="exactly one"):
        load_dataset(db)


def test_load_dataset_reads_a_table_or_a_query_with_an_order_free_fingerprint(db: str) -> None:
    table = load_dataset(f"{db}?table=trips")
    assert table.format == "sql"
    assert table.rows == ROWS
    assert table.files == [table.uri]
    assert PASSWORD not in table.uri and "trips" in table.uri
    assert table.fingerprint.startswith("sha256:")

    reversed_rows = load_dataset(f"{db}?query={quote('SELECT * FROM trips ORDER BY trip_id DESC')}")
    assert reversed_rows.rows == ROWS
    assert reversed_rows.fingerprint == table.fingerprint  # the same rows, whatever their order

    morning = load_dataset(
        f"{db}?query={quote('SELECT * FROM trips WHERE hour < 12')}", columns=["hour", "tipped"]
    )
    assert list(morning.frame.columns) == ["hour", "tipped"]
    assert int(morning.frame["hour"].max()) < 12
    assert morning.fingerprint != table.fingerprint


def test_a_table_larger_than_what_python_holds_is_validated_in_the_database(db: str, spec: dict) -> None:
    big_spec = copy.deepcopy(spec)
    big_spec["columns"]["payment_type"]["allowed"] = ["card"]
    big_spec["columns"]["trip_duration_min"]["max"] = 599
    # Warm up: GX's import and caches are not what is measured.
    validate_sql(db, table="trips_empty", spec=None, target="tipped")
    table_bytes = _count(db, "SELECT pg_total_relation_size('trips_big')")

    tracemalloc.start()
    try:
        outcome = validate_sql(db, table="trips_big", spec=big_spec, target="tipped")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert outcome.success, outcome.failure_message()
    assert outcome.summary["rows"] == BIG_ROWS
    assert (
        _check(outcome, "expect_column_values_to_be_unique", "trip_id")["observed"]["element_count"]
        == BIG_ROWS
    )
    # The table is ~100 MB on disk and would be more as a DataFrame; the worker held a sliver of it.
    assert table_bytes > 50_000_000
    assert peak < table_bytes / 20, f"peak Python memory {peak} bytes for a {table_bytes}-byte table"


def test_the_pipeline_validates_in_the_database_then_trains_without_leaking_the_password(
    db: str, registry: Any, spec: dict
) -> None:
    import json
    from urllib.parse import quote

    from mlops_airflow.pipeline.train import run_training
    from mlops_airflow.pipeline.validate import run_validation

    uri = f"{db}?table=trips"
    summary = run_validation(registry, model_name="sqlm", data_uri=uri, target="tipped", validation=spec)
    assert summary["source_format"] == "sql" and summary["rows"] == ROWS
    assert PASSWORD not in json.dumps(summary)  # it goes to XCom
    candidate = run_training(registry, model_name="sqlm", dataset_uri=summary["dataset_uri"], target="tipped",
                             row_key="trip_id")
    assert candidate["data"]["rows"] == ROWS and PASSWORD not in json.dumps(candidate)
    bad = f"{db}?query={quote('SELECT * FROM trips_bad')}"
    with pytest.raises(Exception, match="hour") as failure:
        run_validation(registry, model_name="sqlm", data_uri=bad, target="tipped", validation=spec)
    assert PASSWORD not in str(failure.value)
