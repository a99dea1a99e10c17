"""Batch scoring's pure parts: partition splits, the frame checker, the operators' contract."""

from __future__ import annotations

from typing import Any

import pandas as pd
import pytest

from mlops_airflow.data.chunks import split_partitions
from mlops_airflow.serving.requests import check_frame

SCHEMA: dict[str, Any] = {
    "target": {"name": "tipped"},
    "columns": [
        {"name": "hour", "kind": "numeric", "dtype": "int64", "declared": {"min": 0, "max": 23}},
        {"name": "fare", "kind": "numeric", "dtype": "float64", "nullable": True,
         "observed": {"min": 0.0, "max": 100.0}},
        {"name": "paid", "kind": "numeric", "dtype": "bool"},
        {"name": "zone", "kind": "categorical", "dtype": "str", "declared": {"allowed": ["a", "b"]}},
    ],
}


def csv_file(size: int) -> dict[str, Any]:
    return {"size": size, "row_groups": None}


def parquet_file(groups: list[int]) -> dict[str, Any]:
    return {"size": sum(groups) * 10, "row_groups": groups}


def test_row_groups_split_into_contiguous_balanced_ranges() -> None:
    assert split_partitions([parquet_file([100] * 8)], 3) == [
        [{"file": 0, "row_groups": [0, 3]}],
        [{"file": 0, "row_groups": [3, 5]}],
        [{"file": 0, "row_groups": [5, 8]}],
    ]


def test_files_are_never_split_and_partitions_never_outnumber_units() -> None:
    files = [csv_file(1000), parquet_file([50]), csv_file(1000)]
    assert split_partitions(files, 10) == [
        [{"file": 0, "row_groups": None}],
        [{"file": 1, "row_groups": [0, 1]}],
        [{"file": 2, "row_groups": None}],
    ]
    assert split_partitions(files, 1) == [[{"file": 0, "row_groups": None}, {"file": 1, "row_groups": [0, 1]},
                                           {"file": 2, "row_groups": None}]]


def test_every_unit_lands_in_exactly_one_partition_in_order() -> None:
    files = [parquet_file([10, 500, 3, 70]), csv_file(4000), parquet_file([1] * 9)]
    for count in range(1, 16):
        layout = split_partitions(files, count)
        assert len(layout) <= count
        units = []
        for segments in layout:
            for segment in segments:
                groups = segment["row_groups"]
                units.extend([(segment["file"], None)] if groups is None else
                             [(segment["file"], g) for g in range(*groups)])
        assert units == [(0, g) for g in range(4)] + [(1, None)] + [(2, g) for g in range(9)]


def test_check_frame_parses_csv_text_and_names_bad_rows() -> None:
    frame = pd.DataFrame({"hour": ["7", "77", "x", "8"], "fare": ["1.5", None, "2", "250"],
                          "paid": ["true", "False", "yes", "TRUE"], "zone": ["a", "b", "a", "c"]}, dtype=object)
    checked = check_frame(frame, SCHEMA, first_row=10, text=True)
    assert checked.rejected == {
        1: ["row 11: hour=77 is outside [0, 23]"],
        2: ['row 12: hour: expected number, got "x"', 'row 12: paid: expected true or false, got "yes"'],
        3: ['row 13: zone="c" is not one of [a, b]'],
    }
    assert checked.frame is not None and list(checked.frame.index) == [0]
    assert checked.frame.dtypes.astype(str).to_dict() == {"hour": "int64", "fare": "float64", "paid": "bool",
                                                           "zone": "str"}
    assert checked.warning_count == 1 and "fare=250 is outside the range seen in training" in checked.warnings[0]


def test_check_frame_reports_columns_once_for_the_whole_frame() -> None:
    frame = pd.DataFrame({"hour": [1], "fare": [1.0], "zone": ["a"], "tipped": [1]})
    checked = check_frame(frame, SCHEMA)
    assert checked.frame is None and not checked.rejected
    assert checked.column_errors == ['missing column "paid"',
                                     'unknown column "tipped" (it is the target the model predicts)']


def test_check_frame_takes_typed_columns_strictly() -> None:
    frame = pd.DataFrame({"hour": ["7"], "fare": [1.0], "paid": [True], "zone": [3]})
    assert check_frame(frame, SCHEMA).column_errors == [
        "hour: expected numbers, the column holds text (str)",
        "zone: expected strings, the column holds numbers (int64)",
    ]
    assert check_frame(frame, SCHEMA, text=True).rejected == {0: ["row 1: zone: expected string, got 3"]}


def test_template_fields_are_pinned() -> None:
    from mlops_airflow.operators.batch import BatchPredictOperator, PlanBatchOperator, PublishBatchOperator

    assert tuple(BatchPredictOperator.template_fields) == (
        "registry_uri", "model_name", "input_uri", "output_uri", "alias", "id_columns", "ignore_columns",
        "chunk_rows", "on_invalid", "output_format",
    )
    assert tuple(PlanBatchOperator.template_fields) == (
        "registry_uri", "model_name", "input_uri", "output_uri", "alias", "id_columns", "ignore_columns",
        "chunk_rows", "partitions", "on_invalid", "output_format",
    )
    assert tuple(PublishBatchOperator.template_fields) == ("registry_uri", "partitions")


def test_batch_operator_takes_a_partition_or_the_settings_not_both() -> None:
    from mlops_airflow.operators.batch import BatchPredictOperator

    with pytest.raises(ValueError, match="give model_name, input_uri and output_uri, or a partition"):
        BatchPredictOperator(task_id="a", model_name="m", input_uri="in.csv")
    with pytest.raises(ValueError, match="input_uri come"):
        BatchPredictOperator(task_id="b", partition={"plan_uri": "x", "index": 0}, input_uri="in.csv")
    operator = BatchPredictOperator(task_id="c", model_name="m", input_uri="in.csv", output_uri="out",
                                    id_columns="trip_id, day", chunk_rows="500")
    assert operator.settings()["id_columns"] == ["trip_id", "day"]
    assert operator.settings()["chunk_rows"] == 500


@pytest.mark.parametrize("value", ["0", "1.5", "many", -3, None])
def test_chunk_rows_must_be_a_positive_whole_number(value: Any) -> None:
    from mlops_airflow.exceptions import ConfigError
    from mlops_airflow.operators.batch import BatchPredictOperator

    operator = BatchPredictOperator(task_id="d", model_name="m", input_uri="in.csv", output_uri="out",
                                    chunk_rows=value)
    with pytest.raises(ConfigError, match="chunk_rows must be a positive whole number"):
        operator.settings()


def test_check_frame_decides_every_row_exactly_as_a_request_would() -> None:
    """The vectorised pre-screen may only skip values the server accepts without a word."""
    import numpy as np

    from mlops_airflow.serving.requests import parse_rows

    rng = np.random.default_rng(7)
    n = 400
    schema = {**SCHEMA, "columns": [
        *SCHEMA["columns"][:3],
        {"name": "zone", "kind": "categorical", "dtype": "str", "nullable": True,
         "observed": {"categories": ["a", "b", "c"], "distinct": 3}},
        {"name": "count", "kind": "numeric", "dtype": "float64", "declared": {"allowed": [1, 2, 3]}},
    ]}
    frame = pd.DataFrame({
        "hour": rng.choice([0, 5, 23, 24, -1, 2**40], n).astype("int64"),
        "fare": rng.choice([0.0, 50.5, 100.0, 100.5, -3.0, np.nan, np.inf], n),
        "paid": rng.choice([True, False], n),
        "zone": pd.Series(rng.choice(["a", "b", "c", "d", None], n), dtype="str"),
        "count": rng.choice([1.0, 2.0, 3.0, 2.5, 4.0], n),
    })
    checked = check_frame(frame, schema, first_row=1)
    records = frame.to_dict(orient="records")
    accepted, warnings = [], 0
    for index, record in enumerate(records):
        single = parse_rows({"row": record}, schema)
        warnings += len(single.warnings)
        if single.errors:
            assert [m.removeprefix(f"row {index + 1}: ") for m in checked.rejected[index]] == single.errors
        else:
            assert index not in checked.rejected
            accepted.append(record)
    assert checked.rejected and accepted  # both kinds occur
    assert checked.warning_count == warnings
    expected = parse_rows({"rows": accepted}, schema, max_rows=n).frame
    assert checked.frame is not None and expected is not None
    pd.testing.assert_frame_equal(checked.frame.reset_index(drop=True), expected)


def _clean_frames() -> list[tuple[pd.DataFrame, bool]]:
    import numpy as np

    rng = np.random.default_rng(3)
    n = 300
    clean = pd.DataFrame({"hour": rng.integers(0, 24, n), "fare": rng.uniform(0, 100, n),
                          "paid": rng.choice([True, False], n), "zone": pd.Series(rng.choice(["a", "b"], n), dtype="str")})
    with_nulls = clean.assign(fare=clean["fare"].where(rng.random(n) > 0.1))  # fare is nullable
    float_hours = clean.assign(hour=clean["hour"].astype("float64"))  # integral floats in an integer column
    nullable_ints = clean.assign(hour=clean["hour"].astype("Int32"), fare=clean["fare"].astype("Float64"))
    some_bad = clean.assign(hour=clean["hour"].where(rng.random(n) > 0.05, 99))  # a few rows rejected
    as_text = clean.astype(str)
    return [(clean, False), (with_nulls, False), (float_hours, False), (nullable_ints, False), (some_bad, False),
            (with_nulls.astype(object).where(with_nulls.notna(), None), False), (as_text, True)]


@pytest.mark.parametrize(("frame", "text"), _clean_frames(),
                         ids=["clean", "nulls", "float-hours", "nullable-ints", "some-bad", "object", "csv-text"])
def test_check_frame_typed_columns_give_what_the_values_give(frame: pd.DataFrame, text: bool,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """Columns that need no per-value check skip the lists: the same frame, rows, warnings and dtypes."""
    import mlops_airflow.serving.requests as requests_module

    fast = check_frame(frame, SCHEMA, text=text)
    monkeypatch.setattr(requests_module, "_TYPED_COLUMNS", False)
    slow = check_frame(frame, SCHEMA, text=text)
    assert (fast.rejected, fast.warnings, fast.warning_count) == (slow.rejected, slow.warnings, slow.warning_count)
    assert fast.frame is not None and slow.frame is not None
    pd.testing.assert_frame_equal(fast.frame, slow.frame)


def test_check_frame_types_by_the_kept_rows_and_refuses_what_the_list_path_refuses() -> None:
    schema = {"columns": [
        {"name": "x", "kind": "numeric", "dtype": "int64", "nullable": True},
        {"name": "y", "kind": "numeric", "dtype": "int64", "declared": {"max": 5}},
        {"name": "s", "kind": "categorical", "dtype": "string", "nullable": True},
        {"name": "b", "kind": "numeric", "dtype": "bool"},
        {"name": "u", "kind": "numeric", "dtype": "uint8"},
    ]}
    frame = pd.DataFrame({
        "x": pd.Series([1, None, 3], dtype="Int64"),  # the null is in a rejected row
        "y": [1, 9, 1],
        "s": pd.Series(["a", None, "b"], dtype="str"),  # pandas' str, the schema's string
        "b": pd.Series([True, False, None], dtype="boolean"),  # a null where none is allowed
        "u": [0, 255, 300],
    })
    checked = check_frame(frame, schema)
    assert checked.rejected == {1: ["row 2: y=9 is above the maximum 5"],
                                2: ["row 3: b: null is not allowed", "row 3: u: 300 does not fit in uint8 [0, 255]"]}
    assert checked.frame is not None and list(checked.frame.index) == [0]
    assert checked.frame.dtypes.astype(str).to_dict() == {"x": "int64", "y": "int64", "s": "string", "b": "bool",
                                                          "u": "uint8"}
