"""Stage 3: score the candidate against the gate and store the verdict."""

from __future__ import annotations

from typing import Any

from mlops_airflow.data.snapshot import read_snapshot
from mlops_airflow.evaluation.evaluate import evaluate_candidate
from mlops_airflow.evaluation.gate import load_gate_spec
from mlops_airflow.registry import ModelRegistry
from mlops_airflow.tracking import tracker_for


def run_evaluation(
    registry: ModelRegistry,
    *,
    model_name: str,
    candidate_sha256: str,
    gate: str | dict[str, Any] | None = None,
    gate_base_dir: str | None = None,
    champion_alias: str = "champion",
    gate_source: str | None = None,
) -> dict[str, Any]:
    """The verdict for a stored candidate (see :func:`~mlops_airflow.evaluation.gate.decide`).

    ``gate_source`` given: ``gate`` is a spec :func:`load_gate_spec` already returned (with
    that source), as when one run gates many segments with one spec.
    """
    if gate_source is not None and isinstance(gate, dict):
        spec, source = gate, gate_source
    else:
        spec, source = load_gate_spec(gate, base_dir=gate_base_dir)
    candidate = registry.candidate(model_name, candidate_sha256)
    frame, _ = read_snapshot(registry.store, candidate["data"]["dataset_uri"])
    verdict = evaluate_candidate(registry, candidate, frame, gate=spec, gate_source=source, champion_alias=champion_alias)
    return tracker_for(registry).evaluation(registry, verdict)


def short_verdict(verdict: dict[str, Any]) -> dict[str, Any]:
    """What goes to XCom: the decision and each check, not the whole record."""
    return {
        key: verdict.get(key)
        for key in ("outcome", "blessed", "requires_approval", "reason", "gate_source", "on_fail", "primary_metric",
                    "verdict_uri", "report_uri", "verdict_id", "candidate_sha256", "holdout_rows")
    } | {
        "champion_version": (verdict.get("champion") or {}).get("version"),
        "checks": verdict["checks"],
        "metrics": verdict["metrics"]["candidate"],
    }
