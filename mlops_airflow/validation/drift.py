"""Drift of a dataset from a reference: population stability index and a two-sample test per column.

The reference is normally the data the current champion was trained on; the caller
loads it and picks the columns (features only: no target, no row key).

Per column, by kind:

numeric (both sides of a numeric or boolean dtype)
    PSI over the reference's deciles, and the two-sample Kolmogorov-Smirnov test.
    The bins are the open intervals between the reference's (distinct) decile values
    *and those values themselves*: a point mass (a constant column, an integer column,
    a spike at zero) gets a bin of its own instead of hiding inside an interval. Missing
    and infinite values form one more bin, so a rise in nulls is drift too.
categorical (anything else; values compared as text, missing as ``<missing>``)
    PSI over the reference's categories (the ``MAX_CATEGORIES`` most frequent; the rest
    pooled as ``<other>``) plus one pooled bin for categories the reference never had,
    and the chi-square test of homogeneity on the same 2 x k table. Unseen categories
    are listed with their counts.

A column has drifted when any of its thresholds is breached (``DEFAULT_THRESHOLDS``,
overridable for all columns and per column):

- ``psi``: PSI above it (0.1 is commonly read as "some shift", 0.25 as "major shift");
- ``ks_pvalue`` / ``chi2_pvalue``: the test's p-value below it;
- ``unseen_share``: the share of current rows holding unseen categories above it.

PSI is the primary signal. The tests answer "could both samples come from one
distribution?", and with hundreds of thousands of rows the answer is "no" for shifts
too small to matter to a model, so their p-values fall below any fixed threshold. Set
``ks_pvalue`` / ``chi2_pvalue`` to 0 to report the tests without letting them decide.

The result is JSON-serialisable, small whatever the data size, and rounded to six
significant digits. It is an input for decisions (the validation stage warns or stops
by its ``policy``; a retraining trigger can read ``breach``, ``max_psi`` and
``drifted_columns``), never an exception.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

Policy = Literal["warn", "stop"]

#: Thresholds used where the config sets none.
DEFAULT_THRESHOLDS: dict[str, float] = {
    "psi": 0.2,
    "ks_pvalue": 0.001,
    "chi2_pvalue": 0.001,
    "unseen_share": 0.01,
}
POLICIES = ("warn", "stop")
#: Reference categories kept as their own bins; rarer ones are pooled, so an ID-like column
#: does not make thousands of near-empty bins (noise in PSI, a huge result).
MAX_CATEGORIES = 50
#: Unseen categories listed by name (the most frequent first); all are counted.
MAX_LISTED_UNSEEN = 20
#: Stands in for an empty bin's share: PSI takes the logarithm of the ratio of shares.
EPSILON = 1e-4
NUMERIC_BINS = 10
MISSING = "<missing>"
OTHER = "<other>"
UNSEEN = "<unseen>"
#: Same marker as the validation summary's redacted samples.
REDACTED = "<redacted>"

_CONFIG_KEYS = ("reference", "policy", "columns", "per_column", *DEFAULT_THRESHOLDS)
_MAX_LABEL_CHARS = 120


def compute_drift(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    *,
    columns: list[str] | None = None,
    config: dict | None = None,
    redact: bool = False,
) -> dict[str, Any]:
    """Compare ``current`` with ``reference`` column by column; see the module docstring.

    ``columns`` defaults to ``config["columns"]``, else every column present in both
    frames (in the reference's order). A named column missing from either frame is
    listed in ``missing_columns`` and not compared: absent columns are the schema
    check's business. ``config`` is the spec's ``drift`` section
    (:func:`~mlops_airflow.validation.spec.drift_config`) or any subset of it:
    ``policy``, the thresholds and ``per_column: {name: {threshold: value}}``.

    Returns ``{"reference_rows", "current_rows", "columns": {name: {...}},
    "drifted_columns", "max_psi", "missing_columns", "thresholds", "breach", "policy"}``;
    ``breach`` is true when any column drifted. When either frame has no rows nothing
    is compared and the result says why in ``skipped`` (``breach`` false). With ``redact``
    no data value appears in the result (they can be personal data): bin edges are left
    out, bins and categories are numbered, unseen categories are counted but not named. Raises
    ``ValueError`` for an invalid config.
    """
    config = dict(config or {})
    unknown = sorted(set(config) - set(_CONFIG_KEYS))
    if unknown:
        raise ValueError(
            f"drift config: unknown key(s) {', '.join(unknown)} (allowed: {', '.join(_CONFIG_KEYS)})"
        )
    policy = config.get("policy") or "warn"
    if policy not in POLICIES:
        raise ValueError(f"drift config: policy must be one of {', '.join(POLICIES)}, got {policy!r}")
    defaults = {
        **DEFAULT_THRESHOLDS,
        **{k: config[k] for k in DEFAULT_THRESHOLDS if config.get(k) is not None},
    }
    per_column = config.get("per_column") or {}

    names = list(columns if columns is not None else config.get("columns") or [])
    if columns is None and not config.get("columns"):
        names = [c for c in reference.columns if c in current.columns]
    missing = [str(c) for c in names if c not in reference.columns or c not in current.columns]
    names = [c for c in names if c in reference.columns and c in current.columns]

    result: dict[str, Any] = {
        "reference_rows": int(len(reference)),
        "current_rows": int(len(current)),
        "columns": {},
        "drifted_columns": [],
        "max_psi": None,
        "missing_columns": missing,
        "thresholds": {k: _round(v) for k, v in defaults.items()},
        "breach": False,
        "policy": policy,
    }
    if not len(reference) or not len(current):
        # Not an error: the validation stage still has to write its report for an empty frame.
        result["skipped"] = f"the {'reference' if not len(reference) else 'current data'} has no rows"
        return result

    for name in names:
        thresholds = {**defaults, **{k: v for k, v in (per_column.get(name) or {}).items() if v is not None}}
        ref, cur = reference[name], current[name]
        if ref.dtype.kind in "iufb" and cur.dtype.kind in "iufb":
            entry = _numeric_drift(ref, cur, thresholds)
        else:
            entry = _categorical_drift(ref, cur, thresholds)
        entry["thresholds"] = {k: _round(v) for k, v in thresholds.items()}
        if redact:
            _redact(entry)
        result["columns"][str(name)] = entry
    entries = result["columns"].values()
    result["drifted_columns"] = [n for n, e in result["columns"].items() if e["drifted"]]
    psis = [e["psi"] for e in entries if e["psi"] is not None]
    result["max_psi"] = max(psis) if psis else None
    result["breach"] = bool(result["drifted_columns"])
    return result


# -- per kind -------------------------------------------------------------------------------


def _numeric_drift(ref: pd.Series, cur: pd.Series, thresholds: dict[str, float]) -> dict[str, Any]:
    import numpy as np
    from scipy import stats

    r = ref.to_numpy(dtype="float64", na_value=np.nan)
    c = cur.to_numpy(dtype="float64", na_value=np.nan)
    r_finite, c_finite = r[np.isfinite(r)], c[np.isfinite(c)]
    if r_finite.size:
        cuts = np.unique(np.quantile(r_finite, np.linspace(0, 1, NUMERIC_BINS + 1)[1:-1]))
    else:
        cuts = np.array([], dtype="float64")
    # Bin 2i is the open interval below cuts[i] (above cuts[i-1]), bin 2i+1 is cuts[i] itself.
    n_bins = 2 * len(cuts) + 1
    r_counts = np.append(_bin_counts(r_finite, cuts, n_bins), r.size - r_finite.size)
    c_counts = np.append(_bin_counts(c_finite, cuts, n_bins), c.size - c_finite.size)
    labels = [*_numeric_labels(cuts), MISSING]

    reasons: list[str] = []
    psi = _psi(r_counts, c_counts)
    _check_psi(psi, thresholds, reasons)
    ks = None
    if r_finite.size and c_finite.size:
        test = stats.ks_2samp(r_finite, c_finite)
        ks = {"statistic": _round(test.statistic), "pvalue": _round(test.pvalue)}
        if ks["pvalue"] is not None and ks["pvalue"] < thresholds["ks_pvalue"]:
            reasons.append(f"KS p-value {_fmt(ks['pvalue'])} < {_fmt(thresholds['ks_pvalue'])}")
    keep = (r_counts + c_counts) > 0  # bins empty on both sides add nothing to PSI or the plot
    return {
        "kind": "numeric",
        "psi": _round(psi),
        "ks": ks,
        "chi2": None,
        "unseen_categories": [],
        "unseen_share": None,
        "drifted": bool(reasons),
        "reasons": reasons,
        "histogram": {
            "edges": [_round(e) for e in cuts],
            "labels": [label for label, k in zip(labels, keep, strict=True) if k],
            "reference": _shares(r_counts[keep], r.size),
            "current": _shares(c_counts[keep], c.size),
        },
    }


def _categorical_drift(ref: pd.Series, cur: pd.Series, thresholds: dict[str, float]) -> dict[str, Any]:
    import numpy as np
    from scipy import stats

    r_counts_all = _category_counts(ref)
    c_counts_all = _category_counts(cur)
    kept = r_counts_all.sort_values(ascending=False, kind="stable").index[:MAX_CATEGORIES]
    seen = c_counts_all.index.isin(r_counts_all.index)
    unseen = c_counts_all[~seen].sort_values(ascending=False, kind="stable")
    c_seen = c_counts_all[seen]

    r_kept = r_counts_all.reindex(kept).to_numpy(dtype="int64")
    c_kept = c_seen.reindex(kept, fill_value=0).to_numpy(dtype="int64")
    labels = [str(k) for k in kept]
    r_bins, c_bins = list(r_kept), list(c_kept)
    r_other, c_other = int(r_counts_all.sum() - r_kept.sum()), int(c_seen.sum() - c_kept.sum())
    if r_other or c_other:
        labels.append(OTHER)
        r_bins.append(r_other)
        c_bins.append(c_other)
    unseen_rows = int(unseen.sum())
    if unseen_rows:
        labels.append(UNSEEN)
        r_bins.append(0)
        c_bins.append(unseen_rows)
    r_arr, c_arr = np.array(r_bins, dtype="int64"), np.array(c_bins, dtype="int64")

    reasons: list[str] = []
    psi = _psi(r_arr, c_arr)
    _check_psi(psi, thresholds, reasons)
    chi2 = None
    table = np.vstack([r_arr, c_arr])
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] >= 2:
        test = stats.chi2_contingency(table)
        chi2 = {"statistic": _round(test.statistic), "pvalue": _round(test.pvalue), "dof": int(test.dof)}
        if chi2["pvalue"] is not None and chi2["pvalue"] < thresholds["chi2_pvalue"]:
            reasons.append(f"chi-square p-value {_fmt(chi2['pvalue'])} < {_fmt(thresholds['chi2_pvalue'])}")
    unseen_share = unseen_rows / len(cur)
    if unseen_share > thresholds["unseen_share"]:
        reasons.append(
            f"{len(unseen)} unseen categor{'y' if len(unseen) == 1 else 'ies'} in {unseen_share:.2%} of rows"
            f" > {thresholds['unseen_share']:.2%}"
        )
    return {
        "kind": "categorical",
        "psi": _round(psi),
        "ks": None,
        "chi2": chi2,
        "unseen_categories": [
            {"value": str(value)[:_MAX_LABEL_CHARS], "count": int(count)}
            for value, count in unseen.head(MAX_LISTED_UNSEEN).items()
        ],
        "unseen_distinct": int(len(unseen)),
        "unseen_share": _round(unseen_share),
        "drifted": bool(reasons),
        "reasons": reasons,
        "histogram": {
            "categories": [label[:_MAX_LABEL_CHARS] for label in labels],
            "reference": _shares(r_arr, len(ref)),
            "current": _shares(c_arr, len(cur)),
        },
    }


def _redact(entry: dict[str, Any]) -> None:
    """Replace every data value in a column's entry by a position; counts and shares stay."""
    histogram = entry["histogram"]
    if entry["kind"] == "numeric":
        histogram["edges"] = []
        histogram["labels"] = [
            label if label == MISSING else f"bin {index + 1}"
            for index, label in enumerate(histogram["labels"])
        ]
    else:
        histogram["categories"] = [
            label if label in (MISSING, OTHER, UNSEEN) else f"category {index + 1}"
            for index, label in enumerate(histogram["categories"])
        ]
        entry["unseen_categories"] = [
            {"value": REDACTED, "count": item["count"]} for item in entry["unseen_categories"]
        ]


# -- helpers --------------------------------------------------------------------------------


def _bin_counts(values: np.ndarray, cuts: np.ndarray, n_bins: int) -> np.ndarray:
    import numpy as np

    # left + right is 2i strictly between cuts[i-1] and cuts[i], 2i+1 exactly at cuts[i].
    index = np.searchsorted(cuts, values, side="left") + np.searchsorted(cuts, values, side="right")
    return np.bincount(index, minlength=n_bins)


def _numeric_labels(cuts: np.ndarray) -> list[str]:
    if not len(cuts):
        return ["all values"]
    labels = [f"< {_fmt(cuts[0])}"]
    for i, cut in enumerate(cuts):
        labels.append(f"= {_fmt(cut)}")
        labels.append(f"> {_fmt(cut)}" if i == len(cuts) - 1 else f"({_fmt(cut)}, {_fmt(cuts[i + 1])})")
    return labels


def _category_counts(series: pd.Series) -> pd.Series:
    """Row counts per category as text (index), missing values counted as ``MISSING``."""
    import pandas as pd

    # Count first, convert the distinct values to text after: far cheaper than astype(str)
    # on every row. Distinct values with the same text (1 and "1") are merged.
    counts = series.value_counts(dropna=False, sort=False)
    labels = counts.index.astype(str).where(~counts.index.isna(), MISSING)
    # Plain object labels: pandas' Arrow-backed strings take a slow Python path in isin().
    result = pd.Series(
        counts.to_numpy(dtype="int64"), index=pd.Index(labels.to_numpy(dtype=object), dtype=object)
    )
    if result.index.has_duplicates:
        result = result.groupby(level=0, sort=False).sum()
    return result


def _psi(ref_counts: np.ndarray, cur_counts: np.ndarray) -> float:
    import numpy as np

    r = ref_counts / max(int(ref_counts.sum()), 1)
    c = cur_counts / max(int(cur_counts.sum()), 1)
    r = np.where(r > 0, r, EPSILON)
    c = np.where(c > 0, c, EPSILON)
    return float(np.sum((c - r) * np.log(c / r)))


def _check_psi(psi: float, thresholds: dict[str, float], reasons: list[str]) -> None:
    if psi > thresholds["psi"]:
        reasons.append(f"PSI {_fmt(psi)} > {_fmt(thresholds['psi'])}")


def _shares(counts: np.ndarray, total: int) -> list[float | None]:
    return [_round(int(count) / total) if total else 0.0 for count in counts]


def _round(value: Any) -> float | None:
    """``value`` to six significant digits; None for NaN and infinity (not JSON)."""
    value = float(value)
    if not math.isfinite(value):
        return None
    return float(f"{value:.6g}")


def _fmt(value: Any) -> str:
    return f"{float(value):.3g}"
