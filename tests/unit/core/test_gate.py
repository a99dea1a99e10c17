from __future__ import annotations

import json
from typing import Any

import pytest

from mlops_airflow.evaluation.gate import (
    DEFAULT_GATE,
    check_binding,
    decide,
    gate_hash,
    load_gate_spec,
    normalise_gate,
)
from mlops_airflow.exceptions import GateSpecError, VerdictMismatch

CANDIDATE = {"roc_auc": 0.80, "accuracy": 0.75, "log_loss": 0.50, "balanced_accuracy": 0.7}
DUMMY = {"roc_auc": 0.50, "accuracy": 0.58, "log_loss": 0.68, "balanced_accuracy": 0.5}


def champion(auc: float, comparable: bool = True) -> dict[str, Any]:
    return {"version": 3, "sha256": "c" * 64, "comparable": comparable, "reason": "schema changed" if not comparable else "",
            "metrics": {**CANDIDATE, "roc_auc": auc}}


def run(spec: dict[str, Any] | None, champ: dict[str, Any] | None = None, cand: dict[str, Any] | None = None) -> dict[str, Any]:
    normalised, source = load_gate_spec(spec)
    verdict = decide(spec=normalised, source=source, task="binary", candidate=cand or CANDIDATE, baseline=DUMMY, champion=champ)
    json.dumps(verdict)  # every verdict is plain data
    return verdict


@pytest.mark.parametrize(
    ("spec", "champ", "outcome", "blessed"),
    [
        (None, None, "no_champion", True),  # default gate, first model: beats dummy
        (None, champion(0.805), "blessed", True),  # within max_drop 0.01 of the champion
        (None, champion(0.85), "rejected", False),  # drops 0.05 below the champion
        (None, champion(0.70, comparable=False), "incomparable_champion", False),  # default policy rejects
        ({"thresholds": {"roc_auc": {"min": 0.9}}}, None, "no_champion", False),
        ({"thresholds": {"roc_auc": {"min": 0.7}, "log_loss": {"max": 0.6}}}, None, "no_champion", True),
        ({"thresholds": {"log_loss": {"max": 0.4}}}, champion(0.7), "rejected", False),
        ({"baseline": {"min_improvement": 0.5}}, None, "no_champion", False),
        ({"baseline": {"min_improvement": 0.1, "metric": "log_loss"}}, None, "no_champion", True),  # lower is better
        ({"champion": {"max_drop": 0.0}}, champion(0.79), "blessed", True),
        ({"champion": {"max_drop": 0.0}}, champion(0.81), "rejected", False),
        ({"baseline": {"min_improvement": 0.0}, "policies": {"no_champion": "reject"}}, None, "no_champion", False),
        ({"baseline": {"min_improvement": 0.0}, "policies": {"incomparable_champion": "bless_on_absolute"}},
         champion(0.9, comparable=False), "incomparable_champion", True),
    ],
)
def test_outcomes(spec: dict[str, Any] | None, champ: dict[str, Any] | None, outcome: str, blessed: bool) -> None:
    verdict = run(spec, champ)
    assert (verdict["outcome"], verdict["blessed"]) == (outcome, blessed)
    assert verdict["gate_source"] == ("default" if spec is None else "user")
    if not blessed:
        assert verdict["reason"]


def test_champion_only_gate_with_no_champion_never_blesses() -> None:
    verdict = run({"champion": {"max_drop": 0.01}}, None)
    assert verdict["checks"] == []
    assert verdict["blessed"] is False
    assert "fail closed" in verdict["reason"]


def test_an_undefined_metric_fails_its_check() -> None:
    verdict = run({"thresholds": {"roc_auc": {"min": 0.5}}}, None, cand={**CANDIDATE, "roc_auc": None})
    assert verdict["blessed"] is False


def test_dummy_model_is_never_blessed_by_the_default_gate() -> None:
    verdict = run(None, None, cand=DUMMY)
    assert verdict["blessed"] is False
    assert verdict["checks"][0]["kind"] == "baseline"


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
        ({"baseline": {"min_improvement": 0}, "on_fail": "explode"}, "on_fail"),
        ({"baseline": {"min_improvement": 0}, "policies": {"no_champion": "yolo"}}, "policies.no_champion"),
        ({"treshold": {}}, "unknown key 'treshold'"),
        ("missing-file.yaml", "gate file not found"),
    ],
)
def test_invalid_gate_specs_are_named(spec: Any, message: str) -> None:
    with pytest.raises(GateSpecError, match=message):
        load_gate_spec(spec)


def test_metric_for_the_wrong_task_is_refused() -> None:
    spec = normalise_gate({"thresholds": {"rmse": {"max": 1}}})
    with pytest.raises(GateSpecError, match="'rmse' does not apply to binary"):
        decide(spec=spec, source="user", task="binary", candidate=CANDIDATE, baseline=DUMMY, champion=None)


def test_gate_from_yaml_file_and_inline(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "gate.yaml"
    path.write_text("thresholds:\n  roc_auc: {min: 0.7}\n")
    assert load_gate_spec(str(path))[0]["thresholds"] == {"roc_auc": {"min": 0.7}}
    assert load_gate_spec("gate.yaml", base_dir=str(tmp_path))[1] == "user"
    assert load_gate_spec('{"baseline": {"min_improvement": 0}}')[0]["baseline"] == {"min_improvement": 0.0}
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
