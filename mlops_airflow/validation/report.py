"""Human-readable views of a validation summary: one-line check descriptions and an HTML report.

Both read only the JSON-serialisable summary made by
:func:`~mlops_airflow.validation.checks.validate_dataset`, so a report can be rendered
later from the summary stored in XCom or the artifact store.
"""

from __future__ import annotations

import html
from typing import Any

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

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; max-width: 1100px; }
h1 { font-size: 1.4em; } h2 { font-size: 1.15em; margin-top: 2em; } h3 { font-size: 1em; margin: 0 0 .3em; }
.badge { display: inline-block; padding: .2em .7em; border-radius: .3em; color: #fff; font-weight: bold; }
.badge.pass { background: #2e7d32; } .badge.fail { background: #c62828; }
table { border-collapse: collapse; width: 100%; font-size: .9em; }
th, td { border: 1px solid #ddd; padding: .35em .5em; text-align: left; vertical-align: top; }
th { background: #f5f5f5; }
tr.pass td.status { background: #e8f5e9; color: #2e7d32; }
tr.fail td.status { background: #ffebee; color: #c62828; font-weight: bold; }
tr.warn td.status { background: #fff8e1; color: #8d6e00; font-weight: bold; }
.columns { display: flex; flex-wrap: wrap; gap: 1em; }
.column { border: 1px solid #ddd; border-radius: .3em; padding: .6em; width: 330px; }
.column.failed { border-color: #c62828; border-width: 2px; }
.stats { font-size: .85em; color: #555; margin-bottom: .3em; }
svg text { font-size: 10px; fill: #555; }
"""


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _number(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _histogram_svg(histogram: dict[str, Any], *, width: int = 320, height: int = 110) -> str:
    counts = [int(c) for c in histogram.get("counts") or []]
    if not counts:
        return ""
    edges = histogram.get("edges")
    plot_height = height - 18
    top = max(counts) or 1
    bar = width / len(counts)
    bars = []
    for index, count in enumerate(counts):
        bar_height = plot_height * count / top
        label = f"{count}"
        if edges:
            label = f"[{_number(edges[index])}, {_number(edges[index + 1])}): {count}"
        bars.append(
            f'<rect x="{index * bar:.1f}" y="{plot_height - bar_height:.1f}" width="{max(bar - 1, 1):.1f}" '
            f'height="{bar_height:.1f}" fill="#5c6bc0"><title>{_e(label)}</title></rect>'
        )
    axis = f'<line x1="0" y1="{plot_height}" x2="{width}" y2="{plot_height}" stroke="#999"/>'
    if edges:
        axis += (
            f'<text x="0" y="{height - 4}">{_e(_number(edges[0]))}</text>'
            f'<text x="{width}" y="{height - 4}" text-anchor="end">{_e(_number(edges[-1]))}</text>'
        )
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img">{"".join(bars)}{axis}</svg>'
    )


def _top_values_svg(top: list[list[Any]], *, width: int = 320) -> str:
    if not top:
        return ""
    row = 16
    height = row * len(top)
    most = max(int(count) for _, count in top) or 1
    label_width = 110
    rows = []
    for index, (value, count) in enumerate(top):
        y = index * row
        bar = (width - label_width - 40) * int(count) / most
        rows.append(
            f'<text x="{label_width - 4}" y="{y + 11}" text-anchor="end">{_e(str(value)[:18])}</text>'
            f'<rect x="{label_width}" y="{y + 2}" width="{bar:.1f}" height="{row - 4}" fill="#26a69a">'
            f"<title>{_e(value)}: {int(count)}</title></rect>"
            f'<text x="{label_width + bar + 4:.1f}" y="{y + 11}">{int(count)}</text>'
        )
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img">{"".join(rows)}</svg>'
    )


def _column_card(name: str, profile: dict[str, Any], failed: bool) -> str:
    stats = [f"nulls {profile.get('nulls', 0)}"]
    if profile.get("kind") == "numeric":
        for key in ("min", "max", "mean"):
            if profile.get(key) is not None:
                stats.append(f"{key} {_number(profile[key])}")
        plot = _histogram_svg(profile.get("histogram") or {})
    else:
        stats.append(f"distinct {profile.get('distinct', '?')}")
        plot = _top_values_svg(profile.get("top") or [])
        if not plot and profile.get("top_counts"):
            plot = _histogram_svg({"counts": profile["top_counts"]})
    return (
        f'<div class="column{" failed" if failed else ""}"><h3>{_e(name)}</h3>'
        f'<div class="stats">{_e(", ".join(stats))}</div>{plot}</div>'
    )


def render_report(summary: dict[str, Any], *, title: str) -> str:
    """A self-contained HTML page of a validation summary: the checks, then a plot per column.

    Needs no network and no files: styles and plots (inline SVG) are in the page.
    """
    checks = summary.get("checks") or []
    stats = summary.get("statistics") or {}
    failed_columns = {c.get("column") for c in checks if not c.get("success")}
    success = bool(summary.get("success"))
    rows = []
    for check in checks:
        if check.get("success"):
            css, status = "pass", "pass"
        elif check.get("severity") == "warning":
            css, status = "warn", "warning"
        else:
            css, status = "fail", "FAIL"
        observed = "" if check.get("success") else _observed_text(check.get("observed") or {})
        rows.append(
            f'<tr class="{css}"><td class="status">{status}</td><td>{_e(check.get("column") or "(table)")}</td>'
            f"<td>{_e(check.get('check'))}</td><td>{_e(_params_text(check.get('params') or {}))}</td>"
            f"<td>{_e(observed)}</td></tr>"
        )
    profiles = summary.get("columns_profile") or {}
    cards = "".join(_column_card(name, profile, name in failed_columns) for name, profile in profiles.items())
    redacted = " Sample values are redacted." if summary.get("redacted") else ""
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{_e(title)}</title><style>{_STYLE}</style></head>
<body>
<h1>{_e(title)} <span class="badge {"pass" if success else "fail"}">{"PASSED" if success else "FAILED"}</span></h1>
<p>{_e(summary.get("rows", "?"))} rows, {len(summary.get("columns") or [])} columns,
source format {_e(summary.get("source_format", "?"))}, target {_e(summary.get("target", "?"))}.
{_e(stats.get("evaluated", len(checks)))} checks: {_e(stats.get("successful", "?"))} passed,
{_e(stats.get("failed_errors", "?"))} failed, {_e(stats.get("failed_warnings", "?"))} warning(s).{redacted}</p>
<h2>Checks</h2>
<table><thead><tr><th>Status</th><th>Column</th><th>Check</th><th>Parameters</th><th>Observed</th></tr></thead>
<tbody>{"".join(rows)}</tbody></table>
<h2>Columns</h2>
<div class="columns">{cards}</div>
</body></html>
"""
