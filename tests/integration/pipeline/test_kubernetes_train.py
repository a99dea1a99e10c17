"""Training in a pod: the pod spec the operator builds, and the entrypoint it runs giving the same candidate."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from testsupport import SAMPLE, SPEC

from mlops_airflow.data.snapshot import read_snapshot
from mlops_airflow.evaluation.evaluate import load_registered, split_for
from mlops_airflow.exceptions import ConfigError, RegistryError
from mlops_airflow.pipeline.entrypoint import check_request, read_claim, run_request
from mlops_airflow.pipeline.evaluate import run_evaluation
from mlops_airflow.pipeline.train import run_training
from mlops_airflow.pipeline.validate import run_validation
from mlops_airflow.registry import ModelRegistry
from mlops_airflow.storage import open_store

pytestmark = pytest.mark.integration
JAN = str(SAMPLE / "trips_2026_01.csv")
CONN = {"conn_type": "mlops_s3", "login": "AKIAEXAMPLEKEY", "password": "very-secret-value",
        "extra": {"endpoint_url": "http://minio.storage:9000", "region_name": "eu-west-1"}}


def fake_context(try_number: int = 1) -> dict[str, Any]:
    ti = SimpleNamespace(dag_id="ct", run_id="manual__1", task_id="train", map_index=-1, try_number=try_number)
    return {"ti": ti, "run_id": ti.run_id, "dag": SimpleNamespace(), "params": {"model_name": "trips"}}


def test_the_pod_spec_runs_the_entrypoint_with_resources_secrets_and_no_inline_credentials(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import kubernetes_validate
    from airflow.providers.cncf.kubernetes.secret import Secret
    from kubernetes.client import ApiClient
    from kubernetes.client import models as k8s

    from mlops_airflow.operators.kubernetes_train import KubernetesTrainOperator

    monkeypatch.setenv("MLOPS_AIRFLOW_REGISTRY_URI", "s3://models/registry")
    monkeypatch.setenv("AIRFLOW_CONN_MLOPS_S3", json.dumps(CONN))
    worker_allowlists(monkeypatch, estimators="", factories="")
    op = KubernetesTrainOperator(
        task_id="train", model_name="trips", dataset_uri="s3://models/registry/trips/datasets/x/dataset.json",
        target="tipped", estimator="sklearn.linear_model.LogisticRegression", estimator_params={"max_iter": 300},
        search_space={"C": [0.1, 1.0]}, image="registry.example/mlops-airflow:1.0", namespace="ml",
        container_resources=k8s.V1ResourceRequirements(requests={"cpu": "2", "memory": "4Gi"}, limits={"memory": "4Gi"}),
        service_account_name="trainer", node_selector={"pool": "cpu-large"}, credentials_secret="s3-credentials",
        secrets=[Secret("volume", "/etc/ca", "corporate-ca")], env_vars={"OMP_NUM_THREADS": "2"},
    )
    pod = op.build_pod_request_obj(fake_context(try_number=2), dry_run=True)
    manifest = ApiClient().sanitize_for_serialization(pod)
    kubernetes_validate.validate(manifest, "1.30", strict=True)
    spec, (container,) = manifest["spec"], manifest["spec"]["containers"]
    assert container["image"] == "registry.example/mlops-airflow:1.0"
    assert container["command"] == ["python", "-m", "mlops_airflow.training"]
    request = json.loads(container["args"][0])
    assert request["claim"] == "ct/manual__1/train/-1/try-2"
    assert (request["model_name"], request["target"], request["search_space"]) == ("trips", "tipped", {"C": [0.1, 1.0]})
    assert request["estimator_params"] == {"max_iter": 300} and request["lineage"]["run_id"] == "manual__1"
    # As in-process training: the manifest will say how to retrain this model (this DAG, this run's Params).
    assert request["lineage"]["trigger"] == {"dag_id": "ct", "conf": {"model_name": "trips"}}
    check_request(request)  # what the entrypoint will accept
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env == {"OMP_NUM_THREADS": "2", "MLOPS_AIRFLOW_REGISTRY_URI": "s3://models/registry",
                   "AWS_ENDPOINT_URL": "http://minio.storage:9000", "AWS_DEFAULT_REGION": "eu-west-1",
                   "MLOPS_AIRFLOW_ESTIMATOR_ALLOWLIST": "", "MLOPS_AIRFLOW_PIPELINE_FACTORY_ALLOWLIST": ""}
    assert container["envFrom"] == [{"secretRef": {"name": "s3-credentials"}}]
    assert container["resources"] == {"requests": {"cpu": "2", "memory": "4Gi"}, "limits": {"memory": "4Gi"}}
    assert spec["nodeSelector"] == {"pool": "cpu-large"} and spec["serviceAccountName"] == "trainer"
    assert spec["restartPolicy"] == "Never" and manifest["metadata"]["namespace"] == "ml"
    assert [v["secret"]["secretName"] for v in spec["volumes"]] == ["corporate-ca"]
    assert manifest["metadata"]["labels"]["try_number"] == "2"
    text = json.dumps(manifest)
    assert CONN["password"] not in text and CONN["login"] not in text  # the connection's keys never reach the spec
    # Building again (a retry) does not stack environment variables.
    again = op.build_pod_request_obj(fake_context(), dry_run=True)
    assert [e.name for e in again.spec.containers[0].env] == list(env)


def worker_allowlists(monkeypatch: pytest.MonkeyPatch, *, estimators: str, factories: str) -> None:
    """The worker's [mlops_airflow] allowlists, as Airflow's config gives them (not the MLOPS_AIRFLOW_ variables)."""
    for key in ("ESTIMATOR_ALLOWLIST", "PIPELINE_FACTORY_ALLOWLIST"):
        monkeypatch.delenv(f"MLOPS_AIRFLOW_{key}", raising=False)
    monkeypatch.setenv("AIRFLOW__MLOPS_AIRFLOW__ESTIMATOR_ALLOWLIST", estimators)
    monkeypatch.setenv("AIRFLOW__MLOPS_AIRFLOW__PIPELINE_FACTORY_ALLOWLIST", factories)


def test_the_pod_gets_the_workers_allowlists_and_env_vars_cannot_replace_them(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from mlops_airflow.operators.kubernetes_train import KubernetesTrainOperator

    monkeypatch.setenv("MLOPS_AIRFLOW_REGISTRY_URI", str(tmp_path / "registry"))
    worker_allowlists(monkeypatch, estimators="mypkg.models.Fancy, mypkg.models.Other",
                      factories="mypkg.pipelines.trips")
    base = {"task_id": "train", "model_name": "trips", "dataset_uri": "d", "target": "tipped", "image": "i"}
    pod = KubernetesTrainOperator(**base, env_vars={"OMP_NUM_THREADS": "2"}).build_pod_request_obj(
        fake_context(), dry_run=True)
    env = {e.name: e.value for e in pod.spec.containers[0].env}
    assert env["MLOPS_AIRFLOW_ESTIMATOR_ALLOWLIST"] == "mypkg.models.Fancy,mypkg.models.Other"
    assert env["MLOPS_AIRFLOW_PIPELINE_FACTORY_ALLOWLIST"] == "mypkg.pipelines.trips"
    assert env["OMP_NUM_THREADS"] == "2"
    for key in ("MLOPS_AIRFLOW_PIPELINE_FACTORY_ALLOWLIST", "MLOPS_AIRFLOW_ESTIMATOR_ALLOWLIST",
                "MLOPS_AIRFLOW_REGISTRY_URI"):
        op = KubernetesTrainOperator(**base, env_vars={key: "evil.module.factory"})
        with pytest.raises(ValueError, match=f"env_vars: {key} is set by the operator"):
            op.build_pod_request_obj(fake_context(), dry_run=True)


@pytest.mark.parametrize(("arguments", "message"), [
    ({"env_vars": {"MLOPS_AIRFLOW_ESTIMATOR_ALLOWLIST": "os.system"}}, "env_vars: MLOPS_AIRFLOW_ESTIMATOR_ALLOWLIST"),
    ({"estimator_params": "max_iter=5"}, "estimator_params must be a mapping"),
    ({"tuning": [1]}, "tuning must be a mapping"),
])
def test_bad_arguments_fail_the_task_for_good_before_any_pod(
    arguments: dict[str, Any], message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow.sdk.exceptions import AirflowFailException

    from mlops_airflow.operators.kubernetes_train import KubernetesTrainOperator

    monkeypatch.setenv("MLOPS_AIRFLOW_REGISTRY_URI", str(tmp_path / "registry"))
    monkeypatch.setattr(KubernetesTrainOperator, "execute_sync", lambda self, context: pytest.fail("a pod was run"))
    op = KubernetesTrainOperator(task_id="train", model_name="trips", dataset_uri="d", target="tipped", image="i",
                                 **arguments)
    with pytest.raises(AirflowFailException, match=message):
        op.execute(fake_context())


def test_conflicting_pod_arguments_are_refused() -> None:
    from mlops_airflow.operators.kubernetes_train import KubernetesTrainOperator

    base = {"task_id": "t", "model_name": "m", "dataset_uri": "d", "target": "y", "image": "i"}
    with pytest.raises(ValueError, match="do_xcom_push"):
        KubernetesTrainOperator(**base, do_xcom_push=True)
    with pytest.raises(ValueError, match="cmds/arguments"):
        KubernetesTrainOperator(**base, cmds=["bash"])


def test_the_entrypoint_in_a_process_and_in_process_training_make_identical_candidates(
    s3_endpoint: str, s3_client: Any, s3_bucket: str
) -> None:
    uri = f"s3://{s3_bucket}/registry"
    registry = ModelRegistry(open_store(uri, s3_client=s3_client))
    summary = run_validation(registry, model_name="trips", data_uri=JAN, target="tipped", validation=str(SPEC))
    request = {"model_name": "trips", "dataset_uri": summary["dataset_uri"], "target": "tipped", "row_key": "trip_id",
               "estimator": "sklearn.linear_model.LogisticRegression", "estimator_params": {"max_iter": 500},
               "search_space": {"C": {"type": "loguniform", "low": 0.01, "high": 10}, "class_weight": [None, "balanced"]},
               "tuning": {"n_candidates": 6}, "claim": "parity/try-1"}
    # The pod's environment: registry URI and endpoint as plain variables, keys as from a Secret.
    env = {**os.environ, "MLOPS_AIRFLOW_REGISTRY_URI": uri, "AWS_ENDPOINT_URL": s3_endpoint}
    proc = subprocess.run([sys.executable, "-m", "mlops_airflow.training", json.dumps(request)],
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (line,) = proc.stdout.strip().splitlines()  # one small JSON line; the logs went to stderr
    printed = json.loads(line)
    assert set(printed) == {"model_name", "sha256", "artifact_uri", "claim_key"}
    remote = read_claim(registry, request)
    assert remote["sha256"] == printed["sha256"]

    local = run_training(registry, **{k: v for k, v in request.items() if k != "claim"})
    same = ("task_type", "estimator", "estimator_params", "classes", "feature_schema", "split", "drop_columns",
            "tuning", "pipeline_factory")
    assert {k: remote[k] for k in same} == {k: local[k] for k in same}
    assert remote["data"] == local["data"]
    assert remote["estimator_params"] == {"max_iter": 500, **remote["tuning"]["best_params"]}
    frame, _ = read_snapshot(registry.store, summary["dataset_uri"])
    _, holdout = split_for(local, frame)
    X = holdout.drop(columns=["tipped", "trip_id"])
    remote_model, local_model = load_registered(registry, remote), load_registered(registry, local)
    assert (remote_model.predict_proba(X) == local_model.predict_proba(X)).all()
    verdicts = [run_evaluation(registry, model_name="trips", candidate_sha256=c["sha256"]) for c in (remote, local)]
    assert verdicts[0]["metrics"]["candidate"] == verdicts[1]["metrics"]["candidate"]


def test_a_claim_answers_only_its_own_request(registry: Any) -> None:
    summary = run_validation(registry, model_name="trips", data_uri=JAN, target="tipped")
    request = {"model_name": "trips", "dataset_uri": summary["dataset_uri"], "target": "tipped",
               "estimator": "sklearn.linear_model.LogisticRegression", "claim": "ct/r1/train/-1/try-1"}
    made = run_request(registry, request)
    assert read_claim(registry, request)["sha256"] == made["sha256"]
    with pytest.raises(RegistryError, match="belongs to another request"):
        read_claim(registry, {**request, "estimator": "sklearn.svm.SVC"})
    with pytest.raises(RegistryError, match="left no claim"):
        read_claim(registry, {**request, "claim": "ct/r1/train/-1/try-2"})


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        ({"model_name": "m", "target": "y"}, "dataset_uri is required"),
        ({"model_name": "m", "target": "y", "dataset_uri": "d", "estimator_parms": {}}, "unknown field 'estimator_parms'"),
        ({"model_name": "m", "target": "y", "dataset_uri": "d", "search_space": [1]}, "search_space must be a mapping"),
        ([1, 2], "must be a JSON object"),
    ],
)
def test_a_bad_request_is_refused_naming_the_field(request_: Any, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        check_request(request_)


def test_the_entrypoint_exits_2_with_a_one_line_reason_and_prints_no_result(registry_uri: str) -> None:
    proc = subprocess.run([sys.executable, "-m", "mlops_airflow.training", '{"model_name": "m", "target": "y"}'],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.strip().splitlines()[-1] == (
        "training failed: ConfigError: training request: dataset_uri is required (a non-empty string)")
    assert not Path(registry_uri, "m").exists()


def finished_pod(pod: Any, exit_code: int) -> Any:
    """``pod`` as the cluster reports it once its container has exited with ``exit_code``."""
    from kubernetes.client import models as k8s

    (container,) = pod.spec.containers
    terminated = k8s.V1ContainerStateTerminated(exit_code=exit_code, reason="Completed" if not exit_code else "Error")
    status = k8s.V1ContainerStatus(name=container.name, image=container.image, image_id="", ready=False,
                                   restart_count=0, state=k8s.V1ContainerState(terminated=terminated))
    return k8s.V1Pod(metadata=pod.metadata, spec=pod.spec,
                     status=k8s.V1PodStatus(phase="Failed" if exit_code else "Succeeded", container_statuses=[status]))


def run_pod_locally(self: Any, context: Any) -> None:
    """Stands in for the cluster: run the pod's container command here, with the pod's environment,
    and end as the provider's ``execute_sync`` does, handing the finished pod to ``post_complete_action``."""
    pod = self.build_pod_request_obj(context, dry_run=True)
    (container,) = pod.spec.containers
    env = {**os.environ, **{e.name: e.value for e in container.env}}
    argv = [sys.executable, *container.command[1:], *container.args]
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300)
    self.post_complete_action(pod=pod, remote_pod=finished_pod(pod, proc.returncode), context=context, result=None)


@pytest.fixture
def local_pods(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pods run here; the cluster calls made after a pod finishes (re-read it, label it, delete it) do nothing."""
    from mlops_airflow.operators.kubernetes_train import KubernetesTrainOperator

    monkeypatch.setattr(KubernetesTrainOperator, "execute_sync", run_pod_locally)
    monkeypatch.setattr(KubernetesTrainOperator, "patch_already_checked", lambda self, pod, reraise=True: None)
    monkeypatch.setattr(KubernetesTrainOperator, "process_pod_deletion", lambda self, pod, reraise=True: False)
    monkeypatch.setattr(KubernetesTrainOperator, "is_istio_enabled", lambda self, pod: False)


class RecordingTI(SimpleNamespace):
    """The task instance the operator sees: records what it pushes to XCom."""

    def xcom_push(self, key: str, value: Any) -> None:
        self.pushed[key] = value


def pod_task(model: str, dataset_uri: str) -> tuple[Any, dict[str, Any]]:
    from mlops_airflow.operators.kubernetes_train import KubernetesTrainOperator

    op = KubernetesTrainOperator(task_id="train", model_name=model, dataset_uri=dataset_uri, target="tipped",
                                 row_key="trip_id", image="mlops-airflow:test", namespace="ml",
                                 estimator="sklearn.linear_model.LogisticRegression", estimator_params={"max_iter": 500})
    ti = RecordingTI(dag_id="pods", run_id="manual__7", task_id="train", map_index=-1, try_number=1, pushed={})
    return op, {"ti": ti, "run_id": ti.run_id, "dag": SimpleNamespace(), "task": op}


def test_the_operator_reads_its_candidate_from_the_registry_and_pushes_what_train_pushes(
    registry: Any, local_pods: None
) -> None:
    summary = run_validation(registry, model_name="trips_pod", data_uri=JAN, target="tipped")
    op, context = pod_task("trips_pod", summary["dataset_uri"])
    assert op.execute(context) is None  # the result goes out by hand: no XCom sidecar
    pushed = context["ti"].pushed
    assert set(pushed["return_value"]) == {"sha256", "artifact_uri", "task_type", "estimator", "train_rows",
                                           "holdout_rows", "fit_seconds", "pipeline_factory", "best_params"}
    assert {k: pushed[k] for k in pushed["return_value"]} == pushed["return_value"]  # each key too, for op.output["sha256"]
    candidate = registry.candidate("trips_pod", pushed["sha256"])
    assert candidate["lineage"]["train"]["run_id"] == "manual__7" and candidate["lineage"]["train"]["pod"] is True
    verdict = run_evaluation(registry, model_name="trips_pod", candidate_sha256=pushed["sha256"])
    assert verdict["candidate_sha256"] == pushed["sha256"]


def test_a_pod_that_stored_no_candidate_fails_the_task(registry: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow.sdk.exceptions import AirflowFailException

    from mlops_airflow.operators.kubernetes_train import KubernetesTrainOperator

    monkeypatch.setattr(KubernetesTrainOperator, "execute_sync", lambda self, context: None)  # exit 0, did nothing
    summary = run_validation(registry, model_name="trips_silent", data_uri=JAN, target="tipped")
    op, context = pod_task("trips_silent", summary["dataset_uri"])
    with pytest.raises(AirflowFailException, match="left no claim"):
        op.execute(context)
    assert "left no claim" in context["ti"].pushed["error"] and "sha256" not in context["ti"].pushed


def test_a_pod_exiting_2_fails_the_task_without_retries_and_other_failures_stay_retryable(
    registry: Any, local_pods: None
) -> None:
    from airflow.sdk.exceptions import AirflowException, AirflowFailException

    summary = run_validation(registry, model_name="trips_bad", data_uri=JAN, target="tipped")
    op, context = pod_task("trips_bad", summary["dataset_uri"])
    op.estimator = "os.system"  # not an allowlisted estimator: the entrypoint exits 2
    with pytest.raises(AirflowFailException, match="the training pod exited 2: .* retrying cannot help"):
        op.execute(context)
    assert context["ti"].pushed["error"].startswith("the training pod exited 2")
    assert "sha256" not in context["ti"].pushed

    # Any other exit status (storage trouble, a killed container) is the provider's retryable failure.
    pod = op.build_pod_request_obj(fake_context(), dry_run=True)
    for code in (1, 137):
        with pytest.raises(AirflowException) as raised:
            op.cleanup(pod, finished_pod(pod, code), context=context)
        assert not isinstance(raised.value, AirflowFailException)
