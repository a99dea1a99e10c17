"""The default gate cannot be fooled by chance: a model no better than guessing is never blessed
on small or imbalanced holdouts, a good model is, and the report shows how it was decided.

Evidence is gathered by the pipeline's own :func:`gather_evidence` (the Dummy baseline fitted on
the training rows, the candidate predicting the holdout) and decided by the default gate."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.dummy import DummyClassifier

from mlops_airflow.evaluation.evaluate import gather_evidence
from mlops_airflow.evaluation.gate import decide, load_gate_spec, normalise_gate
from mlops_airflow.evaluation.report import render_gate_report
from mlops_airflow.evaluation.statistics import mcnemar

SEEDS = [0, 1, 2, 3, 4, 5]
# (holdout rows, share of positives): small and balanced; imbalanced with 5% positives.
HOLDOUTS = [(60, 0.5), (200, 0.05)]


class Guesser:
    """Scores every row at random, ignoring its features; labels follow the scores.

    ``threshold`` 0.5 guesses uniformly; 1 - prior guesses positives as often as they occur.
    """

    def __init__(self, seed: int, threshold: float = 0.5, signal: float = 0.0) -> None:
        self.seed, self.threshold, self.signal = seed, threshold, signal
        self.classes_ = np.array([0, 1])

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        noise = np.random.default_rng(self.seed).random(len(X))
        # signal > 0 reads the (leaked) true label: a genuinely good model.
        scores = (1 - self.signal) * noise + self.signal * X["truth"].to_numpy()
        return np.column_stack([1 - scores, scores])

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        return (self.predict_proba(X)[:, 1] > self.threshold).astype(int)


def frames(rows: int, positives: float, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A training frame four times the holdout, and the holdout, with exactly the share of positives."""
    rng = np.random.default_rng(seed)

    def frame(n: int) -> pd.DataFrame:
        y = np.zeros(n, dtype=int)
        y[rng.choice(n, max(2, round(n * positives)), replace=False)] = 1
        return pd.DataFrame({"x": rng.normal(size=n), "truth": y, "label": y})

    return frame(4 * rows), frame(rows)


def verdict_for(model: Any, rows: int, positives: float, seed: int, *, fit: bool = False) -> dict[str, Any]:
    spec, source = load_gate_spec(None)
    train, holdout = frames(rows, positives, seed)
    if fit:
        model.fit(train[["x", "truth"]], train["label"])
    candidate = {"task_type": "binary", "target": "label", "drop_columns": None}
    evidence, _ = gather_evidence(spec, candidate, model, train, holdout, None)
    return decide(spec=spec, source=source, task="binary", evidence=evidence, champion=None)


@pytest.mark.parametrize(("rows", "positives"), HOLDOUTS)
@pytest.mark.parametrize("seed", SEEDS)
def test_random_guessing_is_never_blessed(rows: int, positives: float, seed: int) -> None:
    for threshold in (0.5, 1 - positives):  # uniform, then matched to the prior
        verdict = verdict_for(Guesser(seed, threshold), rows, positives, seed)
        check = verdict["checks"][0]
        assert verdict["blessed"] is False, (threshold, check)
        assert check["kind"] == "baseline" and check["interval"]["alternative"] == "greater"


@pytest.mark.parametrize(("rows", "positives"), HOLDOUTS)
@pytest.mark.parametrize("strategy", ["most_frequent", "prior", "stratified", "uniform", "constant"])
def test_no_dummy_strategy_is_blessed(rows: int, positives: float, strategy: str) -> None:
    for seed in SEEDS[:3]:
        model = DummyClassifier(strategy=strategy, random_state=seed, **({"constant": 1} if strategy == "constant" else {}))
        assert verdict_for(model, rows, positives, seed, fit=True)["blessed"] is False


@pytest.mark.parametrize(("rows", "positives"), HOLDOUTS)
@pytest.mark.parametrize("seed", SEEDS[:3])
def test_a_good_model_is_blessed_on_the_same_holdouts(rows: int, positives: float, seed: int) -> None:
    verdict = verdict_for(Guesser(seed, signal=0.3), rows, positives, seed)
    check = verdict["checks"][0]
    assert verdict["blessed"] is True, check
    # Decided on the lower bound, which lies below the point gain.
    assert check["value"] == check["interval"]["low"] < check["interval"]["gain"]


def test_a_dummy_is_not_better_than_itself_even_with_no_margin() -> None:
    spec = normalise_gate({"baseline": {"min_improvement": 0}})
    interval = {"metric": "roc_auc", "gain": 0.0, "low": 0.0, "high": 0.0, "confidence": 0.95, "resamples": 1000,
                "undefined_resamples": 0, "alternative": "greater"}
    evidence = {"holdout_rows": 100, "metrics": {"candidate": {"roc_auc": 0.5}, "baseline": {"roc_auc": 0.5}},
                "baseline_interval": interval}
    assert decide(spec=spec, source="user", task="binary", evidence=evidence, champion=None)["blessed"] is False


def test_mcnemar_with_no_disagreements_is_no_evidence_and_does_not_bless() -> None:
    y = np.array([0, 1] * 30)
    result = mcnemar(y, y, y)
    assert result["outcome"] == "no_evidence" and result["p_value"] is None
    spec = normalise_gate({"mcnemar": {"alpha": 0.05}})
    metrics = {"candidate": {"accuracy": 1.0}, "baseline": {"accuracy": 0.5}, "champion": {"accuracy": 1.0}}
    champion = {"version": 1, "sha256": "c" * 64, "comparable": True, "reason": "same"}
    verdict = decide(spec=spec, source="user", task="binary", champion=champion,
                     evidence={"holdout_rows": 60, "metrics": metrics, "mcnemar": result})
    check = verdict["checks"][0]
    assert verdict["blessed"] is False and check["outcome"] == "no_evidence" and "no evidence" in verdict["reason"]
    assert "no evidence" in render_gate_report(verdict)


def test_the_report_shows_the_interval_and_the_test_of_the_baseline_comparison() -> None:
    verdict = verdict_for(Guesser(0, signal=0.3), 60, 0.5, 0)
    interval = verdict["baseline_interval"]
    page = render_gate_report(verdict)
    assert "99% one-sided" in page and "paired percentile bootstrap, one-sided lower bound at 99%" in page
    assert f"{interval['low']:+.3f}".rstrip("0") in page or f"{interval['low']:+.4f}" in page
