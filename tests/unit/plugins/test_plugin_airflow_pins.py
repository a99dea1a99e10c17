"""The Airflow internals the UI plugin relies on, pinned: an upgrade that moves one fails here, loudly.

Airflow does not protect a plugin's FastAPI app; mlops_airflow.plugins.auth checks the API
server's token itself with the helpers below. The behaviour tests drive that check through
a stand-in auth manager installed where Airflow keeps the running one.
"""

from __future__ import annotations

import inspect
import json
import subprocess
import sys
import tomllib
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[3]
PLUGIN = "mlops_airflow.plugins.plugin:MlopsPlugin"


def test_the_auth_helpers_the_plugin_uses_are_where_it_expects_them() -> None:
    from airflow.api_fastapi import app as api_app
    from airflow.api_fastapi.auth.managers.base_auth_manager import COOKIE_NAME_JWT_TOKEN, BaseAuthManager
    from airflow.api_fastapi.auth.managers.models.resource_details import AccessView
    from airflow.api_fastapi.core_api import security

    assert COOKIE_NAME_JWT_TOKEN == "_token"  # the cookie the UI keeps its token in
    assert inspect.iscoroutinefunction(security.resolve_user_from_token)
    assert list(inspect.signature(security.resolve_user_from_token).parameters) == ["token_str"]
    assert callable(api_app.get_auth_manager) and hasattr(api_app._AuthManagerState, "instance")
    assert AccessView.WEBSITE.value == "WEBSITE"
    assert "access_view" in inspect.signature(BaseAuthManager.is_authorized_view).parameters
    # Airflow mounts plugin apps on the API server, and refuses reserved prefixes: ours is not one.
    assert not any("/mlops".startswith(prefix) for prefix in api_app.RESERVED_URL_PREFIXES)
    assert "get_fastapi_plugins" in inspect.getsource(api_app.init_plugins)


def test_the_plugin_is_a_valid_airflow_plugin_with_an_app_and_a_nav_entry() -> None:
    from airflow._shared.plugins_manager import is_valid_plugin
    from airflow.api_fastapi.core_api.datamodels.plugins import ExternalViewResponse

    from mlops_airflow.plugins.plugin import MlopsPlugin

    assert is_valid_plugin(MlopsPlugin)
    (app,) = MlopsPlugin.fastapi_apps
    assert app["url_prefix"] == "/mlops" and callable(app["app"])
    (view,) = MlopsPlugin.external_views
    ExternalViewResponse.model_validate(view)  # the shape the UI's plugin listing serves
    assert (view["name"], view["href"], view["destination"]) == ("Models", "/mlops/", "nav")


def test_the_plugin_is_declared_as_an_airflow_plugins_entry_point() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    declared = project.get("entry-points", {}).get("airflow.plugins")
    assert declared == {"mlops_airflow": PLUGIN}, 'pyproject.toml needs [project.entry-points."airflow.plugins"]'
    assert PLUGIN in {ep.value for ep in entry_points(group="airflow.plugins")}, "reinstall: pip install -e ."


def test_loading_the_plugin_builds_no_web_app() -> None:
    """Workers import plugins at every task start: the app (FastAPI, the registry) waits for a request."""
    probe = ("import json, sys; import mlops_airflow.plugins.plugin; "
             "print(json.dumps(sorted(m for m in ('fastapi', 'mlops_airflow.plugins.app', 'mlops_airflow.registry', "
             "'pandas', 'sklearn', 'boto3') if m in sys.modules)))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


class StandInAuthManager:
    """Answers like an auth manager: one good token, a user who may or may not use the UI."""

    def __init__(self, allowed: bool) -> None:
        self.allowed = allowed
        self.asked: list[Any] = []

    async def get_user_from_token(self, token: str) -> str:
        from jwt import ExpiredSignatureError, InvalidTokenError

        if token == "expired":
            raise ExpiredSignatureError("expired")
        if token != "good":
            raise InvalidTokenError("bad signature")
        return "alice"

    def is_authorized_view(self, *, access_view: Any, user: Any) -> bool:
        self.asked.append((access_view.value, user))
        return self.allowed


@pytest.fixture
def client(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    from airflow.api_fastapi import app as api_app
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from mlops_airflow.plugins.app import app

    monkeypatch.setenv("MLOPS_AIRFLOW_REGISTRY_URI", str(tmp_path / "registry"))
    root = FastAPI()
    root.mount("/mlops", app)

    def with_manager(allowed: bool) -> tuple[Any, StandInAuthManager]:
        manager = StandInAuthManager(allowed)
        monkeypatch.setattr(api_app._AuthManagerState, "instance", manager)
        return TestClient(root), manager

    return with_manager


def test_no_token_is_401_a_bad_one_403_an_expired_one_401(client: Any) -> None:
    http, _ = client(True)
    assert http.get("/mlops/api/models").status_code == 401
    assert http.get("/mlops/api/models", headers={"Authorization": "Bearer forged"}).status_code == 403
    assert http.get("/mlops/api/models", cookies={"_token": "expired"}).status_code == 401
    assert http.get("/mlops/api/models", headers={"Authorization": "Basic good"}).status_code == 401


def test_a_good_token_in_the_header_or_the_cookie_lets_a_ui_user_read(client: Any) -> None:
    http, manager = client(True)
    assert http.get("/mlops/api/models", headers={"Authorization": "Bearer good"}).json() == []
    assert http.get("/mlops/api/models", cookies={"_token": "good"}).json() == []
    assert manager.asked == [("WEBSITE", "alice"), ("WEBSITE", "alice")]
    # The header wins over the cookie, as in Airflow's own API.
    assert http.get("/mlops/", headers={"Authorization": "Bearer forged"}, cookies={"_token": "good"}).status_code == 403


def test_a_user_the_auth_manager_keeps_out_of_the_ui_is_refused(client: Any) -> None:
    http, manager = client(False)
    reply = http.get("/mlops/", headers={"Authorization": "Bearer good"})
    assert reply.status_code == 403 and "Models" not in reply.text
    assert manager.asked == [("WEBSITE", "alice")]
