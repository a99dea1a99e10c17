"""Scoring a candidate, a Dummy baseline and the champion on the same holdout, then deciding.

Each model predicts on the holdout once; every metric, interval, slice and plot is computed
from those predictions. The verdict, its plot data and its HTML report are stored beside
the candidate.
"""

from __future__ import annotations

import hashlib
import json
import logging
from typing import TYPE_CHECKING, Any

from mlops_airflow.data.schema import schema_columns
from mlops_airflow.data.split import hash_split
from mlops_airflow.evaluation.gate import decide, gate_metrics
from mlops_airflow.exceptions import GateSpecError
from mlops_airflow.records import validate_record
from mlops_airflow.training.train import split_xy

if TYPE_CHECKING:
    import pandas as pd

    from mlops_airflow.evaluation.statistics import Predictions
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


def _dummy(task: str) -> Any:
    from sklearn.dummy import DummyClassifier, DummyRegressor

    return DummyRegressor() if task == "regression" else DummyClassifier(strategy="prior")


def baseline_interval(spec: dict[str, Any], task: str, y: Any, candidate: Predictions, baseline: Predictions) -> dict[str, Any]:
    """The one-sided paired bootstrap of the candidate's gain over the Dummy that the baseline check decides on.

    The one place this evidence is computed: the pipeline and bench/gate_chance.py both call it.
    """
    from mlops_airflow.evaluation.statistics import paired_bootstrap

    body = spec["baseline"]
    return paired_bootstrap(gate_metrics(spec, task)["baseline"], task, y, candidate, baseline, resamples=body["resamples"],
                            seed=body["seed"], confidence=body["confidence"], alternative="greater")


def _slice_evidence(spec: dict[str, Any], metrics: dict[str, str], task: str, holdout: pd.DataFrame,
                    y: pd.Series, predictions: Predictions) -> list[dict[str, Any]]:
    from mlops_airflow.evaluation.statistics import slice_metrics

    results = []
    for i, entry in enumerate(spec.get("slices", [])):
        if entry["column"] not in holdout.columns:
            raise GateSpecError(f"gate.slices[{i}].column: {entry['column']!r} is not in the data")
        result = slice_metrics(metrics[f"slices[{i}]"], task, y, predictions, holdout[entry["column"]],
                               min_rows=entry["min_rows"])
        results.append({"column": entry["column"], **result})
    return results


def _operational_evidence(spec: dict[str, Any], candidate: dict[str, Any], model: Any, X: pd.DataFrame) -> dict[str, Any]:
    from mlops_airflow.evaluation.operational import measure_latency

    found: dict[str, Any] = {"size_bytes": candidate.get("size_bytes"),
                             "size_mb": round(candidate.get("size_bytes", 0) / 1e6, 3)}
    if any(key != "max_size_mb" for key in spec["operational"]):
        timings = measure_latency(model, X)
        found.update(timings)
        found.update({f"single_row_{q}_ms": timings["single_row_ms"][q] for q in ("p50", "p99")})
        found.update({f"batch_{q}_ms": timings["batch_ms"][q] for q in ("p50", "p99")})
    return found


def run_custom_check(function: Any, y: pd.Series, predictions: Predictions, task: str) -> float | None:
    """Call ``f(y_true, y_pred, scores)``, adding ``task=`` when the function takes it; None if it fails."""
    import inspect

    parameters = inspect.signature(function).parameters
    takes_task = "task" in parameters or any(p.kind is p.VAR_KEYWORD for p in parameters.values())
    try:
        value = function(y, predictions.y_pred, predictions.scores, **({"task": task} if takes_task else {}))
        return float(value)
    except Exception:  # a broken custom check fails its check (fail closed) instead of crashing the gate
        log.exception("Custom check %s failed", getattr(function, "__name__", function))
        return None


def gather_evidence(
    spec: dict[str, Any],
    candidate: dict[str, Any],
    model: Any,
    train: pd.DataFrame,
    holdout: pd.DataFrame,
    champion_model: Any | None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """What the spec needs measured, and the plot data for the report."""
    from mlops_airflow.evaluation.curves import plot_data
    from mlops_airflow.evaluation.metrics import metrics_from_predictions
    from mlops_airflow.evaluation.statistics import Predictions, mcnemar, paired_bootstrap

    task, drop = candidate["task_type"], candidate.get("drop_columns")
    metrics = gate_metrics(spec, task)
    X, y = split_xy(holdout, candidate["target"], drop)
    ours = Predictions.of(model, X, task)
    X_train, y_train = split_xy(train, candidate["target"], drop)
    baseline = Predictions.of(_dummy(task).fit(X_train, y_train), X, task)
    evidence: dict[str, Any] = {
        "holdout_rows": len(holdout),
        "metrics": {"candidate": metrics_from_predictions(task, y, ours),
                    "baseline": metrics_from_predictions(task, y, baseline)},
    }
    if "baseline" in spec:
        evidence["baseline_interval"] = baseline_interval(spec, task, y, ours, baseline)
    if champion_model is not None:
        log.info("Scoring the champion on the same %d holdout rows", len(holdout))
        theirs = Predictions.of(champion_model, X, task)
        evidence["metrics"]["champion"] = metrics_from_predictions(task, y, theirs)
        if "statistical" in spec:
            body = spec["statistical"]
            log.info("Paired bootstrap of %s: %d resamples", metrics["statistical"], body["resamples"])
            evidence["interval"] = paired_bootstrap(metrics["statistical"], task, y, ours, theirs, resamples=body["resamples"],
                                                    seed=body["seed"], confidence=body["confidence"])
        if "mcnemar" in spec:
            evidence["mcnemar"] = mcnemar(y, ours.y_pred, theirs.y_pred)
    if "slices" in spec:
        evidence["slices"] = _slice_evidence(spec, metrics, task, holdout, y, ours)
    if "operational" in spec:
        evidence["operational"] = _operational_evidence(spec, candidate, model, X)
    if "custom" in spec:
        from mlops_airflow.evaluation.operational import resolve_custom_check
        from mlops_airflow.settings import custom_check_allowlist

        allowlist = custom_check_allowlist()
        evidence["custom"] = {entry["name"]: run_custom_check(resolve_custom_check(entry["function"], allowlist), y, ours, task)
                              for entry in spec["custom"]}
    return evidence, plot_data(task, y, ours.y_pred, ours.scores, ours.classes)


def evaluate_candidate(
    registry: ModelRegistry,
    candidate: dict[str, Any],
    frame: pd.DataFrame,
    *,
    gate: dict[str, Any],
    gate_source: str,
    champion_alias: str = "champion",
) -> dict[str, Any]:
    """The verdict for ``candidate`` on its holdout of ``frame``, stored beside the candidate with its report."""
    from mlops_airflow.evaluation.report import render_gate_report

    model_name = candidate["model_name"]
    train, holdout = split_for(candidate, frame)
    log.info("Scoring candidate %s on %d holdout rows", candidate["sha256"][:12], len(holdout))
    model = load_registered(registry, candidate)

    champion, champion_model = None, None
    alias = registry.get_alias(model_name, champion_alias)
    if alias is not None:
        manifest = registry.get_version(model_name, alias["version"])
        comparable, why = comparability(candidate, manifest)
        champion = {"version": manifest["version"], "sha256": manifest["sha256"], "comparable": comparable, "reason": why}
        if comparable:
            champion_model = load_registered(registry, manifest)

    evidence, plots = gather_evidence(gate, candidate, model, train, holdout, champion_model)
    verdict = decide(spec=gate, source=gate_source, task=candidate["task_type"], evidence=evidence, champion=champion)
    binding = "|".join(
        [candidate["sha256"], candidate["data"]["fingerprint"], verdict["gate_hash"], str(champion and champion["version"])]
    )
    verdict.update(model_name=model_name, candidate_sha256=candidate["sha256"],
                   data_fingerprint=candidate["data"]["fingerprint"],
                   verdict_id=hashlib.sha256(binding.encode()).hexdigest()[:16])
    base = verdict_key(registry, verdict)
    verdict["verdict_uri"] = registry.store.url(f"{base}.json")
    verdict["report_uri"] = registry.store.url(f"{base}.html")
    registry.store.write_bytes(f"{base}.plots.json", json.dumps(plots).encode())
    registry.store.write_bytes(f"{base}.html", render_gate_report(verdict, plots).encode())
    registry.write_record(f"{base}.json", validate_record("verdict", verdict))
    return verdict


def verdict_key(registry: ModelRegistry, verdict: dict[str, Any]) -> str:
    """Where a verdict's files live (``.json``, ``.plots.json``, ``.html``, ``.decision.json``), without suffix."""
    return registry.artifact_key(verdict["model_name"], verdict["candidate_sha256"], f"verdicts/{verdict['verdict_id']}")


def rerender_report(registry: ModelRegistry, verdict: dict[str, Any], decision: dict[str, Any]) -> None:
    """Put a person's decision on the stored gate report, so the page tells the whole story."""
    from mlops_airflow.evaluation.report import render_gate_report

    base = verdict_key(registry, verdict)
    plots = json.loads(registry.store.read_bytes(f"{base}.plots.json"))
    registry.store.write_bytes(f"{base}.html", render_gate_report({**verdict, "decision": decision}, plots).encode())
