"""Operator extra links: open a task's report from the Airflow UI.

Airflow 3 computes extra links on the worker right after ``execute`` and stores them, so
a link reads the location the operator recorded while it ran.
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import BaseOperatorLink


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


class ValidationReportLink(BaseOperatorLink):
    """The HTML validation report of a validate task."""

    name = "Validation report"

    def get_link(self, operator: Any, *, ti_key: Any) -> str:
        return browsable(getattr(operator, "report_uri", None))


class GateReportLink(BaseOperatorLink):
    """The HTML gate report of an evaluate task."""

    name = "Gate report"

    def get_link(self, operator: Any, *, ti_key: Any) -> str:
        return browsable(getattr(operator, "report_uri", None))
