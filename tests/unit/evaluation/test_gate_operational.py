"""The gate's operational checks: latency measurement and allowlisted custom checks."""

from __future__ import annotations

import json
import sys

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from mlops_airflow.evaluation.operational import (
    BUILTIN_CUSTOM_CHECKS,
    measure_latency,
    prediction_bias,
    resolve_custom_check,
)
from mlops_airflow.exceptions import GateSpecError

BIAS = "mlops_airflow.evaluation.operational.prediction_bias"


@pytest.fixture(scope="module")
def pipeline_and_frame() -> tuple[object, pd.DataFrame]:
    rng = np.random.default_rng(0)
    X = pd.DataFrame({"x": rng.normal(size=300), "colour": rng.choice(["red", "blue", "green"], 300)})
    y = (X["x"] > 0).astype(int)
    pre = ColumnTransformer([("num", StandardScaler(), ["x"]), ("cat", OneHotEncoder(handle_unknown="ignore"), ["colour"])])
    return make_pipeline(pre, LogisticRegression()).fit(X, y), X


def test_latency_reports_single_row_and_batch_percentiles(pipeline_and_frame: tuple) -> None:
    model, X = pipeline_and_frame
    report = measure_latency(model, X, single_rows=30, batch_rows=500, repeats=3)
    assert json.loads(json.dumps(report)) == report
    single, batch = report["single_row_ms"], report["batch_ms"]
    assert single["n"] == 30 and 0 < single["p50"] <= single["p99"]
    assert (batch["rows"], batch["n"]) == (500, 3) and 0 < batch["p50"] <= batch["p99"]
    assert report["batch_rows_per_second"] > 0


def test_latency_counts_only_predict_calls() -> None:
    class Counting:
        def __init__(self) -> None:
            self.calls: list[int] = []

        def predict(self, X: pd.DataFrame) -> np.ndarray:
            self.calls.append(len(X))
            return np.zeros(len(X))

    model = Counting()
    measure_latency(model, pd.DataFrame({"x": range(10)}), single_rows=4, batch_rows=25, repeats=2)
    # One warm-up call before each series; the batch is sampled with replacement from 10 rows.
    assert model.calls == [1] * 5 + [25] * 3


def test_latency_refuses_empty_inputs() -> None:
    with pytest.raises(ValueError, match="empty"):
        measure_latency(object(), pd.DataFrame({"x": []}))
    with pytest.raises(ValueError, match="repeats"):
        measure_latency(object(), pd.DataFrame({"x": [1]}), repeats=0)


def test_the_builtin_bias_check_resolves_without_an_allowlist() -> None:
    assert BIAS in BUILTIN_CUSTOM_CHECKS
    assert resolve_custom_check(BIAS, []) is prediction_bias


def test_a_check_off_the_allowlist_is_refused_before_import() -> None:
    sys.modules.pop("json.tool", None)
    with pytest.raises(GateSpecError, match=r"'json\.tool\.main' is not allowed"):
        resolve_custom_check("json.tool.main", ["json.tool.mainx", "json.tool"])
    assert "json.tool" not in sys.modules


def test_an_allowlisted_check_resolves_and_bad_paths_are_named() -> None:
    assert callable(resolve_custom_check("numpy.mean", ["numpy.mean"]))
    with pytest.raises(GateSpecError, match="'no_such_module_xyz.f': cannot import"):
        resolve_custom_check("no_such_module_xyz.f", ["no_such_module_xyz.f"])
    with pytest.raises(GateSpecError, match="'numpy.no_such_function'.*no function"):
        resolve_custom_check("numpy.no_such_function", ["numpy.no_such_function"])
    with pytest.raises(GateSpecError, match="not a dotted path"):
        resolve_custom_check("os.system; rm", ["os.system; rm"])


def test_prediction_bias_for_regression_binary_and_multiclass() -> None:
    assert prediction_bias([1.0, 2.0, 3.0], np.array([2.5, 3.0, 3.5])) == pytest.approx(1.0)
    # Predicted positive rate 3/4, actual 1/2.
    assert prediction_bias(["no", "yes", "no", "yes"], np.array(["yes", "yes", "no", "yes"]), None) == pytest.approx(0.25)
    assert prediction_bias([0, 1, 1, 0], np.array([0.0, 1.0, 1.0, 0.0])) == 0.0  # labels as floats: classification
    assert prediction_bias(["a", "b", "c", "c"], np.array(["a", "a", "a", "c"])) == pytest.approx(0.5)
    # An explicit task wins over the guess: a mean prediction that happens to equal a target.
    assert prediction_bias([1.0, 2.0, 3.0], np.array([2.0, 2.0, 2.0]), task="regression") == 0.0
