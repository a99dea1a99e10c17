"""Inferring a starting validation spec from a reference dataset.

A spec written by hand from nothing is tedious, and one written from memory is wrong.
:func:`infer_spec` profiles a dataset that is known to be good and proposes the checks
it passes, loosened enough that the next good batch passes too; a person then reviews
it (above all the ranges: the model server rejects requests outside the declared ones)
and commits it. What it proposes, per column:

- ``type``: ``integer``, ``number``, ``string`` or ``boolean`` (none for other dtypes,
  e.g. dates: the column must then merely exist). A CSV float column whose values are
  all whole (an integer column with empty cells) is ``integer``; with typed sources
  (Parquet, SQL) the dtype decides, since those are checked strictly.
- ``min`` / ``max``: the observed range widened by ``margin`` of its width on each side,
  integers rounded outward, and never below 0 for a column with no negative value.
  Not for identifier columns (new rows bring new ids) nor for class labels.
- ``allowed``: the observed values of a string or boolean-like column with at most
  ``max_categories`` distinct values, and of an integer target with a handful of values
  (class labels).
- ``nullable: false`` when the column has no nulls, else ``mostly``: the observed
  non-null fraction less twice the null rate and one point more, rounded down.
- ``unique: true`` for identifier-like columns: every value distinct, no nulls, and
  integer or short text without spaces.
- ``row_count: {min: ...}``: a tenth of the reference's rows, rounded down.

Every proposal holds on the reference itself: ``validate_dataset(frame, spec=infer_spec(frame))``
passes. :func:`dump_spec_yaml` writes the spec as commented YAML, one line per column.
"""

from __future__ import annotations

import math
import re
from typing import TYPE_CHECKING, Any

import yaml

from mlops_airflow.validation.spec import SPEC_FORMAT_VERSION

if TYPE_CHECKING:
    import pandas as pd

#: Below this many rows "every value distinct" says nothing about a column being an id.
_MIN_ROWS_FOR_UNIQUE = 20
#: An integer target with at most this many distinct values is read as class labels.
_MAX_LABELS = 10
_ID_TEXT = re.compile(r"^[^\s]{1,64}$")
_BOOLEAN_WORDS = {"true", "false"}
_TYPED_SOURCES = ("parquet", "sql")


def infer_spec(
    frame: pd.DataFrame,
    *,
    target: str | None = None,
    margin: float = 0.1,
    max_categories: int = 50,
    source_format: str = "csv",
) -> dict:
    """A validation spec (the :mod:`~mlops_airflow.validation.spec` format) that ``frame`` passes.

    ``target`` (optional) is the label column: it must exist, and an integer target with
    few values gets its labels as ``allowed`` rather than a range. ``margin`` is the
    fraction of each numeric column's observed width added below and above it;
    ``max_categories`` the most distinct values listed as ``allowed``; ``source_format``
    (``csv``, ``parquet``, ``sql``) whether types are cast (CSV) or must match the dtype.
    Raises ``ValueError`` for a bad argument or an empty frame.
    """
    if not (isinstance(margin, int | float) and math.isfinite(margin) and margin >= 0):
        raise ValueError(f"margin must be a number >= 0, got {margin!r}")
    if not isinstance(max_categories, int) or max_categories < 0:
        raise ValueError(f"max_categories must be a whole number >= 0, got {max_categories!r}")
    if len(frame) == 0 or len(frame.columns) == 0:
        raise ValueError("cannot infer a spec from an empty dataset")
    if target is not None and target not in frame.columns:
        shown = ", ".join(str(c) for c in list(frame.columns)[:50])
        raise ValueError(f"target column {target!r} is not in the data (columns: {shown})")
    strict = source_format in _TYPED_SOURCES
    columns: dict[str, dict[str, Any]] = {}
    for name in frame.columns:
        columns[str(name)] = _infer_column(
            frame[name],
            is_target=name == target,
            margin=float(margin),
            max_categories=max_categories,
            strict=strict,
        )
    return {
        "format_version": SPEC_FORMAT_VERSION,
        "columns": columns,
        "row_count": {"min": _round_down_nicely(len(frame) // 10) or 1},
        "allow_extra_columns": True,
    }


def dump_spec_yaml(spec: dict, *, source: str) -> str:
    """``spec`` as YAML: a header saying where it came from and what to review, one line per column."""
    lines = [
        f"# Data validation spec inferred from {source} by `mlops-airflow suite infer`.",
        "# REVIEW BEFORE USE: min/max are the observed ranges widened by a margin, and `allowed`",
        "# lists only the values seen. Set them to what the data may truly hold: the model server",
        "# rejects requests outside the declared ranges and sets.",
        "# Format: see mlops_airflow/validation/spec.py.",
        f"format_version: {spec.get('format_version', SPEC_FORMAT_VERSION)}",
        "columns:",
    ]
    keys = {name: _yaml_key(name) + ":" for name in spec["columns"]}
    # Values line up in one column, as in a hand-written spec (up to a point: long names).
    width = min(max(len(key) for key in keys.values()), 32)
    for name, column in spec["columns"].items():
        lines.append(f"  {keys[name]:<{width}} {_flow(column or {})}")
    for key in ("row_count", "allow_extra_columns"):
        if spec.get(key) is not None:
            value = spec[key]
            lines.append(f"{key}: {_flow(value) if isinstance(value, dict) else _scalar(value)}")
    return "\n".join(lines) + "\n"


# -- one column -----------------------------------------------------------------------------


def _infer_column(
    series: pd.Series, *, is_target: bool, margin: float, max_categories: int, strict: bool
) -> dict[str, Any]:
    import pandas as pd

    rows = len(series)
    nulls = int(series.isna().sum())
    present = series.dropna()
    if not len(present):
        return {}  # all null: nothing to say beyond "the column exists"
    kind = _kind(series, present, strict=strict)
    column: dict[str, Any] = {} if kind is None else {"type": kind}

    distinct = int(present.nunique())
    identifier = (
        kind in ("integer", "string")
        and not is_target
        and nulls == 0
        and rows >= _MIN_ROWS_FOR_UNIQUE
        and distinct == rows
        and (kind == "integer" or bool(present.astype(str).str.match(_ID_TEXT).all()))
    )
    if kind in ("integer", "number"):
        values = pd.to_numeric(present, errors="coerce").to_numpy(dtype=float, na_value=math.nan)
        labels = is_target and kind == "integer" and distinct <= min(_MAX_LABELS, max_categories)
        if labels:
            column["allowed"] = sorted(int(v) for v in set(values.tolist()))
        elif not identifier and bool(_all_finite(values)):
            column.update(_widened_range(values, kind=kind, margin=margin))
    elif kind == "string" and not identifier and distinct <= max_categories:
        column["allowed"] = sorted(str(v) for v in present.unique())
    if identifier:
        column["unique"] = True

    if nulls == 0 or is_target:  # target nulls fail the minimal check anyway
        column["nullable"] = False
    else:
        mostly = math.floor((1 - 2 * nulls / rows - 0.01) * 100) / 100
        if mostly > 0:  # mostly null: a null check would say nothing
            column["mostly"] = mostly
    return column


def _kind(series: pd.Series, present: pd.Series, *, strict: bool) -> str | None:
    import pandas as pd

    dtype_kind = series.dtype.kind
    if dtype_kind == "b":
        return "boolean"
    if dtype_kind in "iu":
        return "integer"
    if dtype_kind == "f":
        whole = bool((present % 1 == 0).all())
        # A CSV integer column with empty cells reads as float; Parquet keeps its float dtype.
        return "integer" if whole and not strict else "number"
    inferred = pd.api.types.infer_dtype(present, skipna=True)
    if inferred == "boolean":
        # Booleans with nulls are an object column: castable from CSV, not a strict bool dtype.
        return None if strict else "boolean"
    if inferred == "string":
        if not strict and set(present.str.strip().str.lower().unique()) <= _BOOLEAN_WORDS:
            return "boolean"
        return "string"
    return None


def _all_finite(values: Any) -> bool:
    import numpy as np

    return bool(np.isfinite(values).all())


def _widened_range(values: Any, *, kind: str, margin: float) -> dict[str, int | float]:
    lo, hi = float(values.min()), float(values.max())
    pad = margin * (hi - lo) if hi > lo else margin * abs(lo)
    low, high = lo - pad, hi + pad
    if lo >= 0:
        low = max(low, 0.0)  # a count or a price does not turn negative
    if kind == "integer":
        return {"min": math.floor(low), "max": math.ceil(high)}
    step = _step(high - low)
    return {"min": _round(low, step, math.floor, limit=lo), "max": _round(high, step, math.ceil, limit=hi)}


def _step(width: float) -> float:
    """A round step about a hundredth of ``width``: bounds read as 0.5 or 330, not 0.4837 or 329.61."""
    if width <= 0:
        return 1.0
    return float(10 ** (math.floor(math.log10(width)) - 2))


def _round(value: float, step: float, direction: Any, *, limit: float) -> float:
    """``value`` rounded outward to a multiple of ``step``, never inside ``limit`` (the observed bound)."""
    digits = max(0, -math.floor(math.log10(step)))
    rounded = round(direction(value / step) * step, digits)
    # Float arithmetic may land a hair inside the observed value: step out once more.
    if direction is math.floor and rounded > limit:
        rounded = round(rounded - step, digits)
    if direction is math.ceil and rounded < limit:
        rounded = round(rounded + step, digits)
    return float(rounded)


def _round_down_nicely(count: int) -> int:
    """``count`` rounded down to one significant digit (4123 -> 4000)."""
    if count <= 0:
        return 0
    unit = 10 ** (len(str(count)) - 1)
    return (count // unit) * unit


# -- YAML -----------------------------------------------------------------------------------


def _yaml_key(name: str) -> str:
    # A one-item list dumps the name as YAML would write it as a key: quoted only when needed.
    return yaml.safe_dump([name], default_flow_style=False, width=10**9).strip()[2:]


def _scalar(value: Any) -> str:
    return yaml.safe_dump([value], default_flow_style=False, width=10**9).strip()[2:]


def _flow(mapping: dict) -> str:
    return yaml.safe_dump(mapping, default_flow_style=True, sort_keys=False, width=10**9).strip()
