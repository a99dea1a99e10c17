"""The example CT DAG through a real Airflow metadata DB: the user's story and every kind of bad input."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest
from testsupport import BIN, SAMPLE, load_dag

pytestmark = pytest.mark.integration
DAG_ID = "mlops_continuous_training"


def run_dag(conf: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """Run the DAG in-process with dag.test(); returns the run's state and its recorded summary."""
    from mlops_airflow.pipeline.summary import read_run
    from mlops_airflow.registry import ModelRegistry
    from mlops_airflow.settings import registry_uri
    from mlops_airflow.storage import open_store

    dag_run = load_dag(f"{DAG_ID}.py").test(run_conf=conf)
    record = read_run(ModelRegistry(open_store(registry_uri())), conf["model_name"], dag_run.run_id)
    return str(dag_run.state), record


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / "mlops-airflow"), *args], capture_output=True, text=True, timeout=60)


def test_continuous_training_story(airflow_db: Path, registry: Any, model_server: Any) -> None:
    model = "trips_story"
    url = model_server(model)
    assert httpx.get(f"{url}/ready", timeout=60).status_code == 503  # serving waits for a champion

    # Run 1 exactly as the README does it: the airflow CLI in a subprocess.
    first = subprocess.run(
        [str(BIN / "airflow"), "dags", "test", DAG_ID, "-c",
         json.dumps({"data_uri": str(SAMPLE / "trips_2026_01.csv"), "model_name": model})],
        capture_output=True, text=True, timeout=600,
    )
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    # task logs a person can read: skops' module scan through Airflow's deprecation shims and GX's
    # docs decorators used to add ~1,160 and ~214 lines to them
    output = first.stdout + first.stderr
    assert output.count("DeprecatedImportWarning") == 0 and "Skipping registering function" not in output
    assert registry.aliases(model) == {"champion": 1}
    v1 = registry.get_version(model, 1)
    assert v1["verdict"]["outcome"] == "no_champion" and v1["verdict"]["gate_source"] == "default"
    served = httpx.get(f"{url}/metadata", timeout=60).json()
    assert (served["version"], served["sha256"]) == (1, v1["sha256"])

    # Run 2 on both batches: a real challenger, compared with v1 on the same holdout.
    state, record = run_dag({"data_uri": str(SAMPLE / "trips_2026_*.csv"), "model_name": model})
    assert state == "success"
    verdict = record["results"]["evaluate"]
    assert verdict["champion_version"] == 1
    assert {c["kind"] for c in verdict["checks"]} == {"baseline", "champion"}
    if verdict["blessed"]:
        assert registry.aliases(model) == {"champion": 2}
        assert record["states"]["deploy"] == "success"
    else:
        assert registry.aliases(model) == {"champion": 1}
        assert record["states"]["register"] == "skipped"
    champion = registry.get_alias(model, "champion")["version"]
    reply = httpx.post(f"{url}/predict", json={"rows": [
        {"hour": 22, "day_of_week": "fri", "pickup_zone": "airport", "passengers": 1, "trip_distance_km": 18.5,
         "trip_duration_min": 31.0, "fare_usd": 46.5, "payment_type": "card"}]}, timeout=60)
    assert reply.status_code == 200 and reply.json()["version"] == champion
    assert len(reply.json()["probabilities"][0]) == 2
    bad = httpx.post(f"{url}/predict", json={"rows": [{"hour": 77}]}, timeout=60)
    assert bad.status_code == 422 and "hour=77 is outside [0, 23]" in bad.json()["detail"]["errors"]

    # Run 3: a gate this model cannot pass. Rejection is a normal outcome: green, nothing promoted.
    versions = registry.list_versions(model)
    state, record = run_dag({"data_uri": str(SAMPLE / "trips_2026_*.csv"), "model_name": model,
                             "gate": {"thresholds": {"roc_auc": {"min": 0.99}}}})
    assert state == "success"
    assert (record["states"]["register"], record["states"]["deploy"]) == ("skipped", "skipped")
    assert record["results"]["evaluate"]["blessed"] is False
    assert "roc_auc = " in record["results"]["evaluate"]["reason"]
    assert registry.list_versions(model) == versions
    assert registry.get_alias(model, "champion")["version"] == champion

    # Run 4: the same rejection with on_fail: fail, for teams that want alerts.
    state, record = run_dag({"data_uri": str(SAMPLE / "trips_2026_*.csv"), "model_name": model,
                             "gate": {"thresholds": {"roc_auc": {"min": 0.99}}, "on_fail": "fail"}})
    assert state == "failed"
    assert record["states"]["evaluate"] == "failed"
    assert registry.get_alias(model, "champion")["version"] == champion

    # The CLI shows what the runs made.
    listing = json.loads(cli("models", "list", "--json").stdout)
    assert [row["name"] for row in listing] == [model]
    shown = json.loads(cli("models", "show", model, "--alias", "champion", "--json").stdout)
    assert {"name", "version", "aliases", "metrics", "lineage"} <= set(shown)
    assert shown["version"] == champion and shown["aliases"] == ["champion"]
    assert shown["lineage"]["train"]["dag_id"] == DAG_ID and shown["metrics"]["roc_auc"] > 0.6
    missing = cli("models", "show", "nope", "--json")
    assert missing.returncode == 1 and "no model named 'nope'" in missing.stderr
    assert "STOPPED at evaluate" in cli("runs", "show", model).stdout


def _write(tmp_path: Path, name: str, content: bytes) -> str:
    path = tmp_path / name
    path.write_bytes(content)
    return str(path)


def _csv_with(tmp_path: Path, column: str, row: int, value: str) -> str:
    import pandas as pd

    frame = pd.read_csv(SAMPLE / "trips_2026_01.csv").astype({column: object})
    frame.loc[row, column] = value
    path = tmp_path / "bad.csv"
    frame.to_csv(path, index=False)
    return str(path)


BAD_INPUTS = {
    "missing file": (lambda t: str(t / "nowhere.csv"), {}, "validate", "data file not found"),
    "empty file": (lambda t: _write(t, "empty.csv", b""), {}, "validate", "is empty"),
    "corrupt csv": (lambda t: _write(t, "corrupt.csv", b'hour,tipped\n1,0\n"2,1\n3,0,9,9\n'), {}, "validate",
                    "not a readable CSV"),
    "corrupt parquet": (lambda t: _write(t, "corrupt.parquet", b"PAR1 this is not parquet"), {}, "validate",
                        "not a readable Parquet"),
    "target missing": (lambda t: str(SAMPLE / "trips_2026_01.csv"), {"target": "tip_amount"}, "validate",
                       "target column 'tip_amount' is not in the data"),
    "text in numeric column": (lambda t: _csv_with(t, "fare_usd", 5, "twelve"), {}, "validate", "twelve"),
    "out of range": (lambda t: _csv_with(t, "hour", 7, "77"), {}, "validate", "hour"),
    "unknown gate metric": (lambda t: str(SAMPLE / "trips_2026_01.csv"),
                            {"gate": {"thresholds": {"auroc": {"min": 0.5}}}}, "evaluate", "unknown metric 'auroc'"),
    "empty gate": (lambda t: str(SAMPLE / "trips_2026_01.csv"), {"gate": {}}, "evaluate",
                   "empty gate is never blessed"),
    "estimator not allowed": (lambda t: str(SAMPLE / "trips_2026_01.csv"), {"estimator": "os.system"}, "train",
                              "not on the allowlist"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_stops_at_its_stage_and_leaves_the_champion(
    case: str, airflow_db: Path, registry: Any, build_version: Any, tmp_path: Path
) -> None:
    model = "trips_guarded"
    build_version(model, str(SAMPLE / "trips_2026_01.csv"))
    make_uri, conf, stage, message = BAD_INPUTS[case]
    state, record = run_dag({"data_uri": make_uri(tmp_path), "model_name": model, **conf})
    assert state == "failed"
    assert record["states"][stage] == "failed"
    assert message in record["results"][stage]["error"]
    assert record["states"]["register"] in ("upstream_failed", "skipped")
    assert registry.list_versions(model) == [1]
    assert registry.get_alias(model, "champion")["version"] == 1


@pytest.mark.parametrize(("param", "stage"), [("validation", "validate"), ("gate", "evaluate")])
def test_a_spec_param_cannot_read_the_workers_files(
    param: str, stage: str, airflow_db: Path, registry: Any, capfd: pytest.CaptureFixture[str]
) -> None:
    """`-c '{"validation": "/etc/passwd"}'` is refused by its path: nothing of the file reaches a log, XCom or record."""
    from testsupport import xcom_value

    from mlops_airflow.pipeline.summary import read_run

    model = f"trips_snooped_{param}"
    dag_run = load_dag(f"{DAG_ID}.py").test(run_conf={
        "data_uri": str(SAMPLE / "trips_2026_01.csv"), "model_name": model, param: "/etc/passwd"})
    assert str(dag_run.state) == "failed"
    record = read_run(registry, model, dag_run.run_id)
    assert record["states"][stage] == "failed"
    error = xcom_value(dag_run, stage, "error")
    kind = "GateSpecError" if param == "gate" else "ValidationSpecError"
    assert error.startswith(f"{kind}: {param}: '/etc/passwd' is outside the folders spec files are read from")
    assert "MLOPS_AIRFLOW_SPEC_ROOTS" in error and record["results"][stage]["error"] == error
    seen = json.dumps(record) + error + "".join(capfd.readouterr())
    leaked = [line for line in Path("/etc/passwd").read_text().splitlines() if line.strip() and line in seen]
    assert leaked == []
    assert registry.list_versions(model) == []


def test_unwritable_registry_fails_validation_and_registers_nothing(
    airflow_db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the registry folder should be")
    monkeypatch.setenv("MLOPS_AIRFLOW_REGISTRY_URI", str(blocker / "registry"))
    dag_run = load_dag(f"{DAG_ID}.py").test(run_conf={"model_name": "trips_blocked"})
    assert str(dag_run.state) == "failed"
    states = {ti.task_id: str(ti.state) for ti in dag_run.get_task_instances()}
    assert states["validate"] == "failed" and states["register"] == "upstream_failed"


def synthetic_csv(tmp_path: Path, task: str) -> tuple[str, str]:
    """A user's own table: numeric, text and categorical columns with holes, and a target per task."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(7)
    n = 600
    size = rng.gamma(2.0, 2.0, n)
    color = rng.choice(["red", "green", "blue"], n)
    frame = pd.DataFrame({
        "id": np.arange(n),
        "size": size,
        "color": color,
        "city": rng.choice(["Lyon", "Oslo", None], n),
        "note": rng.choice(["fragile item", "express", "gift wrap please"], n),
    })
    score = size + np.select([color == "red", color == "green"], [2.0, -1.0], 0.0) + rng.normal(0, 0.5, n)
    if task == "multiclass":
        frame["segment"] = np.select([score < 2.5, score < 5.0], ["bronze", "silver"], "gold")
        target = "segment"
    else:
        frame["price"] = 10 + 3 * score
        target = "price"
    path = tmp_path / f"{task}.csv"
    frame.to_csv(path, index=False)
    return str(path), target


@pytest.mark.parametrize("task", ["multiclass", "regression"])
def test_own_csv_trains_any_task_without_code_changes(
    task: str, airflow_db: Path, registry: Any, model_server: Any, tmp_path: Path
) -> None:
    model = f"own_{task}"
    url = model_server(model)
    data_uri, target = synthetic_csv(tmp_path, task)
    # No validation spec (the minimal check), no gate (the bundled default), estimator auto.
    state, record = run_dag({"data_uri": data_uri, "target": target, "model_name": model,
                             "row_key": "id", "validation": None})
    assert state == "success", record
    assert record["results"]["train"]["task_type"] == task
    verdict = record["results"]["evaluate"]
    assert verdict["gate_source"] == "default" and verdict["blessed"] is True
    assert verdict["primary_metric"] == ("balanced_accuracy" if task == "multiclass" else "r2")
    assert registry.aliases(model) == {"champion": 1}
    reply = httpx.post(f"{url}/predict", json={"rows": [
        {"id": 1, "size": 3.0, "color": "red", "city": "Oslo", "note": "express"}]}, timeout=60)
    # The row key is not a feature: the server names it instead of guessing.
    assert reply.status_code == 422 and 'unknown column "id"' in reply.json()["detail"]["errors"][0]
    reply = httpx.post(f"{url}/predict", json={"rows": [{"size": 3.0, "color": "red", "city": None, "note": "express"}]}, timeout=60)
    assert reply.status_code == 200, reply.text
    prediction = reply.json()["predictions"][0]
    assert prediction in {"bronze", "silver", "gold"} if task == "multiclass" else isinstance(prediction, float)


def test_s3_registry_and_data_through_an_airflow_connection(
    airflow_db: Path, s3_endpoint: str, s3_client: Any, s3_bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The production shape: data and registry on S3, endpoint and keys from the `mlops_s3` connection."""
    import os

    from testsupport import ServerProcess, free_port

    from mlops_airflow.registry import ModelRegistry
    from mlops_airflow.storage import open_store

    registry_uri = f"s3://{s3_bucket}/registry"
    s3_client.upload_file(str(SAMPLE / "trips_2026_01.csv"), s3_bucket, "landing/trips_2026_01.csv")
    monkeypatch.setenv("MLOPS_AIRFLOW_REGISTRY_URI", registry_uri)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)  # the tasks must take the endpoint from the connection
    monkeypatch.setenv("AIRFLOW_CONN_MLOPS_S3", json.dumps({
        "conn_type": "mlops_s3", "login": "testing", "password": "testing",
        "extra": {"endpoint_url": s3_endpoint, "region_name": "us-east-1"},
    }))
    port = free_port()
    server = ServerProcess(
        [str(BIN / "mlops-airflow"), "--registry", registry_uri, "serve", "trips_s3", "--port", str(port)],
        port, tmp_path / "server.log", env={**os.environ, "AWS_ENDPOINT_URL": s3_endpoint},  # the CLI: AWS environment
    )
    try:
        server.wait_healthy()
        monkeypatch.setenv("MLOPS_AIRFLOW_SERVER_URL", server.url)
        dag_run = load_dag(f"{DAG_ID}.py").test(run_conf={
            "data_uri": f"s3://{s3_bucket}/landing/trips_2026_01.csv", "model_name": "trips_s3"})
        assert str(dag_run.state) == "success", server.log()[-2000:]
        registry = ModelRegistry(open_store(registry_uri, s3_client=s3_client))
        assert registry.aliases("trips_s3") == {"champion": 1}
        assert registry.get_version("trips_s3", 1)["artifact_uri"].startswith(registry_uri)
        assert httpx.get(f"{server.url}/metadata", timeout=60).json()["version"] == 1
    finally:
        server.stop()


def test_two_models_of_one_deployment_deploy_to_one_server(airflow_db: Path, registry: Any, model_server: Any,
                                                           tmp_path: Path) -> None:
    """The README's own-data example beside the sample model: both deploy to `mlops-airflow serve`, both answer."""
    import numpy as np
    import pandas as pd

    url = model_server()  # every model of the registry
    rng = np.random.default_rng(5)
    churn = pd.DataFrame({"customer_id": np.arange(600), "tenure_months": rng.integers(1, 72, 600),
                          "monthly_usd": rng.normal(60, 20, 600).round(2), "plan": rng.choice(["basic", "pro"], 600)})
    churn["churned"] = ((churn["tenure_months"] < 12) ^ (rng.random(600) < 0.15)).astype(int)
    churn.to_csv(tmp_path / "churn.csv", index=False)
    state, _ = run_dag({"data_uri": str(tmp_path / "churn.csv"), "target": "churned", "model_name": "churn",
                        "estimator": "sklearn.ensemble.RandomForestClassifier", "estimator_params": {"n_estimators": 30},
                        "row_key": "customer_id", "validation": None})
    assert state == "success"
    state, _ = run_dag({"data_uri": str(SAMPLE / "trips_2026_01.csv"), "model_name": "trips_shared"})
    assert state == "success"
    answers = {
        "churn": httpx.post(f"{url}/models/churn/predict",
                            json={"row": {"tenure_months": 3, "monthly_usd": 80.0, "plan": "pro"}}, timeout=30),
        "trips_shared": httpx.post(f"{url}/models/trips_shared/predict", json={"row": {
            "hour": 22, "day_of_week": "fri", "pickup_zone": "airport", "passengers": 1, "trip_distance_km": 18.5,
            "trip_duration_min": 31.0, "fare_usd": 46.5, "payment_type": "card"}}, timeout=30),
    }
    for name, answer in answers.items():
        assert answer.status_code == 200, answer.text
        assert (answer.json()["model_name"], answer.json()["version"]) == (name, 1)
    loaded = {m["model_name"] for m in httpx.get(f"{url}/models", timeout=10).json()["loaded"]}
    assert loaded == {"churn", "trips_shared"}
