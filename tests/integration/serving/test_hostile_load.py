"""A real server process while one client sends it the worst bodies it can: everyone else is still answered."""

from __future__ import annotations

import json
import threading
import time
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from testsupport import candidate_fields, eventually

from mlops_airflow.persistence import dump_model
from mlops_airflow.registry.registry import ModelRegistry
from mlops_airflow.storage import open_store

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.integration

ROW = {"hour": 9, "payment_type": "card"}
#: Generous for a quiet machine, yet far below what the worst bodies used to hold a worker
#: (a 62 KB body froze /health for a second; 40,000 names took 30 s of CPU).
HEALTH_BOUND = 2.0
#: On a busy machine the bound scales with how long this machine takes, now, to decode the
#: costliest body with ``json.loads``: the server must not hold /health much longer than that.
DECODES = 5


def decode_time(bodies: list[tuple[bytes, str]]) -> float:
    """The longest ``json.loads`` of one of ``bodies`` here and now: the machine's current speed."""
    longest = 0.0
    for body, _says in bodies:
        started = time.perf_counter()
        json.loads(body)
        longest = max(longest, time.perf_counter() - started)
    return longest


def worst_bodies() -> list[tuple[bytes, str]]:
    """The costliest bodies under the 10 MiB limit, by kind, and what the answer must say.

    A million names, 2.6 million rows, records of a thousand unknown names each.
    """
    limit = 10 * 1024 * 1024 - 4096
    names = b'{"data":[[1]],"columns":[' + b",".join(b'"c%d"' % i for i in range(900_000)) + b"]}"
    rows = b'{"columns":["hour"],"data":[' + b",".join([b"[1]"] * (limit // 4 - 20)) + b"]}"
    records, size, j = [], 0, 0
    while size < limit - 20_000:
        records.append(json.dumps({f"u{j}_{i}": 1 for i in range(1000)}).encode())
        size += len(records[-1]) + 1
        j += 1
    return [(names, 'too many columns: \\"columns\\" names 900000, more than the limit of 2048'),
            (rows, f"too many rows: {limit // 4 - 20} > the limit of 10000"),
            (b'{"rows":[' + b",".join(records) + b"]}", 'unknown column \\"u0_0\\"')]


def test_health_and_other_clients_are_answered_while_one_client_sends_the_worst_bodies(
    tmp_path: Path, server_factory: Any, trained: Any
) -> None:
    pipeline, schema, _frame = trained
    registry_uri = str(tmp_path / "registry")
    registry = ModelRegistry(open_store(registry_uri))
    record = registry.put_artifact("taxi", dump_model(pipeline), candidate_fields(feature_schema=schema))
    registry.register("taxi", record, idempotency_key="hostile/register")
    registry.set_alias("taxi", "champion", 1, expected=None, by="test", reason="first")
    server = server_factory(registry_uri, "taxi")
    server.wait_healthy()
    eventually(lambda: httpx.get(f"{server.url}/ready", timeout=60).status_code == 200, 60, what="the model to load")

    bodies = worst_bodies()
    bound = max(HEALTH_BOUND, DECODES * decode_time(bodies))
    answered: list[tuple[int, bool]] = []
    done = threading.Event()

    def hostile() -> None:
        with httpx.Client(timeout=120, headers={"content-type": "application/json"}) as client:
            while not done.is_set():
                for body, says in bodies:
                    answer = client.post(f"{server.url}/predict", content=body)
                    answered.append((answer.status_code, says in answer.text))

    sender = threading.Thread(target=hostile, daemon=True)
    sender.start()
    health: list[float] = []
    predictions: list[int] = []
    deadline = time.monotonic() + 300
    try:
        with httpx.Client(timeout=30) as probe, httpx.Client(timeout=30) as other:
            # until every hostile kind was answered twice (the last one may still be in flight)
            while len(answered) < 2 * len(bodies) and time.monotonic() < deadline:
                started = time.perf_counter()
                assert probe.get(f"{server.url}/health").status_code == 200
                health.append(time.perf_counter() - started)
                predictions.append(other.post(f"{server.url}/predict", json={"row": ROW}).status_code)
    finally:
        done.set()
        sender.join(timeout=120)
    assert len(answered) >= 2 * len(bodies), "the hostile client was not answered in time"
    assert set(answered) == {(422, True)}, answered
    assert set(predictions) == {200} and len(predictions) >= 10
    assert max(health) < max(bound, DECODES * decode_time(bodies)), (sorted(health)[-5:], bound)
