"""The drift monitor's policy checks and its operator's contract (no data, no Airflow run)."""

from __future__ import annotations

import pytest

from mlops_airflow.exceptions import ConfigError
from mlops_airflow.pipeline.monitor import check_monitor_policy


def test_policy_defaults_and_thresholds_are_filled_in() -> None:
    rules = check_monitor_policy({"psi": 0.3, "per_column": {"hour": {"psi": 0.5}}, "min_rows": 50})
    assert rules["min_rows"] == 50 and rules["min_drifted_columns"] == 1 and rules["action"] == "retrain"
    assert rules["cooldown_hours"] == 24
    assert rules["psi"] == 0.3 and rules["ks_pvalue"] == 0.001 and rules["per_column"] == {"hour": {"psi": 0.5}}
    assert rules["columns"] is None and "reference" not in rules and "policy" not in rules


@pytest.mark.parametrize(
    ("policy", "message"),
    [
        ({"min_rows": 0}, "min_rows=0 must be a positive integer"),
        ({"min_rows": True}, "min_rows=True must be a positive integer"),
        ({"min_drifted_columns": 1.5}, "min_drifted_columns=1.5 must be a positive integer"),
        ({"action": "page_me"}, "action='page_me' must be one of retrain, warn"),
        ({"cooldown_hours": -1}, "cooldown_hours=-1 must be a number >= 0"),
        ({"psi": -1}, "psi: must be >= 0"),
        ({"ks_pvalue": 2}, "ks_pvalue: must be between 0 and 1"),
        ({"psy": 0.2}, "unknown key 'psy'"),
        ({"policy": "stop"}, "'policy' is not a monitor setting"),
        ({"reference": "s3://b/ref.csv"}, "'reference' is not a monitor setting"),
    ],
)
def test_bad_policies_are_named(policy: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)").replace(".", r"\.")):
        check_monitor_policy(policy)


def test_operator_contract() -> None:
    from airflow.sdk import AssetAlias

    from mlops_airflow.operators.monitor import DRIFT_ALIAS, DriftMonitorOperator, drift_asset

    assert tuple(DriftMonitorOperator.template_fields) == (
        "registry_uri", "model_name", "alias", "window_hours", "until", "since", "all_versions", "policy", "log_uri",
    )
    op = DriftMonitorOperator(task_id="check", model_name="m")
    # An alias, not an Asset: Airflow emits an event for every Asset outlet on success, drift or not.
    assert op.outlets == [AssetAlias(DRIFT_ALIAS)]
    assert drift_asset("m").uri == "x-mlops://m/drift"
    assert DriftMonitorOperator(task_id="quiet", model_name="m", outlets=[]).outlets == []
