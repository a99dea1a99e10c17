"""A run's story in one record: what validation saw, what the gate decided, what went live."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any

from mlops_airflow.evaluation.gate import describe_check
from mlops_airflow.exceptions import ArtifactNotFound, ModelNotFound
from mlops_airflow.registry import ModelRegistry

STAGES = ("validate", "train", "evaluate", "approve", "register", "deploy")


def _run_key(model_name: str, run_id: str) -> str:
    return f"{model_name}/runs/{re.sub(r'[^A-Za-z0-9_.-]', '_', run_id)}.json"


def record_run(
    registry: ModelRegistry,
    *,
    model_name: str,
    run_id: str,
    dag_id: str,
    results: dict[str, Any],
    states: dict[str, str],
) -> dict[str, Any]:
    """Store the run record (and ``runs/latest.json``); returns it."""
    record = {
        "format_version": 1,
        "model_name": model_name,
        "dag_id": dag_id,
        "run_id": run_id,
        "recorded_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "states": states,
        "results": results,
    }
    registry.write_record(_run_key(model_name, run_id), record)
    registry.write_record(f"{model_name}/runs/latest.json", record)
    return record


def read_run(registry: ModelRegistry, model_name: str, run_id: str | None = None) -> dict[str, Any]:
    key = _run_key(model_name, run_id) if run_id else f"{model_name}/runs/latest.json"
    try:
        return json.loads(registry.store.read_bytes(key))
    except ArtifactNotFound as exc:
        raise ModelNotFound(f"no recorded run {run_id or '(latest)'} for model {model_name!r}") from exc


def format_run(record: dict[str, Any]) -> str:
    """The human-readable story of a run, as the demo prints it."""
    results, states = record["results"], record["states"]
    lines = [f"Run {record['run_id']} of {record['dag_id']} for model {record['model_name']}"]
    for stage in STAGES:
        error = (results.get(stage) or {}).get("error")
        if error:
            lines.append(f"STOPPED at {stage}: {error}")
    validation = results.get("validate") or {}
    stats = validation.get("statistics", {})
    lines.append(f"\n[validate] {states.get('validate')}")
    if validation:
        lines.append(
            f"  {validation.get('rows')} rows from {validation.get('data_uri')}; "
            f"{stats.get('successful')}/{stats.get('evaluated')} checks passed, {stats.get('failed_warnings', 0)} warnings"
        )
        for check in validation.get("checks", []):
            if not check.get("success"):
                label = "FAILED" if check.get("severity") == "error" else "warning"
                reason = (check.get("observed") or {}).get("reason") or check.get("observed")
                lines.append(f"  {label}: {check.get('column') or 'table'} {check.get('check')}: {reason}")
        drift = validation.get("drift") or {}
        if drift.get("skipped"):
            lines.append(f"  drift: skipped ({drift['skipped']})")
        elif drift:
            drifted = drift.get("drifted_columns") or []
            lines.append(f"  drift vs {drift.get('reference')}: "
                         + (f"{len(drifted)} column(s) drifted: {', '.join(drifted)}" if drifted else "no column drifted")
                         + f" (policy: {drift.get('policy')})")
        lines.append(f"  report: {validation.get('report_uri')}")
    train = results.get("train") or {}
    lines.append(f"\n[train] {states.get('train')}")
    if train:
        lines.append(
            f"  {train.get('estimator')} ({train.get('task_type')}) on {train.get('train_rows')} rows, "
            f"holdout {train.get('holdout_rows')} rows, fit {train.get('fit_seconds')}s, candidate {str(train.get('sha256'))[:12]}"
        )
    verdict = results.get("evaluate") or {}
    lines.append(f"\n[evaluate] {states.get('evaluate')}")
    if verdict:
        champion = verdict.get("champion_version")
        lines.append(
            f"  gate ({verdict.get('gate_source')}) on {verdict.get('holdout_rows')} holdout rows, compared with "
            + (f"champion v{champion}" if champion else "no champion")
            + f": {str(verdict.get('outcome')).upper()}, blessed={verdict.get('blessed')}"
        )
        for check in verdict.get("checks", []):
            lines.append(f"  - {describe_check(check)}")
        lines.append(f"  reason: {verdict.get('reason')}")
        lines.append(f"  report: {verdict.get('report_uri')}")
    approval = results.get("approve") or {}
    if approval.get("approval") not in (None, "not_required"):
        lines.append(f"\n[approve] {states.get('approve')}\n  {approval.get('approval')} by {approval.get('by')}")
    register = results.get("register") or {}
    lines.append(f"\n[register] {states.get('register')}")
    if register:
        lines.append(f"  registered {register.get('model_name')} version {register.get('version')}")
    deploy = results.get("deploy") or {}
    lines.append(f"\n[deploy] {states.get('deploy')}")
    if deploy:
        if deploy.get("promoted"):
            previous = deploy.get("previous_version")
            before = f"v{previous}" if previous is not None else "none"
            lines.append(f"  champion: {before} -> v{deploy.get('version')}, served={deploy.get('served')}")
        else:
            lines.append(f"  not promoted: {deploy.get('reason')}")
    return "\n".join(lines)
