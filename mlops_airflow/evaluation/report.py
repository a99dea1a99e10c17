"""The gate report: one self-contained HTML page that shows why a candidate was blessed or not.

It reads only the verdict record (and the plot data of :mod:`mlops_airflow.evaluation.curves`),
so it can be rendered at evaluation time or later from the stored verdict. Sections whose
data the verdict does not carry are left out; unknown extra fields are listed at the end,
so nothing recorded is hidden.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

from mlops_airflow.evaluation.metrics import HIGHER_IS_BETTER, metrics_for
from mlops_airflow.reporting import (
    BASELINE,
    CANDIDATE,
    CHAMPION,
    FAIL,
    PASS,
    SERIES_COLOURS,
    Guide,
    Html,
    IntervalRow,
    Marker,
    Reference,
    Series,
    Tone,
    badge,
    bar_svg,
    escape,
    fmt,
    heatmap_table,
    histogram_svg,
    interval_svg,
    kv_table,
    line_chart_svg,
    page,
    scatter_svg,
    signed,
    table,
)

_OUTCOMES: dict[str, tuple[str, Tone]] = {
    "blessed": ("BLESSED", "pass"),
    "rejected": ("REJECTED", "fail"),
    "no_champion": ("NO CHAMPION", "warn"),
    "incomparable_champion": ("INCOMPARABLE CHAMPION", "warn"),
    "insufficient_data": ("INSUFFICIENT DATA", "warn"),
}
_GAIN_KINDS = ("baseline", "champion", "statistical")
_COMPARISONS = ("baseline", "champion", "statistical", "mcnemar")
_SYMBOLS = {">=": "≥", "<=": "≤", ">": ">", "<": "<", "==": "="}
_MAX_SLICE_BARS = 40
_MAX_SLICE_ROWS = 200
_STATISTIC = re.compile(r"p\d+|mean|median|min|max|std")
# Everything the sections below show; any other top-level field is listed at the end.
_KNOWN_KEYS = {
    "format_version", "verdict_id", "verdict_uri", "report_uri", "model_name", "outcome", "blessed", "reason",
    "requires_approval", "gate_source", "gate", "gate_hash", "on_fail", "task_type", "primary_metric", "checks",
    "metrics", "champion", "interval", "baseline_interval", "mcnemar", "slices", "operational", "custom", "approval", "override",
    "decision", "candidate_sha256", "data_fingerprint", "holdout_rows", "created_at", "plots",
}  # fmt: skip
_PEOPLE = (("decision", "Decision"), ("approval", "Approval"), ("override", "Override"))

_STYLE = """
header.verdict { border-left: 8px solid #607d8b; padding: .2em 0 .4em 1em; }
header.verdict.pass { border-color: #2e7d32; } header.verdict.fail { border-color: #c62828; }
header.verdict.warn { border-color: #f0a500; }
header.verdict h1 { margin: .2em 0 .5em; }
.reason { font-size: 1.1em; margin: .6em 0; }
.facts { display: flex; flex-wrap: wrap; gap: .3em 1.6em; font-size: .9em; margin: .6em 0 0; }
.facts .k { color: #666; margin-right: .3em; }
.facts code, td code { font-size: .95em; }
details { margin-top: .8em; } pre { background: #f7f7f7; padding: .8em; overflow-x: auto; font-size: .85em; }
"""


def render_gate_report(verdict: Mapping[str, Any], plots: Mapping[str, Any] | None = None, *, title: str | None = None) -> str:
    """A self-contained HTML page (inline CSS and SVG, no script, nothing fetched) of a gate verdict.

    ``plots`` is the output of :func:`~mlops_airflow.evaluation.curves.plot_data`; when None,
    ``verdict["plots"]`` is used if present. Every value from the verdict is escaped. Missing or
    malformed parts are left out rather than failing the page.
    """
    verdict = _dict(verdict)
    if plots is None:
        plots = _dict(verdict.get("plots"))
    title = title or f"Gate report: {verdict.get('model_name') or 'model'}"
    sections = [
        _header(verdict, title),
        _checks_section(verdict),
        _metrics_section(verdict),
        _gains_section(verdict),
        _plots_section(str(verdict.get("task_type") or ""), _dict(plots)),
        _slices_section(verdict),
        _operational_section(verdict),
        _people_section(verdict),
        _record_section(verdict),
    ]
    return page(title, "\n".join(s for s in sections if s), extra_css=_STYLE)


# -- reading the verdict defensively -----------------------------------------------------------


def _dict(value: Any) -> dict[str, Any]:
    return dict(value) if isinstance(value, Mapping) else {}


def _list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list | tuple) else []


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _numbers(value: Any) -> list[float] | None:
    items = _list(value)
    numbers = [_num(v) for v in items]
    return None if not items or any(v is None for v in numbers) else [float(v) for v in numbers if v is not None]


def _prefix(value: Any, length: int = 12) -> str:
    text = str(value or "")
    return text[: length + 7] if text.startswith("sha256:") else text[:length]


def _code(digest: Any) -> Html | None:
    """The start of a hash, in code type; None when there is none."""
    return Html(f"<code>{escape(_prefix(digest))}</code>") if digest else None


def _interval(check: Mapping[str, Any]) -> tuple[float, float] | None:
    interval = _dict(check.get("interval"))
    low, high = _num(interval.get("low")), _num(interval.get("high"))
    return (low, high) if low is not None and high is not None else None


def _higher_is_better(metric: str) -> bool:
    return HIGHER_IS_BETTER.get(metric, True)


def _against(check: Mapping[str, Any], metrics: Mapping[str, Any]) -> str:
    """Which model a gain check compares the candidate with: ``champion`` or ``baseline``."""
    named = check.get("against") or check.get("reference")
    if named in ("champion", "baseline"):
        return str(named)
    if check.get("kind") in ("champion", "baseline"):
        return str(check["kind"])
    # A statistical check names no comparator in the current verdict format: the champion
    # when it was scored, the Dummy baseline otherwise.
    return "champion" if _dict(metrics.get("champion")) else "baseline"


# -- sections ----------------------------------------------------------------------------------


def _header(verdict: dict[str, Any], title: str) -> str:
    outcome = str(verdict.get("outcome") or "unknown")
    label, tone = _OUTCOMES.get(outcome, (outcome.replace("_", " ").upper(), "info"))
    blessed = verdict.get("blessed") is True
    waiting = verdict.get("requires_approval") is True
    if blessed:
        consequence = "Blessed: the candidate may be registered and deployed."
    elif waiting:
        consequence = "Every check passed, but the gate asks a person to approve before register and deploy."
    elif verdict.get("on_fail") == "fail":
        consequence = "Not blessed: the run fails (on_fail: fail); nothing is registered or deployed."
    else:
        consequence = "Not blessed: register and deploy are skipped; the champion stays in place."
    second = ""
    if waiting:
        second = " " + badge("awaiting approval", "warn")
    elif outcome not in ("blessed", "rejected"):
        second = " " + (badge("blessed", "pass") if blessed else badge("not blessed", "fail"))
    people = [heading.lower() for key, heading in _PEOPLE if verdict.get(key)]
    if people:
        consequence += f" A person has answered this verdict: see {', '.join(people)} below."
    champion = verdict.get("champion")
    if isinstance(champion, Mapping):
        version = f"v{champion.get('version', '?')}"
        if champion.get("comparable") is False:
            version += f" (not comparable: {champion.get('reason') or 'no reason recorded'})"
    else:
        version = "none"
    gate_hash = _code(verdict.get("gate_hash"))
    facts = [
        ("model", verdict.get("model_name")),
        ("task", verdict.get("task_type")),
        ("primary metric", verdict.get("primary_metric")),
        ("candidate", _code(verdict.get("candidate_sha256"))),
        ("champion", version),
        ("holdout rows", verdict.get("holdout_rows")),
        ("gate", Html(f"{escape(verdict.get('gate_source') or '?')} {gate_hash}") if gate_hash else verdict.get("gate_source")),
        ("data", _code(verdict.get("data_fingerprint"))),
        ("created", verdict.get("created_at")),
        ("verdict", verdict.get("verdict_id")),
    ]
    shown = "".join(
        f'<span><span class="k">{escape(k)}</span>{v if isinstance(v, Html) else escape(v)}</span>'
        for k, v in facts
        if v not in (None, "")
    )
    return f"""<header class="verdict {tone}">
<h1>{escape(title)}</h1>
<div>{badge(label, tone, big=True)}{second}</div>
<p class="reason">{escape(verdict.get("reason") or "")}</p>
<p class="note">{escape(consequence)}</p>
<div class="facts">{shown}</div>
</header>"""


def _rule(check: Mapping[str, Any]) -> str:
    kind, metric = check.get("kind"), check.get("metric") or "?"
    comparator = _SYMBOLS.get(str(check.get("comparator")), str(check.get("comparator") or "?"))
    threshold = signed(check.get("threshold")) if kind in _GAIN_KINDS else fmt(check.get("threshold"))
    subject = {
        "threshold": str(metric),
        # A baseline check with an interval is decided on its lower bound; older verdicts on the point gain.
        "baseline": "lower bound of the gain over dummy" if _interval(check) else "gain over dummy",
        "champion": "gain over champion",
        "statistical": "CI lower bound of the gain",
        "mcnemar": "p-value",
        "slice": str(metric),
        "slice_gap": "gap",
    }.get(str(kind), "value")
    return f"{subject} {comparator} {threshold}"


def _subject(check: Mapping[str, Any]) -> str:
    """The metric a check is about, with the slice it looked at, if any."""
    metric = str(check.get("metric") or "?")
    if check.get("slice_column") is not None:
        metric += f" on {check['slice_column']}"
        if "slice_value" in check:
            metric += f"={check['slice_value']}"
    return metric


def _checks_section(verdict: dict[str, Any]) -> str:
    checks = [c for c in _list(verdict.get("checks")) if isinstance(c, Mapping)]
    if not checks:
        why = ("the holdout is too small for the gate to decide (see the reason above)"
               if verdict.get("outcome") == "insufficient_data" else "a verdict without checks is never blessed")  # fmt: skip
        return f'<h2>Checks</h2><p class="note">No check ran: {escape(why)}.</p>'
    with_interval = any(_interval(c) for c in checks)
    with_p = any(_num(c.get("p_value")) is not None for c in checks)
    with_test = any(c.get("kind") in _COMPARISONS for c in checks)
    headers = ["Status", "Kind", "Metric", "Value", "Rule"]
    headers += ["Confidence interval"] * with_interval + ["p-value"] * with_p + ["Test"] * with_test + ["Detail"]
    rows, classes = [], []
    failed = [c for c in checks if c.get("passed") is not True]
    # Failures first: they are what a reader came for.
    for check in failed + [c for c in checks if c.get("passed") is True]:
        passed = check.get("passed") is True
        kind = str(check.get("kind") or "?")
        if check.get("mode"):
            kind += f" ({str(check['mode']).replace('_', '-')})"
        value = check.get("value")
        row: list[Any] = [
            "pass" if passed else "FAIL",
            kind,
            _subject(check),
            signed(value) if check.get("kind") in _GAIN_KINDS else fmt(value),
            _rule(check),
        ]
        if with_interval:
            row.append(_interval_text(check))
        if with_p:
            p = _num(check.get("p_value"))
            row.append("" if p is None else ("< 0.001" if p < 0.001 else fmt(p, 3)))
        if with_test:
            row.append(_test_text(check))
        row.append(check.get("detail"))
        rows.append(row)
        classes.append("pass" if passed else "fail")
    summary = f"{len(checks)} check{'s' * (len(checks) != 1)}: {len(checks) - len(failed)} passed, {len(failed)} failed" + (
        " (failed first)." if failed else "."
    )
    cells = ["status", None, None, "num", None] + [None] * with_interval + ["num"] * with_p + [None] * with_test
    return (
        f'<h2>Checks</h2>\n<p class="note">{escape(summary)}</p>\n'
        + table(headers, rows, row_classes=classes, cell_classes=cells)
    )


def _test_text(check: Mapping[str, Any]) -> str:
    """How a comparison was decided: its recorded test, else (older verdicts) what its kind implies."""
    if check.get("kind") not in _COMPARISONS:
        return ""
    if check.get("test"):
        text = str(check["test"])
    else:
        text = {"champion": "point estimate", "baseline": "point estimate", "statistical": "paired bootstrap interval",
                "mcnemar": "McNemar"}[str(check["kind"])]
    return text + (": no evidence" if check.get("outcome") == "no_evidence" else "")


def _interval_text(check: Mapping[str, Any]) -> Html:
    bounds = _interval(check)
    if bounds is None:
        return Html("")
    interval = _dict(check.get("interval"))
    how = []
    if _num(interval.get("gain")) is not None:
        how.append(f"gain {signed(interval['gain'])}")
    confidence = _num(interval.get("confidence"))
    if confidence is not None:
        how.append(f"{confidence:.0%}" + (" one-sided" if interval.get("alternative") == "greater" else ""))
    if isinstance(interval.get("resamples"), int):
        how.append(f"{interval['resamples']} resamples")
    small = f"<br><small>{escape(', '.join(how))}</small>" if how else ""
    return Html(f'<span style="white-space: nowrap">[{escape(signed(bounds[0]))}, {escape(signed(bounds[1]))}]</span>{small}')


def _metrics_section(verdict: dict[str, Any]) -> str:
    metrics = _dict(verdict.get("metrics"))
    candidate, champion, baseline = (_dict(metrics.get(k)) for k in ("candidate", "champion", "baseline"))
    if not (candidate or champion or baseline):
        return ""
    task = str(verdict.get("task_type") or "")
    primary = verdict.get("primary_metric")
    known = list(metrics_for(task)) if task in ("binary", "multiclass", "regression") else []
    names = known + [m for m in (*candidate, *champion, *baseline) if m not in known]
    names = list(dict.fromkeys(([primary] if primary in names else []) + names))
    checks = [c for c in _list(verdict.get("checks")) if isinstance(c, Mapping)]
    with_intervals = _interval_checks(verdict)
    rows, absent, bar_notes = [], [], set()
    for name in names:
        values = {role: _num(source.get(name)) for role, source in (("candidate", candidate), ("champion", champion), ("dummy", baseline))}
        if all(v is None for v in values.values()):
            absent.append(name)
            continue
        low_high, how = _candidate_interval(name, with_intervals, metrics)
        if how:
            bar_notes.add(how)
        markers = [Marker("candidate", values["candidate"], CANDIDATE, "circle", *(low_high or (None, None)))]
        if champion:
            markers.append(Marker("champion", values["champion"], CHAMPION, "diamond"))
        markers.append(Marker("dummy baseline", values["dummy"], BASELINE, "square"))
        note = "   ".join(f"{role} {fmt(v)}" for role, v in values.items() if v is not None and (role != "champion" or champion))
        failed = any(c.get("metric") == name and c.get("passed") is not True for c in checks)
        arrow = "↑" if _higher_is_better(name) else "↓"
        rows.append(IntervalRow(f"{name} {arrow}", markers, note=note, sublabel="primary metric" if name == primary else "",
                                bold=name == primary, tone="fail" if failed else None,
                                domain=_metric_domain(name, values, low_high, compare_dummy=not champion)))  # fmt: skip
    if not rows:
        return ""
    notes = ["Each row has its own scale. ↑ higher is better, ↓ lower is better; a red label marks a metric with a failed check."]
    notes += sorted(bar_notes)
    if absent:
        notes.append("Not computed for any model: " + ", ".join(absent) + ".")
    caption = "".join(f'<p class="note">{escape(n)}</p>' for n in notes)
    return f"<h2>Metrics on the holdout</h2>\n{interval_svg(rows)}\n{caption}"


#: Metrics that live in [0, 1] (r2 only below 1): their scale is never narrower than 0.1.
_UNIT_METRICS = {"accuracy", "balanced_accuracy", "precision", "recall", "f1", "roc_auc", "pr_auc", "brier", "r2"}


def _metric_domain(
    metric: str, values: Mapping[str, float | None], interval: tuple[float, float] | None, *, compare_dummy: bool
) -> tuple[float, float] | None:
    """A scale for one metric row that resolves candidate against champion.

    With the Dummy on the same scale, candidate and champion (usually close) would sit on
    one pixel; the Dummy is drawn off the scale instead when it is far away (unless there
    is no champion, then it is the comparison that matters). A minimum width keeps tiny
    differences from looking large.
    """
    core = [v for k, v in values.items() if v is not None and (k != "dummy" or compare_dummy)]
    core += list(interval or ())
    if not core:
        return None
    low, high = min(core), max(core)
    unit = metric in _UNIT_METRICS
    minimum = 0.1 if unit else 0.2 * (max(abs(low), abs(high)) or 1.0)
    if high - low < minimum:
        centre = (low + high) / 2
        low, high = centre - minimum / 2, centre + minimum / 2
    pad = (high - low) * 0.08
    low, high = low - pad, high + pad
    # Shift (not squash) the scale back inside the metric's range.
    if unit and high > 1 >= max(core):
        low, high = low - (high - 1), 1.0
    elif unit and metric != "r2" and low < 0 <= min(core):
        low, high = 0.0, high - low
    dummy = values.get("dummy")
    if dummy is not None and low - (high - low) * 0.5 <= dummy <= high + (high - low) * 0.5:
        low, high = min(low, dummy - pad), max(high, dummy + pad)
    return low, high


def _interval_checks(verdict: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The checks that carry an interval; the verdict's own bootstrap interval stands in as a
    statistical check when no check carries one (e.g. an insufficient_data verdict).
    """
    checks = [dict(c) for c in _list(verdict.get("checks")) if isinstance(c, Mapping) and _interval(c)]
    interval = _dict(verdict.get("interval"))
    if not checks and _interval({"interval": interval}) and interval.get("metric"):
        checks.append({"kind": "statistical", "metric": interval["metric"], "interval": interval, "against": "champion",
                       "unjudged": True})  # fmt: skip
    return checks


def _candidate_interval(metric: str, checks: Sequence[Mapping[str, Any]], metrics: Mapping[str, Any]) -> tuple[tuple[float, float] | None, str]:
    """The candidate's interval on ``metric`` and how it was obtained, from checks that carry one.

    An interval on the candidate's own value (a threshold check) is drawn as is. An interval
    on a gain is moved onto the metric's scale around the comparator's value, so the bar
    crosses the comparator's point exactly when the gain's interval contains zero.
    """
    ranked = []
    for check in checks:
        bounds = _interval(check)
        if check.get("metric") != metric or bounds is None:
            continue
        interval = _dict(check.get("interval"))
        confidence = _num(interval.get("confidence"))
        level = f"{confidence:.0%} " if confidence is not None else ""
        if check.get("kind") == "threshold":
            ranked.append((0, bounds, f"Bars: {level}confidence interval of the candidate's metric."))
            continue
        against = _against(check, metrics)
        reference = _num(interval.get("reference"))
        if reference is None:
            reference = _num(_dict(metrics.get(against)).get(metric))
        if reference is None:
            continue
        low, high = bounds
        moved = (reference + low, reference + high) if _higher_is_better(metric) else (reference - high, reference - low)
        name = "champion" if against == "champion" else "dummy baseline"
        ranked.append((1 if against == "champion" else 2, moved,
                       f"Bars: {level}confidence interval of the candidate's difference to the {name}, drawn around "
                       f"the {name}'s value: a bar that reaches the {name}'s point means no clear difference."))  # fmt: skip
    if not ranked:
        return None, ""
    _, bounds, how = min(ranked, key=lambda item: item[0])
    return bounds, how


def _gains_section(verdict: dict[str, Any]) -> str:
    metrics = _dict(verdict.get("metrics"))
    checks = [c for c in _list(verdict.get("checks")) if isinstance(c, Mapping) and c.get("kind") in _GAIN_KINDS]
    checks += [c for c in _interval_checks(verdict) if c.get("unjudged")]
    rows = []
    for check in checks:
        interval = _dict(check.get("interval"))
        bounds, threshold = _interval(check), _num(check.get("threshold"))
        # A check decided on an interval has its lower bound as value; the point is the gain.
        value = _num(interval.get("gain")) if interval else _num(check.get("value"))
        if value is None and bounds is None:
            continue
        judged = not check.get("unjudged")
        passed = check.get("passed") is True
        colour = (PASS if passed else FAIL) if judged else CANDIDATE
        against = "dummy" if _against(check, metrics) == "baseline" else "champion"
        label = f"{check.get('metric')} vs {against}"
        sublabel = "point comparison"
        if check.get("kind") == "statistical":
            sublabel = str(check.get("mode") or "bootstrap interval").replace("_", "-")
        elif interval:
            sublabel = "one-sided bootstrap bound" if interval.get("alternative") == "greater" else "bootstrap interval"
        references = [Reference(0.0, "no change")]
        if threshold is not None:
            references.append(Reference(threshold, f"limit {signed(threshold)}", dashed=True, colour=FAIL))
        note = f"gain {signed(value)}"
        if bounds:
            note += f"  [{signed(bounds[0])}, {signed(bounds[1])}]"
        p = _num(check.get("p_value"))
        if p is not None:
            note += f"  p={'<0.001' if p < 0.001 else fmt(p, 3)}"
        if judged:
            note += "  pass" if passed else "  FAIL"
        marker = Marker("gain", value, colour, "circle", *(bounds or (None, None)))
        tone: Tone | None = ("pass" if passed else "fail") if judged else None
        rows.append(IntervalRow(label, [marker], references, note=note, sublabel=sublabel, tone=tone))
    if not rows:
        return ""
    return (
        "<h2>Gains over the comparators</h2>\n" + interval_svg(rows) + '\n<p class="note">Gain: how much better the '
        "candidate is, positive when better whatever the metric's direction. Solid line: no difference; dashed red "
        "line: the gate's limit (a statistical check needs the whole interval beyond it). Each row has its own "
        "scale.</p>"
    )


def _plots_section(task: str, plots: dict[str, Any]) -> str:
    if not plots:
        return ""
    if "residuals" in plots or task == "regression":
        return _residuals(plots)
    figures = []
    confusion = _dict(plots.get("confusion"))
    labels, matrix = [str(v) for v in _list(confusion.get("labels"))], _list(confusion.get("matrix"))
    if labels and len(matrix) == len(labels) and all(_numbers(r) is not None and len(r) == len(labels) for r in matrix):
        folded = confusion.get("folded")
        note = "Rows: actual class; shading and % are shares of each actual class."
        if isinstance(folded, int) and folded:
            note += f" The {folded} rarest classes are folded into “(other)”."
        figures.append(_figure("Confusion matrix", heatmap_table(labels, labels, matrix), note))
    roc = _dict(plots.get("roc"))
    lines = []
    if roc.get("curves") is not None:
        for index, curve in enumerate(c for c in _list(roc.get("curves")) if isinstance(c, Mapping)):
            fpr, tpr = _numbers(curve.get("fpr")), _numbers(curve.get("tpr"))
            if fpr and tpr:
                lines.append(Series(f"{curve.get('label')} (AUC {fmt(_num(curve.get('auc')), 3)})", fpr, tpr,
                                    SERIES_COLOURS[index % len(SERIES_COLOURS)]))  # fmt: skip
    else:
        fpr, tpr = _numbers(roc.get("fpr")), _numbers(roc.get("tpr"))
        if fpr and tpr:
            lines.append(Series(f"candidate (AUC {fmt(_num(roc.get('auc')), 3)})", fpr, tpr, CANDIDATE))
    if lines:
        omitted = roc.get("omitted")
        note = "One-vs-rest curve per class." if roc.get("curves") is not None else ""
        if isinstance(omitted, int) and omitted:
            note += f" {omitted} classes not drawn (too rare, or beyond the ten most frequent)."
        chart = line_chart_svg(lines, x_label="false positive rate", y_label="true positive rate",
                               x_range=(0, 1), y_range=(0, 1), diagonal=True)  # fmt: skip
        figures.append(_figure("ROC curve", chart, note.strip()))
    pr = _dict(plots.get("pr"))
    recall, precision = _numbers(pr.get("recall")), _numbers(pr.get("precision"))
    if recall and precision:
        rate = _num(pr.get("positive_rate"))
        guides = [Guide(0, rate, 1, rate, f"no skill ({fmt(rate, 3)})")] if rate is not None else []
        series = [Series(f"candidate (AP {fmt(_num(pr.get('average_precision')), 3)})", recall, precision, CANDIDATE)]
        chart = line_chart_svg(series, x_label="recall", y_label="precision", x_range=(0, 1), y_range=(0, 1), guides=guides)
        figures.append(_figure("Precision-recall curve", chart))
    if not figures:
        return ""
    return '<h2>Classifier on the holdout</h2>\n<div class="figures">' + "".join(figures) + "</div>"


def _residuals(plots: dict[str, Any]) -> str:
    residuals, summary = _dict(plots.get("residuals")), _dict(plots.get("summary"))
    predicted, residual = _numbers(residuals.get("predicted")), _numbers(residuals.get("residual"))
    figures = []
    if predicted and residual and len(predicted) == len(residual):
        bands = [(v, k) for k in ("p05", "p95") if (v := _num(summary.get(k))) is not None]
        chart = scatter_svg(predicted, residual, x_label="predicted", y_label="residual (actual − predicted)", hlines=bands)
        rows = residuals.get("rows")
        note = f"{len(predicted)} of {rows} holdout rows shown." if isinstance(rows, int) and rows > len(predicted) else ""
        figures.append(_figure("Residuals against predictions", chart, note + " Dashed: 5th and 95th percentiles."))
        figures.append(_figure("Distribution of residuals", histogram_svg(_histogram(residual), width=300, height=150)))
    stats = [(k, fmt(_num(summary.get(k)))) for k in ("mean", "std", "p05", "p95") if k in summary]
    if stats:
        figures.append(_figure("Residual summary", kv_table(stats)))
    if not figures:
        return ""
    return '<h2>Regressor on the holdout</h2>\n<div class="figures">' + "".join(figures) + "</div>"


def _histogram(values: list[float], bins: int = 30) -> dict[str, Any]:
    low, high = min(values), max(values)
    if high == low:
        return {"counts": [len(values)], "edges": [low, high]}
    width = (high - low) / bins
    counts = [0] * bins
    for value in values:
        counts[min(int((value - low) / width), bins - 1)] += 1
    return {"counts": counts, "edges": [low + i * width for i in range(bins + 1)]}


def _figure(heading: str, content: str, note: str = "") -> str:
    note_html = f'<p class="note">{escape(note)}</p>' if note else ""
    return f'<div class="figure"><h3>{escape(heading)}</h3>{content}{note_html}</div>'


def _slices_section(verdict: dict[str, Any]) -> str:
    raw = verdict.get("slices")
    results = [raw] if isinstance(raw, Mapping) else [r for r in _list(raw) if isinstance(r, Mapping)]
    overall = _dict(_dict(verdict.get("metrics")).get("candidate"))
    return "\n".join(_slice_result(_dict(result), overall) for result in results)


def _slice_result(result: dict[str, Any], overall: dict[str, Any]) -> str:
    entries = [s for s in _list(result.get("slices")) if isinstance(s, Mapping)]
    skipped = _list(result.get("skipped"))
    if not entries and not skipped:
        return ""
    column, metric = result.get("column") or "?", str(result.get("metric") or "metric")
    worst = _dict(result.get("worst"))
    worst_index = next((i for i, s in enumerate(entries) if worst and s.get("value") == worst.get("value")), None)
    if worst_index is None and entries:
        scored = [(i, v) for i, s in enumerate(entries) if (v := _num(s.get("metric"))) is not None]
        if scored:
            pick = min if _higher_is_better(metric) else max
            worst_index = pick(scored, key=lambda item: item[1])[0]
    parts = [f"<h2>Slices by {escape(column)}</h2>"]
    facts = [f"{metric} per value of {column} ({'higher' if _higher_is_better(metric) else 'lower'} is better)"]
    if worst_index is not None:
        facts.append(f"worst slice (in red): {entries[worst_index].get('value')}")
    if _num(result.get("max_gap")) is not None:
        facts.append(f"gap between the best and worst slices: {fmt(result.get('max_gap'))}")
    parts.append(f'<p class="note">{escape("; ".join(facts))}.</p>')
    if entries:
        reference = _num(overall.get(metric))
        bars = [(str(s.get("value")), _num(s.get("metric"))) for s in entries[:_MAX_SLICE_BARS]]
        # Bars start at the metric on all rows: their length is each slice's gap, which is
        # what the gate judges (bars from zero would make 0.90 and 0.95 look the same).
        parts.append(bar_svg(bars, width=760, label_width=170, highlight=[] if worst_index is None else [worst_index],
                             reference=None if reference is None else (reference, "all rows"),
                             origin=reference if reference is not None else 0.0, colour=CANDIDATE,
                             max_label=26))  # fmt: skip
        if len(entries) > _MAX_SLICE_BARS:
            parts.append(f'<p class="note">The chart shows the first {_MAX_SLICE_BARS} of {len(entries)} slices.</p>')
        keys = list(dict.fromkeys(["value", "rows", "metric", *(k for s in entries for k in s)]))
        headers = [str(column) if k == "value" else (metric if k == "metric" else k) for k in keys]
        rows = [[_cell(s.get(k)) for k in keys] for s in entries[:_MAX_SLICE_ROWS]]
        highlight = ["highlight" if i == worst_index else None for i in range(len(rows))]
        parts.append(table(headers, rows, row_classes=highlight, cell_classes=[None] + ["num"] * (len(keys) - 1),
                           css_class="compact"))  # fmt: skip
        if len(entries) > _MAX_SLICE_ROWS:
            parts.append(f'<p class="note">The table shows the first {_MAX_SLICE_ROWS} of {len(entries)} slices.</p>')
    if skipped:
        min_rows = result.get("min_rows")
        why = f"fewer than {min_rows} rows" if isinstance(min_rows, int) else "too few rows"
        parts.append(f'<p class="note">Not judged ({escape(why)}): {escape(", ".join(_skipped(s) for s in skipped))}.</p>')
    return "\n".join(parts)


def _skipped(entry: Any) -> str:
    if not isinstance(entry, Mapping):
        return str(entry)
    text = str(entry.get("value", "?"))
    if entry.get("rows") is not None:
        text += f" ({entry['rows']} rows)"
    return text + (f": {entry['reason']}" if entry.get("reason") else "")


def _cell(value: Any) -> Any:
    if isinstance(value, Mapping | list | tuple):
        return json.dumps(value, sort_keys=True, default=str)
    return value


def _flatten(record: Mapping[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    pairs: list[tuple[str, Any]] = []
    for key, value in record.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            pairs.extend(_flatten(value, name + " "))
        else:
            pairs.append((name, value))
    return pairs


def _operational_value(key: str, value: Any) -> Any:
    number = _num(value)
    if number is None:
        return _cell(value)
    if key.endswith("bytes"):
        size, unit = number, "bytes"
        for next_unit in ("KB", "MB", "GB"):
            if size < 1024:
                break
            size, unit = size / 1024, next_unit
        return f"{fmt(size, 3)} {unit}" if unit != "bytes" else f"{number:.0f} bytes"
    parts = key.split(" ")
    if parts[-1].endswith("_ms") or (len(parts) > 1 and parts[0].endswith("_ms") and _STATISTIC.fullmatch(parts[-1])):
        return f"{fmt(number, 3)} ms"
    return value


def _operational_section(verdict: dict[str, Any]) -> str:
    operational = _dict(verdict.get("operational"))
    if not operational:
        return ""
    pairs = []
    for name, value in _flatten(operational):
        # Evaluation also stores flat copies (single_row_p99_ms beside single_row_ms.p99, size_mb
        # beside size_bytes) for the gate's limits: show each figure once.
        group, _, rest = name.rpartition("_")
        nested = name.endswith("_ms") and "_" in group and _dict(operational.get(group.rsplit("_", 1)[0] + "_ms"))
        if (nested and group.rsplit("_", 1)[1] in nested) or (name == "size_mb" and "size_bytes" in operational):
            continue
        pairs.append((name.replace("_", " "), _operational_value(name, value)))
    return "<h2>Operational figures</h2>\n" + kv_table(pairs)


def _people_section(verdict: dict[str, Any]) -> str:
    parts = []
    for key, heading in _PEOPLE:
        record = verdict.get(key)
        if isinstance(record, Mapping) and record:
            parts.append(f"<h2>{heading}</h2>\n" + kv_table([(k, _cell(v)) for k, v in _flatten(record)]))
        elif record not in (None, {}, "", False):
            parts.append(f"<h2>{heading}</h2>\n<p>{escape(record)}</p>")
    return "\n".join(parts)


def _record_section(verdict: dict[str, Any]) -> str:
    parts = []
    gate = verdict.get("gate")
    if isinstance(gate, Mapping) and gate:
        spec = escape(json.dumps(gate, indent=2, sort_keys=True, default=str))
        parts.append(f"<details><summary>Gate spec ({escape(verdict.get('gate_source') or '?')})</summary><pre>{spec}</pre></details>")
    extra = {k: v for k, v in verdict.items() if k not in _KNOWN_KEYS}
    if extra:
        text = escape(json.dumps(extra, indent=2, sort_keys=True, default=str))
        parts.append(f"<details><summary>Other recorded fields</summary><pre>{text}</pre></details>")
    if verdict.get("verdict_uri"):
        parts.append(f'<p class="note">Verdict record: {escape(verdict["verdict_uri"])}</p>')
    return "\n".join(parts)
