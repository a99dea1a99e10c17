from __future__ import annotations

from typing import Any

import pytest

from mlops_airflow.evaluation.decisions import promotable, read_decision, record_decision
from mlops_airflow.exceptions import ConfigError, RegistryError
from mlops_airflow.registry import ModelRegistry
from mlops_airflow.storage import open_store


def verdict(**overrides: Any) -> dict[str, Any]:
    return {"model_name": "m", "candidate_sha256": "a" * 64, "verdict_id": "v1", "outcome": "rejected",
            "blessed": False, "requires_approval": False, "reason": "failed: roc_auc", **overrides}


@pytest.fixture
def registry(tmp_path) -> ModelRegistry:  # type: ignore[no-untyped-def]
    return ModelRegistry(open_store(str(tmp_path)))


def test_approval_is_recorded_once_and_unlocks_promotion(registry: ModelRegistry) -> None:
    pending = verdict(outcome="no_champion", requires_approval=True, reason="awaiting approval")
    assert promotable(pending, None) == (False, "awaiting approval: awaiting approval")
    decision = record_decision(registry, pending, kind="approve", by="alice")
    assert read_decision(registry, pending) == decision
    allowed, why = promotable(pending, decision)
    assert allowed and why.startswith("approved by alice at ")
    # A retry recording the same answer is fine; a different answer is refused: the trail is immutable.
    assert record_decision(registry, pending, kind="approve", by="alice") == decision
    with pytest.raises(RegistryError, match="already decided: approve by alice"):
        record_decision(registry, pending, kind="reject", by="bob")


def test_rejection_by_a_person_blocks_promotion(registry: ModelRegistry) -> None:
    pending = verdict(requires_approval=True)
    decision = record_decision(registry, pending, kind="reject", by="bob", reason="too big a jump")
    allowed, why = promotable(pending, decision)
    assert not allowed and "rejected by bob" in why and "too big a jump" in why


def test_override_needs_a_rejection_and_a_real_reason(registry: ModelRegistry) -> None:
    with pytest.raises(ConfigError, match="at least 10 characters"):
        record_decision(registry, verdict(), kind="override", by="carol", reason="ok")
    with pytest.raises(RegistryError, match="nothing to override"):
        record_decision(registry, verdict(blessed=True), kind="override", by="carol", reason="a long enough reason")
    with pytest.raises(RegistryError, match="does not ask for approval"):
        record_decision(registry, verdict(), kind="approve", by="carol")
    with pytest.raises(ConfigError, match="name who made it"):
        record_decision(registry, verdict(), kind="override", by=" ", reason="a long enough reason")
    decision = record_decision(registry, verdict(), kind="override", by="carol", reason="holdout was mislabelled in March")
    allowed, why = promotable(verdict(), decision)
    assert allowed and "overridden by carol" in why and "mislabelled" in why


def test_blessed_needs_no_decision_and_unblessed_says_why() -> None:
    assert promotable(verdict(blessed=True, reason="all 2 checks passed"), None)[0] is True
    assert promotable(verdict(), None) == (False, "not blessed: failed: roc_auc")


def test_a_decision_on_another_state_of_the_verdict_decides_nothing(registry: ModelRegistry) -> None:
    pending = verdict(outcome="no_champion", requires_approval=True)
    approval = record_decision(registry, pending, kind="approve", by="alice")
    # Re-computed from the same inputs (same id), it now fails a check: the old approval must not carry over.
    rejected_now = verdict(outcome="no_champion", requires_approval=False, blessed=False, reason="failed: latency")
    assert promotable(rejected_now, approval) == (False, "not blessed: failed: latency")
    assert promotable(verdict(verdict_id="other", requires_approval=True), approval)[0] is False
