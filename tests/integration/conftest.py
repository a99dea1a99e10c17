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
) -> Iterator[Callable[..., str]]:
    """Start `mlops-airflow serve [NAME]` as a real process (no name: every model); returns its URL.

    The URL is also set as the server setting, so deploy stages in this test use that server.
    """
    servers: list[ServerProcess] = []

    def start(model_name: str | None = None) -> str:
        port = free_port()
        argv = [str(BIN / "mlops-airflow"), "--registry", registry_uri, "serve", *([model_name] if model_name else []),
                "--port", str(port)]
        server = ServerProcess(argv, port, tmp_path / f"server-{model_name or 'all'}.log")
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

    def build(model_name: str, data_uri: str, *, promote: bool = True, gate: Any = None, key: str = "k",
              estimator: str | None = "auto", lineage: dict[str, Any] | None = None) -> dict[str, Any]:
        summary = run_validation(registry, model_name=model_name, data_uri=data_uri, target="tipped", validation=str(SPEC))
        candidate = run_training(registry, model_name=model_name, dataset_uri=summary["dataset_uri"], target="tipped",
                                 row_key="trip_id", estimator=estimator, lineage=lineage)
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


@pytest.fixture(scope="session")
def mlflow_process(s3_server: ServerProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A real `mlflow server`, one per session: SQLite backend store, artifacts proxied to the test S3 server."""
    import uuid

    import boto3

    s3_endpoint = s3_server.url
    bucket = f"mlflow-{uuid.uuid4().hex[:8]}"
    boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1").create_bucket(Bucket=bucket)
    root = tmp_path_factory.mktemp("mlflow")
    port = free_port()
    argv = [str(BIN / "mlflow"), "server", "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
            "--artifacts-destination", f"s3://{bucket}/mlflow", "--serve-artifacts",
            "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    # One worker: uvicorn's supervisor kills workers slow to answer its health ping, which on a busy
    # CI machine restarts them for minutes. No job executor: the tests need no background jobs.
    env = {**os.environ, "MLFLOW_S3_ENDPOINT_URL": s3_endpoint, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    server = ServerProcess(argv, port, root / "mlflow-server.log", env=env)
    try:
        server.wait_healthy(timeout=300)  # the first start migrates the SQLite schema: tens of seconds
        yield server
    finally:
        server.stop()


@pytest.fixture
def mlflow_server(mlflow_process: ServerProcess, s3_endpoint: str) -> str:
    """The session's MLflow server URL, checked alive for every test (a dead one fails with its log)."""
    mlflow_process.assert_alive()
    return mlflow_process.url


@pytest.fixture
def mlflow_registry_uri(mlflow_server: str, s3_bucket: str) -> str:
    """An ``mlflow+http://`` registry URI on the session's MLflow server, emptied first, with an S3 side store."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=mlflow_server, registry_uri=mlflow_server)
    for model in client.search_registered_models(max_results=1000):
        client.delete_registered_model(model.name)
    for experiment in client.search_experiments(filter_string="name LIKE 'mlops-airflow/%'"):
        # Renamed before deletion: a deleted experiment keeps its name and would block re-creating it.
        client.rename_experiment(experiment.experiment_id, f"deleted-{experiment.experiment_id}-{experiment.name}")
        client.delete_experiment(experiment.experiment_id)
    return f"mlflow+{mlflow_server}?store=s3://{s3_bucket}/side"


os.environ.setdefault("MLOPS_AIRFLOW_SERVER_URL", "http://127.0.0.1:9")  # nothing listens: deploys must set it
