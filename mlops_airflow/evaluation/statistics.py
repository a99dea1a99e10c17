"""Statistics for the quality gate: is the candidate *significantly* better, or not worse?

A point comparison of two metrics on one holdout cannot tell a real improvement from luck.
This module gives the gate what it needs to decide with statistics:

- :func:`metric_value`: every metric of :mod:`mlops_airflow.evaluation.metrics`, computed
  once per model from its :class:`Predictions`, optionally on a resampled holdout given as
  integer row weights (a weight of 2 counts the row twice);
- :func:`paired_bootstrap`: the percentile interval of the oriented metric gain of a
  candidate over a reference, both scored on the *same* resampled rows;
- :func:`mcnemar`: McNemar's test on the rows where exactly one of two classifiers is right;
- :func:`compare`: the superiority / non-inferiority decision on such an interval;
- :func:`slice_metrics`: the metric per value of a column, with the worst slice and the gap.

Every metric is implemented once, as a function of a *resample index matrix*: each row of
the matrix lists the holdout rows of one resample (drawn with replacement, so the number of
times a row appears is its multinomial bootstrap count). Row-decomposable metrics reduce to
gathers and ``np.bincount`` over that matrix, and ROC AUC and average precision to
per-resample counts over the scores sorted once, so a thousand resamples cost a few passes
over memory instead of a thousand calls to scikit-learn. The matrix is processed in chunks
so that memory stays bounded whatever the number of resamples.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from mlops_airflow.evaluation.metrics import HIGHER_IS_BETTER, metrics_for
from mlops_airflow.exceptions import GateSpecError

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "Predictions",
    "compare",
    "mcnemar",
    "metric_value",
    "paired_bootstrap",
    "slice_metrics",
]

Mode = Literal["superiority", "non_inferiority"]
#: ``two-sided``: ``low`` and ``high`` bound a central interval at ``confidence``;
#: ``greater``: ``low`` alone is a one-sided lower bound at ``confidence`` (and ``high`` the
#: matching upper bound), the bound a "better by more than a margin" test needs.
Alternative = Literal["two-sided", "greater"]

#: Elements of one resample index matrix chunk. Each chunk allocates a few arrays of this
#: size (int32 indices, gathered codes or values, per-resample group counts), so 2**21
#: keeps the peak near 100 MB even for ROC AUC on 100,000 rows with all scores distinct.
_CHUNK_ELEMENTS = 2**21

#: Probabilities are clipped like metrics.compute_metrics (1e-15) and then like
#: scikit-learn's log_loss (float64 eps below 1), so the two implementations agree.
_PROBA_FLOOR = 1e-15
_PROBA_CEIL = 1.0 - float(np.finfo(np.float64).eps)

#: A resample metric: index matrix (resamples x rows) -> metric per resample, NaN where undefined.
_Batch = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class Predictions:
    """What one model produced on the holdout, computed once and reused by every statistic.

    ``scores`` is the positive-class probability (1-D) for binary tasks, the probability
    matrix (rows x classes, columns in ``classes`` order) for multiclass, and None for
    regression or models without ``predict_proba``. ``classes`` is the model's
    ``classes_`` (the binary positive class is ``classes[-1]``, as in metrics.py).
    """

    y_pred: np.ndarray
    scores: np.ndarray | None = None
    classes: list[Any] | None = None

    @classmethod
    def of(cls, model: Any, X: pd.DataFrame, task: str) -> Predictions:
        """Predict once with ``model`` on ``X`` the way metrics.compute_metrics does."""
        y_pred = np.asarray(model.predict(X))
        if task == "regression":
            return cls(y_pred=y_pred.astype(float))
        # Python scalars, not numpy ones, so that classes can go into a JSON record.
        classes = [c.item() if hasattr(c, "item") else c for c in model.classes_] if hasattr(model, "classes_") else None
        scores = None
        if hasattr(model, "predict_proba"):
            proba = np.asarray(model.predict_proba(X), dtype=float)
            scores = proba[:, 1] if task == "binary" else proba
        return cls(y_pred=y_pred, scores=scores, classes=classes)

    def take(self, rows: np.ndarray) -> Predictions:
        """The predictions for a subset of holdout rows (integer positions)."""
        return Predictions(
            y_pred=self.y_pred[rows],
            scores=None if self.scores is None else self.scores[rows],
            classes=self.classes,
        )


# ---------------------------------------------------------------------------------------
# Metrics on resample index matrices


def _check_metric(metric: str, task: str) -> None:
    if task not in ("binary", "multiclass", "regression"):
        raise GateSpecError(f"unknown task {task!r} (expected binary, multiclass or regression)")
    if metric not in metrics_for(task):
        raise GateSpecError(
            f"metric {metric!r} does not apply to {task} models (use one of {', '.join(metrics_for(task))})"
        )


def _group_counts(codes: np.ndarray, n_codes: int, idx: np.ndarray) -> np.ndarray:
    """How many rows of each code every resample holds: (resamples x n_codes) int64."""
    resamples = idx.shape[0]
    flat = codes[idx]  # codes are int64, so the offsets below cannot overflow
    flat += (np.arange(resamples, dtype=np.int64) * n_codes)[:, None]
    return np.bincount(flat.ravel(), minlength=resamples * n_codes).reshape(resamples, n_codes)


def _ratio(num: np.ndarray, den: np.ndarray, *, undefined: float) -> np.ndarray:
    out = np.full(np.broadcast(num, den).shape, undefined, dtype=float)
    np.divide(num, den, out=out, where=den != 0)
    return out


def _encode(values: np.ndarray, labels: np.ndarray | list[Any]) -> np.ndarray:
    """Position of each value in ``labels`` (-1 where absent), for any label type."""
    import pandas as pd

    return np.asarray(pd.Index(list(labels)).get_indexer(values), dtype=np.int64)


def _classes(task: str, y: np.ndarray, p: Predictions) -> list[Any]:
    if p.classes is not None:
        return list(p.classes)
    # A fitted classifier's classes_ are the sorted labels it saw; without them, the sorted
    # labels on both sides are the closest stand-in.
    return list(np.unique(np.concatenate([y, p.y_pred])))


def _label_metric(metric: str, task: str, y: np.ndarray, p: Predictions) -> _Batch:
    """accuracy, balanced_accuracy, precision, recall, f1 from per-resample confusion counts."""
    if task == "binary" and metric in ("precision", "recall", "f1"):
        positive = _classes(task, y, p)[-1]
        k = 2
        true_code = (y == positive).astype(np.int64)
        pred_code = (p.y_pred == positive).astype(np.int64)
    else:
        # As scikit-learn does with labels=None: the labels are those seen on either side.
        labels, inverse = np.unique(np.concatenate([y, p.y_pred]), return_inverse=True)
        k = len(labels)
        true_code, pred_code = inverse[: len(y)].astype(np.int64), inverse[len(y):].astype(np.int64)
    codes = true_code * k + pred_code

    def batch(idx: np.ndarray) -> np.ndarray:
        confusion = _group_counts(codes, k * k, idx).reshape(-1, k, k)  # [resample, true, predicted]
        correct = np.diagonal(confusion, axis1=1, axis2=2)
        true_n = confusion.sum(axis=2)
        pred_n = confusion.sum(axis=1)
        if metric == "accuracy":
            return _ratio(correct.sum(axis=1), true_n.sum(axis=1), undefined=np.nan)
        if metric == "balanced_accuracy":
            # Mean recall over the classes present in y_true, as balanced_accuracy_score.
            present = true_n > 0
            recall = _ratio(correct, true_n, undefined=0.0)
            return _ratio((recall * present).sum(axis=1), present.sum(axis=1), undefined=np.nan)
        if metric == "precision":
            per_class = _ratio(correct, pred_n, undefined=0.0)  # zero_division=0
        elif metric == "recall":
            per_class = _ratio(correct, true_n, undefined=0.0)
        else:
            per_class = _ratio(2 * correct, true_n + pred_n, undefined=0.0)
        if task == "binary":
            return per_class[:, 1]
        present = (true_n + pred_n) > 0  # macro average over labels seen on either side
        return _ratio((per_class * present).sum(axis=1), present.sum(axis=1), undefined=np.nan)

    return batch


def _binary_auc(positive: np.ndarray, scores: np.ndarray) -> _Batch:
    """Tie-corrected ROC AUC (equal to roc_auc_score) of every resample.

    The scores are ranked once. Each resample's counts of negatives and positives per
    distinct score then give the Mann-Whitney statistic: a positive beats every negative
    with a lower score and half-beats those with an equal score.
    """
    ranks = np.unique(scores, return_inverse=True)[1].reshape(-1).astype(np.int64)
    n_scores = int(ranks.max()) + 1 if len(ranks) else 0
    # Negatives first, then positives, so that each half of a resample's counts is contiguous.
    codes = positive.astype(np.int64) * n_scores + ranks

    def batch(idx: np.ndarray) -> np.ndarray:
        counts = _group_counts(codes, 2 * n_scores, idx).reshape(-1, 2, n_scores)
        neg, pos = counts[:, 0], counts[:, 1]
        # Twice the Mann-Whitney U in exact integer arithmetic: 2 * (negatives below) + ties.
        twice_below = np.cumsum(neg, axis=1)
        twice_below -= neg
        twice_below *= 2
        twice_below += neg
        twice_u = np.einsum("ij,ij->i", pos, twice_below)
        return _ratio(twice_u, 2 * pos.sum(axis=1) * neg.sum(axis=1), undefined=np.nan)

    return batch


def _roc_auc(task: str, y: np.ndarray, p: Predictions) -> _Batch | None:
    if p.scores is None:
        return None
    classes = _classes(task, y, p)
    if task == "binary":
        return _binary_auc(y == classes[-1], np.asarray(p.scores, dtype=float))
    if (_encode(y, classes) < 0).any():
        return None  # labels the model never saw: roc_auc_score refuses, metrics.py gives None
    scores = np.asarray(p.scores, dtype=float)
    per_class = [_binary_auc(y == label, scores[:, j]) for j, label in enumerate(classes)]

    def batch(idx: np.ndarray) -> np.ndarray:
        # One-vs-rest, macro average; a class absent from a resample makes it undefined.
        total = per_class[0](idx)
        for auc in per_class[1:]:
            total += auc(idx)
        return total / len(per_class)

    return batch


def _binary_average_precision(positive: np.ndarray, scores: np.ndarray) -> _Batch:
    """Average precision (equal to average_precision_score) of every resample.

    The scores are ranked once. Going down the distinct scores of a resample, ``tp`` and
    ``fp`` are the cumulative counts of positives and negatives scored at least that high;
    AP = sum over distinct scores of (R_k - R_(k-1)) * P_k, i.e. each score's positives
    times the precision at that score, over all positives. Equal scores form one threshold,
    as in scikit-learn; scores absent from a resample add nothing.
    """
    ranks = np.unique(scores, return_inverse=True)[1].reshape(-1).astype(np.int64)
    n_scores = int(ranks.max()) + 1 if len(ranks) else 0
    codes = positive.astype(np.int64) * n_scores + ranks

    def batch(idx: np.ndarray) -> np.ndarray:
        counts = _group_counts(codes, 2 * n_scores, idx).reshape(-1, 2, n_scores)
        # Highest score first.
        neg, pos = counts[:, 0, ::-1], counts[:, 1, ::-1]
        tp = np.cumsum(pos, axis=1)
        predicted = np.cumsum(neg, axis=1)
        predicted += tp
        precision = _ratio(tp, predicted, undefined=0.0)
        total = np.einsum("ij,ij->i", pos.astype(float), precision)
        # No positive in the resample: recall, hence AP, is undefined.
        return _ratio(total, tp[:, -1], undefined=np.nan)

    return batch


def _pr_auc(task: str, y: np.ndarray, p: Predictions) -> _Batch | None:
    if p.scores is None:
        return None
    classes = _classes(task, y, p)
    if task == "binary":
        return _binary_average_precision(y == classes[-1], np.asarray(p.scores, dtype=float))
    if (_encode(y, classes) < 0).any():
        return None  # labels the model never saw, as for ROC AUC
    scores = np.asarray(p.scores, dtype=float)
    per_class = [_binary_average_precision(y == label, scores[:, j]) for j, label in enumerate(classes)]

    def batch(idx: np.ndarray) -> np.ndarray:
        # One-vs-rest, macro average; a class absent from a resample makes it undefined.
        total = per_class[0](idx)
        for ap in per_class[1:]:
            total += ap(idx)
        return total / len(per_class)

    return batch


def _log_loss(task: str, y: np.ndarray, p: Predictions) -> _Batch | None:
    if p.scores is None:
        return None
    classes = _classes(task, y, p)
    y_code = _encode(y, classes)
    if (y_code < 0).any():
        return None  # log_loss is undefined for a label the model has no probability for
    scores = np.asarray(p.scores, dtype=float)
    if task == "binary":
        p_true = np.where(y_code == len(classes) - 1, scores, 1.0 - scores)
    else:
        p_true = scores[np.arange(len(y)), y_code]
    loss = -np.log(np.clip(p_true, _PROBA_FLOOR, _PROBA_CEIL))
    # The smallest integer type keeps the extra gather below cheap.
    y_small = y_code.astype(np.min_scalar_type(max(len(classes) - 1, 0)))

    def batch(idx: np.ndarray) -> np.ndarray:
        out = loss[idx].mean(axis=1)
        # metrics.py gives no log_loss on a holdout with a single class; neither do we on such a resample.
        codes = y_small[idx]
        out[codes.min(axis=1) == codes.max(axis=1)] = np.nan
        return out

    return batch


def _brier(task: str, y: np.ndarray, p: Predictions) -> _Batch | None:
    """Brier score: mean squared error of the probabilities (multiclass: summed over classes)."""
    if p.scores is None:
        return None
    classes = _classes(task, y, p)
    y_code = _encode(y, classes)
    scores = np.asarray(p.scores, dtype=float)
    if task == "binary":
        loss = (scores - (y_code == len(classes) - 1)) ** 2
    else:
        if (y_code < 0).any():
            return None  # a label the model has no probability column for
        onehot = np.zeros_like(scores)
        onehot[np.arange(len(y)), y_code] = 1.0
        loss = ((scores - onehot) ** 2).sum(axis=1)
    return lambda idx: loss[idx].mean(axis=1)


def _regression(metric: str, y: np.ndarray, p: Predictions) -> _Batch:
    y_true = y.astype(float)
    error = np.asarray(p.y_pred, dtype=float) - y_true
    if metric == "rmse":
        squared = error**2
        return lambda idx: np.sqrt(squared[idx].mean(axis=1))
    if metric == "mae":
        absolute = np.abs(error)
        return lambda idx: absolute[idx].mean(axis=1)
    if metric == "mape":
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.abs(error) / np.maximum(np.abs(y_true), np.finfo(np.float64).eps)
        ratio[y_true == 0] = np.nan  # metrics.py: undefined as soon as one target is 0
        return lambda idx: ratio[idx].mean(axis=1)
    squared = error**2

    def r2(idx: np.ndarray) -> np.ndarray:
        values = y_true[idx]
        values -= values.mean(axis=1, keepdims=True)  # two passes: no cancellation on large targets
        ss_tot = (values**2).sum(axis=1)
        ss_res = squared[idx].sum(axis=1)
        # r2_score(force_finite=True): a constant target scores 1 if predicted exactly, else 0.
        constant = np.where(ss_res == 0, 1.0, 0.0)
        return np.where(ss_tot != 0, 1.0 - _ratio(ss_res, ss_tot, undefined=0.0), constant)

    return r2


def _prepare(metric: str, task: str, y: np.ndarray, p: Predictions) -> _Batch | None:
    """The resample function of ``metric`` for these predictions; None if it cannot be computed."""
    if len(p.y_pred) != len(y) or (p.scores is not None and len(p.scores) != len(y)):
        raise ValueError(f"predictions have {len(p.y_pred)} rows but y_true has {len(y)}")
    if p.scores is not None and task != "regression":
        expected = 1 if task == "binary" else 2
        if np.ndim(p.scores) != expected or (task == "multiclass" and p.scores.shape[1] != len(_classes(task, y, p))):
            raise ValueError(
                f"{task} scores must be " + ("the positive-class probability (1-D)" if task == "binary"
                                             else "a probability matrix with one column per class")
            )
    if task == "regression":
        return _regression(metric, y, p)
    if metric == "roc_auc":
        return _roc_auc(task, y, p)
    if metric == "log_loss":
        return _log_loss(task, y, p)
    if metric == "pr_auc":
        return _pr_auc(task, y, p)
    if metric == "brier":
        return _brier(task, y, p)
    return _label_metric(metric, task, y, p)


def _labels(y_true: Any) -> np.ndarray:
    return np.asarray(y_true).reshape(-1)


def _finite(value: float) -> float | None:
    value = float(value)
    return None if math.isnan(value) or math.isinf(value) else value


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 6)


def metric_value(
    metric: str,
    task: str,
    y_true: Any,
    p: Predictions,
    weights: np.ndarray | None = None,
) -> float | None:
    """``metric`` of the predictions ``p`` against ``y_true``; None where it is undefined.

    The definitions are those of :func:`mlops_airflow.evaluation.metrics.compute_metrics`
    (binary precision, recall and f1 for the positive class ``classes[-1]``, macro averages
    and one-vs-rest ROC AUC and average precision (pr_auc) for multiclass, clipped
    probabilities for log_loss, the multiclass Brier score summed over classes), and the
    values agree with it. ``weights`` are non-negative integer row counts, as a bootstrap
    resample draws them: the result equals the metric on the rows repeated that many times.
    """
    _check_metric(metric, task)
    y = _labels(y_true)
    rows = np.arange(len(y))
    if weights is not None:
        counts = np.asarray(weights).reshape(-1)
        if counts.shape != rows.shape:
            raise ValueError(f"weights have {counts.size} entries but y_true has {len(y)}")
        if (counts < 0).any() or (counts != np.round(counts)).any():
            raise ValueError("weights must be non-negative integer row counts")
        rows = np.repeat(rows, counts.astype(np.int64))
    batch = _prepare(metric, task, y, p)
    if batch is None or rows.size == 0:
        return None
    return _finite(batch(rows[None, :])[0])


# ---------------------------------------------------------------------------------------
# Comparing two models


def _orient(metric: str, difference: float) -> float:
    return difference if HIGHER_IS_BETTER[metric] else -difference


def paired_bootstrap(
    metric: str,
    task: str,
    y_true: Any,
    candidate: Predictions,
    reference: Predictions,
    *,
    resamples: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
    alternative: Alternative = "two-sided",
) -> dict[str, Any]:
    """Percentile bootstrap interval of how much better ``candidate`` is than ``reference``.

    Both models are scored on the same resampled rows (paired), so the interval reflects
    the models' difference, not the luck of the draw that they share. ``gain`` and the
    interval (``low``, ``high``) are oriented: positive means the candidate is better,
    whatever the metric's direction; ``difference`` is candidate minus reference, raw.
    The same ``seed`` gives the same interval. Resamples on which the metric is undefined
    (e.g. ROC AUC on a resample with one class) are left out and counted in
    ``undefined_resamples``; when the metric is undefined on the holdout itself, or on
    every resample, ``gain``, ``low`` and ``high`` are None, which :func:`compare` fails.
    With ``alternative="greater"`` each end is a one-sided bound at ``confidence``: testing
    ``low > margin`` then wrongly passes a candidate whose true gain is at most ``margin``
    in about ``1 - confidence`` of holdouts (the percentile bootstrap is approximate on
    small samples; bench/gate_chance.py measures it).
    """
    _check_metric(metric, task)
    if isinstance(resamples, bool) or not isinstance(resamples, int) or resamples < 1:
        raise GateSpecError(f"resamples must be a positive integer, got {resamples!r}")
    if not 0 < confidence < 1:
        raise GateSpecError(f"confidence must be between 0 and 1, got {confidence!r}")
    if alternative not in ("two-sided", "greater"):
        raise GateSpecError(f"alternative {alternative!r} is not one of two-sided, greater")
    y = _labels(y_true)
    n = len(y)
    result: dict[str, Any] = {
        "metric": metric,
        "candidate": None,
        "reference": None,
        "difference": None,
        "gain": None,
        "low": None,
        "high": None,
        "confidence": confidence,
        "resamples": resamples,
        "undefined_resamples": None,
        "seed": seed,
        "alternative": alternative,
        "method": "paired percentile bootstrap",
    }
    candidate_batch = _prepare(metric, task, y, candidate)
    reference_batch = _prepare(metric, task, y, reference)
    if n == 0 or candidate_batch is None or reference_batch is None:
        return result
    everything = np.arange(n)[None, :]
    cand_value = _finite(candidate_batch(everything)[0])
    ref_value = _finite(reference_batch(everything)[0])
    result.update(candidate=_round(cand_value), reference=_round(ref_value))
    if cand_value is None or ref_value is None:
        return result
    result.update(difference=_round(cand_value - ref_value), gain=_round(_orient(metric, cand_value - ref_value)))

    sign = 1.0 if HIGHER_IS_BETTER[metric] else -1.0
    rng = np.random.default_rng(seed)
    # The chunk size depends only on n, so the same seed draws the same resamples.
    chunk = max(1, min(resamples, _CHUNK_ELEMENTS // n))
    index_type = np.int32 if n < 2**31 else np.int64  # int32 halves the bytes drawn and gathered
    gains = np.empty(resamples)
    for start in range(0, resamples, chunk):
        size = min(chunk, resamples - start)
        idx = rng.integers(0, n, size=(size, n), dtype=index_type)
        gains[start : start + size] = sign * (candidate_batch(idx) - reference_batch(idx))
    defined = gains[np.isfinite(gains)]
    result["undefined_resamples"] = int(resamples - defined.size)
    if defined.size:
        tail = (1.0 - confidence) * 100 / (2 if alternative == "two-sided" else 1)
        low, high = np.percentile(defined, [tail, 100 - tail])
        result.update(low=_round(float(low)), high=_round(float(high)))
    return result


def mcnemar(y_true: Any, candidate_pred: Any, reference_pred: Any) -> dict[str, Any]:
    """McNemar's two-sided test of two classifiers' accuracy on the same rows.

    Only the discordant rows count: ``b`` where the candidate alone is right, ``c`` where
    the reference alone is. Below 25 discordant rows the exact binomial test is used (the
    chi-square approximation is poor there); above, chi-square with continuity correction.
    The p-value says whether the accuracies differ, not which is better: compare b and c.
    With no discordant row there is nothing to test: ``outcome`` is ``no_evidence`` and the
    p-value None (the classifiers agree everywhere, so neither is better); else ``tested``.
    """
    from scipy import stats

    y = _labels(y_true)
    cand_right = _labels(candidate_pred) == y
    ref_right = _labels(reference_pred) == y
    b = int(np.count_nonzero(cand_right & ~ref_right))
    c = int(np.count_nonzero(ref_right & ~cand_right))
    discordant = b + c
    if discordant == 0:
        return {"b": 0, "c": 0, "statistic": None, "p_value": None, "method": "no disagreements", "outcome": "no_evidence"}
    if discordant < 25:
        statistic = float(min(b, c))
        p_value = min(1.0, 2.0 * float(stats.binom.cdf(min(b, c), discordant, 0.5)))
        method = "exact binomial"
    else:
        statistic = (abs(b - c) - 1) ** 2 / discordant
        p_value = float(stats.chi2.sf(statistic, 1))
        method = "chi-square with continuity correction"
    return {"b": b, "c": c, "statistic": round(statistic, 6), "p_value": p_value, "method": method, "outcome": "tested"}


def compare(interval: dict[str, Any], *, mode: Mode, margin: float = 0.0) -> dict[str, Any]:
    """Decide on a :func:`paired_bootstrap` interval of the oriented gain.

    ``superiority`` passes only if the whole interval lies above ``margin`` (the candidate
    is better by more than the margin); ``non_inferiority`` passes only if it lies above
    ``-margin`` (the candidate is at worst ``margin`` worse). An interval that could not be
    estimated fails: a gate that cannot measure must not bless.
    """
    if mode not in ("superiority", "non_inferiority"):
        raise GateSpecError(f"comparison mode {mode!r} is not one of superiority, non_inferiority")
    if isinstance(margin, bool) or not isinstance(margin, int | float) or not margin >= 0:
        raise GateSpecError(f"comparison margin must be a number >= 0, got {margin!r}")
    margin = float(margin)
    bound = margin if mode == "superiority" else -margin
    metric = interval.get("metric")
    low = interval.get("low")
    level = f"{float(interval.get('confidence', 0.95)):.0%}"
    wanted = (
        f"better than the reference on {metric} by more than {margin:g}"
        if mode == "superiority"
        else f"no more than {margin:g} worse than the reference on {metric}"
    )
    if low is None:
        return {
            "passed": False,
            "mode": mode,
            "margin": margin,
            "rule": f"the candidate must be {wanted}; the {metric} gain could not be estimated, so the check fails",
        }
    passed = bool(low > bound)
    verdict = "pass" if passed else "fail"
    return {
        "passed": passed,
        "mode": mode,
        "margin": margin,
        "rule": (
            f"the candidate must be {wanted}: the lower end of the {level} interval of the gain "
            f"is {low:g}, {'above' if passed else 'not above'} {bound:g} ({verdict})"
        ),
    }


# ---------------------------------------------------------------------------------------
# Slices


def _json_value(value: Any) -> Any:
    if hasattr(value, "item"):
        value = value.item()  # numpy scalars
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


def slice_metrics(
    metric: str,
    task: str,
    y_true: Any,
    p: Predictions,
    slice_values: np.ndarray | pd.Series,
    *,
    min_rows: int = 30,
) -> dict[str, Any]:
    """``metric`` on each value of a column, with the worst and best slices and their gap.

    Slices with fewer than ``min_rows`` rows are listed under ``skipped`` rather than
    scored: their metric is mostly noise. Missing values form the slice ``"<missing>"``.
    ``worst`` and ``best`` follow the metric's direction and ``max_gap`` is the distance
    between them; all three are None when no slice has a defined metric.
    """
    import pandas as pd

    _check_metric(metric, task)
    y = _labels(y_true)
    column = slice_values.name if isinstance(slice_values, pd.Series) else None
    values = pd.Series(np.asarray(slice_values, dtype=object).reshape(-1))
    if len(values) != len(y):
        raise ValueError(f"slice values have {len(values)} rows but y_true has {len(y)}")
    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    order = np.argsort(codes, kind="stable")
    starts = np.flatnonzero(np.r_[True, np.diff(codes[order]) != 0]) if len(order) else np.array([], int)
    slices: list[dict[str, Any]] = []
    skipped: list[dict[str, Any]] = []
    for start, end in zip(starts, [*starts[1:], len(order)], strict=True):
        rows = order[start:end]
        code = int(codes[rows[0]])
        value = "<missing>" if code < 0 else _json_value(uniques[code])
        if len(rows) < min_rows:
            skipped.append({"value": value, "rows": int(len(rows))})
            continue
        score = metric_value(metric, task, y[rows], p.take(rows))
        slices.append({"value": value, "rows": int(len(rows)), "metric": _round(score)})
    slices.sort(key=lambda s: str(s["value"]))
    skipped.sort(key=lambda s: str(s["value"]))
    scored = [s for s in slices if s["metric"] is not None]
    worst = best = None
    gap = None
    if scored:
        ranked = sorted(scored, key=lambda s: s["metric"], reverse=HIGHER_IS_BETTER[metric])
        best, worst = ranked[0], ranked[-1]
        gap = round(abs(best["metric"] - worst["metric"]), 6)
    return {
        "column": None if column is None else str(column),
        "metric": metric,
        "min_rows": min_rows,
        "slices": slices,
        "skipped": skipped,
        "worst": worst,
        "best": best,
        "max_gap": gap,
    }
