"""Drift monitor: traffic through a real model server, its prediction logs, the decision and the asset event."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from testsupport import (
    SAMPLE,
    asset_events,
    asset_queued_for,
    load_dag,
    send_rows,
    serve_logging,
    unpause_dag,
    wait_logged,
    xcom_value,
)

from mlops_airflow.exceptions import ModelNotFound
from mlops_airflow.pipeline.monitor import monitor_drift

pytestmark = pytest.mark.integration
MODEL = "trip_tips"  # the example monitor DAG's default model
DRIFT = f"x-mlops://{MODEL}/drift"
ROWS = 400  # per kind of traffic; min_rows is 300
POLICY = {"ks_pvalue": 0, "chi2_pvalue": 0}  # PSI and unseen categories decide, as in the example DAG


@pytest.fixture
def served(registry: Any, build_version: Any, model_server: Any, monkeypatch: pytest.MonkeyPatch) -> tuple[Any, str]:
    """A champion trained on January, served by a real process that logs every request."""
    manifest = build_version(MODEL, str(SAMPLE / "trips_2026_01.csv"))
    return manifest, serve_logging(model_server, monkeypatch, MODEL)


def features(manifest: dict[str, Any], frame: pd.DataFrame) -> pd.DataFrame:
    return frame[[c["name"] for c in manifest["feature_schema"]["columns"]]]


def test_stable_then_shifted_traffic_through_the_dag(airflow_db: Path, registry: Any, served: Any) -> None:
    manifest, url = served
    january = features(manifest, pd.read_csv(SAMPLE / "trips_2026_01.csv"))
    dag = load_dag("mlops_drift_monitor.py")
    unpause_dag("mlops_drift_retraining")

    # Traffic like the training data: stable, the run ends green and emits nothing.
    send_rows(url, january.sample(n=ROWS, random_state=1))
    wait_logged(registry, MODEL, ROWS)
    run = dag.test(run_conf={"models": [MODEL], "min_rows": 300, "policy": POLICY})
    assert str(run.state) == "success"
    result = xcom_value(run, "check_drift")["models"][MODEL]
    assert (result["outcome"], result["retrain"], result["rows"]) == ("stable", False, ROWS), result
    assert result["drifted_columns"] == [] and result["version"] == manifest["version"]
    assert asset_events(DRIFT, run.run_id) == []
    assert not asset_queued_for("mlops_drift_retraining", DRIFT)

    # Shifted traffic (night trips, fares tripled, cash only): drifted, recorded, and the event asks for training.
    shifted = january.sample(n=ROWS, random_state=2).assign(
        hour=3, fare_usd=lambda f: f["fare_usd"] * 3, payment_type="cash")
    send_rows(url, shifted)
    wait_logged(registry, MODEL, 2 * ROWS)
    run = dag.test(run_conf={"models": [MODEL], "min_rows": 300, "policy": POLICY})
    assert str(run.state) == "success"
    result = xcom_value(run, "check_drift")["models"][MODEL]
    assert (result["outcome"], result["retrain"], result["rows"]) == ("drifted", True, 2 * ROWS), result
    assert {"hour", "fare_usd", "payment_type"} <= set(result["drifted_columns"])
    assert "pickup_zone" not in result["drifted_columns"]  # unchanged columns do not drift
    events = asset_events(DRIFT, run.run_id)
    assert len(events) == 1 and events[0]["source_task_id"] == "check_drift"
    assert events[0]["extra"]["record_uri"] == result["record_uri"]
    assert events[0]["extra"]["drifted_columns"] == result["drifted_columns"]
    assert asset_queued_for("mlops_drift_retraining", DRIFT)  # the scheduler would start retraining

    # The record is stored, schema-valid, and the report plots each column.
    key = result["record_uri"].removeprefix(registry.store.uri + "/")
    record = json.loads(registry.store.read_bytes(key))
    assert record["kind"] == "drift" and record["outcome"] == "drifted" and record["versions"] == "champion"
    assert record["drift"]["columns"]["hour"]["drifted"] and record["policy"]["min_rows"] == 300
    report = registry.store.read_bytes(result["report_uri"].removeprefix(registry.store.uri + "/")).decode()
    assert "<svg" in report and "fare_usd" in report and "drifted" in report


def test_insufficient_data_versions_and_a_missing_champion(registry: Any, served: Any, build_version: Any) -> None:
    manifest, url = served
    january = features(manifest, pd.read_csv(SAMPLE / "trips_2026_01.csv"))
    send_rows(url, january.head(120).assign(pickup_zone="airport"))
    wait_logged(registry, MODEL, 120)

    # Too few rows decide nothing, even when every row drifted; the decision is still recorded.
    result = monitor_drift(registry, MODEL, policy={"min_rows": 300})
    assert (result["outcome"], result["retrain"], result["rows"]) == ("insufficient_data", False, 120)
    assert registry.store.exists(result["record_uri"].removeprefix(registry.store.uri + "/"))
    # Enough rows for a looser policy: drifted; with action: warn, recorded without asking for training.
    result = monitor_drift(registry, MODEL, policy={"min_rows": 100, "action": "warn"})
    assert (result["outcome"], result["retrain"]) == ("drifted", False) and "pickup_zone" in result["drifted_columns"]
    # Drift asks for retraining once per cooldown: a check while that training runs (or after the gate
    # kept this champion) records the drift without starting another.
    first = monitor_drift(registry, MODEL, policy={"min_rows": 100}, run_key="dag/run/check_drift/-1")
    retried = monitor_drift(registry, MODEL, policy={"min_rows": 100}, run_key="dag/run/check_drift/-1")
    again = monitor_drift(registry, MODEL, policy={"min_rows": 100}, run_key="dag/next_run/check_drift/-1")
    # A retry of the same check asks again: the try that asked may have failed before its event went out.
    assert (first["retrain"], retried["retrain"], again["outcome"], again["retrain"]) == (True, True, "drifted", False)
    assert "no retraining: asked for at" in again["reason"]
    assert monitor_drift(registry, MODEL, policy={"min_rows": 100, "cooldown_hours": 0})["retrain"] is True
    # A window before the traffic holds nothing.
    result = monitor_drift(registry, MODEL, since="2020-01-01", until="2020-01-02", policy={"min_rows": 1})
    assert (result["outcome"], result["rows"]) == ("insufficient_data", 0)

    # A new champion is judged on its own traffic only, unless asked for every version's.
    second = build_version(MODEL, str(SAMPLE / "trips_2026_01.csv"), key="second")
    assert second["version"] == manifest["version"] + 1
    assert monitor_drift(registry, MODEL, policy={"min_rows": 100})["rows"] == 0
    result = monitor_drift(registry, MODEL, all_versions=True, policy={"min_rows": 100})
    assert (result["rows"], result["outcome"], result["version"]) == (120, "drifted", second["version"])

    with pytest.raises(ModelNotFound, match="model 'nobody' has no alias 'champion'"):
        monitor_drift(registry, "nobody")
