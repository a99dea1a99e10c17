"""The model server app over a real registry on disk: waiting, serving, following, refusing."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import pytest
from fastapi.testclient import TestClient

from mlops_airflow.serving.app import create_app

if TYPE_CHECKING:
    from collections.abc import Iterator

GOOD = {"hour": 7, "passengers": 2, "fare": 12.5, "payment_type": "card"}


@pytest.fixture
def client(models: Any) -> Iterator[TestClient]:
    app = create_app(models.registry, models.name, poll_interval=0.02)
    with TestClient(app) as test_client:  # the context runs the lifespan: the loader thread
        yield test_client


@pytest.fixture
def serving(client: TestClient, models: Any, eventually: Any) -> TestClient:
    """``client`` once version 1 of the model is registered, promoted and served."""
    models.register()
    models.promote(1)
    eventually(lambda: ready_version(client) == 1)
    return client


def ready_version(client: TestClient) -> Any:
    response = client.get("/ready")
    return response.status_code == 200 and response.json()["version"]


def test_waits_with_503_until_the_alias_exists_then_serves(
    client: TestClient, models: Any, eventually: Any
) -> None:
    assert client.get("/health").json() == {"status": "alive"}
    waiting = client.get("/ready")
    assert waiting.status_code == 503
    assert waiting.json()["status"] == "waiting"
    assert "the alias taxi@champion does not exist yet" in waiting.json()["reason"]
    assert client.get("/metadata").status_code == 503
    predict = client.post("/predict", json={"row": GOOD})
    assert predict.status_code == 503
    assert "does not exist yet" in predict.json()["detail"]["reason"]

    manifest = models.register()
    models.promote(1)
    eventually(lambda: ready_version(client) == 1, what="version 1 to be served")

    ready = client.get("/ready").json()
    assert ready["status"] == "ready" and ready["last_error"] is None
    assert ready["sha256"] == manifest["sha256"]
    meta = client.get("/metadata").json()
    assert {
        key: meta[key] for key in ("model_name", "alias", "version", "sha256", "task_type", "classes")
    } == {
        "model_name": "taxi",
        "alias": "champion",
        "version": 1,
        "sha256": manifest["sha256"],
        "task_type": "binary",
        "classes": [0, 1],
    }
    assert meta["feature_schema"] == manifest["feature_schema"]
    assert meta["loaded_at"] and meta["load_warnings"] == []


@pytest.mark.usefixtures("serving")
def test_predict_answers_with_predictions_probabilities_and_warnings(client: TestClient) -> None:
    rows = [GOOD, {**GOOD, "hour": 3, "payment_type": "cash", "passengers": None}, {**GOOD, "fare": 99.0}]
    response = client.post("/predict", json={"rows": rows})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model_name"] == "taxi" and body["version"] == 1
    assert body["classes"] == [0, 1]
    assert len(body["predictions"]) == 3 and set(body["predictions"]) <= {0, 1}
    assert all(abs(sum(row) - 1) < 1e-9 for row in body["probabilities"])
    assert body["warnings"] == ["rows[2].fare=99 is outside the range seen in training [5, 23]"]

    columnar = {"columns": list(GOOD), "data": [list(GOOD.values())]}
    assert client.post("/predict", json=columnar).json()["predictions"] == body["predictions"][:1]
    assert client.post("/predict", json={"instances": rows}).json()["predictions"] == body["predictions"]


@pytest.mark.usefixtures("serving")
def test_probabilities_false_answers_labels_only_for_small_and_large_bodies(client: TestClient) -> None:
    many = [GOOD, {**GOOD, "hour": 3, "payment_type": "cash"}] * 1000  # over the inline size: predicted alone
    for rows in ([GOOD], many):
        full = client.post("/predict", json={"rows": rows}).json()
        labels = client.post("/predict?probabilities=false", json={"rows": rows})
        assert labels.status_code == 200, labels.text
        assert "probabilities" not in labels.json() and "classes" not in labels.json()
        assert labels.json()["predictions"] == full["predictions"] and "probabilities" in full
    wrong = client.post("/predict?probabilities=maybe", json={"row": GOOD})
    assert wrong.status_code == 422
    assert wrong.json()["detail"]["errors"] == ["probabilities: expected true or false, got 'maybe'"]
    # read as Starlette reads a query: percent-decoded, the last of repeated parameters wins
    encoded = client.post("/predict?probabilities=%46ALSE", json={"row": GOOD})
    assert encoded.status_code == 200 and "probabilities" not in encoded.json()
    repeated = client.post("/predict?probabilities=false&probabilities=true", json={"row": GOOD})
    assert repeated.status_code == 200 and "probabilities" in repeated.json()


@pytest.mark.usefixtures("serving")
def test_predict_takes_post_only(client: TestClient) -> None:
    for method in ("get", "put", "delete"):
        response = client.request(method.upper(), "/predict", json={"row": GOOD})
        assert response.status_code == 405, method
        assert response.headers["allow"] == "POST" and response.json() == {"detail": "Method Not Allowed"}
    assert client.get("/predict/elsewhere").status_code == 404
    assert client.post("/predict/", json={"row": GOOD}).status_code == 200  # Starlette redirected this to /predict
    post = client.get("/openapi.json").json()["paths"]["/predict"]["post"]  # /docs shows it, though no route answers it
    assert post["parameters"][0]["name"] == "probabilities" and "422" in post["responses"]


def test_a_root_path_set_by_a_proxy_is_not_part_of_the_routes(models: Any, registry: Any, eventually: Any) -> None:
    models.register()
    models.promote(1)
    app = create_app(registry, "taxi", poll_interval=0.02, token="t0ken")
    with TestClient(app, root_path="/api") as client:
        eventually(lambda: client.get("/api/ready").status_code == 200)  # a probe: open without the token
        auth = {"Authorization": "Bearer t0ken"}
        assert client.post("/api/predict", json={"row": GOOD}, headers=auth).status_code == 200
        assert client.get("/api/metadata", headers=auth).status_code == 200
        metrics = client.get("/api/metrics", headers=auth).text
    assert 'mlops_requests_total{endpoint="/predict",status="200"} 1.0' in metrics


@pytest.mark.usefixtures("serving")
def test_bad_requests_get_422_naming_every_field(client: TestClient) -> None:
    rows = [GOOD, {"hour": 77, "passengers": "two", "fare": 1.0, "payment_type": "bitcoin", "foo": 1}]
    response = client.post("/predict", json={"rows": rows})
    assert response.status_code == 422
    assert response.json() == {
        "detail": {
            "errors": [
                'rows[1]: unknown column "foo"',
                "rows[1].hour=77 is outside [0, 23]",
                'rows[1].passengers: expected number, got "two"',
                'rows[1].payment_type="bitcoin" is not one of [app, card, cash]',
            ],
            "warnings": ["rows[1].fare=1 is outside the range seen in training [5, 23]"],
        }
    }
    for body, message in [
        (b"{not json", "body is not valid JSON"),
        (b"[1, 2]", 'body must be a JSON object with "rows"'),
        (json.dumps({"rows": []}).encode(), '"rows" is empty'),
        (b'{"row": {"hour": NaN}}', "hour: null is not allowed"),
    ]:
        response = client.post("/predict", content=body, headers={"content-type": "application/json"})
        assert response.status_code == 422, body
        assert any(error.startswith(message) for error in response.json()["detail"]["errors"]), (
            response.json()
        )


def test_the_row_limit_is_configurable(models: Any, eventually: Any) -> None:
    models.register()
    models.promote(1)
    with TestClient(create_app(models.registry, "taxi", poll_interval=0.02, max_rows=2)) as client:
        eventually(lambda: ready_version(client) == 1)
        response = client.post("/predict", json={"rows": [GOOD] * 3})
    assert response.status_code == 422
    assert response.json()["detail"]["errors"] == ["too many rows: 3 > the limit of 2 per request"]


@pytest.mark.usefixtures("serving")
def test_follows_the_alias_without_restart(client: TestClient, models: Any, eventually: Any) -> None:
    second = models.register()
    models.promote(2)
    eventually(lambda: ready_version(client) == 2, what="version 2 to be served")
    assert client.get("/metadata").json()["sha256"] == second["sha256"]
    assert client.post("/predict", json={"row": GOOD}).json()["version"] == 2


@pytest.mark.usefixtures("serving")
def test_a_tampered_version_is_refused_and_the_old_one_keeps_serving(
    client: TestClient, models: Any, eventually: Any
) -> None:
    tampered = models.register()
    models.artifact_path(tampered).write_bytes(b"someone else's bytes")
    models.promote(2)

    def refused() -> Any:
        body = client.get("/ready").json()
        return body["refused_version"] == 2 and body

    ready = eventually(refused, what="version 2 to be refused")
    assert client.get("/ready").status_code == 200
    assert ready["version"] == 1
    assert ready["last_error"].startswith("refused version 2: taxi version 2: checksum mismatch")
    assert ready["last_error"].endswith("; still serving version 1")
    meta = client.get("/metadata").json()
    assert meta["version"] == 1 and meta["last_error"] == ready["last_error"] and meta["refused_version"] == 2
    assert client.post("/predict", json={"row": GOOD}).json()["version"] == 1

    # rolling the alias back to what is served clears the error
    models.promote(1)
    eventually(lambda: client.get("/ready").json()["last_error"] is None, what="the error to clear")
    assert client.get("/ready").json()["refused_version"] is None


def test_a_refused_first_version_leaves_the_server_not_ready(
    client: TestClient, models: Any, eventually: Any
) -> None:
    manifest = models.register()
    models.artifact_path(manifest).write_bytes(b"garbage")
    models.promote(1)
    eventually(lambda: client.get("/ready").json()["status"] == "failed", what="the load to fail")
    response = client.get("/ready")
    assert response.status_code == 503
    assert "checksum mismatch" in response.json()["reason"]
    assert client.get("/metadata").status_code == 503
    assert "checksum mismatch" in client.post("/predict", json={"row": GOOD}).json()["detail"]["last_error"]

    # a good version behind the alias is picked up
    models.register()
    models.promote(2)
    eventually(lambda: ready_version(client) == 2)
    assert client.get("/ready").json()["last_error"] is None


def test_a_refused_version_is_not_reloaded_on_every_poll(models: Any, monkeypatch: Any) -> None:
    app = create_app(models.registry, "taxi", poll_interval=3600)  # polled by hand below
    slot = app.state.slot
    manifest = models.register()
    models.artifact_path(manifest).write_bytes(b"garbage")
    models.promote(1)
    reads = []
    original = models.registry.read_artifact
    monkeypatch.setattr(models.registry, "read_artifact", lambda *a: reads.append(a) or original(*a))
    slot.poll_once()
    slot.poll_once()
    assert len(reads) == 1 and slot.refused_version == 1


def test_storage_errors_are_retried_and_reported(models: Any, monkeypatch: Any) -> None:
    from mlops_airflow.exceptions import StorageError

    app = create_app(models.registry, "taxi", poll_interval=3600)
    slot = app.state.slot
    models.register()
    models.promote(1)
    original = models.registry.read_artifact

    def flaky(*args: Any) -> bytes:
        raise StorageError("connection reset")

    monkeypatch.setattr(models.registry, "read_artifact", flaky)
    slot.poll_once()
    assert slot.current is None
    assert slot.status()["reason"] == ("could not load version 1, will retry: StorageError: connection reset")
    monkeypatch.setattr(models.registry, "read_artifact", original)
    slot.poll_once()
    assert slot.current.version == 1 and slot.last_error is None


def test_a_regressor_gets_predictions_without_probabilities(models: Any, eventually: Any) -> None:
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import Ridge
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder

    frame = models.frame
    pipeline = Pipeline(
        [
            ("pre", ColumnTransformer([("cat", OneHotEncoder(), ["payment_type"])], remainder="passthrough")),
            ("reg", Ridge()),
        ]
    ).fit(frame.drop(columns=["tipped"]).fillna({"passengers": 1}), frame["fare"])
    models.register(pipeline, task_type="regression", classes=None)
    models.promote(1)
    with TestClient(create_app(models.registry, "taxi", poll_interval=0.02)) as client:
        eventually(lambda: ready_version(client) == 1)
        body = client.post("/predict", json={"row": GOOD}).json()
    assert set(body) == {"model_name", "version", "predictions", "warnings"}
    assert isinstance(body["predictions"][0], float)


def test_input_the_model_itself_rejects_is_a_422_not_a_500(models: Any, eventually: Any) -> None:
    from sklearn.preprocessing import OneHotEncoder

    pipeline = models.fit()
    pipeline.set_params(pre__cat=OneHotEncoder(handle_unknown="error"))
    pipeline.fit(models.frame.drop(columns=["tipped"]), models.frame["tipped"])
    manifest = models.register(pipeline)
    # without a declared allowed set the server lets "voucher" through, with a warning
    assert manifest["feature_schema"]["columns"][3].pop("declared")
    models.registry.store.write_bytes("taxi/versions/1.json", json.dumps(manifest).encode())
    models.promote(1)
    with TestClient(create_app(models.registry, "taxi", poll_interval=0.02)) as client:
        eventually(lambda: ready_version(client) == 1)
        response = client.post("/predict", json={"row": {**GOOD, "payment_type": "voucher"}})
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert detail["errors"][0].startswith("the model rejected the rows: Found unknown categories")
    assert detail["warnings"] == ['payment_type="voucher" was not seen in training']
    metrics = client.get("/metrics").text
    assert 'mlops_request_errors_total{kind="model"} 1.0' in metrics  # as metrics.py documents the kinds
    assert 'mlops_request_errors_total{kind="validation"}' not in metrics


@pytest.mark.usefixtures("serving")
def test_a_lone_surrogate_in_a_value_is_answered_with_422_at_every_size(client: TestClient) -> None:
    for rows in (1, 31, 40, 300):  # row by row, the vectorised check, and predicted on the event loop
        body = json.dumps({"rows": [{**GOOD, "payment_type": "\ud800"}] * rows})  # json.loads accepts it
        response = client.post("/predict", content=body, headers={"content-type": "application/json"})
        assert response.status_code == 422, (rows, response.text[:300])
        assert response.json()["detail"]["errors"][0].endswith("is not one of [app, card, cash]")


def test_a_request_too_big_to_share_a_batch_is_predicted_where_it_was_parsed(
    models: Any, eventually: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pandas as pd

    from mlops_airflow.serving.predict import LoopBatcher, MicroBatcher

    queued: list[int] = []
    for batcher in (MicroBatcher, LoopBatcher):  # whichever batches this model's requests
        original = batcher.predict

        async def counting(self: Any, loaded: Any, parsed: Any, _original: Any = original, **kwargs: Any) -> Any:
            queued.append(parsed.rows)
            return await _original(self, loaded, parsed, **kwargs)

        monkeypatch.setattr(batcher, "predict", counting)
    models.register()
    models.promote(1)
    rows = [{**GOOD, "hour": hour % 24} for hour in range(300)]  # >= the batcher's 256 rows, < 64 KiB
    assert len(json.dumps({"rows": rows})) < 64 * 1024
    with TestClient(create_app(models.registry, "taxi", poll_interval=0.02)) as client:
        eventually(lambda: ready_version(client) == 1)
        big = client.post("/predict?probabilities=false", json={"rows": rows})
        small = client.post("/predict", json={"rows": rows[:3]})
        model = client.app.state.slot.current.model  # type: ignore[attr-defined]
    assert big.status_code == 200 and small.status_code == 200
    assert queued == [3]  # only the small one went to the batcher
    expected = model.predict(pd.DataFrame(rows).astype({"passengers": "Int64"})).tolist()
    assert big.json()["predictions"] == expected and small.json()["predictions"] == expected[:3]


@pytest.mark.timeout(60)
def test_a_batch_that_fails_outside_the_model_answers_500_and_the_server_keeps_predicting(
    models: Any, eventually: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mlops_airflow.serving.predict as predict

    original = predict.predict_batch
    failures = [RuntimeError("injected: the batch bookkeeping broke")]

    def flaky(batch: list[Any]) -> list[Any]:
        if failures:
            raise failures.pop()
        return original(batch)

    monkeypatch.setattr(predict, "predict_batch", flaky)
    models.register()
    models.promote(1)
    with TestClient(create_app(models.registry, "taxi", poll_interval=0.02)) as client:
        eventually(lambda: ready_version(client) == 1)
        failed = client.post("/predict", json={"row": GOOD})
        assert failed.status_code == 500
        assert "the prediction batch failed: RuntimeError: injected" in failed.json()["detail"]
        assert client.post("/predict", json={"row": GOOD}).status_code == 200  # the thread lived on
        metrics = client.get("/metrics").text
    assert 'mlops_request_errors_total{kind="internal"} 1.0' in metrics


def test_a_removed_alias_keeps_the_served_model_and_says_so(models: Any) -> None:
    app = create_app(models.registry, "taxi", poll_interval=3600)  # polled by hand below
    slot = app.state.slot
    models.register()
    models.promote(1)
    slot.poll_once()
    models.registry.store.delete("taxi/aliases/champion.json")
    slot.poll_once()
    status = slot.status()
    assert status["status"] == "ready" and status["version"] == 1
    assert status["last_error"].startswith("the alias taxi@champion no longer exists in ")
    assert status["last_error"].endswith("; still serving version 1")
