"""New data on S3 -> validate -> Asset event -> training, through a real metadata DB and a real S3 server."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from testsupport import SAMPLE, SPEC, asset_events, asset_queued_for, load_dag, unpause_dag, xcom_value

pytestmark = pytest.mark.integration
MODEL = "trip_tips"  # mlops_asset_training is scheduled on this model's validated asset


@pytest.fixture
def landing(s3_endpoint: str, s3_client: Any, s3_bucket: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """An S3 prefix reached through the standard AWS environment (no Airflow connection)."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_endpoint)
    return f"s3://{s3_bucket}/landing"


def test_new_data_is_validated_emits_an_asset_event_and_trains(
    airflow_db: Path, registry: Any, landing: str, s3_client: Any, s3_bucket: str, model_server: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from mlops_airflow.sensors.triggers.s3 import S3NewDataTrigger

    # The file lands only after the trigger has looked once: the sensor must defer, wait, then fire.
    polls: list[int] = []
    real_poll = S3NewDataTrigger._poll

    def poll_then_land(self: S3NewDataTrigger, client: Any) -> list[dict[str, Any]]:
        if len(polls) == 1:
            s3_client.put_object(Bucket=s3_bucket, Key="landing/trips_2026_01.csv",
                                 Body=(SAMPLE / "trips_2026_01.csv").read_bytes())
        found = real_poll(self, client)
        polls.append(len(found))
        return found

    monkeypatch.setattr(S3NewDataTrigger, "_poll", poll_then_land)
    unpause_dag("mlops_asset_training")
    dag = load_dag("mlops_new_data.py")
    dag.get_task("wait_for_data").poke_interval = 0.05
    run = dag.test(run_conf={"prefix_uri": landing, "pattern": "*.csv", "model_name": MODEL, "validation": str(SPEC)})
    assert str(run.state) == "success"
    assert polls == [0, 1]  # deferred (the worker looked first), one empty look in the trigger, then the file
    handed_on = xcom_value(run, "wait_for_data", "uris")
    assert handed_on == [f"{landing}/trips_2026_01.csv"]
    assert registry.store.exists(f"_watermarks/{MODEL}.new_data.json")

    events = asset_events(f"x-mlops://{MODEL}/validated", run.run_id)
    assert len(events) == 1 and events[0]["source_task_id"] == "validate"
    extra = events[0]["extra"]
    assert extra["data_uri"] == f"{landing}/*.csv" and extra["model_name"] == MODEL
    assert extra["rows"] > 100 and extra["fingerprint"].startswith("sha256:")
    assert extra["dataset_uri"].startswith(registry.store.uri) and extra["dataset_uri"].endswith("dataset.json")
    assert asset_queued_for("mlops_asset_training", f"x-mlops://{MODEL}/validated")  # the scheduler would start training

    # The training the event starts, run here with the event's snapshot.
    model_server(MODEL)
    trained = load_dag("mlops_asset_training.py").test(run_conf={"dataset_uri": extra["dataset_uri"]})
    assert str(trained.state) == "success"
    champion = registry.get_version(MODEL, registry.aliases(MODEL)["champion"])
    assert champion["data"]["dataset_uri"] == extra["dataset_uri"]
    assert champion["data"]["fingerprint"] == extra["fingerprint"]
    # A run by hand with this DAG's Params has no event to train from: it records no way to retrain.
    assert "trigger" not in champion["lineage"]["train"]


def test_failed_validation_emits_no_asset_event(airflow_db: Path, registry: Any, landing: str, s3_client: Any,
                                                s3_bucket: str) -> None:
    s3_client.put_object(Bucket=s3_bucket, Key="landing/no_target.csv", Body=b"a,b\n1,2\n3,4\n")
    run = load_dag("mlops_new_data.py").test(run_conf={"prefix_uri": landing, "model_name": "bad_batch"})
    assert str(run.state) == "failed"
    assert asset_events("x-mlops://bad_batch/validated", run.run_id) == []
    assert registry.list_models() == []


def test_asset_training_reads_the_dataset_from_the_triggering_event() -> None:
    """The template that picks the snapshot out of the triggering event, rendered as Airflow renders it."""
    from airflow.sdk.definitions._internal.templater import SandboxedEnvironment

    train = load_dag("mlops_asset_training.py").get_task("train")
    event = type("Event", (), {"extra": {"dataset_uri": "s3://b/r/trip_tips/datasets/x/dataset.json"}})()
    context = {"params": {"dataset_uri": None}, "triggering_asset_events": {"asset": [event], "alias": [event]}}
    rendered = SandboxedEnvironment().from_string(train.dataset_uri).render(**context)
    assert rendered == "s3://b/r/trip_tips/datasets/x/dataset.json"


def test_the_sqs_event_dag_parses_with_its_asset_watcher() -> None:
    from airflow.serialization.serialized_objects import DagSerialization

    dag = load_dag("mlops_s3_event_training.py")
    (asset,) = dag.timetable.asset_condition.objects
    (watcher,) = asset.watchers
    classpath, kwargs = watcher.trigger.serialize()
    assert classpath == "mlops_airflow.sensors.triggers.messaging.QueueEventTrigger" and kwargs["scheme"] == "sqs"
    # what the triggerer builds from it: common-messaging's trigger, routed to the Amazon SQS trigger
    classpath, kwargs = watcher.trigger.trigger.serialize()
    assert classpath == "airflow.providers.amazon.aws.triggers.sqs.SqsSensorTrigger"
    assert kwargs["sqs_queue"].startswith("https://sqs.") and kwargs["message_filtering"] == "jsonpath"
    assert DagSerialization.serialize_dag(dag)["tasks"]  # the DAG processor can store it
    assert [task.task_id for task in dag.tasks] == ["validate"]


def test_the_scheduled_ct_dag_does_not_also_trigger_asset_training() -> None:
    # Its own run trains on what it validated; an Asset event would start a second training of the same data.
    assert load_dag("mlops_continuous_training.py").get_task("validate").outlets == []
    assert load_dag("mlops_new_data.py").get_task("validate").outlets != []
