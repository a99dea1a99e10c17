"""Bearer-token auth, the body size limit and the request id, in front of a real app and registry."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import pytest
from fastapi.testclient import TestClient

from mlops_airflow.serving.app import create_app

if TYPE_CHECKING:
    from collections.abc import Iterator

GOOD = {"hour": 7, "passengers": 2, "fare": 12.5, "payment_type": "card"}
TOKEN = "s3cr3t-token-value"


@pytest.fixture
def served(models: Any) -> Any:
    models.register()
    models.promote(1)
    return models


def ready(client: TestClient) -> bool:
    return client.get("/ready").status_code == 200


@pytest.fixture
def client(served: Any, eventually: Any) -> Iterator[TestClient]:
    app = create_app(served.registry, "taxi", poll_interval=0.02, token=TOKEN, max_body_bytes=4096)
    with TestClient(app) as test_client:
        eventually(lambda: ready(test_client))
        yield test_client


def test_probes_are_open_everything_else_needs_the_token(client: TestClient) -> None:
    assert client.get("/health").status_code == 200
    assert client.get("/ready").status_code == 200
    for method, path in [("post", "/predict"), ("get", "/metadata"), ("get", "/metrics"), ("get", "/nowhere")]:
        response = getattr(client, method)(path)
        assert response.status_code == 401, path
        assert response.headers["www-authenticate"] == 'Bearer realm="mlops-airflow"'
        assert "bearer token" in response.json()["detail"]
    wrong = client.post("/predict", json={"row": GOOD}, headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401
    assert wrong.headers["www-authenticate"] == 'Bearer realm="mlops-airflow", error="invalid_token"'
    assert TOKEN not in wrong.text
    basic = client.get("/metadata", headers={"Authorization": f"Basic {TOKEN}"})
    assert basic.status_code == 401

    auth = {"Authorization": f"Bearer {TOKEN}"}
    assert client.post("/predict", json={"row": GOOD}, headers=auth).status_code == 200
    assert client.get("/metadata", headers=auth).status_code == 200
    metrics = client.get("/metrics", headers=auth).text
    assert 'mlops_request_errors_total{kind="auth"} 6.0' in metrics


def test_open_probes_say_only_ready_and_the_version_without_the_token(client: TestClient) -> None:
    assert client.get("/ready").json() == {"status": "ready", "version": 1}
    assert client.get("/ready", headers={"Authorization": "Bearer nope"}).json() == {"status": "ready", "version": 1}
    detailed = client.get("/ready", headers={"Authorization": f"Bearer {TOKEN}"}).json()
    assert (detailed["model_name"], detailed["version"], detailed["pinned"]) == ("taxi", 1, False)
    assert {"sha256", "last_error", "worker_pid"} <= detailed.keys()
    assert client.get("/v2/health/ready").json() == {"ready": True}
    for path in ("/models/taxi/ready", "/v2/models/taxi/ready"):  # per model: never open
        assert client.get(path).status_code == 401


def test_a_refused_model_keeps_its_reason_and_registry_from_open_probes(models: Any, eventually: Any) -> None:
    models.register()
    app = create_app(models.registry, "taxi", poll_interval=0.02, version=1, expect_sha256="ab" * 32, token=TOKEN)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    with TestClient(app) as client:
        eventually(lambda: client.get("/ready", headers=auth).json()["status"] == "failed")
        refused = client.get("/ready")
        assert refused.status_code == 503
        assert refused.json() == {"status": "not ready", "version": 1}
        detailed = client.get("/ready", headers=auth)
        assert detailed.status_code == 503 and "sha256" in detailed.json()["reason"]


def test_a_many_model_server_says_only_that_it_is_ready_without_the_token(served: Any) -> None:
    with TestClient(create_app(served.registry, poll_interval=0.02, token=TOKEN)) as client:
        assert client.get("/ready").json() == {"status": "ready"}
        detailed = client.get("/ready", headers={"Authorization": f"Bearer {TOKEN}"}).json()
        assert {"models_loaded", "worker_pid"} <= detailed.keys()


def test_the_token_never_reaches_the_logs(client: TestClient, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG):
        client.post("/predict", json={"row": GOOD}, headers={"Authorization": f"Bearer {TOKEN}x"})
        client.post("/predict", json={"row": GOOD}, headers={"Authorization": f"Bearer {TOKEN}"})
    assert TOKEN not in caplog.text
    assert TOKEN not in repr(client.app.middleware_stack)  # type: ignore[attr-defined]


def test_public_metrics_opens_only_metrics(served: Any, eventually: Any) -> None:
    app = create_app(served.registry, "taxi", poll_interval=0.02, token=TOKEN, public_metrics=True)
    with TestClient(app) as client:
        eventually(lambda: ready(client))
        assert client.get("/metrics").status_code == 200
        assert client.get("/metadata").status_code == 401


def test_without_a_token_nothing_needs_one(served: Any, eventually: Any) -> None:
    with TestClient(create_app(served.registry, "taxi", poll_interval=0.02)) as client:
        eventually(lambda: ready(client))
        assert client.post("/predict", json={"row": GOOD}).status_code == 200


def test_a_declared_length_over_the_limit_is_refused_before_reading(client: TestClient) -> None:
    auth = {"Authorization": f"Bearer {TOKEN}"}
    response = client.post("/predict", json={"rows": [GOOD] * 100}, headers=auth)
    assert response.status_code == 413
    assert response.json() == {"detail": "request body is larger than the limit of 4096 bytes"}
    metrics = client.get("/metrics", headers=auth).text
    assert 'mlops_request_errors_total{kind="too_large"} 1.0' in metrics
    assert 'mlops_requests_total{endpoint="/predict",status="413"} 1.0' in metrics


def test_a_chunked_body_is_cut_off_while_it_is_read(client: TestClient) -> None:
    sent: list[int] = []

    def chunks() -> Iterator[bytes]:
        for index in range(1000):  # 1 MB if it were all read
            sent.append(index)
            yield b" " * 1024

    auth = {"Authorization": f"Bearer {TOKEN}", "content-type": "application/json"}
    response = client.post("/predict", content=chunks(), headers=auth)
    assert response.status_code == 413
    assert "content-length" not in response.request.headers  # really chunked
    # within the limit the same route works
    small = client.post("/predict", content=iter([b'{"row": ', b'{"hour": 7, "passengers": 2, ',
                                                  b'"fare": 12.5, "payment_type": "card"}}']), headers=auth)
    assert small.status_code == 200, small.text


def test_the_request_id_is_echoed_or_made(client: TestClient) -> None:
    auth = {"Authorization": f"Bearer {TOKEN}"}
    given = client.post("/predict", json={"row": GOOD}, headers={**auth, "X-Request-ID": "abc-123"})
    assert given.headers["x-request-id"] == "abc-123"
    made = client.post("/predict", json={"row": GOOD}, headers={**auth, "X-Request-ID": "bad id\twith spaces"})
    assert len(made.headers["x-request-id"]) == 32 and made.headers["x-request-id"] != "bad id\twith spaces"
