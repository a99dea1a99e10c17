"""Bodies checked while decoded (msgspec types built from the schema) agree with parse_rows on every body."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest

from mlops_airflow.serving.requests import SchemaChecker, parse_rows
from mlops_airflow.serving.typed_bodies import decode_checked, decoders, parse_body

GOOD = {"hour": 7, "passengers": 2, "fare": 12.5, "payment_type": "card"}
NAMES = list(GOOD)


def _good_rows(n: int, seed: int = 7) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    return [{"hour": rng.randrange(24), "passengers": rng.choice([1, 2, 5, None]), "fare": rng.choice([5, 7.25, 23.0]),
             "payment_type": rng.choice(["app", "card", "cash"])} for _ in range(n)]


def _shapes(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The same rows in every shape the typed decoders take."""
    names = list(dict.fromkeys(name for row in rows for name in row))  # an extra column too, null where not given
    split = {"columns": names, "data": [[row.get(name) for name in names] for row in rows]}
    by_column = {"inputs": {name: [row.get(name) for row in rows] for name in names}}
    return [split, {"dataframe_split": split}, by_column,
            *({key: rows} for key in ("rows", "instances", "dataframe_records", "inputs"))]


def _raw(body: Any) -> bytes:
    return json.dumps(body).encode()  # NaN and Infinity written as Python writes them


def _typed_values(values: dict[str, list[Any]]) -> dict[str, list[tuple[type, Any]]]:
    """The values with their types; a number of a float column may be an int (a big body keeps what was sent)."""
    return {name: [(float if name == "fare" and value is not None else type(value), value) for value in column]
            for name, column in values.items()}


CLEAN = [body for n in (1, 3, 40) for body in _shapes(_good_rows(n))] + [
    {"dataframe_split": {"columns": NAMES, "data": [[23, None, 5, "cash"], [0, 5, 23.0, "app"]]}},  # bounds inclusive
    {"rows": [{**GOOD, "passengers": None}] * 33},  # a nullable column without any value
]

ODD = [
    {"hour": 7.0},  # an integral float: accepted by parse_rows, made an int
    {"fare": 99.0},  # outside what training saw: a warning
    {"fare": 4},  # below it, as an int
    {"hour": 77},  # outside the declared range: an error
    {"hour": -1},
    {"fare": float("nan")},  # not JSON: msgspec refuses, json.loads reads a null
    {"passengers": float("inf")},
    {"passengers": True},
    {"passengers": 2.5},
    {"hour": 2**64},
    {"payment_type": None},
    {"payment_type": 1},
    {"payment_type": "bitcoin"},
    {"payment_type": ["card"]},
    {"fare": "12.5"},
    {"tipped": 1},  # the target
    {"foo": 1},  # an unknown column
]


def _odd_bodies() -> list[dict[str, Any]]:
    bodies = []
    for change in ODD:
        rows = [*_good_rows(40), {**GOOD, **change}]
        bodies.extend(_shapes(rows))
    missing = [{name: value for name, value in row.items() if name != "fare"} for row in _good_rows(40)]
    bodies.append({"rows": missing})
    bodies.append({"columns": NAMES[::-1], "data": [[row[name] for name in NAMES[::-1]] for row in _good_rows(40)]})
    split = {"columns": NAMES, "data": [[row[name] for name in NAMES] for row in _good_rows(40)]}
    bodies.append({**split, "index": list(range(40))})  # pandas' split with its index: parse_rows ignores it
    bodies.append({"dataframe_split": split, "rows": _good_rows(2)})  # two shapes at once
    bodies.append({"rows": []})
    bodies.append({"dataframe_split": {"columns": NAMES, "data": [[7, 2, 12.5]]}})  # a short row
    bodies.append({"inputs": {"hour": [7, 8], "passengers": [1, 2], "fare": [12.5], "payment_type": ["app", "app"]}})
    bodies.append({"inputs": {"hour": [], "passengers": [], "fare": [], "payment_type": []}})
    return bodies


@pytest.mark.parametrize("body", CLEAN + _odd_bodies())
def test_typed_decoding_accepts_only_what_parse_rows_accepts_silently_with_the_same_values(
    body: Any, schema: dict
) -> None:
    checker = SchemaChecker(schema)
    raw = _raw(body)
    reference = parse_rows(json.loads(raw), checker, frame=False)
    typed = decode_checked(raw, checker, max_rows=1000)
    if typed is not None:
        assert reference.ok and not reference.warnings and not reference.warning_fields
        assert typed.ok and not typed.warnings and typed.rows == reference.rows
        assert _typed_values(typed.values) == _typed_values(reference.values)  # ints stay ints, floats floats
        assert all(type(value) is float for value in typed.values["fare"])  # as the row-by-row check gives them
        frame, expected = checker.frame_of(typed), checker.frame_of(reference)
        assert frame.equals(expected) and list(frame.dtypes) == list(expected.dtypes)
        assert checker.build_frame(typed.values).equals(expected)  # as the batcher frames it
    answer = parse_body(raw, checker, max_rows=1000)
    assert (answer.ok, answer.errors, answer.warnings, answer.warning_fields) == (
        reference.ok, reference.errors, reference.warnings, reference.warning_fields)
    if answer.ok:
        assert _typed_values(answer.values) == _typed_values(reference.values)


@pytest.mark.parametrize("body", CLEAN)
def test_clean_bodies_in_every_usual_shape_are_decoded_typed(body: Any, schema: dict) -> None:
    assert decode_checked(_raw(body), SchemaChecker(schema), max_rows=1000) is not None


@pytest.mark.parametrize("body", _odd_bodies())
def test_bodies_with_anything_to_say_are_left_to_parse_rows(body: Any, schema: dict) -> None:
    assert decode_checked(_raw(body), SchemaChecker(schema), max_rows=1000) is None


def test_limits_and_bodies_that_are_not_json_objects(schema: dict) -> None:
    checker = SchemaChecker(schema)
    body = _raw({"rows": _good_rows(5)})
    assert decode_checked(body, checker, max_rows=4) is None
    assert parse_body(body, checker, max_rows=4).errors == ["too many rows: 5 > the limit of 4 per request"]
    for raw in (b"", b"[1, 2]", b'\xef\xbb\xbf{"rows": []}', b'{"rows": [', b"   "):
        assert decode_checked(raw, checker, max_rows=10) is None
        assert not parse_body(raw, checker, max_rows=10).ok


def test_schemas_without_a_typed_form_and_names_that_are_not_identifiers(schema: dict) -> None:
    import copy

    dated = copy.deepcopy(schema)
    dated["columns"].append({"name": "pickup_at", "kind": "datetime", "dtype": "datetime64[ns]", "nullable": False})
    assert decoders(SchemaChecker(dated)) == {}  # date/times are parsed row by row
    row = {**GOOD, "pickup_at": "2026-01-05T08:00:00"}
    assert parse_body(_raw({"rows": [row] * 40}), SchemaChecker(dated), max_rows=100).ok

    renamed = copy.deepcopy(schema)
    for column, name in zip(renamed["columns"], ("hour of day", "class", "fare-usd", "1st payment"), strict=False):
        column["name"] = name
    checker = SchemaChecker(renamed)
    names = [column.name for column in checker.columns]
    rows = [dict(zip(names, [row[name] for name in NAMES], strict=True)) for row in _good_rows(40)]
    typed = decode_checked(_raw({"rows": rows}), checker, max_rows=100)
    assert typed is not None and list(checker.frame_of(typed).columns) == names


def test_numeric_allowed_sets_are_checked_the_row_by_row_way(schema: dict) -> None:
    import copy

    listed = copy.deepcopy(schema)
    listed["columns"][0]["declared"] = {"allowed": [7, 8]}
    checker = SchemaChecker(listed)
    assert decoders(checker) == {}
    answer = parse_body(_raw({"rows": [GOOD, {**GOOD, "hour": 9}]}), checker, max_rows=10)
    assert answer.errors == ["rows[1].hour=9 is not one of [7, 8]"]


def test_the_server_answers_clean_bodies_without_parse_rows(models: Any, eventually: Any,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    from fastapi.testclient import TestClient

    import mlops_airflow.serving.typed_bodies as typed_module
    from mlops_airflow.serving.app import create_app

    models.register()
    models.promote(1)
    calls = []
    monkeypatch.setattr(typed_module, "parse_rows", lambda *a, **k: calls.append(1) or parse_rows(*a, **k))
    with TestClient(create_app(models.registry, "taxi", poll_interval=0.02)) as client:
        eventually(lambda: client.get("/ready").json()["version"] == 1)
        for n in (40, 1500):  # through the micro-batcher, and a body big enough for the thread pool
            for body in _shapes(_good_rows(n)):
                response = client.post("/predict", json=body)
                assert response.status_code == 200 and len(response.json()["predictions"]) == n
        assert client.post("/predict", json={"row": GOOD}).status_code == 200  # "row": not a typed shape
        assert calls == [1]
        warned = client.post("/predict", json={"rows": [{**GOOD, "fare": 99.0}] * 40})
        assert warned.status_code == 200 and len(warned.json()["warnings"]) == 40 and calls == [1, 1]


def test_other_dtypes_and_contradicting_ranges(schema: dict) -> None:
    import copy

    wide = copy.deepcopy(schema)
    wide["columns"] += [
        {"name": "airport", "kind": "numeric", "dtype": "bool", "nullable": True},
        {"name": "zone", "kind": "categorical", "dtype": "object", "nullable": True},
        {"name": "kind", "kind": "categorical", "dtype": "category", "nullable": False},
        {"name": "share", "kind": "numeric", "dtype": "float32", "nullable": False},
        {"name": "seats", "kind": "numeric", "dtype": "uint8", "nullable": False},
    ]
    checker = SchemaChecker(wide)
    extra = [{"airport": True, "zone": "a", "kind": "x", "share": 0.1, "seats": 255},
             {"airport": None, "zone": None, "kind": "y", "share": 2, "seats": 0}]
    rows = [{**GOOD, **extra[index % 2]} for index in range(40)]
    for body in ({"rows": rows}, {"dataframe_split": {"columns": list(rows[0]), "data": [list(r.values()) for r in rows]}}):
        raw = _raw(body)
        typed = decode_checked(raw, checker, max_rows=100)
        assert typed is not None
        reference = parse_rows(json.loads(raw), checker, frame=False)
        frame, expected = checker.frame_of(typed), checker.frame_of(reference)
        assert frame.equals(expected) and list(frame.dtypes) == list(expected.dtypes)
    for change in ({"airport": 1}, {"seats": 256}, {"seats": -1}, {"share": True}, {"zone": 3}):
        raw = _raw({"rows": [*rows, {**rows[0], **change}]})
        assert decode_checked(raw, checker, max_rows=100) is None
        assert parse_body(raw, checker, max_rows=100).errors == parse_rows(json.loads(raw), checker).errors != []

    contradicting = copy.deepcopy(schema)
    contradicting["columns"][0]["declared"] = {"min": 30, "max": 40}  # training saw 0-23
    checker = SchemaChecker(contradicting)
    raw = _raw({"rows": [{**GOOD, "hour": 35}] * 40})
    assert decode_checked(raw, checker, max_rows=100) is None
    answer = parse_body(raw, checker, max_rows=100)
    assert answer.ok and answer.warning_fields == {"hour": 40}  # inside the declared range, outside the observed one

    broken = copy.deepcopy(schema)
    broken["columns"][2]["observed"]["min"] = float("nan")  # a bound msgspec refuses to build a type with
    checker = SchemaChecker(broken)
    assert decoders(checker) == {}
    raw = _raw({"rows": [GOOD] * 40})
    assert parse_body(raw, checker, max_rows=100).warnings == parse_rows(json.loads(raw), checker).warnings


def _mutated_bodies(count: int, seed: int) -> list[Any]:
    """Seeded random bodies: clean rows with some values swapped for odd ones, in random shapes and orders."""
    rng = random.Random(seed)
    odd = [None, True, False, 0, -1, 1, 23, 24, 2**63, 2**64, -(2**63) - 1, 0.0, -0.0, 4.99, 5, 23.0, 23.5, 1e308,
           2.5, 7.0, "7", "", "card", "CARD", "bitcoin", "caf\u00e9", "\ud800", [], {}, [1], float("nan"), float("inf")]
    bodies = []
    for _ in range(count):
        rows = _good_rows(rng.choice([1, 2, 31, 32, 40]), seed=rng.randrange(1000))
        for _ in range(rng.choice([0, 0, 1, 2])):
            rng.choice(rows)[rng.choice(NAMES)] = rng.choice(odd)
        if rng.random() < 0.1:
            rows = [{name: row[name] for name in reversed(NAMES)} for row in rows]  # another column order
        bodies.append(rng.choice(_shapes(rows)))
    return bodies


def test_random_bodies_keep_the_contract(schema: dict) -> None:
    checker = SchemaChecker(schema)
    taken = 0
    for body in _mutated_bodies(600, seed=11):
        raw = _raw(body)
        try:
            payload = json.loads(raw)
        except ValueError:
            continue
        reference = parse_rows(payload, checker, frame=False)
        typed = decode_checked(raw, checker, max_rows=1000)
        answer = parse_body(raw, checker, max_rows=1000)
        assert (answer.ok, answer.errors, answer.warnings) == (reference.ok, reference.errors, reference.warnings), body
        if typed is None:
            continue
        taken += 1
        assert reference.ok and not reference.warnings, body
        assert _typed_values(typed.values) == _typed_values(reference.values), body
        assert checker.build_frame(typed.values).equals(checker.build_frame(reference.values)), body
    assert 200 < taken < 500, taken  # both ways were exercised (318 typed of 600)


def test_bytes_that_are_not_utf8_are_not_valid_json(schema: dict) -> None:
    checker = SchemaChecker(schema)
    for raw in (b'{"rows": [{"hour": 7, "passengers": 2, "fare": 12.5, "payment_type": "ca\xffsh"}]}',
                b'{"rows": [{"hour": 7, "passengers": 2, "fare": 12.5, "payment_type": "\xed\xa0\x80"}]}'):
        assert decode_checked(raw, checker, max_rows=10) is None
        answer = parse_body(raw, checker, max_rows=10)
        assert not answer.ok and answer.errors[0].startswith("body is not valid JSON: 'utf-8' codec can't decode")


@pytest.mark.parametrize(("name", "declared", "values"), [
    ("hour", {"min": 0, "max": 9999999999999999}, [9999999999999999, 10**16, 2**53, 2**53 + 1, 5]),
    ("hour", {"min": -(2**63), "max": 2**63 - 1}, [2**63 - 1, 2**62, -(2**63), 2**53 - 1, 0]),
    ("fare", {"min": 0, "max": 2**53 + 3}, [9007199254740996, 9007199254740994, 2**53 + 3, 1e16, 12.5]),
    ("fare", {"min": -(2**53) - 3, "max": 10}, [-9007199254740996, -(2**53) - 3, -(2**53) - 4, 0.5]),
])
def test_bounds_a_float_cannot_hold_decide_as_the_row_by_row_check_does(
    name: str, declared: dict, values: list[Any], schema: dict
) -> None:
    import copy

    wide = copy.deepcopy(schema)
    column = next(column for column in wide["columns"] if column["name"] == name)
    column["declared"], column["observed"] = declared, {}
    checker = SchemaChecker(wide)
    for value in values:
        raw = _raw({"rows": [{**GOOD, name: value}]})
        reference = parse_rows(json.loads(raw), checker, frame=False)
        typed = decode_checked(raw, checker, max_rows=10)
        assert typed is None or (reference.ok and not reference.warnings), value
        assert parse_body(raw, checker, max_rows=10).errors == reference.errors, value


def test_a_bound_beyond_floats_leaves_every_body_to_the_row_by_row_check(schema: dict) -> None:
    import copy

    wide = copy.deepcopy(schema)
    wide["columns"][0]["declared"], wide["columns"][0]["observed"] = {"min": 0, "max": 10**400}, {}
    checker = SchemaChecker(wide)
    assert decoders(checker) == {}
    assert parse_body(_raw({"rows": [GOOD]}), checker, max_rows=10).ok
