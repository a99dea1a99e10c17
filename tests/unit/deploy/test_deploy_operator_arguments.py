"""DeployModelOperator's Kubernetes arguments are checked when the DAG is parsed, naming the parameter."""

from __future__ import annotations

from typing import Any

import pytest

from mlops_airflow.operators.deploy import DeployModelOperator


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
