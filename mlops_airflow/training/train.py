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
    apply_params,
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
    #: The factory that built the pipeline, or None for the default preprocessing.
    pipeline_factory: str | None = None
    #: The search summary when the parameters were tuned (see :mod:`mlops_airflow.training.tuning`).
    tuning: dict[str, Any] | None = None


def looks_like_labels(y: pd.Series) -> bool:
    """Whether a target reads as classes: text, or whole numbers with few distinct values."""
    if y.dtype.kind not in "iufb":
        return True
    values = y.dropna()
    return bool((values == values.round()).all()) and values.nunique() <= MAX_AUTO_CLASSES


def choose_estimator(estimator: str | None, y: pd.Series) -> str:
    """``auto`` (or empty) picks histogram gradient boosting for the task the target implies."""
    if estimator and estimator.strip().lower() != "auto":
        return estimator.strip()
    return AUTO_CLASSIFIER if looks_like_labels(y) else AUTO_REGRESSOR


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


#: The seed for every ``random_state`` left unset, so identical inputs train identical candidates.
SEED = 0


def _seed(pipeline: Any) -> None:
    unset = {name: SEED for name, value in pipeline.get_params(deep=True).items()
             if name.endswith("random_state") and value is None}
    pipeline.set_params(**unset)


def train_model(
    train: pd.DataFrame,
    *,
    target: str,
    estimator: str | None,
    estimator_params: dict[str, Any] | None = None,
    drop_columns: list[str] | None = None,
    extra_allowlist: list[str] | None = None,
    pipeline_factory: str | None = None,
    factory_allowlist: list[str] | None = None,
    search_space: dict[str, Any] | None = None,
    tuning: dict[str, Any] | None = None,
) -> TrainResult:
    """Fit a pipeline on ``train``: the default preprocessing + an allowlisted estimator, or a
    factory's pipeline; with a ``search_space``, its parameters are tuned first by cross-validation
    on ``train`` alone (see :func:`mlops_airflow.training.tuning.tune`)."""
    from sklearn.pipeline import Pipeline

    X, y = split_xy(train, target, drop_columns)
    if X.shape[1] == 0:
        raise DataError(f"no feature columns left besides the target {target!r}")
    if pipeline_factory:
        from mlops_airflow.training.pipelines import build_pipeline

        if estimator and estimator.strip().lower() != "auto":
            raise ConfigError(
                f"give either estimator ({estimator!r}) or pipeline_factory ({pipeline_factory!r}), not both"
            )
        pipeline, path = build_pipeline(pipeline_factory, X, allowlist=factory_allowlist or [])
        apply_params(pipeline, estimator_params, deep=True)
        prefix = ""  # a factory's pipeline is tuned and configured by its own step names (clf__C)
    else:
        path = choose_estimator(estimator, y)
        cls = resolve_estimator(path, extra=extra_allowlist)
        pipeline = Pipeline([("preprocess", default_preprocessor(X)), ("estimator", make_estimator(cls, estimator_params))])
        prefix = "estimator__"
    name = path.rsplit(".", 1)[-1]
    _seed(pipeline)
    task = infer_task(y, pipeline)
    if task == "regression":
        y = y.astype(float)
    if tuning and not search_space:
        raise ConfigError("tuning options are set but search_space is empty: give the parameters to search")
    params = dict(estimator_params or {})
    summary = None
    started = time.perf_counter()
    if search_space:
        from mlops_airflow.training.tuning import tune

        pipeline, summary = tune(pipeline, X, y, task=task, search_space=search_space, options=tuning,
                                 prefix=prefix, fixed=params)
        params.update(summary["best_params"])
    else:
        log.info("Fitting %s (%s) on %d rows x %d features", name, task, len(X), X.shape[1])
        try:
            pipeline.fit(X, y)
        except (ValueError, TypeError) as exc:
            # Bad parameter values surface only at fit time in scikit-learn.
            raise ConfigError(f"fitting {name} failed: {exc}") from exc
    elapsed = time.perf_counter() - started
    log.info("Fitted in %.2fs", elapsed)
    classes = [c.item() if hasattr(c, "item") else c for c in pipeline.classes_] if task != "regression" else None
    return TrainResult(
        model=pipeline,
        task_type=task,
        estimator=path,
        estimator_params=params,
        feature_columns=[str(c) for c in X.columns],
        classes=classes,
        fit_seconds=round(elapsed, 3),
        pipeline_factory=pipeline_factory or None,
        tuning=summary,
    )
