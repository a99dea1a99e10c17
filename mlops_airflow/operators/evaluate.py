"""Evaluate a candidate against the quality gate."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from mlops_airflow.operators.base import MlopsBaseOperator
from mlops_airflow.operators.links import GateReportLink
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
    :param gate: a gate spec path (in the spec folders of :mod:`mlops_airflow.specfiles`), inline spec or dict;
        None for the bundled default gate (templated).
    :param verdict_callbacks: called with ``(verdict, context)`` after every decision, blessed
        or not: the hook point for alerts (Slack, e-mail, a ticket). A failing callback is
        logged and does not change the verdict.
    """

    template_fields: Sequence[str] = ("registry_uri", "model_name", "candidate_sha256", "gate")
    operator_extra_links = (GateReportLink(),)
    default_timeout = timedelta(hours=1)
    #: Set while running; the extra link opens it.
    report_uri: str | None = None

    def __init__(
        self,
        *,
        model_name: str,
        candidate_sha256: str,
        gate: str | dict[str, Any] | None = None,
        verdict_callbacks: Sequence[Callable[[dict[str, Any], Context], Any]] = (),
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.model_name = model_name
        self.candidate_sha256 = candidate_sha256
        self.gate = gate
        self.verdict_callbacks = list(verdict_callbacks)

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
        self.report_uri = verdict["report_uri"]
        for check in verdict["checks"]:
            self.log.info("Gate check: %s", describe_check(check))
        self.log.info("Verdict: %s (blessed=%s): %s", verdict["outcome"], verdict["blessed"], verdict["reason"])
        self.log.info("Gate report: %s", verdict["report_uri"])
        result = short_verdict(verdict)
        for callback in self.verdict_callbacks:
            try:
                callback(result, context)
            except Exception:  # an alerting failure must not change the decision
                self.log.exception("Verdict callback %r failed", callback)
        if not verdict["blessed"] and verdict["on_fail"] == "fail":
            context["ti"].xcom_push(key="return_value", value=result)
            raise CandidateRejected(f"candidate not blessed ({verdict['outcome']}): {verdict['reason']}")
        return result
