"""Operator extra links: open a task's report or model version in the plugin's pages.

Airflow 3 computes extra links on the worker right after ``execute`` (even when it
failed) and stores them, so a link reads what the operator recorded while it ran. The
pages are served by the plugin on the API server (:mod:`mlops_airflow.plugins.app`), over
http and behind the API server's login, so they open from the UI wherever the registry
lives; a link is a path on the UI's own host unless ``[api] base_url`` names one.
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import BaseOperatorLink

from mlops_airflow.plugins import urls


def browsable(uri: str | None) -> str:
    """A URL a browser can open for an artifact-store URI ('' when there is none)."""
    if not uri:
        return ""
    if uri.startswith("s3://"):
        bucket, _, key = uri[len("s3://") :].partition("/")
        return f"https://{bucket}.s3.amazonaws.com/{key}"
    if "://" in uri:
        return uri
    return f"file://{uri}"


def api_base() -> str:
    """``[api] base_url`` without its trailing slash ('' when unset: links are then paths on the UI's host)."""
    from airflow.sdk.configuration import conf

    return (conf.get("api", "base_url", fallback="") or "").rstrip("/")


def report_link(operator: Any) -> str:
    """The plugin's URL of the report at ``operator.report_uri``.

    Falls back to :func:`browsable` for a report outside the registry the task used (the
    plugin serves only registry reports).
    """
    uri = getattr(operator, "report_uri", None)
    registry = vars(operator).get("registry")  # built while the task ran; never built here, for a link
    key = registry.store.key_of(uri) if registry is not None else None
    url = urls.report_url(str(operator.model_name), key, api_base()) if key else None
    return url or browsable(uri)


class ValidationReportLink(BaseOperatorLink):
    """The HTML validation report of a validate task."""

    name = "Validation report"

    def get_link(self, operator: Any, *, ti_key: Any) -> str:
        return report_link(operator)


class GateReportLink(BaseOperatorLink):
    """The HTML gate report of an evaluate task."""

    name = "Gate report"

    def get_link(self, operator: Any, *, ti_key: Any) -> str:
        return report_link(operator)


class ModelVersionLink(BaseOperatorLink):
    """The plugin's page of the version a register task made or a deploy task promoted."""

    name = "Model version"

    def get_link(self, operator: Any, *, ti_key: Any) -> str:
        version = getattr(operator, "model_version", None)
        return urls.version_url(str(operator.model_name), version, api_base()) if version is not None else ""
