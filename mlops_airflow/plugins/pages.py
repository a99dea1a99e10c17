"""The HTML of the plugin's pages, from the registry's records (pure: no Airflow, no web framework).

Same building blocks as the gate and validation reports (:mod:`mlops_airflow.reporting`):
one self-contained page, inline CSS and SVG, no script, everything from data escaped.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from mlops_airflow.plugins import urls
from mlops_airflow.reporting import (
    SERIES_COLOURS,
    Html,
    Series,
    Tone,
    badge,
    escape,
    even_sample,
    fmt,
    kv_table,
    line_chart_svg,
    page,
    table,
)

EXTRA_CSS = """
nav.crumbs { font-size: .9em; margin-bottom: 1em; } nav.crumbs a { color: #1f5fbf; }
form.filter { margin: .5em 0; } form.filter input[type=search] { width: 22em; padding: .2em .4em; }
nav.pager { margin: 1em 0; display: flex; gap: 1.5em; }
a { color: #1f5fbf; } code { font-size: .85em; }
"""


@dataclass(frozen=True)
class Links:
    """Where a version's pages and reports are, already resolved to URLs (None: not available)."""

    version: str
    gate_report: str | None = None
    validation_report: str | None = None
    train_run: str | None = None


def link(href: str | None, text: Any) -> Html:
    """An anchor, or the text alone when there is nowhere to go.

    No ``target``: the Airflow UI shows these pages in a sandboxed frame that may neither open
    windows nor navigate the whole tab, so every link (a DAG run's page too) opens in the frame.
    """
    if not href:
        return Html(escape(text))
    return Html(f'<a href="{escape(href)}">{escape(text)}</a>')


def _crumbs(base: str, *parts: tuple[str | None, str]) -> str:
    items = [link(urls.models_url(base), "Models"), *(link(href, text) for href, text in parts)]
    return f'<nav class="crumbs">{" / ".join(items)}</nav>'


def _aliases(names: Sequence[str]) -> Html:
    return Html(" ".join(badge(name, "pass" if name.partition("=")[0] == "champion" else "info") for name in names))


def outcome_badge(verdict: Mapping[str, Any] | None) -> Html:
    """The gate's outcome; amber when a person's decision (approval, override) stood in for the gate's blessing."""
    verdict = verdict or {}
    decision = verdict.get("decision") or {}
    text = str(verdict.get("outcome") or "unknown") + (f" + {decision['kind']}" if decision.get("kind") else "")
    tone: Tone = "pass" if verdict.get("gate_blessed", verdict.get("blessed")) else "warn" if decision else "fail"
    return badge(text, tone)


def models_page(rows: Sequence[Mapping[str, Any]], *, total: int, number: int, size: int, query: str,
                registry_uri: str, base: str) -> str:
    """One page of the models: versions, latest version, aliases; a name filter and links to the other pages.

    ``rows`` are the models of page ``number`` (``size`` a page) among the ``total`` whose name
    matches ``query`` (a prefix or a glob; '' for all).
    """
    pages = max(1, -(-total // size))
    options = "".join(f'<option value="{n}"{" selected" if n == size else ""}>{n}</option>'
                      for n in sorted({*urls.PAGE_SIZES, size}))
    body = [f"<h1>Models</h1><p class=\"note\">Registry: <code>{escape(registry_uri)}</code></p>"]
    body.append(
        f'<form class="filter" method="get" action="{escape(urls.models_url(base))}">'
        f'<input type="search" name="q" value="{escape(query)}" aria-label="Filter models by name" '
        f'placeholder="name prefix, or a glob: srv-12*"> '
        f'<select name="size" aria-label="Models a page">{options}</select> a page '
        '<button type="submit">Filter</button>'
        + (f" {link(urls.models_url(base, size=size), 'show all')}" if query else "") + "</form>"
    )
    matching = f" matching <code>{escape(query)}</code>" if query else ""
    if not total:
        body.append(f"<p>No models{matching}.</p>" if query else
                    "<p>No models are registered yet. Run the <code>mlops_continuous_training</code> DAG to train one.</p>")
    elif number > pages:
        body.append(f'<p class="count">{total:,} models{matching}; page {number} is past the last page, '
                    f'{link(urls.models_url(base, page=pages, size=size, q=query), f"page {pages}")}.</p>')
    else:
        first = (number - 1) * size + 1
        body.append(f'<p class="count">Models {first:,}-{first + len(rows) - 1:,} of {total:,}{matching}</p>')
        body.append(table(
            ["Model", "Versions", "Latest", "Aliases", "Task", "Registered"],
            [[link(urls.model_url(row["name"], base), row["name"]), row["versions"],
              link(urls.version_url(row["name"], row["latest"], base), f"v{row['latest']}"),
              _aliases([f"{alias}=v{version}" for alias, version in sorted(row["aliases"].items())]),
              row.get("task_type"), row.get("registered_at")] for row in rows],
            css_class="models",
        ))
    if pages > 1:
        previous = link(urls.models_url(base, page=min(number - 1, pages), size=size, q=query), "← Previous") if number > 1 else ""
        following = link(urls.models_url(base, page=number + 1, size=size, q=query), "Next →") if number < pages else ""
        body.append(f'<nav class="pager">{previous} <span>Page {min(number, pages)} of {pages}</span> {following}</nav>')
    return page("Models", _crumbs(base) + "".join(body), extra_css=EXTRA_CSS)


def metrics_chart(views: Sequence[Mapping[str, Any]]) -> Html:
    """One line per metric over the versions (holdout metrics as the gate measured them)."""
    names = sorted({name for view in views for name, value in view["metrics"].items() if isinstance(value, int | float)})
    series = []
    for index, name in enumerate(names):
        points = [(view["version"], view["metrics"][name]) for view in views
                  if isinstance(view["metrics"].get(name), int | float)]
        series.append(Series(name, [float(v) for v, _ in points], [float(m) for _, m in points],
                             colour=SERIES_COLOURS[index % len(SERIES_COLOURS)], dashed=index >= len(SERIES_COLOURS)))
    versions = sorted({view["version"] for view in views})
    ticks = [float(versions[i]) for i in even_sample(len(versions), 10)]  # whole versions, at most ten
    return line_chart_svg(series, x_label="version", y_label="holdout metric", x_ticks=ticks, width=620, height=300)


def table_metrics(views: Sequence[Mapping[str, Any]]) -> list[str]:
    """The metrics the versions table shows: the task's primary metric (the gate's default), else the first three."""
    from mlops_airflow.evaluation.metrics import PRIMARY_METRIC

    names = sorted({m for view in views for m in view["metrics"]})
    primary = PRIMARY_METRIC.get(str(views[-1].get("task_type"))) if views else None
    return [primary] if primary is not None and primary in names else names[:3]


def model_page(name: str, views: Sequence[Mapping[str, Any]], links: Mapping[int, Links],
               alias_records: Mapping[str, Mapping[str, Any]], *, base: str) -> str:
    """One model: its aliases, metrics over versions, and every version with lineage and reports."""
    body = [f"<h1>{escape(name)}</h1>"]
    if alias_records:
        body.append("<h2>Aliases</h2>")
        body.append(table(
            ["Alias", "Version", "Previous", "Moved", "By", "Reason"],
            [[alias, link(urls.version_url(name, record["version"], base), f"v{record['version']}"),
              record.get("previous"), record.get("moved_at"), record.get("by"), record.get("reason")]
             for alias, record in sorted(alias_records.items())],
            css_class="aliases compact",
        ))
    body.append("<h2>Metrics over versions</h2>")
    if len(views) >= 2:
        body.append(f'<div class="figure metrics-plot">{metrics_chart(views)}</div>')
    else:
        body.append('<p class="note">One version so far: the plot appears with the second.</p>')
    metric_names = table_metrics(views)
    body.append("<h2>Versions</h2>")
    rows = []
    for view in sorted(views, key=lambda v: v["version"], reverse=True):
        found = links[view["version"]]
        lineage = view["lineage"]
        train = lineage.get("train") or {}
        reports = [link(found.gate_report, "gate report"), link(found.validation_report, "validation report")]
        rows.append([
            link(found.version, f"v{view['version']}"), view.get("registered_at"), _aliases(view["aliases"]),
            outcome_badge(view.get("verdict")),
            *(view["metrics"].get(m) for m in metric_names),
            Html(f"<code>{escape(str(lineage.get('data_fingerprint') or '')[:19])}</code>"),
            link(found.train_run, train.get("run_id") or ""),
            Html(" · ".join(r for r in reports if "<a " in r)),
        ])
    body.append(table(["Version", "Registered", "Aliases", "Gate", *metric_names, "Data", "DAG run", "Reports"], rows,
                      css_class="versions"))
    return page(f"{name} - Models", _crumbs(base, (None, name)) + "".join(body), extra_css=EXTRA_CSS)


def version_page(view: Mapping[str, Any], links: Links, *, base: str) -> str:
    """One version: what it is, how it scored, where it came from, what the gate decided."""
    name, version = view["name"], view["version"]
    verdict = view.get("verdict") or {}
    lineage = view["lineage"]
    train, register = lineage.get("train") or {}, lineage.get("register") or {}
    body = [f"<h1>{escape(name)} v{version} {_aliases(view['aliases'])}</h1>"]
    body.append(kv_table([
        ("Estimator", Html(f"<code>{escape(view.get('estimator'))}</code>")),
        ("Task", view.get("task_type")),
        ("Registered", view.get("registered_at")),
        ("sha256", Html(f"<code>{escape(view.get('sha256'))}</code>")),
        ("Artifact", view.get("artifact_uri")),
        ("Features", ", ".join(view.get("features") or [])),
    ]))
    body.append("<h2>Gate verdict</h2>")
    champion = verdict.get("champion") or {}
    decision = verdict.get("decision") or {}
    body.append(kv_table([
        ("Outcome", outcome_badge(verdict)),
        ("Reason", verdict.get("reason")),
        ("Gate", verdict.get("gate_source")),
        ("Compared with", f"v{champion['version']}" if champion.get("version") else "no champion"),
        ("Decision", f"{decision.get('kind')} by {decision.get('by')}: {decision.get('reason')}" if decision else None),
        ("Report", link(links.gate_report, "gate report") if links.gate_report else "not available"),
    ]))
    body.append("<h2>Metrics</h2>")
    body.append(table(["Metric", "Holdout value"], [[m, fmt(v)] for m, v in sorted(view["metrics"].items())],
                      css_class="compact", cell_classes=[None, "num"]))
    body.append("<h2>Lineage</h2>")
    body.append(kv_table([
        ("Data", lineage.get("data_uri")),
        ("Rows", lineage.get("rows")),
        ("Data fingerprint", Html(f"<code>{escape(lineage.get('data_fingerprint'))}</code>")),
        ("Validation report", link(links.validation_report, "validation report") if links.validation_report
         else "not available"),
        ("Trained by", link(links.train_run, f"{train.get('dag_id')} / {train.get('run_id')}")
         if train.get("run_id") else "outside Airflow"),
        ("Registered by", f"{register.get('dag_id')} / {register.get('run_id')} / {register.get('task_id')}"
         if register.get("run_id") else "outside Airflow"),
    ]))
    packages = view.get("packages") or {}
    body.append("<h2>Packages</h2>")
    body.append(kv_table(sorted(packages.items())))
    crumbs = _crumbs(base, (urls.model_url(name, base), name), (None, f"v{version}"))
    return page(f"{name} v{version} - Models", crumbs + "".join(body), extra_css=EXTRA_CSS)
