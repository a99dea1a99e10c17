"""Promote only what serves: staging, compare-and-swap, waiting for the server, rollback."""

from __future__ import annotations

from typing import Any

import pytest
from testsupport import SAMPLE

from mlops_airflow.exceptions import DeployError, RegistryError, VerdictMismatch
from mlops_airflow.pipeline.deploy import run_deployment
from mlops_airflow.pipeline.register import run_registration

pytestmark = pytest.mark.integration
JAN, BOTH = str(SAMPLE / "trips_2026_01.csv"), str(SAMPLE / "trips_2026_*.csv")


class FakeTarget:
    """A serving target that reports what it is told to, or never comes up."""

    def __init__(self, works: bool) -> None:
        self.works = works
        self.asked: list[int] = []

    def wait_for_version(self, model_name: str, version: int, sha256: str) -> dict[str, Any]:
        self.asked.append(version)
        if not self.works:
            raise DeployError(f"the server never reported {model_name} v{version}")
        return {"model_name": model_name, "version": version, "loaded_at": "now"}


def deploy(registry: Any, manifest: dict[str, Any], target: Any) -> dict[str, Any]:
    return run_deployment(registry, model_name=manifest["model_name"], version=manifest["version"],
                          verdict_uri=manifest["verdict_uri"], target=target, by="test")


def test_first_deploy_promotes_and_waits(registry: Any, build_version: Any) -> None:
    v1 = build_version("m", JAN, promote=False)
    target = FakeTarget(works=True)
    result = deploy(registry, v1, target)
    assert result == {"promoted": True, "version": 1, "previous_version": None, "served": True,
                      "server": {"model_name": "m", "version": 1, "loaded_at": "now"}}
    assert target.asked == [1]
    assert registry.get_alias("m", "champion")["by"] == "test"
    # A retried deploy converges: same alias, asks the server again, moves nothing.
    assert deploy(registry, v1, target)["version"] == 1
    assert registry.get_alias("m", "champion")["previous"] is None


def test_a_model_that_never_serves_is_rolled_back_to_the_previous_champion(registry: Any, build_version: Any) -> None:
    build_version("m", JAN)  # v1, champion
    v2 = build_version("m", BOTH, promote=False, key="k2")
    with pytest.raises(DeployError, match="rolled back to v1"):
        deploy(registry, v2, FakeTarget(works=False))
    alias = registry.get_alias("m", "champion")
    assert alias["version"] == 1 and alias["reason"].startswith("rollback:")


def test_rollback_with_no_previous_champion_removes_the_alias(registry: Any, build_version: Any) -> None:
    v1 = build_version("m", JAN, promote=False)
    with pytest.raises(DeployError, match="rolled back to no champion"):
        deploy(registry, v1, FakeTarget(works=False))
    assert registry.get_alias("m", "champion") is None


def test_champion_moved_since_the_verdict_means_re_evaluation(registry: Any, build_version: Any) -> None:
    build_version("m", JAN)  # v1 champion
    v2 = build_version("m", BOTH, promote=False, key="k2",
                       gate={"baseline": {"min_improvement": 0.0}, "champion": {"max_drop": 1.0}})
    v3 = build_version("m", BOTH, promote=False, key="k3", gate={"baseline": {"min_improvement": 0.0}})
    assert registry.get_version("m", 2)["verdict"]["champion"]["version"] == 1
    registry.set_alias("m", "champion", 3, expected=1, by="someone else", reason="moved meanwhile")
    result = deploy(registry, v2, FakeTarget(works=True))
    # v2's verdict compared with v1; the champion is v3 now, so v2 was re-gated against v3.
    assert result["promoted"] is True and result["previous_version"] == v3["version"]
    assert registry.get_alias("m", "champion")["version"] == 2


def test_register_and_deploy_refuse_a_verdict_for_another_candidate(registry: Any, build_version: Any) -> None:
    v1 = build_version("m", JAN, promote=False)
    v2 = build_version("m", BOTH, promote=False, key="k2")
    with pytest.raises(VerdictMismatch, match="for candidate"):
        run_registration(registry, model_name="m", candidate_sha256=v2["sha256"], verdict_uri=v1["verdict_uri"],
                         idempotency_key="x")
    with pytest.raises(VerdictMismatch):
        run_deployment(registry, model_name="m", version=2, verdict_uri=v1["verdict_uri"],
                       target=FakeTarget(works=True), by="test")
    assert registry.get_alias("m", "champion") is None


def test_an_unblessed_candidate_is_never_registered(registry: Any, build_version: Any) -> None:
    from mlops_airflow.pipeline.evaluate import run_evaluation

    build_version("m", JAN)
    candidate = registry.candidate("m", registry.get_version("m", 1)["sha256"])
    verdict = run_evaluation(registry, model_name="m", candidate_sha256=candidate["sha256"],
                             gate={"thresholds": {"roc_auc": {"min": 0.999}}})
    assert verdict["blessed"] is False
    with pytest.raises(RegistryError, match="not blessed"):
        run_registration(registry, model_name="m", candidate_sha256=candidate["sha256"],
                         verdict_uri=verdict["verdict_uri"], idempotency_key="again")
    assert registry.list_versions("m") == [1]
