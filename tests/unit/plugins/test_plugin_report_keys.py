"""Which registry keys the plugin serves as reports: only the two report kinds, never a way out of the model's folder."""

from __future__ import annotations

import pytest

from mlops_airflow.plugins import urls

SHA = "ab" * 32


@pytest.mark.parametrize(
    "path",
    [
        "datasets/../validation.html",  # the segment itself climbs out
        "datasets/.hidden/validation.html",
        "datasets/.../validation.html",
        "datasets/x/validation.html\n",  # `$` would have let a trailing newline through
        f"artifacts/{SHA}/verdicts/0f1e2d.html\n",
        "datasets/x/validation.html/../../../etc/passwd",
        "datasets//validation.html",
    ],
)
def test_dot_segments_and_trailing_newlines_are_not_report_keys(path: str) -> None:
    assert urls.REPORT_KEY.fullmatch(path) is None
    assert urls.report_url("m", f"m/{path}") is None


@pytest.mark.parametrize("path", ["datasets/2026-01-31T00.00_ab12/validation.html", "datasets/a..b/validation.html",
                                  f"artifacts/{SHA}/verdicts/0f1e2d.html"])
def test_report_keys_with_dots_inside_a_segment_are_still_served(path: str) -> None:
    assert urls.report_url("m", f"m/{path}") == f"/mlops/models/m/reports/{path}"
