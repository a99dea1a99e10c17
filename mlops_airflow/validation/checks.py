"""Validating a dataset: the minimal check, declared types, then a Great Expectations suite.

Every validation runs, in order:

1. the minimal check, with or without a spec: the frame has rows, the target column
   exists and has no nulls, and (given the champion's ``{name: kind}``) the feature
   columns are the champion's: a missing feature is an error, an extra one a warning;
2. with a spec: each declared column exists and has its declared type. CSV carries no
   types, so a column must be castable and is then cast (values that cannot be cast
   fail the check and become nulls in the returned frame); Parquet and SQL columns must
   already have the type;
3. the spec's value checks as a Great Expectations 1.x suite in an ephemeral context,
   with SUMMARY results (never COMPLETE: those grow with the data).

The outcome's summary is small and JSON-serialisable whatever the data size: counts, at
most a few sample values per check (none with ``redact_samples``) and a per-column
profile.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mlops_airflow.validation.report import REDACTED, describe_check
from mlops_airflow.validation.spec import load_validation_spec

if TYPE_CHECKING:
    import pandas as pd

SAMPLE_SIZE = 5
MAX_LISTED_FAILURES = 10
MAX_PROFILED_COLUMNS = 100
MAX_LISTED_COLUMNS = 50
_MAX_SAMPLE_CHARS = 120
_SOURCE_FORMATS = ("csv", "parquet", "sql", "mixed")
#: Sources whose columns carry types; the others are cast.
_TYPED_SOURCES = ("parquet", "sql")
_BOOLEAN_TEXT = {"true": True, "false": False, "1": True, "0": False, "1.0": True, "0.0": False}


@dataclass
class ValidationOutcome:
    """What a validation found, and the frame to train on.

    ``success`` is ``False`` when any ``error`` check failed (``warning`` checks are only
    reported). ``frame`` is the input with declared columns cast (CSV), or the very same
    object when nothing needed casting; None when the data was validated where it lives
    (SQL). ``summary`` is JSON-serialisable and small.
    """

    success: bool
    frame: pd.DataFrame | None
    summary: dict

    def failure_message(self, report_uri: str | None = None) -> str:
        """Counts, up to ten failed checks with their column and observed values, and the report's location."""
        stats = self.summary["statistics"]
        failed = [c for c in self.summary["checks"] if not c["success"]]
        # Errors first: they are why the run stops.
        failed.sort(key=lambda c: c["severity"] != "error")
        warnings = stats["failed_warnings"]
        warning_text = f", {warnings} warning{'s' if warnings != 1 else ''}" if warnings else ""
        if self.success:
            head = f"data validation passed: {stats['evaluated']} checks{warning_text}"
        else:
            head = (
                f"data validation failed: {stats['failed_errors']} of {stats['evaluated']} checks failed"
                f" (errors){warning_text}"
            )
        lines = [head]
        for check in failed[:MAX_LISTED_FAILURES]:
            marker = " (warning)" if check["severity"] == "warning" else ""
            lines.append(f"- {describe_check(check)}{marker}")
        if len(failed) > MAX_LISTED_FAILURES:
            lines.append(f"- ... and {len(failed) - MAX_LISTED_FAILURES} more failed checks")
        if report_uri:
            lines.append(f"full report: {report_uri}")
        return "\n".join(lines)


def validate_dataset(
    frame: pd.DataFrame,
    *,
    target: str,
    spec: dict | None,
    source_format: str = "csv",
    reference_columns: dict[str, str] | None = None,
    non_features: list[str] | None = None,
    redact_samples: bool = False,
) -> ValidationOutcome:
    """Run the minimal check and, given a spec, its type and value checks on ``frame``.

    ``spec`` is a spec as accepted by :func:`load_validation_spec` (normally already
    loaded); ``source_format`` (``csv``, ``parquet``, ``sql`` or ``mixed``) decides whether
    declared types are cast or checked strictly; ``reference_columns`` is the champion's
    ``{name: kind}``; ``non_features`` are columns the champion did not use as features
    (its row key), left out of that comparison. With ``redact_samples`` no data value appears in the summary (they
    can be personal data): sample lists become ``"<redacted>"`` and the profile keeps only
    counts and means. Never raises for bad data; raises :class:`ValidationSpecError` for a
    bad spec and ``ValueError`` for a bad argument.
    """
    if source_format not in _SOURCE_FORMATS:
        raise ValueError(f"source_format must be one of {', '.join(_SOURCE_FORMATS)}, got {source_format!r}")
    normalised = load_validation_spec(spec) if spec is not None else None
    checks = _Checks(redact=redact_samples)
    _minimal_checks(checks, frame, target=target, reference_columns=reference_columns, non_features=non_features or [])
    if normalised:
        frame = _spec_checks(checks, frame, normalised, target=target, strict=source_format in _TYPED_SOURCES)
    if reference_columns is not None:
        _reference_kinds_check(checks, frame, target=target, reference_columns=reference_columns)

    statistics = checks.statistics()
    declared = list(normalised["columns"]) if normalised else []
    summary = {
        "success": statistics["failed_errors"] == 0,
        "rows": int(len(frame)),
        "columns": [str(c) for c in frame.columns],
        "target": target,
        "source_format": source_format,
        "spec_given": normalised is not None,
        "redacted": redact_samples,
        "statistics": statistics,
        "checks": checks.records,
        "columns_profile": _profile(frame, first=[target, *declared], redact=redact_samples),
    }
    return ValidationOutcome(success=statistics["failed_errors"] == 0, frame=frame, summary=summary)


# -- recording ------------------------------------------------------------------------------


class _Checks:
    """The ordered check records of one validation, JSON-safe and redacted as asked."""

    def __init__(self, *, redact: bool) -> None:
        self.redact = redact
        self.records: list[dict[str, Any]] = []

    def statistics(self) -> dict[str, int]:
        """How many checks ran, passed, and failed as errors and as warnings."""
        failed = [c for c in self.records if not c["success"]]
        return {
            "evaluated": len(self.records),
            "successful": len(self.records) - len(failed),
            "failed_errors": sum(1 for c in failed if c["severity"] == "error"),
            "failed_warnings": sum(1 for c in failed if c["severity"] == "warning"),
        }

    def add(
        self,
        check: str,
        *,
        column: str | None,
        severity: str,
        success: bool,
        params: dict[str, Any] | None = None,
        observed: dict[str, Any] | None = None,
        sample: list[Any] | None = None,
    ) -> int:
        self.records.append(
            {
                "check": check,
                "column": None if column is None else str(column),
                "severity": severity,
                "success": bool(success),
                "params": _jsonable(params or {}),
                "observed": {},
            }
        )
        index = len(self.records) - 1
        self.observe(index, success=success, observed=observed, sample=sample)
        return index

    def observe(
        self, index: int, *, success: bool, observed: dict[str, Any] | None, sample: list[Any] | None = None
    ) -> None:
        record = self.records[index]
        record["success"] = bool(success)
        clean = {key: value for key, value in (observed or {}).items() if value is not None}
        if sample:
            clean["sample"] = REDACTED if self.redact else _sample(sample)
        record["observed"] = _jsonable(clean)


def _sample(values: list[Any]) -> list[Any]:
    """Up to SAMPLE_SIZE distinct values, long text shortened: the summary stays small."""
    seen: list[Any] = []
    for value in values:
        value = _jsonable(value)
        if isinstance(value, str) and len(value) > _MAX_SAMPLE_CHARS:
            value = value[:_MAX_SAMPLE_CHARS] + "..."
        if value is not None and value not in seen:
            seen.append(value)
        if len(seen) == SAMPLE_SIZE:
            break
    return seen


def _jsonable(value: Any) -> Any:
    """``value`` with numpy/pandas scalars made plain and NaN/inf made ``None`` (strict JSON)."""
    if value is None or isinstance(value, bool | str | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [_jsonable(v) for v in value]
    item = getattr(value, "item", None)
    if callable(item):
        try:
            return _jsonable(item())
        except (TypeError, ValueError):
            pass
    try:
        import pandas as pd

        if pd.isna(value):
            return None
    except (TypeError, ValueError):
        pass
    return str(value)


def _values_not(count: int, singular: str, plural: str) -> str:
    """``1 value is not a number`` / ``3 values are not numbers``."""
    return f"1 value is not {singular}" if count == 1 else f"{count} values are not {plural}"


def _percent(count: int, total: int) -> float:
    return round(100.0 * count / total, 4) if total else 0.0


# -- the minimal check ------------------------------------------------------------------------


def _minimal_checks(
    checks: _Checks,
    frame: pd.DataFrame,
    *,
    target: str,
    reference_columns: dict[str, str] | None,
    non_features: list[str],
) -> None:
    rows = len(frame)
    checks.add(
        "expect_table_to_have_rows",
        column=None,
        severity="error",
        success=rows > 0 and len(frame.columns) > 0,
        observed={"observed_value": rows, "reason": None if rows else "the data has no rows"},
    )
    if target_present(checks, target, [str(c) for c in frame.columns]):
        nulls = int(frame[target].isna().sum())
        checks.add(
            "expect_target_values_to_not_be_null",
            column=target,
            severity="error",
            success=nulls == 0,
            observed={
                "unexpected_count": nulls,
                "unexpected_percent": _percent(nulls, rows),
                "reason": f"{nulls} of {rows} target values are null" if nulls else None,
            },
        )
    if reference_columns is not None:
        features = {str(c) for c in frame.columns if c != target and c not in non_features}
        missing = sorted(set(reference_columns) - features)
        extra = sorted(features - set(reference_columns))
        checks.add(
            "expect_champion_features_to_exist",
            column=None,
            severity="error",
            success=not missing,
            params={"features": len(reference_columns)},
            observed={
                "missing": missing[:MAX_LISTED_COLUMNS],
                "missing_count": len(missing),
                "reason": f"{len(missing)} feature(s) of the champion are missing: {', '.join(missing[:MAX_LISTED_COLUMNS])}"
                if missing
                else None,
            },
        )
        checks.add(
            "expect_no_features_unknown_to_champion",
            column=None,
            severity="warning",
            success=not extra,
            observed={
                "unexpected": extra[:MAX_LISTED_COLUMNS],
                "unexpected_count": len(extra),
                "reason": f"{len(extra)} column(s) the champion was not trained on: {', '.join(extra[:MAX_LISTED_COLUMNS])}"
                if extra
                else None,
            },
        )


def _reference_kinds_check(
    checks: _Checks, frame: pd.DataFrame, *, target: str, reference_columns: dict[str, str]
) -> None:
    """Warn when a shared feature changed kind (after casting): the champion becomes incomparable."""
    from mlops_airflow.data.schema import is_numeric

    changed = []
    for name, kind in reference_columns.items():
        if name in frame.columns and name != target:
            now = "numeric" if is_numeric(frame[name]) else "categorical"
            if now != kind:
                changed.append(f"{name} ({kind} -> {now})")
    if changed:
        checks.add(
            "expect_champion_feature_kinds_to_match",
            column=None,
            severity="warning",
            success=False,
            observed={
                "reason": f"{len(changed)} feature(s) changed kind: {', '.join(changed[:MAX_LISTED_COLUMNS])}"
            },
        )


# -- declared types -------------------------------------------------------------------------


def _is_text(series: pd.Series) -> bool:
    import pandas as pd

    if isinstance(series.dtype, pd.StringDtype):
        return True
    return series.dtype == object and pd.api.types.infer_dtype(series, skipna=True) in ("string", "empty")


def _check_type(
    series: pd.Series, kind: str, *, strict: bool, source: str
) -> tuple[bool, pd.Series | None, dict[str, Any], list[Any]]:
    """(passed, cast series or None, observed, sample of offending values) for one declared type."""
    dtype_kind = series.dtype.kind
    observed: dict[str, Any] = {"dtype": str(series.dtype)}
    if strict:
        ok = {
            "integer": dtype_kind in "iu",
            "number": dtype_kind in "iuf",
            "boolean": dtype_kind == "b",
            "string": _is_text(series),
        }[kind]
        if not ok:
            observed["reason"] = (
                f"dtype {series.dtype} is not {kind} ({source} columns must carry their type)"
            )
        return ok, None, observed, []
    if kind in ("integer", "number"):
        return _cast_numeric(series, kind, observed)
    if kind == "boolean":
        return _cast_boolean(series, observed)
    return _cast_text(series, observed)


def _cast_numeric(
    series: pd.Series, kind: str, observed: dict[str, Any]
) -> tuple[bool, pd.Series | None, dict[str, Any], list[Any]]:
    import pandas as pd

    problems: list[str] = []
    unexpected = 0
    sample: list[Any] = []
    cast: pd.Series | None = None
    values = series
    if series.dtype.kind == "b" or series.dtype.kind not in "iufOSU":
        observed["reason"] = f"dtype {series.dtype} is not {kind}"
        return False, None, observed, []
    if series.dtype.kind in "OSU":
        values = pd.to_numeric(series, errors="coerce")
        bad = series.notna() & values.isna()
        count = int(bad.sum())
        if count:
            unexpected += count
            problems.append(_values_not(count, "a number", "numbers"))
            sample.extend(series[bad].head(SAMPLE_SIZE * 4).tolist())
        cast = values
    if kind == "integer" and values.dtype.kind == "f":
        fractional = values.notna() & (values % 1 != 0)
        count = int(fractional.sum())
        if count:
            unexpected += count
            problems.append(_values_not(count, "a whole number", "whole numbers"))
            sample.extend(values[fractional].head(SAMPLE_SIZE).tolist())
        elif not values.isna().any():
            cast = values.astype("int64")
        # Whole numbers with nulls stay float64: nullable Int64 holds pd.NA, which
        # scikit-learn's imputers and scalers do not accept.
    if problems:
        observed["unexpected_count"] = unexpected
        observed["reason"] = "; ".join(problems)
    if cast is not None:
        observed["cast_to"] = str(cast.dtype)
    return not problems, cast, observed, sample


def _cast_boolean(
    series: pd.Series, observed: dict[str, Any]
) -> tuple[bool, pd.Series | None, dict[str, Any], list[Any]]:
    if series.dtype.kind == "b":
        return True, None, observed, []
    mapped = series.astype("str").str.strip().str.lower().map(_BOOLEAN_TEXT)
    bad = series.notna() & mapped.isna()
    count = int(bad.sum())
    cast = mapped.astype("boolean") if mapped.isna().any() else mapped.astype(bool)
    observed["cast_to"] = str(cast.dtype)
    if count:
        observed["unexpected_count"] = count
        observed["reason"] = _values_not(count, "true/false", "true/false")
    return not count, cast, observed, series[bad].head(SAMPLE_SIZE * 4).tolist()


def _cast_text(
    series: pd.Series, observed: dict[str, Any]
) -> tuple[bool, pd.Series | None, dict[str, Any], list[Any]]:
    if _is_text(series):
        return True, None, observed, []
    values = series
    if series.dtype.kind == "f":
        present = series.dropna()
        if len(present) and bool((present % 1 == 0).all()):
            # A code column with empty cells reads as float: 2134.0 means "2134".
            values = series.astype("Int64")
    cast = values.astype("str")
    observed["cast_to"] = str(cast.dtype)
    return True, cast, observed, []


# -- the spec's checks ----------------------------------------------------------------------


def _spec_checks(
    checks: _Checks, frame: pd.DataFrame, spec: dict, *, target: str, strict: bool
) -> pd.DataFrame:
    """Record the spec's checks (running its value checks in GX); return the frame, cast where declared."""
    casts: dict[str, pd.Series] = {}
    pending: Pending = []
    source = "Parquet" if strict else "CSV"
    for name, column in spec["columns"].items():
        if not column_present(checks, name, column, frame.columns, target=target):
            continue
        series = frame[name]
        if column["type"]:
            ok, cast, observed, sample = _check_type(series, column["type"], strict=strict, source=source)
            checks.add(
                "expect_column_values_to_be_of_type",
                column=name,
                severity=column["severity"],
                success=ok,
                params={"type": column["type"]},
                observed=observed,
                sample=sample,
            )
            if cast is not None:
                casts[name] = series = cast
        value_expectations(checks, pending, name, column, numeric=series.dtype.kind in "iuf", target=target)
    table_expectations(checks, pending, [str(c) for c in frame.columns], spec, target=target)

    if casts:
        # A shallow copy (copy-on-write): the caller's frame stays as it was, the data is not duplicated.
        frame = frame.copy(deep=False)
        for name, series in casts.items():
            frame[name] = series
    if pending:
        batch_frame = frame
        run_suite(
            checks,
            pending,
            lambda context: context.data_sources.add_pandas("mlops_airflow")
            .add_dataframe_asset("frame")
            .add_batch_definition_whole_dataframe("whole_frame")
            .get_batch(batch_parameters={"dataframe": batch_frame}),
        )
    return frame


def target_present(checks: _Checks, target: str, columns: list[str]) -> bool:
    """Record whether the target column exists (part of the minimal check)."""
    present = target in columns
    shown = ", ".join(columns[:MAX_LISTED_COLUMNS])
    checks.add(
        "expect_target_column_to_exist",
        column=target,
        severity="error",
        success=present,
        observed=None if present else {"reason": f"target column {target!r} is not in the data (columns: {shown})"},
    )
    return present


# -- expectations shared by every source (pandas frames here, SQL tables in sql.py) ----------

#: (check record index, GX expectation class name, its kwargs)
Pending = list[tuple[int, str, dict[str, Any]]]


def expect(
    checks: _Checks, pending: Pending, expectation: str, check: str, column: str | None, severity: str,
    params: dict[str, Any],
) -> None:
    """Record a check whose outcome GX will decide, and queue its expectation."""
    index = checks.add(check, column=column, severity=severity, success=False, params=params)
    pending.append((index, expectation, {**({"column": column} if column is not None else {}), **params}))


def column_present(checks: _Checks, name: str, column: dict, columns: Any, *, target: str | None) -> bool:
    """Record whether a declared column exists; False (and a failed check) if it does not."""
    if name not in columns:
        if name != target:  # a missing target is already the minimal check's error
            checks.add(
                "expect_column_to_exist",
                column=name,
                severity=column["severity"],
                success=False,
                observed={"reason": f"column {name!r} is not in the data"},
            )
        return False
    checks.add("expect_column_to_exist", column=name, severity=column["severity"], success=True)
    return True


def value_expectations(
    checks: _Checks, pending: Pending, name: str, column: dict, *, numeric: bool, target: str | None
) -> None:
    """Queue a declared column's value checks: range, allowed set, nulls, uniqueness, pattern."""
    severity = column["severity"]
    bounds = {key: column[key] for key in ("min", "max") if column.get(key) is not None}
    # A range on a column that is not numeric cannot be evaluated; its type check already failed.
    if bounds and numeric:
        params = {"min_value": bounds.get("min"), "max_value": bounds.get("max")}
        expect(checks, pending, "ExpectColumnValuesToBeBetween", "expect_column_values_to_be_between", name, severity, params)
    if column.get("allowed") is not None:
        params = {"value_set": column["allowed"]}
        expect(checks, pending, "ExpectColumnValuesToBeInSet", "expect_column_values_to_be_in_set", name, severity, params)
    if not column["nullable"] and name != target:  # target nulls: the minimal check
        params = {"mostly": column["mostly"]} if column.get("mostly", 1) < 1 else {}
        expect(checks, pending, "ExpectColumnValuesToNotBeNull", "expect_column_values_to_not_be_null", name, severity, params)
    if column["unique"]:
        expect(checks, pending, "ExpectColumnValuesToBeUnique", "expect_column_values_to_be_unique", name, severity, {})
    if column.get("regex") is not None:
        params = {"regex": column["regex"]}
        expect(checks, pending, "ExpectColumnValuesToMatchRegex", "expect_column_values_to_match_regex", name, severity, params)


def table_expectations(checks: _Checks, pending: Pending, columns: list[str], spec: dict, *, target: str | None) -> None:
    """Record the table-level checks: no undeclared columns (if asked) and the row count."""
    if not spec["allow_extra_columns"]:
        extra = [c for c in columns if c not in spec["columns"] and c != target]
        checks.add(
            "expect_table_columns_to_match_set",
            column=None,
            severity="error",
            success=not extra,
            params={"allow_extra_columns": False},
            observed={
                "unexpected": extra[:MAX_LISTED_COLUMNS],
                "unexpected_count": len(extra),
                "reason": f"{len(extra)} undeclared column(s): {', '.join(extra[:MAX_LISTED_COLUMNS])}"
                if extra
                else None,
            },
        )
    row_count = spec.get("row_count")
    if row_count:
        params = {"min_value": row_count.get("min"), "max_value": row_count.get("max")}
        expect(checks, pending, "ExpectTableRowCountToBeBetween", "expect_table_row_count_to_be_between", None,
               row_count["severity"], params)


def run_suite(
    checks: _Checks,
    pending: Pending,
    batch_for: Callable[[Any], Any],
    *,
    scrub: Callable[[str], str] = str,
) -> None:
    """Evaluate the pending expectations as one GX suite on ``batch_for(context)``; fill in their records.

    ``scrub`` cleans error texts before they are recorded (the SQL path masks credentials).
    """
    # No usage analytics from a worker (inert in GX 1.24, honoured by other 1.x releases).
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    # GX's import logs ~214 INFO lines from its docs decorators ("Skipping registering function
    # ..."), which buried the task's own lines; that one logger only, its warnings kept.
    logging.getLogger("great_expectations._docs_decorators").setLevel(logging.WARNING)
    import great_expectations as gx
    from great_expectations.data_context.types.base import (
        DataContextConfig,
        InMemoryStoreBackendDefaults,
        ProgressBarsConfig,
    )

    # In memory only: no data-docs temp site (GX's ephemeral default), and no tqdm bars
    # on stderr, which would flood task logs.
    context_config = DataContextConfig(
        store_backend_defaults=InMemoryStoreBackendDefaults(init_temp_docs_sites=False),
        progress_bars=ProgressBarsConfig(globally=False),
    )
    context = gx.get_context(mode="ephemeral", project_config=context_config)
    suite = gx.ExpectationSuite(name="mlops_airflow_validation")
    for index, expectation, kwargs in pending:
        params = {key: value for key, value in kwargs.items() if value is not None}
        suite.add_expectation(getattr(gx.expectations, expectation)(**params, meta={"check_index": index}))
    result = batch_for(context).validate(
        suite, result_format={"result_format": "SUMMARY", "partial_unexpected_count": SAMPLE_SIZE * 4}
    )
    for item in result.results:
        config = item.expectation_config
        if config is None or not config.meta:  # every result of a suite run carries its expectation
            continue
        index = int(config.meta["check_index"])
        outcome = item.result or {}
        observed = {
            key: outcome.get(key)
            for key in ("observed_value", "element_count", "unexpected_count", "unexpected_percent", "missing_count")
        }
        error = _exception_message(item.exception_info)
        if error:
            observed["error"] = scrub(error)
        # Null checks list the nulls themselves: no sample worth showing.
        sample = None if config.type == "expect_column_values_to_not_be_null" else outcome.get("partial_unexpected_list")
        checks.observe(index, success=bool(item.success), observed=observed, sample=sample)


def _exception_message(info: Any) -> str | None:
    """The first raised exception's message from GX's exception_info (flat, or keyed by metric)."""
    if not isinstance(info, dict):
        return None
    entries = [info] if "raised_exception" in info else [v for v in info.values() if isinstance(v, dict)]
    for entry in entries:
        if entry.get("raised_exception"):
            return str(entry.get("exception_message") or "raised an exception")
    return None


# -- profile --------------------------------------------------------------------------------


def _histogram(values: Any, *, integer: bool) -> tuple[list[int], list[float]]:
    import numpy as np

    if not len(values):
        return [], []
    lo, hi = float(values.min()), float(values.max())
    # Bins given as a count and a range, never as an array of edges: numpy then computes
    # each value's bin directly instead of sorting the data (about 10x faster on 1M rows).
    if integer and hi - lo < 40:
        # One bar per value reads better than bins straddling integers.
        counts, edges = np.histogram(values, bins=int(hi - lo) + 1, range=(lo - 0.5, hi + 0.5))
    else:
        counts, edges = np.histogram(values, bins=20 if hi > lo else 1, range=(lo, hi))
    return [int(c) for c in counts], [float(e) for e in edges]


def _profile(frame: pd.DataFrame, *, first: list[str], redact: bool) -> dict[str, dict[str, Any]]:
    """Per-column statistics for the report, declared columns first, at most MAX_PROFILED_COLUMNS."""
    import numpy as np

    names: list[Any] = []
    for name in [*first, *frame.columns]:
        if name in frame.columns and name not in names:
            names.append(name)
    profile: dict[str, dict[str, Any]] = {}
    for name in names[:MAX_PROFILED_COLUMNS]:
        series = frame[name]
        nulls = int(series.isna().sum())
        if series.dtype.kind in "iuf":
            values = series.dropna().to_numpy(dtype=float)
            values = values[np.isfinite(values)]
            counts, edges = _histogram(
                values, integer=series.dtype.kind in "iu" or bool((values % 1 == 0).all())
            )
            entry: dict[str, Any] = {
                "kind": "numeric",
                "nulls": nulls,
                "mean": float(values.mean()) if len(values) else None,
            }
            if redact:
                # min, max and bin edges are single rows' values; counts and the mean are not.
                entry["histogram"] = {"counts": counts}
            else:
                entry.update(
                    min=float(values.min()) if len(values) else None,
                    max=float(values.max()) if len(values) else None,
                    histogram={"counts": counts, "edges": edges},
                )
        else:
            value_counts = series.dropna().astype(str).value_counts()
            entry = {"kind": "categorical", "nulls": nulls, "distinct": int(len(value_counts))}
            top = value_counts.head(10)
            if redact:
                entry["top_counts"] = [int(c) for c in top.tolist()]
            else:
                entry["top"] = [[str(value)[:_MAX_SAMPLE_CHARS], int(count)] for value, count in top.items()]
        profile[str(name)] = _jsonable(entry)
    return profile


def failing_rows(frame: pd.DataFrame, spec: dict, *, target: str) -> dict[str, tuple[pd.Series, str]]:
    """The rows that fail the spec's error-severity row checks, by column: ``{column: (mask, what fails)}``.

    The row-level part of a spec (a declared type that the value cannot be cast to, a
    range, an allowed set, a null where none is allowed, a null target) evaluated with
    pandas, to say *which part* of a table makes it fail (e.g. which segments). It decides
    nothing on its own: :func:`validate_dataset` is the check, and runs again on what is kept.
    """
    import pandas as pd

    normalised = load_validation_spec(spec)
    found: dict[str, tuple[pd.Series, str]] = {}
    if normalised is None:
        return found
    if target in frame.columns and frame[target].isna().any():
        found[target] = (frame[target].isna(), "the target is missing")
    for name, column in normalised["columns"].items():
        if column["severity"] != "error" or name not in frame.columns:
            continue
        series = frame[name]
        values = series
        bad = pd.Series(False, index=frame.index)
        what = []
        if column["type"] in ("integer", "number"):
            if series.dtype.kind not in "iufb":
                values = pd.to_numeric(series, errors="coerce")
                wrong = series.notna() & values.isna()
                bad |= wrong
                what += [f"not a number ({int(wrong.sum())})"] if wrong.any() else []
            if column["type"] == "integer" and values.dtype.kind == "f":
                fractional = values.notna() & (values % 1 != 0)
                bad |= fractional
                what += [f"not whole ({int(fractional.sum())})"] if fractional.any() else []
        if values.dtype.kind in "iuf":
            for key, outside in (("min", values < column.get("min", float("-inf"))),
                                 ("max", values > column.get("max", float("inf")))):
                if column.get(key) is not None and outside.any():
                    bad |= outside
                    what.append(f"{'below' if key == 'min' else 'above'} {column[key]} ({int(outside.sum())})")
        if column.get("allowed") is not None:
            outside = values.notna() & ~values.isin(column["allowed"])
            if outside.any():
                bad |= outside
                what.append(f"not in the allowed set ({int(outside.sum())})")
        if not column["nullable"] and column.get("mostly", 1) >= 1 and name != target:
            missing = series.isna()
            if missing.any():
                bad |= missing
                what.append(f"missing ({int(missing.sum())})")
        if bad.any():
            found[name] = (bad, ", ".join(what))
    return found
