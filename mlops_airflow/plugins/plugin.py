"""The Airflow plugin (``airflow.plugins`` entry point): the Models pages on the API server, in the UI's navigation.

Airflow imports plugin modules in every process, workers included at each task start, so
this module imports neither FastAPI nor the registry: the web app is built on the API
server's first request to it (:class:`AppOnFirstRequest`).
"""

from __future__ import annotations

import importlib
from functools import cached_property
from typing import Any
from urllib.parse import urlsplit

from airflow.configuration import conf
from airflow.plugins_manager import AirflowPlugin

from mlops_airflow.plugins import urls


class AppOnFirstRequest:
    """An ASGI app that imports ``module:attribute`` and hands it every request, from the first one on."""

    def __init__(self, target: str) -> None:
        self.target = target

    @cached_property
    def app(self) -> Any:
        module, _, attribute = self.target.partition(":")
        return getattr(importlib.import_module(module), attribute)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.app(scope, receive, send)


def api_root() -> str:
    """The path the API server is served under (that of ``[api] base_url``; '' at the host's root)."""
    return urlsplit(conf.get("api", "base_url", fallback="") or "").path.rstrip("/")


class MlopsPlugin(AirflowPlugin):
    """Models, versions, aliases, metrics, lineage and reports of the mlops-airflow registry, in the Airflow UI."""

    name = "mlops_airflow"
    fastapi_apps = [
        {"name": "mlops-airflow models", "app": AppOnFirstRequest("mlops_airflow.plugins.app:app"),
         "url_prefix": urls.URL_PREFIX},
    ]
    # The UI shows an external view with a url_route inside its own frame, at /plugin/<url_route>;
    # the page is same-origin, so the browser sends the UI's _token cookie with it.
    external_views = [
        {"name": "Models", "href": urls.models_url(api_root()), "url_route": urls.UI_ROUTE, "destination": "nav",
         "nav_top_level": True},
    ]
