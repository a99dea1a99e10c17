"""The MLflow backend end to end, against a real `mlflow server` (SQLite store, artifacts on the test S3 server).

The CT stage functions run on an ``mlflow+http://`` registry: training and evaluation are
logged as runs (params, metrics, dataset with our fingerprint as digest, verdict, reports),
the version is created from the training run, ``mlops-airflow serve`` serves it by alias,
and a tampered artifact in MLflow's artifact store is refused.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import httpx
import pytest
from testsupport import BIN, SAMPLE, SPEC, ServerProcess, eventually, free_port

from mlops_airflow.exceptions import ModelNotFound, StorageError, UnsafeModelError
from mlops_airflow.pipeline.evaluate import run_evaluation
from mlops_airflow.pipeline.register import read_verdict, run_registration
from mlops_airflow.pipeline.train import run_training
from mlops_airflow.pipeline.validate import run_validation
from mlops_airflow.registry import open_registry
from mlops_airflow.serving.loading import load_manifest_model

pytestmark = pytest.mark.integration
ROW = {"hour": 22, "day_of_week": "fri", "pickup_zone": "airport", "passengers": 1, "trip_distance_km": 18.5,
       "trip_duration_min": 31.0, "fare_usd": 46.5, "payment_type": "card"}


def ct_run(registry: Any, key: str, **training: Any) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """Validate, train, gate and register one version through the stage functions; (candidate, verdict, manifest)."""
    data = str(SAMPLE / "trips_2026_01.csv")
    summary = run_validation(registry, model_name="trips", data_uri=data, target="tipped", validation=str(SPEC))
    candidate = run_training(registry, model_name="trips", dataset_uri=summary["dataset_uri"], target="tipped",
                             row_key="trip_id", **training)
    # Baseline only: the second version must register whether or not it beats the first.
    verdict = run_evaluation(registry, model_name="trips", candidate_sha256=candidate["sha256"],
                             gate={"baseline": {"min_improvement": 0.0}})
    manifest = run_registration(registry, model_name="trips", candidate_sha256=candidate["sha256"],
                                verdict_uri=verdict["verdict_uri"], idempotency_key=key)
    return candidate, verdict, manifest


def downloaded_json(client: Any, run_id: str, path: str, tmp_path: Path) -> Any:
    return json.loads(Path(client.download_artifacts(run_id, path, str(tmp_path))).read_text())


def test_ct_stages_on_mlflow_track_runs_link_versions_and_serve_by_alias(
    mlflow_registry_uri: str, s3_endpoint: str, s3_client: Any, tmp_path: Path
) -> None:
    registry = open_registry(mlflow_registry_uri, s3_client=s3_client)
    client = registry.client
    candidate, verdict, manifest = ct_run(registry, "ct/run-1/register/-1")
    assert manifest["version"] == 1 and registry.get_version("trips", 1) == manifest

    # The version is MLflow's, created from the training run, which is fully tracked.
    mv = client.get_model_version("trips", "1")
    train = client.get_run(mv.run_id)
    assert train.data.tags["mlops.stage"] == "train"
    assert train.data.tags["mlops.candidate_sha256"] == candidate["sha256"] == manifest["sha256"]
    assert train.data.tags["mlops.registered_version"] == "1"
    assert train.data.params["target"] == "tipped" and train.data.params["row_key"] == "trip_id"
    assert train.data.metrics["rows"] == candidate["data"]["rows"]
    (dataset,) = train.inputs.dataset_inputs
    fingerprint = candidate["data"]["fingerprint"]
    assert dataset.dataset.digest == fingerprint.rsplit(":", 1)[-1][:32]  # MLflow caps digests at 36 characters
    assert {t.key: t.value for t in dataset.tags}["mlops.data_fingerprint"] == fingerprint
    artifacts = {a.path for a in client.list_artifacts(train.info.run_id)}
    assert {"candidate.json", "reports", "model"} <= artifacts
    assert {a.path for a in client.list_artifacts(train.info.run_id, "reports")} == {"reports/validation.html"}
    assert downloaded_json(client, train.info.run_id, "candidate.json", tmp_path)["sha256"] == candidate["sha256"]

    # The evaluation run holds the verdict exactly as stored, its outcome as a tag and the gate report.
    evaluate = client.get_run(mv.tags["mlops.evaluate_run_id"])
    assert evaluate.data.tags["mlops.verdict_outcome"] == verdict["outcome"]
    assert evaluate.data.tags["mlops.train_run_id"] == train.info.run_id
    stored = read_verdict(registry, verdict["verdict_uri"])
    assert downloaded_json(client, evaluate.info.run_id, "verdict.json", tmp_path / "v") == stored
    assert evaluate.data.metrics["roc_auc"] == pytest.approx(stored["metrics"]["candidate"]["roc_auc"])
    assert "reports/gate.html" in {a.path for a in client.list_artifacts(evaluate.info.run_id, "reports")}

    # A retried registration (same key, same candidate) finds its version instead of making another.
    again = run_registration(registry, model_name="trips", candidate_sha256=candidate["sha256"],
                             verdict_uri=verdict["verdict_uri"], idempotency_key="ct/run-1/register/-1")
    assert again == manifest
    assert len(client.search_model_versions("name = 'trips'")) == 1

    # Serve by alias from the MLflow registry; a second version with a tampered artifact is refused.
    registry.set_alias("trips", "champion", 1, expected=None, by="test", reason="first")
    assert client.get_model_version_by_alias("trips", "champion").version == "1"
    _, _, second = ct_run(registry, "ct/run-2/register/-1", estimator="sklearn.linear_model.LogisticRegression",
                          estimator_params={"C": 0.05})
    assert second["version"] == 2 and second["sha256"] != manifest["sha256"]

    port = free_port()
    server = ServerProcess([str(BIN / "mlops-airflow"), "--registry", mlflow_registry_uri, "serve", "trips",
                            "--port", str(port)], port, tmp_path / "server.log",
                           env={**os.environ, "AWS_ENDPOINT_URL": s3_endpoint})
    try:
        server.wait_healthy(timeout=120)
        eventually(lambda: httpx.get(f"{server.url}/ready", timeout=60).status_code == 200, 120, what="version 1 to load")
        reply = httpx.post(f"{server.url}/predict", json={"rows": [ROW]}, timeout=60)
        assert reply.status_code == 200 and reply.json()["version"] == 1

        tamper_mlflow_artifact(s3_client, client, second)
        with pytest.raises(UnsafeModelError, match="sha256"):
            load_manifest_model(registry, second)
        registry.set_alias("trips", "champion", 2, expected=1, by="test", reason="tampered")

        def refused() -> bool:
            body = httpx.get(f"{server.url}/ready", timeout=60).json()
            return "sha256" in str(body.get("last_error"))

        eventually(refused, 60, what="the tampered version 2 to be refused")
        reply = httpx.post(f"{server.url}/predict", json={"rows": [ROW]}, timeout=60)
        assert reply.status_code == 200 and reply.json()["version"] == 1  # still the verified version
    finally:
        server.stop()


def tamper_mlflow_artifact(s3_client: Any, client: Any, manifest: dict[str, Any]) -> None:
    """Overwrite the version's model bytes where MLflow's server keeps them (the artifact bucket on S3)."""
    mv = client.get_model_version(manifest["model_name"], str(manifest["version"]))
    suffix = f"{mv.run_id}/artifacts/model/model.skops"
    for bucket in (b["Name"] for b in s3_client.list_buckets()["Buckets"] if b["Name"].startswith("mlflow-")):
        for item in s3_client.list_objects_v2(Bucket=bucket).get("Contents", []):
            if item["Key"].endswith(suffix):
                body = s3_client.get_object(Bucket=bucket, Key=item["Key"])["Body"].read()
                s3_client.put_object(Bucket=bucket, Key=item["Key"], Body=body[:-16] + b"\0" * 16)
                return
    raise AssertionError(f"no object ending {suffix} on the S3 server")


class _CrashBeforeCommit:
    """A real MlflowClient whose first commit tag is lost: the process 'dies' between MLflow's create and our tag."""

    def __init__(self, real: Any) -> None:
        self.real = real
        self.crashed = False

    def set_model_version_tag(self, name: str, version: str, key: str, value: str) -> None:
        from mlflow.exceptions import MlflowException

        if key == "mlops.manifest" and not self.crashed:
            self.crashed = True
            raise MlflowException("connection reset by peer")
        self.real.set_model_version_tag(name, version, key, value)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


def test_a_crash_before_the_commit_tag_leaves_nothing_visible_and_the_retry_completes_it(
    mlflow_registry_uri: str, s3_client: Any
) -> None:
    from testsupport import candidate_fields

    plain = open_registry(mlflow_registry_uri, s3_client=s3_client)
    crashing = open_registry(mlflow_registry_uri, s3_client=s3_client, mlflow_client=_CrashBeforeCommit(plain.client))
    record = crashing.put_artifact("m", b"model-bytes", candidate_fields())
    with pytest.raises(StorageError, match="commit the manifest"):
        crashing.register("m", record, idempotency_key="dag/run/register/-1")
    assert plain.list_versions("m") == []  # MLflow has a version 1, but it was never committed
    with pytest.raises(ModelNotFound, match="not committed by mlops-airflow"):
        plain.get_version("m", 1)

    retried = crashing.register("m", record, idempotency_key="dag/run/register/-1")
    assert retried["version"] == 1 and plain.list_versions("m") == [1]
    assert len(plain.client.search_model_versions("name = 'm'")) == 1  # completed, not duplicated
    assert plain.read_artifact("m", record["sha256"]) == b"model-bytes"  # read back from MLflow's artifacts


def test_versions_made_outside_mlops_airflow_are_ignored_and_never_reused(
    mlflow_registry_uri: str, s3_client: Any
) -> None:
    from testsupport import candidate_fields

    registry = open_registry(mlflow_registry_uri, s3_client=s3_client)
    registry.client.create_registered_model("m")
    registry.client.create_model_version("m", "s3://elsewhere/model", tags={"made": "by hand"})
    ours = registry.register("m", registry.put_artifact("m", b"x", candidate_fields()), idempotency_key="k")
    assert ours["version"] == 2 and registry.list_versions("m") == [2]
    assert registry.resolve("m") == ours


def test_tracking_alone_logs_runs_for_the_built_in_registry(
    mlflow_server: str, mlflow_registry_uri: str, build_version: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlflow import MlflowClient

    monkeypatch.setenv("MLOPS_AIRFLOW_MLFLOW_TRACKING_URI", mlflow_server)
    manifest = build_version("tracked", str(SAMPLE / "trips_2026_01.csv"), promote=False)  # local registry
    client = MlflowClient(tracking_uri=mlflow_server)
    experiment = client.get_experiment_by_name("mlops-airflow/tracked")
    runs = {r.data.tags["mlops.stage"]: r for r in client.search_runs([experiment.experiment_id])}
    assert set(runs) == {"train", "evaluate"}
    for run in runs.values():
        assert run.data.tags["mlops.candidate_sha256"] == manifest["sha256"]
        assert run.data.tags["mlops.registered_version"] == "1"
        assert run.info.status == "FINISHED"
    assert runs["evaluate"].data.tags["mlops.verdict_outcome"] == manifest["verdict"]["outcome"]
