"""Inferring a starting spec from a reference dataset: what it proposes, and that its source passes it."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from mlops_airflow.cli import main
from mlops_airflow.validation import load_validation_spec, validate_dataset
from mlops_airflow.validation.infer import dump_spec_yaml, infer_spec

REPO = Path(__file__).resolve().parents[3]
TRIPS = REPO / "include" / "data" / "trips_2026_01.csv"


@pytest.fixture(scope="module")
def trips() -> pd.DataFrame:
    return pd.read_csv(TRIPS)


@pytest.fixture(scope="module")
def trips_spec(trips: pd.DataFrame) -> dict:
    return infer_spec(trips, target="tipped")


def passes(frame: pd.DataFrame, spec: dict, *, target: str, source_format: str = "csv") -> None:
    outcome = validate_dataset(frame, target=target, spec=spec, source_format=source_format)
    assert outcome.success, outcome.failure_message()


def test_sample_data_round_trips_through_yaml(trips: pd.DataFrame, trips_spec: dict) -> None:
    text = dump_spec_yaml(trips_spec, source="include/data/trips_2026_01.csv")
    loaded = load_validation_spec(text)
    assert loaded is not None and loaded["columns"].keys() == trips_spec["columns"].keys()
    passes(trips, text_spec(text), target="tipped")
    # The spec is loose enough for the next month of the same data.
    passes(pd.read_csv(TRIPS.with_name("trips_2026_02.csv")), loaded, target="tipped")


def text_spec(text: str) -> dict:
    spec = load_validation_spec(text)
    assert spec is not None
    return spec


def test_what_is_proposed_for_the_sample(trips_spec: dict) -> None:
    columns = trips_spec["columns"]
    # An id: unique, no range (new rows bring new ids).
    assert columns["trip_id"] == {"type": "integer", "unique": True, "nullable": False}
    # 0..23 widened by 10% of 23 on each side, never below 0, rounded outward.
    assert columns["hour"] == {"type": "integer", "min": 0, "max": 26, "nullable": False}
    assert columns["payment_type"] == {"type": "string", "allowed": ["app", "card", "cash"], "nullable": False}
    # Whole numbers with empty cells (read as float) are integers; 39 of 4000 null -> mostly 0.97.
    assert columns["passengers"] == {"type": "integer", "min": 0, "max": 7, "mostly": 0.97}
    assert columns["fare_usd"]["type"] == "number" and columns["fare_usd"]["min"] == 0.0
    # Integer class labels are listed, not ranged.
    assert columns["tipped"] == {"type": "integer", "allowed": [0, 1], "nullable": False}
    assert trips_spec["row_count"] == {"min": 400}
    assert trips_spec["allow_extra_columns"] is True


def test_ranges_widen_by_margin_and_round_outward() -> None:
    frame = pd.DataFrame({"t": [-3.21, 0.0, 10.4, 5.5], "n": [2, 3, 4, 12], "z": [0.0, 0.0, 0.0, 0.0]})
    columns = infer_spec(frame, margin=0.5, max_categories=0)["columns"]
    # width 13.61, pad 6.805: [-10.015, 17.205] -> steps of 0.1, outward.
    assert columns["t"] == {"type": "number", "min": -10.1, "max": 17.3, "nullable": False}
    # non-negative: 2 - 5 clipped at 0; 12 + 5 = 17.
    assert columns["n"] == {"type": "integer", "min": 0, "max": 17, "nullable": False}
    assert columns["z"] == {"type": "integer", "min": 0, "max": 0, "nullable": False}
    no_margin = infer_spec(frame, margin=0)["columns"]
    # No margin: still rounded outward to the step (a hundredth of the width, here 0.1).
    assert (no_margin["t"]["min"], no_margin["t"]["max"]) == (-3.3, 10.4)


def test_categories_up_to_max_and_booleans() -> None:
    frame = pd.DataFrame(
        {
            "few": ["a", "b", "a", None] * 10,
            "many": [f"v{i % 30}" for i in range(40)],
            "flag": [True, False] * 20,
            "word_flag": ["true", "False"] * 20,
            "when": pd.date_range("2026-01-01", periods=40),
        }
    )
    columns = infer_spec(frame, max_categories=20)["columns"]
    # 10 nulls in 40: 1 - 0.5 - 0.01 -> 0.49
    assert columns["few"] == {"type": "string", "allowed": ["a", "b"], "mostly": 0.49}
    assert columns["many"] == {"type": "string", "nullable": False}
    assert columns["flag"] == {"type": "boolean", "nullable": False}
    assert columns["word_flag"] == {"type": "boolean", "nullable": False}
    # No type for dates: the column must merely exist.
    assert columns["when"] == {"nullable": False}
    passes(frame, infer_spec(frame, max_categories=20), target="flag")


def test_unique_only_for_id_like_columns() -> None:
    rows = 30
    frame = pd.DataFrame(
        {
            "code": [f"AB-{i:04d}" for i in range(rows)],
            "name": [f"person number {i}" for i in range(rows)],  # spaces: not an id
            "score": np.linspace(0, 1, rows),  # all distinct, but a measurement
            "label": [0, 1, 2] * 10,
        }
    )
    columns = infer_spec(frame, target="label")["columns"]
    assert columns["code"] == {"type": "string", "unique": True, "nullable": False}
    assert "unique" not in columns["name"] and "unique" not in columns["score"]
    assert columns["label"]["allowed"] == [0, 1, 2]
    small = infer_spec(frame.head(5))["columns"]
    assert "unique" not in small["code"]  # five distinct values prove nothing


def test_mostly_null_and_all_null_columns() -> None:
    frame = pd.DataFrame({"sparse": [1.5, None, None, None], "empty": [None] * 4, "x": [1, 2, 3, 4]})
    columns = infer_spec(frame)["columns"]
    assert "mostly" not in columns["sparse"] and "nullable" not in columns["sparse"]
    assert columns["empty"] == {}
    passes(frame, infer_spec(frame), target="x")


def test_parquet_types_are_not_guessed_from_values(tmp_path: Path, trips: pd.DataFrame) -> None:
    path = tmp_path / "trips.parquet"
    trips.to_parquet(path)
    frame = pd.read_parquet(path)
    spec = infer_spec(frame, target="tipped", source_format="parquet")
    # Float with whole values stays number when types are checked strictly.
    assert spec["columns"]["passengers"]["type"] == "number"
    passes(frame, spec, target="tipped", source_format="parquet")


def test_infer_round_trips_random_frames() -> None:
    rng = np.random.default_rng(3)
    for seed in range(5):
        rows = int(rng.integers(1, 200))
        frame = pd.DataFrame(
            {
                "i": rng.integers(-50, 50, rows),
                "f": rng.normal(seed * 100, 10 ** float(rng.integers(-3, 6)), rows),
                "s": rng.choice(["x", "y", "z"], rows),
                "g": np.where(rng.random(rows) < 0.3, np.nan, rng.integers(0, 5, rows)),
            }
        )
        spec = infer_spec(frame)
        passes(frame, load_validation_spec(dump_spec_yaml(spec, source="random")) or {}, target="i")


def test_bad_arguments() -> None:
    frame = pd.DataFrame({"a": [1]})
    with pytest.raises(ValueError, match="margin"):
        infer_spec(frame, margin=-1)
    with pytest.raises(ValueError, match="target column 'b' is not in the data"):
        infer_spec(frame, target="b")
    with pytest.raises(ValueError, match="empty"):
        infer_spec(frame.iloc[:0])


def test_yaml_layout(trips_spec: dict) -> None:
    text = dump_spec_yaml({**trips_spec, "columns": {**trips_spec["columns"], "odd: name": {}}}, source="s3://b/t.csv")
    lines = text.splitlines()
    assert lines[0] == "# Data validation spec inferred from s3://b/t.csv by `mlops-airflow suite infer`."
    assert any("REVIEW BEFORE USE" in line for line in lines)
    assert "  hour:              {type: integer, min: 0, max: 26, nullable: false}" in lines
    assert "  'odd: name':       {}" in lines
    assert yaml.safe_load(io.StringIO(text))["columns"]["odd: name"] == {}


def test_cli_writes_and_refuses_to_overwrite(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "include" / "trips.yaml"
    assert main(["suite", "infer", str(TRIPS), "--out", str(out), "--target", "tipped"]) == 0
    assert f"wrote {out}: 10 columns inferred from {TRIPS} (4000 rows)" in capsys.readouterr().out
    assert load_validation_spec("include/trips.yaml", base_dir=str(tmp_path)) is not None
    before = out.read_text()

    assert main(["suite", "infer", str(TRIPS), "--out", str(out), "--margin", "0"]) == 1
    assert capsys.readouterr().err.strip() == f"mlops-airflow: {out} exists; --force to overwrite"
    assert out.read_text() == before

    assert main(["suite", "infer", str(TRIPS), "--out", str(out), "--margin", "0", "--force"]) == 0
    assert "max: 23," in out.read_text()

    assert main(["suite", "infer", str(TRIPS), "--out", str(out), "--force", "--target", "nope"]) == 1
    assert "target column 'nope' is not in the data" in capsys.readouterr().err
    assert main(["suite", "infer", str(tmp_path / "none.csv"), "--out", str(tmp_path / "x.yaml")]) == 1
    assert "data file not found" in capsys.readouterr().err
