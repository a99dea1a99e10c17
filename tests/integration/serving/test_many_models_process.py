"""`mlops-airflow serve` (every model) as a real process: a V2 client nobody here wrote, and hot swaps of many models under load."""

from __future__ import annotations

import threading
from collections import Counter
from typing import TYPE_CHECKING, Any

import httpx
import numpy as np
import pytest
from testsupport import ServerProcess, candidate_fields, eventually

from mlops_airflow.persistence import dump_model
from mlops_airflow.registry.registry import ModelRegistry
from mlops_airflow.storage import open_store

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

pytestmark = pytest.mark.integration


def register(registry: ModelRegistry, name: str, model: Any, schema: dict[str, Any], run: str,
             **fields: Any) -> dict[str, Any]:
    record = registry.put_artifact(name, dump_model(model), candidate_fields(feature_schema=schema, **fields))
    return registry.register(name, record, idempotency_key=f"many/{run}/register/-1")


def promote(registry: ModelRegistry, name: str, version: int) -> None:
    current = registry.get_alias(name, "champion")
    registry.set_alias(name, "champion", version, expected=current["version"] if current else None, by="test",
                       reason="test")


@pytest.fixture
def serve_all(cli_server: Callable[..., ServerProcess]) -> Callable[..., ServerProcess]:
    return cli_server


def test_a_triton_client_talks_to_every_model_over_the_v2_protocol(tmp_path: Path, serve_all: Any,
                                                                   trained: Any) -> None:
    import tritonclient.http as triton
    from sklearn.linear_model import Ridge
    from sklearn.pipeline import Pipeline
    from tritonclient.utils import InferenceServerException

    classifier, schema, frame = trained
    features = frame[["hour", "payment_type"]]
    regressor = Pipeline([("pre", classifier.named_steps["pre"]), ("reg", Ridge())]).fit(features, frame["hour"] * 2.5)
    registry_uri = str(tmp_path / "registry")
    registry = ModelRegistry(open_store(registry_uri))
    register(registry, "tips", classifier, schema, "c")
    register(registry, "fares", regressor, schema, "r", task_type="regression", classes=None)
    promote(registry, "tips", 1)
    promote(registry, "fares", 1)
    server = serve_all(registry_uri)
    client = triton.InferenceServerClient(url=f"127.0.0.1:{server.port}")
    try:
        assert client.is_server_live() and client.is_server_ready()
        assert client.get_server_metadata()["name"] == "mlops-airflow"
        assert client.is_model_ready("tips") and client.is_model_ready("fares")
        assert not client.is_model_ready("nobody")
        meta = client.get_model_metadata("tips")
        assert meta["name"] == "tips" and meta["versions"] == ["1"]
        assert [(i["name"], i["datatype"]) for i in meta["inputs"]] == [("hour", "INT64"), ("payment_type", "BYTES")]
        assert {o["name"] for o in meta["outputs"]} == {"predict", "predict_proba"}

        rows = features.head(6)

        def inputs(binary: bool, hours: Any = None) -> list[Any]:
            hour = triton.InferInput("hour", [len(rows)], "INT64")
            hour.set_data_from_numpy(np.asarray(rows["hour"] if hours is None else hours, dtype=np.int64),
                                     binary_data=binary)
            payment = triton.InferInput("payment_type", [len(rows)], "BYTES")
            payment.set_data_from_numpy(np.asarray(rows["payment_type"], dtype=object), binary_data=binary)
            return [hour, payment]

        for binary in (True, False):  # the client's default (the binary extension) and plain JSON
            outputs = [triton.InferRequestedOutput("predict", binary_data=binary),
                       triton.InferRequestedOutput("predict_proba", binary_data=binary)]
            answer = client.infer("tips", inputs(binary), outputs=outputs, request_id=f"r-{binary}")
            assert answer.get_response()["id"] == f"r-{binary}"
            assert answer.as_numpy("predict").tolist() == classifier.predict(rows).tolist()
            np.testing.assert_allclose(answer.as_numpy("predict_proba"), classifier.predict_proba(rows), rtol=1e-9)
            value = client.infer("fares", inputs(binary), outputs=[triton.InferRequestedOutput("predict", binary_data=binary)])
            np.testing.assert_allclose(value.as_numpy("predict"), regressor.predict(rows), rtol=1e-9)
            assert client.infer("tips", inputs(binary), model_version="1").as_numpy("predict") is not None

        with pytest.raises(InferenceServerException, match=r"hour=77 is outside \[0, 23\]"):
            client.infer("tips", inputs(True, hours=[77] * len(rows)))
        with pytest.raises(InferenceServerException, match="no model named 'nobody'"):
            client.infer("nobody", inputs(True))
        with pytest.raises(InferenceServerException, match="serves version 1, not version '7'"):
            client.infer("tips", inputs(True), model_version="7")
    finally:
        client.close()


def test_many_models_swap_versions_under_load_and_no_request_fails(tmp_path: Path, serve_all: Any,
                                                                  trained: Any) -> None:
    pipeline, schema, _frame = trained
    registry_uri = str(tmp_path / "registry")
    registry = ModelRegistry(open_store(registry_uri))
    names = ["m_a", "m_b", "m_c"]
    for name in names:
        for c in (1.0, 0.1):
            register(registry, name, pipeline.set_params(clf__C=c), schema, f"{name}-{c}")
        promote(registry, name, 1)
    # max-models 2: the three models also take turns in memory while they swap
    server = serve_all(registry_uri, "--max-models", "2")
    stop = threading.Event()
    results: list[tuple[str, int, Any]] = []

    def hammer(offset: int) -> None:
        with httpx.Client(timeout=60) as client:
            index = offset
            while not stop.is_set():
                name = names[index % len(names)]
                index += 1
                try:
                    response = client.post(f"{server.url}/models/{name}/predict",
                                           json={"row": {"hour": 9, "payment_type": "card"}})
                    results.append((name, response.status_code, response.json().get("version")))
                except Exception as exc:  # a dropped connection is a failure of the swap, not of the test
                    results.append((name, 0, repr(exc)))

    threads = [threading.Thread(target=hammer, args=(offset,)) for offset in range(6)]
    for thread in threads:
        thread.start()
    try:
        eventually(lambda: len(results) > 60, what="requests answered before the swaps")
        for name in names:  # every model moves while all of them are being asked
            promote(registry, name, 2)
        eventually(lambda: all(httpx.get(f"{server.url}/models/{n}/metadata", timeout=30).json()["version"] == 2
                               for n in names), what="version 2 of every model to take over")
        before = len(results)
        eventually(lambda: len(results) > before + 60, what="requests answered after the swaps")
    finally:
        stop.set()
        for thread in threads:
            thread.join(60)
    failures = [r for r in results if r[1] != 200]
    assert not failures, failures[:5]
    assert Counter(name for name, _, _ in results).keys() == set(names)
    for name in names:
        assert {version for n, _, version in results if n == name} == {1, 2}
    status = httpx.get(f"{server.url}/models", timeout=10).json()
    assert len(status["loaded"]) <= 2
