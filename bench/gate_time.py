"""Time the gate's statistics against the naive loop they replace.

The quality gate decides with a paired bootstrap: the metric of the candidate and of the
reference on the same resampled holdout, a thousand times. The obvious implementation
is a Python loop calling scikit-learn twice per resample; ours draws the resamples as an
index matrix and computes every resample's metric in a few vectorised passes. This
script prints both, measured in the same run on the same 100,000-row binary holdout,
next to one plain scikit-learn ``roc_auc_score`` call for scale. The naive loop runs a
few dozen iterations and is extrapolated to the full number of resamples (it says so).

    .venv/bin/python bench/gate_time.py [--rows 100000] [--resamples 1000] [--naive 50] [--runs 3]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
import tracemalloc
from collections.abc import Callable
from typing import Any

import numpy as np
import scipy
import sklearn
from sklearn.metrics import accuracy_score, log_loss, roc_auc_score

from mlops_airflow.evaluation.statistics import Predictions, mcnemar, paired_bootstrap


def median_seconds(fn: Callable[[], Any], runs: int) -> float:
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def peak_mb(fn: Callable[[], Any]) -> float:
    # numpy reports its buffers to tracemalloc, so this is the peak of our arrays.
    tracemalloc.start()
    fn()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak / 1e6


def holdout(rows: int, seed: int = 0) -> tuple[np.ndarray, Predictions, Predictions]:
    """A binary holdout and two models' predictions: the candidate sees the signal less noisily."""
    rng = np.random.default_rng(seed)
    latent = rng.normal(0, 1.5, rows)
    y = (rng.random(rows) < 1 / (1 + np.exp(-latent))).astype(int)

    def model(noise: float) -> Predictions:
        scores = 1 / (1 + np.exp(-(latent + rng.normal(0, noise, rows))))
        return Predictions(y_pred=(scores > 0.5).astype(int), scores=scores, classes=[0, 1])

    return y, model(0.8), model(1.2)


def naive_loop(metric: str, y: np.ndarray, cand: Predictions, ref: Predictions, iterations: int) -> float:
    """Seconds for ``iterations`` resamples of the loop a first implementation would write."""
    assert cand.scores is not None and ref.scores is not None
    rng = np.random.default_rng(1)
    n = len(y)

    def score(p: Predictions, rows: np.ndarray) -> float:
        assert p.scores is not None
        if metric == "roc_auc":
            return float(roc_auc_score(y[rows], p.scores[rows]))
        if metric == "log_loss":
            return float(log_loss(y[rows], np.clip(p.scores[rows], 1e-15, 1), labels=[0, 1]))
        return float(accuracy_score(y[rows], p.y_pred[rows]))

    start = time.perf_counter()
    gains = []
    for _ in range(iterations):
        rows = rng.integers(0, n, n)
        gains.append(score(cand, rows) - score(ref, rows))
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--naive", type=int, default=50, help="iterations of the naive loop actually run")
    parser.add_argument("--runs", type=int, default=3, help="runs per timing; the median is reported")
    args = parser.parse_args()

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(
        f"machine: {cores} cores, {platform.machine()}, Python {platform.python_version()}, numpy {np.__version__}, "
        f"scipy {scipy.__version__}, scikit-learn {sklearn.__version__}, "
        f"OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', '(unset)')}"
    )
    y, cand, ref = holdout(args.rows)
    assert cand.scores is not None
    print(f"holdout: {args.rows:,} rows, binary; {args.resamples:,} paired resamples; median of {args.runs} runs\n")

    once = median_seconds(lambda: roc_auc_score(y, cand.scores), max(args.runs, 5))
    print(f"one sklearn roc_auc_score on the whole holdout: {once * 1000:.1f} ms\n")

    scale = args.resamples / args.naive
    print(f"| metric | ours: paired_bootstrap | naive loop, {args.naive} iterations run | naive, extrapolated x{scale:g} "
          "| speed-up | our peak memory | interval of the gain |")
    print("|---|---:|---:|---:|---:|---:|---|")
    for metric in ("roc_auc", "accuracy", "log_loss"):
        def ours(metric: str = metric) -> dict[str, Any]:
            return paired_bootstrap(metric, "binary", y, cand, ref, resamples=args.resamples, seed=0)

        ours_s = median_seconds(ours, args.runs)
        result = ours()
        memory = peak_mb(ours)
        naive_s = naive_loop(metric, y, cand, ref, args.naive)
        naive_full = naive_s * scale
        print(
            f"| {metric} | {ours_s:.2f} s | {naive_s:.2f} s | {naive_full:.1f} s | {naive_full / ours_s:.0f}x "
            f"| {memory:.0f} MB | [{result['low']}, {result['high']}] |"
        )
    test_s = median_seconds(lambda: mcnemar(y, cand.y_pred, ref.y_pred), max(args.runs, 5))
    test = mcnemar(y, cand.y_pred, ref.y_pred)
    print(f"\nMcNemar on the same holdout: {test_s * 1000:.1f} ms (b={test['b']}, c={test['c']}, p={test['p_value']:.3g})")
    print("The naive loop resamples the rows and calls scikit-learn for both models at each iteration; "
          f"it ran {args.naive} iterations and its time is multiplied by {scale:g}.")


if __name__ == "__main__":
    main()
