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
        "registry_uri", "model_name", "models", "alias", "window_hours", "until", "since", "all_versions", "policy",
        "log_uri",
    )
    op = DriftMonitorOperator(task_id="check", model_name="m")
    # An alias, not an Asset: Airflow emits an event for every Asset outlet on success, drift or not.
    assert op.outlets == [AssetAlias(DRIFT_ALIAS)]
    assert drift_asset("m").uri == "x-mlops://m/drift"
    assert DriftMonitorOperator(task_id="quiet", model_name="m", outlets=[]).outlets == []
    # One model: each key of its result is an XCom. Many: one mapping of results.
    assert op.multiple_outputs is True
    many = DriftMonitorOperator(task_id="many", models=["trip_tips", "trips_*"])
    assert many.multiple_outputs is False and many.model_patterns() == ["trip_tips", "trips_*"]
    for neither_or_both in ({}, {"model_name": "m", "models": ["m"]}):
        with pytest.raises(ValueError, match="give model_name .one model. or models"):
            DriftMonitorOperator(task_id="bad", **neither_or_both)


@pytest.mark.parametrize(("text", "expected"), [
    ("['a', 'trips_*']", ["a", "trips_*"]), ('["a"]', ["a"]), ("a, b c", ["a", "b", "c"]), (["x"], ["x"]),
])
def test_models_rendered_as_text_are_read_back(text: object, expected: list[str]) -> None:
    from mlops_airflow.operators.monitor import DriftMonitorOperator

    assert DriftMonitorOperator(task_id="t", models=text).model_patterns() == expected  # type: ignore[arg-type]


def test_bad_model_lists_and_patterns_are_named(tmp_path: object) -> None:
    from datetime import UTC, datetime

    from mlops_airflow.operators.monitor import DriftMonitorOperator
    from mlops_airflow.pipeline.monitor import monitored_models
    from mlops_airflow.storage import open_store

    with pytest.raises(ConfigError, match="models is empty"):
        DriftMonitorOperator(task_id="t", models=[]).model_patterns()
    with pytest.raises(ConfigError, match=r"models=\[1\] must be a list of names"):
        DriftMonitorOperator(task_id="t", models=[1]).model_patterns()  # type: ignore[list-item]
    store, now = open_store(str(tmp_path)), datetime.now(UTC)
    with pytest.raises(ConfigError, match="models entry='bad name' is not valid"):
        monitored_models(store, ["bad name"], now, now)
    with pytest.raises(ConfigError, match="'trips/\\*' is not a model name pattern"):
        monitored_models(store, ["trips/*"], now, now)
    # Names are kept whether or not they logged; patterns match only models that logged (none here).
    assert monitored_models(store, ["b", "a", "b", "trips_*"], now, now) == ["b", "a"]
