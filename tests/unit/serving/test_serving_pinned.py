"""Pinned mode (what a Kubernetes Deployment runs): exactly one version, checked against its sha256."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from mlops_airflow.serving.app import create_app

GOOD = {"hour": 7, "passengers": 2, "fare": 12.5, "payment_type": "card"}


def test_a_pinned_server_serves_its_version_and_ignores_the_alias(models: Any, eventually: Any) -> None:
    first = models.register()
    models.register()
    models.promote(2)
    app = create_app(models.registry, "taxi", poll_interval=0.02, version=1, expect_sha256=first["sha256"])
    with TestClient(app) as client:
        ready = eventually(lambda: client.get("/ready").status_code == 200 and client.get("/ready").json())
        assert ready["version"] == 1 and ready["sha256"] == first["sha256"]
        assert ready["pinned"] is True and ready["alias"] is None
        meta = client.get("/metadata").json()
        assert (meta["version"], meta["sha256"], meta["pinned"], meta["alias"]) == (1, first["sha256"], True, None)
        models.register()
        models.promote(3)
        reads = []
        original = models.registry.get_alias
        models.registry.get_alias = lambda *a: reads.append(a) or original(*a)  # type: ignore[method-assign]
        app.state.slot.poll_once()
        assert reads == []  # pinned: the alias is never even read
        assert client.post("/predict", json={"row": GOOD}).json()["version"] == 1
        assert 'mlops_model_info{alias="",model_name="taxi",sha256="' + first["sha256"] + '",version="1"} 1.0' in (
            client.get("/metrics").text
        )


def test_a_sha256_mismatch_refuses_to_serve_with_the_reason(models: Any, eventually: Any) -> None:
    first = models.register()
    app = create_app(models.registry, "taxi", poll_interval=0.02, version=1, expect_sha256="ab" * 32)
    with TestClient(app) as client:
        eventually(lambda: client.get("/ready").json()["status"] == "failed")
        ready = client.get("/ready")
        assert ready.status_code == 503
        body = ready.json()
        assert body["version"] == 1 and body["sha256"] == "ab" * 32 and body["refused_version"] == 1
        assert body["reason"] == (
            f"refused version 1: taxi version 1 has sha256 {first['sha256'][:12]}…, but abababababab… was expected: "
            "refusing to serve another model than the one deployed"
        )
        predict = client.post("/predict", json={"row": GOOD})
        assert predict.status_code == 503 and "was expected" in predict.json()["detail"]["reason"]
        assert "mlops_model_refusals_total 1.0" in client.get("/metrics").text


def test_a_pinned_tampered_artifact_is_refused(models: Any, eventually: Any) -> None:
    manifest = models.register()
    models.artifact_path(manifest).write_bytes(b"tampered")
    app = create_app(models.registry, "taxi", poll_interval=0.02, version=1, expect_sha256=manifest["sha256"])
    with TestClient(app) as client:
        eventually(lambda: client.get("/ready").json()["status"] == "failed")
        assert "checksum mismatch" in client.get("/ready").json()["reason"]


def test_a_missing_pinned_version_is_refused(models: Any, eventually: Any) -> None:
    app = create_app(models.registry, "taxi", poll_interval=0.02, version=7)
    with TestClient(app) as client:
        eventually(lambda: client.get("/ready").json()["status"] == "failed")
        body = client.get("/ready").json()
        assert body["reason"].startswith("refused version 7:") and body["version"] == 7
