"""The quality gate: a declarative spec in, a verdict record out.

Spec (YAML file or dict); every section is optional, but at least one check must be given::

    format_version: 1
    primary_metric: roc_auc          # default per task: roc_auc / balanced_accuracy / r2
    min_holdout_rows: 200            # below this the gate refuses to decide: insufficient_data
    thresholds:                      # absolute limits on the candidate
      roc_auc: {min: 0.70}
      log_loss: {max: 0.60}
    baseline:                        # beat a Dummy model on the same holdout, with evidence:
      metric: roc_auc                # default: primary_metric
      min_improvement: 0.02          # the one-sided lower bound of the paired bootstrap gain must exceed this
      confidence: 0.95               # one-sided (the default gate uses 0.99); resamples, seed as in statistical
    champion:                        # point comparison with the champion on the same holdout
      metric: roc_auc
      max_drop: 0.01                 # or min_gain: 0.005 (a required improvement)
      relative: false                # true: margins are fractions of the champion's value
    statistical:                     # paired bootstrap CI of the gain over the champion
      metric: roc_auc
      mode: non_inferiority          # or superiority
      margin: 0.01
      resamples: 1000
      seed: 0
      confidence: 0.95
    mcnemar: {alpha: 0.05}           # classifiers: candidate's accuracy not significantly worse
    slices:                          # a metric per value of a column
      - {column: pickup_zone, metric: roc_auc, min: 0.6, max_gap: 0.15, min_rows: 30}
    operational:                     # measured on the holdout
      max_size_mb: 50
      max_single_row_p99_ms: 50
      max_batch_p99_ms: 500
    custom:                          # allowlisted functions f(y_true, y_pred, scores) -> float
      - {name: bias, function: mlops_airflow.evaluation.operational.prediction_bias, max: 0.1}
    policies:
      no_champion: bless_on_absolute          # or reject, require_approval
      incomparable_champion: reject           # or bless_on_absolute, require_approval
      approval_above_change: 0.05             # a gain or drop larger than this needs a person
    on_fail: skip                             # or fail (the run fails, so alerts fire)

Fail closed: a gate with no checks is an error, never a pass (like TFX's Evaluator,
which refuses to bless when no thresholds are configured, so a forgotten gate cannot
bless a model); a metric or statistic that cannot be computed fails its check; a holdout
below ``min_holdout_rows`` is ``insufficient_data``; a verdict blesses only if at least
one check ran and none failed. With no gate at all, :data:`DEFAULT_GATE` applies and the
verdict records ``gate_source: default``.

Evaluation gathers the *evidence* the spec asks for (metrics, intervals, slices, timings);
:func:`decide` turns evidence into checks and an outcome, and is pure, so every rule here
is testable without a model.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Any, Literal

from mlops_airflow.evaluation.metrics import HIGHER_IS_BETTER, PRIMARY_METRIC, metrics_for
from mlops_airflow.exceptions import GateSpecError, VerdictMismatch

VERDICT_FORMAT_VERSION = 1
Outcome = Literal["blessed", "rejected", "no_champion", "incomparable_champion", "insufficient_data"]

#: Applies when a DAG gives no gate: beat a Dummy baseline by a margin *with evidence* (the
#: one-sided 99% lower bound of the paired bootstrap gain exceeds the margin, so a model no
#: better than chance is blessed in about 1% of holdouts or fewer; bench/gate_chance.py measures it)
#: and do not drop more than a margin below the champion, both on the primary metric of the task.
DEFAULT_GATE: dict[str, Any] = {
    "format_version": 1,
    "min_holdout_rows": 30,
    "baseline": {"min_improvement": 0.02, "confidence": 0.99},
    "champion": {"max_drop": 0.01},
}

_CHECK_SECTIONS = ("thresholds", "baseline", "champion", "statistical", "mcnemar", "slices", "operational", "custom")
_TOP_KEYS = {"format_version", "primary_metric", "min_holdout_rows", "policies", "on_fail", *_CHECK_SECTIONS}
_POLICY_VALUES = {"bless_on_absolute", "reject", "require_approval"}
_POLICIES = {"no_champion": "bless_on_absolute", "incomparable_champion": "reject"}
_OPERATIONAL = {
    "max_size_mb": ("size_mb", "model size (MB)"),
    "max_single_row_p50_ms": ("single_row_p50_ms", "single-row latency p50 (ms)"),
    "max_single_row_p99_ms": ("single_row_p99_ms", "single-row latency p99 (ms)"),
    "max_batch_p50_ms": ("batch_p50_ms", "batch latency p50 (ms)"),
    "max_batch_p99_ms": ("batch_p99_ms", "batch latency p99 (ms)"),
}


# -- the spec --------------------------------------------------------------------------------
def _number(value: Any, where: str, *, minimum: float | None = None, maximum: float | None = None) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise GateSpecError(f"gate.{where}: expected a number, got {value!r}")
    if minimum is not None and value < minimum:
        raise GateSpecError(f"gate.{where}: must be >= {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise GateSpecError(f"gate.{where}: must be <= {maximum}, got {value}")
    return float(value)


def _integer(value: Any, where: str, *, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise GateSpecError(f"gate.{where}: expected a whole number >= {minimum}, got {value!r}")
    return value


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


def _limits(body: dict[str, Any], where: str, *, required: bool = True) -> dict[str, float]:
    limits = {k: _number(body[k], f"{where}.{k}") for k in ("min", "max") if body.get(k) is not None}
    if required and not limits:
        raise GateSpecError(f"gate.{where}: give min or max")
    return limits


def _normalise_champion(body: dict[str, Any]) -> dict[str, Any]:
    _only_keys(body, {"metric", "max_drop", "min_gain", "relative"}, "champion")
    if ("max_drop" in body) == ("min_gain" in body):
        raise GateSpecError("gate.champion: give exactly one of max_drop or min_gain")
    out: dict[str, Any] = {"relative": bool(body.get("relative", False))}
    for key in ("max_drop", "min_gain"):
        if key in body:
            out[key] = _number(body[key], f"champion.{key}", minimum=0)
    if body.get("metric") is not None:
        out["metric"] = _metric(body["metric"], "champion.metric")
    return out


def _bootstrap_settings(body: dict[str, Any], where: str) -> dict[str, Any]:
    """resamples, seed and confidence of a section compared by paired bootstrap."""
    return {
        "resamples": _integer(body.get("resamples", 1000), f"{where}.resamples", minimum=100),
        "seed": _integer(body.get("seed", 0), f"{where}.seed", minimum=0),
        "confidence": _number(body.get("confidence", 0.95), f"{where}.confidence", minimum=0.5, maximum=0.999),
    }


def _normalise_baseline(body: dict[str, Any]) -> dict[str, Any]:
    _only_keys(body, {"metric", "min_improvement", "resamples", "seed", "confidence"}, "baseline")
    if "min_improvement" not in body:
        raise GateSpecError("gate.baseline: min_improvement is required")
    out: dict[str, Any] = {"min_improvement": _number(body["min_improvement"], "baseline.min_improvement", minimum=0),
                           **_bootstrap_settings(body, "baseline")}
    if body.get("metric") is not None:
        out["metric"] = _metric(body["metric"], "baseline.metric")
    return out


def _normalise_statistical(body: dict[str, Any]) -> dict[str, Any]:
    _only_keys(body, {"metric", "mode", "margin", "resamples", "seed", "confidence"}, "statistical")
    mode = body.get("mode", "non_inferiority")
    if mode not in ("superiority", "non_inferiority"):
        raise GateSpecError(f"gate.statistical.mode: {mode!r} is not one of superiority, non_inferiority")
    out: dict[str, Any] = {
        "mode": mode,
        "margin": _number(body.get("margin", 0.0 if mode == "superiority" else 0.01), "statistical.margin", minimum=0),
        **_bootstrap_settings(body, "statistical"),
    }
    if body.get("metric") is not None:
        out["metric"] = _metric(body["metric"], "statistical.metric")
    return out


def _normalise_slices(raw: Any) -> list[dict[str, Any]]:
    items = raw if isinstance(raw, list) else [raw]
    out = []
    for i, item in enumerate(items):
        where = f"slices[{i}]"
        body = _mapping(item, where)
        _only_keys(body, {"column", "metric", "min", "max", "max_gap", "min_rows"}, where)
        if not isinstance(body.get("column"), str) or not body["column"]:
            raise GateSpecError(f"gate.{where}.column: name the column to slice by")
        entry: dict[str, Any] = {"column": body["column"], "min_rows": _integer(body.get("min_rows", 30), f"{where}.min_rows", minimum=1)}
        entry.update(_limits(body, where, required=False))
        if body.get("max_gap") is not None:
            entry["max_gap"] = _number(body["max_gap"], f"{where}.max_gap", minimum=0)
        if not ({"min", "max", "max_gap"} & set(entry)):
            raise GateSpecError(f"gate.{where}: give min, max or max_gap")
        if body.get("metric") is not None:
            entry["metric"] = _metric(body["metric"], f"{where}.metric")
        out.append(entry)
    return out


def _normalise_custom(raw: Any) -> list[dict[str, Any]]:
    if not isinstance(raw, list):
        raise GateSpecError("gate.custom: expected a list of {name, function, min/max}")
    out = []
    for i, item in enumerate(raw):
        where = f"custom[{i}]"
        body = _mapping(item, where)
        _only_keys(body, {"name", "function", "min", "max"}, where)
        if not isinstance(body.get("function"), str) or "." not in body["function"]:
            raise GateSpecError(f"gate.{where}.function: give the dotted path of a function")
        out.append({"name": str(body.get("name") or body["function"].rsplit(".", 1)[1]), "function": body["function"],
                    **_limits(body, where)})
    return out


def normalise_gate(raw: Any) -> dict[str, Any]:
    """Check a gate spec and fill its defaults; raises :class:`GateSpecError` naming the field."""
    spec = _mapping(raw, "<root>") if raw is not None else None
    if not spec:
        raise GateSpecError(
            "gate has no checks: an empty gate is never blessed. Give thresholds, baseline or champion checks, "
            "or leave gate unset to use the bundled default gate"
        )
    _only_keys(spec, _TOP_KEYS, "<root>")
    version = _integer(spec.get("format_version", 1), "format_version", minimum=1)
    if version > 1:
        raise GateSpecError(f"gate.format_version: {version} is newer than this mlops-airflow reads (1): upgrade")
    out: dict[str, Any] = {
        "format_version": version,
        "min_holdout_rows": _integer(spec.get("min_holdout_rows", 30), "min_holdout_rows", minimum=1),
    }
    if spec.get("primary_metric") is not None:
        out["primary_metric"] = _metric(spec["primary_metric"], "primary_metric")
    thresholds = {}
    for metric, limits in _mapping(spec.get("thresholds") or {}, "thresholds").items():
        _metric(metric, f"thresholds.{metric}")
        body = _mapping(limits, f"thresholds.{metric}")
        _only_keys(body, {"min", "max"}, f"thresholds.{metric}")
        thresholds[metric] = _limits(body, f"thresholds.{metric}")
    if thresholds:
        out["thresholds"] = thresholds
    if spec.get("baseline") is not None:
        out["baseline"] = _normalise_baseline(_mapping(spec["baseline"], "baseline"))
    if spec.get("champion") is not None:
        out["champion"] = _normalise_champion(_mapping(spec["champion"], "champion"))
    if spec.get("statistical") is not None:
        out["statistical"] = _normalise_statistical(_mapping(spec["statistical"], "statistical"))
    if spec.get("mcnemar") is not None:
        body = _mapping(spec["mcnemar"], "mcnemar")
        _only_keys(body, {"alpha"}, "mcnemar")
        out["mcnemar"] = {"alpha": _number(body.get("alpha", 0.05), "mcnemar.alpha", minimum=1e-6, maximum=0.5)}
    if spec.get("slices") is not None:
        out["slices"] = _normalise_slices(spec["slices"])
    if spec.get("operational") is not None:
        body = _mapping(spec["operational"], "operational")
        _only_keys(body, set(_OPERATIONAL), "operational")
        if not body:
            raise GateSpecError(f"gate.operational: give at least one of {', '.join(sorted(_OPERATIONAL))}")
        out["operational"] = {k: _number(v, f"operational.{k}", minimum=0) for k, v in body.items()}
    if spec.get("custom") is not None:
        out["custom"] = _normalise_custom(spec["custom"])
    if not any(out.get(section) for section in _CHECK_SECTIONS):
        raise GateSpecError("gate has no checks: an empty gate is never blessed (give thresholds, baseline or champion)")
    policies: dict[str, Any] = {**_POLICIES, "approval_above_change": None}
    for key, value in _mapping(spec.get("policies") or {}, "policies").items():
        if key == "approval_above_change":
            policies[key] = None if value is None else _number(value, "policies.approval_above_change", minimum=0)
        elif key not in _POLICIES:
            raise GateSpecError(f"gate.policies: unknown key {key!r} (allowed: approval_above_change, {', '.join(sorted(_POLICIES))})")
        elif value not in _POLICY_VALUES:
            raise GateSpecError(f"gate.policies.{key}: {value!r} is not one of {', '.join(sorted(_POLICY_VALUES))}")
        else:
            policies[key] = value
    out["policies"] = policies
    on_fail = spec.get("on_fail", "skip")
    if on_fail not in ("skip", "fail"):
        raise GateSpecError(f"gate.on_fail: {on_fail!r} is not one of skip, fail")
    out["on_fail"] = on_fail
    return out


def load_gate_spec(gate: str | dict[str, Any] | None, *, base_dir: str | None = None) -> tuple[dict[str, Any], str]:
    """The normalised spec and its source (``default`` or ``user``) from a dict, inline YAML/JSON or a path.

    A path must lie in the spec folders of :mod:`mlops_airflow.specfiles` (``base_dir``: the
    running DAG's folder, where relative paths are looked up); a path elsewhere is refused unopened.
    """
    if gate is None or (isinstance(gate, str) and gate.strip().lower() in {"", "default", "none"}):
        return normalise_gate(DEFAULT_GATE), "default"
    if isinstance(gate, str):
        import yaml

        from mlops_airflow.specfiles import looks_inline, read_spec_file, resolve_spec_path

        text = gate.strip()
        if looks_inline(text):
            try:
                gate = yaml.safe_load(text)
            except yaml.YAMLError as exc:
                raise GateSpecError(f"gate spec is not valid YAML: {exc}") from exc
        else:
            path = resolve_spec_path(text, param="gate", dag_dir=base_dir, error=GateSpecError)
            _, gate = read_spec_file(path, param="gate", keys=_TOP_KEYS, error=GateSpecError)
    return normalise_gate(gate), "user"


def gate_hash(spec: dict[str, Any]) -> str:
    return "sha256:" + hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()


def gate_metrics(spec: dict[str, Any], task: str) -> dict[str, str]:
    """The metric each comparing section uses (its own, else the primary one), checked against the task."""
    primary = spec.get("primary_metric") or PRIMARY_METRIC[task]
    chosen = {"primary": primary}
    for section in ("baseline", "champion", "statistical"):
        if section in spec:
            chosen[section] = spec[section].get("metric", primary)
    for i, entry in enumerate(spec.get("slices", [])):
        chosen[f"slices[{i}]"] = entry.get("metric", primary)
    allowed = set(metrics_for(task))
    for metric in [*chosen.values(), *spec.get("thresholds", {})]:
        if metric not in allowed:
            raise GateSpecError(f"gate: metric {metric!r} does not apply to {task} models (use one of {', '.join(sorted(allowed))})")
    if "mcnemar" in spec and task == "regression":
        raise GateSpecError("gate.mcnemar: McNemar's test compares classifiers' accuracy; it does not apply to regression")
    return chosen


# -- the decision ----------------------------------------------------------------------------
def _passes(value: float | None, comparator: str, threshold: float) -> bool:
    if value is None:
        return False  # fail closed: a number we could not compute proves nothing
    return value >= threshold if comparator == ">=" else value <= threshold if comparator == "<=" else value > threshold


def oriented_gain(metric: str, new: float | None, old: float | None) -> float | None:
    """How much better ``new`` is than ``old`` (positive is better), whatever the metric's direction."""
    if new is None or old is None:
        return None
    return round((new - old) if HIGHER_IS_BETTER[metric] else (old - new), 6)


def _check(kind: str, metric: str, value: float | None, comparator: str, threshold: float, **extra: Any) -> dict[str, Any]:
    return {"kind": kind, "metric": metric, "value": value, "comparator": comparator, "threshold": threshold,
            "passed": _passes(value, comparator, threshold), **{k: v for k, v in extra.items() if v is not None}}


def _limit_checks(kind: str, metric: str, value: float | None, limits: dict[str, float], **extra: Any) -> list[dict[str, Any]]:
    return [_check(kind, metric, value, comparator, limits[bound], **extra)
            for bound, comparator in (("min", ">="), ("max", "<=")) if bound in limits]


def _champion_check(spec: dict[str, Any], metric: str, candidate: float | None, champion: float | None, version: Any) -> dict[str, Any]:
    body = spec["champion"]
    gain = oriented_gain(metric, candidate, champion)
    detail = f"candidate {candidate} vs champion v{version} {champion}"
    if body["relative"] and gain is not None:
        if not champion:
            return _check("champion", metric, None, ">=", 0.0, detail=detail + " (relative change undefined at 0)")
        gain = round(gain / abs(champion), 6)
        detail += " (relative change)"
    # A point comparison: add a statistical section for an interval against the champion.
    test = "point estimate"
    if "min_gain" in body:
        return _check("champion", metric, gain, ">=", body["min_gain"], test=test, detail=detail)
    return _check("champion", metric, gain, ">=", -body["max_drop"], test=test, detail=detail)


def _lower_bound(interval: dict[str, Any] | None) -> float | None:
    """The interval's lower bound, or None (which fails its check) when it cannot be trusted."""
    if not interval:
        return None
    if (interval.get("undefined_resamples") or 0) > 0.1 * interval.get("resamples", 1):
        # The metric was undefined on many resamples (e.g. one class only): the interval is not trustworthy.
        return None
    low = interval.get("low")
    return None if low is None else float(low)


def bootstrap_test(body: dict[str, Any], alternative: str) -> str:
    """The test a bootstrap check applies, in words, for the verdict and the report."""
    sides = "one-sided lower bound" if alternative == "greater" else "two-sided interval"
    return f"paired percentile bootstrap, {sides} at {body['confidence']:.0%}, {body['resamples']} resamples"


def _baseline_check(spec: dict[str, Any], interval: dict[str, Any] | None, metric: str) -> dict[str, Any]:
    """Better than the Dummy by more than the margin *with evidence*: a lucky point estimate is not enough.

    A strict ``>``: a candidate exactly as good as the Dummy (a Dummy itself) never passes a zero margin.
    """
    body = spec["baseline"]
    gain = None if interval is None else interval.get("gain")
    return _check("baseline", metric, _lower_bound(interval), ">", body["min_improvement"], interval=interval,
                  against="baseline", test=bootstrap_test(body, "greater"),
                  detail=f"gain over dummy {gain}; the one-sided {body['confidence']:.0%} lower bound of the gain "
                         f"must exceed {body['min_improvement']}")


def _statistical_check(spec: dict[str, Any], interval: dict[str, Any] | None, metric: str) -> dict[str, Any]:
    body = spec["statistical"]
    threshold = body["margin"] if body["mode"] == "superiority" else -body["margin"]
    return _check("statistical", metric, _lower_bound(interval), ">", threshold, mode=body["mode"], interval=interval,
                  against="champion", test=bootstrap_test(body, "two-sided"),
                  detail=f"{body['mode'].replace('_', '-')}: the lower bound of the {body['confidence']:.0%} CI of the "
                         f"gain over the champion must exceed {threshold}")


def _mcnemar_check(spec: dict[str, Any], result: dict[str, Any]) -> dict[str, Any]:
    """Not significantly less accurate than the champion; no disagreement at all is no evidence, and fails.

    A candidate that labels every row as the champion does is no improvement, whatever its
    scores: it must not be blessed on this check.
    """
    b, c, p_value = result.get("b"), result.get("c"), result.get("p_value")
    test = f"McNemar ({result.get('method', 'not run')})"
    if result.get("outcome") == "no_evidence" or (b == 0 and c == 0):
        return _check("mcnemar", "accuracy", None, ">=", spec["mcnemar"]["alpha"], against="champion", test=test,
                      outcome="no_evidence", detail="no evidence: the candidate and the champion disagree on no row, "
                                                    "so the candidate is no improvement")
    worse = (c or 0) > (b or 0)
    # Only a significant difference *against* the candidate fails: equal-or-better passes.
    value = None if p_value is None else (p_value if worse else 1.0)
    return _check("mcnemar", "accuracy", value, ">=", spec["mcnemar"]["alpha"], p_value=p_value, against="champion",
                  test=test, outcome="tested", detail=f"candidate right where champion wrong: {b}, the reverse: {c}")


def _slice_checks(entry: dict[str, Any], result: dict[str, Any] | None, metric: str) -> list[dict[str, Any]]:
    if result is None or not result.get("slices"):
        # fail closed: asked to check slices we could not measure
        return [_check("slice", metric, None, ">=", entry.get("min", 0.0), slice_column=entry["column"],
                       detail=f"no slice of {entry['column']!r} had {entry['min_rows']} rows or more")]
    checks = []
    for item in result["slices"]:
        checks += _limit_checks("slice", metric, item["metric"], entry, slice_column=entry["column"],
                                slice_value=item["value"], detail=f"{entry['column']}={item['value']} ({item['rows']} rows)")
    if "max_gap" in entry:
        checks.append(_check("slice_gap", metric, result.get("max_gap"), "<=", entry["max_gap"], slice_column=entry["column"],
                             detail=f"largest gap between slices of {entry['column']!r}"))
    return checks


def decide(
    *,
    spec: dict[str, Any],
    source: str,
    task: str,
    evidence: dict[str, Any],
    champion: dict[str, Any] | None,
) -> dict[str, Any]:
    """Turn evidence into checks and an outcome.

    ``evidence`` holds what evaluation measured: ``holdout_rows``; ``metrics`` with
    ``candidate``, ``baseline`` and (if comparable) ``champion`` dicts; and, when the spec
    asks, ``baseline_interval`` (one-sided paired bootstrap vs the Dummy, from
    :func:`mlops_airflow.evaluation.evaluate.baseline_interval`), ``interval`` (paired
    bootstrap vs the champion), ``mcnemar``, ``slices`` (one
    result per slice spec), ``operational`` and ``custom`` values. ``champion`` is None
    (no champion) or ``{"version", "sha256", "comparable", "reason"}``.
    """
    metrics = gate_metrics(spec, task)
    primary = metrics["primary"]
    scores = evidence["metrics"]
    candidate, baseline = scores["candidate"], scores["baseline"]
    comparable = champion is not None and champion.get("comparable", False)
    base = {
        "format_version": VERDICT_FORMAT_VERSION,
        "gate_source": source,
        "gate": spec,
        "gate_hash": gate_hash(spec),
        "on_fail": spec["on_fail"],
        "task_type": task,
        "primary_metric": primary,
        "holdout_rows": evidence["holdout_rows"],
        "metrics": {"candidate": candidate, "baseline": baseline, "champion": scores.get("champion") if comparable else None},
        "champion": None if champion is None else {k: champion.get(k) for k in ("version", "sha256", "comparable", "reason")},
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        **{k: evidence[k] for k in ("interval", "baseline_interval", "mcnemar", "slices", "operational", "custom")
           if evidence.get(k) is not None},
    }
    if evidence["holdout_rows"] < spec["min_holdout_rows"]:
        return {**base, "outcome": "insufficient_data", "blessed": False, "requires_approval": False, "checks": [],
                "reason": f"the holdout has {evidence['holdout_rows']} rows, fewer than the {spec['min_holdout_rows']} "
                          "the gate needs to decide: not blessed (add data or lower min_holdout_rows)"}

    checks: list[dict[str, Any]] = []
    for metric, limits in spec.get("thresholds", {}).items():
        checks += _limit_checks("threshold", metric, candidate.get(metric), limits)
    if "baseline" in spec:
        checks.append(_baseline_check(spec, evidence.get("baseline_interval"), metrics["baseline"]))
    if comparable:
        assert champion is not None
        if "champion" in spec:
            metric = metrics["champion"]
            checks.append(_champion_check(spec, metric, candidate.get(metric), scores["champion"].get(metric), champion["version"]))
        if "statistical" in spec:
            checks.append(_statistical_check(spec, evidence.get("interval"), metrics["statistical"]))
        if "mcnemar" in spec:
            checks.append(_mcnemar_check(spec, evidence.get("mcnemar") or {}))
    for i, entry in enumerate(spec.get("slices", [])):
        results = evidence.get("slices") or []
        checks += _slice_checks(entry, results[i] if i < len(results) else None, metrics[f"slices[{i}]"])
    operational = evidence.get("operational") or {}
    for key, limit in spec.get("operational", {}).items():
        name, label = _OPERATIONAL[key]
        checks.append(_check("operational", name, operational.get(name), "<=", limit, detail=label))
    for entry in spec.get("custom", []):
        value = (evidence.get("custom") or {}).get(entry["name"])
        checks += _limit_checks("custom", entry["name"], value, entry, detail=entry["function"])

    failed = [c for c in checks if not c["passed"]]
    outcome: Outcome
    if champion is None:
        outcome, policy = "no_champion", spec["policies"]["no_champion"]
    elif not comparable:
        outcome, policy = "incomparable_champion", spec["policies"]["incomparable_champion"]
    else:
        outcome, policy = ("rejected" if failed else "blessed"), "bless_on_absolute"
    passed = bool(checks) and not failed
    requires_approval = passed and policy == "require_approval"
    change = None
    if passed and comparable and spec["policies"]["approval_above_change"] is not None:
        change = oriented_gain(primary, candidate.get(primary), scores["champion"].get(primary))
        # Fail closed: a change we cannot measure is not a small change.
        requires_approval = change is None or abs(change) > spec["policies"]["approval_above_change"]
    blessed = passed and policy != "reject" and not requires_approval
    return {**base, "outcome": outcome, "blessed": blessed, "requires_approval": requires_approval, "checks": checks,
            "reason": _reason(outcome, policy, checks, failed, champion, requires_approval, change)}


def describe_check(check: dict[str, Any]) -> str:
    label = {
        "threshold": check["metric"],
        "baseline": f"{check['metric']} gain over dummy, one-sided lower bound",
        "champion": f"{check['metric']} gain over champion",
        "statistical": f"{check['metric']} gain over champion, CI lower bound",
        "mcnemar": "McNemar p-value (candidate worse)",
        "slice": f"{check['metric']} on {check.get('slice_column')}={check.get('slice_value')}",
        "slice_gap": f"{check['metric']} gap across {check.get('slice_column')}",
        "operational": str(check.get("detail") or check["metric"]),
        "custom": check["metric"],
    }.get(check["kind"], check["metric"])
    text = f"{label} = {check['value']} (needs {check['comparator']} {check['threshold']}): {'pass' if check['passed'] else 'FAIL'}"
    interval = check.get("interval")
    if interval:
        text += f" [gain {interval.get('gain')}, {interval.get('confidence', 0.95):.0%} CI {interval.get('low')}..{interval.get('high')}]"
    if check.get("outcome") == "no_evidence":
        text += " [no evidence]"
    return text


def _reason(outcome: str, policy: str, checks: list[dict[str, Any]], failed: list[dict[str, Any]],
            champion: dict[str, Any] | None, requires_approval: bool, change: float | None) -> str:
    if not checks:
        return "no check could run (fail closed): add thresholds or a baseline check to the gate"
    if failed:
        return "failed: " + "; ".join(describe_check(c) for c in failed[:10]) + (f"; and {len(failed) - 10} more" if len(failed) > 10 else "")
    if requires_approval:
        why = {"no_champion": "there is no champion yet", "incomparable_champion": "the champion is not comparable"}.get(
            outcome, f"the change over the champion ({change}) is larger than the gate allows without a person")
        return f"all {len(checks)} checks passed, but {why}: awaiting approval"
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
