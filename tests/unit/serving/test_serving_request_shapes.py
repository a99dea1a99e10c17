"""The body shapes added for MLflow-style clients, the exact 422 wording the issue asks for, warning counts."""

from __future__ import annotations

from typing import Any

import pytest

from mlops_airflow.serving.requests import parse_rows

GOOD = {"hour": 7, "passengers": 2, "fare": 12.5, "payment_type": "card"}


@pytest.mark.parametrize(
    "payload",
    [
        {"inputs": {name: [value, value] for name, value in GOOD.items()}},
        {"inputs": [GOOD, GOOD]},
        {"dataframe_split": {"columns": list(GOOD), "data": [list(GOOD.values())] * 2}},
        {"dataframe_records": [GOOD, GOOD]},
    ],
    ids=["inputs-columns", "inputs-records", "dataframe_split", "dataframe_records"],
)
def test_mlflow_style_shapes_give_the_same_frame(payload: Any, schema: dict) -> None:
    result = parse_rows(payload, schema)
    assert result.ok, result.errors
    assert list(result.frame.columns) == ["hour", "passengers", "fare", "payment_type"]
    assert result.frame.to_dict(orient="records") == [GOOD, GOOD]
    assert str(result.frame["passengers"].dtype) == "Int64"


@pytest.mark.parametrize(
    ("payload", "errors"),
    [
        (
            {"inputs": {**{k: [v] for k, v in GOOD.items()}, "hour": [77]}},
            ["hour=77 is outside [0, 23]"],
        ),
        ({"inputs": {**{k: [v] for k, v in GOOD.items()}, "fare": ["abc"]}}, ['fare: expected number, got "abc"']),
        ({"inputs": {**{k: [v] for k, v in GOOD.items()}, "foo": [1]}}, ['unknown column "foo"']),
        ({"inputs": {k: [v] for k, v in GOOD.items() if k != "fare"}}, ['missing column "fare"']),
        ({"inputs": {"hour": [1, 2], "fare": [1.0]}}, ['the lists in "inputs" must all have the same length, '
                                                       'got "hour": 2, "fare": 1']),
        ({"inputs": {"hour": 7}}, ['inputs["hour"] must be a list of values (one per row), got 7']),
        ({"dataframe_split": [1]}, ['"dataframe_split" must be an object with "columns" and "data", got [1]']),
        ({"inputs": [GOOD], "rows": [GOOD]}, ["body has 'rows' and 'inputs': send only one of them"]),
        (
            {"inputs": {k: [v, v] for k, v in GOOD.items()} | {"hour": [1, 99]}},
            ["inputs[1].hour=99 is outside [0, 23]"],
        ),
    ],
    ids=["range", "type", "unknown", "missing", "ragged", "not-a-list", "split-not-object", "two-keys", "row-index"],
)
def test_columnar_inputs_errors_name_field_and_reason(payload: Any, errors: list[str], schema: dict) -> None:
    result = parse_rows(payload, schema)
    assert not result.ok
    assert result.errors == errors


def test_the_issue_s_exact_message_shapes_for_one_row(schema: dict) -> None:
    # the issue's examples, with our schema's names standing in for "age" and "bar"
    result = parse_rows({"row": {"hour": 77, "passengers": 2, "fare": "abc", "foo": 1}}, schema)
    assert result.errors == [
        'missing column "payment_type"',
        'unknown column "foo"',
        "hour=77 is outside [0, 23]",
        'fare: expected number, got "abc"',
    ]


def test_warning_fields_count_every_warning_even_past_the_message_cap(schema: dict) -> None:
    rows = [{**GOOD, "fare": 40.0, "passengers": 6}] * 150
    result = parse_rows({"rows": rows}, schema)
    assert result.ok
    assert result.warning_fields == {"passengers": 150, "fare": 150}
    assert len(result.warnings) == 101  # capped, with a count of the rest
    del schema["columns"][3]["declared"]
    unseen = parse_rows({"row": {**GOOD, "payment_type": "voucher"}}, schema)
    assert unseen.warning_fields == {"payment_type": 1}
    assert parse_rows({"row": GOOD}, schema).warning_fields == {}


def _bodies() -> list[Any]:
    import random

    rng = random.Random(7)
    good = [{"hour": rng.randrange(24), "passengers": rng.choice([1, 2, 3, None]), "fare": rng.choice([5, 7.25, 23.0]),
             "payment_type": rng.choice(["app", "card", "cash"])} for _ in range(64)]
    odd = [
        {**good[0], "hour": 7.0},  # an integral float: accepted, made an int
        {**good[0], "fare": 99.0},  # outside what training saw: a warning
        {**good[0], "hour": 77},  # a declared range: an error
        {**good[0], "fare": float("nan")},  # NaN is a null, and fare is not nullable
        {**good[0], "passengers": True},
        {**good[0], "hour": 2**64},
        {**good[0], "payment_type": None},
        {**good[0], "passengers": float("nan")},  # NaN besides the nulls of a nullable column: a null too
        {**good[0], "passengers": float("inf")},
        {**good[0], "passengers": 2.5},
        {**good[0], "payment_type": ["card"]},  # unhashable: the distinct-value check must not stumble
        {**good[0], "payment_type": 1},
    ]
    bodies: list[Any] = [{"rows": good}, {"columns": list(good[0]), "data": [list(r.values()) for r in good]}]
    no_passengers = [{**row, "passengers": None} for row in good]  # a nullable column without a value
    bodies.append({"columns": list(good[0]), "data": [list(r.values()) for r in no_passengers]})
    for row in odd:
        bodies.append({"rows": [*good[:40], row]})
        bodies.append({"columns": list(good[0]), "data": [list(r.values()) for r in [*good[:40], row]]})
    return bodies


@pytest.mark.parametrize("body", _bodies())
def test_the_vectorised_check_accepts_and_rejects_exactly_like_the_row_by_row_one(
    body: Any, schema: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mlops_airflow.serving.requests as requests_module

    fast = parse_rows(body, schema)
    monkeypatch.setattr(requests_module, "_VECTOR_ROWS", 10**9)
    slow = parse_rows(body, schema)
    assert (fast.errors, fast.warnings, fast.warning_fields) == (slow.errors, slow.warnings, slow.warning_fields)
    if slow.ok:
        assert fast.frame.equals(slow.frame)
        assert list(fast.frame.dtypes) == list(slow.frame.dtypes)
        assert fast.rows == slow.rows == len(fast.frame)
        # what the server does: values and typed columns now, the frame later (alone or merged)
        monkeypatch.setattr(requests_module, "_VECTOR_ROWS", 32)
        checker = requests_module.SchemaChecker(schema)
        deferred = parse_rows(body, checker, frame=False)
        assert checker.frame_of(deferred).equals(slow.frame)
        assert checker.build_frame(deferred.values).equals(slow.frame)


def test_the_vectorised_check_is_taken_for_plain_big_bodies(schema: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    import mlops_airflow.serving.requests as requests_module

    calls = []
    original = requests_module._fast_columns
    monkeypatch.setattr(requests_module, "_fast_columns", lambda *a: calls.append(1) or original(*a))
    assert parse_rows({"rows": [GOOD] * 40}, schema).ok and calls == [1]
    assert parse_rows({"rows": [GOOD] * 3}, schema).ok and calls == [1]  # small: row by row
