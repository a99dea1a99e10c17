"""Metrics for binary and multiclass classification and regression, with their directions."""

from __future__ import annotations

import math
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
    "r2": True,
    "rmse": False,
    "mae": False,
    "mape": False,
}
CLASSIFICATION_METRICS = ("accuracy", "balanced_accuracy", "precision", "recall", "f1", "roc_auc", "log_loss")
REGRESSION_METRICS = ("r2", "rmse", "mae", "mape")

#: The metric the default gate decides on.
PRIMARY_METRIC = {"binary": "roc_auc", "multiclass": "balanced_accuracy", "regression": "r2"}


def metrics_for(task: str) -> tuple[str, ...]:
    return REGRESSION_METRICS if task == "regression" else CLASSIFICATION_METRICS


def _clean(value: float) -> float | None:
    value = float(value)
    return None if math.isnan(value) or math.isinf(value) else round(value, 6)


def compute_metrics(model: Any, X: pd.DataFrame, y: pd.Series, task: str) -> dict[str, float | None]:
    """Every metric of ``task`` for ``model`` on (X, y); None where a metric is undefined."""
    import numpy as np
    from sklearn import metrics as m

    predictions = model.predict(X)
    if task == "regression":
        y_true = y.to_numpy(dtype=float)
        mape = m.mean_absolute_percentage_error(y_true, predictions) if (y_true != 0).all() else float("nan")
        return {
            "r2": _clean(m.r2_score(y_true, predictions)),
            "rmse": _clean(math.sqrt(m.mean_squared_error(y_true, predictions))),
            "mae": _clean(m.mean_absolute_error(y_true, predictions)),
            "mape": _clean(mape),
        }
    average = "binary" if task == "binary" else "macro"
    classes = list(model.classes_)
    pos_label = classes[-1] if task == "binary" else None
    result: dict[str, float | None] = {
        "accuracy": _clean(m.accuracy_score(y, predictions)),
        "balanced_accuracy": _clean(m.balanced_accuracy_score(y, predictions)),
        "precision": _clean(m.precision_score(y, predictions, average=average, pos_label=pos_label, zero_division=0)),
        "recall": _clean(m.recall_score(y, predictions, average=average, pos_label=pos_label, zero_division=0)),
        "f1": _clean(m.f1_score(y, predictions, average=average, pos_label=pos_label, zero_division=0)),
        "roc_auc": None,
        "log_loss": None,
    }
    if hasattr(model, "predict_proba") and y.nunique() >= 2:
        proba = model.predict_proba(X)
        if task == "binary":
            result["roc_auc"] = _clean(m.roc_auc_score(y == pos_label, proba[:, 1]))
        elif set(np.unique(y)) <= set(classes):
            result["roc_auc"] = _clean(m.roc_auc_score(y, proba, multi_class="ovr", labels=classes))
        result["log_loss"] = _clean(m.log_loss(y, np.clip(proba, 1e-15, 1), labels=classes))
    return result
