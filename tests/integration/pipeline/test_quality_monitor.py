"""Quality monitor: a real server's logged answers, labels that arrive later, the decision and the asset event."""

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

pytestmark = pytest.mark.integration
MODEL = "trip_tips"  # the example monitor DAG's default model
QUALITY = f"x-mlops://{MODEL}/quality"
ROWS, PER_REQUEST = 300, 50
POLICY = {"max_drop": 0.2, "min_rows": 100}  # February is a little harder than January's holdout


def feedback(tmp_path: Path, name: str, request_ids: list[str], labels: pd.Series) -> str:
    """A feedback file as a labelling job would write it: request id, row within the request, true label."""
    rows = [{"request_id": request_ids[i // PER_REQUEST], "row": i % PER_REQUEST, "tipped": int(label)}
            for i, label in enumerate(labels)]
    path = tmp_path / name
    pd.DataFrame(rows).sample(frac=1, random_state=0).to_csv(path, index=False)  # any order joins
    return str(path)


def test_good_then_dropped_quality_through_the_dag(airflow_db: Path, registry: Any, build_version: Any,
                                                   model_server: Any, monkeypatch: pytest.MonkeyPatch,
                                                   tmp_path: Path) -> None:
    manifest = build_version(MODEL, str(SAMPLE / "trips_2026_01.csv"))
    url = serve_logging(model_server, monkeypatch, MODEL)
    february = pd.read_csv(SAMPLE / "trips_2026_02.csv").head(ROWS)
    request_ids = send_rows(url, february[[c["name"] for c in manifest["feature_schema"]["columns"]]], PER_REQUEST)
    wait_logged(registry, MODEL, ROWS)
    dag = load_dag("mlops_quality_monitor.py")
    unpause_dag("mlops_drift_retraining")
    conf = {"models": [MODEL], "label": "tipped", "key": "request_id", "policy": POLICY}

    # The true labels: the model does about as well as on its holdout; green, recorded, no event.
    good = feedback(tmp_path, "good.csv", request_ids, february["tipped"])
    run = dag.test(run_conf={**conf, "feedback_uri": good})
    assert str(run.state) == "success"
    result = xcom_value(run, "check_quality")["models"][MODEL]
    assert (result["decision"], result["retrain"], result["labelled_rows"]) == ("ok", False, ROWS), result
    assert result["metric"] == "roc_auc" and result["version"] == manifest["version"]
    assert result["live_value"] > manifest["metrics"]["roc_auc"] - POLICY["max_drop"]
    assert asset_events(QUALITY, run.run_id) == []
    assert not asset_queued_for("mlops_drift_retraining", QUALITY)

    # The world changed (every label flipped): quality dropped, one event asks for retraining.
    flipped = feedback(tmp_path, f"{MODEL}-flipped.csv", request_ids, 1 - february["tipped"])
    per_model = str(tmp_path / "{model}-flipped.csv")  # one feedback file per model: {model} is each one's name
    run = dag.test(run_conf={**conf, "feedback_uri": per_model})
    assert str(run.state) == "success"  # a finding, not a failure
    result = xcom_value(run, "check_quality")["models"][MODEL]
    assert (result["decision"], result["retrain"], result["labelled_rows"]) == ("retrain", True, ROWS), result
    assert "more than 0.2 worse than the holdout's" in result["reason"]
    events = asset_events(QUALITY, run.run_id)
    assert len(events) == 1 and events[0]["source_task_id"] == "check_quality"
    extra = events[0]["extra"]
    assert (extra["decision"], extra["record_uri"], extra["live_value"]) == ("retrain", result["record_uri"],
                                                                             result["live_value"])
    assert asset_queued_for("mlops_drift_retraining", QUALITY)  # the scheduler would start retraining
    record = json.loads(registry.store.read_bytes(result["record_uri"].removeprefix(registry.store.uri + "/")))
    assert record["retrain"] is True and record["feedback_uri"] == flipped and record["policy"]["max_drop"] == 0.2
    assert record["metric"] == "roc_auc"

    # The next run finds the same drop within the cooldown: recorded, green, no second event.
    run = dag.test(run_conf={**conf, "feedback_uri": per_model})
    assert str(run.state) == "success"
    again = xcom_value(run, "check_quality")["models"][MODEL]
    assert (again["decision"], again["retrain"]) == ("retrain", False), again
    assert "no retraining: asked for at " + record["checked_at"] in again["reason"]
    assert asset_events(QUALITY, run.run_id) == []

    # Feedback without the label column fails the task at once, naming the column; no event.
    run = dag.test(run_conf={**conf, "feedback_uri": good, "label": "outcome"})
    assert str(run.state) == "failed"
    assert "no label column 'outcome'" in xcom_value(run, "check_quality", "error")
    assert asset_events(QUALITY, run.run_id) == []
