"""A real `mlops-airflow serve` process under concurrent load: hot swaps, bad requests, workers, pinned, logs."""

from __future__ import annotations

import threading
from collections import Counter
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from testsupport import ServerProcess, candidate_fields, eventually

from mlops_airflow.persistence import dump_model
from mlops_airflow.registry.registry import ModelRegistry
from mlops_airflow.storage import open_store

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

pytestmark = pytest.mark.integration

ROW = {"hour": 9, "payment_type": "card"}
TOKEN = "load-test-token"


def register(registry: ModelRegistry, model: Any, schema: dict[str, Any], run: str) -> dict[str, Any]:
    record = registry.put_artifact("taxi", dump_model(model), candidate_fields(feature_schema=schema))
    return registry.register("taxi", record, idempotency_key=f"load/{run}/register/-1")


@pytest.fixture
def serve(cli_server: Callable[..., ServerProcess]) -> Callable[..., ServerProcess]:
    """The server of ``taxi``, flags after the name."""
    return lambda registry_uri, *flags, env=None: cli_server(registry_uri, "taxi", *flags, env=env)


def metric_samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def hammer(url: str, stop: threading.Event, results: list[tuple[int, Any]], headers: dict[str, str]) -> None:
    with httpx.Client(timeout=30, headers=headers) as client:
        while not stop.is_set():
            try:
                response = client.post(f"{url}/predict", json={"row": ROW})
                results.append((response.status_code, response.json().get("version")))
            except Exception as exc:  # a dropped connection is a failure of the swap, not of the test
                results.append((0, repr(exc)))


def test_no_request_fails_while_the_alias_moves_under_load(tmp_path: Path, serve: Any, trained: Any) -> None:
    pipeline, schema, _frame = trained
    registry_uri = str(tmp_path / "registry")
    registry = ModelRegistry(open_store(registry_uri))
    manifests = [register(registry, pipeline.set_params(clf__C=c), schema, f"run-{c}") for c in (1.0, 0.1, 0.01)]
    registry.set_alias("taxi", "champion", 1, expected=None, by="test", reason="first")
    server = serve(registry_uri, env={"MLOPS_AIRFLOW_SERVER_TOKEN": TOKEN})
    auth = {"Authorization": f"Bearer {TOKEN}"}
    eventually(lambda: httpx.get(f"{server.url}/ready", timeout=60).status_code == 200, what="version 1 to load")

    stop = threading.Event()
    results: list[tuple[int, Any]] = []
    threads = [threading.Thread(target=hammer, args=(server.url, stop, results, auth)) for _ in range(6)]
    for thread in threads:
        thread.start()
    try:
        previous = 1
        for version in (2, 3, 1, 2):  # four swaps, each while the clients keep sending
            before = len(results)
            registry.set_alias("taxi", "champion", version, expected=previous, by="test", reason="swap")
            previous = version
            eventually(lambda v=version: httpx.get(f"{server.url}/ready", timeout=60).json()["version"] == v,
                       what=f"version {version} to take over")
            eventually(lambda b=before: len(results) > b + 20, what="requests answered after the swap")
    finally:
        stop.set()
        for thread in threads:
            thread.join(30)
    statuses = Counter(status for status, _ in results)
    assert statuses == {200: len(results)}, [r for r in results if r[0] != 200][:5]
    assert {version for _, version in results} == {1, 2, 3}
    found = metric_samples(httpx.get(f"{server.url}/metrics", headers=auth, timeout=60).text)
    assert found[("mlops_model_swaps_total", ())] == 5  # the first load and four swaps
    assert found[("mlops_requests_total", (("endpoint", "/predict"), ("status", "200")))] == len(results)
    info = {key[1]: value for key, value in found.items() if key[0] == "mlops_model_info"}
    live = [dict(labels) for labels, value in info.items() if value == 1]
    assert live == [{"alias": "champion", "model_name": "taxi", "sha256": manifests[1]["sha256"], "version": "2"}]


def bad_requests(url: str) -> list[tuple[str, dict[str, Any], set[int]]]:
    auth = {"Authorization": f"Bearer {TOKEN}"}
    json_type = {**auth, "content-type": "application/json"}
    return [
        ("bad json", {"content": b"{not json", "headers": json_type}, {422}),
        ("wrong type", {"json": {"row": {"hour": "nine", "payment_type": "card"}}, "headers": auth}, {422}),
        ("unknown column", {"json": {"row": {**ROW, "foo": 1}}, "headers": auth}, {422}),
        ("out of range", {"json": {"row": {**ROW, "hour": 77}}, "headers": auth}, {422}),
        ("huge body", {"content": b"[" + b"1," * 600_000 + b"1]", "headers": json_type}, {413}),
        ("no auth", {"json": {"row": ROW}}, {401}),
        ("wrong token", {"json": {"row": ROW}, "headers": {"Authorization": "Bearer nope"}}, {401}),
        ("not an object", {"json": [1, 2, 3], "headers": auth}, {422}),
        ("deep nesting", {"content": b"[" * 100_000 + b"]" * 100_000, "headers": json_type}, {413, 422}),
    ]


def test_malformed_requests_under_load_get_4xx_and_the_server_stays_healthy(
    tmp_path: Path, serve: Any, trained: Any
) -> None:
    pipeline, schema, frame = trained
    registry_uri = str(tmp_path / "registry")
    registry = ModelRegistry(open_store(registry_uri))
    register(registry, pipeline, schema, "run-1")
    registry.set_alias("taxi", "champion", 1, expected=None, by="test", reason="first")
    server = serve(registry_uri, "--max-body-bytes", "1000000", env={"MLOPS_AIRFLOW_SERVER_TOKEN": TOKEN})
    auth = {"Authorization": f"Bearer {TOKEN}"}
    eventually(lambda: httpx.get(f"{server.url}/ready", timeout=60).status_code == 200, what="the model to load")
    expected = pipeline.predict(frame[["hour", "payment_type"]].head(1).assign(hour=9, payment_type="card"))[0]

    wrong: list[str] = []
    good: list[int] = []

    def bad_client(seed: int) -> None:
        with httpx.Client(timeout=30) as client:
            for round_ in range(6):
                for name, kwargs, statuses in bad_requests(server.url)[(seed + round_) % 3:]:
                    try:
                        status = client.post(f"{server.url}/predict", **kwargs).status_code
                    except httpx.TransportError as exc:
                        status = -1 if name == "huge body" else 0
                        if status == 0:
                            wrong.append(f"{name}: {exc!r}")
                        continue  # the server may close a too-large upload before reading it all
                    if status not in statuses:
                        wrong.append(f"{name}: {status}")

    def good_client() -> None:
        with httpx.Client(timeout=30, headers=auth) as client:
            for _ in range(60):
                response = client.post(f"{server.url}/predict", json={"row": ROW})
                if response.status_code != 200 or response.json()["predictions"] != [expected]:
                    wrong.append(f"good request: {response.status_code} {response.text[:200]}")
                good.append(response.status_code)

    threads = [threading.Thread(target=bad_client, args=(i,)) for i in range(3)]
    threads += [threading.Thread(target=good_client) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert wrong == []
    assert good == [200] * 120
    assert httpx.get(f"{server.url}/health", timeout=60).status_code == 200
    assert httpx.get(f"{server.url}/ready", timeout=60).json()["status"] == "ready"
    found = metric_samples(httpx.get(f"{server.url}/metrics", headers=auth, timeout=60).text)
    errors = {dict(k[1])["kind"]: v for k, v in found.items() if k[0] == "mlops_request_errors_total"}
    assert errors["validation"] > 0 and errors["auth"] > 0 and errors["too_large"] > 0
    assert "internal" not in errors
    assert server.process.poll() is None and "Traceback" not in server.log()


def test_two_workers_serve_and_metrics_count_both(tmp_path: Path, serve: Any, trained: Any) -> None:
    pipeline, schema, _frame = trained
    registry_uri = str(tmp_path / "registry")
    registry = ModelRegistry(open_store(registry_uri))
    manifest = register(registry, pipeline, schema, "run-1")
    registry.set_alias("taxi", "champion", 1, expected=None, by="test", reason="first")
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN)
    server = serve(registry_uri, "--workers", "2", "--token-file", str(token_file))
    auth = {"Authorization": f"Bearer {TOKEN}"}
    # each worker loads the model on its own: wait until both said ready (a fresh connection each time,
    # so the kernel spreads them over both workers' accept queues)
    loaded: set[str] = set()

    def both_loaded() -> bool:
        answer = httpx.get(f"{server.url}/ready", headers=auth, timeout=60)  # worker_pid is a detail: it needs the token
        if answer.status_code == 200:
            loaded.add(answer.json()["worker_pid"])
        return len(loaded) == 2

    eventually(both_loaded, timeout=90, what="both workers to load the model", interval=0.05)

    pids: set[str] = set()
    n = 0

    def both_workers_answered() -> bool:
        nonlocal n
        # a fresh connection each time, so the kernel spreads them over both workers' accept queues
        with httpx.Client(headers=auth, timeout=60) as client:
            response = client.post(f"{server.url}/predict", json={"row": ROW})
        assert response.status_code == 200
        n += 1
        ready = httpx.get(f"{server.url}/ready", headers=auth, timeout=60).json()
        pids.add(ready["worker_pid"])
        return len(pids) == 2 and n >= 20

    eventually(both_workers_answered, timeout=60, what="both workers to answer", interval=0)
    assert httpx.post(f"{server.url}/predict", json={"row": ROW}, timeout=60).status_code == 401  # auth in every worker
    for _ in range(10):  # whichever worker answers, the count covers both
        found = metric_samples(httpx.get(f"{server.url}/metrics", headers=auth, timeout=60).text)
        assert found[("mlops_requests_total", (("endpoint", "/predict"), ("status", "200")))] == n
    info = {dict(k[1])["version"]: v for k, v in found.items() if k[0] == "mlops_model_info"}
    assert info == {"1": 1.0}
    assert found[("mlops_model_swaps_total", ())] == 2  # each worker loaded the model once
    assert dict(next(k[1] for k in found if k[0] == "mlops_model_info"))["sha256"] == manifest["sha256"]


def test_pinned_serve_checks_the_sha256_and_never_follows_the_alias(tmp_path: Path, serve: Any, trained: Any) -> None:
    pipeline, schema, _frame = trained
    registry_uri = str(tmp_path / "registry")
    registry = ModelRegistry(open_store(registry_uri))
    first = register(registry, pipeline, schema, "run-1")
    second = register(registry, pipeline.set_params(clf__C=0.1), schema, "run-2")
    registry.set_alias("taxi", "champion", 2, expected=None, by="test", reason="champion is 2")

    env = {"MLOPS_AIRFLOW_MODEL_VERSION": "1", "MLOPS_AIRFLOW_MODEL_SHA256": first["sha256"]}
    pinned = serve(registry_uri, env=env)  # the Kubernetes way: settings from the environment
    ready = eventually(lambda: (r := httpx.get(f"{pinned.url}/ready", timeout=60)).status_code == 200 and r.json())
    assert (ready["version"], ready["sha256"], ready["pinned"]) == (1, first["sha256"], True)
    assert httpx.post(f"{pinned.url}/predict", json={"row": ROW}, timeout=60).json()["version"] == 1

    wrong = serve(registry_uri, "--version", "2", "--expect-sha256", first["sha256"])
    eventually(lambda: httpx.get(f"{wrong.url}/ready", timeout=60).json()["status"] == "failed", what="the refusal")
    refused = httpx.get(f"{wrong.url}/ready", timeout=60)
    assert refused.status_code == 503
    assert f"has sha256 {second['sha256'][:12]}…, but {first['sha256'][:12]}… was expected" in refused.json()["reason"]
    assert httpx.post(f"{wrong.url}/predict", json={"row": ROW}, timeout=60).status_code == 503


def test_prediction_logs_reach_s3_and_read_back(
    tmp_path: Path, serve: Any, trained: Any, s3_endpoint: str, s3_client: Any, s3_bucket: str
) -> None:
    from mlops_airflow.serving.logs import read_prediction_logs

    pipeline, schema, _frame = trained
    registry_uri = str(tmp_path / "registry")
    registry = ModelRegistry(open_store(registry_uri))
    register(registry, pipeline, schema, "run-1")
    registry.set_alias("taxi", "champion", 1, expected=None, by="test", reason="first")
    log_uri = f"s3://{s3_bucket}/serving"
    server = serve(registry_uri, "--log-sample-rate", "1", "--log-uri", log_uri, "--log-flush-seconds", "0.2",
                   env={"AWS_ENDPOINT_URL": s3_endpoint})
    eventually(lambda: httpx.get(f"{server.url}/ready", timeout=60).status_code == 200, what="the model to load")
    for hour in range(5):
        response = httpx.post(f"{server.url}/predict", json={"rows": [{**ROW, "hour": hour}]},
                              headers={"X-Request-ID": f"req-{hour}"}, timeout=60)
        assert response.status_code == 200
    def five_rows() -> Any:
        frame = read_prediction_logs(log_uri, "taxi", s3_client=s3_client)
        return [frame] if len(frame) == 5 else None

    (logs,) = eventually(five_rows, what="five logged rows in S3")
    assert sorted(logs["_request_id"]) == [f"req-{h}" for h in range(5)]
    assert sorted(logs["hour"]) == [0, 1, 2, 3, 4] and set(logs["_version"]) == {1}
    keys = [o["Key"] for o in s3_client.list_objects_v2(Bucket=s3_bucket)["Contents"]]
    assert all(key.startswith("serving/predictions/taxi/date=") and "/version=1/" in key for key in keys)
