"""Stage 4: register a blessed candidate as a new version, after checking its verdict's binding."""

from __future__ import annotations

import json
from typing import Any

from mlops_airflow.evaluation.decisions import promotable, read_decision
from mlops_airflow.evaluation.gate import check_binding
from mlops_airflow.exceptions import RegistryError
from mlops_airflow.registry import ModelRegistry
from mlops_airflow.tracking import tracker_for


def read_verdict(registry: ModelRegistry, verdict_uri: str) -> dict[str, Any]:
    key = verdict_uri.removeprefix(registry.store.uri.rstrip("/") + "/")
    return json.loads(registry.store.read_bytes(key))


def verdict_gate(registry: ModelRegistry, verdict: dict[str, Any]) -> tuple[bool, str, dict[str, Any] | None]:
    """Whether the verdict (with any human decision on it) lets the candidate through, why, and the decision."""
    decision = read_decision(registry, verdict)
    allowed, why = promotable(verdict, decision)
    return allowed, why, decision


def run_registration(
    registry: ModelRegistry,
    *,
    model_name: str,
    candidate_sha256: str,
    verdict_uri: str,
    idempotency_key: str,
    lineage: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The registered manifest. Raises :class:`RegistryError` for an unblessed or mismatched verdict."""
    candidate = registry.candidate(model_name, candidate_sha256)
    verdict = read_verdict(registry, verdict_uri)
    check_binding(
        verdict,
        model_name=model_name,
        candidate_sha256=candidate_sha256,
        data_fingerprint=candidate["data"]["fingerprint"],
    )
    allowed, why, decision = verdict_gate(registry, verdict)
    if not allowed:
        raise RegistryError(f"refusing to register candidate {candidate_sha256[:12]}: {why}")
    manifest = {
        **candidate,
        "metrics": verdict["metrics"]["candidate"],
        "verdict": {
            **{key: verdict.get(key) for key in ("verdict_id", "verdict_uri", "report_uri", "outcome", "reason",
                                                  "gate_source", "gate_hash", "champion")},
            "blessed": True,
            "gate_blessed": bool(verdict.get("blessed")),
            "decision": decision,
        },
        "lineage": {**candidate.get("lineage", {}), "register": lineage or {}},
    }
    record = registry.register(model_name, manifest, idempotency_key=idempotency_key)
    return tracker_for(registry).registered(registry, record)
