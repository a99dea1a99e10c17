"""Fitting a candidate: infer the task, build the pipeline, fit on the training side of the split."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from mlops_airflow.exceptions import ConfigError, DataError
from mlops_airflow.training.estimators import (
    AUTO_CLASSIFIER,
    AUTO_REGRESSOR,
    make_estimator,
    resolve_estimator,
)
from mlops_airflow.training.preprocessing import default_preprocessor

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

TaskType = Literal["binary", "multiclass", "regression"]

#: A numeric target with at most this many distinct integer values is read as class labels
#: when the estimator is ``auto``.
MAX_AUTO_CLASSES = 20


@dataclass
class TrainResult:
    model: Any
    task_type: TaskType
    estimator: str
    estimator_params: dict[str, Any]
    feature_columns: list[str]
    classes: list[Any] | None
    fit_seconds: float
    extra: dict[str, Any] = field(default_factory=dict)


def _looks_like_labels(y: pd.Series) -> bool:
    if y.dtype.kind not in "iufb":
        return True
    values = y.dropna()
    return bool((values == values.round()).all()) and values.nunique() <= MAX_AUTO_CLASSES


def choose_estimator(estimator: str | None, y: pd.Series) -> str:
    """``auto`` (or empty) picks histogram gradient boosting for the task the target implies."""
    if estimator and estimator.strip().lower() != "auto":
        return estimator.strip()
    return AUTO_CLASSIFIER if _looks_like_labels(y) else AUTO_REGRESSOR


def infer_task(y: pd.Series, estimator: Any) -> TaskType:
    """The task from the target and the estimator: classifiers by class count, else regression."""
    from sklearn.base import is_classifier

    if is_classifier(estimator):
        n = y.nunique(dropna=True)
        if n < 2:
            raise DataError(f"target {y.name!r} has a single class ({y.dropna().iloc[0]!r}): nothing to learn")
        return "binary" if n == 2 else "multiclass"
    if y.dtype.kind not in "iuf":
        raise DataError(
            f"target {y.name!r} holds {y.dtype} values, but {type(estimator).__name__} is a regressor: "
            "choose a classifier or a numeric target"
        )
    return "regression"


def split_xy(frame: pd.DataFrame, target: str, drop: list[str] | None = None) -> tuple[pd.DataFrame, pd.Series]:
    if target not in frame.columns:
        raise DataError(f"target column {target!r} is not in the data (columns: {', '.join(map(str, frame.columns))})")
    drop_cols = [target, *[c for c in (drop or []) if c in frame.columns and c != target]]
    return frame.drop(columns=drop_cols), frame[target]


def train_model(
    train: pd.DataFrame,
    *,
    target: str,
    estimator: str | None,
    estimator_params: dict[str, Any] | None = None,
    drop_columns: list[str] | None = None,
    extra_allowlist: list[str] | None = None,
) -> TrainResult:
    """Fit the default preprocessing + allowlisted estimator on ``train``."""
    from sklearn.pipeline import Pipeline

    X, y = split_xy(train, target, drop_columns)
    if X.shape[1] == 0:
        raise DataError(f"no feature columns left besides the target {target!r}")
    path = choose_estimator(estimator, y)
    cls = resolve_estimator(path, extra=extra_allowlist)
    model_estimator = make_estimator(cls, estimator_params)
    task = infer_task(y, model_estimator)
    if task == "regression":
        y = y.astype(float)
    pipeline = Pipeline([("preprocess", default_preprocessor(X)), ("estimator", model_estimator)])
    log.info("Fitting %s (%s) on %d rows x %d features", cls.__name__, task, len(X), X.shape[1])
    started = time.perf_counter()
    try:
        pipeline.fit(X, y)
    except (ValueError, TypeError) as exc:
        # Bad parameter values surface only at fit time in scikit-learn.
        raise ConfigError(f"fitting {cls.__name__} failed: {exc}") from exc
    elapsed = time.perf_counter() - started
    log.info("Fitted in %.2fs", elapsed)
    classes = [c.item() if hasattr(c, "item") else c for c in pipeline.classes_] if task != "regression" else None
    return TrainResult(
        model=pipeline,
        task_type=task,
        estimator=path,
        estimator_params=dict(estimator_params or {}),
        feature_columns=[str(c) for c in X.columns],
        classes=classes,
        fit_seconds=round(elapsed, 3),
    )
