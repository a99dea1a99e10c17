"""A real model server process on a free port, and a registry on disk it reads from."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from testsupport import BIN, ServerProcess, free_port

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

REPO_ROOT = Path(__file__).resolve().parents[3]


def start_server(registry_uri: str, model_name: str, log_path: Path) -> ServerProcess:
    """``serve(...)`` in a child Python with a fast alias poll, as `mlops-airflow serve` runs it."""
    port = free_port()
    code = (
        "from mlops_airflow.serving.server import serve; "
        f"serve({registry_uri!r}, {model_name!r}, port={port}, poll_interval=0.1, log_level='info')"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))}
    return ServerProcess([sys.executable, "-c", code], port, log_path, env=env)


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
        server = start_server(registry_uri, model_name, tmp_path / f"server-{len(started)}.log")
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


@pytest.fixture
def cli_server(tmp_path: Path) -> Iterator[Callable[..., ServerProcess]]:
    """``mlops-airflow --registry R serve ARGS...`` as a real process with a fast alias poll, healthy when returned."""
    started: list[ServerProcess] = []

    def start(registry_uri: str, *args: str, env: dict[str, str] | None = None) -> ServerProcess:
        port = free_port()
        argv = [str(BIN / "mlops-airflow"), "--registry", registry_uri, "serve", *args, "--port", str(port),
                "--poll-interval", "0.1"]
        server = ServerProcess(argv, port, tmp_path / f"serve-{len(started)}.log", env={**os.environ, **(env or {})})
        started.append(server)
        server.wait_healthy()
        return server

    yield start
    for server in started:
        server.stop()
