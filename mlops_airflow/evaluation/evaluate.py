"""Scoring a candidate, a Dummy baseline and the champion on the same holdout, then deciding."""

from __future__ import annotations

import hashlib
import logging
from typing import TYPE_CHECKING, Any

from mlops_airflow.data.schema import schema_columns
from mlops_airflow.data.split import hash_split
from mlops_airflow.evaluation.gate import decide
from mlops_airflow.evaluation.metrics import compute_metrics
from mlops_airflow.records import validate_record
from mlops_airflow.training.train import split_xy

if TYPE_CHECKING:
    import pandas as pd

    from mlops_airflow.registry import ModelRegistry

log = logging.getLogger(__name__)


def split_for(candidate: dict[str, Any], frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The (train, holdout) frames exactly as the candidate's training split them."""
    split = candidate["split"]
    parts = hash_split(frame, target=candidate["target"], key=split.get("row_key"), fraction=split["fraction"])
    return frame.iloc[parts.train], frame.iloc[parts.holdout]


def load_registered(registry: ModelRegistry, manifest: dict[str, Any]) -> Any:
    """A registered or candidate model, through the server's own loader (checksum, types, schema)."""
    from mlops_airflow.serving.loading import load_manifest_model

    return load_manifest_model(registry, manifest).model


def comparability(candidate: dict[str, Any], champion: dict[str, Any]) -> tuple[bool, str]:
    if champion.get("task_type") != candidate["task_type"]:
        return False, f"task changed from {champion.get('task_type')} to {candidate['task_type']}"
    if champion.get("target") != candidate["target"]:
        return False, f"target changed from {champion.get('target')!r} to {candidate['target']!r}"
    old, new = schema_columns(champion.get("feature_schema", {})), schema_columns(candidate["feature_schema"])
    if old != new:
        gone, added = sorted(set(old) - set(new)), sorted(set(new) - set(old))
        changed = sorted(c for c in set(old) & set(new) if old[c] != new[c])
        parts = [f"{label}: {', '.join(cols)}" for label, cols in (("removed", gone), ("added", added), ("kind changed", changed)) if cols]
        return False, "feature schema changed (" + "; ".join(parts) + ")"
    return True, "same task, target and feature schema"


def baseline_metrics(train: pd.DataFrame, holdout: pd.DataFrame, candidate: dict[str, Any]) -> dict[str, float | None]:
    from sklearn.dummy import DummyClassifier, DummyRegressor

    drop = candidate.get("drop_columns")
    X_train, y_train = split_xy(train, candidate["target"], drop)
    X_hold, y_hold = split_xy(holdout, candidate["target"], drop)
    dummy = DummyRegressor() if candidate["task_type"] == "regression" else DummyClassifier(strategy="prior")
    return compute_metrics(dummy.fit(X_train, y_train), X_hold, y_hold, candidate["task_type"])


def evaluate_candidate(
    registry: ModelRegistry,
    candidate: dict[str, Any],
    frame: pd.DataFrame,
    *,
    gate: dict[str, Any],
    gate_source: str,
    champion_alias: str = "champion",
) -> dict[str, Any]:
    """The verdict for ``candidate`` on its holdout of ``frame``, stored beside the candidate."""
    model_name = candidate["model_name"]
    task = candidate["task_type"]
    train, holdout = split_for(candidate, frame)
    X_hold, y_hold = split_xy(holdout, candidate["target"], candidate.get("drop_columns"))
    log.info("Scoring candidate %s on %d holdout rows", candidate["sha256"][:12], len(holdout))
    scores = compute_metrics(load_registered(registry, candidate), X_hold, y_hold, task)
    baseline = baseline_metrics(train, holdout, candidate)

    champion = None
    alias = registry.get_alias(model_name, champion_alias)
    if alias is not None:
        manifest = registry.get_version(model_name, alias["version"])
        comparable, why = comparability(candidate, manifest)
        champion = {"version": manifest["version"], "sha256": manifest["sha256"], "comparable": comparable,
                    "reason": why, "metrics": {}}
        if comparable:
            log.info("Scoring champion v%s on the same holdout", manifest["version"])
            champion["metrics"] = compute_metrics(load_registered(registry, manifest), X_hold, y_hold, task)

    verdict = decide(spec=gate, source=gate_source, task=task, candidate=scores, baseline=baseline, champion=champion)
    verdict.update(
        model_name=model_name,
        candidate_sha256=candidate["sha256"],
        data_fingerprint=candidate["data"]["fingerprint"],
        holdout_rows=len(holdout),
    )
    binding = "|".join(
        [candidate["sha256"], verdict["data_fingerprint"], verdict["gate_hash"], str(champion and champion["version"])]
    )
    verdict["verdict_id"] = hashlib.sha256(binding.encode()).hexdigest()[:16]
    key = registry.artifact_key(model_name, candidate["sha256"], f"verdicts/{verdict['verdict_id']}.json")
    verdict["verdict_uri"] = registry.store.url(key)
    registry.write_record(key, validate_record("verdict", verdict))
    return verdict
