"""The Models pages in a real browser, served by a real `airflow api-server` with the plugin loaded.

Airflow finds the plugin through the installed package's ``airflow.plugins`` entry point, as in
a deployment (pinned by tests/unit/plugins/test_plugin_airflow_pins.py).

The API server runs the simple auth manager with a password (not "all admins", which lets
everyone in), so the tests see the plugin refuse requests without the server's token.
Headless Chromium is Debian's (tools/chromium.sh installs it), driven by Playwright.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from testsupport import BIN, SAMPLE, ServerProcess, eventually, free_port, load_dag

pytestmark = pytest.mark.integration

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
DAG_ID = "mlops_continuous_training"
MODEL = "ui_trips"


@dataclass
class ApiServer:
    url: str
    jwt_secret: str
    password: str
    log: Path

    def token(self) -> str:
        reply = httpx.post(f"{self.url}/auth/token", json={"username": "viewer", "password": self.password}, timeout=10)
        assert reply.status_code == 201, reply.text
        return str(reply.json()["access_token"])


@pytest.fixture(scope="module")
def ui_registry_uri(tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(tmp_path_factory.mktemp("ui-registry") / "registry")


@pytest.fixture
def registry_uri(ui_registry_uri: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """The integration fixture's registry, pinned to the one the module's API server reads."""
    monkeypatch.setenv("MLOPS_AIRFLOW_REGISTRY_URI", ui_registry_uri)
    return ui_registry_uri


@pytest.fixture(scope="module")
def api_server(airflow_db: Path, ui_registry_uri: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    folder = tmp_path_factory.mktemp("api-server")
    password = secrets.token_urlsafe(16)
    (folder / "passwords.json").write_text(json.dumps({"viewer": password}))
    secret = secrets.token_hex(32)
    env = {
        **os.environ,
        "AIRFLOW__CORE__AUTH_MANAGER": "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "False",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "viewer:viewer",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(folder / "passwords.json"),
        "AIRFLOW__API_AUTH__JWT_SECRET": secret,
        "MLOPS_AIRFLOW_REGISTRY_URI": ui_registry_uri,
    }
    port = free_port()
    argv = [str(BIN / "airflow"), "api-server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    process = ServerProcess(argv, port, folder / "api-server.log", env=env)

    def up() -> bool:
        if process.process.poll() is not None:
            raise AssertionError(f"airflow api-server exited:\n{process.log()[-5000:]}")
        try:
            return httpx.get(f"{process.url}/api/v2/monitor/health", timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    try:
        eventually(up, timeout=120, what="airflow api-server to answer", interval=0.5)
        yield ApiServer(process.url, secret, password, process.log_path)
    finally:
        process.stop()


def expired_token(server: ApiServer) -> str:
    """A token signed with the server's own secret, expired an hour ago."""
    import jwt

    now = int(time.time())
    claims = {"sub": "viewer", "role": "viewer", "teams": [], "aud": "apache-airflow", "iat": now - 7200,
              "nbf": now - 7200, "exp": now - 3600, "jti": secrets.token_hex(8)}
    return jwt.encode(claims, server.jwt_secret, algorithm="HS512")


def forged_token(server: ApiServer) -> str:
    """A well-formed admin token signed with a secret that is not the server's."""
    import jwt

    now = int(time.time())
    claims = {"sub": "mallory", "role": "admin", "teams": [], "aud": "apache-airflow", "iat": now, "nbf": now,
              "exp": now + 3600, "jti": secrets.token_hex(8)}
    return jwt.encode(claims, "not-the-server-secret-" * 4, algorithm="HS512")


def plugin_paths() -> list[str]:
    """Every route of the plugin's app, with its parameters filled in."""
    from mlops_airflow.plugins.app import app

    filled = {"{name}": MODEL, "{version}": "1", "{path:path}": "datasets/x/validation.html"}
    paths = []
    for route in app.routes:
        path = getattr(route, "path", "")
        for placeholder, value in filled.items():
            path = path.replace(placeholder, value)
        paths.append(f"/mlops{path}")
    return paths


def test_plugin_pages_refuse_requests_without_the_api_servers_token(api_server: ApiServer) -> None:
    paths = plugin_paths()
    assert "/mlops/" in paths and "/mlops/api/models" in paths and len(paths) == 6
    for path in paths:
        reply = httpx.get(f"{api_server.url}{path}", timeout=10)
        assert reply.status_code == 401, (path, reply.status_code, reply.text[:200])
        assert "Not authenticated" in reply.text and MODEL not in reply.text

    url = f"{api_server.url}/mlops/api/models"
    for bad, status in [("not-a-jwt", 403), (forged_token(api_server), 403), (expired_token(api_server), 401)]:
        assert httpx.get(url, headers={"Authorization": f"Bearer {bad}"}, timeout=10).status_code == status
        assert httpx.get(url, cookies={"_token": bad}, timeout=10).status_code == status

    token = api_server.token()
    assert httpx.get(url, headers={"Authorization": f"Bearer {token}"}, timeout=10).status_code == 200
    assert httpx.get(url, cookies={"_token": token}, timeout=10).status_code == 200
    # An explicit credential wins over the cookie, as in Airflow's own API: a bad one is refused.
    both = httpx.get(url, headers={"Authorization": "Bearer not-a-jwt"}, cookies={"_token": token}, timeout=10)
    assert both.status_code == 403
    # Read-only: nothing answers a write, and no report path escapes the model's report files.
    assert httpx.post(url, headers={"Authorization": f"Bearer {token}"}, timeout=10).status_code == 405
    for path in ("../../etc/passwd", "versions/1.json", "artifacts/x/model.skops", "datasets/a/data.parquet"):
        reply = httpx.get(f"{api_server.url}/mlops/models/{MODEL}/reports/{path}",
                          headers={"Authorization": f"Bearer {token}"}, timeout=10)
        assert reply.status_code == 404, path


def test_models_pages_in_the_airflow_ui(api_server: ApiServer, model_server: Any, registry: Any, tmp_path: Path) -> None:
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing: install Debian's chromium with tools/chromium.sh")
    from playwright.sync_api import expect, sync_playwright

    # Two real runs of the example DAG (a quick estimator and a gate it passes), so that lineage
    # names real DAG runs and the worker stores real extra links.
    model_server(MODEL)
    dag = load_dag(f"{DAG_ID}.py")
    for data in ("trips_2026_01.csv", "trips_2026_*.csv"):
        dag_run = dag.test(run_conf={
            "data_uri": str(SAMPLE / data), "model_name": MODEL, "estimator": "sklearn.linear_model.LogisticRegression",
            "estimator_params": {"max_iter": 500}, "gate": {"thresholds": {"accuracy": {"min": 0.5}}},
        })
        assert str(dag_run.state) == "success"
    assert registry.aliases(MODEL) == {"champion": 2}
    assert registry.get_version(MODEL, 2)["lineage"]["train"]["run_id"] == dag_run.run_id

    token = api_server.token()
    auth = {"Authorization": f"Bearer {token}"}
    # The extra links the worker stored for the run open the plugin's pages and reports.
    expected = {"validate": ("Validation report", "/reports/datasets/"), "evaluate": ("Gate report", "/reports/artifacts/"),
                "register": ("Model version", "/versions/2"), "deploy": ("Model version", "/versions/2")}
    for task_id, (name, part) in expected.items():
        reply = httpx.get(f"{api_server.url}/api/v2/dags/{DAG_ID}/dagRuns/{dag_run.run_id}/taskInstances/{task_id}/links",
                          headers=auth, timeout=10)
        assert reply.status_code == 200, reply.text
        link = reply.json()["extra_links"][name]
        assert link.startswith(f"/mlops/models/{MODEL}/") and part in link, (task_id, link)
        page = httpx.get(f"{api_server.url}{link}", headers=auth, timeout=10)
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html"), (link, page.text[:200])
        assert "script-src" not in page.headers["content-security-policy"]  # default-src 'none': no script runs

    shots = tmp_path / "screenshots"
    shots.mkdir()
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"), executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True,
            viewport={"width": 1400, "height": 1000},
        )
        try:
            page = context.new_page()
            refused = page.goto(f"{api_server.url}/mlops/")
            assert refused is not None and refused.status == 401  # the browser without a login is refused too

            context.add_cookies([{"name": "_token", "value": token, "url": api_server.url}])
            page.goto(f"{api_server.url}/")
            page.get_by_role("link", name="Models").click()  # the plugin's entry in the UI's navigation
            frame = page.frame_locator("iframe")
            frame.get_by_role("link", name=MODEL).click()
            expect(frame.locator("h1")).to_have_text(MODEL)
            expect(frame.locator(".metrics-plot svg polyline")).to_have_count(9)  # one line per metric
            expect(frame.locator("table.versions tbody tr")).to_have_count(2)
            expect(frame.locator("table.aliases")).to_contain_text("champion")
            page.screenshot(path=str(shots / "1-model.png"), full_page=True)

            frame.get_by_role("link", name="v2", exact=True).first.click()
            expect(frame.locator("h1")).to_contain_text(f"{MODEL} v2")
            expect(frame.locator("body")).to_contain_text(dag_run.run_id)
            expect(frame.locator("body")).to_contain_text("blessed")
            page.screenshot(path=str(shots / "2-version.png"), full_page=True)

            frame.get_by_role("link", name="validation report").click()
            expect(frame.locator("body")).to_contain_text("Validation of")
            page.go_back()
            frame.get_by_role("link", name="gate report").click()
            expect(frame.locator("h1")).to_contain_text(f"Gate report: {MODEL}")
            page.screenshot(path=str(shots / "3-gate-report.png"), full_page=True)

            page.go_back()
            # The run's page of Airflow's UI, inside the frame: the UI's sandbox lets no frame open a
            # window or navigate the whole tab.
            frame.get_by_role("link", name=f"{DAG_ID} / {dag_run.run_id}").click()
            expect(frame.get_by_text("RegisterModelOperator")).to_be_visible(timeout=60_000)
            expect(frame.locator("body")).to_contain_text(dag_run.run_id)
            page.screenshot(path=str(shots / "4-dag-run.png"))
        finally:
            context.close()
    keep = os.environ.get("MLOPS_AIRFLOW_SCREENSHOTS")  # set to a folder to keep the screenshots
    if keep:
        shutil.copytree(shots, keep, dirs_exist_ok=True)


def test_models_index_pages_and_filters_in_the_airflow_ui(api_server: ApiServer, ui_registry_uri: str,
                                                          tmp_path: Path) -> None:
    """More models than a page: the filter box, the page size, Next/Previous, a model's page; and the JSON pages."""
    from testsupport import candidate_fields

    from mlops_airflow.registry import open_registry

    registry = open_registry(ui_registry_uri)
    names = [f"zz-srv-{i:02d}" for i in range(60)]  # after the other test's model, so its page 1 is unchanged
    for name in names:
        if not registry.list_versions(name):
            record = registry.put_artifact(name, name.encode(), candidate_fields())
            registry.register(name, record, idempotency_key=name)
    token = api_server.token()
    reply = httpx.get(f"{api_server.url}/mlops/api/models", params={"q": "zz-srv-", "offset": 50, "limit": 25},
                      headers={"Authorization": f"Bearer {token}"}, timeout=30)
    assert reply.status_code == 200 and reply.headers["x-total-count"] == "60"
    assert [row["name"] for row in reply.json()] == names[50:]
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing: install Debian's chromium with tools/chromium.sh")
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"), executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True,
            viewport={"width": 1400, "height": 1000},
        )
        try:
            context.add_cookies([{"name": "_token", "value": token, "url": api_server.url}])
            page = context.new_page()
            page.goto(f"{api_server.url}/")
            page.get_by_role("link", name="Models").click()
            frame = page.frame_locator("iframe")
            expect(frame.locator("p.count")).to_contain_text("of ")
            # The filter is a GET form inside the UI's sandboxed frame: the sandbox and our CSP must let it submit.
            frame.get_by_label("Filter models by name").fill("zz-srv-*")
            frame.get_by_label("Models a page").select_option("25")
            frame.get_by_role("button", name="Filter").click()
            expect(frame.locator("p.count")).to_have_text("Models 1-25 of 60 matching zz-srv-*")
            rows = frame.locator("table.models tbody tr")
            expect(rows).to_have_count(25)
            expect(rows.first).to_contain_text("zz-srv-00")
            expect(frame.locator("nav.pager")).to_contain_text("Page 1 of 3")
            frame.get_by_role("link", name="Next →").click()
            expect(frame.locator("p.count")).to_have_text("Models 26-50 of 60 matching zz-srv-*")
            expect(rows.first).to_contain_text("zz-srv-25")
            frame.get_by_role("link", name="Next →").click()
            expect(frame.locator("p.count")).to_have_text("Models 51-60 of 60 matching zz-srv-*")
            expect(rows).to_have_count(10)
            expect(frame.get_by_role("link", name="Next →")).to_have_count(0)
            page.screenshot(path=str(tmp_path / "5-models-last-page.png"), full_page=True)
            frame.get_by_role("link", name="← Previous").click()
            expect(frame.locator("p.count")).to_have_text("Models 26-50 of 60 matching zz-srv-*")
            frame.get_by_role("link", name="zz-srv-30", exact=True).click()
            expect(frame.locator("h1")).to_have_text("zz-srv-30")  # a model's page, as before
        finally:
            context.close()
    keep = os.environ.get("MLOPS_AIRFLOW_SCREENSHOTS")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        shutil.copy(tmp_path / "5-models-last-page.png", keep)
