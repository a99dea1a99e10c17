"""The HTML report: self-contained, shows failures, plots columns, escapes data."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pandas as pd

from mlops_airflow.validation import render_report, validate_dataset


def test_report_shows_failing_column_and_plots():
    frame = pd.DataFrame(
        {
            "hour": [1, 2, 3, 77, 5, 6] * 5,
            "zone": ["<script>alert(1)</script>", "a", "b", "a", "a", "b"] * 5,
            "y": [0, 1] * 15,
        }
    )
    spec = {"columns": {"hour": {"type": "integer", "min": 0, "max": 23}}}
    summary = validate_dataset(frame, target="y", spec=spec).summary

    page = render_report(summary, title="trips <2026-01>")

    assert page.startswith("<!DOCTYPE html>")
    assert "trips &lt;2026-01&gt;" in page
    assert "FAILED" in page
    assert "<td>hour</td>" in page and "expect_column_values_to_be_between" in page
    assert "<svg" in page
    assert "<script>" not in page  # data values are escaped
    # Nothing to fetch: no external scripts, styles or images.
    assert "http://" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")
    # Every inline SVG is well-formed on its own.
    for chunk in page.split("<svg")[1:]:
        ET.fromstring("<svg" + chunk.split("</svg>")[0] + "</svg>")


def test_report_renders_redacted_summary():
    frame = pd.DataFrame({"amount": [1.5, 2.5, 1000.0], "y": [0, 1, 0]})
    summary = validate_dataset(
        frame, target="y", spec={"columns": {"amount": {"max": 100}}}, redact_samples=True
    ).summary

    page = render_report(summary, title="redacted")

    assert "<svg" in page
    assert "1000" not in page
    assert "redacted" in page
