"""The plugin's URLs, pages and the operator extra links that point at them (pure, no server)."""

from __future__ import annotations

import re
from typing import Any

import pytest

import mlops_airflow
from mlops_airflow.plugins import pages, urls
from mlops_airflow.storage import open_store

SHA = "ab" * 32


@pytest.mark.parametrize(
    ("key", "url"),
    [
        ("m/datasets/0123abcd-ef01/validation.html", "/mlops/models/m/reports/datasets/0123abcd-ef01/validation.html"),
        (f"m/artifacts/{SHA}/verdicts/0f1e2d.html", f"/mlops/models/m/reports/artifacts/{SHA}/verdicts/0f1e2d.html"),
        ("other/datasets/x/validation.html", None),  # another model's report
        ("m/datasets/../../secrets/validation.html", None),
        (f"m/artifacts/{SHA}/model.skops", None),  # never a model or a record
        ("m/versions/1.json", None),
    ],
)
def test_report_urls_name_only_report_files_of_the_model(key: str, url: str | None) -> None:
    assert urls.report_url("m", key) == url


def test_urls_quote_names_and_follow_the_api_base() -> None:
    assert urls.models_url() == "/mlops/"
    assert urls.version_url("m", "3", "https://airflow.example/base/") == "https://airflow.example/base/mlops/models/m/versions/3"
    assert urls.dag_run_url("ct", "manual__2026-01-01T00:00:00+00:00") == "/dags/ct/runs/manual__2026-01-01T00%3A00%3A00%2B00%3A00"


def test_store_key_of_inverts_url(tmp_path: Any) -> None:
    store = open_store(str(tmp_path / "reg"))
    assert store.key_of(store.url("m/datasets/a/validation.html")) == "m/datasets/a/validation.html"
    assert store.key_of("file://" + store.url("m/x.html")) == "m/x.html"
    assert store.key_of(str(tmp_path / "elsewhere" / "m" / "x.html")) is None
    assert store.key_of(str(tmp_path / "reg-other" / "x.html")) is None  # a sibling sharing the prefix
    assert store.key_of(None) is None
    assert open_store("s3://bucket/reg").key_of("s3://bucket/reg/m/r.html") == "m/r.html"


def evaluated(report_uri: str | None, registry: Any = None) -> Any:
    operator = mlops_airflow.EvaluateModelOperator(task_id="e", model_name="m", candidate_sha256="x")
    operator.report_uri = report_uri
    if registry is not None:
        operator.__dict__["registry"] = registry  # as the cached property leaves it after execute
    return operator


def test_report_links_open_the_plugins_report_page(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from mlops_airflow.operators.links import GateReportLink
    from mlops_airflow.registry import ModelRegistry

    registry = ModelRegistry(open_store(str(tmp_path / "reg")))
    uri = registry.store.url(f"m/artifacts/{SHA}/verdicts/0f1e2d.html")
    assert GateReportLink().get_link(evaluated(uri, registry), ti_key=None) == (
        f"/mlops/models/m/reports/artifacts/{SHA}/verdicts/0f1e2d.html")
    monkeypatch.setenv("AIRFLOW__API__BASE_URL", "https://airflow.example/")
    assert GateReportLink().get_link(evaluated(uri, registry), ti_key=None).startswith("https://airflow.example/mlops/")


@pytest.mark.parametrize(
    ("uri", "url"),
    [("/srv/reg/m/r.html", "file:///srv/reg/m/r.html"), ("s3://b/p/r.html", "https://b.s3.amazonaws.com/p/r.html"),
     (None, "")],
)
def test_a_report_outside_the_registry_keeps_a_direct_link(uri: str | None, url: str) -> None:
    from mlops_airflow.operators.links import GateReportLink

    assert GateReportLink().get_link(evaluated(uri), ti_key=None) == url


def test_model_version_links_need_a_version() -> None:
    from mlops_airflow.operators.links import ModelVersionLink

    operator = mlops_airflow.RegisterModelOperator(task_id="r", model_name="m", candidate_sha256="x", verdict_uri="v")
    assert ModelVersionLink().get_link(operator, ti_key=None) == ""  # skipped: nothing registered
    operator.model_version = 4
    assert ModelVersionLink().get_link(operator, ti_key=None) == "/mlops/models/m/versions/4"


def view(version: int, **overrides: Any) -> dict[str, Any]:
    record = {
        "name": "m", "version": version, "aliases": ["champion"] if version == 2 else [], "task_type": "binary",
        "metrics": {"roc_auc": 0.7 + version / 100, "accuracy": 0.6}, "registered_at": "2026-01-0{version}",
        "verdict": {"outcome": "blessed", "gate_blessed": True, "reason": "all 2 checks passed", "gate_source": "default"},
        "lineage": {"data_fingerprint": "sha256:" + "1" * 64, "rows": 10, "data_uri": "d.csv",
                    "train": {"dag_id": "ct", "run_id": f"run{version}"}},
        "estimator": "sklearn.linear_model.LogisticRegression", "sha256": SHA, "features": ["a", "b"], "packages": {},
    }
    record.update(overrides)
    return record


def test_model_page_plots_metrics_over_versions_and_lists_them() -> None:
    views = [view(1), view(2)]
    links = {v["version"]: pages.Links(version=urls.version_url("m", v["version"]), gate_report="/g", train_run="/r")
             for v in views}
    html = pages.model_page("m", views, links, {"champion": {"version": 2, "previous": 1, "by": "ct/run2"}}, base="")
    assert len(re.findall(r"<polyline", html)) == 2  # accuracy and roc_auc
    assert "version" in html and ">1.5<" not in html and ">1<" in html and ">2<" in html  # whole versions on x
    assert re.findall(r'href="(/mlops/models/m/versions/\d)"', html)[-2:] == ["/mlops/models/m/versions/2",
                                                                            "/mlops/models/m/versions/1"]
    assert "<th>roc_auc</th>" in html and "<th>accuracy</th>" not in html  # the table shows the primary metric
    assert 'href="/r">run2</a>' in html and "target=" not in html  # the UI's sandboxed frame opens no windows
    single = pages.model_page("m", views[:1], links, {}, base="")
    assert "<polyline" not in single and "second" in single


def test_pages_escape_what_comes_from_records() -> None:
    hostile = view(1, verdict={"outcome": "blessed", "gate_blessed": True, "reason": "<script>alert(1)</script>"},
                   estimator='"><img src=x onerror=alert(1)>')
    html = pages.version_page(hostile, pages.Links(version="/v"), base="")
    assert "<script>" not in html and "<img" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "ct / run1" in html  # lineage names the training run


def test_a_person_s_decision_shows_amber_not_green() -> None:
    decided = {"outcome": "rejected", "gate_blessed": False, "blessed": True,
               "decision": {"kind": "override", "by": "ana", "reason": "known seasonal dip"}}
    assert pages.outcome_badge(decided) == '<span class="badge warn">rejected + override</span>'
    assert 'class="badge pass"' in pages.outcome_badge({"outcome": "blessed", "gate_blessed": True})


def test_models_url_keeps_only_what_differs_from_the_first_page() -> None:
    assert urls.models_url() == "/mlops/"
    assert urls.models_url(page=2) == "/mlops/?page=2"
    assert urls.models_url("/base", page=3, size=25, q="srv-1*") == "/base/mlops/?q=srv-1%2A&page=3&size=25"


def rows(names: list[str]) -> list[dict[str, Any]]:
    return [{"name": n, "versions": 2, "latest": 2, "aliases": {"champion": 1}, "task_type": "binary",
             "registered_at": "2026-01-01"} for n in names]


def test_models_index_pages_with_a_count_a_filter_and_links() -> None:
    first = pages.models_page(rows(["a", "b"]), total=5, number=1, size=2, query="", registry_uri="/r", base="")
    assert "Models 1-2 of 5" in first and len(re.findall(r'<tr><td><a href="/mlops/models/', first)) == 2
    assert 'href="/mlops/?page=2&amp;size=2">Next →</a>' in first and "Previous" not in first
    assert "Page 1 of 3" in first and '<option value="2" selected>' in first  # the filter keeps the page size
    middle = pages.models_page(rows(["c", "d"]), total=5, number=2, size=2, query="", registry_uri="/r", base="")
    assert 'href="/mlops/?size=2">← Previous</a>' in middle and 'href="/mlops/?page=3&amp;size=2">Next' in middle
    last = pages.models_page(rows(["e"]), total=5, number=3, size=2, query="", registry_uri="/r", base="")
    assert "Models 5-5 of 5" in last and "Next" not in last and "Page 3 of 3" in last
    past = pages.models_page([], total=5, number=9, size=2, query="", registry_uri="/r", base="")
    assert "page 9 is past the last page" in past and 'href="/mlops/?page=3&amp;size=2">page 3</a>' in past
    one = pages.models_page(rows(["a"]), total=1, number=1, size=50, query="", registry_uri="/r", base="")
    assert '<nav class="pager"' not in one and '<option value="50" selected>' in one  # one page: no pager


def test_models_index_filter_is_shown_escaped_and_kept_in_links() -> None:
    hostile = '"><script>alert(1)</script>'
    html = pages.models_page(rows(["a"]), total=3, number=1, size=1, query=hostile, registry_uri="/r", base="")
    assert "<script>" not in html and 'value="&quot;&gt;&lt;script&gt;' in html
    assert "matching <code>&quot;&gt;&lt;script&gt;" in html and "show all" in html
    assert "q=%22%3E%3Cscript%3E" in html  # the next page filters the same way
    none = pages.models_page([], total=0, number=1, size=50, query="zz", registry_uri="/r", base="")
    assert "No models matching <code>zz</code>." in none
    empty = pages.models_page([], total=0, number=1, size=50, query="", registry_uri="/r", base="")
    assert "No models are registered yet" in empty
