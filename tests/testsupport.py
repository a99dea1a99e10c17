"""Small helpers shared by tests (a plain module: conftest files are not importable by name)."""

from __future__ import annotations

import importlib.util
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
SAMPLE = REPO / "include" / "data"
SPEC = REPO / "include" / "trips_validation.yaml"
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise TimeoutError(f"nothing listening on port {port} after {timeout}s")


def eventually(check: Callable[[], Any], timeout: float = 30.0, what: str = "condition", interval: float = 0.05) -> Any:
    """Poll ``check`` until it returns something truthy (returned), or fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


class ServerProcess:
    """A model server started as a real child process, with its output kept in a log file."""

    def __init__(self, argv: list[str], port: int, log_path: Path, env: dict[str, str] | None = None) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.log_path = log_path
        self._log = open(log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(argv, stdout=self._log, stderr=subprocess.STDOUT, env=env, cwd=log_path.parent)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_healthy(self, timeout: float = 60.0) -> None:
        import httpx

        def healthy() -> bool:
            if self.process.poll() is not None:
                raise AssertionError(f"server exited with {self.process.returncode}:\n{self.log()}")
            try:
                return httpx.get(f"{self.url}/health", timeout=1).status_code == 200
            except httpx.TransportError:
                return False

        eventually(healthy, timeout, what=f"the server to answer /health; log:\n{self.log_path}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self._log.close()


def candidate_fields(**overrides: Any) -> dict[str, Any]:
    """A complete, schema-valid candidate record as the pipeline would write it (the registry adds the rest)."""
    from mlops_airflow.persistence import runtime_versions

    fields: dict[str, Any] = {
        "task_type": "binary",
        "target": "tipped",
        "estimator": "sklearn.linear_model.LogisticRegression",
        "estimator_params": {},
        "classes": [0, 1],
        "drop_columns": [],
        "feature_schema": {
            "format_version": 1,
            "target": {"name": "tipped", "dtype": "int64"},
            "columns": [{"name": "x", "kind": "numeric", "dtype": "float64", "nullable": False}],
        },
        "data": {"uri": "test://data.csv", "fingerprint": "sha256:" + "0" * 64, "rows": 100},
        "split": {"method": "hash", "fraction": 0.2, "train_rows": 80, "holdout_rows": 20},
        "metrics": {"accuracy": 1.0},
        "verdict": {"verdict_id": "test", "verdict_uri": "test://verdict.json", "outcome": "no_champion",
                    "blessed": True, "gate_source": "default"},
        "packages": runtime_versions(),
        "lineage": {},
    }
    fields.update(overrides)
    return fields


def load_dag(file_name: str) -> Any:
    """Import an example DAG file the way the DAG processor would, and return its DAG."""
    path = REPO / "dags" / file_name
    spec = importlib.util.spec_from_file_location(f"example_{path.stem}", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.dag
