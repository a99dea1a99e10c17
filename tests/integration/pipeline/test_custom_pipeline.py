"""A user's own pipeline, tuned, goes through gate, registry and a real model server like any estimator."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from testsupport import SAMPLE, SPEC, load_dag

from mlops_airflow.deploy.local import LocalServerTarget
from mlops_airflow.pipeline.deploy import run_deployment
from mlops_airflow.pipeline.evaluate import run_evaluation
from mlops_airflow.pipeline.register import run_registration
from mlops_airflow.pipeline.train import run_training
from mlops_airflow.pipeline.validate import run_validation

pytestmark = pytest.mark.integration
FACTORY = "testsupport.trips_pipeline"
JAN = str(SAMPLE / "trips_2026_01.csv")
ROW = {"hour": 22, "day_of_week": "fri", "pickup_zone": "airport", "passengers": 1, "trip_distance_km": 18.5,
       "trip_duration_min": 31.0, "fare_usd": 46.5, "payment_type": "card"}


@pytest.fixture
def allow_factory(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLOPS_AIRFLOW_PIPELINE_FACTORY_ALLOWLIST", FACTORY)


def test_a_tuned_factory_pipeline_is_gated_registered_and_served(
    registry: Any, model_server: Any, allow_factory: None
) -> None:
    model = "trips_custom"
    url = model_server(model)
    summary = run_validation(registry, model_name=model, data_uri=JAN, target="tipped", validation=str(SPEC))
    candidate = run_training(registry, model_name=model, dataset_uri=summary["dataset_uri"], target="tipped",
                             row_key="trip_id", pipeline_factory=FACTORY,
                             search_space={"clf__C": {"type": "loguniform", "low": 0.01, "high": 10}},
                             tuning={"n_candidates": 4, "cv": 3})
    tuning = candidate["tuning"]
    # The search saw the training split only: never a holdout row.
    assert tuning["train_rows"] == candidate["split"]["train_rows"] < summary["rows"]
    assert max(tuning["resources"]) <= candidate["split"]["train_rows"]
    verdict = run_evaluation(registry, model_name=model, candidate_sha256=candidate["sha256"])
    assert verdict["blessed"], verdict["reason"]
    manifest = run_registration(registry, model_name=model, candidate_sha256=candidate["sha256"],
                                verdict_uri=verdict["verdict_uri"], idempotency_key="custom")
    assert manifest["pipeline_factory"] == FACTORY and manifest["lineage"]["train"]["pipeline_factory"] == FACTORY
    assert manifest["estimator"] == "sklearn.linear_model.LogisticRegression"
    assert manifest["estimator_params"] == tuning["best_params"] and set(tuning["best_params"]) == {"clf__C"}
    assert manifest["tuning"]["top"][0]["params"] == tuning["best_params"]
    with LocalServerTarget(url, timeout=60) as target:
        result = run_deployment(registry, model_name=model, version=manifest["version"],
                                verdict_uri=verdict["verdict_uri"], target=target, by="test")
    assert result["served"] and registry.aliases(model) == {"champion": 1}
    reply = httpx.post(f"{url}/predict", json={"rows": [ROW]}, timeout=60)
    assert reply.status_code == 200 and reply.json()["version"] == 1
    assert len(reply.json()["probabilities"][0]) == 2
    bad = httpx.post(f"{url}/predict", json={"rows": [{**ROW, "hour": 77}]}, timeout=60)  # the same serving schema checks
    assert bad.status_code == 422 and "hour=77 is outside [0, 23]" in bad.json()["detail"]["errors"]


def test_the_ct_dag_takes_a_factory_and_a_search_space_as_params(
    airflow_db: Path, registry: Any, model_server: Any, allow_factory: None
) -> None:
    from mlops_airflow.pipeline.summary import read_run

    model = "trips_custom_dag"
    model_server(model)
    conf = {"data_uri": JAN, "model_name": model, "pipeline_factory": FACTORY,
            "search_space": {"clf__C": [0.1, 1.0]}, "tuning": {"method": "halving_grid"}}
    dag_run = load_dag("mlops_continuous_training.py").test(run_conf=conf)
    assert str(dag_run.state) == "success"
    train = read_run(registry, model, dag_run.run_id)["results"]["train"]
    assert train["pipeline_factory"] == FACTORY and train["best_params"]["clf__C"] in (0.1, 1.0)
    manifest = registry.get_version(model, registry.aliases(model)["champion"])
    assert manifest["pipeline_factory"] == FACTORY and manifest["tuning"]["method"] == "halving_grid"
    assert manifest["lineage"]["train"]["dag_id"] == "mlops_continuous_training"


def test_a_factory_off_the_allowlist_stops_the_dag_at_train(airflow_db: Path, registry: Any) -> None:
    from mlops_airflow.pipeline.summary import read_run

    model = "trips_custom_refused"
    dag_run = load_dag("mlops_continuous_training.py").test(
        run_conf={"data_uri": JAN, "model_name": model, "pipeline_factory": FACTORY})
    assert str(dag_run.state) == "failed"
    record = read_run(registry, model, dag_run.run_id)
    assert record["states"]["train"] == "failed"
    assert f"pipeline_factory {FACTORY!r} is not on the allowlist" in record["results"]["train"]["error"]
    assert registry.list_versions(model) == []
