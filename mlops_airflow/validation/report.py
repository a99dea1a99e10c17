"""Human-readable views of a validation summary: one-line check descriptions and an HTML report.

Both read only the JSON-serialisable summary made by
:func:`~mlops_airflow.validation.checks.validate_dataset`, so a report can be rendered
later from the summary stored in XCom or the artifact store.
"""

from __future__ import annotations

from typing import Any

from mlops_airflow.reporting import (
    CANDIDATE,
    CHAMPION,
    Html,
    badge,
    bar_svg,
    escape,
    fmt,
    histogram_svg,
    page,
    table,
)

REDACTED = "<redacted>"

_MAX_SET_ITEMS = 8


def _value(value: Any) -> str:
    return repr(value) if isinstance(value, str) else str(value)


def _params_text(params: dict[str, Any]) -> str:
    parts = []
    if "type" in params:
        parts.append(str(params["type"]))
    if "min_value" in params or "max_value" in params:
        lo, hi = params.get("min_value"), params.get("max_value")
        if lo is not None and hi is not None:
            parts.append(f"[{_value(lo)}, {_value(hi)}]")
        elif lo is not None:
            parts.append(f">= {_value(lo)}")
        elif hi is not None:
            parts.append(f"<= {_value(hi)}")
    if "value_set" in params:
        values = list(params["value_set"])
        shown = ", ".join(_value(v) for v in values[:_MAX_SET_ITEMS])
        more = f", ... ({len(values)} values)" if len(values) > _MAX_SET_ITEMS else ""
        parts.append(f"in {{{shown}{more}}}")
    if "regex" in params:
        parts.append(f"matching {params['regex']!r}")
    if "mostly" in params:
        parts.append(f"mostly {params['mostly']}")
    return " ".join(parts)


def _observed_text(observed: dict[str, Any]) -> str:
    if observed.get("reason"):
        text = str(observed["reason"])
    elif observed.get("error"):
        text = f"could not be evaluated: {observed['error']}"
    elif "unexpected_count" in observed:
        text = f"{observed['unexpected_count']} unexpected"
        percent = observed.get("unexpected_percent")
        if isinstance(percent, int | float):
            text += f" ({percent:.3g}%)"
    elif "observed_value" in observed:
        text = f"observed {_value(observed['observed_value'])}"
    else:
        text = "failed"
    sample = observed.get("sample")
    if sample == REDACTED:
        text += " (sample values redacted)"
    elif isinstance(sample, list) and sample:
        text += ", e.g. " + ", ".join(_value(v) for v in sample)
    return text


def describe_check(check: dict[str, Any]) -> str:
    """One line naming a check's column, expectation, parameters and what was observed."""
    params = _params_text(check.get("params") or {})
    head = f"{check.get('column') or 'table'}: {check['check']}" + (f" {params}" if params else "")
    if check.get("success"):
        return f"{head}: passed"
    return f"{head}: {_observed_text(check.get('observed') or {})}"


# -- HTML -----------------------------------------------------------------------------------

# Page shell, tables and plots are shared with the other reports (mlops_airflow.reporting);
# only the column cards are particular to this one.
_STYLE = """
.columns { display: flex; flex-wrap: wrap; gap: 1em; }
.column { border: 1px solid #ddd; border-radius: .3em; padding: .6em; width: 330px; }
.column.failed { border-color: #c62828; border-width: 2px; }
.stats { font-size: .85em; color: #555; margin-bottom: .3em; }
.swatch { display: inline-block; width: .8em; height: .8em; margin: 0 .2em 0 .6em; vertical-align: -.05em; }
"""

#: Bars per drift chart; the rest of a column's bins are summed up in a line under it.
_MAX_DRIFT_BARS = 12


def _column_card(name: str, profile: dict[str, Any], failed: bool) -> str:
    stats = [f"nulls {profile.get('nulls', 0)}"]
    if profile.get("kind") == "numeric":
        for key in ("min", "max", "mean"):
            if profile.get(key) is not None:
                stats.append(f"{key} {fmt(profile[key])}")
        plot = histogram_svg(profile.get("histogram") or {})
    else:
        stats.append(f"distinct {profile.get('distinct', '?')}")
        plot = bar_svg([(str(value), int(count)) for value, count in profile.get("top") or []])
        if not plot and profile.get("top_counts"):
            plot = histogram_svg({"counts": profile["top_counts"]})
    return (
        f'<div class="column{" failed" if failed else ""}"><h3>{escape(name)}</h3>'
        f'<div class="stats">{escape(", ".join(stats))}</div>{plot}</div>'
    )


def _drift_test_text(entry: dict[str, Any]) -> str:
    for key, name in (("ks", "KS"), ("chi2", "chi²")):
        test = entry.get(key)
        if test:
            return f"{name} {fmt(test.get('pvalue'), 3)}"
    return "n/a"


def _unseen_text(entry: dict[str, Any]) -> str:
    listed = entry.get("unseen_categories") or []
    if not listed:
        return ""
    names = ", ".join(f"{_value(item.get('value'))} ({item.get('count')})" for item in listed[:5])
    more = max(int(entry.get("unseen_distinct") or len(listed)) - 5, 0)
    share = entry.get("unseen_share")
    share_text = f" in {share:.2%} of rows" if isinstance(share, int | float) else ""
    return names + (f", ... ({more} more)" if more else "") + share_text


def _drift_chart(entry: dict[str, Any]) -> str:
    """Reference and current shares per bin as paired horizontal bars on one scale (percent of rows)."""
    histogram = entry.get("histogram") or {}
    labels = [str(label) for label in histogram.get("labels") or histogram.get("categories") or []]
    reference = histogram.get("reference") or []
    current = histogram.get("current") or []
    bins = list(zip(labels, reference, current, strict=False))
    if len(bins) > _MAX_DRIFT_BARS:
        # Keep the bins that matter most in either sample, in their original order.
        top = sorted(range(len(bins)), key=lambda i: -max(bins[i][1] or 0, bins[i][2] or 0))[:_MAX_DRIFT_BARS]
        shown = [bins[i] for i in sorted(top)]
        rest = len(bins) - len(shown)
    else:
        shown, rest = bins, 0
    items: list[tuple[str, float | None]] = []
    for label, ref_share, cur_share in shown:
        items.append((label, None if ref_share is None else round(100 * ref_share, 2)))
        items.append(("", None if cur_share is None else round(100 * cur_share, 2)))
    # One bar_svg call keeps both samples on one scale; odd rows (current) take the highlight colour.
    plot = bar_svg(
        items,
        label_width=120,
        colour=CHAMPION,
        highlight=range(1, len(items), 2),
        highlight_colour=CANDIDATE,
        max_label=20,
    )
    note = f'<div class="stats">{rest} smaller bins not shown</div>' if rest else ""
    return plot + note


def _drift_section(drift: dict[str, Any]) -> str:
    reference = drift.get("reference")
    source = f" ({escape(reference)})" if reference else ""
    if drift.get("skipped"):
        return f'<h2>Drift against the reference{source}</h2>\n<p class="note">Not checked: {escape(drift["skipped"])}.</p>'
    columns = drift.get("columns") or {}
    drifted = drift.get("drifted_columns") or []
    policy = drift.get("policy", "warn")
    if drift.get("breach"):
        head = badge(f"DRIFT ({'stops the run' if policy == 'stop' else 'warning'})", "fail" if policy == "stop" else "warn")
    else:
        head = badge("no drift", "pass")
    rows, row_classes = [], []
    for name, entry in columns.items():
        rows.append(
            [
                name,
                entry.get("kind"),
                entry.get("psi"),
                _drift_test_text(entry),
                _unseen_text(entry),
                "yes" if entry.get("drifted") else "no",
                "; ".join(entry.get("reasons") or []),
            ]
        )
        row_classes.append("highlight" if entry.get("drifted") else None)
    drift_table = table(
        ["Column", "Kind", "PSI", "Test p-value", "Unseen categories", "Drifted", "Reasons"],
        rows,
        row_classes=row_classes,
        cell_classes=[None, None, "num", "num"],
    )
    thresholds = drift.get("thresholds") or {}
    threshold_text = ", ".join(f"{key} {fmt(value)}" for key, value in thresholds.items())
    missing = drift.get("missing_columns") or []
    missing_text = f" Not compared (missing from a side): {escape(', '.join(missing))}." if missing else ""
    legend = Html(
        f'<span class="swatch" style="background: {CHAMPION}"></span>reference'
        f'<span class="swatch" style="background: {CANDIDATE}"></span>current (percent of rows per bin)'
    )
    cards = "".join(
        f'<div class="column{" failed" if entry.get("drifted") else ""}"><h3>{escape(name)}</h3>'
        f'<div class="stats">{escape(entry.get("kind"))}, PSI {escape(fmt(entry.get("psi")))}</div>'
        f"{_drift_chart(entry)}</div>"
        for name, entry in columns.items()
    )
    return f"""<h2>Drift against the reference{source} {head}</h2>
<p>{escape(drift.get("current_rows", "?"))} rows compared with {escape(drift.get("reference_rows", "?"))} reference rows;
{len(drifted)} of {len(columns)} columns drifted{": " + escape(", ".join(drifted)) if drifted else ""}. Policy: {escape(policy)}.
Default thresholds: {escape(threshold_text)}.{missing_text}</p>
<p class="note">PSI is the primary signal; with many rows the tests' p-values are tiny even for shifts too
small to matter.</p>
{drift_table}
<p class="note">{legend}</p>
<div class="columns">{cards}</div>"""


def render_drift_report(drift: dict[str, Any], *, title: str, intro: str = "") -> str:
    """A self-contained HTML page of a drift result alone (the drift section of :func:`render_report`)."""
    return page(title, f"<h1>{escape(title)}</h1>\n<p>{escape(intro)}</p>\n{_drift_section(drift)}", extra_css=_STYLE)


def render_report(summary: dict[str, Any], *, title: str) -> str:
    """A self-contained HTML page of a validation summary: the checks, a plot per column and,
    when the summary has a ``drift`` result, a drift table with reference-vs-current plots.

    Needs no network and no files: styles and plots (inline SVG) are in the page.
    """
    checks = summary.get("checks") or []
    stats = summary.get("statistics") or {}
    failed_columns = {c.get("column") for c in checks if not c.get("success")}
    success = bool(summary.get("success"))
    rows, row_classes = [], []
    for check in checks:
        if check.get("success"):
            css, status = "pass", "pass"
        elif check.get("severity") == "warning":
            css, status = "warn", "warning"
        else:
            css, status = "fail", "FAIL"
        observed = "" if check.get("success") else _observed_text(check.get("observed") or {})
        rows.append([status, check.get("column") or "(table)", check.get("check"), _params_text(check.get("params") or {}), observed])
        row_classes.append(css)
    checks_table = table(
        ["Status", "Column", "Check", "Parameters", "Observed"], rows, row_classes=row_classes, cell_classes=["status"]
    )
    profiles = summary.get("columns_profile") or {}
    cards = "".join(_column_card(name, profile, name in failed_columns) for name, profile in profiles.items())
    redacted = " Sample values are redacted." if summary.get("redacted") else ""
    body = f"""<h1>{escape(title)} {badge("PASSED", "pass") if success else badge("FAILED", "fail")}</h1>
<p>{escape(summary.get("rows", "?"))} rows, {len(summary.get("columns") or [])} columns,
source format {escape(summary.get("source_format", "?"))}, target {escape(summary.get("target", "?"))}.
{escape(stats.get("evaluated", len(checks)))} checks: {escape(stats.get("successful", "?"))} passed,
{escape(stats.get("failed_errors", "?"))} failed, {escape(stats.get("failed_warnings", "?"))} warning(s).{redacted}</p>
<h2>Checks</h2>
{checks_table}
<h2>Columns</h2>
<div class="columns">{cards}</div>"""
    if summary.get("drift"):
        body += "\n" + _drift_section(summary["drift"])
    return page(title, body, extra_css=_STYLE)
