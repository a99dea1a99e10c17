"""parse_rows: every shape a body may take, every reason it may be refused, and the warnings."""

from __future__ import annotations

import json
from typing import Any

import pytest

from mlops_airflow.serving.requests import MAX_MESSAGES, parse_rows

GOOD = {"hour": 7, "passengers": 2, "fare": 12.5, "payment_type": "card"}


def row(**changes: Any) -> dict[str, Any]:
    values = {**GOOD, **changes}
    return {key: value for key, value in values.items() if value is not ...}


def errors_of(payload: Any, schema: dict[str, Any], **kwargs: Any) -> list[str]:
    result = parse_rows(payload, schema, **kwargs)
    assert result.frame is None and not result.ok
    return result.errors


# -- shapes -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "payload",
    [
        {"rows": [GOOD, GOOD]},
        {"instances": [GOOD, GOOD]},
        {"columns": list(GOOD), "data": [list(GOOD.values()), list(GOOD.values())]},
        {"columns": list(reversed(GOOD)), "data": [list(reversed(GOOD.values()))] * 2},
    ],
    ids=["records", "instances", "columnar", "columnar-reordered"],
)
def test_every_shape_gives_the_same_frame_in_schema_order_and_dtypes(payload: Any, schema: dict) -> None:
    result = parse_rows(payload, schema)
    assert result.ok and result.errors == [] and result.warnings == []
    frame = result.frame
    assert list(frame.columns) == ["hour", "passengers", "fare", "payment_type"]
    assert {name: str(dtype) for name, dtype in frame.dtypes.items()} == {
        "hour": "int64",
        "passengers": "Int64",
        "fare": "float64",
        "payment_type": "str",
    }
    assert frame.to_dict(orient="records") == [GOOD, GOOD]


def test_single_row_object(schema: dict) -> None:
    result = parse_rows({"row": GOOD}, schema)
    assert result.ok and len(result.frame) == 1


def test_nulls_in_a_nullable_column_become_missing_values(schema: dict) -> None:
    result = parse_rows({"rows": [row(passengers=None), row()]}, schema)
    assert result.ok
    assert result.frame["passengers"].isna().tolist() == [True, False]
    assert str(result.frame["passengers"].dtype) == "Int64"


def test_integral_floats_are_accepted_for_integer_columns(schema: dict) -> None:
    result = parse_rows({"row": row(hour=7.0)}, schema)
    assert result.ok and result.frame["hour"].tolist() == [7]


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ([GOOD], 'body must be a JSON object with "rows"'),
        ("rows", 'body must be a JSON object with "rows"'),
        ({"data": [GOOD]}, 'body must be a JSON object with "rows"'),
        ({"rows": GOOD}, '"rows" must be a list of objects, got {"hour": 7'),
        ({"rows": []}, '"rows" is empty: send at least one row'),
        ({"instances": []}, '"instances" is empty: send at least one row'),
        ({"row": [1, 2]}, '"row" must be an object mapping column names to values, got [1, 2]'),
        ({"rows": [GOOD], "row": GOOD}, "body has 'rows' and 'row': send only one of them"),
        ({"columns": "hour", "data": []}, '"columns" must be a list of column names, got "hour"'),
        ({"columns": ["hour"], "data": {"a": 1}}, '"data" must be a list of rows'),
        ({"columns": list(GOOD), "data": []}, '"data" is empty: send at least one row'),
    ],
)
def test_malformed_bodies(payload: Any, message: str, schema: dict) -> None:
    errors = errors_of(payload, schema)
    assert len(errors) == 1
    assert errors[0].startswith(message)


def test_records_that_are_not_objects_are_named(schema: dict) -> None:
    assert errors_of({"rows": [GOOD, 3, "x"]}, schema) == [
        "rows[1] must be an object mapping column names to values, got 3",
        'rows[2] must be an object mapping column names to values, got "x"',
    ]


def test_columnar_rows_of_the_wrong_length_and_duplicate_columns(schema: dict) -> None:
    payload = {"columns": [*GOOD, "hour"], "data": [[1, 2, 3, "app", 4], [1, 2]]}
    assert errors_of(payload, schema) == [
        'column "hour" is given more than once in "columns"',
        "data[1] has 2 values, expected 5 (one per column)",
    ]


def test_too_many_rows(schema: dict) -> None:
    assert errors_of({"rows": [GOOD] * 4}, schema, max_rows=3) == [
        "too many rows: 4 > the limit of 3 per request"
    ]
    assert parse_rows({"rows": [GOOD] * 3}, schema, max_rows=3).ok


def test_default_row_limit_is_ten_thousand(schema: dict) -> None:
    assert parse_rows({"rows": [GOOD] * 10_000}, schema).ok
    assert errors_of({"rows": [GOOD] * 10_001}, schema) == [
        "too many rows: 10001 > the limit of 10000 per request"
    ]


# -- columns and values ---------------------------------------------------------------------


def test_single_row_errors_have_no_row_prefix(schema: dict) -> None:
    payload = {"row": {"hour": 77, "fare": "abc", "payment_type": "bitcoin", "foo": 1}}
    assert errors_of(payload, schema) == [
        'missing column "passengers"',
        'unknown column "foo"',
        "hour=77 is outside [0, 23]",
        'fare: expected number, got "abc"',
        'payment_type="bitcoin" is not one of [app, card, cash]',
    ]


def test_all_errors_of_all_rows_are_collected_with_row_prefixes(schema: dict) -> None:
    payload = {
        "rows": [
            row(),
            row(hour=None, fare=True),
            row(payment_type=7, passengers=1.5),
            row(hour=-1, bar=2),
            row(fare=...),
        ]
    }
    assert errors_of(payload, schema) == [
        'rows[3]: unknown column "bar"',
        'rows[4]: missing column "fare"',
        "rows[1].hour: null is not allowed",
        "rows[1].fare: expected number, got true",
        "rows[2].passengers: expected an integer, got 1.5",
        "rows[2].payment_type: expected string, got 7",
        "rows[3].hour=-1 is outside [0, 23]",
    ]


def test_a_column_missing_from_every_row_is_reported_once(schema: dict) -> None:
    payload = {"instances": [row(fare=..., tip=1)] * 3}
    assert errors_of(payload, schema) == [
        'missing column "fare" (in all 3 rows)',
        'unknown column "tip" (in all 3 rows)',
    ]


def test_columnar_column_problems_are_reported_once(schema: dict) -> None:
    payload = {
        "columns": ["hour", "passengers", "payment_type", "foo"],
        "data": [[7, 1, "app", 0], [99, 1, "app", 0]],
    }
    assert errors_of(payload, schema) == [
        'missing column "fare"',
        'unknown column "foo"',
        "data[1].hour=99 is outside [0, 23]",
    ]


def test_sending_the_target_says_so(schema: dict) -> None:
    assert errors_of({"row": row(tipped=1)}, schema) == [
        'unknown column "tipped" (it is the target the model predicts)'
    ]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("abc", 'fare: expected number, got "abc"'),
        ("12.5", 'fare: expected number, got "12.5"'),
        (False, "fare: expected number, got false"),
        ([1], "fare: expected number, got [1]"),
        ({"v": 1}, 'fare: expected number, got {"v": 1}'),
        (None, "fare: null is not allowed"),
        (float("nan"), "fare: null is not allowed"),
        (float("inf"), "fare: expected a finite number, got Infinity"),
        (10**400, "fare: expected a finite number, got 1" + "0" * 58 + "…"),
    ],
    ids=["string", "numeric-string", "bool", "list", "object", "null", "nan", "inf", "huge"],
)
def test_numeric_type_errors(value: Any, message: str, schema: dict) -> None:
    assert errors_of({"row": row(fare=value)}, schema) == [message]


def test_integers_beyond_64_bits_are_refused(schema: dict) -> None:
    assert errors_of({"row": row(hour=2**64)}, schema) == [
        "hour: 18446744073709551616 does not fit in a 64-bit integer"
    ]


def test_declared_one_sided_ranges_and_numeric_allowed_sets(schema: dict) -> None:
    schema["columns"][2]["declared"] = {"min": 0}
    schema["columns"][1]["declared"] = {"allowed": [1, 2, 3, 4, 5, 6]}
    assert errors_of({"row": row(fare=-2.5, passengers=9)}, schema) == [
        "passengers=9 is not one of [1, 2, 3, 4, 5, 6]",
        "fare=-2.5 is below the minimum 0",
    ]
    schema["columns"][2]["declared"] = {"max": 100}
    assert errors_of({"row": row(fare=100.5)}, schema) == ["fare=100.5 is above the maximum 100"]


def test_declared_bounds_are_inclusive(schema: dict) -> None:
    assert parse_rows({"rows": [row(hour=0), row(hour=23)]}, schema).ok


def test_long_allowed_lists_are_abbreviated(schema: dict) -> None:
    schema["columns"][3]["declared"] = {"allowed": [f"c{i}" for i in range(30)]}
    (message,) = errors_of({"row": row(payment_type="zz")}, schema)
    assert message.startswith('payment_type="zz" is not one of [c0, c1,')
    assert message.endswith("c19, … (30 in all)]")


def test_errors_are_capped_and_counted(schema: dict) -> None:
    errors = errors_of({"rows": [row(hour=99)] * (MAX_MESSAGES + 5)}, schema, max_rows=1000)
    assert len(errors) == MAX_MESSAGES + 1
    assert errors[-1] == "… and 5 more errors"


def test_every_result_survives_json(schema: dict) -> None:
    result = parse_rows({"rows": [row(hour=77, fare=float("nan")), 5]}, schema)
    json.dumps({"errors": result.errors, "warnings": result.warnings})


# -- warnings -------------------------------------------------------------------------------


def test_values_outside_the_observed_range_are_warnings_not_errors(schema: dict) -> None:
    # observed: passengers 1..5, fare 5..23; no declared range for either
    result = parse_rows({"rows": [row(), row(passengers=6, fare=40.0)]}, schema)
    assert result.ok
    assert result.warnings == [
        "rows[1].passengers=6 is outside the range seen in training [1, 5]",
        "rows[1].fare=40 is outside the range seen in training [5, 23]",
    ]


def test_unseen_categories_warn_when_nothing_is_declared(schema: dict) -> None:
    del schema["columns"][3]["declared"]
    result = parse_rows({"row": row(payment_type="voucher")}, schema)
    assert result.ok
    assert result.warnings == ['payment_type="voucher" was not seen in training']


def test_truncated_observed_categories_never_warn(schema: dict) -> None:
    column = schema["columns"][3]
    del column["declared"]
    column["observed"]["distinct"] = 500  # the list holds only the most frequent ones
    assert parse_rows({"row": row(payment_type="voucher")}, schema).warnings == []


def test_a_value_that_is_an_error_is_not_also_a_warning(schema: dict) -> None:
    result = parse_rows({"row": row(hour=77)}, schema)
    assert result.errors == ["hour=77 is outside [0, 23]"]
    assert result.warnings == []


def test_other_dtypes_bool_datetime_and_object(schema: dict) -> None:
    schema["columns"] += [
        {"name": "airport", "kind": "numeric", "dtype": "bool", "nullable": False},
        {"name": "pickup", "kind": "categorical", "dtype": "datetime64[ns]", "nullable": True},
        {"name": "zone", "kind": "categorical", "dtype": "object", "nullable": True},
    ]
    extra = {"airport": True, "pickup": "2024-05-01T08:30:00", "zone": None}
    result = parse_rows({"rows": [row(**extra), row(**{**extra, "airport": False})]}, schema)
    assert result.ok, result.errors
    assert str(result.frame["airport"].dtype) == "bool"
    assert str(result.frame["pickup"].dtype) == "datetime64[ns]"
    assert result.frame["zone"].tolist() == [None, None]
    assert errors_of({"row": row(airport=1, pickup="not a date", zone="a")}, schema) == [
        "airport: expected true or false, got 1",
        'pickup: expected a date/time string, got "not a date"',
    ]


@pytest.mark.parametrize(
    ("dtype", "family_kind", "values"),
    [
        ("int64", "numeric", [3, 7, 11]),
        ("int64", "numeric", [3, None, 11]),  # a null: float64, as pandas would make it
        ("int32", "numeric", [3, 7, 11]),
        ("Int64", "numeric", [3, None, 11]),
        ("float64", "numeric", [1.5, 2, None]),
        ("float32", "numeric", [1.5, 2, 0.1]),
        ("str", "categorical", ["a", None, "b"]),
        ("string", "categorical", ["a", "b", None]),
        ("category", "categorical", ["a", "b", "a"]),
        ("object", "categorical", ["a", None, "b"]),
        ("bool", "numeric", [True, False, True]),
    ],
)
def test_the_frame_equals_what_an_object_series_cast_to_the_dtype_gives(
    dtype: str, family_kind: str, values: list[Any]
) -> None:
    """The fast column builders (numpy, pandas string arrays) change nothing the model sees."""
    import pandas as pd

    from mlops_airflow.serving.requests import SchemaChecker

    checker = SchemaChecker({"columns": [{"name": "x", "kind": family_kind, "dtype": dtype, "nullable": True}]})
    built = checker.build_frame({"x": values})
    target = "float64" if dtype == "int64" and None in values else dtype
    expected = pd.DataFrame({"x": pd.Series(values, dtype=object).astype(target)})
    pd.testing.assert_frame_equal(built, expected)


@pytest.mark.parametrize(
    ("dtype", "family_kind", "values"),
    [
        ("int64", "numeric", [3, None, 11]),
        ("float64", "numeric", [1.5, 2, None]),
        ("str", "categorical", ["a", None, "b"]),
        ("str", "categorical", ["\u2603", ""]),
        ("string", "categorical", ["a", "b", None]),
        ("object", "categorical", ["a", None, "b"]),
        ("category", "categorical", ["a", "b", "a"]),
        ("bool", "numeric", [True, False, True]),
    ],
)
def test_text_as_objects_is_what_the_frames_column_holds_as_objects(dtype: str, family_kind: str,
                                                                    values: list[Any]) -> None:
    """The compiled fast path's form: text in numpy object arrays (what it reads of a pandas one), the rest as the frame's."""
    import numpy as np
    import pandas as pd

    from mlops_airflow.serving.requests import SchemaChecker

    def objects(column: Any) -> list[tuple[type, str]]:
        """The same objects: a str, or the dtype's own missing value (NaN, NA or None)."""
        return [(type(value), value if isinstance(value, str) else repr(value)) for value in column]

    checker = SchemaChecker({"columns": [{"name": "x", "kind": family_kind, "dtype": dtype, "nullable": True}]})
    framed = checker.typed_columns({"x": values})["x"]
    given = checker.typed_columns({"x": values}, text_as_objects=True)["x"]
    if dtype in ("str", "string", "object"):
        assert type(given) is np.ndarray and given.dtype == object
        assert objects(given.tolist()) == objects(np.asarray(checker.build_frame({"x": values})["x"], dtype=object))
    else:
        assert type(given) is type(framed) and given.dtype == framed.dtype
        assert pd.Series(given).equals(pd.Series(framed))


def test_text_arrow_cannot_hold_fails_as_objects_as_it_fails_in_the_frame() -> None:
    from mlops_airflow.serving.requests import SchemaChecker

    checker = SchemaChecker({"columns": [{"name": "x", "kind": "categorical", "dtype": "str"}]})
    with pytest.raises(UnicodeEncodeError):
        checker.build_frame({"x": ["a", "\ud800"]})
    with pytest.raises(UnicodeEncodeError):
        checker.typed_columns({"x": ["a", "\ud800"]}, text_as_objects=True)


@pytest.mark.parametrize(
    "raw",
    [
        b'{"rows": [{"hour": 7, "fare": 12.5, "payment_type": "card", "ok": true, "n": null}]}',
        b'{"row": {"hour": NaN, "fare": Infinity}}',  # what Python's json.dumps writes for nan / inf
        b'{"row": {"hour": 123456789012345678901234567890}}',  # beyond 64 bits
        b'{"row": {"fare": 1e400}}',
        b'\xef\xbb\xbf{"row": {}}',  # a byte-order mark
        b'{"a": 1, "a": 2}',
        b'"\\ud800"',
        b"  [1.0000000000000002, -0, 5e-324]  ",
    ],
)
def test_bodies_decode_to_what_json_loads_gives(raw: bytes) -> None:
    from mlops_airflow.serving.requests import decode_json

    assert repr(decode_json(raw)) == repr(json.loads(raw))


@pytest.mark.parametrize("raw", [b"{not json", b"{} x", b'{"a": "\xff"}', b"[" * 100_000, b""])
def test_malformed_bodies_raise_what_json_loads_raises(raw: bytes) -> None:
    from mlops_airflow.serving.requests import decode_json

    with pytest.raises((ValueError, RecursionError)) as raised:
        decode_json(raw)
    with pytest.raises(raised.type):
        json.loads(raw)


def test_integers_outside_a_narrow_dtype_are_refused_naming_it() -> None:
    from mlops_airflow.serving.requests import SchemaChecker

    checker = SchemaChecker({"columns": [{"name": "n", "kind": "numeric", "dtype": "uint8"}]})
    for rows in (1, 40):  # row by row and vectorised
        result = parse_rows({"rows": [{"n": 7}] * (rows - 1) + [{"n": 300}]}, checker)
        assert not result.ok
        assert result.errors[-1].endswith("n: 300 does not fit in uint8 [0, 255]"), result.errors
        assert parse_rows({"rows": [{"n": 255}] * rows}, checker).frame["n"].tolist() == [255] * rows


def test_a_value_the_fast_conversion_cannot_take_goes_the_row_by_row_way() -> None:
    from mlops_airflow.serving.requests import SchemaChecker

    checker = SchemaChecker({"columns": [{"name": "t", "kind": "categorical", "dtype": "str"}]})
    deferred = parse_rows({"rows": [{"t": "a"}] * 39 + [{"t": "\ud800"}]}, checker, frame=False)
    assert deferred.ok and deferred.columns is None  # Arrow refused the surrogate: no typed columns
    with pytest.raises(UnicodeEncodeError):  # the server turns this into a 422 naming the cause
        checker.frame_of(deferred)


def test_many_column_names_cost_linear_time(schema: dict) -> None:
    """40,000 column names (a ~400 KB body) are refused in well under a second, not the half-minute of a quadratic scan."""
    import time

    from mlops_airflow.serving.requests import parse_rows

    names = [f"c{i}" for i in range(40_000)]
    body = {"columns": names + names[:3], "data": [[0] * (len(names) + 3)]}
    started = time.process_time()
    parsed = parse_rows(body, schema, max_columns=50_000)  # a limit above them: every name is compared
    elapsed = time.process_time() - started
    assert 'column "c0" is given more than once in "columns"' in parsed.errors
    assert elapsed < 3.0, elapsed  # CPU time, not wall: a busy machine does not make it fail
    assert parse_rows(body, schema).errors == [  # the default limit refuses them before any comparison
        'too many columns: "columns" names 40003, more than the limit of 2048 per request (the model takes 4)']
