"""People in the loop: approvals, rejections and audited overrides of gate verdicts.

A decision is a record beside the verdict it answers, created once and never replaced (the
audit trail cannot be rewritten): who, when, why. :func:`promotable` is the one rule that
register and deploy apply: the gate blessed the candidate, or a person approved a verdict
that asked for approval, or a person overrode a rejection with a reason.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

from mlops_airflow.exceptions import ArtifactNotFound, ConfigError, RegistryError

if TYPE_CHECKING:
    from mlops_airflow.registry import ModelRegistry

DecisionKind = Literal["approve", "reject", "override"]


def _key(registry: ModelRegistry, verdict: dict[str, Any]) -> str:
    from mlops_airflow.evaluation.evaluate import verdict_key

    return verdict_key(registry, verdict) + ".decision.json"


def read_decision(registry: ModelRegistry, verdict: dict[str, Any]) -> dict[str, Any] | None:
    try:
        return json.loads(registry.store.read_bytes(_key(registry, verdict)))
    except ArtifactNotFound:
        return None


def record_decision(
    registry: ModelRegistry, verdict: dict[str, Any], *, kind: DecisionKind, by: str, reason: str = ""
) -> dict[str, Any]:
    """Record a person's decision on ``verdict``; refuses a decision the verdict does not admit."""
    if not by or not by.strip():
        raise ConfigError("a decision must name who made it")
    if kind in ("approve", "reject") and not verdict.get("requires_approval"):
        raise RegistryError(f"verdict {verdict['verdict_id']} does not ask for approval ({verdict['outcome']})")
    if kind == "override":
        if verdict.get("blessed") or verdict.get("requires_approval"):
            raise RegistryError(f"verdict {verdict['verdict_id']} is not a rejection: there is nothing to override")
        if len(reason.strip()) < 10:
            raise ConfigError("an override needs a reason of at least 10 characters: it is the audit trail")
    record = {
        "format_version": 1,
        "kind": kind,
        "by": by.strip(),
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "reason": reason.strip(),
        "verdict_id": verdict["verdict_id"],
        "candidate_sha256": verdict["candidate_sha256"],
        "outcome": verdict["outcome"],
    }
    if not registry.store.create(_key(registry, verdict), json.dumps(record, indent=2).encode()):
        existing = read_decision(registry, verdict) or {}
        if (existing.get("kind"), existing.get("by")) == (kind, record["by"]):
            return existing  # a retried task recording the same answer
        raise RegistryError(
            f"verdict {verdict['verdict_id']} was already decided: {existing.get('kind')} by {existing.get('by')} "
            f"at {existing.get('at')}"
        )
    try:
        from mlops_airflow.evaluation.evaluate import rerender_report

        rerender_report(registry, verdict, record)
    except ArtifactNotFound:  # a verdict stored without plots (older format): the record alone is the audit trail
        pass
    return record


def answers(decision: dict[str, Any], verdict: dict[str, Any]) -> bool:
    """Whether ``decision`` was made on this very verdict, in the state it is in now.

    A verdict re-computed from the same inputs keeps its id but may reach another outcome
    (a latency check, say): a person's earlier answer must not carry over to it.
    """
    if (decision.get("verdict_id"), decision.get("candidate_sha256"), decision.get("outcome")) != (
        verdict.get("verdict_id"), verdict.get("candidate_sha256"), verdict.get("outcome")
    ):
        return False
    if decision.get("kind") in ("approve", "reject"):
        return bool(verdict.get("requires_approval"))
    return not verdict.get("blessed") and not verdict.get("requires_approval")  # an override answers a rejection


def promotable(verdict: dict[str, Any], decision: dict[str, Any] | None) -> tuple[bool, str]:
    """Whether a candidate may be registered and deployed under ``verdict``, and why."""
    if decision is not None and not answers(decision, verdict):
        decision = None  # made on another state of this verdict: it decides nothing now
    if verdict.get("blessed"):
        return True, f"blessed by the gate: {verdict.get('reason')}"
    if decision and decision.get("kind") in ("approve", "override"):
        label = "approved" if decision["kind"] == "approve" else "overridden"
        return True, f"{label} by {decision['by']} at {decision['at']}" + (f": {decision['reason']}" if decision.get("reason") else "")
    if decision and decision.get("kind") == "reject":
        return False, f"rejected by {decision['by']} at {decision['at']}" + (f": {decision['reason']}" if decision.get("reason") else "")
    if verdict.get("requires_approval"):
        return False, f"awaiting approval: {verdict.get('reason')}"
    return False, f"not blessed: {verdict.get('reason')}"
