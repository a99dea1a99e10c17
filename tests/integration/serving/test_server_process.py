"""The model server as a real process over real HTTP: waits for the alias, then serves and deploys."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest
from testsupport import candidate_fields

from mlops_airflow.deploy.local import LocalServerTarget
from mlops_airflow.exceptions import DeployError
from mlops_airflow.persistence import dump_model
from mlops_airflow.registry.registry import ModelRegistry
from mlops_airflow.storage import open_store

pytestmark = pytest.mark.integration


def register(registry: ModelRegistry, model: Any, schema: dict[str, Any], run: str) -> dict[str, Any]:
    candidate = candidate_fields(feature_schema=schema)
    record = registry.put_artifact("taxi", dump_model(model), candidate)
    return registry.register("taxi", record, idempotency_key=f"it/{run}/register/-1")


def test_serve_waits_for_the_alias_then_serves_over_http(
    tmp_path: Any, server_factory: Any, trained: Any
) -> None:
    registry_uri = str(tmp_path / "registry")
    server = server_factory(registry_uri, "taxi")
    server.wait_healthy()

    # started before any model exists: alive, not ready, and saying why
    ready = httpx.get(f"{server.url}/ready", timeout=60)
    assert ready.status_code == 503, server.log()
    assert "the alias taxi@champion does not exist yet" in ready.json()["reason"]
    assert httpx.post(f"{server.url}/predict", json={"row": {"hour": 1}}, timeout=60).status_code == 503

    pipeline, schema, frame = trained
    registry = ModelRegistry(open_store(registry_uri))
    manifest = register(registry, pipeline, schema, "run-1")
    registry.set_alias(
        "taxi", "champion", manifest["version"], expected=None, by="test", reason="first model"
    )

    with LocalServerTarget(server.url, timeout=30, poll=0.1) as target:
        meta = target.wait_for_version("taxi", 1, manifest["sha256"])
        assert meta["sha256"] == manifest["sha256"] and meta["feature_schema"] == schema
        answer = target.predict(frame[["hour", "payment_type"]].head(4).to_dict(orient="records"))
    assert answer["version"] == 1
    assert answer["predictions"] == pipeline.predict(frame[["hour", "payment_type"]].head(4)).tolist()
    assert len(answer["probabilities"]) == 4 and answer["classes"] == [0, 1]

    ready = httpx.get(f"{server.url}/ready", timeout=60)
    assert ready.status_code == 200 and ready.json()["version"] == 1

    rejected = httpx.post(
        f"{server.url}/predict",
        json={"rows": [{"hour": 77, "payment_type": "card"}, {"hour": "x"}]},
        timeout=60,
    )
    assert rejected.status_code == 422
    assert rejected.json()["detail"]["errors"] == [
        'rows[1]: missing column "payment_type"',
        "rows[0].hour=77 is outside [0, 23]",
        'rows[1].hour: expected number, got "x"',
    ]


def test_the_server_follows_promotions_and_refuses_a_tampered_one(
    tmp_path: Any, server_factory: Any, trained: Any
) -> None:
    pipeline, schema, frame = trained
    registry_uri = str(tmp_path / "registry")
    registry = ModelRegistry(open_store(registry_uri))
    first = register(registry, pipeline, schema, "run-1")
    registry.set_alias("taxi", "champion", 1, expected=None, by="test", reason="first")

    server = server_factory(registry_uri, "taxi")
    server.wait_healthy()
    target = LocalServerTarget(server.url, timeout=30, poll=0.1)
    target.wait_for_version("taxi", 1, first["sha256"])

    second = register(registry, pipeline.set_params(clf__C=0.1), schema, "run-2")
    registry.set_alias("taxi", "champion", 2, expected=1, by="test", reason="promote")
    assert target.wait_for_version("taxi", 2, second["sha256"])["version"] == 2

    third = register(registry, pipeline.set_params(clf__C=0.01), schema, "run-3")
    (tmp_path / "registry" / registry.artifact_key("taxi", third["sha256"])).write_bytes(b"tampered")
    registry.set_alias("taxi", "champion", 3, expected=2, by="test", reason="promote")
    started = time.monotonic()
    with pytest.raises(DeployError, match="refused taxi version 3: .*checksum mismatch"):
        target.wait_for_version("taxi", 3, third["sha256"])
    assert time.monotonic() - started < 10  # it fails as soon as the server refuses, not at the timeout
    assert target.predict([{"hour": 9, "payment_type": "card"}])["version"] == 2
    target.close()

    server.stop()
    # uvicorn shuts down gracefully on SIGTERM (lifespan stops the loader), then re-raises the signal
    assert server.process.returncode in (0, -15), server.log()
    log = server.log()
    assert "Application shutdown complete." in log and "Traceback" not in log
    assert "now serving taxi version 2" in log
