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
"""

from __future__ import annotations

import json
import math
import numbers
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

#: Default limit on rows per request: bigger batches belong in a batch job, not a request.
DEFAULT_MAX_ROWS = 10_000
#: At most this many errors (and, separately, warnings) are listed; the rest are counted.
MAX_MESSAGES = 100
#: Allowed sets longer than this are abbreviated in messages.
_MAX_LISTED = 20

_SHAPE_HINT = (
    'body must be a JSON object with "rows" (a list of objects), "instances", '
    '"row" (one object), or "columns" and "data"'
)


@dataclass
class ParsedRows:
    """The outcome of checking one request: a frame for the model, or the reasons there is none."""

    #: The rows as the model's pipeline expects them (schema order and dtypes); None if there are errors.
    frame: pd.DataFrame | None
    #: Why the request is rejected; empty when it is accepted.
    errors: list[str] = field(default_factory=list)
    #: Accepted but unusual values (outside what training observed).
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors and self.frame is not None


class _Messages:
    """A capped list of messages that still counts what it leaves out."""

    def __init__(self, noun: str) -> None:
        self.noun = noun
        self.items: list[str] = []
        self.dropped = 0

    def add(self, message: str) -> None:
        if len(self.items) < MAX_MESSAGES:
            self.items.append(message)
        else:
            self.dropped += 1

    def __bool__(self) -> bool:
        return bool(self.items)

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
            if not -(2**63) <= value < 2**63:
                errors.add(f"{field_}: {show(value)} does not fit in a 64-bit integer")
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
                    f"{_range_text(self.seen_low, self.seen_high)}"
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
            warnings.add(f"{field_}={show(value)} was not seen in training")
        return value


def _records(payload: dict[str, Any], errors: _Messages) -> tuple[str, list[Any]] | None:
    """The list of records a body holds and the name it was sent under, or None (errors added)."""
    present = [key for key in ("rows", "instances", "row", "columns") if key in payload]
    if not present:
        errors.add(_SHAPE_HINT)
        return None
    if len(present) > 1:
        errors.add(f"body has {' and '.join(repr(k) for k in present)}: send only one of them")
        return None
    key = present[0]
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


def parse_rows(payload: Any, schema: dict[str, Any], *, max_rows: int = DEFAULT_MAX_ROWS) -> ParsedRows:
    """Check a request body against ``schema`` and build the frame the model predicts on.

    Never raises for a bad body: every problem found is in ``errors`` (and ``frame`` is
    None). Row numbers prefix the messages (``rows[3].hour``) when the request has more
    than one row.
    """
    errors = _Messages("errors")
    warnings = _Messages("warnings")
    if not isinstance(payload, dict):
        errors.add(_SHAPE_HINT)
        return ParsedRows(None, errors.as_list())

    columnar = "columns" in payload and not any(k in payload for k in ("rows", "instances", "row"))
    if columnar:
        parsed = _columnar(payload, errors)
    else:
        parsed = _records(payload, errors)
    if parsed is None:
        return ParsedRows(None, errors.as_list())
    key, rows = parsed
    if not rows:
        errors.add(f'"{key}" is empty: send at least one row')
        return ParsedRows(None, errors.as_list())
    if len(rows) > max_rows:
        errors.add(f"too many rows: {len(rows)} > the limit of {max_rows} per request")
        return ParsedRows(None, errors.as_list())

    checkers = [_ColumnChecker(column) for column in schema.get("columns", [])]
    known = {checker.name for checker in checkers}
    target = (schema.get("target") or {}).get("name")
    many = len(rows) > 1
    values: dict[str, list[Any]] = {checker.name: [] for checker in checkers}

    if columnar:
        # columns are declared once for the whole body, so are their problems
        names = payload["columns"]
        _report_columns(set(names), known, target, "", errors)
        rows = [dict(zip(names, row, strict=True)) for row in rows]
    else:
        bad_shape = False
        for index, row in enumerate(rows):
            if not isinstance(row, dict):
                errors.add(
                    f"{key}[{index}] must be an object mapping column names to values, got {show(row)}"
                )
                bad_shape = True
        if bad_shape:
            return ParsedRows(None, errors.as_list())
        _report_record_columns(rows, known, target, key, errors)

    for index, row in enumerate(rows):
        where = f"{key}[{index}]." if many else ""
        for checker in checkers:
            if checker.name in row:
                values[checker.name].append(checker.check(row[checker.name], where, errors, warnings))
            else:
                values[checker.name].append(None)
    if errors:
        return ParsedRows(None, errors.as_list(), warnings.as_list())
    try:
        frame = _build_frame(checkers, values)
    except (TypeError, ValueError) as exc:  # validated values should always convert; say so if not
        errors.add(f"cannot build the model's input from these rows: {exc}")
        return ParsedRows(None, errors.as_list(), warnings.as_list())
    return ParsedRows(frame, [], warnings.as_list())


def _columnar(payload: dict[str, Any], errors: _Messages) -> tuple[str, list[Any]] | None:
    names, data = payload.get("columns"), payload.get("data")
    if not isinstance(names, list) or not all(isinstance(name, str) for name in names):
        errors.add(f'"columns" must be a list of column names, got {show(names)}')
        return None
    duplicated = sorted({name for name in names if names.count(name) > 1})
    for name in duplicated:
        errors.add(f'column "{name}" is given more than once in "columns"')
    if not isinstance(data, list):
        errors.add(f'"data" must be a list of rows (lists of values, one per column), got {show(data)}')
        return None
    for index, row in enumerate(data):
        if not isinstance(row, list):
            errors.add(f"data[{index}] must be a list of values, got {show(row)}")
        elif len(row) != len(names):
            errors.add(f"data[{index}] has {len(row)} values, expected {len(names)} (one per column)")
    if errors:
        return None
    return "data", data


def _column_problem(name: str, known: set[str], target: str | None) -> str:
    if name in known:
        return f'missing column "{name}"'
    if name == target:
        return f'unknown column "{name}" (it is the target the model predicts)'
    return f'unknown column "{name}"'


def _report_columns(
    names: set[str], known: set[str], target: str | None, prefix: str, errors: _Messages
) -> None:
    for name in sorted(known - names):
        errors.add(prefix + _column_problem(name, known, target))
    for name in sorted(names - known):
        errors.add(prefix + _column_problem(name, known, target))


def _report_record_columns(
    rows: list[dict[str, Any]], known: set[str], target: str | None, key: str, errors: _Messages
) -> None:
    """Missing / unknown columns: once if every row has the problem, else per row."""
    if len(rows) == 1:
        _report_columns(set(rows[0]), known, target, "", errors)
        return
    affected: dict[str, list[int]] = {}
    for index, row in enumerate(rows):
        names = set(row)
        for name in (known - names) | (names - known):
            affected.setdefault(name, []).append(index)
    everywhere = sorted(name for name, indexes in affected.items() if len(indexes) == len(rows))
    for name in everywhere:
        errors.add(_column_problem(name, known, target) + f" (in all {len(rows)} rows)")
    for index, row in enumerate(rows):
        for name in sorted(set(row) ^ known):
            if name not in everywhere:
                errors.add(f"{key}[{index}]: " + _column_problem(name, known, target))


def _frame_dtype(checker: _ColumnChecker, has_nulls: bool) -> str | None:
    """The dtype a column gets in the frame: the training dtype where it can hold the values."""
    import pandas as pd

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
    if checker.dtype == "str" and int(pd.__version__.split(".")[0]) >= 3:
        return "str"
    return "object"


def _build_frame(checkers: list[_ColumnChecker], values: dict[str, list[Any]]) -> pd.DataFrame:
    import pandas as pd

    columns = {}
    for checker in checkers:
        column = values[checker.name]
        series = pd.Series(column, dtype=object)
        dtype = _frame_dtype(checker, any(value is None for value in column))
        if checker.family == "datetime":
            columns[checker.name] = pd.to_datetime(series).astype(checker.dtype)
        elif dtype == "object":
            columns[checker.name] = series
        else:
            columns[checker.name] = series.astype(dtype)  # type: ignore[call-overload]
    return pd.DataFrame(columns, columns=[checker.name for checker in checkers])
