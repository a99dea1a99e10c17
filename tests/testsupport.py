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

    def assert_alive(self) -> None:
        if self.process.poll() is not None:
            raise AssertionError(f"{self.process.args[1] if len(self.process.args) > 1 else 'server'} exited with "
                                 f"{self.process.returncode}; its log ({self.log_path}):\n{self.log()[-4000:]}")

    def wait_answering(self, path: str, timeout: float = 60.0, *, ok: Callable[[int], bool] = lambda s: s < 500) -> None:
        """Wait until ``path`` answers a status ``ok`` accepts, failing at once (with the log) if the process died."""
        import httpx

        def answering() -> bool:
            self.assert_alive()
            try:
                return ok(httpx.get(f"{self.url}{path}", timeout=10).status_code)
            except httpx.TransportError:
                return False

        eventually(answering, timeout, what=f"{self.url}{path} to answer; log: {self.log_path}", interval=0.1)

    def wait_healthy(self, timeout: float = 120.0) -> None:
        self.wait_answering("/health", timeout, ok=lambda status: status == 200)

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


def trips_pipeline(*, numeric: list[str], categorical: list[str]) -> Any:
    """A pipeline factory for tests (allowlisted as ``testsupport.trips_pipeline``): own feature engineering."""
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline, make_pipeline
    from sklearn.preprocessing import OneHotEncoder, PolynomialFeatures, StandardScaler

    features = ColumnTransformer([
        ("interactions", make_pipeline(SimpleImputer(strategy="median"), StandardScaler(),
                                       PolynomialFeatures(degree=2, interaction_only=True)), numeric),
        ("onehot", OneHotEncoder(handle_unknown="ignore", sparse_output=False), categorical),
    ])
    return Pipeline([("features", features), ("clf", LogisticRegression(max_iter=500))])


def xcom_value(run: Any, task_id: str, key: str = "return_value") -> Any:
    """One XCom of a finished ``dag.test()`` run, read from the metadata DB."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        row = session.query(XComModel).filter_by(dag_id=run.dag_id, run_id=run.run_id, task_id=task_id, key=key).one()
        return XComModel.deserialize_value(row)


def asset_events(uri: str, run_id: str) -> list[dict[str, Any]]:
    """The asset events a run emitted for the asset ``uri`` (``extra`` and source task), from the metadata DB."""
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        rows = session.scalars(
            select(AssetEvent).join(AssetModel, AssetEvent.asset_id == AssetModel.id)
            .where(AssetModel.uri == uri, AssetEvent.source_run_id == run_id)
        ).all()
        return [{"extra": dict(row.extra), "source_task_id": row.source_task_id} for row in rows]


def unpause_dag(dag_id: str) -> None:
    """Parse the DAGs folder into the metadata DB and unpause ``dag_id``, as a user would.

    DAGs start paused, and a paused DAG is not queued by asset events.
    """
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.dag_processing.dagbag import BundleDagBag, sync_bag_to_db
    from airflow.models.dag import DagModel
    from airflow.utils.session import create_session

    manager = DagBundlesManager()
    manager.sync_bundles_to_db()
    bundle = manager.get_bundle("dags-folder")
    bundle.initialize()
    sync_bag_to_db(BundleDagBag(dag_folder=bundle.path, bundle_path=bundle.path, bundle_name=bundle.name),
                   bundle.name, bundle.version)
    with create_session() as session:
        model = session.get(DagModel, dag_id)
        assert model is not None, f"{dag_id} is not in the DAGs folder (or does not parse)"
        model.is_paused = False


def asset_queued_for(dag_id: str, uri: str) -> bool:
    """Whether an event of the asset ``uri`` waits to start ``dag_id`` (what the scheduler reads)."""
    from airflow.models.asset import AssetDagRunQueue, AssetModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        return session.scalar(
            select(AssetDagRunQueue).join(AssetModel, AssetDagRunQueue.asset_id == AssetModel.id)
            .where(AssetModel.uri == uri, AssetDagRunQueue.target_dag_id == dag_id)
        ) is not None


def serve_logging(model_server: Callable[[str], str], monkeypatch: Any, model: str) -> str:
    """Start a real model server for ``model`` that logs every row it answers, flushed quickly; its URL once ready."""
    import httpx

    monkeypatch.setenv("MLOPS_AIRFLOW_SERVER_LOG_SAMPLE_RATE", "1")
    monkeypatch.setenv("MLOPS_AIRFLOW_SERVER_LOG_FLUSH_SECONDS", "0.2")
    url = model_server(model)
    eventually(lambda: httpx.get(f"{url}/ready", timeout=60).status_code == 200, what=f"{model} to be served")
    return url


def send_rows(url: str, frame: Any, per_request: int = 50) -> list[str]:
    """POST ``frame``'s rows to ``url``/predict, ``per_request`` at a time; the ``X-Request-ID`` of each answer."""
    import json

    import httpx

    request_ids = []
    with httpx.Client(timeout=30) as client:
        for start in range(0, len(frame), per_request):
            rows = json.loads(frame.iloc[start: start + per_request].to_json(orient="records"))  # NaN -> null
            response = client.post(f"{url}/predict", json={"rows": rows})
            assert response.status_code == 200, response.text
            request_ids.append(response.headers["x-request-id"])
    return request_ids


def wait_logged(registry: Any, model: str, expected: int) -> None:
    """Wait for a model server's flush thread to have written ``expected`` rows of ``model``."""
    from mlops_airflow.serving.logs import read_prediction_logs

    eventually(lambda: len(read_prediction_logs(registry.store, model)) >= expected, what=f"{expected} logged rows")


def run_queued(batcher: Any, loaded: Any, bodies: list[dict[str, Any]],
               probabilities: list[bool] | None = None) -> list[Any]:
    """Queue every request before the batcher's thread starts, so that they meet in one batch."""
    import asyncio

    from mlops_airflow.serving.requests import parse_rows

    async def main() -> list[Any]:
        tasks = []
        for body, wants in zip(bodies, probabilities or [True] * len(bodies), strict=True):
            parsed = parse_rows(body, loaded.request_checker, frame=False)
            assert parsed.ok, parsed.errors
            tasks.append(asyncio.ensure_future(batcher.predict(loaded, parsed, probabilities=wants)))
        await asyncio.sleep(0.05)  # every task has queued its job
        batcher.start()
        try:
            return list(await asyncio.gather(*tasks))
        finally:
            batcher.stop()

    return asyncio.run(main())
