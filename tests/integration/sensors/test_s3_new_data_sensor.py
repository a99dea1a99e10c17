"""S3NewDataSensor and its trigger against a real S3 server (moto over HTTP) and a real metadata DB."""

from __future__ import annotations

import asyncio
import json
from types import SimpleNamespace
from typing import Any

import pytest

from mlops_airflow.sensors.triggers.s3 import S3NewDataTrigger

pytestmark = pytest.mark.integration


@pytest.fixture
def s3_conn(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """The mlops_s3 Airflow connection, pointing at the test S3 server (as a user would set it)."""
    monkeypatch.setenv("AIRFLOW_CONN_MLOPS_S3", json.dumps(
        {"conn_type": "mlops_s3", "login": "testing", "password": "testing",
         "extra": {"endpoint_url": s3_endpoint, "region_name": "us-east-1"}}))
    return "mlops_s3"


def make_trigger(bucket: str, registry_uri: str, **overrides: Any) -> S3NewDataTrigger:
    kwargs: dict[str, Any] = {"prefix_uri": f"s3://{bucket}/landing", "pattern": "*.csv", "registry_uri": registry_uri,
                              "state_key": "trips", "lookback_seconds": 3600.0, "poke_interval": 0.05}
    return S3NewDataTrigger(**{**kwargs, **overrides})


async def first_event(trigger: S3NewDataTrigger) -> Any:
    return await asyncio.wait_for(anext(trigger.run()), timeout=60)


def test_serialize_round_trips(registry_uri: str) -> None:
    trigger = make_trigger("b", registry_uri, conn_id="other")
    classpath, kwargs = trigger.serialize()
    assert classpath == "mlops_airflow.sensors.triggers.s3.S3NewDataTrigger"
    json.dumps(kwargs)  # plain values only: the triggerer stores them in the metadata DB
    assert S3NewDataTrigger(**kwargs).serialize() == (classpath, kwargs)


def test_objects_present_fire_an_event_with_their_uris(s3_client: Any, s3_bucket: str, s3_conn: str,
                                                      registry_uri: str) -> None:
    s3_client.put_object(Bucket=s3_bucket, Key="landing/2026/a.csv", Body=b"x,y\n1,2\n")
    s3_client.put_object(Bucket=s3_bucket, Key="landing/2026/_SUCCESS", Body=b"")
    s3_client.put_object(Bucket=s3_bucket, Key="other/b.csv", Body=b"x\n1\n")
    event = asyncio.run(first_event(make_trigger(s3_bucket, registry_uri)))
    assert event.payload["status"] == "success"
    assert [o["uri"] for o in event.payload["objects"]] == [f"s3://{s3_bucket}/landing/2026/a.csv"]


def test_nothing_new_keeps_waiting_until_an_object_lands(s3_client: Any, s3_bucket: str, s3_conn: str,
                                                         registry_uri: str, monkeypatch: pytest.MonkeyPatch) -> None:
    polls: list[int] = []
    real_poll = S3NewDataTrigger._poll

    def counting_poll(self: S3NewDataTrigger, client: Any) -> list[dict[str, Any]]:
        found = real_poll(self, client)
        polls.append(len(found))
        return found

    monkeypatch.setattr(S3NewDataTrigger, "_poll", counting_poll)

    async def scenario() -> Any:
        task = asyncio.ensure_future(first_event(make_trigger(s3_bucket, registry_uri)))
        while len(polls) < 3:
            await asyncio.sleep(0.02)
        assert not task.done(), "the trigger fired with nothing new"
        await asyncio.to_thread(s3_client.put_object, Bucket=s3_bucket, Key="landing/new.csv", Body=b"x\n1\n")
        return await task

    event = asyncio.run(scenario())
    assert polls[:3] == [0, 0, 0]
    assert [o["key"] for o in event.payload["objects"]] == ["new.csv"]


def test_a_failure_becomes_an_error_event(s3_conn: str, registry_uri: str) -> None:
    event = asyncio.run(first_event(make_trigger("no-such-bucket-here", registry_uri)))
    assert event.payload["status"] == "error"
    assert "NoSuchBucket" in event.payload["message"] and "no-such-bucket-here" in event.payload["message"]


def fake_context(run_id: str = "manual__1") -> dict[str, Any]:
    return {"ti": SimpleNamespace(dag_id="d", task_id="wait", run_id=run_id, map_index=-1, try_number=1)}


def test_poke_mode_claims_new_objects_once_and_keeps_its_watermark_on_s3(
    s3_client: Any, s3_bucket: str, s3_conn: str
) -> None:
    from airflow.sdk.exceptions import AirflowSensorTimeout

    from mlops_airflow.data.arrivals import ArrivalTracker
    from mlops_airflow.sensors.s3 import S3NewDataSensor
    from mlops_airflow.storage import open_store

    registry_uri = f"s3://{s3_bucket}/registry"  # the watermark lives beside the models, on S3 here
    s3_client.put_object(Bucket=s3_bucket, Key="landing/a.csv", Body=b"x\n1\n")

    def sensor(timeout: float) -> S3NewDataSensor:
        return S3NewDataSensor(task_id="wait", prefix_uri=f"s3://{s3_bucket}/landing", pattern="*.csv",
                               registry_uri=registry_uri, deferrable=False, poke_interval=0.05, timeout=timeout)

    result = sensor(30).execute(fake_context("run1"))
    assert result["uris"] == [f"s3://{s3_bucket}/landing/a.csv"] and result["count"] == 1
    assert result["state_key"] == "d.wait" and result["claim"] == "d/run1/wait/-1"
    assert sensor(30).execute(fake_context("run1"))["uris"] == result["uris"]  # a retry: the same objects
    with pytest.raises(AirflowSensorTimeout):  # a new run: nothing new, so nothing handed on
        sensor(0.3).execute(fake_context("run2"))
    state = ArrivalTracker(open_store(registry_uri, s3_client=s3_client), "d.wait").state()
    assert set(state["seen"]) == {"a.csv"} and state["source"] == f"s3://{s3_bucket}/landing"


def test_deferrable_mode_defers_with_a_plain_trigger_and_fails_on_an_error_event(
    s3_bucket: str, s3_conn: str, registry_uri: str
) -> None:
    from airflow.sdk.exceptions import AirflowException, TaskDeferred

    from mlops_airflow.sensors.s3 import S3NewDataSensor

    sensor = S3NewDataSensor(task_id="wait", prefix_uri=f"s3://{s3_bucket}/empty", poke_interval=5)
    with pytest.raises(TaskDeferred) as deferred:
        sensor.execute(fake_context())
    assert deferred.value.method_name == "execute_complete"
    classpath, kwargs = deferred.value.trigger.serialize()
    assert classpath.endswith("S3NewDataTrigger") and kwargs["state_key"] == "d.wait"
    assert kwargs["registry_uri"] == registry_uri and kwargs["poke_interval"] == 5
    with pytest.raises(AirflowException, match="NoSuchBucket: boom"):
        sensor.execute_complete(fake_context(), {"status": "error", "message": "NoSuchBucket: boom"})


def test_conflicting_arguments_are_rejected() -> None:
    from mlops_airflow.sensors.s3 import S3NewDataSensor

    with pytest.raises(ValueError, match="mode='reschedule' and deferrable=True conflict"):
        S3NewDataSensor(task_id="w", prefix_uri="s3://b/p", mode="reschedule")
    with pytest.raises(ValueError, match="commit must be one of"):
        S3NewDataSensor(task_id="w", prefix_uri="s3://b/p", commit="sometimes")  # type: ignore[arg-type]
