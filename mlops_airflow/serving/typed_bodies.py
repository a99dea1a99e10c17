"""Request bodies checked while they are decoded: the common, clean case in one pass of C.

A body in one of the usual shapes, with its columns in the schema's order, is decoded
with msgspec against a type built from the schema: each column's JSON type, nullability,
the tightest of its declared and observed ranges, and its category set (a ``Literal``).
msgspec checks all of that while it parses, so a clean body needs no Python-level check
afterwards, only the conversion of each column for the frame. Anything this type does
not accept (an error, a value that would warn, another column order or shape, ``NaN``)
is left to :func:`~mlops_airflow.serving.requests.parse_rows`, which finds and words
every problem; so the server accepts exactly the bodies it accepted before, with the
same values, only sooner.

Shapes decoded here: ``{"dataframe_split": {"columns": [...], "data": [...]}}``,
``{"columns": [...], "data": [...]}``, records under ``rows``, ``instances``,
``dataframe_records`` or ``inputs``, and ``{"inputs": {column: [values]}}``.
"""

from __future__ import annotations

import math
import re
import weakref
from operator import attrgetter
from typing import TYPE_CHECKING, Annotated, Any, Literal

import msgspec

from mlops_airflow.serving.requests import (
    _VECTOR_ROWS,
    DEFAULT_MAX_COLUMNS,
    ParsedRows,
    SchemaChecker,
    _ColumnChecker,
    _frame_column,
    decode_json,
    gc_paused,
    parse_rows,
)

if TYPE_CHECKING:
    from collections.abc import Sequence

#: The first key of a JSON object body (which shape to try), read from its first bytes.
_FIRST_KEY = re.compile(rb'\s*\{\s*"([a-z_]+)"\s*:')
_RECORD_KEYS = ("rows", "instances", "dataframe_records", "inputs")
_LARGEST_FLOAT = 1.7976931348623157e308
#: Integers up to this size are floats exactly.
_EXACT_INT = 2**53


def parse_body(raw: bytes, checker: SchemaChecker, *, max_rows: int,
               max_columns: int = DEFAULT_MAX_COLUMNS) -> ParsedRows:
    """Check one request body against ``checker``'s schema, leaving the frame to the caller (``frame=False``)."""
    parsed = decode_checked(raw, checker, max_rows=max_rows)
    if parsed is not None:
        return parsed
    try:
        payload = decode_json(raw)
    except RecursionError:  # both decoders stop at a fixed depth, at once: no cost to bound here
        return ParsedRows(None, ["body is not valid JSON: it is nested too deeply"])
    except ValueError as exc:
        return ParsedRows(None, [f"body is not valid JSON: {exc}"])
    return parse_rows(payload, checker, max_rows=max_rows, frame=False, max_columns=max_columns)


def decode_checked(raw: bytes, checker: SchemaChecker, *, max_rows: int) -> ParsedRows | None:
    """The accepted rows of a clean body in a usual shape, or None to leave the body to ``parse_rows``."""
    built = decoders(checker)
    found = _FIRST_KEY.match(raw)
    decoder = built.get(found.group(1).decode()) if found and built else None
    if decoder is None:
        return None
    try:
        with gc_paused():
            body = decoder.decode(raw)
    except ValueError:  # msgspec's DecodeError / ValidationError, and bytes that are not UTF-8
        return None
    names = [column.name for column in checker.columns]
    if isinstance(body, _Split):
        split = body
    elif isinstance(body, _Envelope):
        split = body.dataframe_split
    else:
        split = None
    columns: dict[str, Sequence[Any]]
    if split is not None:
        if split.columns != names:  # another order: values were typed by position, so they prove nothing
            return None
        columns = dict(zip(names, zip(*split.data, strict=True), strict=True)) if split.data else {}
    else:
        held = getattr(body, type(body).__struct_fields__[0])
        fields = [(name, attrgetter(f"c{index}")) for index, name in enumerate(names)]
        if isinstance(held, list):  # records
            columns = {name: list(map(field, held)) for name, field in fields} if held else {}
        else:  # {"inputs": {column: [values]}}
            columns = {name: field(held) for name, field in fields}
    count = {len(column) for column in columns.values()}
    if len(count) != 1 or not 0 < (rows := count.pop()) <= max_rows:  # none, unequal columns, or too many
        return None
    typed = None
    if rows >= _VECTOR_ROWS:  # a small request is framed when predicted, with those it is batched with
        try:
            typed = {column.name: _frame_column(column, columns[column.name]) for column in checker.columns}
        except (TypeError, ValueError, ArithmeticError):  # e.g. a lone surrogate Arrow cannot hold
            return None
    values = {name: list(column) for name, column in columns.items()}
    return ParsedRows(None, values=values, rows=rows, columns=typed)


class _Split(msgspec.Struct, forbid_unknown_fields=True):
    columns: list[str]
    data: Any


class _Envelope(msgspec.Struct, forbid_unknown_fields=True):
    dataframe_split: Any


#: Decoders per served schema, built at its first request; gone with the model that held the schema.
_BUILT: weakref.WeakKeyDictionary[SchemaChecker, dict[str, msgspec.json.Decoder[Any]]] = weakref.WeakKeyDictionary()


def decoders(checker: SchemaChecker) -> dict[str, msgspec.json.Decoder[Any]]:
    """The decoders of ``checker``'s schema by a body's first key, built once per schema; empty if it has no typed form."""
    built = _BUILT.get(checker)
    if built is None:
        try:
            built = _build_decoders(checker.columns)
        except (TypeError, ValueError, ArithmeticError):  # bounds msgspec cannot hold (NaN, beyond floats)
            built = {}
        _BUILT[checker] = built
    return built


def _build_decoders(columns: list[_ColumnChecker]) -> dict[str, msgspec.json.Decoder[Any]]:
    types = [_value_type(column) for column in columns]
    if not columns or any(kind is None for kind in types):
        return {}
    row = tuple.__class_getitem__(tuple(types))
    split = msgspec.defstruct("Split", [("columns", list[str]), ("data", list[row])],  # type: ignore[valid-type]
                              bases=(_Split,), forbid_unknown_fields=True)
    envelope = msgspec.defstruct("Envelope", [("dataframe_split", split)], bases=(_Envelope,), forbid_unknown_fields=True)
    # fields by position, renamed to the columns: a column name need not be a Python identifier
    renamed = {f"c{index}": column.name for index, column in enumerate(columns)}
    record = msgspec.defstruct("Record", [(f"c{index}", kind) for index, kind in enumerate(types)],
                               rename=renamed, forbid_unknown_fields=True)
    decoders: dict[str, msgspec.json.Decoder[Any]] = {
        "dataframe_split": msgspec.json.Decoder(envelope),
        "columns": msgspec.json.Decoder(split),
    }
    by_column = msgspec.defstruct("Columns", [(f"c{index}", list[kind]) for index, kind in enumerate(types)],  # type: ignore[valid-type]
                                  rename=renamed, forbid_unknown_fields=True)
    for key in _RECORD_KEYS:
        held: Any = list[record] | by_column if key == "inputs" else list[record]  # type: ignore[valid-type]
        decoders[key] = msgspec.json.Decoder(msgspec.defstruct(f"Body_{key}", [(key, held)], forbid_unknown_fields=True))
    return decoders


def _value_type(column: _ColumnChecker) -> Any | None:
    """The msgspec type of the values the row-by-row check accepts without a word; None if there is none."""
    if column.family == "integer" and column.allowed_numbers is None:
        low, high = _bounds(column)
        # beyond 2**53 the row-by-row check compares a rounded float(value): those values go that way
        kind: Any = Annotated[int, msgspec.Meta(ge=max(column.int_range[0], math.ceil(low), -_EXACT_INT),
                                                le=min(column.int_range[1], math.floor(high), _EXACT_INT))]
    elif column.family == "float" and column.allowed_numbers is None:
        low, high = _bounds(column)
        kind = Annotated[float, msgspec.Meta(ge=low, le=high)]  # a JSON integer too, as a float (as checked row by row)
    elif column.family == "bool":
        kind = bool
    elif column.family == "text":
        sets = [given for given in (column.allowed_set, column.seen_categories) if given is not None]
        if not sets:
            kind = str
        else:
            allowed = sorted(set.intersection(*sets))
            if not allowed:
                return None
            kind = Literal[tuple(allowed)]
    else:  # date/times: parsed row by row
        return None
    return kind | None if column.nullable else kind


def _bounds(column: _ColumnChecker) -> tuple[float, float]:
    """The tightest of the declared and observed ranges (values inside neither err nor warn), as floats.

    The row-by-row check compares ``float(value)`` with each bound exactly; a bound a float
    cannot hold (an integer beyond 2**53) is rounded inward, so that a float passes the
    rounded bound exactly when it passes the true one. Finite: no bound means the largest float.
    """
    lows, highs = [column.low], [column.high]
    if column.seen_low is not None and column.seen_high is not None:  # only a complete observed range warns
        lows.append(column.seen_low)
        highs.append(column.seen_high)
    return (max((_inward(bound, math.inf) for bound in lows if bound is not None), default=-_LARGEST_FLOAT),
            min((_inward(bound, -math.inf) for bound in highs if bound is not None), default=_LARGEST_FLOAT))


def _inward(bound: float, towards: float) -> float:
    near = float(bound)
    return math.nextafter(near, towards) if (near < bound if towards > 0 else near > bound) else near
