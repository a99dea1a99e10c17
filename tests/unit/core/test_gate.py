"""The gate's rules on synthetic evidence: every check kind, outcome and policy, pass and fail."""

from __future__ import annotations

import json
from typing import Any

import pytest

from mlops_airflow.evaluation.gate import (
    DEFAULT_GATE,
    check_binding,
    decide,
    gate_hash,
    gate_metrics,
    load_gate_spec,
    normalise_gate,
    oriented_gain,
)
from mlops_airflow.exceptions import GateSpecError, VerdictMismatch

CANDIDATE = {"roc_auc": 0.80, "accuracy": 0.75, "log_loss": 0.50, "balanced_accuracy": 0.7, "f1": 0.7,
             "precision": 0.7, "recall": 0.7}
DUMMY = {"roc_auc": 0.50, "accuracy": 0.58, "log_loss": 0.68, "balanced_accuracy": 0.5, "f1": 0.0,
         "precision": 0.0, "recall": 0.0}


def champion(auc: float = 0.79, comparable: bool = True) -> dict[str, Any]:
    return {"version": 3, "sha256": "c" * 64, "comparable": comparable, "reason": "" if comparable else "schema changed",
            "auc": auc}


def run(spec: dict[str, Any] | None, champ: dict[str, Any] | None = None, *, cand: dict[str, Any] | None = None,
        rows: int = 1000, **evidence: Any) -> dict[str, Any]:
    normalised, source = load_gate_spec(spec)
    metrics: dict[str, Any] = {"candidate": cand or CANDIDATE, "baseline": DUMMY}
    if "baseline" in normalised and "baseline_interval" not in evidence:
        # A narrow interval around the point gain over the dummy: these rules need no resampling.
        metric = gate_metrics(normalised, "binary")["baseline"]
        gain = oriented_gain(metric, metrics["candidate"][metric], DUMMY[metric])
        assert gain is not None
        evidence["baseline_interval"] = {"metric": metric, "gain": gain, "low": gain - 0.01, "high": gain + 0.01,
                                         "confidence": 0.95, "resamples": 1000, "undefined_resamples": 0,
                                         "alternative": "greater"}
    if champ is not None:
        metrics["champion"] = {**CANDIDATE, "roc_auc": champ.pop("auc")}
    verdict = decide(spec=normalised, source=source, task="binary",
                     evidence={"holdout_rows": rows, "metrics": metrics, **evidence}, champion=champ)
    json.dumps(verdict)  # every verdict is plain data
    return verdict


INTERVAL_BETTER = {"metric": "roc_auc", "gain": 0.03, "low": 0.012, "high": 0.05, "confidence": 0.95, "resamples": 1000}
INTERVAL_SAME = {"metric": "roc_auc", "gain": 0.001, "low": -0.006, "high": 0.008, "confidence": 0.95, "resamples": 1000}
INTERVAL_WORSE = {"metric": "roc_auc", "gain": -0.04, "low": -0.06, "high": -0.02, "confidence": 0.95, "resamples": 1000}
SLICES = [{"column": "zone", "metric": "roc_auc", "max_gap": 0.2,
           "slices": [{"value": "a", "rows": 100, "metric": 0.85}, {"value": "b", "rows": 90, "metric": 0.65}],
           "worst": {"value": "b", "rows": 90, "metric": 0.65}}]


@pytest.mark.parametrize(
    ("spec", "champ", "evidence", "outcome", "blessed"),
    [
        # the default gate
        (None, None, {}, "no_champion", True),
        (None, champion(0.805), {}, "blessed", True),
        (None, champion(0.85), {}, "rejected", False),
        (None, champion(0.70, comparable=False), {}, "incomparable_champion", False),
        # absolute thresholds, both directions
        ({"thresholds": {"roc_auc": {"min": 0.9}}}, None, {}, "no_champion", False),
        ({"thresholds": {"roc_auc": {"min": 0.7}, "log_loss": {"max": 0.6}}}, None, {}, "no_champion", True),
        ({"thresholds": {"log_loss": {"max": 0.4}}}, champion(0.7), {}, "rejected", False),
        # baseline margin, and a lower-is-better metric
        ({"baseline": {"min_improvement": 0.5}}, None, {}, "no_champion", False),
        ({"baseline": {"min_improvement": 0.1, "metric": "log_loss"}}, None, {}, "no_champion", True),
        # champion: max drop, required gain, relative
        ({"champion": {"max_drop": 0.0}}, champion(0.79), {}, "blessed", True),
        ({"champion": {"max_drop": 0.0}}, champion(0.81), {}, "rejected", False),
        ({"champion": {"min_gain": 0.005}}, champion(0.79), {}, "blessed", True),
        ({"champion": {"min_gain": 0.05}}, champion(0.79), {}, "rejected", False),
        ({"champion": {"max_drop": 0.02, "relative": True}}, champion(0.815), {}, "blessed", True),  # -1.8 %
        ({"champion": {"max_drop": 0.01, "relative": True}}, champion(0.815), {}, "rejected", False),
        # statistics: superiority / non-inferiority
        ({"statistical": {"mode": "superiority"}}, champion(), {"interval": INTERVAL_BETTER}, "blessed", True),
        ({"statistical": {"mode": "superiority"}}, champion(), {"interval": INTERVAL_SAME}, "rejected", False),
        ({"statistical": {"mode": "non_inferiority", "margin": 0.01}}, champion(), {"interval": INTERVAL_SAME}, "blessed", True),
        ({"statistical": {"mode": "non_inferiority", "margin": 0.01}}, champion(), {"interval": INTERVAL_WORSE}, "rejected", False),
        ({"statistical": {"mode": "superiority"}}, champion(), {}, "rejected", False),  # no interval: fail closed
        # McNemar: only a significant difference against the candidate fails
        ({"mcnemar": {"alpha": 0.05}}, champion(), {"mcnemar": {"b": 40, "c": 10, "p_value": 0.0001}}, "blessed", True),
        ({"mcnemar": {"alpha": 0.05}}, champion(), {"mcnemar": {"b": 10, "c": 40, "p_value": 0.0001}}, "rejected", False),
        ({"mcnemar": {"alpha": 0.05}}, champion(), {"mcnemar": {"b": 12, "c": 15, "p_value": 0.7}}, "blessed", True),
        # slices: per-slice threshold and max gap
        ({"slices": [{"column": "zone", "min": 0.6}]}, None, {"slices": SLICES}, "no_champion", True),
        ({"slices": [{"column": "zone", "min": 0.7}]}, None, {"slices": SLICES}, "no_champion", False),
        ({"slices": [{"column": "zone", "max_gap": 0.1}]}, None, {"slices": SLICES}, "no_champion", False),
        ({"slices": [{"column": "zone", "max_gap": 0.25}]}, None, {"slices": SLICES}, "no_champion", True),
        # operational limits
        ({"operational": {"max_size_mb": 5}}, None, {"operational": {"size_mb": 1.2}}, "no_champion", True),
        ({"operational": {"max_size_mb": 1}}, None, {"operational": {"size_mb": 1.2}}, "no_champion", False),
        ({"operational": {"max_single_row_p99_ms": 20}}, None, {"operational": {"single_row_p99_ms": 35.0}}, "no_champion", False),
        ({"operational": {"max_batch_p99_ms": 200}}, None, {"operational": {}}, "no_champion", False),  # not measured
        # custom checks
        ({"custom": [{"name": "bias", "function": "x.bias", "max": 0.1}]}, None, {"custom": {"bias": 0.02}}, "no_champion", True),
        ({"custom": [{"name": "bias", "function": "x.bias", "max": 0.1}]}, None, {"custom": {"bias": 0.3}}, "no_champion", False),
        # policies
        ({"baseline": {"min_improvement": 0.0}, "policies": {"no_champion": "reject"}}, None, {}, "no_champion", False),
        ({"baseline": {"min_improvement": 0.0}, "policies": {"incomparable_champion": "bless_on_absolute"}},
         champion(0.9, comparable=False), {}, "incomparable_champion", True),
    ],
)
def test_outcomes(spec: dict[str, Any] | None, champ: dict[str, Any] | None, evidence: dict[str, Any], outcome: str,
                  blessed: bool) -> None:
    verdict = run(spec, champ, **evidence)
    assert (verdict["outcome"], verdict["blessed"]) == (outcome, blessed)
    assert verdict["gate_source"] == ("default" if spec is None else "user")
    assert verdict["requires_approval"] is False
    if not blessed:
        assert verdict["reason"]


def test_small_holdout_is_insufficient_data_and_never_blessed() -> None:
    verdict = run({"baseline": {"min_improvement": 0.0}, "min_holdout_rows": 200}, champion(), rows=120)
    assert (verdict["outcome"], verdict["blessed"], verdict["checks"]) == ("insufficient_data", False, [])
    assert "120 rows, fewer than the 200" in verdict["reason"]


@pytest.mark.parametrize(
    ("policies", "champ", "needs"),
    [
        ({"no_champion": "require_approval"}, None, True),
        ({"incomparable_champion": "require_approval"}, champion(0.7, comparable=False), True),
        ({"approval_above_change": 0.005}, champion(0.70), True),  # +0.10 is a big jump: a person looks
        ({"approval_above_change": 0.5}, champion(0.79), False),
    ],
)
def test_policies_that_ask_for_a_person(policies: dict[str, Any], champ: dict[str, Any] | None, needs: bool) -> None:
    verdict = run({"baseline": {"min_improvement": 0.0}, "policies": policies}, champ)
    assert verdict["requires_approval"] is needs
    assert verdict["blessed"] is (not needs)
    if needs:
        assert "awaiting approval" in verdict["reason"]


def test_approval_is_never_asked_for_a_failing_candidate() -> None:
    verdict = run({"thresholds": {"roc_auc": {"min": 0.95}}, "policies": {"no_champion": "require_approval"}}, None)
    assert (verdict["blessed"], verdict["requires_approval"]) == (False, False)


def test_champion_only_gate_with_no_champion_never_blesses() -> None:
    verdict = run({"champion": {"max_drop": 0.01}}, None)
    assert verdict["checks"] == [] and verdict["blessed"] is False
    assert "fail closed" in verdict["reason"]


def test_an_undefined_metric_fails_its_check() -> None:
    verdict = run({"thresholds": {"roc_auc": {"min": 0.5}}}, None, cand={**CANDIDATE, "roc_auc": None})
    assert verdict["blessed"] is False


def test_dummy_model_is_never_blessed_by_the_default_gate() -> None:
    verdict = run(None, None, cand=DUMMY)
    assert verdict["blessed"] is False and verdict["checks"][0]["kind"] == "baseline"


def test_statistical_check_carries_its_interval() -> None:
    check = run({"statistical": {"mode": "superiority"}}, champion(), interval=INTERVAL_BETTER)["checks"][0]
    assert check["interval"] == INTERVAL_BETTER and check["mode"] == "superiority" and check["value"] == 0.012


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({}, "empty gate is never blessed"),
        ({"on_fail": "skip"}, "gate has no checks"),
        ({"thresholds": {"auroc": {"min": 0.5}}}, "unknown metric 'auroc'"),
        ({"thresholds": {"roc_auc": {"minimum": 0.5}}}, "unknown key 'minimum'"),
        ({"thresholds": {"roc_auc": {"min": "high"}}}, "thresholds.roc_auc.min: expected a number"),
        ({"baseline": {}}, "min_improvement is required"),
        ({"champion": {"max_drop": -1}}, "must be >= 0"),
        ({"champion": {"max_drop": 0.1, "min_gain": 0.1}}, "exactly one of max_drop or min_gain"),
        ({"statistical": {"mode": "better"}}, "statistical.mode"),
        ({"statistical": {"resamples": 10}}, "statistical.resamples: expected a whole number >= 100"),
        ({"statistical": {"confidence": 1.5}}, "must be <= 0.999"),
        ({"mcnemar": {"alpha": 0.9}}, "mcnemar.alpha"),
        ({"slices": [{"min": 0.5}]}, r"slices\[0\].column"),
        ({"slices": [{"column": "zone"}]}, "give min, max or max_gap"),
        ({"operational": {"max_ram": 1}}, "unknown key 'max_ram'"),
        ({"custom": [{"function": "nodots", "max": 1}]}, "dotted path"),
        ({"custom": [{"function": "a.b"}]}, "give min or max"),
        ({"baseline": {"min_improvement": 0}, "min_holdout_rows": 0}, "min_holdout_rows"),
        ({"baseline": {"min_improvement": 0}, "on_fail": "explode"}, "on_fail"),
        ({"baseline": {"min_improvement": 0}, "policies": {"no_champion": "yolo"}}, "policies.no_champion"),
        ({"treshold": {}}, "unknown key 'treshold'"),
        ("missing-file.yaml", "gate: spec file 'missing-file.yaml' not found"),
    ],
)
def test_invalid_gate_specs_are_named(spec: Any, message: str) -> None:
    with pytest.raises(GateSpecError, match=message):
        load_gate_spec(spec)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"thresholds": {"rmse": {"max": 1}}}, "'rmse' does not apply to binary"),
        ({"statistical": {"metric": "r2"}}, "'r2' does not apply to binary"),
        ({"slices": [{"column": "z", "metric": "mae", "min": 0}]}, "'mae' does not apply"),
    ],
)
def test_metric_for_the_wrong_task_is_refused(spec: dict[str, Any], message: str) -> None:
    with pytest.raises(GateSpecError, match=message):
        decide(spec=normalise_gate(spec), source="user", task="binary",
               evidence={"holdout_rows": 100, "metrics": {"candidate": CANDIDATE, "baseline": DUMMY}}, champion=None)


def test_mcnemar_does_not_apply_to_regression() -> None:
    with pytest.raises(GateSpecError, match="does not apply to regression"):
        decide(spec=normalise_gate({"mcnemar": {}}), source="user", task="regression",
               evidence={"holdout_rows": 100, "metrics": {"candidate": {}, "baseline": {}}}, champion=None)


def test_gate_from_yaml_file_and_inline(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("MLOPS_AIRFLOW_SPEC_ROOTS", str(tmp_path))
    path = tmp_path / "gate.yaml"
    path.write_text("thresholds:\n  roc_auc: {min: 0.7}\n")
    assert load_gate_spec(str(path))[0]["thresholds"] == {"roc_auc": {"min": 0.7}}
    assert load_gate_spec("gate.yaml", base_dir=str(tmp_path))[1] == "user"
    assert load_gate_spec('{"baseline": {"min_improvement": 0}}')[0]["baseline"]["min_improvement"] == 0.0
    assert load_gate_spec("baseline:\n  min_improvement: 0.1\n")[0]["baseline"]["min_improvement"] == 0.1
    assert load_gate_spec(None)[0] == normalise_gate(DEFAULT_GATE)


def test_binding_refuses_another_candidate_dataset_or_altered_gate() -> None:
    verdict = {**run(None), "model_name": "m", "candidate_sha256": "a" * 64, "data_fingerprint": "sha256:d"}
    check_binding(verdict, model_name="m", candidate_sha256="a" * 64, data_fingerprint="sha256:d")
    with pytest.raises(VerdictMismatch, match="for candidate aaaaaaaaaaaa, not bbbbbbbbbbbb"):
        check_binding(verdict, model_name="m", candidate_sha256="b" * 64, data_fingerprint="sha256:d")
    with pytest.raises(VerdictMismatch, match="other data"):
        check_binding(verdict, model_name="m", candidate_sha256="a" * 64, data_fingerprint="sha256:e")
    with pytest.raises(VerdictMismatch, match="for model 'm', not 'n'"):
        check_binding(verdict, model_name="n", candidate_sha256="a" * 64, data_fingerprint="sha256:d")
    tampered = {**verdict, "gate": {**verdict["gate"], "baseline": {"min_improvement": -5}}}
    assert gate_hash(tampered["gate"]) != verdict["gate_hash"]
    with pytest.raises(VerdictMismatch, match="does not match its recorded hash"):
        check_binding(tampered, model_name="m", candidate_sha256="a" * 64, data_fingerprint="sha256:d")


def test_a_change_that_cannot_be_measured_asks_for_a_person() -> None:
    verdict = run({"thresholds": {"accuracy": {"min": 0.5}}, "policies": {"approval_above_change": 0.05}},
                  champion(0.8), cand={**CANDIDATE, "roc_auc": None})
    assert verdict["requires_approval"] is True and verdict["blessed"] is False


def test_gate_format_version_and_one_line_inline_yaml() -> None:
    with pytest.raises(GateSpecError, match="newer than this mlops-airflow reads"):
        load_gate_spec({"format_version": 2, "baseline": {"min_improvement": 0}})
    with pytest.raises(GateSpecError, match="format_version: expected a whole number"):
        load_gate_spec({"format_version": "x", "baseline": {"min_improvement": 0}})
    assert load_gate_spec("baseline: {min_improvement: 0.02}")[0]["baseline"] == {
        "min_improvement": 0.02, "confidence": 0.95, "resamples": 1000, "seed": 0}
