"""How to retrain a model, read from its lineage, and the plan a drift or quality event leads to (no Airflow run)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from testsupport import candidate_fields

from mlops_airflow.exceptions import ConfigError
from mlops_airflow.pipeline.retrain import event_model, plan_retraining, retrain_request, trigger_record
from mlops_airflow.records import validate_record
from mlops_airflow.registry import ModelRegistry
from mlops_airflow.storage import open_store

CHURN_CONF = {"model_name": "churn_x", "data_uri": "s3://landing/churn/*.csv", "target": "churned",
              "estimator": "sklearn.linear_model.LogisticRegression", "estimator_params": {"C": 0.5},
              "row_key": "customer_id", "validation": None}


@pytest.fixture
def registry(tmp_path: Path) -> ModelRegistry:
    return ModelRegistry(open_store(str(tmp_path / "registry")))


def champion(registry: ModelRegistry, model: str, trigger: dict[str, Any] | None, key: str = "k") -> dict[str, Any]:
    """Register a version of ``model`` whose lineage records ``trigger`` (or none) and make it the champion."""
    lineage = {"train": {"dag_id": "ct", "run_id": "r", **({"trigger": trigger} if trigger else {})}}
    manifest = registry.register(model, registry.put_artifact(model, key.encode(), candidate_fields(lineage=lineage)),
                                 idempotency_key=key)
    current = registry.get_alias(model, "champion")
    registry.set_alias(model, "champion", manifest["version"], expected=current["version"] if current else None,
                       by="test", reason="fixture")
    return manifest


def drift(model: str, version: int, **extra: Any) -> dict[str, Any]:
    return {"uri": f"x-mlops://{model}/drift", "extra": {"model_name": model, "version": version, **extra}}


def test_the_trigger_record_is_json_and_lands_in_a_valid_manifest(registry: ModelRegistry) -> None:
    when = datetime(2026, 3, 1, tzinfo=UTC)
    record = trigger_record("mlops_continuous_training", {"model_name": "m", "gate": {"x": [1, None]}, "at": when})
    assert record == {"dag_id": "mlops_continuous_training",
                      "conf": {"model_name": "m", "gate": {"x": [1, None]}, "at": "2026-03-01 00:00:00+00:00"}}
    with pytest.raises(ConfigError, match="trigger dag_id=''"):
        trigger_record("", {})
    manifest = champion(registry, "churn_x", trigger_record("ct_dag", CHURN_CONF))
    assert retrain_request(manifest) == {"dag_id": "ct_dag", "conf": CHURN_CONF}
    # The manifest schema knows the record: a malformed one is refused before it is committed.
    bad = {**manifest, "lineage": {"train": {"trigger": {"dag_id": "ct_dag"}}}}
    with pytest.raises(Exception, match="lineage.train.trigger: 'conf' is a required property"):
        validate_record("manifest", bad)


def test_no_or_a_malformed_trigger_is_none() -> None:
    assert retrain_request({"lineage": {"train": {"dag_id": "ct"}}}) is None
    assert retrain_request({}) is None
    assert retrain_request({"lineage": {"train": {"trigger": {"dag_id": "", "conf": {}}}}}) is None
    assert retrain_request({"lineage": {"train": {"trigger": ["ct", {}]}}}) is None


def test_the_model_comes_from_the_event_uri_or_its_extra() -> None:
    assert event_model("x-mlops://churn_x/drift", {"model_name": "churn_x"}) == "churn_x"
    assert event_model("x-mlops://churn_x/quality") == "churn_x"
    assert event_model("s3://elsewhere/thing", {"model_name": "other"}) == "other"  # an event of one's own asset
    assert event_model("x-mlops://churn_x/drift", {"model_name": "trip_tips"}) is None  # disagreeing: ignored
    assert event_model("s3://elsewhere/thing") is None
    assert event_model("x-mlops://bad name/drift") is None


def test_each_model_is_retrained_as_its_lineage_records(registry: ModelRegistry) -> None:
    churn = champion(registry, "churn_x", trigger_record("mlops_continuous_training", CHURN_CONF))
    old = champion(registry, "trip_tips", None)  # trained before the trigger was recorded
    champion(registry, "replaced", trigger_record("ct", {"model_name": "replaced"}), key="r1")
    champion(registry, "replaced", trigger_record("ct", {"model_name": "replaced"}), key="r2")  # now version 2
    events = [
        drift("churn_x", churn["version"]), drift("churn_x", churn["version"]),  # duplicates: one run
        {"uri": "x-mlops://churn_x/quality", "extra": {"model_name": "churn_x", "version": churn["version"]}},
        drift("trip_tips", old["version"]),
        drift("replaced", 1),  # about a version that is no longer the champion
        drift("never_registered", 1),
        {"uri": "x-mlops://not a model/drift", "extra": {}},
    ]
    plan = plan_retraining(registry, events)
    runs = {tuple(run["models"]): run for run in plan["runs"]}
    assert set(runs) == {("churn_x",), ("trip_tips",), ("never_registered",)}
    assert (runs["churn_x",]["dag_id"], runs["churn_x",]["conf"], runs["churn_x",]["source"]) == (
        "mlops_continuous_training", CHURN_CONF, "lineage")
    assert runs["churn_x",]["reasons"] == ["churn_x: drift event on version 1; quality event on version 1"]
    assert (runs["trip_tips",]["conf"], runs["trip_tips",]["source"]) == ({"model_name": "trip_tips"}, "fallback")
    assert "records no lineage.train.trigger" in runs["trip_tips",]["reasons"][0]
    assert "no champion to read how it was trained" in runs["never_registered",]["reasons"][0]
    assert plan["skipped"] == {"replaced": "the events judged version 1; champion is version 2 now"}
    # By hand, a model is retrained whatever version an event judged.
    assert [run["models"] for run in plan_retraining(registry, [drift("replaced", 1)], models=["replaced"])["runs"]] \
        == [["replaced"]]


def test_models_recorded_with_the_same_run_share_one_and_a_limit_defers_the_rest(registry: ModelRegistry) -> None:
    for zone in ("airport", "downtown", "harbor"):  # each segment's trigger retrains that segment alone
        champion(registry, f"trips_{zone}",
                 trigger_record("mlops_per_segment_training", {"model_prefix": "trips_", "segments": [zone]}))
    plan = plan_retraining(registry, [drift("trips_airport", 1), drift("trips_downtown", 1)])
    # one run of the segment DAG for the two drifted segments, not one each, and not the third
    assert [(run["dag_id"], run["models"], run["conf"]) for run in plan["runs"]] == [
        ("mlops_per_segment_training", ["trips_airport", "trips_downtown"],
         {"model_prefix": "trips_", "segments": ["airport", "downtown"]})]
    plan = plan_retraining(registry, models=["a_model", "b_model", "c_model"], limit=2)
    assert [run["models"] for run in plan["runs"]] == [["a_model"], ["b_model"]] and plan["deferred"] == ["c_model"]
