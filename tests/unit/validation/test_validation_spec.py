"""Loading and checking validation specs: every error names its field, and the sample spec is valid."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mlops_airflow.exceptions import ValidationSpecError
from mlops_airflow.validation import declared_constraints, load_validation_spec

REPO = Path(__file__).resolve().parents[3]
SAMPLE_SPEC = REPO / "include" / "trips_validation.yaml"


def test_sample_spec_loads_normalised_and_reloads_unchanged():
    spec = load_validation_spec(str(SAMPLE_SPEC))

    assert spec is not None
    assert spec["format_version"] == 1
    assert spec["columns"]["hour"] == {
        "type": "integer",
        "min": 0,
        "max": 23,
        "nullable": False,
        "unique": False,
        "severity": "error",
    }
    # mostly implies "not fully nullable": the null-fraction check applies.
    assert spec["columns"]["passengers"]["nullable"] is False
    assert spec["columns"]["passengers"]["mostly"] == 0.95
    assert spec["row_count"] == {"min": 100, "severity": "error"}
    assert spec["allow_extra_columns"] is True
    # The operator passes the normalised spec on through XCom: loading it again must not change it.
    assert load_validation_spec(spec) == spec
    assert load_validation_spec(json.loads(json.dumps(spec))) == spec


@pytest.mark.parametrize("value", [None, "", "none", "  None  "])
def test_no_spec_means_none(value):
    assert load_validation_spec(value) is None


def test_relative_path_is_resolved_against_base_dir_first(tmp_path, monkeypatch):
    (tmp_path / "spec.yaml").write_text("columns:\n  a: {type: number, min: 1}\n")
    monkeypatch.chdir(REPO)

    spec = load_validation_spec("spec.yaml", base_dir=str(tmp_path))

    assert spec is not None
    assert spec["columns"]["a"]["min"] == 1


def test_inline_json_string_is_parsed():
    spec = load_validation_spec('{"columns": {"hour": {"type": "integer", "max": 23}}}')

    assert spec is not None
    assert spec["columns"]["hour"]["max"] == 23


def test_missing_file_names_the_path(tmp_path):
    with pytest.raises(ValidationSpecError, match=r"validation: spec file 'nowhere\.yaml' not found") as info:
        load_validation_spec("nowhere.yaml", base_dir=str(tmp_path))
    assert str(tmp_path / "nowhere.yaml") in str(info.value)


def test_yaml_file_errors_name_field_path_and_line(tmp_path, monkeypatch):
    monkeypatch.setenv("MLOPS_AIRFLOW_SPEC_ROOTS", str(tmp_path))
    path = tmp_path / "bad.yaml"
    path.write_text("format_version: 1\ncolumns:\n  hour:\n    type: integer\n    min: abc\n    maxx: 23\n")

    with pytest.raises(ValidationSpecError) as info:
        load_validation_spec(str(path))

    message = str(info.value)
    assert str(path) in message
    # Every problem is reported at once, each with its line.
    assert "columns.hour.min: expected a number, got 'abc' (line 5)" in message
    assert (
        "columns.hour: unknown key 'maxx' (allowed: type, min, max, allowed, mostly, unique, regex, nullable, severity)"
        in message.replace(".maxx:", ":")
    )
    assert "(line 6)" in message


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ({"columns": {}}, "columns: must not be empty"),
        ({"row_count": {"min": 1}}, "columns: missing (required)"),
        (
            {"columns": {"hour": {"type": "int"}}},
            "columns.hour.type: expected one of integer, number, string, boolean, got 'int'",
        ),
        ({"columns": {"hour": {"min": "0"}}}, "columns.hour.min: expected a number, got '0'"),
        ({"columns": {"hour": {"min": 5, "max": 1}}}, "columns.hour.min: min 5 is greater than max 1"),
        (
            {"columns": {"code": {"type": "string", "max": 3}}},
            "columns.code.max: only for integer or number columns, not string",
        ),
        (
            {"columns": {"code": {"type": "string", "allowed": ["a", 1]}}},
            "columns.code.allowed[1]: expected a string",
        ),
        ({"columns": {"code": {"regex": "["}}}, "columns.code.regex: not a valid regular expression"),
        ({"columns": {"p": {"mostly": 1.5}}}, "columns.p.mostly: must be between 0 and 1, got 1.5"),
        ({"columns": {"p": {"mostly": 0.9, "nullable": True}}}, "columns.p.nullable: contradicts mostly"),
        (
            {"columns": {"p": {"severity": "fatal"}}},
            "columns.p.severity: expected one of error, warning, got 'fatal'",
        ),
        (
            {"columns": {"p": None}, "row_count": {"min": -1}},
            "row_count.min: expected a whole number >= 0, got -1",
        ),
        ({"columns": {"p": None}, "format_version": 2}, "format_version: unsupported version 2"),
        ({"columns": {"p": None}, "extra": True}, "extra: unknown key 'extra'"),
    ],
)
def test_spec_errors_name_the_field_and_problem(spec, expected):
    with pytest.raises(ValidationSpecError) as info:
        load_validation_spec(spec)
    assert expected in str(info.value)


def test_declared_constraints_keep_only_declared_error_bounds():
    spec = {
        "columns": {
            "hour": {"type": "integer", "min": 0, "max": 23},
            "passengers": {"type": "integer", "min": 1, "mostly": 0.9},
            "payment_type": {"type": "string", "allowed": ["card", "cash"]},
            "trip_id": {"type": "integer", "unique": True},
            # Outside a warning's range is still trainable data: the server must accept it too.
            "fare_usd": {"type": "number", "max": 100, "severity": "warning"},
        }
    }

    assert declared_constraints(spec) == {
        "hour": {"min": 0, "max": 23},
        "passengers": {"min": 1},
        "payment_type": {"allowed": ["card", "cash"]},
    }
    assert declared_constraints(None) == {}
