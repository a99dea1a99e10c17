"""Ask a person to approve a candidate when the gate's policy says so."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from airflow.providers.standard.operators.hitl import ApprovalOperator

if TYPE_CHECKING:
    from airflow.sdk import Context

    from mlops_airflow.registry import ModelRegistry


class GateApprovalOperator(ApprovalOperator):
    """Airflow's human-in-the-loop approval, asked only when the verdict requires it.

    When the gate's policy requires a person (no champion, an incomparable champion, or a
    change larger than the gate allows), the task waits for an Approve / Reject answer in
    the UI's Required Actions (or the HITL REST API), showing the verdict's summary. The
    answer, who gave it and when are recorded beside the verdict and in the registered
    manifest. Reject skips register and deploy. When no approval is required the task
    finishes at once without waiting.

    :param model_name: the model (templated).
    :param verdict_uri: from :class:`EvaluateModelOperator` (templated).
    :param response_timeout: how long to wait for a person; default 7 days.
    """

    template_fields: Sequence[str] = (*ApprovalOperator.template_fields, "model_name", "verdict_uri", "registry_uri")

    def __init__(
        self,
        *,
        model_name: str,
        verdict_uri: str,
        registry_uri: str | None = None,
        conn_id: str = "mlops_s3",
        response_timeout: timedelta | None = timedelta(days=7),
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("subject", "Approve the candidate model?")
        super().__init__(response_timeout=response_timeout, **kwargs)
        self.model_name = model_name
        self.verdict_uri = verdict_uri
        self.registry_uri = registry_uri
        self.conn_id = conn_id

    def _registry(self) -> ModelRegistry:
        from mlops_airflow.hooks.registry import RegistryHook

        return RegistryHook(registry_uri=self.registry_uri or None, conn_id=self.conn_id).get_registry()

    def execute(self, context: Context) -> Any:
        from mlops_airflow.evaluation.decisions import read_decision
        from mlops_airflow.pipeline.register import read_verdict

        registry = self._registry()
        verdict = read_verdict(registry, self.verdict_uri)
        if not verdict.get("requires_approval"):
            self.log.info("The verdict (%s) needs no approval", verdict["outcome"])
            return {"approval": "not_required"}
        decision = read_decision(registry, verdict)
        if decision is not None:  # answered already (a retried task): do not ask twice
            self.log.info("Already decided: %s by %s", decision["kind"], decision["by"])
            return {"approval": decision["kind"], "by": decision["by"]}
        self.subject = f"Approve {verdict['model_name']} candidate {verdict['candidate_sha256'][:12]}?"
        self.body = approval_body(verdict)
        return super().execute(context)

    def execute_complete(self, context: Context, event: dict[str, Any]) -> Any:
        from mlops_airflow.evaluation.decisions import record_decision
        from mlops_airflow.pipeline.register import read_verdict

        chosen = (event.get("chosen_options") or [None])[0]
        user = event.get("responded_by_user") or {}
        by = str(user.get("name") or user.get("id") or "unknown")
        registry = self._registry()
        verdict = read_verdict(registry, self.verdict_uri)
        reason = str((event.get("params_input") or {}).get("reason") or "")
        # Record first: the decision must be on file before anything downstream acts on it.
        record_decision(registry, verdict, kind="approve" if chosen == self.APPROVE else "reject", by=by, reason=reason)
        self.log.info("%s by %s", chosen, by)
        result = {"approval": "approve" if chosen == self.APPROVE else "reject", "by": by}
        # Pushed now: on Reject the parent skips downstream by raising, and a return value would be lost.
        context["ti"].xcom_push(key="return_value", value=result)
        super().execute_complete(context, event)
        return result


def approval_body(verdict: dict[str, Any]) -> str:
    """The verdict's summary as Markdown, for the person deciding."""
    from mlops_airflow.evaluation.gate import describe_check

    champion = verdict.get("champion") or {}
    lines = [
        f"**{verdict['model_name']}**: gate outcome **{verdict['outcome']}**, {verdict['reason']}",
        "",
        f"- candidate `{verdict['candidate_sha256'][:12]}`, holdout {verdict['holdout_rows']} rows, "
        f"gate {verdict['gate_source']}",
        f"- champion: {'v' + str(champion['version']) if champion else 'none'}"
        + (f" ({champion.get('reason')})" if champion and not champion.get("comparable") else ""),
        "",
        "Checks:",
        *(f"- {describe_check(check)}" for check in verdict["checks"]),
        "",
        f"Full report: {verdict.get('report_uri')}",
    ]
    return "\n".join(lines)
