"""Operational checks for the quality gate: prediction latency and custom metric functions.

A model that scores well but answers in a second per row, or a custom check that runs
whatever code a trigger form names, must not reach production: latency is measured on the
holdout with the model as it will serve, and custom checks resolve only from an allowlist.
"""

from __future__ import annotations

import importlib
import re
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from mlops_airflow.exceptions import GateSpecError

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["BUILTIN_CUSTOM_CHECKS", "measure_latency", "prediction_bias", "resolve_custom_check"]

#: Custom checks every gate may use without listing them in its allowlist.
BUILTIN_CUSTOM_CHECKS: frozenset[str] = frozenset({"mlops_airflow.evaluation.operational.prediction_bias"})

_DOTTED_PATH = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+$")


def _percentiles_ms(seconds: list[float]) -> dict[str, float]:
    p50, p99 = np.percentile(np.asarray(seconds) * 1000.0, [50, 99])
    return {"p50": round(float(p50), 4), "p99": round(float(p99), 4)}


def measure_latency(
    model: Any,
    X: pd.DataFrame,
    *,
    single_rows: int = 200,
    batch_rows: int = 1000,
    repeats: int = 5,
    seed: int = 0,
) -> dict[str, Any]:
    """Wall-clock latency of ``model.predict`` on rows of ``X``, in milliseconds.

    Single-row latency is measured on ``single_rows`` one-row DataFrames sampled from
    ``X`` (what a model server answers per request); batch latency on ``repeats`` calls
    with ``batch_rows`` sampled rows (with replacement when ``X`` is smaller). One warm-up
    call precedes each series so that lazy initialisation is not counted. p99 of a few
    samples is close to their maximum: read it as "the slow end", not as a tail estimate.
    """
    for name, value in (("single_rows", single_rows), ("batch_rows", batch_rows), ("repeats", repeats)):
        if value < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")
    if len(X) == 0:
        raise ValueError("cannot measure latency on an empty frame")
    rng = np.random.default_rng(seed)
    # Frames are cut before timing: slicing is the caller's cost, not the model's.
    singles = [X.iloc[[int(i)]] for i in rng.integers(0, len(X), size=single_rows)]
    batch = X.iloc[rng.choice(len(X), size=batch_rows, replace=len(X) < batch_rows)]

    model.predict(singles[0])
    single_times = []
    for row in singles:
        start = time.perf_counter()
        model.predict(row)
        single_times.append(time.perf_counter() - start)

    model.predict(batch)
    batch_times = []
    for _ in range(repeats):
        start = time.perf_counter()
        model.predict(batch)
        batch_times.append(time.perf_counter() - start)

    batch_ms = _percentiles_ms(batch_times)
    median_seconds = float(np.median(batch_times))
    return {
        "single_row_ms": {**_percentiles_ms(single_times), "n": single_rows},
        "batch_ms": {**batch_ms, "rows": batch_rows, "n": repeats},
        "batch_rows_per_second": round(batch_rows / median_seconds, 1) if median_seconds > 0 else None,
    }


def prediction_bias(y_true: Any, y_pred: Any, scores: Any = None, *, task: str | None = None) -> float:
    """How far the average prediction is from the average truth.

    Regression: ``|mean(pred) - mean(y)|``. Classification: the largest gap between a
    class's predicted and actual rates, which for binary tasks is ``|predicted positive
    rate - actual positive rate|``. Without ``task``, predictions are taken as regression
    when they are floats that are not all among the true values (a classifier can only
    predict labels it was trained on).
    """
    y = np.asarray(y_true).reshape(-1)
    pred = np.asarray(y_pred).reshape(-1)
    if len(y) != len(pred) or len(y) == 0:
        raise ValueError(f"prediction_bias needs as many predictions as targets, got {len(pred)} and {len(y)}")
    if task is None:
        floats = np.issubdtype(pred.dtype, np.floating)
        task = "regression" if floats and not np.isin(pred, y).all() else "classification"
    if task == "regression":
        return float(abs(pred.astype(float).mean() - y.astype(float).mean()))
    labels = np.unique(np.concatenate([y, pred]))
    actual = np.array([np.mean(y == label) for label in labels])
    predicted = np.array([np.mean(pred == label) for label in labels])
    return float(np.abs(predicted - actual).max())


def resolve_custom_check(path: str, allowlist: list[str]) -> Callable[..., float]:
    """The function ``f(y_true, y_pred, scores) -> float`` named by the dotted ``path``.

    Only paths in ``allowlist`` (exact match) or in :data:`BUILTIN_CUSTOM_CHECKS` resolve,
    and the module is imported only after that check: a gate spec comes from a trigger
    form, and naming a module must not be a way to run its import-time code.
    """
    if not isinstance(path, str) or not _DOTTED_PATH.match(path):
        raise GateSpecError(f"custom check {path!r} is not a dotted path like package.module.function")
    if path not in BUILTIN_CUSTOM_CHECKS and path not in allowlist:
        raise GateSpecError(
            f"custom check {path!r} is not allowed: add it to the custom-check allowlist "
            f"(built-in checks: {', '.join(sorted(BUILTIN_CUSTOM_CHECKS))})"
        )
    module_name, _, attribute = path.rpartition(".")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise GateSpecError(f"custom check {path!r}: cannot import {module_name!r} ({exc})") from exc
    function = getattr(module, attribute, None)
    if not callable(function):
        raise GateSpecError(f"custom check {path!r}: {module_name!r} has no function {attribute!r}")
    return function  # type: ignore[no-any-return]
