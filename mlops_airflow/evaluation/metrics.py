"""Metrics for binary and multiclass classification and regression, with their directions."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

#: Metric name -> True if higher is better. The gate uses this to orient every comparison.
HIGHER_IS_BETTER: dict[str, bool] = {
    "accuracy": True,
    "balanced_accuracy": True,
    "precision": True,
    "recall": True,
    "f1": True,
    "roc_auc": True,
    "log_loss": False,
    "pr_auc": True,
    "brier": False,
    "r2": True,
    "rmse": False,
    "mae": False,
    "mape": False,
}
CLASSIFICATION_METRICS = (
    "accuracy",
    "balanced_accuracy",
    "precision",
    "recall",
    "f1",
    "roc_auc",
    "log_loss",
    "pr_auc",
    "brier",
)
REGRESSION_METRICS = ("r2", "rmse", "mae", "mape")

#: The metric the default gate decides on.
PRIMARY_METRIC = {"binary": "roc_auc", "multiclass": "balanced_accuracy", "regression": "r2"}


def metrics_for(task: str) -> tuple[str, ...]:
    return REGRESSION_METRICS if task == "regression" else CLASSIFICATION_METRICS


def compute_metrics(model: Any, X: pd.DataFrame, y: pd.Series, task: str) -> dict[str, float | None]:
    """Every metric of ``task`` for ``model`` on (X, y); None where a metric is undefined."""
    from mlops_airflow.evaluation.statistics import Predictions

    return metrics_from_predictions(task, y, Predictions.of(model, X, task))


def metrics_from_predictions(task: str, y: pd.Series, predictions: Any) -> dict[str, float | None]:
    """Every metric of ``task`` from predictions already made, rounded for records."""
    from mlops_airflow.evaluation.statistics import metric_value

    values = {metric: metric_value(metric, task, y, predictions) for metric in metrics_for(task)}
    return {metric: None if value is None else round(value, 6) for metric, value in values.items()}
