"""Evaluate a candidate against the quality gate."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from mlops_airflow.operators.base import MlopsBaseOperator
from mlops_airflow.operators.validate import dag_folder

if TYPE_CHECKING:
    from airflow.sdk import Context


class EvaluateModelOperator(MlopsBaseOperator):
    """Score the candidate, a Dummy baseline and the champion on the same holdout, and decide.

    The verdict is data: a versioned record bound to the candidate, the data, the gate
    and the champion it was compared with, stored beside the candidate; its short form
    goes to XCom. A rejected candidate is a normal outcome: the task succeeds and the
    register task skips, unless the gate says ``on_fail: fail``.

    :param model_name: the model (templated).
    :param candidate_sha256: from :class:`TrainModelOperator` (templated).
    :param gate: a gate spec path, inline spec or dict; None for the bundled default gate (templated).
    """

    template_fields: Sequence[str] = ("registry_uri", "model_name", "candidate_sha256", "gate")
    default_timeout = timedelta(hours=1)

    def __init__(
        self, *, model_name: str, candidate_sha256: str, gate: str | dict[str, Any] | None = None, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.model_name = model_name
        self.candidate_sha256 = candidate_sha256
        self.gate = gate

    def run(self, context: Context) -> dict[str, Any]:
        from mlops_airflow.evaluation.gate import describe_check
        from mlops_airflow.exceptions import CandidateRejected
        from mlops_airflow.pipeline.evaluate import run_evaluation, short_verdict

        verdict = run_evaluation(
            self.registry,
            model_name=self.model_name,
            candidate_sha256=self.candidate_sha256,
            gate=self.gate,
            gate_base_dir=dag_folder(context),
        )
        for check in verdict["checks"]:
            self.log.info("Gate check: %s", describe_check(check))
        self.log.info("Verdict: %s (blessed=%s): %s", verdict["outcome"], verdict["blessed"], verdict["reason"])
        result = short_verdict(verdict)
        if not verdict["blessed"] and verdict["on_fail"] == "fail":
            context["ti"].xcom_push(key="return_value", value=result)
            raise CandidateRejected(f"candidate not blessed ({verdict['outcome']}): {verdict['reason']}")
        return result
