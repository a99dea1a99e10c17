"""Validating frames: minimal check, declared types per source, GX value checks, summary and message."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pandas as pd
import pytest

from mlops_airflow.data.schema import feature_schema, schema_columns
from mlops_airflow.validation import ValidationOutcome, load_validation_spec, validate_dataset

REPO = Path(__file__).resolve().parents[3]
DATA = REPO / "include" / "data"
SAMPLE_SPEC = REPO / "include" / "trips_validation.yaml"


@pytest.fixture(scope="module")
def sample_spec() -> dict:
    spec = load_validation_spec(str(SAMPLE_SPEC))
    assert spec is not None
    return spec


@pytest.fixture(scope="module")
def trips_csv_text() -> str:
    # 200 rows keep GX fast while still holding nulls in passengers and every category.
    return "".join((DATA / "trips_2026_01.csv").read_text().splitlines(keepends=True)[:201])


@pytest.fixture
def trips(trips_csv_text) -> pd.DataFrame:
    return pd.read_csv(io.StringIO(trips_csv_text))


def validate(frame: pd.DataFrame, spec: dict | None, **kwargs) -> ValidationOutcome:
    """validate_dataset, plus the promise every summary keeps: strict JSON."""
    kwargs.setdefault("target", "tipped")
    outcome = validate_dataset(frame, spec=spec, **kwargs)
    json.dumps(outcome.summary, allow_nan=False)
    return outcome


def failed(outcome: ValidationOutcome) -> list[tuple[str | None, str, str]]:
    return [(c["column"], c["check"], c["severity"]) for c in outcome.summary["checks"] if not c["success"]]


@pytest.mark.parametrize("name", ["trips_2026_01.csv", "trips_2026_02.csv"])
def test_sample_data_passes_the_sample_spec_without_copying(name, sample_spec, capfd):
    frame = pd.read_csv(DATA / name)

    outcome = validate(frame, sample_spec)

    assert "Calculating Metrics" not in capfd.readouterr().err  # GX's tqdm bars stay off

    assert outcome.success, outcome.failure_message()
    assert outcome.frame is frame  # CSV already read these columns with their declared types
    summary = outcome.summary
    assert summary["rows"] == 4000
    assert summary["statistics"]["failed_errors"] == 0
    checks = {(c["column"], c["check"]) for c in summary["checks"]}
    assert ("hour", "expect_column_values_to_be_between") in checks
    assert ("passengers", "expect_column_values_to_not_be_null") in checks
    assert (None, "expect_table_row_count_to_be_between") in checks
    assert summary["columns_profile"]["hour"]["max"] == 23


def test_without_spec_only_the_minimal_check_runs(trips):
    outcome = validate(trips, None)

    assert outcome.success
    assert [c["check"] for c in outcome.summary["checks"]] == [
        "expect_table_to_have_rows",
        "expect_target_column_to_exist",
        "expect_target_values_to_not_be_null",
    ]


def test_empty_frame_fails(trips):
    outcome = validate(trips.iloc[0:0], None)

    assert not outcome.success
    assert "the data has no rows" in outcome.failure_message()


def test_out_of_range_value_fails_and_message_names_column_and_value(trips, sample_spec):
    trips.loc[3, "hour"] = 77
    trips.loc[9, "hour"] = 77

    outcome = validate(trips, sample_spec)

    assert not outcome.success
    assert failed(outcome) == [("hour", "expect_column_values_to_be_between", "error")]
    check = next(c for c in outcome.summary["checks"] if not c["success"])
    assert check["observed"]["unexpected_count"] == 2
    assert check["observed"]["sample"] == [77]
    message = outcome.failure_message("s3://bucket/reports/validation.html")
    assert message.splitlines()[0].startswith("data validation failed: 1 of ")
    assert "- hour: expect_column_values_to_be_between [0, 23]: 2 unexpected" in message
    assert "e.g. 77" in message
    assert message.endswith("full report: s3://bucket/reports/validation.html")


def test_text_in_numeric_csv_column_names_the_bad_values_then_casts(trips_csv_text, sample_spec):
    lines = trips_csv_text.splitlines()
    for row, bad in ((1, "abc"), (2, "12 km")):
        fields = lines[row].split(",")
        fields[5] = bad  # trip_distance_km
        lines[row] = ",".join(fields)
    frame = pd.read_csv(io.StringIO("\n".join(lines)))
    assert frame["trip_distance_km"].dtype.kind not in "iuf"

    outcome = validate(frame, sample_spec)

    assert not outcome.success
    message = outcome.failure_message()
    assert "trip_distance_km: expect_column_values_to_be_of_type number: 2 values are not numbers" in message
    assert "'abc'" in message and "'12 km'" in message
    # The returned frame carries the cast column; the caller's frame is untouched.
    assert outcome.frame is not frame
    assert outcome.frame["trip_distance_km"].dtype == "float64"
    assert frame["trip_distance_km"].dtype.kind not in "iuf"


def test_csv_types_are_cast_where_castable(trips):
    frame = trips.assign(
        zone_code=trips["hour"],  # numbers read from CSV, declared text
        flag=trips["tipped"].map({0: "false", 1: "True"}),
        whole=trips["hour"].astype(float),
    )
    spec = {
        "columns": {
            "zone_code": {"type": "string", "regex": r"^\d+$"},
            "flag": {"type": "boolean"},
            "whole": {"type": "integer", "max": 23},
        }
    }

    outcome = validate(frame, spec)

    assert outcome.success, outcome.failure_message()
    assert isinstance(outcome.frame["zone_code"].dtype, pd.StringDtype)
    assert outcome.frame["flag"].dtype == bool
    assert outcome.frame["whole"].dtype == "int64"


def test_fractional_values_in_integer_csv_column_fail(trips, sample_spec):
    trips["passengers"] = trips["passengers"].astype(float)
    trips.loc[4, "passengers"] = 2.5

    outcome = validate(trips, sample_spec)

    assert failed(outcome) == [("passengers", "expect_column_values_to_be_of_type", "error")]
    assert "1 value is not a whole number, e.g. 2.5" in outcome.failure_message()


def test_parquet_types_are_checked_strictly(tmp_path, trips, sample_spec):
    # hour holds whole numbers, but as float: fine to cast from CSV, wrong type in Parquet.
    trips["hour"] = trips["hour"].astype(float)
    path = tmp_path / "trips.parquet"
    trips.to_parquet(path)
    frame = pd.read_parquet(path)

    strict = validate(frame, sample_spec, source_format="parquet")
    lenient = validate(frame, sample_spec, source_format="csv")

    assert not strict.success
    assert failed(strict) == [("hour", "expect_column_values_to_be_of_type", "error")]
    assert "dtype float64 is not integer" in strict.failure_message()
    assert strict.frame is frame
    assert lenient.success
    assert lenient.frame["hour"].dtype == "int64"


def test_missing_target_fails_and_names_it(trips):
    outcome = validate(trips.drop(columns=["tipped"]), None)

    assert not outcome.success
    assert "target column 'tipped' is not in the data" in outcome.failure_message()


def test_target_nulls_fail_with_their_count(trips):
    trips["tipped"] = trips["tipped"].astype(float)
    trips.loc[[1, 2, 3], "tipped"] = None

    outcome = validate(trips, None)

    assert failed(outcome) == [("tipped", "expect_target_values_to_not_be_null", "error")]
    assert "3 of 200 target values are null" in outcome.failure_message()


def test_reference_columns_missing_is_error_extra_is_warning(trips):
    reference = schema_columns(feature_schema(trips, target="tipped"))

    assert validate(trips, None, reference_columns=reference).success

    extra = validate(trips.assign(new_feature=1), None, reference_columns=reference)
    assert extra.success
    assert failed(extra) == [(None, "expect_no_features_unknown_to_champion", "warning")]
    assert "new_feature" in extra.failure_message()

    missing = validate(trips.drop(columns=["fare_usd"]), None, reference_columns=reference)
    assert not missing.success
    assert "feature(s) of the champion are missing: fare_usd" in missing.failure_message()

    changed = validate(trips.assign(hour=trips["hour"].astype(str)), None, reference_columns=reference)
    assert changed.success
    assert "hour (numeric -> categorical)" in changed.failure_message()


def test_warning_severity_is_reported_but_does_not_fail(trips):
    spec = {"columns": {"payment_type": {"type": "string", "regex": "^ca", "severity": "warning"}}}

    outcome = validate(trips, spec)

    assert outcome.success
    assert outcome.summary["statistics"]["failed_warnings"] == 1
    assert failed(outcome) == [("payment_type", "expect_column_values_to_match_regex", "warning")]
    message = outcome.failure_message()
    assert message.startswith("data validation passed:")
    assert "(warning)" in message and "'app'" in message


def test_mostly_bounds_the_null_fraction(trips):
    trips.loc[:59, "passengers"] = None  # 30% missing

    strict = validate(trips, {"columns": {"passengers": {"mostly": 0.95}}})
    loose = validate(trips, {"columns": {"passengers": {"mostly": 0.6}}})
    no_nulls = validate(trips, {"columns": {"passengers": {"nullable": False}}})

    assert failed(strict) == [("passengers", "expect_column_values_to_not_be_null", "error")]
    assert loose.success
    assert not no_nulls.success
    assert (
        "passengers: expect_column_values_to_not_be_null mostly 0.95: 60 unexpected"
        in strict.failure_message()
    )


def test_unique_regex_set_and_row_count(trips):
    trips.loc[5, "trip_id"] = trips.loc[6, "trip_id"]
    trips.loc[7, "pickup_zone"] = "Moon Base"
    spec = {
        "columns": {
            "trip_id": {"type": "integer", "unique": True},
            "pickup_zone": {"type": "string", "regex": "^[a-z_]+$"},
            "day_of_week": {"allowed": ["mon", "tue"]},
        },
        "row_count": {"min": 1000, "max": 5000},
    }

    outcome = validate(trips, spec)

    assert failed(outcome) == [
        ("trip_id", "expect_column_values_to_be_unique", "error"),
        ("pickup_zone", "expect_column_values_to_match_regex", "error"),
        ("day_of_week", "expect_column_values_to_be_in_set", "error"),
        (None, "expect_table_row_count_to_be_between", "error"),
    ]
    message = outcome.failure_message()
    assert "'Moon Base'" in message
    assert "table: expect_table_row_count_to_be_between [1000, 5000]: observed 200" in message


def test_missing_and_undeclared_columns(trips):
    spec = {"columns": {"hour": None, "surge_multiplier": {"type": "number"}}, "allow_extra_columns": False}

    outcome = validate(trips, spec)

    assert (None, "expect_table_columns_to_match_set", "error") in failed(outcome)
    assert ("surge_multiplier", "expect_column_to_exist", "error") in failed(outcome)
    assert "column 'surge_multiplier' is not in the data" in outcome.failure_message()


def test_message_lists_at_most_ten_failures(trips):
    spec = {"columns": {f"absent_{i}": None for i in range(12)}}

    message = validate(trips, spec).failure_message()

    assert message.count("\n- absent_") == 10
    assert "- ... and 2 more failed checks" in message


def test_redaction_leaves_no_sample_values(trips, sample_spec):
    trips.loc[3, "hour"] = 777777
    trips.loc[4, "payment_type"] = "SECRET-card-4111"

    outcome = validate(trips, sample_spec, redact_samples=True)

    assert not outcome.success
    dumped = json.dumps(outcome.summary)
    assert "777777" not in dumped
    assert "SECRET" not in dumped
    # Profiles keep counts, not category values (the spec's own allowed lists may stay).
    assert "downtown" not in json.dumps(outcome.summary["columns_profile"])
    assert '"sample": "<redacted>"' in dumped
    message = outcome.failure_message()
    assert "777777" not in message and "SECRET" not in message
    assert "sample values redacted" in message


def test_unknown_source_format_is_rejected(trips):
    with pytest.raises(ValueError, match="source_format"):
        validate_dataset(trips, target="tipped", spec=None, source_format="xlsx")
