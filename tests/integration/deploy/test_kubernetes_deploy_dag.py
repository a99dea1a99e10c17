"""DeployModelOperator(target="kubernetes") in a DAG run by dag.test(), through the provider's REAL KubernetesHook.

The Airflow connection holds a kubeconfig pointing at the fake API server (no cluster is
used); the pods' traffic reaches a REAL `mlops-airflow serve` process through the fake's proxy.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from testsupport import SAMPLE, xcom_value

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


def test_deploy_operator_rolls_out_and_rolls_back_on_kubernetes(
    airflow_db: Path, registry: Any, build_version: Any, model_server: Any, fake_kube: FakeKube,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The connection as a user would define it: conn type kubernetes, a kubeconfig and a namespace in extra.
    monkeypatch.setenv("AIRFLOW_CONN_FAKE_K8S", json.dumps(
        {"conn_type": "kubernetes", "extra": {"kube_config": fake_kube.kubeconfig(), "namespace": "team-a"}}))
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
