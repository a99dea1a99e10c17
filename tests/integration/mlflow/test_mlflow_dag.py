"""The example CT DAG through Airflow (dag.test on a real metadata DB) with MLflow as the registry."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import httpx
import pytest
from testsupport import BIN, SAMPLE, ServerProcess, free_port, load_dag

from mlops_airflow.registry import open_registry

pytestmark = pytest.mark.integration


def test_ct_dag_registers_in_mlflow_and_deploys_by_alias(
    airflow_db: Path, mlflow_registry_uri: str, s3_endpoint: str, s3_client: Any, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """One setting switches the whole DAG to MLflow; the side store's S3 keys come from the `mlops_s3` connection."""
    monkeypatch.setenv("MLOPS_AIRFLOW_REGISTRY_URI", mlflow_registry_uri)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)  # the tasks must take the endpoint from the connection
    monkeypatch.setenv("AIRFLOW_CONN_MLOPS_S3", json.dumps({
        "conn_type": "mlops_s3", "login": "testing", "password": "testing",
        "extra": {"endpoint_url": s3_endpoint, "region_name": "us-east-1"},
    }))
    port = free_port()
    server = ServerProcess([str(BIN / "mlops-airflow"), "serve", "trips_mlflow", "--port", str(port)],
                           port, tmp_path / "server.log", env={**os.environ, "AWS_ENDPOINT_URL": s3_endpoint})
    try:
        server.wait_healthy(timeout=120)
        monkeypatch.setenv("MLOPS_AIRFLOW_SERVER_URL", server.url)
        dag_run = load_dag("mlops_continuous_training.py").test(run_conf={
            "data_uri": str(SAMPLE / "trips_2026_01.csv"), "model_name": "trips_mlflow"})
        assert str(dag_run.state) == "success", server.log()[-2000:]
        registry = open_registry(mlflow_registry_uri, s3_client=s3_client)
        assert registry.aliases("trips_mlflow") == {"champion": 1}
        assert registry.client.get_model_version_by_alias("trips_mlflow", "champion").version == "1"
        assert registry.get_version("trips_mlflow", 1)["artifact_uri"].startswith("mlflow-artifacts:/")
        assert httpx.get(f"{server.url}/metadata", timeout=60).json()["version"] == 1
    finally:
        server.stop()
