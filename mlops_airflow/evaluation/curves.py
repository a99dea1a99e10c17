"""The data behind the gate report's plots, computed once at evaluation time and stored with the verdict.

:func:`plot_data` returns plain JSON (lists and floats, small whatever the holdout size):
a report can be drawn later, anywhere, without the model or the data. Shapes::

    binary      {"confusion": {"labels", "matrix"},
                 "roc": {"fpr", "tpr", "auc"},
                 "pr": {"recall", "precision", "average_precision", "positive_rate"}}
    multiclass  {"confusion": {"labels", "matrix", "folded"?},
                 "roc": {"curves": [{"label", "fpr", "tpr", "auc"}], "omitted"}}
    regression  {"residuals": {"predicted", "residual", "rows"},
                 "summary": {"mean", "std", "p05", "p95"}}

``roc`` and ``pr`` are present only when scores are given and both outcomes occur in
``y_true``. Curves keep at most :data:`MAX_CURVE_POINTS` points, residuals at most
:data:`MAX_RESIDUAL_POINTS`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

MAX_CURVE_POINTS = 200
MAX_RESIDUAL_POINTS = 2000
#: One-vs-rest ROC curves are drawn for this many classes at most (the most frequent ones).
MAX_ROC_CLASSES = 10
#: Beyond this many classes the confusion matrix folds the rarest ones into "(other)".
MAX_CONFUSION_LABELS = 30
OTHER = "(other)"


def plot_data(task: str, y_true: Any, y_pred: Any, scores: Any = None, classes: Any = None) -> dict[str, Any]:
    """Confusion matrix, ROC and PR curves (classifiers) or residuals (regressors) for the report.

    ``classes`` is the model's ``classes_`` order (the positive class of a binary model is the
    last, as in :func:`~mlops_airflow.evaluation.metrics.compute_metrics`); ``scores`` is the
    positive-class probability (binary, 1-D) or ``predict_proba`` (multiclass, one column per
    class), or None. Deterministic: the same inputs give the same dict.
    """
    import numpy as np

    y_true = np.asarray(y_true)
    y_pred = np.asarray(y_pred)
    if len(y_true) != len(y_pred):
        raise ValueError(f"y_true has {len(y_true)} rows but y_pred has {len(y_pred)}")
    if task == "regression":
        return _regression(y_true.astype(float), y_pred.astype(float))
    if task not in ("binary", "multiclass"):
        raise ValueError(f"task: {task!r} is not one of binary, multiclass, regression")
    labels = list(classes) if classes is not None else sorted(set(y_true.tolist()) | set(y_pred.tolist()))
    out: dict[str, Any] = {"confusion": _confusion(y_true, y_pred, labels)}
    if scores is None:
        return out
    scores = np.asarray(scores, dtype=float)
    if task == "binary":
        if scores.ndim == 2:  # predict_proba given whole: the positive class is the last column
            scores = scores[:, -1]
        out.update(_binary_curves(y_true == labels[-1], scores))
    else:
        if scores.ndim != 2 or scores.shape[1] != len(labels):
            raise ValueError(f"scores: expected one column per class ({len(labels)}), got shape {scores.shape}")
        roc = _one_vs_rest(y_true, scores, labels)
        if roc["curves"]:
            out["roc"] = roc
    return out


def _floats(values: Any) -> list[float]:
    return [round(float(v), 6) for v in values]


def downsample(x: np.ndarray, y: np.ndarray, limit: int = MAX_CURVE_POINTS) -> tuple[np.ndarray, np.ndarray]:
    """At most ``limit`` points of the polyline (x, y), first and last kept, chosen by
    largest-triangle-three-buckets so corners survive (evenly spaced points would cut them).
    """
    import numpy as np

    n = len(x)
    if n <= limit or limit < 3:
        return x, y
    edges = np.linspace(1, n - 1, limit - 1).astype(int)  # limit - 2 buckets between the end points
    keep = [0]
    anchor = 0
    for i in range(limit - 2):
        start, stop = edges[i], edges[i + 1]
        next_start, next_stop = (stop, edges[i + 2]) if i + 2 < len(edges) else (n - 1, n)
        ax, ay = x[anchor], y[anchor]
        bx, by = x[next_start:next_stop].mean(), y[next_start:next_stop].mean()
        area = np.abs((ax - bx) * (y[start:stop] - ay) - (ax - x[start:stop]) * (by - ay))
        anchor = int(start + np.argmax(area))
        keep.append(anchor)
    keep.append(n - 1)
    return x[keep], y[keep]


def _confusion(y_true: np.ndarray, y_pred: np.ndarray, labels: list[Any]) -> dict[str, Any]:
    """Counts per (actual, predicted) label, in ``labels`` order; rows with another label are left out."""
    import numpy as np
    import pandas as pd

    # Codes rather than sklearn's confusion_matrix: labels of mixed types (and "(other)")
    # cannot be sorted, and get_indexer needs no order.
    true_code = pd.Index(labels).get_indexer(y_true)
    pred_code = pd.Index(labels).get_indexer(y_pred)
    names = [str(label) for label in labels]
    folded = 0
    if len(labels) > MAX_CONFUSION_LABELS:
        # Keep the most frequent actual classes; a 200 x 200 matrix is unreadable and bloats the verdict.
        counts = np.bincount(true_code[true_code >= 0], minlength=len(labels))
        kept = np.sort(np.argsort(-counts, kind="stable")[: MAX_CONFUSION_LABELS - 1])
        new_code = np.full(len(labels) + 1, len(kept))  # everything else, and unknown labels (-1), is "other"
        new_code[kept] = np.arange(len(kept))
        true_code, pred_code = new_code[true_code], new_code[pred_code]
        folded = len(labels) - len(kept)
        names = [names[i] for i in kept] + [OTHER]
    k = len(names)
    known = (true_code >= 0) & (pred_code >= 0)
    matrix = np.bincount(true_code[known] * k + pred_code[known], minlength=k * k).reshape(k, k)
    out: dict[str, Any] = {"labels": names, "matrix": matrix.tolist()}
    if folded:
        out["folded"] = folded
    return out


def _binary_curves(positive: np.ndarray, scores: np.ndarray) -> dict[str, Any]:
    import numpy as np
    from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score, roc_curve

    if positive.all() or not positive.any():
        return {}  # one outcome only: ROC and PR are undefined
    fpr, tpr, _ = roc_curve(positive, scores)
    fpr, tpr = downsample(fpr, tpr)
    precision, recall, _ = precision_recall_curve(positive, scores)
    # sklearn returns recall from 1 down to 0; ascending reads like the ROC curve.
    recall, precision = downsample(recall[::-1], precision[::-1])
    return {
        "roc": {"fpr": _floats(fpr), "tpr": _floats(tpr), "auc": float(roc_auc_score(positive, scores))},
        "pr": {
            "recall": _floats(recall),
            "precision": _floats(precision),
            "average_precision": float(average_precision_score(positive, scores)),
            "positive_rate": float(np.mean(positive)),
        },
    }


def _one_vs_rest(y_true: np.ndarray, scores: np.ndarray, labels: list[Any]) -> dict[str, Any]:
    import numpy as np
    from sklearn.metrics import roc_auc_score, roc_curve

    present = [(i, label, int(np.sum(y_true == label))) for i, label in enumerate(labels)]
    # A class that never (or always) occurs has no ROC curve.
    usable = [(i, label, n) for i, label, n in present if 0 < n < len(y_true)]
    shown = sorted(usable, key=lambda item: -item[2])[:MAX_ROC_CLASSES]
    curves = []
    for i, label, _ in sorted(shown, key=lambda item: item[0]):
        positive = y_true == label
        fpr, tpr, _ = roc_curve(positive, scores[:, i])
        fpr, tpr = downsample(fpr, tpr)
        curves.append({"label": str(label), "fpr": _floats(fpr), "tpr": _floats(tpr),
                       "auc": float(roc_auc_score(positive, scores[:, i]))})  # fmt: skip
    return {"curves": curves, "omitted": len(labels) - len(curves)}


def _regression(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, Any]:
    import numpy as np

    residual = y_true - y_pred
    finite = np.isfinite(residual) & np.isfinite(y_pred)
    residual, predicted = residual[finite], y_pred[finite]
    index = np.arange(len(residual))
    if len(index) > MAX_RESIDUAL_POINTS:
        # A fixed seed: the same holdout always shows the same points; random rather than
        # evenly spaced so that sorted data is not sampled in a pattern.
        index = np.sort(np.random.default_rng(0).choice(len(index), MAX_RESIDUAL_POINTS, replace=False))
    summary: dict[str, float | None]
    if len(residual):
        summary = {
            "mean": float(np.mean(residual)),
            "std": float(np.std(residual)),
            "p05": float(np.percentile(residual, 5)),
            "p95": float(np.percentile(residual, 95)),
        }
    else:
        summary = {"mean": None, "std": None, "p05": None, "p95": None}
    return {
        "residuals": {"predicted": _floats(predicted[index]), "residual": _floats(residual[index]), "rows": int(len(residual))},
        "summary": summary,
    }
