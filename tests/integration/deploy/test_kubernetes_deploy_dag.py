"""DeployModelOperator and RollbackModelOperator (target="kubernetes") in DAGs run by dag.test(), through the
provider's REAL KubernetesHook.

The Airflow connection holds a kubeconfig pointing at the fake API server (no cluster is
used); the pods' traffic reaches a REAL `mlops-airflow serve` process through the fake's proxy.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from testsupport import BIN, SAMPLE, xcom_value

if TYPE_CHECKING:
    from fake_kube import FakeKube

pytestmark = pytest.mark.integration
JAN, BOTH = str(SAMPLE / "trips_2026_01.csv"), str(SAMPLE / "trips_2026_*.csv")
FAST = "sklearn.linear_model.LogisticRegression"


def deploy_dag(manifest: dict[str, Any], **arguments: Any) -> Any:
    from airflow.sdk import DAG

    from mlops_airflow.operators.deploy import DeployModelOperator

    with DAG(f"k8s_deploy_v{manifest['version']}", schedule=None, catchup=False) as dag:
        DeployModelOperator(task_id="deploy", model_name=manifest["model_name"], version=manifest["version"],
                            verdict_uri=manifest["verdict_uri"], target="kubernetes", kubernetes_conn_id="fake_k8s",
                            image="example.org/mlops-airflow-server:test", replicas=1, **arguments)
    serialize(dag)
    return dag


def serialize(dag: Any) -> None:
    """Write a DAG defined here (not in the DAGs folder) to the metadata DB, as the DAG processor would."""
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.dag_processing.collection import update_dag_parsing_results_in_db
    from airflow.serialization.serialized_objects import LazyDeserializedDAG
    from airflow.utils.session import create_session

    DagBundlesManager().sync_bundles_to_db()
    with create_session() as session:
        update_dag_parsing_results_in_db("dags-folder", None, [LazyDeserializedDAG.from_dag(dag)], {}, None, set(),
                                         session=session)


@pytest.fixture
def fake_k8s(fake_kube: FakeKube, monkeypatch: pytest.MonkeyPatch) -> FakeKube:
    """The Airflow connection ``fake_k8s`` as a user would define it: a kubeconfig and a namespace in extra."""
    monkeypatch.setenv("AIRFLOW_CONN_FAKE_K8S", json.dumps(
        {"conn_type": "kubernetes", "extra": {"kube_config": fake_kube.kubeconfig(), "namespace": "team-a"}}))
    return fake_kube


def test_deploy_operator_rolls_out_and_rolls_back_on_kubernetes(
    airflow_db: Path, registry: Any, build_version: Any, model_server: Any, fake_k8s: FakeKube,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake_kube = fake_k8s
    options = {"kubernetes_options": {"poll_interval": 0.1, "ready_timeout": 120, "token_secret": "model-token/value"}}
    # the server needs a token; the worker's setting gives the deploy its own copy, the pods get the Secret's
    monkeypatch.setenv("MLOPS_AIRFLOW_SERVER_TOKEN", "dag-s3cret")
    v1 = build_version("m", JAN, promote=False, estimator=FAST)
    fake_kube.default_backend = model_server("m")

    run = deploy_dag(v1, rollout_timeout=30, **options).test()
    assert str(run.state) == "success"
    result = xcom_value(run, "deploy")
    assert (result["promoted"], result["served"], result["server"]["version"]) == (True, True, 1)
    deployment = fake_kube.get("deployments", "mlops-m", "team-a")  # the namespace from the connection
    assert deployment is not None
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == "example.org/mlops-airflow-server:test"
    assert fake_kube.get("configmaps", "mlops-m", "team-a")["data"]["MLOPS_AIRFLOW_REGISTRY_URI"] == registry.store.uri
    assert {"name": "MLOPS_AIRFLOW_SERVER_TOKEN", "valueFrom": {"secretKeyRef": {"name": "model-token", "key": "value"}}} \
        in deployment["spec"]["template"]["spec"]["containers"][0]["env"]
    assert "dag-s3cret" not in json.dumps(result) + json.dumps(fake_kube.get("configmaps", "mlops-m", "team-a"))

    v2 = build_version("m", BOTH, promote=False, key="k2", estimator=FAST)
    fake_kube.scenario["mlops-m"] = "stuck"
    run = deploy_dag(v2, rollout_timeout=1, **options).test()
    assert str(run.state) == "failed"
    error = xcom_value(run, "deploy", "error")
    assert error.startswith("DeployError: v2 did not come up on the serving target, rolled back to v1")
    assert "did not roll out within 1s" in error and "restored Deployment mlops-m to its previous spec" in error
    assert registry.get_alias("m", "champion")["version"] == 1
    restored = fake_kube.get("deployments", "mlops-m", "team-a")
    assert restored is not None and restored["spec"] == deployment["spec"]


def rollback_dag(dag_id: str, **arguments: Any) -> Any:
    from airflow.sdk import DAG

    from mlops_airflow.operators.rollback import RollbackModelOperator

    with DAG(dag_id, schedule=None, catchup=False) as dag:
        RollbackModelOperator(task_id="rollback", model_name="m", reason="v2 misbehaves", target="kubernetes",
                              kubernetes_conn_id="fake_k8s", image="example.org/mlops-airflow-server:test",
                              replicas=1, **arguments)
    serialize(dag)
    return dag


def pinned(fake_kube: FakeKube) -> tuple[str, str]:
    """(MLOPS_AIRFLOW_MODEL_VERSION, sha256 annotation) of the Deployment's pod template."""
    from mlops_airflow.deploy.kubernetes import SHA_ANNOTATION

    deployment = fake_kube.get("deployments", "mlops-m", "team-a")
    assert deployment is not None
    template = deployment["spec"]["template"]
    env = {item["name"]: item.get("value") for item in template["spec"]["containers"][0]["env"]}
    assert env["MLOPS_AIRFLOW_MODEL_SHA256"] == template["metadata"]["annotations"][SHA_ANNOTATION]
    return env["MLOPS_AIRFLOW_MODEL_VERSION"], env["MLOPS_AIRFLOW_MODEL_SHA256"]


def test_rollback_operator_rolls_the_earlier_version_out_and_undoes_a_stuck_rollout(
    airflow_db: Path, registry: Any, build_version: Any, model_server: Any, fake_k8s: FakeKube,
) -> None:
    fake_kube = fake_k8s
    options = {"kubernetes_options": {"poll_interval": 0.1, "ready_timeout": 120}}
    v1 = build_version("m", JAN, promote=False, estimator=FAST)
    v2 = build_version("m", BOTH, promote=False, key="k2", estimator=FAST)
    fake_kube.default_backend = model_server("m")
    for manifest in (v1, v2):
        assert str(deploy_dag(manifest, rollout_timeout=30, **options).test().state) == "success"
    assert pinned(fake_kube) == ("2", v2["sha256"])
    on_v2 = fake_kube.get("deployments", "mlops-m", "team-a")
    assert on_v2 is not None

    # v1's pods never come up: the Deployment goes back to v2's spec and the alias back to v2, saying why.
    fake_kube.scenario["mlops-m"] = "stuck"
    run = rollback_dag("k8s_rollback_stuck", rollout_timeout=1, **options).test()
    assert str(run.state) == "failed"
    error = xcom_value(run, "rollback", "error")
    assert error.startswith("DeployError: v1 did not come up on the serving target; champion stays at v2")
    assert "Deployment team-a/mlops-m did not roll out within 1s" in error
    assert "restored Deployment mlops-m to its previous spec" in error
    alias = registry.get_alias("m", "champion")
    assert alias["version"] == 2 and alias["reason"].startswith("undo rollback: v1 did not come up")
    restored = fake_kube.get("deployments", "mlops-m", "team-a")
    assert restored is not None and restored["spec"] == on_v2["spec"]
    assert pinned(fake_kube) == ("2", v2["sha256"])

    # The cluster is healthy again: the rollback rolls v1 out, smoke-tests it through the Service, keeps the alias.
    fake_kube.scenario["mlops-m"] = "ok"
    smoked = len(fake_kube.calls("POST", "/services/mlops-m/proxy/models/m/predict"))
    run = rollback_dag("k8s_rollback", rollout_timeout=30, **options).test()
    assert str(run.state) == "success", xcom_value(run, "rollback", "error")
    result = xcom_value(run, "rollback")
    assert (result["rolled_back"], result["version"], result["previous_version"]) == (True, 1, 2)
    assert pinned(fake_kube) == ("1", v1["sha256"])
    assert len(fake_kube.calls("POST", "/services/mlops-m/proxy/models/m/predict")) == smoked + 1
    alias = registry.get_alias("m", "champion")
    assert (alias["version"], alias["reason"]) == (1, "rollback: v2 misbehaves")
    assert alias["by"] == f"k8s_rollback/{run.run_id}"

    # The same from a shell: `mlops-airflow models rollback --target kubernetes` through the same connection.
    def cli(*arguments: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(BIN / "mlops-airflow"), "--registry", registry.store.uri, "models", "rollback", "m",
                               "--target", "kubernetes", "--kubernetes-conn-id", "fake_k8s", *arguments],
                              capture_output=True, text=True, timeout=180)

    refused = cli("--to", "2", "--kubernetes-options", '{"service_prot": 80}')
    assert refused.returncode == 1 and "Kubernetes settings:" in refused.stderr and "service_prot" in refused.stderr
    assert registry.get_alias("m", "champion")["version"] == 1  # a bad setting moves nothing
    done = cli("--to", "2", "--reason", "v2 fixed", "--by", "carol", "--rollout-timeout", "30",
               "--kubernetes-options", json.dumps(options["kubernetes_options"]))
    assert done.returncode == 0, done.stderr
    assert "m@champion: v1 -> v2" in done.stdout
    assert pinned(fake_kube) == ("2", v2["sha256"])
    assert len(fake_kube.calls("POST", "/services/mlops-m/proxy/models/m/predict")) == smoked + 2
    # not given on the command line: kept from what ran, not reset to the defaults (2 replicas, the stock image)
    rolled = fake_kube.get("deployments", "mlops-m", "team-a")
    assert rolled is not None and rolled["spec"]["replicas"] == 1
    assert rolled["spec"]["template"]["spec"]["containers"][0]["image"] == "example.org/mlops-airflow-server:test"
    alias = registry.get_alias("m", "champion")
    assert (alias["version"], alias["by"], alias["reason"]) == (2, "carol", "rollback: v2 fixed")
