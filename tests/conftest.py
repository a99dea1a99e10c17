"""Fixtures shared by every test.

Airflow reads its configuration when first imported, so the temporary AIRFLOW_HOME is
set here, at import time, before any test can import Airflow.
"""

from __future__ import annotations

import os
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from testsupport import ServerProcess, free_port

REPO = Path(__file__).resolve().parent.parent
_AIRFLOW_HOME = Path(tempfile.mkdtemp(prefix="mlops-airflow-test-home-"))
os.environ.update(
    {
        "AIRFLOW_HOME": str(_AIRFLOW_HOME),
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
        "MLOPS_AIRFLOW_REGISTRY_URI": str(_AIRFLOW_HOME / "mlops_registry"),
        "GX_ANALYTICS_ENABLED": "false",
        # Fake credentials for the local S3 server; never real ones in tests.
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
)


@pytest.fixture(scope="session")
def airflow_home() -> Path:
    return _AIRFLOW_HOME


@pytest.fixture(scope="session")
def s3_server() -> Iterator[ServerProcess]:
    """moto's standalone S3 server as a separate process, spoken to over HTTP (conditional PUTs atomic, as on S3)."""
    port = free_port()
    argv = [sys.executable, str(Path(__file__).with_name("s3_server.py")), "-H", "127.0.0.1", "-p", str(port)]
    server = ServerProcess(argv, port, _AIRFLOW_HOME / "s3-server.log")
    try:
        # a generous deadline: on a busy machine moto takes seconds to import
        server.wait_answering("/", timeout=180)
        yield server
    finally:
        server.stop()


@pytest.fixture
def s3_endpoint(s3_server: ServerProcess) -> str:
    # checked for every test that uses it: a server that died says so, with its log, instead of
    # surfacing later as a refused connection deep inside boto3
    s3_server.assert_alive()
    return s3_server.url


@pytest.fixture
def s3_client(s3_endpoint: str):  # type: ignore[no-untyped-def]
    import boto3

    return boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")


@pytest.fixture
def s3_bucket(s3_client) -> str:  # type: ignore[no-untyped-def]
    name = f"test-{uuid.uuid4().hex[:12]}"
    s3_client.create_bucket(Bucket=name)
    return name
