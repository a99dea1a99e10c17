"""The quality gate: a declarative spec in, a verdict record out.

Spec (YAML file or dict)::

    format_version: 1
    primary_metric: roc_auc          # default per task: roc_auc / balanced_accuracy / r2
    thresholds:                      # absolute limits on the candidate
      roc_auc: {min: 0.70}
      log_loss: {max: 0.60}
    baseline:                        # beat a Dummy model on the same holdout
      metric: roc_auc                # default: primary_metric
      min_improvement: 0.02
    champion:                        # compared with the current champion on the same holdout
      metric: roc_auc
      max_drop: 0.01
    policies:
      no_champion: bless_on_absolute         # or: reject
      incomparable_champion: reject          # or: bless_on_absolute
    on_fail: skip                            # or: fail (the run fails, so alerts fire)

Fail closed: a gate with no checks is an error, never a pass (like TFX's Evaluator,
which refuses to bless when no thresholds are configured, so a forgotten gate cannot
bless a model); a metric that cannot be computed fails its check; a verdict blesses
only if at least one check ran and none failed. With no gate at all, :data:`DEFAULT_GATE`
applies and the verdict records ``gate_source: default``.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from mlops_airflow.evaluation.metrics import HIGHER_IS_BETTER, PRIMARY_METRIC, metrics_for
from mlops_airflow.exceptions import GateSpecError, VerdictMismatch

VERDICT_FORMAT_VERSION = 1
Outcome = Literal["blessed", "rejected", "no_champion", "incomparable_champion"]

#: Applies when a DAG gives no gate: beat a Dummy baseline by a margin and do not drop
#: more than a margin below the champion, both on the primary metric of the task.
DEFAULT_GATE: dict[str, Any] = {
    "format_version": 1,
    "baseline": {"min_improvement": 0.02},
    "champion": {"max_drop": 0.01},
}

_TOP_KEYS = {"format_version", "primary_metric", "thresholds", "baseline", "champion", "policies", "on_fail"}
_POLICIES = {"no_champion": "bless_on_absolute", "incomparable_champion": "reject"}
_POLICY_VALUES = {"bless_on_absolute", "reject"}


def _number(value: Any, where: str, *, minimum: float | None = None) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise GateSpecError(f"gate.{where}: expected a number, got {value!r}")
    if minimum is not None and value < minimum:
        raise GateSpecError(f"gate.{where}: must be >= {minimum}, got {value}")
    return float(value)


def _metric(name: Any, where: str) -> str:
    if name not in HIGHER_IS_BETTER:
        raise GateSpecError(f"gate.{where}: unknown metric {name!r} (known: {', '.join(sorted(HIGHER_IS_BETTER))})")
    return str(name)


def _only_keys(section: dict[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(set(section) - allowed)
    if unknown:
        raise GateSpecError(f"gate.{where}: unknown key {unknown[0]!r} (allowed: {', '.join(sorted(allowed))})")


def _mapping(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise GateSpecError(f"gate.{where}: expected a mapping, got {type(value).__name__}")
    return value


def normalise_gate(raw: Any) -> dict[str, Any]:
    """Check a gate spec and fill its defaults; raises :class:`GateSpecError` naming the field."""
    spec = _mapping(raw, "<root>") if raw is not None else None
    if not spec:
        raise GateSpecError(
            "gate has no checks: an empty gate is never blessed. Give thresholds, baseline or champion checks, "
            "or leave gate unset to use the bundled default gate"
        )
    _only_keys(spec, _TOP_KEYS, "<root>")
    out: dict[str, Any] = {"format_version": int(spec.get("format_version", 1))}
    if spec.get("primary_metric") is not None:
        out["primary_metric"] = _metric(spec["primary_metric"], "primary_metric")
    thresholds = {}
    for metric, limits in _mapping(spec.get("thresholds") or {}, "thresholds").items():
        _metric(metric, f"thresholds.{metric}")
        limits = _mapping(limits, f"thresholds.{metric}")
        _only_keys(limits, {"min", "max"}, f"thresholds.{metric}")
        if not limits:
            raise GateSpecError(f"gate.thresholds.{metric}: give min or max")
        thresholds[metric] = {k: _number(v, f"thresholds.{metric}.{k}") for k, v in limits.items()}
    if thresholds:
        out["thresholds"] = thresholds
    for section, margin in (("baseline", "min_improvement"), ("champion", "max_drop")):
        if spec.get(section) is None:
            continue
        body = _mapping(spec[section], section)
        _only_keys(body, {"metric", margin}, section)
        if margin not in body:
            raise GateSpecError(f"gate.{section}: {margin} is required")
        entry: dict[str, Any] = {margin: _number(body[margin], f"{section}.{margin}", minimum=0)}
        if body.get("metric") is not None:
            entry["metric"] = _metric(body["metric"], f"{section}.metric")
        out[section] = entry
    if not (out.get("thresholds") or "baseline" in out or "champion" in out):
        raise GateSpecError("gate has no checks: an empty gate is never blessed (give thresholds, baseline or champion)")
    policies = dict(_POLICIES)
    for key, value in _mapping(spec.get("policies") or {}, "policies").items():
        if key not in _POLICIES:
            raise GateSpecError(f"gate.policies: unknown key {key!r} (allowed: {', '.join(sorted(_POLICIES))})")
        if value not in _POLICY_VALUES:
            raise GateSpecError(f"gate.policies.{key}: {value!r} is not one of {', '.join(sorted(_POLICY_VALUES))}")
        policies[key] = value
    out["policies"] = policies
    on_fail = spec.get("on_fail", "skip")
    if on_fail not in ("skip", "fail"):
        raise GateSpecError(f"gate.on_fail: {on_fail!r} is not one of skip, fail")
    out["on_fail"] = on_fail
    return out


def load_gate_spec(gate: str | dict[str, Any] | None, *, base_dir: str | None = None) -> tuple[dict[str, Any], str]:
    """The normalised spec and its source (``default`` or ``user``) from a path, inline YAML/JSON or dict."""
    if gate is None or (isinstance(gate, str) and gate.strip().lower() in {"", "default", "none"}):
        return normalise_gate(DEFAULT_GATE), "default"
    if isinstance(gate, str):
        import yaml

        text = gate.strip()
        candidates = [Path(base_dir, text)] if base_dir else []
        candidates.append(Path(text))
        path = next((p for p in candidates if p.is_file()), None)
        if path is not None:
            text = path.read_text()
        elif not text.startswith("{"):
            raise GateSpecError(f"gate file not found: {gate}")
        try:
            gate = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise GateSpecError(f"gate spec is not valid YAML: {exc}") from exc
    return normalise_gate(gate), "user"


def gate_hash(spec: dict[str, Any]) -> str:
    return "sha256:" + hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()


def _passes(metric: str, value: float | None, comparator: str, threshold: float) -> bool:
    if value is None:
        return False  # fail closed: a metric we could not compute proves nothing
    return value >= threshold if comparator == ">=" else value <= threshold


def _oriented_gain(metric: str, new: float | None, old: float | None) -> float | None:
    """How much better ``new`` is than ``old`` (positive is better), whatever the metric's direction."""
    if new is None or old is None:
        return None
    return round((new - old) if HIGHER_IS_BETTER[metric] else (old - new), 6)


def decide(
    *,
    spec: dict[str, Any],
    source: str,
    task: str,
    candidate: dict[str, float | None],
    baseline: dict[str, float | None],
    champion: dict[str, Any] | None,
) -> dict[str, Any]:
    """Run every check and decide. ``champion`` is None (no champion) or
    ``{"version", "sha256", "metrics", "comparable": bool, "reason"}``.
    """
    allowed = set(metrics_for(task))
    primary = spec.get("primary_metric") or PRIMARY_METRIC[task]
    used = [primary, *spec.get("thresholds", {})] + [spec[s].get("metric", primary) for s in ("baseline", "champion") if s in spec]
    for metric in used:
        if metric not in allowed:
            raise GateSpecError(f"gate: metric {metric!r} does not apply to {task} models (use one of {', '.join(sorted(allowed))})")

    checks: list[dict[str, Any]] = []
    for metric, limits in spec.get("thresholds", {}).items():
        for bound, comparator in (("min", ">="), ("max", "<=")):
            if bound in limits:
                value = candidate.get(metric)
                checks.append({
                    "kind": "threshold", "metric": metric, "value": value, "comparator": comparator,
                    "threshold": limits[bound], "passed": _passes(metric, value, comparator, limits[bound]),
                })
    if "baseline" in spec:
        metric = spec["baseline"].get("metric", primary)
        gain = _oriented_gain(metric, candidate.get(metric), baseline.get(metric))
        margin = spec["baseline"]["min_improvement"]
        checks.append({
            "kind": "baseline", "metric": metric, "value": gain, "comparator": ">=", "threshold": margin,
            "passed": _passes(metric, gain, ">=", margin),
            "detail": f"candidate {candidate.get(metric)} vs dummy {baseline.get(metric)}",
        })
    comparable = champion is not None and champion.get("comparable", False)
    if "champion" in spec and comparable:
        assert champion is not None
        metric = spec["champion"].get("metric", primary)
        gain = _oriented_gain(metric, candidate.get(metric), champion["metrics"].get(metric))
        limit = -spec["champion"]["max_drop"]
        checks.append({
            "kind": "champion", "metric": metric, "value": gain, "comparator": ">=", "threshold": limit,
            "passed": _passes(metric, gain, ">=", limit),
            "detail": f"candidate {candidate.get(metric)} vs champion v{champion['version']} {champion['metrics'].get(metric)}",
        })

    failed = [c for c in checks if not c["passed"]]
    outcome: Outcome
    if champion is None:
        outcome = "no_champion"
        policy = spec["policies"]["no_champion"]
    elif not comparable:
        outcome = "incomparable_champion"
        policy = spec["policies"]["incomparable_champion"]
    else:
        outcome = "rejected" if failed else "blessed"
        policy = "bless_on_absolute"
    blessed = policy == "bless_on_absolute" and bool(checks) and not failed
    reason = _reason(outcome, policy, checks, failed, champion)
    return {
        "format_version": VERDICT_FORMAT_VERSION,
        "outcome": outcome,
        "blessed": blessed,
        "reason": reason,
        "gate_source": source,
        "gate": spec,
        "gate_hash": gate_hash(spec),
        "on_fail": spec["on_fail"],
        "task_type": task,
        "primary_metric": primary,
        "checks": checks,
        "metrics": {"candidate": candidate, "baseline": baseline, "champion": champion["metrics"] if champion else None},
        "champion": None if champion is None else {k: champion.get(k) for k in ("version", "sha256", "comparable", "reason")},
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def describe_check(check: dict[str, Any]) -> str:
    label = {"threshold": check["metric"], "baseline": f"{check['metric']} gain over dummy",
             "champion": f"{check['metric']} gain over champion"}[check["kind"]]
    return f"{label} = {check['value']} (needs {check['comparator']} {check['threshold']}): {'pass' if check['passed'] else 'FAIL'}"


def _reason(outcome: str, policy: str, checks: list[dict[str, Any]], failed: list[dict[str, Any]], champion: dict[str, Any] | None) -> str:
    if not checks:
        return "no check could run (fail closed): add thresholds or a baseline check to the gate"
    if failed:
        return "failed: " + "; ".join(describe_check(c) for c in failed)
    if outcome == "no_champion":
        return ("no champion yet: blessed on absolute and baseline checks" if policy == "bless_on_absolute"
                else "no champion yet and the gate's policy is to reject")
    if outcome == "incomparable_champion":
        assert champion is not None
        return (f"champion v{champion['version']} is not comparable ({champion.get('reason')}); "
                + ("blessed on absolute and baseline checks" if policy == "bless_on_absolute" else "the gate's policy is to reject"))
    return f"all {len(checks)} checks passed"


def check_binding(
    verdict: dict[str, Any],
    *,
    model_name: str,
    candidate_sha256: str,
    data_fingerprint: str,
) -> None:
    """Refuse a verdict made for another model, candidate or dataset, or one whose gate was altered."""
    problems = []
    if verdict.get("model_name") != model_name:
        problems.append(f"it is for model {verdict.get('model_name')!r}, not {model_name!r}")
    if verdict.get("candidate_sha256") != candidate_sha256:
        problems.append(f"it is for candidate {str(verdict.get('candidate_sha256'))[:12]}, not {candidate_sha256[:12]}")
    if verdict.get("data_fingerprint") != data_fingerprint:
        problems.append("it was made on other data (fingerprint differs)")
    if gate_hash(verdict.get("gate") or {}) != verdict.get("gate_hash"):
        problems.append("its gate spec does not match its recorded hash")
    if problems:
        raise VerdictMismatch("the verdict does not bind to this candidate: " + "; ".join(problems))
