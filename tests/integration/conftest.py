"""Integration fixtures: a real Airflow metadata DB, real model-server processes, a real registry."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from testsupport import BIN, SPEC, ServerProcess, free_port


@pytest.fixture(scope="session")
def airflow_db(airflow_home: Path) -> Path:
    """`airflow db migrate` on SQLite in the session's temporary AIRFLOW_HOME, as a user would."""
    subprocess.run([str(BIN / "airflow"), "db", "migrate"], check=True, capture_output=True, timeout=300)
    return airflow_home


@pytest.fixture
def registry_uri(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh registry, set as MLOPS_AIRFLOW_REGISTRY_URI for in-process tasks and subprocesses."""
    uri = str(tmp_path / "registry")
    monkeypatch.setenv("MLOPS_AIRFLOW_REGISTRY_URI", uri)
    return uri


@pytest.fixture
def registry(registry_uri: str) -> Any:
    from mlops_airflow.registry import ModelRegistry
    from mlops_airflow.storage import open_store

    return ModelRegistry(open_store(registry_uri))


@pytest.fixture
def model_server(
    registry_uri: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[[str], str]]:
    """Start `mlops-airflow serve NAME` as a real process; returns its URL (also set as the server setting)."""
    servers: list[ServerProcess] = []

    def start(model_name: str) -> str:
        port = free_port()
        argv = [str(BIN / "mlops-airflow"), "--registry", registry_uri, "serve", model_name, "--port", str(port)]
        server = ServerProcess(argv, port, tmp_path / f"server-{model_name}.log")
        servers.append(server)
        server.wait_healthy()
        monkeypatch.setenv("MLOPS_AIRFLOW_SERVER_URL", server.url)
        return server.url

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def build_version(registry: Any) -> Callable[..., dict[str, Any]]:
    """Validate, train, gate and register through the pipeline functions (no Airflow); returns the manifest."""
    from mlops_airflow.pipeline.evaluate import run_evaluation
    from mlops_airflow.pipeline.register import run_registration
    from mlops_airflow.pipeline.train import run_training
    from mlops_airflow.pipeline.validate import run_validation

    def build(model_name: str, data_uri: str, *, promote: bool = True, gate: Any = None, key: str = "k") -> dict[str, Any]:
        summary = run_validation(registry, model_name=model_name, data_uri=data_uri, target="tipped", validation=str(SPEC))
        candidate = run_training(registry, model_name=model_name, dataset_uri=summary["dataset_uri"], target="tipped",
                                 row_key="trip_id")
        verdict = run_evaluation(registry, model_name=model_name, candidate_sha256=candidate["sha256"], gate=gate)
        manifest = run_registration(registry, model_name=model_name, candidate_sha256=candidate["sha256"],
                                    verdict_uri=verdict["verdict_uri"], idempotency_key=key)
        manifest["verdict_uri"] = verdict["verdict_uri"]
        if promote:
            current = registry.get_alias(model_name, "champion")
            registry.set_alias(model_name, "champion", manifest["version"],
                               expected=current["version"] if current else None, by="test", reason="fixture")
        return manifest

    return build


os.environ.setdefault("MLOPS_AIRFLOW_SERVER_URL", "http://127.0.0.1:9")  # nothing listens: deploys must set it
