"""The gate's statistics: metrics on resamples, paired bootstrap, McNemar, decisions, slices."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from sklearn.dummy import DummyClassifier
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.metrics import roc_auc_score
from sklearn.tree import DecisionTreeClassifier

from mlops_airflow.evaluation.metrics import metrics_for
from mlops_airflow.evaluation.statistics import (
    Predictions,
    compare,
    mcnemar,
    metric_value,
    paired_bootstrap,
    slice_metrics,
)
from mlops_airflow.exceptions import GateSpecError

TASKS = ("binary", "multiclass", "regression")
TOLERANCE = 1.5e-6  # compute_metrics rounds to 6 decimals


def make_data(task: str, n: int, seed: int = 0, noise: float = 1.0) -> tuple[pd.DataFrame, pd.Series]:
    rng = np.random.default_rng(seed)
    X = pd.DataFrame({"a": rng.normal(size=n), "b": rng.normal(size=n), "c": rng.normal(size=n)})
    signal = X["a"] + 0.5 * X["b"] + rng.normal(0, noise, n)
    if task == "binary":
        return X, pd.Series(np.where(signal > 0, "yes", "no"), name="y")
    if task == "multiclass":
        return X, pd.Series(np.array(["low", "mid", "high"])[np.digitize(signal, [-0.6, 0.6])], name="y")
    return X, pd.Series(3 * signal + 20, name="y")


def fit(task: str, X: pd.DataFrame, y: pd.Series) -> Any:
    return Ridge().fit(X, y) if task == "regression" else LogisticRegression().fit(X, y)


def same(a: float | None, b: float | None) -> bool:
    return (a is None and b is None) or (a is not None and b is not None and abs(a - b) <= TOLERANCE)



def _clean_reference(value: float) -> float | None:
    value = float(value)
    return None if math.isnan(value) or math.isinf(value) else round(value, 6)


def compute_metrics(model: Any, X: pd.DataFrame, y: pd.Series, task: str) -> dict[str, float | None]:
    """The oracle: every metric straight from sklearn.metrics, one model.predict at a time."""
    from sklearn import metrics as m

    predictions = model.predict(X)
    if task == "regression":
        y_true = y.to_numpy(dtype=float)
        mape = m.mean_absolute_percentage_error(y_true, predictions) if (y_true != 0).all() else float("nan")
        return {
            "r2": _clean_reference(m.r2_score(y_true, predictions)),
            "rmse": _clean_reference(math.sqrt(m.mean_squared_error(y_true, predictions))),
            "mae": _clean_reference(m.mean_absolute_error(y_true, predictions)),
            "mape": _clean_reference(mape),
        }
    average = "binary" if task == "binary" else "macro"
    classes = list(model.classes_)
    pos_label = classes[-1] if task == "binary" else None
    result: dict[str, float | None] = {
        "accuracy": _clean_reference(m.accuracy_score(y, predictions)),
        "balanced_accuracy": _clean_reference(m.balanced_accuracy_score(y, predictions)),
        "precision": _clean_reference(m.precision_score(y, predictions, average=average, pos_label=pos_label, zero_division=0)),
        "recall": _clean_reference(m.recall_score(y, predictions, average=average, pos_label=pos_label, zero_division=0)),
        "f1": _clean_reference(m.f1_score(y, predictions, average=average, pos_label=pos_label, zero_division=0)),
        "roc_auc": None,
        "log_loss": None,
        "pr_auc": None,
        "brier": None,
    }
    if hasattr(model, "predict_proba"):
        result.update(_probability_metrics(m, y, model.predict_proba(X), task, classes))
    return result


def _probability_metrics(m: Any, y: pd.Series, proba: np.ndarray, task: str, classes: list[Any]) -> dict[str, float | None]:
    """roc_auc, log_loss, pr_auc and brier from sklearn.metrics; None where undefined."""
    from sklearn.preprocessing import label_binarize

    result: dict[str, float | None] = {}
    known = set(np.unique(y)) <= set(classes)
    if task == "binary":
        positive = (y == classes[-1]).to_numpy()
        result["brier"] = _clean_reference(m.brier_score_loss(positive, proba[:, 1]))
        if positive.any():
            result["pr_auc"] = _clean_reference(m.average_precision_score(positive, proba[:, 1]))
    elif known:
        onehot = label_binarize(y, classes=classes)
        result["brier"] = _clean_reference(((proba - onehot) ** 2).sum(axis=1).mean())
        if onehot.any(axis=0).all():
            result["pr_auc"] = _clean_reference(m.average_precision_score(onehot, proba, average="macro"))
    if y.nunique() >= 2:
        if task == "binary":
            result["roc_auc"] = _clean_reference(m.roc_auc_score(y == classes[-1], proba[:, 1]))
        elif known:
            result["roc_auc"] = _clean_reference(m.roc_auc_score(y, proba, multi_class="ovr", labels=classes))
        result["log_loss"] = _clean_reference(m.log_loss(y, np.clip(proba, 1e-15, 1), labels=classes))
    return result


@pytest.fixture(scope="module", params=TASKS)
def fitted(request: pytest.FixtureRequest) -> tuple[str, pd.DataFrame, pd.Series, Any]:
    X, y = make_data(request.param, 500)
    return request.param, X, y, fit(request.param, X, y)


# ---------------------------------------------------------------------------------------
# metric_value


def test_metric_value_agrees_with_compute_metrics_for_every_metric(fitted: tuple) -> None:
    task, X, y, model = fitted
    expected = compute_metrics(model, X, y, task)
    p = Predictions.of(model, X, task)
    got = {metric: metric_value(metric, task, y, p) for metric in metrics_for(task)}
    assert all(same(got[m], expected[m]) for m in metrics_for(task)), (got, expected)


def test_integer_weights_equal_the_metric_on_repeated_rows(fitted: tuple) -> None:
    task, X, y, model = fitted
    weights = np.random.default_rng(1).integers(0, 4, len(y))
    repeated = np.repeat(np.arange(len(y)), weights)
    expected = compute_metrics(model, X.iloc[repeated], y.iloc[repeated], task)
    p = Predictions.of(model, X, task)
    got = {metric: metric_value(metric, task, y, p, weights) for metric in metrics_for(task)}
    assert all(same(got[m], expected[m]) for m in metrics_for(task)), (got, expected)


@pytest.mark.parametrize("task", ["binary", "multiclass"])
def test_weighted_roc_auc_handles_tied_scores_like_sklearn(task: str) -> None:
    X, y = make_data(task, 400, seed=3)
    tree = DecisionTreeClassifier(max_depth=3, random_state=0).fit(X, y)  # a few distinct scores: many ties
    p = Predictions.of(tree, X, task)
    assert p.scores is not None and len(np.unique(p.scores)) < 40
    weights = np.random.default_rng(2).integers(0, 3, len(y))
    repeated = np.repeat(np.arange(len(y)), weights)
    if task == "binary":
        expected = roc_auc_score(y.iloc[repeated] == "yes", p.scores[repeated])
    else:
        expected = roc_auc_score(y.iloc[repeated], p.scores[repeated], multi_class="ovr", labels=list(tree.classes_))
    assert metric_value("roc_auc", task, y, p, weights) == pytest.approx(expected, abs=1e-12)
    assert metric_value("roc_auc", task, y, p) == pytest.approx(compute_metrics(tree, X, y, task)["roc_auc"], abs=TOLERANCE)


@pytest.mark.parametrize("task", ["binary", "multiclass"])
def test_weighted_pr_auc_and_brier_handle_tied_scores_like_sklearn(task: str) -> None:
    X, y = make_data(task, 400, seed=3)
    tree = DecisionTreeClassifier(max_depth=3, random_state=0).fit(X, y)  # a few distinct scores: many ties
    p = Predictions.of(tree, X, task)
    assert p.scores is not None and len(np.unique(p.scores)) < 40
    weights = np.random.default_rng(2).integers(0, 3, len(y))
    repeated = np.repeat(np.arange(len(y)), weights)
    expected = compute_metrics(tree, X.iloc[repeated], y.iloc[repeated], task)
    for metric in ("pr_auc", "brier"):
        assert expected[metric] is not None
        assert metric_value(metric, task, y, p, weights) == pytest.approx(expected[metric], abs=TOLERANCE)
        assert metric_value(metric, task, y, p) == pytest.approx(compute_metrics(tree, X, y, task)[metric], abs=TOLERANCE)


def test_pr_auc_needs_a_positive_and_probabilities() -> None:
    X, y = make_data("binary", 200)
    p = Predictions.of(fit("binary", X, y), X, "binary")
    only_no = (y == "no").to_numpy().astype(int)
    assert metric_value("pr_auc", "binary", y, p, only_no) is None
    assert metric_value("brier", "binary", y, p, only_no) is not None
    no_proba = Predictions(y_pred=p.y_pred)
    assert metric_value("pr_auc", "binary", y, no_proba) is None
    assert metric_value("brier", "binary", y, no_proba) is None


def test_metrics_that_need_two_classes_are_undefined_on_one() -> None:
    X, y = make_data("binary", 200)
    p = Predictions.of(fit("binary", X, y), X, "binary")
    only_yes = (y == "yes").to_numpy().astype(int)
    assert metric_value("roc_auc", "binary", y, p, only_yes) is None
    assert metric_value("log_loss", "binary", y, p, only_yes) is None
    assert metric_value("accuracy", "binary", y, p, only_yes) is not None
    assert metric_value("accuracy", "binary", y, p, np.zeros(len(y), int)) is None


def test_metric_value_refuses_bad_metrics_and_weights() -> None:
    X, y = make_data("binary", 50)
    p = Predictions.of(fit("binary", X, y), X, "binary")
    with pytest.raises(GateSpecError, match="'rmse' does not apply to binary"):
        metric_value("rmse", "binary", y, p)
    with pytest.raises(ValueError, match="integer"):
        metric_value("accuracy", "binary", y, p, np.full(len(y), 0.5))
    no_proba = Predictions(y_pred=p.y_pred)
    assert metric_value("roc_auc", "binary", y, no_proba) is None


# ---------------------------------------------------------------------------------------
# paired_bootstrap and compare


@pytest.mark.parametrize("seed", [0, 7, 123])
@pytest.mark.parametrize(
    ("task", "metric"),
    [
        ("binary", "roc_auc"), ("binary", "accuracy"), ("binary", "log_loss"), ("multiclass", "f1"),
        ("regression", "rmse"), ("binary", "pr_auc"), ("binary", "brier"), ("multiclass", "pr_auc"),
        ("multiclass", "brier"),
    ],
)
def test_identical_models_are_never_significantly_better(task: str, metric: str, seed: int) -> None:
    X, y = make_data(task, 1000, seed=seed)
    p = Predictions.of(fit(task, X, y), X, task)
    interval = paired_bootstrap(metric, task, y, p, p, resamples=300, seed=seed)
    assert interval["difference"] == 0 and interval["low"] <= 0 <= interval["high"]
    assert not compare(interval, mode="superiority", margin=0.0)["passed"]
    if task != "regression":
        assert mcnemar(y, p.y_pred, p.y_pred) == {
            "b": 0, "c": 0, "statistic": None, "p_value": None, "method": "no disagreements", "outcome": "no_evidence",
        }


def test_equally_good_models_are_rarely_called_better() -> None:
    # Two score sets made from the same model's scores plus independent noise of the same
    # size are exactly as good on the population. A 95% interval should call the first
    # better in about 2.5% of holdouts: at most 3 of 20 (binomial tail < 0.2%).
    wins = 0
    for trial in range(20):
        X, y = make_data("binary", 1000, seed=1000 + trial)
        logit = fit("binary", X, y).decision_function(X)
        rng = np.random.default_rng(trial)
        first, second = (1 / (1 + np.exp(-(logit + rng.normal(0, 1.0, len(y))))) for _ in range(2))
        interval = paired_bootstrap(
            "roc_auc", "binary", y,
            Predictions(y_pred=np.where(first > 0.5, "yes", "no"), scores=first, classes=["no", "yes"]),
            Predictions(y_pred=np.where(second > 0.5, "yes", "no"), scores=second, classes=["no", "yes"]),
            resamples=300, seed=trial,
        )
        wins += compare(interval, mode="superiority")["passed"]
    assert wins <= 3


def test_a_clearly_better_model_on_a_large_holdout_is_significantly_better() -> None:
    X, y = make_data("binary", 20_000, seed=5, noise=0.5)
    good = LogisticRegression().fit(X, y)
    weak = LogisticRegression().fit(X[["b"]], y)  # sees only the weaker feature
    candidate, reference = Predictions.of(good, X, "binary"), Predictions.of(weak, X[["b"]], "binary")
    for metric in ("roc_auc", "accuracy", "log_loss", "pr_auc", "brier"):
        interval = paired_bootstrap(metric, "binary", y, candidate, reference, resamples=200)
        assert interval["gain"] > 0.05 and interval["low"] > 0.05, interval
        assert compare(interval, mode="superiority", margin=0.01)["passed"]
    test = mcnemar(y, candidate.y_pred, reference.y_pred)
    assert test["p_value"] < 0.001 and test["b"] > test["c"]
    assert test["method"] == "chi-square with continuity correction"


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("metric", ["roc_auc", "accuracy", "balanced_accuracy", "f1", "log_loss"])
def test_a_dummy_never_passes_against_a_real_model(metric: str, seed: int) -> None:
    X_train, y_train = make_data("binary", 1000, seed=seed)
    X, y = make_data("binary", 2000, seed=seed + 100)
    dummy = Predictions.of(DummyClassifier(strategy="prior").fit(X_train, y_train), X, "binary")
    real = Predictions.of(fit("binary", X_train, y_train), X, "binary")
    interval = paired_bootstrap(metric, "binary", y, dummy, real, resamples=300, seed=seed)
    assert interval["gain"] < 0
    assert not compare(interval, mode="superiority", margin=0.0)["passed"]
    assert not compare(interval, mode="non_inferiority", margin=0.01)["passed"]


def test_non_inferiority_passes_within_the_margin_and_fails_outside() -> None:
    # The candidate is the reference with 100 of 20,000 right answers turned wrong:
    # exactly 0.5 points of accuracy worse.
    X, y = make_data("binary", 20_000, seed=8)
    reference = Predictions.of(fit("binary", X, y), X, "binary")
    right = np.flatnonzero(reference.y_pred == y.to_numpy())[:100]
    worse = reference.y_pred.copy()
    worse[right] = np.where(worse[right] == "yes", "no", "yes")
    candidate = Predictions(y_pred=worse, scores=reference.scores, classes=reference.classes)
    interval = paired_bootstrap("accuracy", "binary", y, candidate, reference, resamples=500)
    assert interval["difference"] == pytest.approx(-0.005) and interval["gain"] == pytest.approx(-0.005)
    assert -0.008 < interval["low"] < interval["high"] < -0.002
    assert compare(interval, mode="non_inferiority", margin=0.02)["passed"]
    assert not compare(interval, mode="non_inferiority", margin=0.002)["passed"]
    assert not compare(interval, mode="superiority")["passed"]


def test_lower_is_better_metrics_are_oriented() -> None:
    X, y = make_data("regression", 3000, seed=4)
    good = Predictions.of(fit("regression", X, y), X, "regression")
    noisy = Predictions(y_pred=good.y_pred + np.random.default_rng(0).normal(0, 3, len(y)))
    interval = paired_bootstrap("rmse", "regression", y, good, noisy, resamples=200)
    assert interval["difference"] < 0 < interval["gain"] and interval["low"] > 0
    assert compare(interval, mode="superiority")["passed"]


def test_the_same_seed_gives_the_same_interval() -> None:
    X, y = make_data("binary", 800, seed=6)
    a = Predictions.of(fit("binary", X, y), X, "binary")
    b = Predictions.of(fit("binary", X[["a"]], y), X[["a"]], "binary")
    first = paired_bootstrap("roc_auc", "binary", y, a, b, resamples=400, seed=11)
    assert paired_bootstrap("roc_auc", "binary", y, a, b, resamples=400, seed=11) == first
    other = paired_bootstrap("roc_auc", "binary", y, a, b, resamples=400, seed=12)
    assert (other["low"], other["high"]) != (first["low"], first["high"])
    assert other["gain"] == first["gain"]


def test_chunks_do_not_change_the_resamples_statistics(monkeypatch: pytest.MonkeyPatch) -> None:
    # Small chunks (as on a large holdout) must give an interval close to one big chunk.
    import mlops_airflow.evaluation.statistics as statistics

    X, y = make_data("binary", 1000, seed=2)
    a = Predictions.of(fit("binary", X, y), X, "binary")
    b = Predictions.of(fit("binary", X[["b"]], y), X[["b"]], "binary")
    whole = paired_bootstrap("roc_auc", "binary", y, a, b, resamples=2000, seed=1)
    monkeypatch.setattr(statistics, "_CHUNK_ELEMENTS", 7 * 1000)
    chunked = paired_bootstrap("roc_auc", "binary", y, a, b, resamples=2000, seed=1)
    assert chunked["low"] == pytest.approx(whole["low"], abs=0.01)
    assert chunked["high"] == pytest.approx(whole["high"], abs=0.01)


def test_an_undefined_metric_gives_no_interval_and_fails_closed() -> None:
    X, y = make_data("regression", 100)
    y = y.copy()
    y.iloc[0] = 0.0  # MAPE is undefined with a zero target
    p = Predictions.of(fit("regression", X, y), X, "regression")
    interval = paired_bootstrap("mape", "regression", y, p, p, resamples=50)
    assert interval["gain"] is None and interval["low"] is None
    decision = compare(interval, mode="non_inferiority", margin=1.0)
    assert not decision["passed"] and "could not be estimated" in decision["rule"]


def test_compare_rejects_bad_modes_and_margins() -> None:
    interval = {"metric": "accuracy", "low": 0.1, "high": 0.2, "confidence": 0.95}
    with pytest.raises(GateSpecError, match="mode 'better'"):
        compare(interval, mode="better", margin=0.0)  # type: ignore[arg-type]
    with pytest.raises(GateSpecError, match="margin"):
        compare(interval, mode="superiority", margin=-0.1)
    assert compare(interval, mode="superiority", margin=0.05)["passed"]
    assert not compare(interval, mode="superiority", margin=0.1)["passed"]  # strictly above


def test_bootstrap_rejects_bad_settings() -> None:
    X, y = make_data("binary", 50)
    p = Predictions.of(fit("binary", X, y), X, "binary")
    with pytest.raises(GateSpecError, match="resamples"):
        paired_bootstrap("accuracy", "binary", y, p, p, resamples=0)
    with pytest.raises(GateSpecError, match="confidence"):
        paired_bootstrap("accuracy", "binary", y, p, p, confidence=95)


# ---------------------------------------------------------------------------------------
# McNemar


def test_mcnemar_exact_below_25_discordant_rows() -> None:
    y = np.ones(100, int)
    candidate = y.copy()
    reference = y.copy()
    candidate[:3] = 0  # reference alone right on 3 rows
    reference[3:15] = 0  # candidate alone right on 12 rows
    test = mcnemar(y, candidate, reference)
    assert (test["b"], test["c"], test["method"]) == (12, 3, "exact binomial")
    assert test["p_value"] == pytest.approx(stats.binomtest(3, 15, 0.5).pvalue)


def test_mcnemar_chi_square_with_continuity_correction() -> None:
    y = np.array(["a"] * 200)
    candidate = y.copy()
    reference = y.copy()
    candidate[:10] = "b"
    reference[10:40] = "b"
    test = mcnemar(y, candidate, reference)
    assert (test["b"], test["c"]) == (30, 10)
    assert test["statistic"] == pytest.approx((20 - 1) ** 2 / 40)
    assert test["p_value"] == pytest.approx(stats.chi2.sf((20 - 1) ** 2 / 40, 1))


# ---------------------------------------------------------------------------------------
# Slices


def test_slices_report_each_value_the_worst_and_the_gap() -> None:
    X, y = make_data("binary", 900, seed=12)
    model = fit("binary", X, y)
    region = pd.Series(np.where(X["a"] > 0.8, "north", np.where(X["a"] < -0.8, "south", "centre")), name="region")
    region.iloc[:5] = None  # five rows with no region: too few to score
    region.iloc[5:12] = "islands"  # seven rows: too few to score
    p = Predictions.of(model, X, "binary")
    report = slice_metrics("accuracy", "binary", y, p, region, min_rows=30)
    assert report["column"] == "region" and report["metric"] == "accuracy"
    assert [s["value"] for s in report["slices"]] == ["centre", "north", "south"]
    assert report["skipped"] == [{"value": "<missing>", "rows": 5}, {"value": "islands", "rows": 7}]
    for entry in report["slices"]:
        mask = (region == entry["value"]).to_numpy()
        assert entry["rows"] == mask.sum()
        assert entry["metric"] == pytest.approx(compute_metrics(model, X[mask], y[mask], "binary")["accuracy"], abs=TOLERANCE)
    values = {s["value"]: s["metric"] for s in report["slices"]}
    assert report["worst"]["metric"] == min(values.values()) and report["best"]["metric"] == max(values.values())
    assert report["max_gap"] == pytest.approx(max(values.values()) - min(values.values()), abs=1e-9)


def test_for_lower_is_better_metrics_the_worst_slice_is_the_highest() -> None:
    X, y = make_data("regression", 600, seed=13)
    p = Predictions.of(fit("regression", X, y), X, "regression")
    bucket = np.where(X["c"] > 0, 1, 0)
    report = slice_metrics("rmse", "regression", y, p, bucket)
    values = {s["value"]: s["metric"] for s in report["slices"]}
    assert set(values) == {0, 1} and report["column"] is None
    assert report["worst"]["metric"] == max(values.values())


# ---------------------------------------------------------------------------------------
# JSON


def test_every_result_survives_json() -> None:
    X, y = make_data("multiclass", 300, seed=14)
    p = Predictions.of(fit("multiclass", X, y), X, "multiclass")
    q = Predictions.of(fit("multiclass", X[["a"]], y), X[["a"]], "multiclass")
    interval = paired_bootstrap("balanced_accuracy", "multiclass", y, p, q, resamples=100)
    results = [
        interval,
        compare(interval, mode="non_inferiority", margin=0.01),
        mcnemar(y, p.y_pred, q.y_pred),
        slice_metrics("f1", "multiclass", y, p, pd.Series(np.where(X["b"] > 0, "x", None), name="side")),
    ]
    for result in results:
        assert json.loads(json.dumps(result, allow_nan=False)) == result
