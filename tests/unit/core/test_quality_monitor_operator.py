"""The quality monitor operator's contract and the shared monitor window (no data, no Airflow run)."""

from __future__ import annotations

import pytest

from mlops_airflow.exceptions import ConfigError
from mlops_airflow.pipeline.monitor import monitor_window


def test_operator_contract() -> None:
    from airflow.sdk import AssetAlias

    from mlops_airflow.operators.monitor import QUALITY_ALIAS, QualityMonitorOperator, quality_asset

    assert tuple(QualityMonitorOperator.template_fields) == (
        "registry_uri", "model_name", "models", "feedback_uri", "label_column", "join_key", "alias", "window_hours",
        "until", "since", "policy", "log_uri",
    )
    op = QualityMonitorOperator(task_id="check", model_name="m", feedback_uri="f.csv", label_column="y")
    # An alias, not an Asset: Airflow emits an event for every Asset outlet on success, drop or not.
    assert op.outlets == [AssetAlias(QUALITY_ALIAS)]
    assert QualityMonitorOperator(task_id="quiet", model_name="m", feedback_uri="f", label_column="y",
                                  outlets=[]).outlets == []
    assert quality_asset("m").uri == "x-mlops://m/quality"
    assert op.policy_object('{"max_drop": 0.1}') == {"max_drop": 0.1} and op.policy_object(" ") is None
    with pytest.raises(ConfigError, match="policy is not a JSON object"):
        op.policy_object("max_drop: 0.1")
    with pytest.raises(ConfigError, match="window_hours='a week' is not a number"):
        op.hours("a week")


def test_monitor_window() -> None:
    start, end = monitor_window(24, None, "2026-03-02T00:00:00")
    assert (start.isoformat(), end.isoformat()) == ("2026-03-01T00:00:00+00:00", "2026-03-02T00:00:00+00:00")
    assert monitor_window(None, "2026-02-01", "2026-03-01")[0].isoformat() == "2026-02-01T00:00:00+00:00"
    with pytest.raises(ConfigError, match="window_hours=0 must be a positive number"):
        monitor_window(0, None, None)
    with pytest.raises(ConfigError, match="the window is empty"):
        monitor_window(None, "2026-03-01", "2026-02-01")
    with pytest.raises(ConfigError, match="until='yesterday' is not an ISO date/time"):
        monitor_window(24, None, "yesterday")
