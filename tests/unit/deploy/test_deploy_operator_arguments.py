"""The deploy and rollback operators' Kubernetes arguments are checked when the DAG is parsed, naming the parameter."""

from __future__ import annotations

from typing import Any

import pytest

from mlops_airflow.operators.deploy import DeployModelOperator
from mlops_airflow.operators.rollback import RollbackModelOperator


def operator(**arguments: Any) -> DeployModelOperator:
    return DeployModelOperator(task_id="deploy", model_name="m", version=1, verdict_uri="v", **arguments)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"target": "k8s"}, "target must be 'local', 'none' or 'kubernetes', got 'k8s'"),
        ({"target": "kubernetes", "replicas": 0}, "replicas must be >= 1, got 0"),
        ({"target": "kubernetes", "rollout_timeout": 0}, "rollout_timeout must be > 0, got 0"),
        ({"target": "kubernetes", "canary": {"share": 2}}, r"canary.share must be \(0, 1\], got 2"),
        ({"target": "kubernetes", "canary": {"window_s": 60}}, r"canary has unknown keys \['window_s'\]"),
        ({"target": "kubernetes", "kubernetes_options": {"replica": 3}},
         r"kubernetes_options has unknown keys \['replica'\]"),
        ({"target": "local", "canary": {"share": 0.1}}, "canary and kubernetes_options need target='kubernetes'"),
    ],
)
def test_bad_arguments_fail_at_parse_time(arguments: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        operator(**arguments)


def test_good_arguments_are_kept_for_the_run() -> None:
    op = operator(target="kubernetes", namespace="{{ var.value.ns }}", replicas=3,
                  canary={"share": 0.2, "window": 60}, kubernetes_options={"env_secret": "s3"})
    assert (op.namespace, op.replicas, op.canary, op.kubernetes_options) == (
        "{{ var.value.ns }}", 3, {"share": 0.2, "window": 60}, {"env_secret": "s3"})
    assert op.kubernetes_conn_id == "kubernetes_default"


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"target": "k8s"}, "target must be 'local', 'none' or 'kubernetes', got 'k8s'"),
        ({"target": "kubernetes", "replicas": 0}, "replicas must be >= 1, got 0"),
        ({"target": "kubernetes", "kubernetes_options": {"replica": 3}},
         r"kubernetes_options has unknown keys \['replica'\]"),
        # a rollback restores a version that served before: straight out, never through a canary
        ({"target": "kubernetes", "canary": {"share": 0.1}},
         r"canary is not supported by RollbackModelOperator, which rolls the version out directly"),
    ],
)
def test_rollback_takes_the_same_kubernetes_arguments_but_no_canary(arguments: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RollbackModelOperator(task_id="rollback", model_name="m", **arguments)


def test_rollback_keeps_its_kubernetes_arguments_for_the_run() -> None:
    op = RollbackModelOperator(task_id="rollback", model_name="m", target="kubernetes", namespace="ml", replicas=1,
                               rollout_timeout=30, kubernetes_options={"token_secret": "t"})
    assert (op.target, op.namespace, op.replicas, op.rollout_timeout, op.kubernetes_options, op.canary) == (
        "kubernetes", "ml", 1, 30, {"token_secret": "t"}, None)
