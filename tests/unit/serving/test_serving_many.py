"""One server, many models: routing by name, lazy loading, the budget, refusal and alias following per model."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from mlops_airflow.serving.app import create_app
from mlops_airflow.serving.pool import loaded_footprint, model_footprint

if TYPE_CHECKING:
    from collections.abc import Callable

GOOD = {"hour": 7, "passengers": 2, "fare": 12.5, "payment_type": "card"}


def served(named_models: Callable[[str], Any], *names: str) -> dict[str, Any]:
    """Register and promote version 1 of each name; returns the Models helpers by name."""
    found = {}
    for name in names:
        found[name] = named_models(name)
        found[name].register()
        found[name].promote(1)
    return found


def predict(client: TestClient, name: str, row: dict[str, Any] = GOOD) -> Any:
    return client.post(f"/models/{name}/predict", json={"row": row})


def loaded(client: TestClient) -> list[str]:
    return [entry["model_name"] for entry in client.get("/models").json()["loaded"]]


def test_every_model_answers_by_name_and_unknown_names_get_404(registry: Any, named_models: Any) -> None:
    served(named_models, "alpha", "beta")
    with TestClient(create_app(registry, poll_interval=0.05)) as client:
        assert loaded(client) == []  # nothing loads before it is asked for
        for name in ("alpha", "beta"):
            answer = predict(client, name)
            assert answer.status_code == 200, answer.text
            assert (answer.json()["model_name"], answer.json()["version"]) == (name, 1)
        assert sorted(loaded(client)) == ["alpha", "beta"]
        meta = client.get("/models/beta/metadata").json()
        assert (meta["model_name"], meta["version"], meta["alias"]) == ("beta", 1, "champion")
        assert client.get("/models/alpha/ready").json()["status"] == "ready"

        missing = predict(client, "gamma")
        assert missing.status_code == 404
        assert missing.json()["detail"] == f"no model named 'gamma' in {registry.store.uri}"
        assert client.get("/models/gamma/metadata").status_code == 404
        assert predict(client, "..%2F..").status_code == 404
        assert "serves many models" in client.post("/predict", json={"row": GOOD}).json()["detail"]
        assert client.get("/metadata").status_code == 404
        assert client.get("/ready").json()["status"] == "ready"  # the server is up; models are per name


def test_patterns_limit_which_models_are_served(registry: Any, named_models: Any) -> None:
    served(named_models, "store_1", "churn")
    with TestClient(create_app(registry, models=["store_*"], poll_interval=0.05)) as client:
        assert predict(client, "store_1").status_code == 200
        refused = predict(client, "churn")
        assert refused.status_code == 404
        assert refused.json()["detail"] == "'churn' does not match the models this server serves (store_*)"


def test_a_model_registered_after_a_404_is_served_once_it_exists(registry: Any, named_models: Any,
                                                                 eventually: Any) -> None:
    with TestClient(create_app(registry, poll_interval=0.05)) as client:
        assert predict(client, "late").status_code == 404
        served(named_models, "late")
        eventually(lambda: predict(client, "late").status_code == 200, what="the new model to be served")


def test_a_model_without_its_alias_waits_with_503(registry: Any, named_models: Any) -> None:
    named_models("draft").register()  # a version, no champion yet
    with TestClient(create_app(registry, poll_interval=0.05)) as client:
        answer = predict(client, "draft")
        assert answer.status_code == 503
        assert "the alias draft@champion does not exist yet" in answer.json()["detail"]["reason"]


def test_least_recently_used_models_are_evicted_beyond_max_models(registry: Any, named_models: Any) -> None:
    served(named_models, "m1", "m2", "m3")
    with TestClient(create_app(registry, max_models=2, poll_interval=0.05)) as client:
        assert predict(client, "m1").status_code == 200
        assert predict(client, "m2").status_code == 200
        assert predict(client, "m1").status_code == 200  # m1 is now the most recently used
        assert predict(client, "m3").status_code == 200  # so m2 goes
        assert sorted(loaded(client)) == ["m1", "m3"]
        assert predict(client, "m2").status_code == 200  # loaded again on demand; m1 goes
        assert sorted(loaded(client)) == ["m2", "m3"]
        found = metric_values(client)
    assert found[("mlops_model_evictions_total", ())] == 2
    assert found[("mlops_models_loaded", ())] == 2
    assert found[("mlops_model_loads_total", (("outcome", "loaded"),))] == 4


def test_the_memory_budget_bounds_what_is_loaded_and_refuses_what_cannot_fit(registry: Any,
                                                                             named_models: Any) -> None:
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.pipeline import Pipeline

    served(named_models, "s1", "s2", "s3")
    from mlops_airflow.serving.loading import load_manifest_model

    size = loaded_footprint(load_manifest_model(registry, registry.resolve("s1", alias="champion")))
    big = named_models("big")
    forest = big.fit()
    forest = Pipeline([("pre", forest.named_steps["pre"]),
                       ("clf", RandomForestClassifier(n_estimators=300, random_state=0))])
    forest.fit(big.frame.drop(columns=["tipped"]), big.frame["tipped"])
    assert model_footprint(forest) > 3 * size  # alone more than the budget below
    big.register(forest)
    big.promote(1)
    budget = int(size * 2.5)  # two small models fit, three do not
    with TestClient(create_app(registry, memory_budget_bytes=budget, poll_interval=0.05)) as client:
        for name in ("s1", "s2", "s3"):
            assert predict(client, name).status_code == 200
        status = client.get("/models").json()
        assert [entry["model_name"] for entry in status["loaded"]] == ["s3", "s2"]
        assert status["memory_used_bytes"] <= budget == status["memory_budget_bytes"]
        too_big = predict(client, "big")
        assert too_big.status_code == 503
        reason = too_big.json()["detail"]["reason"]
        assert "refused version 1: big version 1 needs about" in reason and "memory budget" in reason
        assert predict(client, "s2").status_code == 200  # the others kept serving


def test_a_refused_model_answers_503_naming_it_and_the_others_keep_serving(registry: Any,
                                                                          named_models: Any) -> None:
    found = served(named_models, "good")
    bad = named_models("bad")
    manifest = bad.register()
    bad.artifact_path(manifest).write_bytes(b"tampered")
    bad.promote(1)
    with TestClient(create_app(registry, poll_interval=0.05)) as client:
        refused = predict(client, "bad")
        assert refused.status_code == 503
        detail = refused.json()["detail"]
        assert detail["model_name"] == "bad" and detail["status"] == "failed"
        assert "refused version 1: bad version 1: checksum mismatch" in detail["reason"]
        assert predict(client, "good").status_code == 200
        # the next good version of the refused model is served
        bad.register()
        bad.promote(2)
        client.app.state.pool.slot("bad").last_polled = 0.0  # as if the alias was read long ago
        answer = client.get("/models/bad/metadata")  # metadata reads the alias first
        assert answer.status_code == 200 and answer.json()["version"] == 2
        assert found["good"].registry.get_alias("good", "champion")["version"] == 1


def test_every_loaded_model_follows_its_alias(registry: Any, named_models: Any, eventually: Any) -> None:
    found = served(named_models, "a", "b", "c")
    with TestClient(create_app(registry, poll_interval=0.05)) as client:
        for name in found:
            assert predict(client, name).json()["version"] == 1
        for helper in found.values():
            helper.register()
            helper.promote(2)
        # the poller alone (no metadata request) moves every loaded model to version 2
        eventually(lambda: all(predict(client, name).json()["version"] == 2 for name in found),
                   what="every model to serve version 2")


def test_metadata_reads_the_alias_at_once(registry: Any, named_models: Any) -> None:
    found = served(named_models, "slow")
    with TestClient(create_app(registry, poll_interval=3600)) as client:  # the poller would wait an hour
        assert predict(client, "slow").json()["version"] == 1
        found["slow"].register()
        found["slow"].promote(2)
        assert predict(client, "slow").json()["version"] == 1  # predictions do not read the alias
        client.app.state.pool.slot("slow").last_polled = 0.0  # read longer ago than FRESH_AFTER
        assert client.get("/models/slow/metadata").json()["version"] == 2
        assert predict(client, "slow").json()["version"] == 2


def test_a_single_model_server_keeps_its_routes_and_names_the_others(models: Any, eventually: Any) -> None:
    models.register()
    models.promote(1)
    with TestClient(create_app(models.registry, "taxi", poll_interval=0.05)) as client:
        eventually(lambda: client.get("/ready").status_code == 200)
        assert client.post("/predict", json={"row": GOOD}).json()["version"] == 1
        assert predict(client, "taxi").json()["version"] == 1
        other = client.get("/models/fraud/metadata")
        assert other.status_code == 404
        assert other.json()["detail"].startswith("this server serves only 'taxi', not 'fraud'")


def metric_values(client: TestClient) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(client.get("/metrics").text)
        for sample in family.samples
    }


def test_per_model_metrics_have_a_bounded_label_set(registry: Any, named_models: Any) -> None:
    from mlops_airflow.serving.metrics import ServerMetrics

    served(named_models, "first", "second", "third")
    app = create_app(registry, poll_interval=0.05, metrics=ServerMetrics(max_model_labels=1, per_version=False))
    with TestClient(app) as client:
        for name in ("first", "second", "third", "first"):
            assert predict(client, name).status_code == 200
        assert predict(client, "first", {**GOOD, "hour": 77}).status_code == 422
        assert predict(client, "nobody").status_code == 404
        found = metric_values(client)
    assert found[("mlops_model_requests_total", (("model", "first"), ("outcome", "ok")))] == 2
    assert found[("mlops_model_requests_total", (("model", "first"), ("outcome", "validation")))] == 1
    assert found[("mlops_model_requests_total", (("model", "__other__"), ("outcome", "ok")))] == 2
    assert found[("mlops_requests_total", (("endpoint", "/models/{name}/predict"), ("status", "200")))] == 4
    models_seen = {dict(labels).get("model") for (_, labels) in found if dict(labels).get("model")}
    assert models_seen <= {"first", "__other__", "__unknown__"}
    assert not any(name == "mlops_predictions_total" for name, _ in found)  # version labels: one model only


def test_prediction_logs_are_written_per_model(registry: Any, named_models: Any) -> None:
    from mlops_airflow.serving.logs import PredictionLogger, read_prediction_logs

    served(named_models, "north", "south")
    logger = PredictionLogger(registry.store, sample_rate=1.0, flush_rows=1, flush_seconds=0.05)
    with TestClient(create_app(registry, poll_interval=0.05, prediction_logger=logger)) as client:
        assert predict(client, "north").status_code == 200
        assert client.post("/models/south/predict", json={"rows": [GOOD, GOOD]}).status_code == 200
    north, south = (read_prediction_logs(registry.store, name) for name in ("north", "south"))
    assert (len(north), len(south)) == (1, 2)
    assert set(north["_model_name"]) == {"north"} and set(south["_model_name"]) == {"south"}


@pytest.mark.parametrize("path", ["/models/x/predict", "/v2/models/x/infer"])
def test_model_routes_need_the_token(registry: Any, named_models: Any, path: str) -> None:
    served(named_models, "x")
    with TestClient(create_app(registry, token="s3cret", poll_interval=0.05)) as client:
        assert client.post(path, json={"row": GOOD}).status_code == 401
        assert client.get("/models/x/metadata").status_code == 401
        assert client.get("/v2/health/ready").status_code == 200  # probes stay open
        assert client.get("/v2/health/live").status_code == 200
        ok = client.post("/models/x/predict", json={"row": GOOD}, headers={"Authorization": "Bearer s3cret"})
        assert ok.status_code == 200


def test_evicted_models_are_freed_although_loaded_models_are_frozen_for_the_collector(
        registry: Any, named_models: Any) -> None:
    import gc
    import weakref

    served(named_models, "a", "b")
    gone = []
    with TestClient(create_app(registry, max_models=1, poll_interval=0.05)) as client:
        for _ in range(6):  # a and b take turns in memory: every load evicts the other
            for name in ("a", "b"):
                assert predict(client, name).status_code == 200
                gone.append(weakref.ref(client.app.state.pool.slot(name).current.model))
        assert gc.get_freeze_count() > 0  # loaded models are kept out of full collections
        # 11 evictions: one full collection after the 8th; the 3 since were freed by reference counting
        alive = [ref for ref in gone[:-1] if ref() is not None]  # all but the model still loaded
    assert alive == [], f"{len(alive)} evicted models still in memory"


def test_the_poller_reads_a_bounded_number_of_aliases_longest_unread_first(registry: Any, named_models: Any,
                                                                         monkeypatch: Any) -> None:
    import mlops_airflow.serving.pool as pool_module
    from mlops_airflow.serving.pool import ModelPool

    served(named_models, *(f"p{i}" for i in range(5)))
    monkeypatch.setattr(pool_module, "ALIAS_READS_PER_SECOND", 2)
    pool = ModelPool(registry, poll_interval=1.0)  # not started: refreshes run here, one by one
    slots = [pool.slot(f"p{i}") for i in range(5)]
    for age, slot in enumerate(slots):
        slot.last_polled = age  # p0 was read longest ago
    reads: list[str] = []
    real = registry.get_alias
    monkeypatch.setattr(registry, "get_alias", lambda model, alias: reads.append(model) or real(model, alias))
    pool.poll_due()
    assert reads == ["p0", "p1"]  # two reads a second, the longest unread first
    pool.poll_due()
    assert reads == ["p0", "p1", "p2", "p3"]
