"""The gate report: every outcome and task renders, data is escaped, plots are well-formed SVG,
and a verdict missing parts (or carrying unknown ones) still gives a page."""

from __future__ import annotations

import copy
import re
import xml.etree.ElementTree as ET
from typing import Any

import numpy as np
import pytest

from mlops_airflow.evaluation.curves import plot_data
from mlops_airflow.evaluation.gate import decide, normalise_gate
from mlops_airflow.evaluation.report import render_gate_report
from mlops_airflow.reporting import (
    IntervalRow,
    Marker,
    Reference,
    bar_svg,
    even_sample,
    heatmap_table,
    interval_svg,
    nice_ticks,
    scatter_svg,
)

EVIL = "<script>alert(1)</script>"
SHA = "a" * 64


def assert_sound_page(page: str) -> None:
    """Self-contained, escaped, and every inline SVG well-formed on its own."""
    assert page.startswith("<!DOCTYPE html>")
    assert EVIL not in page and "<script" not in page
    assert "http://" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert "https://" not in page
    for chunk in page.split("<svg")[1:]:
        ET.fromstring("<svg" + chunk.split("</svg>")[0] + "</svg>")


def svg_count(page: str) -> int:
    return page.count("<svg")


# -- verdicts made by the real gate -----------------------------------------------------------

CLASSIFIER = {"candidate": {"roc_auc": 0.84, "accuracy": 0.8, "balanced_accuracy": 0.78, "precision": 0.7,
                            "recall": 0.6, "f1": 0.65, "log_loss": 0.41},
              "baseline": {"roc_auc": 0.5, "accuracy": 0.7, "balanced_accuracy": 0.5, "precision": 0.0,
                           "recall": 0.0, "f1": 0.0, "log_loss": 0.61},
              "champion": {"roc_auc": 0.83, "accuracy": 0.79, "balanced_accuracy": 0.77, "precision": 0.69,
                           "recall": 0.6, "f1": 0.64, "log_loss": 0.42}}  # fmt: skip
REGRESSOR = {"candidate": {"r2": 0.9, "rmse": 3.1, "mae": 2.2, "mape": None},
             "baseline": {"r2": 0.0, "rmse": 9.8, "mae": 7.7, "mape": None},
             "champion": {"r2": 0.902, "rmse": 3.0, "mae": 2.1, "mape": None}}  # fmt: skip
GATE = {"thresholds": {"roc_auc": {"min": 0.7}}, "baseline": {"min_improvement": 0.02}, "champion": {"max_drop": 0.01},
        "statistical": {"mode": "non_inferiority", "margin": 0.01}, "min_holdout_rows": 100}  # fmt: skip
REGRESSION_GATE = {"thresholds": {"r2": {"min": 0.5}}, "baseline": {"min_improvement": 0.02},
                   "champion": {"max_drop": 0.005}, "min_holdout_rows": 100}  # fmt: skip


def gate_verdict(outcome: str, task: str) -> dict[str, Any]:
    """A verdict with ``outcome`` from gate.decide, bound like evaluate.py binds it."""
    metrics = copy.deepcopy(REGRESSOR if task == "regression" else CLASSIFIER)
    spec = normalise_gate(REGRESSION_GATE if task == "regression" else GATE)
    evidence: dict[str, Any] = {"holdout_rows": 50 if outcome == "insufficient_data" else 1676, "metrics": metrics}
    if task != "regression":
        evidence["interval"] = {"metric": "roc_auc", "candidate": 0.84, "reference": 0.83, "difference": 0.01, "gain": 0.01,
                                "low": -0.004 if outcome != "rejected" else -0.03, "high": 0.024, "confidence": 0.95,
                                "resamples": 1000, "undefined_resamples": 0, "seed": 0}  # fmt: skip
    metric = "r2" if task == "regression" else "roc_auc"
    gain = metrics["candidate"][metric] - metrics["baseline"][metric]
    evidence["baseline_interval"] = {"metric": metric, "gain": gain, "low": gain - 0.03, "high": gain + 0.03,
                                     "confidence": 0.95, "alternative": "greater", "resamples": 1000,
                                     "undefined_resamples": 0, "seed": 0}  # fmt: skip
    champion: dict[str, Any] | None = {"version": 3, "sha256": "b" * 64, "comparable": True, "reason": "same schema"}
    if outcome == "no_champion":
        champion = None
        del metrics["champion"]
    elif outcome == "incomparable_champion":
        champion = {**champion, "comparable": False, "reason": f"feature schema changed (added: {EVIL})"}
    elif outcome == "rejected" and task == "regression":
        metrics["champion"]["r2"] = 0.99
    verdict = decide(spec=spec, source="user", task=task, evidence=evidence, champion=champion)
    verdict.update(model_name=EVIL, candidate_sha256=SHA, data_fingerprint="sha256:" + "c" * 64, verdict_id="0123456789abcdef")
    assert verdict["outcome"] == outcome
    return verdict


def plots_for(task: str) -> dict[str, Any]:
    rng = np.random.default_rng(0)
    if task == "regression":
        y = rng.normal(20, 5, 3000)
        return plot_data("regression", y, y + rng.normal(0, 2, 3000))
    if task == "binary":
        y = rng.integers(0, 2, 500)
        scores = np.clip(0.3 * y + rng.random(500) * 0.7, 0, 1)
        return plot_data("binary", y, (scores > 0.5).astype(int), scores, [0, 1])
    classes = ["app", "card", EVIL]
    y = rng.choice(classes, 600)
    proba = rng.dirichlet([1, 1, 1], 600)
    return plot_data("multiclass", y, np.array(classes)[proba.argmax(axis=1)], proba, classes)


OUTCOMES = ["blessed", "rejected", "no_champion", "incomparable_champion", "insufficient_data"]
LABELS = {"blessed": "BLESSED", "rejected": "REJECTED", "no_champion": "NO CHAMPION",
          "incomparable_champion": "INCOMPARABLE CHAMPION", "insufficient_data": "INSUFFICIENT DATA"}  # fmt: skip


@pytest.mark.parametrize("task", ["binary", "multiclass", "regression"])
@pytest.mark.parametrize("outcome", OUTCOMES)
def test_every_outcome_and_task_renders_with_and_without_plots(outcome: str, task: str) -> None:
    verdict = gate_verdict(outcome, task if task != "multiclass" else "binary")
    verdict["task_type"] = task  # the classifier metrics suit both kinds of classifier

    bare = render_gate_report(verdict)
    full = render_gate_report(verdict, plots_for(task))

    for page in (bare, full):
        assert_sound_page(page)
        assert LABELS[outcome] in page
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page  # shown, but as text
        for check in verdict["checks"]:
            assert check["metric"] in page
        assert "<svg" in page  # the metrics plot needs no plot data
    assert svg_count(full) > svg_count(bare)
    if task == "regression":
        assert "Residuals against predictions" in full
    else:
        assert "Confusion matrix" in full and "ROC curve" in full
        assert ("Precision-recall curve" in full) == (task == "binary")


def test_the_page_says_what_happens_next() -> None:
    rejected = render_gate_report(gate_verdict("rejected", "binary"))
    assert "Not blessed: register and deploy are skipped" in rejected
    assert 'class="badge fail big"' in rejected and "FAIL" in rejected
    assert "failed first" in rejected

    blessed = gate_verdict("no_champion", "binary")
    page = render_gate_report(blessed)
    assert 'class="badge warn big"' in page and ">blessed<" in page
    assert "champion</span>none" in page

    waiting = {**gate_verdict("blessed", "binary"), "blessed": False, "requires_approval": True}
    assert "awaiting approval" in render_gate_report(waiting)


def test_statistical_checks_are_plotted_with_their_interval() -> None:
    verdict = gate_verdict("blessed", "binary")

    page = render_gate_report(verdict)

    assert "Gains over the comparators" in page
    assert "confidence interval" in page  # the legend of the error bars
    assert "non-inferiority" in page
    assert "[-0.004, +0.024]" in page
    # The interval also appears, moved onto the metric's scale, in the metrics plot.
    assert "candidate: 0.84 [0.826, 0.854]" in page


def test_slices_operational_and_people_are_shown_when_present() -> None:
    verdict = gate_verdict("blessed", "binary")
    verdict["slices"] = [{
        "column": "pickup_zone", "metric": "roc_auc", "min_rows": 30,
        "slices": [{"value": "airport", "rows": 120, "metric": 0.8}, {"value": EVIL, "rows": 90, "metric": 0.7},
                   {"value": "harbor", "rows": 60, "metric": None}],
        "skipped": [{"value": "stadium", "rows": 4}], "worst": {"value": EVIL, "rows": 90, "metric": 0.7},
        "best": {"value": "airport", "rows": 120, "metric": 0.8}, "max_gap": 0.1,
    }]  # fmt: skip
    verdict["operational"] = {"size_bytes": 2_500_000, "size_mb": 2.5, "single_row_ms": {"p50": 0.4, "p99": 1.5},
                              "single_row_p50_ms": 0.4, "single_row_p99_ms": 1.5}  # fmt: skip
    verdict["approval"] = {"by": "alice", "at": "2026-02-03T10:00:00+00:00", "reason": f"checked {EVIL}"}
    verdict["override"] = {"by": "bob", "reason": "hotfix"}

    page = render_gate_report(verdict)

    assert_sound_page(page)
    assert "Slices by pickup_zone" in page
    assert page.count('class="highlight"') == 1  # the worst slice
    assert "all rows 0.84" in page and "stadium (4 rows)" in page and "fewer than 30 rows" in page
    assert "2.38 MB" in page and "1.5 ms" in page
    assert page.count("single row ms p99") == 1  # flat copies of nested figures are not repeated
    assert "<h2>Approval</h2>" in page and "alice" in page
    assert "<h2>Override</h2>" in page and "hotfix" in page


def test_the_older_documented_shape_renders_too() -> None:
    verdict = {
        "outcome": "blessed", "blessed": True, "reason": "all 2 checks passed", "model_name": "trips",
        "task_type": "binary", "primary_metric": "roc_auc",
        "checks": [{"kind": "statistical", "metric": "roc_auc", "value": 0.03, "comparator": ">=", "threshold": -0.01,
                    "passed": True, "interval": {"low": 0.01, "high": 0.05, "confidence": 0.95, "resamples": 1000},
                    "p_value": 0.0004, "mode": "superiority"},
                   {"kind": "operational", "metric": "size_mb", "value": 1.2, "comparator": "<=", "threshold": 50,
                    "passed": True}],
        "metrics": {"candidate": {"roc_auc": 0.8}, "baseline": {"roc_auc": 0.5}, "champion": {"roc_auc": 0.77}},
        "slices": {"column": "zone", "metric": "roc_auc", "slices": [{"value": "a", "rows": 120, "metric": 0.8}],
                   "skipped": ["b"], "worst": {"value": "a"}, "max_gap": 0.0},
        "operational": {"size_bytes": 100, "single_row_ms": {"p50": 1, "p99": 2}},
    }  # fmt: skip

    page = render_gate_report(verdict, title="Candidate 12")

    assert_sound_page(page)
    assert "<title>Candidate 12</title>" in page
    assert "< 0.001" in page.replace("&lt;", "<")  # the p-value
    assert "Slices by zone" in page and "100 bytes" in page


def test_missing_or_malformed_parts_are_left_out() -> None:
    assert "UNKNOWN" in render_gate_report({})
    garbage = {
        "outcome": EVIL, "checks": ["x", {"kind": EVIL, "metric": EVIL, "value": "nan?", "passed": "yes"}],
        "metrics": {"candidate": {"roc_auc": "high", "accuracy": float("nan")}, "champion": [1]},
        "slices": 5, "operational": {"weird": [EVIL]}, "champion": "v3", "approval": EVIL, "gate": [],
        "brand_new_field": {"note": EVIL},
    }  # fmt: skip
    plots = {"confusion": {"labels": ["a"], "matrix": [[1, 2]]}, "roc": {"fpr": [0, 1], "tpr": [0]},
             "pr": {"recall": "x"}, "residuals": None}  # fmt: skip

    page = render_gate_report(garbage, plots)

    assert_sound_page(page)
    assert "Other recorded fields" in page and "brand_new_field" in page
    assert "Confusion matrix" not in page and "ROC curve" not in page


def test_plots_stored_in_the_verdict_are_used() -> None:
    verdict = {**gate_verdict("blessed", "binary"), "plots": plots_for("binary")}

    assert "ROC curve" in render_gate_report(verdict)
    assert "ROC curve" not in render_gate_report({**verdict, "plots": None})


# -- the shared building blocks ----------------------------------------------------------------


def test_ticks_are_round_and_cover_the_range() -> None:
    assert nice_ticks(0, 1, 5) == [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
    assert nice_ticks(-0.013, 0.027, 4) == [-0.01, 0.0, 0.01, 0.02]
    assert nice_ticks(3, 3) == [3]
    assert nice_ticks(float("nan"), 1) == []


def test_even_sample_is_bounded_and_keeps_both_ends() -> None:
    assert even_sample(5, 10) == [0, 1, 2, 3, 4]
    picked = even_sample(100_000, 2000)
    assert len(picked) == 2000 and picked[0] == 0 and picked[-1] == 99_999


def test_scatter_plots_at_most_max_points() -> None:
    x = [float(i) for i in range(5000)]
    chart = scatter_svg(x, [v % 7 - 3 for v in x], max_points=2000)

    ET.fromstring(chart)
    assert chart.count("<circle") == 2000


def test_heatmap_shades_by_row_share_and_escapes_labels() -> None:
    html = heatmap_table([EVIL, "b"], [EVIL, "b"], [[9, 1], [0, 0]])

    assert EVIL not in html
    assert "90%" in html and "10%" in html and "0%" in html
    assert re.search(r'class="dark" style="background: rgba\(31, 95, 191, 0\.82\)"', html)


def test_charts_escape_their_labels() -> None:
    bars = bar_svg([(EVIL, 0.5), ("b", None)], highlight=[0], reference=(0.4, EVIL), origin=0.4)
    rows = interval_svg([IntervalRow(EVIL, [Marker(EVIL, 2.0, low=1.0, high=3.0), Marker("far", 50.0)],
                                     [Reference(0.0, EVIL)], note=EVIL, sublabel=EVIL, domain=(0.0, 4.0))])  # fmt: skip
    for chart in (bars, rows):
        assert EVIL not in chart
        ET.fromstring(chart)
    assert "(off the scale)" in rows
