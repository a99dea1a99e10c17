"""Splitting by segment and judging each segment's outcome, without Airflow."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from mlops_airflow.exceptions import ConfigError, DataError
from mlops_airflow.pipeline.segments import classify_segment, segment_slug, split_segments
from mlops_airflow.registry import ModelRegistry
from mlops_airflow.storage import open_store


def registry_with(tmp_path: Path, frame: pd.DataFrame) -> tuple[ModelRegistry, str]:
    path = tmp_path / "data.csv"
    frame.to_csv(path, index=False)
    return ModelRegistry(open_store(str(tmp_path / "registry"))), str(path)


def test_each_segment_gets_its_own_file_and_model_name_and_small_ones_are_reported(tmp_path: Path) -> None:
    frame = pd.DataFrame({"zone": ["a b"] * 60 + ["c"] * 70 + ["d"] * 3 + [None] * 4, "x": range(137), "y": [0, 1] * 68 + [0]})
    registry, uri = registry_with(tmp_path, frame)
    segments, small = split_segments(registry, data_uri=uri, segment_column="zone", model_prefix="m_")
    assert [(s["segment"], s["model_name"], s["rows"]) for s in segments] == [("a_b", "m_a_b", 60), ("c", "m_c", 70)]
    assert small == [{"segment": "d", "model_name": "m_d", "rows": 3, "reason": "3 rows, fewer than min_rows=50"}]
    written = pd.read_csv(segments[1]["data_uri"])  # CSV input, CSV segments
    assert set(written["zone"]) == {"c"} and len(written) == 70
    again, _ = split_segments(registry, data_uri=uri, segment_column="zone", model_prefix="m_")
    assert again == segments  # a retried split writes the same files


def test_a_segment_keeps_the_column_types_of_parquet_input(tmp_path: Path) -> None:
    from mlops_airflow.data.loading import load_dataset

    rows = 120
    frame = pd.DataFrame({
        "zone": ["a", "b"] * (rows // 2),
        "code": pd.array(["007", "010"] * (rows // 2), dtype="string"),  # leading zeros: a CSV reads 7 and 10
        "count": pd.array([None, 2, 3, 4] * (rows // 4), dtype="Int64"),  # integers with gaps: a CSV gives floats
        "at": pd.date_range("2026-01-01", periods=rows, freq="h", tz="UTC"),  # a CSV gives text
    })
    path = tmp_path / "data.parquet"
    frame.to_parquet(path, index=False)
    registry = ModelRegistry(open_store(str(tmp_path / "registry")))
    segments, _ = split_segments(registry, data_uri=str(path), segment_column="zone", model_prefix="m_")
    assert segments[0]["data_uri"].endswith(".parquet")
    written = load_dataset(segments[0]["data_uri"]).frame  # as the segment's own pipeline reads it
    expected = frame[frame["zone"] == "a"].reset_index(drop=True)
    assert written.dtypes.to_dict() == load_dataset(str(path)).frame.dtypes.to_dict()
    assert written["code"].tolist() == expected["code"].tolist() == ["007"] * (rows // 2)
    assert written["count"].isna().sum() == expected["count"].isna().sum() > 0
    assert str(written["count"].dtype) == "Int64" and str(written["at"].dtype).startswith("datetime64[")
    assert written["at"].tolist() == expected["at"].tolist()


@pytest.mark.parametrize(
    ("frame", "column", "prefix", "error", "message"),
    [
        (pd.DataFrame({"x": [1]}), "zone", "m_", DataError, "segment_column 'zone' is not in the data"),
        (pd.DataFrame({"zone": ["a b", "a-b", "a_b"], "x": [1, 2, 3]}), "zone", "m_", DataError,
         "both map to the model name suffix"),
        (pd.DataFrame({"zone": ["a"], "x": [1]}), "zone", "-bad", ConfigError, "is not valid"),
    ],
)
def test_a_bad_split_is_refused_naming_the_problem(
    tmp_path: Path, frame: pd.DataFrame, column: str, prefix: str, error: type, message: str
) -> None:
    registry, uri = registry_with(tmp_path, frame)
    with pytest.raises(error, match=message):
        split_segments(registry, data_uri=uri, segment_column=column, model_prefix=prefix, min_rows=1)


def test_segment_slugs_are_model_name_safe() -> None:
    assert [segment_slug(v) for v in ("Pier 9", "über/süd", 7, "--")] == ["Pier_9", "ber_s_d", "7", "blank"]


STAGES_OK = dict.fromkeys(("validate", "train", "evaluate", "register", "deploy"), "success")


@pytest.mark.parametrize(
    ("states", "results", "errors", "expected"),
    [
        (STAGES_OK, {"deploy": {"promoted": True, "version": 3, "previous_version": 2}, "evaluate": {"reason": "better"}},
         {}, {"outcome": "promoted", "version": 3, "previous_version": 2, "reason": "better"}),
        ({**STAGES_OK, "register": "skipped", "deploy": "skipped"},
         {"evaluate": {"blessed": False, "reason": "roc_auc = 0.7 < 0.99", "champion_version": 1}}, {},
         {"outcome": "kept", "champion_version": 1, "reason": "roc_auc = 0.7 < 0.99"}),
        ({**STAGES_OK, "validate": "failed", "train": "upstream_failed"}, {}, {"validate": "DataValidationError: hour"},
         {"outcome": "failed", "stage": "validate", "reason": "validate: DataValidationError: hour"}),
        ({**STAGES_OK, "train": "failed"}, {}, {}, {"outcome": "failed", "stage": "train", "reason": "train failed"}),
    ],
)
def test_each_segment_is_promoted_kept_or_failed_with_its_reason(
    states: dict, results: dict, errors: dict, expected: dict
) -> None:
    assert classify_segment(states, results, errors) == expected
