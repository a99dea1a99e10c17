"""People in the loop: the run waits for a person, who answers through Airflow's REST API."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from testsupport import BIN, SAMPLE, ServerProcess, eventually, free_port

from mlops_airflow.pipeline.summary import read_run

pytestmark = pytest.mark.integration
DAG_ID = "mlops_continuous_training"


@pytest.fixture
def api(airflow_db: Path, tmp_path: Path) -> Iterator[Any]:
    """A real `airflow api-server` on the test metadata DB, and a client holding its bearer token.

    A separate process, as in production: the API and the waiting `airflow dags test` share only
    the database. The simple auth manager runs in all-admins mode, so the token needs no password.
    """
    import os

    import httpx

    port = free_port()
    env = {**os.environ, "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
           "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{port}"}
    server = ServerProcess([str(BIN / "airflow"), "api-server", "--apps", "core", "-H", "127.0.0.1", "-p", str(port)],
                           port, tmp_path / "api-server.log", env=env)
    try:
        eventually(lambda: _answers(f"{server.url}/api/v2/version"), timeout=120, interval=0.5,
                   what=f"the api-server to start; log: {server.log_path}")
        client = httpx.Client(base_url=server.url, timeout=30)
        client.headers["Authorization"] = f"Bearer {client.get('/auth/token').json()['access_token']}"
        yield client
        client.close()
    finally:
        server.stop()


def _answers(url: str) -> bool:
    import httpx

    try:
        return httpx.get(url, timeout=2).status_code in (200, 401, 403)
    except httpx.TransportError:
        return False


def answer_when_asked(api: Any, proc: subprocess.Popen[Any], option: str, timeout: float = 240) -> dict[str, Any]:
    """Wait until the approve task asks, then answer it as a person would from the UI."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the run ended without waiting for approval"
        runs = api.get(f"/api/v2/dags/{DAG_ID}/dagRuns", params={"state": "running"}).json().get("dag_runs", [])
        for run in runs:
            path = f"/api/v2/dags/{DAG_ID}/dagRuns/{run['dag_run_id']}/taskInstances/approve/-1/hitlDetails"
            asked = api.get(path)
            if asked.status_code == 200 and asked.json().get("task_instance", {}).get("state") == "awaiting_input":
                assert "Approve trips_approval candidate" in asked.json()["subject"]
                assert "no champion yet" in asked.json()["body"]
                answered = api.patch(path, json={"chosen_options": [option]})
                assert answered.status_code == 200, answered.text
                return {"run_id": run["dag_run_id"], "answer": answered.json()}
        time.sleep(1)
    raise AssertionError("the approve task never asked")


@pytest.mark.parametrize("option", ["Approve", "Reject"])
def test_a_person_approves_or_rejects_through_the_api(
    option: str, api: Any, registry: Any, model_server: Any, tmp_path: Path
) -> None:
    model = "trips_approval"
    model_server()  # one server for every model: any model_name deploys to it
    conf = {"data_uri": str(SAMPLE / "trips_2026_01.csv"), "model_name": model,
            "gate": {"baseline": {"min_improvement": 0.02}, "policies": {"no_champion": "require_approval"}}}
    log = tmp_path / "dags-test.log"
    with open(log, "w") as out:  # a file, not a pipe: nobody reads a pipe while the run waits, and it would fill
        proc = subprocess.Popen([str(BIN / "airflow"), "dags", "test", DAG_ID, "-c", json.dumps(conf)],
                                stdout=out, stderr=subprocess.STDOUT, text=True)
        try:
            answered = answer_when_asked(api, proc, option)
            proc.wait(timeout=300)
        finally:
            if proc.poll() is None:
                proc.kill()
    assert proc.returncode == 0, log.read_text()[-3000:]
    record = read_run(registry, model, answered["run_id"])
    assert record["results"]["evaluate"]["requires_approval"] is True
    assert record["results"]["approve"]["approval"] == option.lower()
    if option == "Approve":
        manifest = registry.get_version(model, 1)
        decision = manifest["verdict"]["decision"]
        assert decision["kind"] == "approve" and decision["by"] == record["results"]["approve"]["by"]
        assert manifest["verdict"]["gate_blessed"] is False and registry.aliases(model) == {"champion": 1}
    else:
        assert (record["states"]["register"], record["states"]["deploy"]) == ("skipped", "skipped")
        assert registry.list_versions(model) == []


def test_override_of_a_rejection_is_audited_and_shown(registry: Any, build_version: Any, registry_uri: str) -> None:
    from mlops_airflow.pipeline.evaluate import run_evaluation
    from mlops_airflow.pipeline.register import run_registration
    from mlops_airflow.pipeline.train import run_training
    from mlops_airflow.pipeline.validate import run_validation

    summary = run_validation(registry, model_name="m", data_uri=str(SAMPLE / "trips_2026_01.csv"), target="tipped")
    candidate = run_training(registry, model_name="m", dataset_uri=summary["dataset_uri"], target="tipped", row_key="trip_id")
    verdict = run_evaluation(registry, model_name="m", candidate_sha256=candidate["sha256"],
                             gate={"thresholds": {"roc_auc": {"min": 0.99}}})
    assert verdict["blessed"] is False
    cli = [str(BIN / "mlops-airflow"), "--registry", registry_uri, "gate", "override", "m", "--candidate", candidate["sha256"]]
    too_short = subprocess.run([*cli, "--reason", "ok", "--by", "carol"], capture_output=True, text=True, timeout=60)
    assert too_short.returncode == 1 and "at least 10 characters" in too_short.stderr
    done = subprocess.run([*cli, "--reason", "holdout labels were wrong in March", "--by", "carol"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    manifest = run_registration(registry, model_name="m", candidate_sha256=candidate["sha256"],
                                verdict_uri=verdict["verdict_uri"], idempotency_key="k")
    assert manifest["verdict"]["decision"]["kind"] == "override"
    shown = subprocess.run([str(BIN / "mlops-airflow"), "--registry", registry_uri, "models", "show", "m"],
                           capture_output=True, text=True, timeout=60).stdout
    assert "override by carol at " in shown and "holdout labels were wrong in March" in shown
