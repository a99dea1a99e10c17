"""Prediction logs: sampled, buffered, flushed off the request path, partitioned, and read back."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient

from mlops_airflow.exceptions import StorageError
from mlops_airflow.serving.app import create_app
from mlops_airflow.serving.logs import (
    META_COLUMNS,
    PredictionLogger,
    log_partitions,
    logged_models,
    read_prediction_logs,
)
from mlops_airflow.serving.metrics import ServerMetrics
from mlops_airflow.storage import open_store
from mlops_airflow.storage.local import LocalStore

GOOD = {"hour": 7, "passengers": 2, "fare": 12.5, "payment_type": "card"}


def columns(rows: list[dict[str, Any]]) -> dict[str, list[Any]]:
    return {name: [row[name] for row in rows] for name in rows[0]}


def offer(logger: PredictionLogger, n: int = 2, version: int = 1, request_id: str = "r1") -> bool:
    return logger.offer(version=version, request_id=request_id, values=columns([GOOD] * n), predictions=[1] * n,
                        probabilities=[[0.25, 0.75]] * n, classes=[0, 1])


def test_records_are_partitioned_by_date_and_version_and_read_back(tmp_path: Any) -> None:
    store = open_store(str(tmp_path / "logs"))
    logger = PredictionLogger(store, "taxi", sample_rate=1.0, worker_id="w1")
    assert offer(logger, 2, version=1, request_id="a")
    assert offer(logger, 1, version=2, request_id="b")
    assert logger.flush() == 3
    keys = store.list("predictions/taxi")
    today = datetime.now(UTC).date().isoformat()
    assert len(keys) == 2
    assert keys[0].startswith(f"predictions/taxi/date={today}/version=1/") and keys[0].endswith(".jsonl")
    assert "-w1-" in keys[0] and keys[1].startswith(f"predictions/taxi/date={today}/version=2/")
    first = json.loads(store.read_bytes(keys[0]).decode().splitlines()[0])
    assert set(first) == {"ts", "model_name", "version", "request_id", "row", "features", "prediction",
                          "probabilities"}
    assert first["features"] == GOOD and first["probabilities"] == {"0": 0.25, "1": 0.75}

    logs = read_prediction_logs(str(tmp_path / "logs"), "taxi")
    assert list(logs.columns) == ["hour", "passengers", "fare", "payment_type", *META_COLUMNS, "_proba_0", "_proba_1"]
    assert logs["_request_id"].tolist() == ["a", "a", "b"] and logs["_row"].tolist() == [0, 1, 0]
    assert logs["_version"].tolist() == [1, 1, 2] and str(logs["_ts"].dt.tz) == "UTC"
    assert read_prediction_logs(store, "taxi", version=2)["_request_id"].tolist() == ["b"]
    assert read_prediction_logs(store, "other").empty


def test_since_and_until_select_by_timestamp_and_skip_other_days(tmp_path: Any) -> None:
    store = open_store(str(tmp_path))
    for day, stamps in {"2026-01-01": ["2026-01-01T23:59:59+00:00"],
                        "2026-01-02": ["2026-01-02T00:00:00+00:00", "2026-01-02T12:00:00+00:00"]}.items():
        lines = [json.dumps({"ts": ts, "model_name": "taxi", "version": 1, "request_id": ts, "row": 0,
                             "features": {"hour": 1}, "prediction": 0}) for ts in stamps]
        store.write_bytes(f"predictions/taxi/date={day}/version=1/x.jsonl", "\n".join(lines).encode())
    store.write_bytes("predictions/taxi/date=2026-01-03/version=1/broken.jsonl", b"not json")  # never read
    got = read_prediction_logs(store, "taxi", since="2026-01-01T12:00:00", until=datetime(2026, 1, 2, 12))
    assert got["_request_id"].tolist() == ["2026-01-01T23:59:59+00:00", "2026-01-02T00:00:00+00:00"]
    assert read_prediction_logs(store, "taxi", since=datetime(2026, 1, 2, 6).date(),
                                until="2026-01-03")["_request_id"].tolist() == [
        "2026-01-02T00:00:00+00:00", "2026-01-02T12:00:00+00:00"]


class ListingStore(LocalStore):
    """A local store that records what is listed: the window must never cost a listing of every log file."""

    def __init__(self, root: Any) -> None:
        super().__init__(root)
        self.listed: list[str] = []

    def list(self, prefix: str = "") -> list[str]:
        self.listed.append(prefix)
        return super().list(prefix)

    def list_dir(self, folder: str = "", *, starts_with: str = "") -> tuple[list[str], list[str]]:
        self.listed.append(f"folders:{folder}")
        return super().list_dir(folder, starts_with=starts_with)


def test_a_window_lists_only_its_partitions_and_finds_the_models_that_logged(tmp_path: Any) -> None:
    store = ListingStore(tmp_path)
    line = json.dumps({"ts": "2026-01-10T08:00:00+00:00", "model_name": "m", "version": 2, "request_id": "r",
                       "row": 0, "features": {"hour": 1}, "prediction": 0})
    for model, days in {"trips_a": ["2026-01-01", "2026-01-10"], "trips_b": ["2026-01-10"],
                        "trips_old": ["2026-01-01"], "churn": ["2026-01-10"]}.items():
        for day in days:
            for version in (2, 3):
                store.write_bytes(f"predictions/{model}/date={day}/version={version}/x.jsonl", line.encode())
    since, until = datetime(2026, 1, 10, tzinfo=UTC), datetime(2026, 1, 11, tzinfo=UTC)

    assert logged_models(store, since, until, patterns=["trips_*"]) == ["trips_a", "trips_b"]
    assert logged_models(store, since, until) == ["churn", "trips_a", "trips_b"]
    assert store.listed and all(entry.startswith("folders:") for entry in store.listed)  # folders, never files

    store.listed.clear()
    rows = read_prediction_logs(store, "trips_a", since, until, version=2)
    assert len(rows) == 1 and rows["_version"].tolist() == [2]
    assert store.listed == ["folders:predictions/trips_a", "predictions/trips_a/date=2026-01-10/version=2"]
    assert log_partitions(store, "trips_a") == ["predictions/trips_a/date=2026-01-01",
                                                "predictions/trips_a/date=2026-01-10"]


def test_sampling_rate_zero_logs_nothing_and_a_fraction_logs_about_that_fraction(tmp_path: Any) -> None:
    store = open_store(str(tmp_path))
    off = PredictionLogger(store, "taxi", sample_rate=0.0)
    assert not any(offer(off) for _ in range(200))
    some = PredictionLogger(store, "taxi", sample_rate=0.3)
    taken = sum(offer(some, 1) for _ in range(2000))
    assert 450 < taken < 750
    with pytest.raises(ValueError, match="sample_rate"):
        PredictionLogger(store, "taxi", sample_rate=2)


class FailingStore:
    """A store whose writes fail (a full disk, an S3 outage): the logger must shrug it off."""

    uri = "failing://"

    def __init__(self) -> None:
        self.attempts = 0

    def write_bytes(self, key: str, data: bytes) -> None:
        self.attempts += 1
        raise StorageError("the bucket is gone")

    def url(self, key: str) -> str:
        return f"failing://{key}"


def test_a_storage_failure_drops_the_batch_counts_it_and_never_raises(caplog: pytest.LogCaptureFixture) -> None:
    metrics = ServerMetrics()
    store = FailingStore()
    logger = PredictionLogger(store, "taxi", sample_rate=1.0, metrics=metrics)  # type: ignore[arg-type]
    offer(logger, 3)
    assert logger.flush() == 0
    offer(logger, 2)
    assert logger.flush() == 0
    assert store.attempts == 2
    assert metrics.log_rows.labels("failed")._value.get() == 5
    assert caplog.text.count("the bucket is gone") == 1  # logged once while it keeps failing


def test_a_full_buffer_drops_and_counts(tmp_path: Any) -> None:
    metrics = ServerMetrics()
    logger = PredictionLogger(open_store(str(tmp_path)), "taxi", sample_rate=1.0, max_buffered_rows=3,
                              metrics=metrics)
    assert offer(logger, 2) and not offer(logger, 2)
    assert metrics.log_rows.labels("dropped")._value.get() == 2
    assert logger.flush() == 2


def test_the_thread_flushes_by_size_and_at_stop(tmp_path: Any) -> None:
    store = open_store(str(tmp_path))
    logger = PredictionLogger(store, "taxi", sample_rate=1.0, flush_rows=4, flush_seconds=3600)
    logger.start()
    try:
        offer(logger, 2)
        offer(logger, 2)  # reaches flush_rows: the thread wakes up long before flush_seconds
        from testsupport import eventually

        eventually(lambda: len(store.list("predictions")) == 1, timeout=10, what="a size-triggered flush")
        offer(logger, 1)
    finally:
        logger.stop()
    assert len(read_prediction_logs(store, "taxi")) == 5


def test_the_server_logs_sampled_requests_without_waiting_on_storage(models: Any, eventually: Any,
                                                                     tmp_path: Any) -> None:
    models.register()
    models.promote(1)
    store = open_store(str(tmp_path / "logs"))
    gate = threading.Event()

    class SlowStore:
        uri = store.uri

        def write_bytes(self, key: str, data: bytes) -> None:
            gate.wait(30)  # storage hangs until the requests below have all been answered
            store.write_bytes(key, data)

        def url(self, key: str) -> str:
            return store.url(key)

    logger = PredictionLogger(SlowStore(), "taxi", sample_rate=1.0, flush_rows=1)  # type: ignore[arg-type]
    app = create_app(models.registry, "taxi", poll_interval=0.02, prediction_logger=logger)
    with TestClient(app) as client:
        eventually(lambda: client.get("/ready").status_code == 200)
        ids = []
        for index in range(3):
            response = client.post("/predict", json={"rows": [GOOD, {**GOOD, "hour": index}]},
                                   headers={"X-Request-ID": f"req-{index}"})
            assert response.status_code == 200
            ids.append(response.headers["x-request-id"])
        assert client.post("/predict", json={"row": {**GOOD, "hour": 99}}).status_code == 422  # not logged
        gate.set()
    logs = read_prediction_logs(store, "taxi")
    assert sorted(set(logs["_request_id"])) == ids == ["req-0", "req-1", "req-2"]
    assert len(logs) == 6 and set(logs["_version"]) == {1}
    assert sorted(logs["hour"].tolist()) == [0, 1, 2, 7, 7, 7]
    assert {"_proba_0", "_proba_1"} <= set(logs.columns)
