from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.dummy import DummyClassifier, DummyRegressor
from sklearn.linear_model import LinearRegression, LogisticRegression

from mlops_airflow.evaluation.metrics import CLASSIFICATION_METRICS, REGRESSION_METRICS, compute_metrics


def test_binary_metrics_separate_a_good_model_from_a_dummy() -> None:
    rng = np.random.default_rng(0)
    X = pd.DataFrame({"x": rng.normal(size=400)})
    y = pd.Series(np.where(X["x"] + rng.normal(0, 0.3, 400) > 0, "yes", "no"))
    good = compute_metrics(LogisticRegression().fit(X, y), X, y, "binary")
    dummy = compute_metrics(DummyClassifier(strategy="prior").fit(X, y), X, y, "binary")
    assert set(good) == set(CLASSIFICATION_METRICS)
    assert good["roc_auc"] > 0.9 and dummy["roc_auc"] == 0.5
    assert good["accuracy"] > dummy["accuracy"] and good["log_loss"] < dummy["log_loss"]


def test_multiclass_metrics_use_macro_averages_and_ovr_auc() -> None:
    X = pd.DataFrame({"x": np.repeat([0.0, 1.0, 2.0], 50)})
    y = pd.Series(np.repeat(["a", "b", "c"], 50))
    metrics = compute_metrics(LogisticRegression().fit(X, y), X, y, "multiclass")
    assert metrics["balanced_accuracy"] == pytest.approx(1.0)
    assert metrics["f1"] == pytest.approx(1.0) and metrics["roc_auc"] == pytest.approx(1.0)


def test_regression_metrics() -> None:
    X = pd.DataFrame({"x": np.arange(1.0, 51.0)})
    y = pd.Series(2 * X["x"] + 1)
    perfect = compute_metrics(LinearRegression().fit(X, y), X, y, "regression")
    assert set(perfect) == set(REGRESSION_METRICS)
    assert perfect["r2"] == pytest.approx(1.0) and perfect["rmse"] == pytest.approx(0.0, abs=1e-6)
    mean_only = compute_metrics(DummyRegressor().fit(X, y), X, y, "regression")
    assert mean_only["r2"] == pytest.approx(0.0) and mean_only["mae"] > 10


def test_mape_is_undefined_when_a_target_is_zero() -> None:
    X = pd.DataFrame({"x": [0.0, 1.0, 2.0]})
    y = pd.Series([0.0, 1.0, 2.0])
    assert compute_metrics(LinearRegression().fit(X, y), X, y, "regression")["mape"] is None
