"""How often the default gate blesses a model no better than chance.

Each holdout is drawn afresh; a candidate that knows nothing about the target (random
guessing, uniform or matched to the class prior, and every scikit-learn Dummy strategy) is
judged against the Dummy baseline by the *same code the pipeline uses*:
:func:`mlops_airflow.evaluation.evaluate.baseline_interval` (the one-sided paired bootstrap
of the gain) and :func:`mlops_airflow.evaluation.gate.decide` with the default gate and no
champion. Only the model fitting and the candidate's metrics table (which the decision does
not read) are skipped, so that 1,000+ holdouts per setting stay cheap. An informative
candidate is run beside them, to show the gate still blesses a real model.

    .venv/bin/python bench/gate_chance.py --holdouts 1000
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
from sklearn.dummy import DummyClassifier, DummyRegressor

from mlops_airflow.evaluation.evaluate import _dummy, baseline_interval
from mlops_airflow.evaluation.gate import DEFAULT_GATE, decide, normalise_gate
from mlops_airflow.evaluation.statistics import Predictions

SPEC = normalise_gate(DEFAULT_GATE)
# (name, task, holdout rows, class probabilities or None for regression)
SETTINGS: list[tuple[str, str, int, list[float] | None]] = [
    ("binary balanced", "binary", 50, [0.5, 0.5]),
    ("binary balanced", "binary", 200, [0.5, 0.5]),
    ("binary balanced", "binary", 1000, [0.5, 0.5]),
    ("binary 5% positives", "binary", 60, [0.95, 0.05]),
    ("binary 5% positives", "binary", 200, [0.95, 0.05]),
    ("binary 5% positives", "binary", 1000, [0.95, 0.05]),
    ("multiclass 3 classes", "multiclass", 100, [0.5, 0.3, 0.2]),
    ("regression", "regression", 100, None),
]
Candidate = Callable[[np.random.Generator, pd.DataFrame, np.ndarray, np.ndarray, str], Predictions]


def _random_scores(rng: np.random.Generator, n: int, classes: np.ndarray, task: str, prior: np.ndarray | None) -> Predictions:
    """Probabilities that ignore the row; labels drawn uniformly or from the training prior."""
    if task == "binary":
        scores = rng.random(n)
        threshold = 0.5 if prior is None else 1.0 - prior[1]
        return Predictions(y_pred=classes[(scores > threshold).astype(int)], scores=scores, classes=list(classes))
    proba = rng.dirichlet(np.ones(len(classes)), n)
    labels = rng.choice(classes, n, p=prior) if prior is not None else classes[proba.argmax(axis=1)]
    return Predictions(y_pred=labels, scores=proba, classes=list(classes))


def random_uniform(rng: np.random.Generator, X: pd.DataFrame, y_train: np.ndarray, y: np.ndarray, task: str) -> Predictions:
    if task == "regression":
        return Predictions(y_pred=rng.uniform(y_train.min(), y_train.max(), len(X)))
    return _random_scores(rng, len(X), np.unique(y_train), task, None)


def random_prior(rng: np.random.Generator, X: pd.DataFrame, y_train: np.ndarray, y: np.ndarray, task: str) -> Predictions:
    if task == "regression":
        return Predictions(y_pred=rng.normal(y_train.mean(), y_train.std(), len(X)))
    classes, counts = np.unique(y_train, return_counts=True)
    return _random_scores(rng, len(X), classes, task, counts / counts.sum())


def dummy(strategy: str, **kwargs: Any) -> Candidate:
    def make(rng: np.random.Generator, X: pd.DataFrame, y_train: np.ndarray, y: np.ndarray, task: str) -> Predictions:
        seed = int(rng.integers(2**31))
        if task == "regression":
            model: Any = DummyRegressor(strategy=strategy, **kwargs)
        else:
            extra = {"constant": np.unique(y_train)[-1]} if strategy == "constant" else {}
            model = DummyClassifier(strategy=strategy, random_state=seed, **extra)
        # A Dummy ignores the features: a column of zeros as long as each target will do.
        return Predictions.of(model.fit(pd.DataFrame({"x": np.zeros(len(y_train))}), y_train), X, task)

    return make


def informative(rng: np.random.Generator, X: pd.DataFrame, y_train: np.ndarray, y: np.ndarray, task: str) -> Predictions:
    """A real model's worth of signal (binary ROC AUC about 0.8), to show the gate still blesses one."""
    n = len(y)
    if task == "regression":
        return Predictions(y_pred=y + rng.normal(0, 0.7 * y.std(), n))
    classes = np.unique(y_train)
    if task == "binary":
        scores = 1 / (1 + np.exp(-(1.2 * (y == classes[1]) + rng.normal(0, 0.9, n))))
        return Predictions(y_pred=classes[(scores > 0.5).astype(int)], scores=scores, classes=list(classes))
    logits = rng.normal(0, 1, (n, len(classes))) + 1.5 * (y[:, None] == classes[None, :])
    proba = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return Predictions(y_pred=classes[proba.argmax(axis=1)], scores=proba, classes=list(classes))


CLASSIFIER_CANDIDATES: dict[str, Candidate] = {
    "random uniform": random_uniform, "random prior-matched": random_prior,
    **{f"Dummy {s}": dummy(s) for s in ("most_frequent", "prior", "stratified", "uniform", "constant")},
}  # fmt: skip
REGRESSOR_CANDIDATES: dict[str, Candidate] = {
    "random uniform": random_uniform, "random prior-matched": random_prior,
    "Dummy mean": dummy("mean"), "Dummy median": dummy("median"), "Dummy quantile 0.9": dummy("quantile", quantile=0.9),
    "Dummy constant 0": dummy("constant", constant=0.0),
}  # fmt: skip


def draw(rng: np.random.Generator, task: str, n: int, probs: list[float] | None) -> np.ndarray:
    if task == "regression":
        return rng.normal(20.0, 5.0, n)
    labels = np.array(["a", "b", "c"][: len(probs or [])]) if task == "multiclass" else np.array([0, 1])
    y = rng.choice(labels, n, p=probs)
    while len(np.unique(y)) < len(labels):  # the pipeline would refuse a holdout missing a class
        y = rng.choice(labels, n, p=probs)
    return y


def blessed(rng: np.random.Generator, task: str, n: int, probs: list[float] | None, candidate: Candidate) -> bool:
    y_train, y = draw(rng, task, 4 * n, probs), draw(rng, task, n, probs)
    X = pd.DataFrame({"x": np.zeros(n)})
    base = Predictions.of(_dummy(task).fit(pd.DataFrame({"x": np.zeros(len(y_train))}), y_train), X, task)
    ours = candidate(rng, X, y_train, y, task)
    evidence = {"holdout_rows": n, "metrics": {"candidate": {}, "baseline": {}},
                "baseline_interval": baseline_interval(SPEC, task, y, ours, base)}
    return bool(decide(spec=SPEC, source="default", task=task, evidence=evidence, champion=None)["blessed"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--holdouts", type=int, default=1000, help="simulated holdouts per setting and candidate")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-rows", type=int, default=None, help="skip settings with larger holdouts (the slow ones)")
    parser.add_argument("--from-setting", type=int, default=0, help="skip the first settings (to split a run)")
    args = parser.parse_args()
    stated = 1 - SPEC["baseline"]["confidence"]
    print(f"default gate: one-sided {SPEC['baseline']['confidence']:.0%} paired bootstrap lower bound of the gain over "
          f"the Dummy > {SPEC['baseline']['min_improvement']}; stated error rate against chance: at most {stated:.0%}")
    print(f"{'setting':<24}{'n':>6}  {'candidate':<22}{'blessed':>9}{'rate':>8}  {'stated':>6}")
    worst = 0.0
    for s, (name, task, n, probs) in enumerate(SETTINGS):
        if s < args.from_setting or (args.max_rows is not None and n > args.max_rows):
            continue
        candidates = {**(REGRESSOR_CANDIDATES if task == "regression" else CLASSIFIER_CANDIDATES), "(informative)": informative}
        for c, (label, candidate) in enumerate(candidates.items()):
            rng = np.random.default_rng([args.seed, s, c])
            started = time.perf_counter()
            hits = sum(blessed(rng, task, n, probs, candidate) for _ in range(args.holdouts))
            rate = hits / args.holdouts
            if label != "(informative)":
                worst = max(worst, rate)
            print(f"{name:<24}{n:>6}  {label:<22}{hits:>9}{rate:>8.2%}  {stated:>6.0%}"
                  f"   ({time.perf_counter() - started:.0f} s)", flush=True)
    print(f"worst blessing rate of a chance-level candidate: {worst:.2%} (stated: at most {stated:.0%})")


if __name__ == "__main__":
    main()
