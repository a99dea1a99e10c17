"""Live quality: labels joined to what the server logged, the live metric, and the retrain decision."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score
from testsupport import SAMPLE

from mlops_airflow.evaluation.live import live_quality
from mlops_airflow.exceptions import ConfigError, DataError
from mlops_airflow.serving.loading import load_manifest_model
from mlops_airflow.serving.logs import PredictionLogger

pytestmark = pytest.mark.integration
MODEL = "live_model"
ROWS_PER_REQUEST = 10


@pytest.fixture
def served(registry: Any, build_version: Any) -> tuple[dict[str, Any], pd.DataFrame]:
    """A champion, and 300 rows of February it answered, logged by the server's own logger."""
    manifest = build_version(MODEL, str(SAMPLE / "trips_2026_01.csv"))
    model = load_manifest_model(registry, manifest).model
    frame = pd.read_csv(SAMPLE / "trips_2026_02.csv").head(300)
    logger = PredictionLogger(registry.store, MODEL, sample_rate=1.0)
    rows = []
    for start in range(0, len(frame), ROWS_PER_REQUEST):
        chunk = frame.iloc[start : start + ROWS_PER_REQUEST]
        X = chunk.drop(columns=["tipped"])  # trip_id travels with the request, as a client may send it
        proba = model.predict_proba(X.drop(columns=["trip_id"]))
        logger.offer(version=manifest["version"], request_id=f"req-{start}", values=X.to_dict(orient="list"),
                     predictions=list(model.predict(X.drop(columns=["trip_id"]))), probabilities=proba.tolist(),
                     classes=manifest["classes"])
        for row, (_, record) in enumerate(chunk.iterrows()):
            rows.append({"request_id": f"req-{start}", "row": row, "trip_id": record["trip_id"],
                         "tipped": record["tipped"], "score": proba[row][1]})
    assert logger.flush() == len(frame)
    return manifest, pd.DataFrame(rows)


def write(tmp_path: Path, frame: pd.DataFrame, name: str = "feedback.csv") -> str:
    path = tmp_path / name
    frame.to_csv(path, index=False)
    return str(path)


def test_live_quality_decisions(registry: Any, served: Any, tmp_path: Path) -> None:
    # One champion for every case: building it is the slow part.
    manifest, truth = served

    # Labels within policy keep the champion (feedback in any order, joined by request id and row).
    feedback = write(tmp_path, truth[["request_id", "row", "tipped"]].sample(frac=1, random_state=0))
    record = live_quality(registry, MODEL, feedback, label="tipped", policy={"max_drop": 0.2})
    assert record["labelled_rows"] == 300 and record["logged_rows"] == 300
    assert record["metric"] == "roc_auc"
    assert record["live_value"] == pytest.approx(roc_auc_score(truth["tipped"], truth["score"]), abs=1e-6)
    assert record["decision"] == "ok" and record["retrain"] is False
    assert record["holdout_value"] == manifest["metrics"]["roc_auc"]
    assert registry.store.exists(record["record_uri"].removeprefix(registry.store.uri + "/"))

    # A quality drop asks for retraining (joined by a row key this time).
    flipped = truth.assign(tipped=1 - truth["tipped"])  # the world changed: the model is now wrong
    flipped_uri = write(tmp_path, flipped[["trip_id", "tipped"]], "flipped.csv")
    record = live_quality(registry, MODEL, flipped_uri, label="tipped", key="trip_id", run_key="check-1")
    assert record["decision"] == "retrain" and record["retrain"] is True
    assert "more than 0.05 worse than the holdout's" in record["reason"]

    # The same drop found again within the cooldown is recorded, without asking again...
    again = live_quality(registry, MODEL, flipped_uri, label="tipped", key="trip_id", run_key="check-2")
    assert (again["decision"], again["retrain"]) == ("retrain", False)
    assert f"no retraining: asked for at {record['checked_at']}, within cooldown_hours=24" in again["reason"]
    assert again["record_uri"] != record["record_uri"]
    # ...except by a retry of the check that asked (its event may never have gone out), or with no cooldown.
    retried = live_quality(registry, MODEL, flipped_uri, label="tipped", key="trip_id", run_key="check-1")
    assert retried["retrain"] is True, retried["reason"]
    uncooled = live_quality(registry, MODEL, flipped_uri, label="tipped", key="trip_id", run_key="check-3",
                            policy={"cooldown_hours": 0})
    assert uncooled["retrain"] is True, uncooled["reason"]

    # Too few labels decide nothing, even under a policy the model fails.
    record = live_quality(registry, MODEL, write(tmp_path, truth.head(20)[["request_id", "row", "tipped"]], "few.csv"),
                          label="tipped", policy={"min_value": 0.99})
    assert (record["decision"], record["retrain"], record["labelled_rows"]) == ("insufficient_data", False, 20)

    # Bad feedback and policies are named.
    doubled = write(tmp_path, pd.concat([truth, truth.head(3)])[["request_id", "row", "tipped"]], "doubled.csv")
    with pytest.raises(DataError, match="3 duplicate label"):
        live_quality(registry, MODEL, doubled, label="tipped")
    no_row = write(tmp_path, truth[["request_id", "tipped"]], "no_row.csv")
    with pytest.raises(DataError, match="feedback needs a row column"):
        live_quality(registry, MODEL, no_row, label="tipped")
    with pytest.raises(DataError, match="no label column 'label'"):
        live_quality(registry, MODEL, no_row, label="label")
    with pytest.raises(ConfigError, match="metric='r2' is not a binary metric"):
        live_quality(registry, MODEL, no_row, label="tipped", policy={"metric": "r2"})
    with pytest.raises(ConfigError, match="unknown field"):
        live_quality(registry, MODEL, no_row, label="tipped", policy={"max_dorp": 0.1})
    with pytest.raises(ConfigError, match="cooldown_hours=-1 must be a number >= 0"):
        live_quality(registry, MODEL, no_row, label="tipped", policy={"cooldown_hours": -1})
