"""A real model server process on a free port, and a registry on disk it reads from."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

if TYPE_CHECKING:
    from collections.abc import Iterator

REPO_ROOT = Path(__file__).resolve().parents[3]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServerProcess:
    """``serve(...)`` running in a child Python, as `mlops-airflow serve` runs it."""

    def __init__(self, registry_uri: str, model_name: str, log_path: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        code = (
            "from mlops_airflow.serving.server import serve; "
            f"serve({registry_uri!r}, {model_name!r}, port={self.port}, poll_interval=0.1, log_level='info')"
        )
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])),
        }
        self._log = open(log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [sys.executable, "-c", code],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=log_path.parent,
        )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_healthy(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"server exited with {self.process.returncode}:\n{self.log()}")
            try:
                if httpx.get(f"{self.url}/health", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"server not healthy after {timeout}s:\n{self.log()}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self._log.close()


def fitted_model_and_schema() -> tuple[Any, dict[str, Any], Any]:
    import pandas as pd
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    from mlops_airflow.data.schema import feature_schema

    n = 48
    frame = pd.DataFrame(
        {
            "hour": pd.Series([i % 24 for i in range(n)], dtype="int64"),
            "payment_type": pd.Series([("app", "card", "cash")[i % 3] for i in range(n)], dtype="str"),
        }
    )
    frame["tipped"] = ((frame["payment_type"] != "cash") & (frame["hour"] > 6)).astype("int64")
    pipeline = Pipeline(
        [
            (
                "pre",
                ColumnTransformer(
                    [
                        ("num", StandardScaler(), ["hour"]),
                        ("cat", OneHotEncoder(handle_unknown="ignore"), ["payment_type"]),
                    ]
                ),
            ),
            ("clf", LogisticRegression()),
        ]
    ).fit(frame[["hour", "payment_type"]], frame["tipped"])
    schema = feature_schema(frame, target="tipped", declared={"hour": {"min": 0, "max": 23}})
    return pipeline, schema, frame


@pytest.fixture
def server_factory(tmp_path: Path) -> Iterator[Any]:
    started: list[ServerProcess] = []

    def start(registry_uri: str, model_name: str) -> ServerProcess:
        server = ServerProcess(registry_uri, model_name, tmp_path / f"server-{len(started)}.log")
        started.append(server)
        return server

    try:
        yield start
    finally:
        for server in started:
            server.stop()


@pytest.fixture
def trained() -> tuple[Any, dict[str, Any], Any]:
    """A fitted pipeline, its feature schema and its training frame."""
    return fitted_model_and_schema()
