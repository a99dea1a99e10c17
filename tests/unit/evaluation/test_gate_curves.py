"""Plot data for the gate report: right numbers, bounded size, deterministic, plain JSON."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, confusion_matrix, roc_auc_score

from mlops_airflow.evaluation.curves import (
    MAX_CONFUSION_LABELS,
    MAX_CURVE_POINTS,
    MAX_RESIDUAL_POINTS,
    MAX_ROC_CLASSES,
    OTHER,
    downsample,
    plot_data,
)


def _binary(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = np.where(rng.random(n) < 0.3, "yes", "no")
    scores = np.clip(0.35 * (y == "yes") + rng.normal(0.35, 0.2, n), 0, 1)
    return y, np.where(scores > 0.5, "yes", "no"), scores


def test_binary_confusion_roc_and_pr_match_sklearn() -> None:
    y, pred, scores = _binary(3000)

    data = plot_data("binary", y, pred, scores, ["no", "yes"])

    assert set(data) == {"confusion", "roc", "pr"}
    assert data["confusion"] == {"labels": ["no", "yes"], "matrix": confusion_matrix(y, pred, labels=["no", "yes"]).tolist()}
    roc, pr = data["roc"], data["pr"]
    assert (roc["fpr"][0], roc["tpr"][0]) == (0.0, 0.0)
    assert (roc["fpr"][-1], roc["tpr"][-1]) == (1.0, 1.0)
    assert roc["auc"] == pytest.approx(roc_auc_score(y == "yes", scores))
    assert pr["average_precision"] == pytest.approx(average_precision_score(y == "yes", scores))
    assert pr["positive_rate"] == pytest.approx(np.mean(y == "yes"))
    assert pr["recall"][0] == 0.0 and pr["recall"][-1] == 1.0  # ascending, like the ROC curve
    assert len(roc["fpr"]) == len(roc["tpr"]) and len(pr["recall"]) == len(pr["precision"])
    json.dumps(data)


def test_the_positive_class_is_the_last_of_classes() -> None:
    y, pred, scores = _binary(500)

    flipped = plot_data("binary", y, pred, 1 - scores, ["yes", "no"])

    assert flipped["confusion"]["labels"] == ["yes", "no"]
    assert flipped["roc"]["auc"] == pytest.approx(roc_auc_score(y == "no", 1 - scores))


def test_binary_accepts_the_whole_predict_proba() -> None:
    y, pred, scores = _binary(500)

    whole = plot_data("binary", y, pred, np.column_stack([1 - scores, scores]), ["no", "yes"])

    assert whole == plot_data("binary", y, pred, scores, ["no", "yes"])


def test_curves_are_capped_and_keep_their_end_points() -> None:
    y, pred, scores = _binary(60_000, seed=1)

    data = plot_data("binary", y, pred, scores, ["no", "yes"])

    for x, yy in ((data["roc"]["fpr"], data["roc"]["tpr"]), (data["pr"]["recall"], data["pr"]["precision"])):
        assert 100 < len(x) <= MAX_CURVE_POINTS
        assert len(x) == len(yy)
    assert data["roc"]["fpr"][0] == 0.0 and data["roc"]["tpr"][-1] == 1.0


def test_downsampling_keeps_a_sharp_corner() -> None:
    # A ROC-like curve that climbs straight to (0, 0.9) and then runs flat: evenly spaced
    # points could skip the corner; the downsampled curve must pass through it.
    x = np.concatenate([np.zeros(5000), np.linspace(0, 1, 5000)])
    y = np.concatenate([np.linspace(0, 0.9, 5000), np.linspace(0.9, 1, 5000)])

    xs, ys = downsample(x, y, 50)

    assert len(xs) == 50
    assert (xs[0], ys[0], xs[-1], ys[-1]) == (0, 0, 1, 1)
    assert np.min(np.hypot(xs - 0, ys - 0.9)) < 0.01


def test_without_scores_or_with_one_class_there_is_only_the_confusion_matrix() -> None:
    y, pred, scores = _binary(200)

    assert set(plot_data("binary", y, pred, None, ["no", "yes"])) == {"confusion"}
    only_no = np.array(["no"] * 50)
    assert set(plot_data("binary", only_no, only_no, scores[:50], ["no", "yes"])) == {"confusion"}


def test_multiclass_confusion_and_one_vs_rest_curves() -> None:
    rng = np.random.default_rng(2)
    classes = ["app", "card", "cash"]
    y = rng.choice(classes, 900)
    proba = rng.dirichlet([1, 1, 1], 900)
    proba[np.arange(900), [classes.index(v) for v in y]] += 0.5
    proba /= proba.sum(axis=1, keepdims=True)
    pred = np.array(classes)[proba.argmax(axis=1)]

    data = plot_data("multiclass", y, pred, proba, classes)

    assert data["confusion"]["labels"] == classes
    assert data["confusion"]["matrix"] == confusion_matrix(y, pred, labels=classes).tolist()
    curves = data["roc"]["curves"]
    assert [c["label"] for c in curves] == classes and data["roc"]["omitted"] == 0
    for i, curve in enumerate(curves):
        assert curve["auc"] == pytest.approx(roc_auc_score(y == classes[i], proba[:, i]))
        assert (curve["fpr"][0], curve["tpr"][-1]) == (0.0, 1.0)
    assert set(plot_data("multiclass", y, pred, None, classes)) == {"confusion"}
    json.dumps(data)


def test_multiclass_roc_is_capped_to_the_most_frequent_classes() -> None:
    rng = np.random.default_rng(3)
    classes = [f"c{i:02d}" for i in range(12)]
    weights = np.arange(12, 0, -1) / np.arange(12, 0, -1).sum()  # c00 most frequent, c11 rarest
    y = rng.choice(classes, 3000, p=weights)
    proba = rng.dirichlet(np.ones(12), 3000)

    data = plot_data("multiclass", y, y, proba, classes)

    labels = [c["label"] for c in data["roc"]["curves"]]
    assert len(labels) == MAX_ROC_CLASSES and data["roc"]["omitted"] == 2
    assert "c11" not in labels and "c00" in labels


def test_many_classes_are_folded_in_the_confusion_matrix() -> None:
    classes = list(range(40))
    y = np.repeat(classes, np.arange(40, 0, -1))  # class 0 the most frequent
    pred = np.roll(y, 1)

    confusion = plot_data("multiclass", y, pred, None, classes)["confusion"]

    assert len(confusion["labels"]) == MAX_CONFUSION_LABELS and confusion["labels"][-1] == OTHER
    assert confusion["folded"] == 40 - (MAX_CONFUSION_LABELS - 1)
    assert confusion["labels"][:3] == ["0", "1", "2"]
    assert sum(map(sum, confusion["matrix"])) == len(y)


def test_bad_inputs_are_refused_with_the_reason() -> None:
    y, pred, scores = _binary(20)
    with pytest.raises(ValueError, match="task"):
        plot_data("ranking", y, pred)
    with pytest.raises(ValueError, match="rows"):
        plot_data("binary", y, pred[:5])
    with pytest.raises(ValueError, match="one column per class"):
        plot_data("multiclass", y, pred, np.ones((20, 3)), ["no", "yes"])


def test_regression_residuals_are_a_bounded_deterministic_sample() -> None:
    rng = np.random.default_rng(4)
    y = rng.normal(50, 10, 10_000)
    pred = y + rng.normal(1, 2, 10_000)

    data = plot_data("regression", y, pred)

    residuals, summary = data["residuals"], data["summary"]
    assert len(residuals["predicted"]) == len(residuals["residual"]) == MAX_RESIDUAL_POINTS
    assert residuals["rows"] == 10_000
    assert data == plot_data("regression", y, pred)  # the same holdout shows the same points
    everything = {(round(p, 6), round(r, 6)) for p, r in zip(pred, y - pred, strict=True)}
    assert all((p, r) in everything for p, r in zip(residuals["predicted"], residuals["residual"], strict=True))
    assert summary["mean"] == pytest.approx(np.mean(y - pred))
    assert summary["std"] == pytest.approx(np.std(y - pred))
    assert summary["p05"] == pytest.approx(np.percentile(y - pred, 5))
    assert summary["p95"] == pytest.approx(np.percentile(y - pred, 95))
    json.dumps(data)


def test_small_regression_holdouts_keep_every_row_in_order() -> None:
    data = plot_data("regression", [3.0, 1.0, 2.0], [2.5, 1.5, 2.0])

    assert data["residuals"] == {"predicted": [2.5, 1.5, 2.0], "residual": [0.5, -0.5, 0.0], "rows": 3}
    assert plot_data("regression", [], [])["summary"]["mean"] is None
