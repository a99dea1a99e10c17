"""GET /metrics: the metric names other tools read, and that each counts what it says."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from mlops_airflow.serving.app import create_app

GOOD = {"hour": 7, "passengers": 2, "fare": 12.5, "payment_type": "card"}


def samples(client: TestClient) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(found: dict, name: str, **labels: str) -> float:
    return found.get((name, tuple(sorted(labels.items()))), 0.0)


def test_requests_errors_predictions_warnings_and_the_model_info(models: Any, eventually: Any) -> None:
    first = models.register()
    models.promote(1)
    with TestClient(create_app(models.registry, "taxi", poll_interval=0.02)) as client:
        eventually(lambda: client.get("/ready").status_code == 200)
        answer = client.post("/predict", json={"rows": [GOOD, {**GOOD, "fare": 40.0, "passengers": 6}, GOOD]})
        assert answer.status_code == 200
        labels = answer.json()["predictions"]
        assert client.post("/predict", json={"row": {**GOOD, "hour": 77}}).status_code == 422
        assert client.post("/predict", content=b"{nope").status_code == 422
        found = samples(client)

        assert value(found, "mlops_requests_total", endpoint="/predict", status="200") == 1
        assert value(found, "mlops_requests_total", endpoint="/predict", status="422") == 2
        assert value(found, "mlops_requests_total", endpoint="/ready", status="200") >= 1
        assert value(found, "mlops_request_errors_total", kind="validation") == 2
        assert value(found, "mlops_request_latency_seconds_count", endpoint="/predict") == 3
        for label in {str(x) for x in labels}:
            expected = sum(1 for x in labels if str(x) == label)
            assert value(found, "mlops_predictions_total", model_version="1", label=label) == expected
        assert value(found, "mlops_observed_range_warnings_total", field="fare") == 1
        assert value(found, "mlops_observed_range_warnings_total", field="passengers") == 1
        info = dict(model_name="taxi", alias="champion", version="1", sha256=first["sha256"])
        assert value(found, "mlops_model_info", **info) == 1
        assert value(found, "mlops_model_swaps_total") == 1
        assert value(found, "mlops_model_refusals_total") == 0

        # a swap: the old version's info goes to 0, the new one's to 1
        second = models.register()
        models.promote(2)
        eventually(lambda: client.get("/ready").json()["version"] == 2)
        # a refusal: a tampered third version
        third = models.register()
        models.artifact_path(third).write_bytes(b"tampered")
        models.promote(3)
        eventually(lambda: client.get("/ready").json()["refused_version"] == 3)
        assert client.post("/predict", json={"row": GOOD}).status_code == 200
        found = samples(client)
    assert value(found, "mlops_model_info", **info) == 0
    assert value(found, "mlops_model_info", **{**info, "version": "2", "sha256": second["sha256"]}) == 1
    assert value(found, "mlops_model_swaps_total") == 2
    assert value(found, "mlops_model_refusals_total") == 1
    assert value(found, "mlops_predictions_total", model_version="2", label=str(labels[0])) >= 1


def test_not_ready_is_counted(models: Any) -> None:
    with TestClient(create_app(models.registry, "taxi", poll_interval=0.02)) as client:
        assert client.post("/predict", json={"row": GOOD}).status_code == 503
        found = samples(client)
    assert value(found, "mlops_request_errors_total", kind="not_ready") == 1
    assert value(found, "mlops_requests_total", endpoint="/predict", status="503") == 1


def test_unknown_paths_share_one_label(models: Any) -> None:
    with TestClient(create_app(models.registry, "taxi", poll_interval=0.02)) as client:
        for index in range(3):
            client.get(f"/scan/{index}")
        found = samples(client)
    assert value(found, "mlops_requests_total", endpoint="other", status="404") == 3
    assert not any("/scan" in str(key) for key in found)


def test_a_regressor_feeds_the_prediction_value_histogram(models: Any, eventually: Any) -> None:
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
        eventually(lambda: client.get("/ready").status_code == 200)
        predictions = client.post("/predict", json={"rows": [GOOD, GOOD]}).json()["predictions"]
        found = samples(client)
    assert value(found, "mlops_prediction_value_count", model_version="1") == 2
    assert all(10 < p <= 100 for p in predictions)
    assert value(found, "mlops_prediction_value_bucket", model_version="1", le="10.0") == 0
    assert value(found, "mlops_prediction_value_bucket", model_version="1", le="100.0") == 2
    assert not any(key[0] == "mlops_predictions_total" for key in found)
