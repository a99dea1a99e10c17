"""Checking prediction requests against a model's feature schema, before the model sees them.

A request is rejected (HTTP 422) for what the schema *forbids*: a missing or unknown
column, a value of the wrong type, a null where the column is not nullable, a value
outside a *declared* range or allowed set. Values merely outside what training
*observed* are accepted and reported as warnings: they feed drift checks, they are not
errors. Every problem is reported, not only the first, each naming the field and why::

    rows[3].hour=77 is outside [0, 23]
    rows[0].age: expected number, got "abc"
    missing column "bar"

Accepted bodies (all JSON objects)::

    {"rows": [{"hour": 7, ...}, ...]}              records
    {"instances": [{"hour": 7, ...}, ...]}         the same, under the name TF Serving uses
    {"row": {"hour": 7, ...}}                      one record
    {"columns": ["hour", ...], "data": [[7, ...], ...]}   split / columnar (pandas ``orient="split"``)
    {"inputs": {"hour": [7, ...], ...}}            columnar, one list per column
    {"inputs": [{"hour": 7, ...}, ...]}            records
    {"dataframe_split": {"columns": [...], "data": [...]}}, {"dataframe_records": [...]}
                                                   MLflow's scoring-server shapes, so MLflow clients work as they are
"""

from __future__ import annotations

import contextlib
import functools
import gc
import json
import math
import numbers
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Mapping, Sequence

    import pandas as pd

#: Default limit on rows per request: bigger batches belong in a batch job, not a request.
DEFAULT_MAX_ROWS = 10_000
#: Default limit on the column names one body (or one record of it) may carry, unless the model
#: has more features. Every name beyond the model's own is an error anyway; the limit only keeps
#: a body of a million names from costing seconds of sets and messages before it is refused.
DEFAULT_MAX_COLUMNS = 2048
#: At most this many errors (and, separately, warnings) are listed; the rest are counted.
MAX_MESSAGES = 100
#: Allowed sets longer than this are abbreviated in messages.
_MAX_LISTED = 20

_SHAPE_HINT = (
    'body must be a JSON object with "rows" (a list of objects), "instances", '
    '"row" (one object), "columns" and "data", "inputs", "dataframe_split" or "dataframe_records"'
)
#: The keys a body may hold its rows under; exactly one must be present.
_BODY_KEYS = ("rows", "instances", "row", "columns", "inputs", "dataframe_records", "dataframe_split")


def decode_json(raw: bytes) -> Any:
    """``json.loads(raw)``, about four times faster on the bodies that matter.

    msgspec (a dependency of Airflow itself) decodes standard JSON to the same Python values;
    what it refuses (``NaN``, which Python's own ``json.dumps`` writes, an integer beyond
    64 bits, a byte-order mark, malformed input) goes to ``json.loads``, so a body means
    what it always meant and a bad one gets the standard library's message. Bodies over
    :data:`LENIENT_JSON_BYTES` must be standard JSON (msgspec's refusal, as a ``ValueError``).
    """
    import msgspec

    try:
        with gc_paused():
            return msgspec.json.decode(raw)
    except (msgspec.DecodeError, RecursionError) as exc:
        if len(raw) > LENIENT_JSON_BYTES and not isinstance(exc, RecursionError):
            hint = " (NaN and Infinity are not JSON: send null for a missing value)" if b"NaN" in raw or (
                b"Infinity" in raw) else ""
            raise ValueError(f"{exc}{hint}; a body over {LENIENT_JSON_BYTES} bytes must be standard JSON") from None
        with gc_paused():
            return json.loads(raw)


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """The cyclic garbage collector off while a body is decoded (back on after, if it was on).

    A decoder makes one container per JSON array and object, and the collector runs every 700
    new containers, revisiting older ones as the body grows: 2.6 million one-element lists
    took 1.6 s to decode instead of 0.27 s, all of it holding the GIL. JSON holds no cycles,
    so nothing a decoder makes is the collector's business.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


#: Bodies up to this size that msgspec refuses are decoded again by ``json.loads``. Either decoder
#: holds the GIL for the whole body, so no other request of the process (not even ``/health``)
#: is answered meanwhile; ``json.loads`` takes three to five times msgspec's time, over a second
#: for 10 MiB of hostile JSON (a ``NaN`` at its end). A body this size costs it ~50 ms at most.
LENIENT_JSON_BYTES = 1024 * 1024


@dataclass
class ParsedRows:
    """The outcome of checking one request: a frame for the model, or the reasons there is none."""

    #: The rows as the model's pipeline expects them (schema order and dtypes); None if there are errors.
    frame: pd.DataFrame | None
    #: Why the request is rejected; empty when it is accepted.
    errors: list[str] = field(default_factory=list)
    #: Accepted but unusual values (outside what training observed).
    warnings: list[str] = field(default_factory=list)
    #: How many warnings each column got (all of them, also those left out of ``warnings``).
    warning_fields: dict[str, int] = field(default_factory=dict)
    #: The checked values column by column, when the frame is left to the caller (``frame=False``).
    values: dict[str, list[Any]] | None = None
    #: How many rows the request holds (when accepted).
    rows: int = 0
    #: The frame's columns, already typed, when the whole-column checks built them (``frame=False``).
    columns: dict[str, Any] | None = None

    @property
    def ok(self) -> bool:
        return not self.errors and (self.frame is not None or self.values is not None)


class SchemaChecker:
    """The checks of one feature schema, built once per served model instead of once per request."""

    def __init__(self, schema: dict[str, Any]) -> None:
        self.schema = schema
        self.columns = [_ColumnChecker(column) for column in schema.get("columns", [])]
        self.known = {checker.name for checker in self.columns}
        self.target = (schema.get("target") or {}).get("name")

    def column_limit(self, max_columns: int) -> int:
        """How many column names a body may carry: ``max_columns``, or the model's width if that is more."""
        return max(max_columns, len(self.columns))

    def too_many_columns(self, given: int, max_columns: int, where: str = "the body") -> str | None:
        """The refusal of ``given`` column names in ``where`` when they pass the limit, else None."""
        limit = self.column_limit(max_columns)
        if given <= limit:
            return None
        return (f"too many columns: {where} names {given}, more than the limit of {limit} per request "
                f"(the model takes {len(self.columns)})")

    def build_frame(self, values: dict[str, list[Any]]) -> pd.DataFrame:
        """The model's input from checked values (those of one request, or of several concatenated)."""
        return _build_frame(self.columns, values)

    def typed_columns(self, values: dict[str, list[Any]], *, text_as_objects: bool = False) -> dict[str, Any]:
        """Checked values, one array per schema column, typed as :meth:`build_frame` types them (no frame).

        With ``text_as_objects``, text the frame holds in a pandas string array or an object
        Series comes as the numpy object array ``np.asarray(column, dtype=object)`` would give
        (the compiled fast path's own form, verified as such: it reads nothing else of them).
        """
        return {checker.name: _frame_column(checker, values[checker.name], text_as_objects)
                for checker in self.columns}

    def frame_from(self, columns: dict[str, Any]) -> pd.DataFrame:
        """The model's input from :meth:`typed_columns` (or the whole-column checks' typed columns)."""
        return _frame_from(self.columns, columns)

    def frame_of(self, parsed: ParsedRows) -> pd.DataFrame:
        """The model's input for one accepted request (``parse_rows(..., frame=False)``)."""
        if parsed.columns is not None:
            return _frame_from(self.columns, parsed.columns)
        return _build_frame(self.columns, parsed.values or {})


class _Messages:
    """A capped list of messages that still counts what it leaves out."""

    def __init__(self, noun: str) -> None:
        self.noun = noun
        self.items: list[str] = []
        self.dropped = 0
        self.fields: dict[str, int] = {}

    def add(self, message: str, column: str | None = None) -> None:
        if column is not None:
            self.fields[column] = self.fields.get(column, 0) + 1
        if len(self.items) < MAX_MESSAGES:
            self.items.append(message)
        else:
            self.dropped += 1

    def __bool__(self) -> bool:
        return bool(self.items)

    @property
    def full(self) -> bool:
        """Whether a further message would only be counted."""
        return len(self.items) >= MAX_MESSAGES

    def as_list(self) -> list[str]:
        if self.dropped:
            return [*self.items, f"… and {self.dropped} more {self.noun}"]
        return list(self.items)


def show(value: Any, limit: int = 60) -> str:
    """A value as it would appear in JSON, shortened: ``"abc"``, ``77``, ``true``, ``null``."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        text = str(int(value))
    else:
        try:
            text = json.dumps(value, ensure_ascii=False, default=str)
        except ValueError:  # NaN / Infinity with allow_nan semantics differing
            text = str(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _is_null(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    # pandas' NA / NaT arrive when smoke rows come from a DataFrame, never from JSON
    return type(value).__name__ in ("NAType", "NaTType")


def _is_number(value: Any) -> bool:
    # bool is an int subclass in Python, but true is not a number in a request
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and type(value).__name__ != "bool_"


_INT64 = (-(2**63), 2**63 - 1)


def _int_range(dtype: str) -> tuple[int, int]:
    """The smallest and largest value of an integer dtype (``int32``, ``UInt8``, ...); int64's for anything else."""
    import numpy as np

    try:
        info = np.iinfo(dtype.lower())
    except (TypeError, ValueError):
        return _INT64
    return int(info.min), int(info.max)


def _dtype_family(column: dict[str, Any]) -> str:
    """``integer``, ``float``, ``bool``, ``datetime`` or ``text``: how values of a column are checked."""
    dtype = str(column.get("dtype", "")).lower()
    if column.get("kind") == "numeric":
        if dtype.startswith("bool"):
            return "bool"
        if dtype.startswith(("int", "uint")):
            return "integer"
        return "float"
    if dtype.startswith("datetime"):
        return "datetime"
    return "text"


def _range_text(low: Any, high: Any) -> str:
    return f"[{show(low)}, {show(high)}]"


def _allowed_text(allowed: list[Any]) -> str:
    shown = ", ".join(str(item) for item in allowed[:_MAX_LISTED])
    if len(allowed) > _MAX_LISTED:
        shown += f", … ({len(allowed)} in all)"
    return f"[{shown}]"


class _ColumnChecker:
    """Checks the values of one schema column and converts them for the frame."""

    def __init__(self, column: dict[str, Any]) -> None:
        self.name: str = column["name"]
        self.family = _dtype_family(column)
        self.dtype = str(column.get("dtype", ""))
        self.nullable = bool(column.get("nullable", False))
        #: The whole numbers the column's integer dtype holds (64 bits unless it says less).
        self.int_range = _int_range(self.dtype)
        declared = column.get("declared") or {}
        observed = column.get("observed") or {}
        self.low = declared.get("min")
        self.high = declared.get("max")
        allowed = declared.get("allowed")
        self.allowed = list(allowed) if allowed is not None else None
        self.allowed_set = {str(item) for item in allowed} if allowed is not None else None
        self.allowed_numbers = (
            {float(item) for item in allowed if _is_number(item)} if allowed is not None else None
        )
        self.seen_low = observed.get("min")
        self.seen_high = observed.get("max")
        categories = observed.get("categories")
        # The observed list is truncated for high-cardinality columns; only a complete
        # list can say that a category was never seen.
        complete = categories is not None and observed.get("distinct", len(categories)) <= len(categories)
        self.seen_categories = {str(item) for item in categories} if complete and categories else None

    def check(self, value: Any, where: str, errors: _Messages, warnings: _Messages) -> Any:
        """The value to put in the frame (None for null); problems go to ``errors`` / ``warnings``."""
        field_ = f"{where}{self.name}"
        if _is_null(value):
            if not self.nullable:
                errors.add(f"{field_}: null is not allowed")
            return None
        if self.family == "bool":
            if not isinstance(value, bool) and type(value).__name__ != "bool_":
                errors.add(f"{field_}: expected true or false, got {show(value)}")
                return None
            return bool(value)
        if self.family in ("integer", "float"):
            return self._check_number(value, field_, errors, warnings)
        if self.family == "datetime":
            return self._check_datetime(value, field_, errors)
        return self._check_category(value, field_, errors, warnings)

    def fast(self, values: Sequence[Any]) -> Any | None:
        """The column as the frame holds it, if the row-by-row check would find nothing to say; else None.

        The conversion the frame needs doubles as the check: a float column's numbers are
        converted once, checked, and handed on as they are.
        """
        if self.family == "text":
            return self._plain_text(values)
        types = set(map(type, values))
        nulls = type(None) in types
        if nulls:
            if not self.nullable:
                return None
            types.discard(type(None))
        if self.family in ("integer", "float"):
            if not types <= ({int} if self.family == "integer" else {int, float}):
                return None  # bools, strings, integral floats for an integer column, ...
            numbers = self._plain_numbers(values, nulls)
            if numbers is None:
                return None
            dtype = _frame_dtype(self, nulls)
            if dtype == "float64":
                return numbers
            if self.family == "integer" and dtype in _NUMPY_NUMBERS and float(abs(numbers).max()) <= 2.0**53:
                return numbers.astype(dtype)  # whole numbers within range, held exactly by the floats: no second pass
            return _frame_column(self, values)
        if self.family == "bool":
            return _frame_column(self, values) if types <= {bool} else None
        return None  # date/times: row by row

    def _plain_text(self, values: Sequence[Any]) -> Any | None:
        """A text column's frame column if every value is a string inside every set (or an allowed null); else None."""
        try:
            present = set(values)  # the few distinct values are checked, not every row
        except TypeError:  # a list or an object among them
            return None
        nulls = None in present
        if nulls:
            if not self.nullable:
                return None
            present.discard(None)
        # any value that is not a string is in `present` itself (no string equals it)
        if any(type(value) is not str for value in present):
            return None
        if self.allowed_set is not None and not present <= self.allowed_set:
            return None
        if self.seen_categories is not None and not present <= self.seen_categories:
            return None
        return _frame_column(self, values)

    def _plain_numbers(self, values: Sequence[Any], nulls: bool) -> Any | None:
        """``values`` as float64 (a null is NaN) if every number is finite and inside every range; else None."""
        import numpy as np

        try:
            numbers = np.array(values, dtype=np.float64)
        except OverflowError:  # an int beyond float range
            return None
        finite = np.isfinite(numbers)
        present = numbers
        if nulls:
            if int(np.count_nonzero(~finite)) != values.count(None):  # NaN or infinity besides the nulls
                return None
            present = numbers[finite]
            if not present.size:
                return numbers
        elif not finite.all():
            return None
        low, high = float(present.min()), float(present.max())
        if self.family == "integer" and not (self.int_range[0] <= low and high <= self.int_range[1]
                                             and -(2.0**63) < low and high < 2.0**63):
            return None  # beyond the dtype (near 2**63, floats are too coarse to tell): row by row
        if self.allowed_numbers is not None and not set(present.tolist()) <= self.allowed_numbers:
            return None
        if (self.low is not None and low < self.low) or (self.high is not None and high > self.high):
            return None
        if self.seen_low is not None and self.seen_high is not None and not (self.seen_low <= low and high <= self.seen_high):
            return None
        return numbers

    def _check_number(self, value: Any, field_: str, errors: _Messages, warnings: _Messages) -> Any:
        if not _is_number(value):
            errors.add(f"{field_}: expected number, got {show(value)}")
            return None
        try:
            number = float(value)
        except OverflowError:  # an integer too big for a float: JSON allows any number of digits
            number = math.inf
        if math.isinf(number):
            errors.add(f"{field_}: expected a finite number, got {show(value)}")
            return None
        if self.family == "integer":
            if not number.is_integer():
                errors.add(f"{field_}: expected an integer, got {show(value)}")
                return None
            value = int(value)
            low, high = self.int_range
            if not low <= value <= high:
                fits = "a 64-bit integer" if (low, high) == _INT64 else f"{self.dtype} [{low}, {high}]"
                errors.add(f"{field_}: {show(value)} does not fit in {fits}")
                return None
        else:
            value = number
        problem = None
        if self.allowed_numbers is not None and number not in self.allowed_numbers:
            problem = f"is not one of {_allowed_text(self.allowed or [])}"
        elif self.low is not None and self.high is not None:
            if not self.low <= number <= self.high:
                problem = f"is outside {_range_text(self.low, self.high)}"
        elif self.low is not None and number < self.low:
            problem = f"is below the minimum {show(self.low)}"
        elif self.high is not None and number > self.high:
            problem = f"is above the maximum {show(self.high)}"
        if problem is not None:
            errors.add(f"{field_}={show(value)} {problem}")
        elif self.seen_low is not None and self.seen_high is not None:
            if not self.seen_low <= number <= self.seen_high:
                warnings.add(
                    f"{field_}={show(value)} is outside the range seen in training "
                    f"{_range_text(self.seen_low, self.seen_high)}",
                    self.name,
                )
        return value

    def _check_datetime(self, value: Any, field_: str, errors: _Messages) -> Any:
        import pandas as pd

        if type(value).__name__ == "Timestamp":
            return value
        if isinstance(value, str):
            try:
                return pd.Timestamp(value)
            except ValueError:
                pass
        errors.add(f"{field_}: expected a date/time string, got {show(value)}")
        return None

    def _check_category(self, value: Any, field_: str, errors: _Messages, warnings: _Messages) -> Any:
        if not isinstance(value, str):
            errors.add(f"{field_}: expected string, got {show(value)}")
            return None
        if self.allowed_set is not None and value not in self.allowed_set:
            errors.add(f"{field_}={show(value)} is not one of {_allowed_text(self.allowed or [])}")
        elif self.seen_categories is not None and value not in self.seen_categories:
            warnings.add(f"{field_}={show(value)} was not seen in training", self.name)
        return value


def _body_key(payload: dict[str, Any], errors: _Messages) -> str | None:
    """The one key the body holds its rows under, or None (errors added)."""
    present = [key for key in _BODY_KEYS if key in payload]
    if not present:
        errors.add(_SHAPE_HINT)
        return None
    if len(present) > 1:
        errors.add(f"body has {' and '.join(repr(k) for k in present)}: send only one of them")
        return None
    return present[0]


def _records(payload: dict[str, Any], key: str, errors: _Messages) -> tuple[str, list[Any]] | None:
    """The list of records a body holds under ``key``, or None (errors added)."""
    if key == "row":
        if not isinstance(payload["row"], dict):
            errors.add(f'"row" must be an object mapping column names to values, got {show(payload["row"])}')
            return None
        return "row", [payload["row"]]
    rows = payload[key]
    if not isinstance(rows, list):
        errors.add(f'"{key}" must be a list of objects, got {show(rows)}')
        return None
    return key, rows


def parse_rows(
    payload: Any, schema: dict[str, Any] | SchemaChecker, *, max_rows: int = DEFAULT_MAX_ROWS, frame: bool = True,
    max_columns: int = DEFAULT_MAX_COLUMNS,
) -> ParsedRows:
    """Check a request body against ``schema`` and build the frame the model predicts on.

    Never raises for a bad body: every problem found is in ``errors`` (and ``frame`` is
    None). Row numbers prefix the messages (``rows[3].hour``) when the request has more
    than one row. With ``frame=False`` the checked values are returned in ``values`` and
    the caller builds the frame (the server builds one for several requests at once).
    A body naming more columns than ``checker.column_limit(max_columns)`` is refused before
    its names are compared with the schema: the work stays linear in the body and small.
    """
    checker = schema if isinstance(schema, SchemaChecker) else SchemaChecker(schema)
    errors = _Messages("errors")
    warnings = _Messages("warnings")
    if not isinstance(payload, dict):
        errors.add(_SHAPE_HINT)
        return ParsedRows(None, errors.as_list())

    body_key = _body_key(payload, errors)
    if body_key is None:
        return ParsedRows(None, errors.as_list())
    names: list[str] = []
    columnar = body_key in ("columns", "dataframe_split") or (
        body_key == "inputs" and isinstance(payload["inputs"], dict)
    )
    parsed: tuple[str, list[Any]] | None
    too_many = functools.partial(checker.too_many_columns, max_columns=max_columns)
    if body_key == "inputs" and columnar:
        parsed = _column_lists(payload["inputs"], errors, too_many, max_rows)
    elif body_key == "dataframe_split":
        split = payload["dataframe_split"]
        if isinstance(split, dict):
            parsed = _columnar(split, errors, too_many, max_rows)
        else:
            errors.add(f'"dataframe_split" must be an object with "columns" and "data", got {show(split)}')
            parsed = None
    elif columnar:
        parsed = _columnar(payload, errors, too_many, max_rows)
    else:
        parsed = _records(payload, body_key, errors)
    if parsed is None:
        return ParsedRows(None, errors.as_list())
    key, rows = parsed
    if columnar:
        names, rows = rows[0], rows[1:]
    if not rows:
        errors.add(f'"{key}" is empty: send at least one row')
        return ParsedRows(None, errors.as_list())
    if len(rows) > max_rows:
        errors.add(_too_many_rows(len(rows), max_rows))
        return ParsedRows(None, errors.as_list())

    checkers, known, target = checker.columns, checker.known, checker.target
    many = len(rows) > 1
    values: dict[str, list[Any]] = {checker.name: [] for checker in checkers}

    if columnar:
        # columns are declared once for the whole body, so are their problems
        _report_columns(set(names), known, target, "", errors)
        if not errors and len(rows) >= _VECTOR_ROWS:
            by_column = dict(zip(names, zip(*rows, strict=True), strict=True))
            typed = _fast_columns(checkers, by_column)
            if typed is not None:
                values = {name: list(by_column[name]) for name in values}
                return _accepted(checkers, values, len(rows), warnings, errors, frame, typed)
        rows = _known_records(names, rows, known)
    else:
        bad_shape = False
        for index, row in enumerate(rows):
            if not isinstance(row, dict):
                errors.add(
                    f"{key}[{index}] must be an object mapping column names to values, got {show(row)}"
                )
                bad_shape = True
            elif (refusal := too_many(len(row), where=f"{key}[{index}]" if many else "the row")) is not None:
                errors.add(refusal)  # one is enough: the others would say the same
                return ParsedRows(None, errors.as_list())
        if bad_shape:
            return ParsedRows(None, errors.as_list())
        _report_record_columns(rows, known, target, key, errors)
        if not errors and len(rows) >= _VECTOR_ROWS:
            listed = {column.name: [row[column.name] for row in rows] for column in checkers}
            typed = _fast_columns(checkers, listed)
            if typed is not None:
                return _accepted(checkers, listed, len(rows), warnings, errors, frame, typed)

    for index, row in enumerate(rows):
        where = f"{key}[{index}]." if many else ""
        for column in checkers:
            if column.name in row:
                values[column.name].append(column.check(row[column.name], where, errors, warnings))
            else:
                values[column.name].append(None)
    if errors:
        return ParsedRows(None, errors.as_list(), warnings.as_list(), warnings.fields)
    return _accepted(checkers, values, len(rows), warnings, errors, frame)


def _accepted(checkers: list[_ColumnChecker], values: dict[str, list[Any]], rows: int, warnings: _Messages,
              errors: _Messages, frame: bool, typed: dict[str, Any] | None = None) -> ParsedRows:
    if not frame:
        return ParsedRows(None, [], warnings.as_list(), warnings.fields, values=values, rows=rows, columns=typed)
    try:
        built = _frame_from(checkers, typed) if typed is not None else _build_frame(checkers, values)
    except (TypeError, ValueError) as exc:  # validated values should always convert; say so if not
        errors.add(f"cannot build the model's input from these rows: {exc}")
        return ParsedRows(None, errors.as_list(), warnings.as_list(), warnings.fields)
    return ParsedRows(built, [], warnings.as_list(), warnings.fields, rows=rows)


#: From this many rows on, columns are first checked whole with numpy (see _fast_columns).
_VECTOR_ROWS = 32


def _fast_columns(checkers: list[_ColumnChecker], columns: Mapping[str, Sequence[Any]]) -> dict[str, Any] | None:
    """Every column checked at once and typed for the frame, or None if any value is not plainly fine.

    Only the common case is decided here: values of the column's own JSON type, no null
    where none is allowed, nothing outside a declared range or set, nothing even outside
    what training saw (which would warn). Anything else returns None and the row-by-row
    check runs, which words each error and warning; so both paths accept exactly the same
    bodies, with the same values.
    """
    typed = {}
    for column in checkers:
        try:
            converted = column.fast(columns[column.name])
        except (TypeError, ValueError, ArithmeticError):  # e.g. a lone surrogate Arrow cannot hold
            return None  # the row-by-row way decides, and reports what it must
        if converted is None:
            return None
        typed[column.name] = converted
    return typed


def _too_many_rows(count: int, max_rows: int) -> str:
    return f"too many rows: {count} > the limit of {max_rows} per request"


def _column_lists(inputs: dict[str, Any], errors: _Messages, too_many: Callable[..., str | None],
                  max_rows: int) -> tuple[str, list[Any]] | None:
    """``{"inputs": {column: [values]}}`` as split-shaped rows: the names first, then one list per row."""
    refusal = too_many(len(inputs), where='"inputs"')
    if refusal is not None:
        errors.add(refusal)
        return None
    lengths = {}
    for name, column in inputs.items():
        if not isinstance(column, list):
            errors.add(f"inputs[{show(name)}] must be a list of values (one per row), got {show(column)}")
        else:
            lengths[name] = len(column)
    if errors:
        return None
    if max(lengths.values(), default=0) > max_rows:  # before the lists are turned into rows
        errors.add(_too_many_rows(max(lengths.values()), max_rows))
        return None
    if len(set(lengths.values())) > 1:
        shown = ", ".join(f"{show(name)}: {length}" for name, length in list(lengths.items())[:_MAX_LISTED])
        shown += ", …" if len(lengths) > _MAX_LISTED else ""
        errors.add(f'the lists in "inputs" must all have the same length, got {shown}')
        return None
    names = list(inputs)
    data = [list(row) for row in zip(*(inputs[name] for name in names), strict=True)]
    return _columnar({"columns": names, "data": data}, errors, too_many, max_rows, key="inputs")


def _columnar(payload: dict[str, Any], errors: _Messages, too_many: Callable[..., str | None], max_rows: int,
              key: str = "data") -> tuple[str, list[Any]] | None:
    """Split-shaped rows: ``(key, [names, row, row, ...])``, or None (errors added)."""
    names, data = payload.get("columns"), payload.get("data")
    refusal = too_many(len(names), where='"columns"') if isinstance(names, list) else None
    if refusal is not None:
        errors.add(refusal)
        return None
    if not isinstance(names, list) or not all(isinstance(name, str) for name in names):
        errors.add(f'"columns" must be a list of column names, got {show(names)}')
        return None
    counts = Counter(names)  # one pass: names.count() per name was quadratic in the number of columns
    duplicated = sorted(name for name, count in counts.items() if count > 1)
    for name in duplicated:
        errors.add(f'column {show(name)} is given more than once in "columns"')
    if not isinstance(data, list):
        errors.add(f'"data" must be a list of rows (lists of values, one per column), got {show(data)}')
        return None
    if len(data) > max_rows:  # before every row's type and length are looked at
        errors.add(_too_many_rows(len(data), max_rows))
        return None
    if set(map(type, data)) != {list} or set(map(len, data)) != {len(names)}:  # else nothing to say, row by row
        for index, row in enumerate(data):
            if not isinstance(row, list):
                errors.add(f"data[{index}] must be a list of values, got {show(row)}")
            elif len(row) != len(names):
                errors.add(f"data[{index}] has {len(row)} values, expected {len(names)} (one per column)")
    if errors:
        return None
    return key, [names, *data]


def _column_problem(name: str, known: set[str], target: str | None) -> str:
    if name in known:
        return f"missing column {show(name)}"
    if name == target:
        return f"unknown column {show(name)} (it is the target the model predicts)"
    return f"unknown column {show(name)}"  # shortened: a name may be megabytes long


def _report_columns(
    names: set[str], known: set[str], target: str | None, prefix: str, errors: _Messages
) -> None:
    for name in sorted(known - names):
        errors.add(prefix + _column_problem(name, known, target))
    for name in sorted(names - known):
        errors.add(prefix + _column_problem(name, known, target))


def _known_records(names: list[str], rows: list[list[Any]], known: set[str]) -> list[dict[str, Any]]:
    """Split rows as records of the schema's columns only: the others are reported already, never checked."""
    if len(names) == len(known) and known.issuperset(names):  # the usual body: names are the schema's
        return [dict(zip(names, row, strict=True)) for row in rows]
    positions = [(index, name) for index, name in enumerate(names) if name in known]
    return [{name: row[index] for index, name in positions} for row in rows]


def _report_record_columns(
    rows: list[dict[str, Any]], known: set[str], target: str | None, key: str, errors: _Messages
) -> None:
    """Missing / unknown columns: once if every row has the problem, else per row.

    Set operations and counting run in C, and only the messages that will be listed are
    worded: a body of a thousand rows of a thousand unknown names each costs ~0.1 s, not seconds.
    """
    if len(rows) == 1:
        _report_columns(set(rows[0]), known, target, "", errors)
        return
    differing = [(index, row.keys() ^ known) for index, row in enumerate(rows) if row.keys() != known]
    # a problem of every row is in every row's set: their intersection, which shrinks at once
    common = functools.reduce(set.intersection, (names for _, names in differing)) if (
        len(differing) == len(rows)) else set()
    everywhere = sorted(common)
    for name in everywhere:
        errors.add(_column_problem(name, known, target) + f" (in all {len(rows)} rows)")
    reported = set(everywhere)
    for index, names in differing:
        left = names - reported if reported else names
        if errors.full:
            errors.dropped += len(left)  # counted, not worded: they would not be listed
            continue
        for name in sorted(left):
            errors.add(f"{key}[{index}]: " + _column_problem(name, known, target))


def _frame_dtype(checker: _ColumnChecker, has_nulls: bool) -> str | None:
    """The dtype a column gets in the frame: the training dtype where it can hold the values."""
    if checker.family == "integer":
        # numpy ints cannot hold a null; pandas' nullable ints (capitalised) can
        if has_nulls and not checker.dtype[:1].isupper():
            return "float64"
        return checker.dtype
    if checker.family == "float":
        return checker.dtype
    if checker.family == "bool":
        return "boolean" if has_nulls else checker.dtype
    if checker.family == "datetime":
        return None
    if checker.dtype in ("string", "category", "object"):
        return checker.dtype
    # pandas 3 calls its default string dtype "str"; before 3, astype("str") would turn None into "None"
    if checker.dtype == "str" and _pandas_major() >= 3:
        return "str"
    return "object"


@functools.cache
def _pandas_major() -> int:
    import pandas as pd

    return int(pd.__version__.split(".")[0])


def _build_frame(checkers: list[_ColumnChecker], values: dict[str, list[Any]]) -> pd.DataFrame:
    return _frame_from(checkers, {checker.name: _frame_column(checker, values[checker.name]) for checker in checkers})


def _frame_from(checkers: list[_ColumnChecker], columns: dict[str, Any]) -> pd.DataFrame:
    import pandas as pd

    # built in schema order, so no columns= (which makes pandas reindex what it was given)
    return pd.DataFrame({checker.name: columns[checker.name] for checker in checkers})


def _frame_column(checker: _ColumnChecker, column: Sequence[Any], text_as_objects: bool = False) -> Any:
    """One checked column as the model gets it: the same values and dtype as ``pd.Series(column, dtype=object).astype(...)``.

    Numbers go to numpy and text to a pandas string array in one call each; building them
    through an object Series costs two to three times as much, which on a large request is
    time the model is not predicting. ``text_as_objects``: see :meth:`SchemaChecker.typed_columns`.
    """
    import numpy as np
    import pandas as pd

    dtype = _frame_dtype(checker, None in column)
    if dtype in _NUMPY_NUMBERS:  # a null is NaN here, as in a float Series
        return np.array(column, dtype=dtype)
    if dtype in ("str", "string"):  # checked text: strings and None only
        return _string_objects(column, dtype) if text_as_objects else _string_array(column, dtype)
    if dtype == "object" and text_as_objects:
        return np.array(column, dtype=object)  # what the object Series holds: the values themselves, None as None
    series = pd.Series(column, dtype=object)
    if checker.family == "datetime":
        return pd.to_datetime(series).astype(checker.dtype)
    if dtype == "object":
        return series
    return series.astype(dtype)  # type: ignore[call-overload]


def _string_array(values: Sequence[Any], dtype: str) -> Any:
    """Strings (and None) as a pandas ``str`` / ``string`` array; through Arrow directly when that is the storage.

    Half the cost of ``pd.array(values, dtype)``, which checks every value again first; the
    values here are already known to be strings or None.
    """
    import pandas as pd
    import pyarrow as pa

    target = _pandas_dtype(dtype)
    if getattr(target, "storage", None) == "pyarrow":
        return pd.arrays.ArrowStringArray(pa.array(values, type=pa.large_string()), dtype=target)
    return pd.array(values, dtype=target)


def _string_objects(values: Sequence[Any], dtype: str) -> Any:
    """``np.asarray(_string_array(values, dtype), dtype=object)`` without the pandas array: the strings, None as the dtype's NA."""
    import numpy as np

    target = _pandas_dtype(dtype)
    if getattr(target, "storage", None) == "pyarrow":
        try:
            for value in values:
                if value is not None:
                    value.encode()
        except UnicodeEncodeError:  # a lone surrogate, which Arrow cannot hold: fail as building the frame fails
            return _string_array(values, dtype)
    missing = target.na_value
    return np.array([missing if value is None else value for value in values], dtype=object)


@functools.cache
def _pandas_dtype(name: str) -> Any:
    """pandas' dtype object for a name (looked up once: ~10 µs each time otherwise)."""
    import pandas as pd

    return pd.api.types.pandas_dtype(name)


#: Training dtypes a list of checked numbers converts to directly (pandas' nullable ones go through a Series).
_NUMPY_NUMBERS = frozenset({"int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
                            "float16", "float32", "float64"})


# -- batches ---------------------------------------------------------------------------------


@dataclass
class CheckedFrame:
    """A batch of rows checked with the server's rules: the accepted rows, typed, and why the others are not."""

    #: The accepted rows in schema order and dtypes, indexed by their position in the input; None if none is.
    frame: pd.DataFrame | None
    #: Missing or unknown columns: they affect every row, so no row is accepted.
    column_errors: list[str] = field(default_factory=list)
    #: Position in the input frame -> why that row is rejected (every rejected row, every reason).
    rejected: dict[int, list[str]] = field(default_factory=dict)
    #: Accepted but unusual values (capped list) and how many there were in all.
    warnings: list[str] = field(default_factory=list)
    warning_count: int = 0


class _RowMessages(_Messages):
    """Errors also kept per row (uncapped), so a batch can set aside exactly the rows that fail."""

    def __init__(self) -> None:
        super().__init__("errors")
        self.row = -1
        self.by_row: dict[int, list[str]] = {}

    def add(self, message: str, column: str | None = None) -> None:
        super().add(message, column)
        self.by_row.setdefault(self.row, []).append(message)


def _parse_text(checker: _ColumnChecker, series: pd.Series) -> pd.Series:
    """CSV cells as the values a JSON request would carry: numbers and booleans parsed, the rest left as text."""
    import pandas as pd

    if checker.family in ("integer", "float"):
        numbers = pd.to_numeric(series, errors="coerce")
        if numbers.notna().sum() == series.notna().sum():
            return numbers
        # what does not parse stays text, so the checker reports it as a request's text would be
        return numbers.astype(object).where(numbers.notna(), series)
    if checker.family == "bool":
        words = {"true": True, "false": False}
        return series.map(lambda v: words.get(v.strip().lower(), v) if isinstance(v, str) else v)
    return series


def _suspects(checker: _ColumnChecker, series: pd.Series, nulls: Any) -> Any:
    """Positions whose values the checker must see: any that could fail or warn. The others pass as they are.

    A vectorised pre-screen, deliberately wider than the checker's rules (a null, a
    non-finite or out-of-range number, an unseen category, any value of an unexpected
    dtype is a suspect), so that the checker alone decides and words every problem.
    ``nulls`` is ``series.isna()`` as a numpy array.
    """
    import numpy as np
    import pandas as pd

    everything = np.ones(len(series), dtype=bool)
    # a null where nulls are allowed passes unchanged and unremarked: no need to show it to the checker
    passing_null = nulls if checker.nullable else None
    if checker.family in ("integer", "float"):
        if series.dtype.kind not in "iuf":
            return everything
        x = series.to_numpy(dtype=float, na_value=np.nan)
        with np.errstate(invalid="ignore"):
            bad = ~np.isfinite(x)
            if checker.family == "integer":
                smallest, largest = checker.int_range
                bad |= (x != np.floor(x)) | (x < smallest) | (x > largest) | (np.abs(x) >= 2.0**63)
            if checker.allowed_numbers is not None:
                bad |= ~np.isin(x, list(checker.allowed_numbers))
            for low, high in ((checker.low, checker.high), (checker.seen_low, checker.seen_high)):
                if low is not None:
                    bad |= x < low
                if high is not None:
                    bad |= x > high
        return bad if passing_null is None else bad & ~passing_null
    if checker.family == "bool":
        if series.dtype.kind != "b":
            return everything
        return np.zeros(len(series), dtype=bool) if passing_null is not None else nulls.copy()
    if checker.family == "text" and pd.api.types.is_string_dtype(series):
        bad = nulls.copy() if passing_null is None else np.zeros(len(series), dtype=bool)
        present = set(series.unique().tolist())  # a few distinct values: checked once each, not per row
        for allowed in (checker.allowed_set, checker.seen_categories):
            if allowed is not None and not {value for value in present if not _is_null(value)} <= allowed:
                outside = ~series.isin(allowed).to_numpy()
                bad |= outside if passing_null is None else outside & ~passing_null
        return bad
    return everything


def _report_column_type(checker: _ColumnChecker, series: pd.Series, problems: _Messages) -> None:
    """A typed column (Parquet) of the wrong kind fails every row the same way: say it once, for the column."""
    import pandas as pd

    numeric = pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series)
    if checker.family in ("integer", "float") and pd.api.types.is_string_dtype(series):
        problem = f"{checker.name}: expected numbers, the column holds text ({series.dtype})"
    elif checker.family == "text" and numeric:
        problem = f"{checker.name}: expected strings, the column holds numbers ({series.dtype})"
    else:
        return
    if series.notna().any():  # all null: the row checks say whether nulls are allowed
        problems.add(problem)


def check_frame(
    frame: pd.DataFrame, schema: dict[str, Any] | SchemaChecker, *, first_row: int = 1, text: bool = False
) -> CheckedFrame:
    """Check every row of ``frame`` (a batch, not a request) against ``schema`` with the server's own rules.

    Messages name rows by their number, ``first_row`` for the first
    (``row 12: hour=77 is outside [0, 23]``). With ``text=True`` the values are CSV cells:
    numbers and booleans written as text are parsed first, and what does not parse is
    reported, as in a request. Never raises for bad values.
    """
    compiled = schema if isinstance(schema, SchemaChecker) else SchemaChecker(schema)
    checkers = compiled.columns
    problems = _Messages("errors")
    _report_columns({str(name) for name in frame.columns}, compiled.known, compiled.target, "", problems)
    if problems:
        return CheckedFrame(None, column_errors=problems.as_list())
    given = {checker.name: frame[checker.name].reset_index(drop=True) for checker in checkers}
    if not text:
        for checker in checkers:
            _report_column_type(checker, given[checker.name], problems)
    if problems:
        return CheckedFrame(None, column_errors=problems.as_list())
    errors = _RowMessages()
    warnings = _Messages("warnings")
    columns: dict[str, Any] = {}  # per column: the series with its nulls (no value to check), or checked values
    for checker in checkers:
        series = given[checker.name]
        if text:
            series = _parse_text(checker, series)
        nulls = series.isna().to_numpy()
        suspects = _suspects(checker, series, nulls).nonzero()[0].tolist()
        if not suspects and _TYPED_COLUMNS:
            columns[checker.name] = (series, nulls)  # typed once the kept rows are known (their nulls decide)
            continue
        column = series.tolist()
        for index in suspects:
            errors.row = index
            column[index] = checker.check(column[index], f"row {first_row + index}: ", errors, warnings)
        columns[checker.name] = _null_as_none(checker, column)
    keep = [index for index in range(len(frame)) if index not in errors.by_row]
    result = CheckedFrame(None, rejected=errors.by_row, warnings=warnings.as_list(),
                          warning_count=len(warnings.items) + warnings.dropped)
    if keep:
        dropped = len(keep) < len(frame)
        accepted = {}
        for checker in checkers:
            column = columns[checker.name]
            if isinstance(column, tuple):
                series, nulls = column
                if dropped:
                    series, nulls = series.take(keep), nulls[keep]
                typed = _typed_column(checker, series, bool(nulls.any()))
                if typed is not None:
                    accepted[checker.name] = typed  # every value passes as it is: no list, no second conversion
                    continue
                column = _null_as_none(checker, series.tolist())
            elif dropped:
                column = [column[i] for i in keep]
            accepted[checker.name] = _frame_column(checker, column)
        result.frame = _frame_from(checkers, accepted).set_axis(keep)
    return result


def _null_as_none(checker: _ColumnChecker, column: list[Any]) -> list[Any]:
    """Nulls of a nullable column (NaN, NA, NaT) as None, as the checker gives them."""
    return [None if _is_null(value) else value for value in column] if checker.nullable else column


#: check_frame hands on a column that needs no per-value check as a typed column (tests turn it off to compare).
_TYPED_COLUMNS = True


def _typed_column(checker: _ColumnChecker, series: pd.Series, has_nulls: bool) -> Any | None:
    """``series`` in the frame's dtype, as :func:`_frame_column` would give it from the values; None to take that way."""
    import pandas as pd

    kind = series.dtype.kind
    if checker.family in ("integer", "float"):
        fits = kind in "iuf"
    elif checker.family == "text":
        fits = pd.api.types.is_string_dtype(series) and series.dtype != object
    elif checker.family == "bool":
        fits = kind == "b"
    else:
        fits = False
    dtype = _frame_dtype(checker, has_nulls) if fits else None
    if dtype is None or dtype in ("object", "category"):
        return None
    target = _pandas_dtype(dtype)  # an object, not a name: pandas says "str" == "string"
    return (series if series.dtype == target else series.astype(target)).array
