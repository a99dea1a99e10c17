"""Rollback: stage, CAS back, see it served; undo if it does not come up."""

from __future__ import annotations

import subprocess
from typing import Any

import httpx
import pytest
from testsupport import BIN, SAMPLE, load_dag

from mlops_airflow.exceptions import DeployError, ModelNotFound, RegistryError
from mlops_airflow.pipeline.rollback import run_rollback

pytestmark = pytest.mark.integration
JAN, BOTH = str(SAMPLE / "trips_2026_01.csv"), str(SAMPLE / "trips_2026_*.csv")


class Target:
    def __init__(self, works: bool) -> None:
        self.works = works

    def wait_for_version(self, model_name: str, version: int, sha256: str) -> dict[str, Any]:
        if not self.works:
            raise DeployError("never came up")
        return {"version": version}


def two_versions(build_version: Any) -> None:
    build_version("m", JAN)
    build_version("m", BOTH, key="k2")  # champion v2, previous v1


def test_rollback_to_the_previous_champion_and_to_a_named_version(registry: Any, build_version: Any) -> None:
    two_versions(build_version)
    result = run_rollback(registry, model_name="m", by="alice", reason="v2 misbehaves", target=Target(True))
    assert (result["version"], result["previous_version"]) == (1, 2)
    alias = registry.get_alias("m", "champion")
    assert (alias["version"], alias["by"], alias["reason"]) == (1, "alice", "rollback: v2 misbehaves")
    assert run_rollback(registry, model_name="m", by="bob", reason="back again", to_version=2)["version"] == 2
    assert run_rollback(registry, model_name="m", by="bob", reason="noop", to_version=2)["rolled_back"] is False


def test_a_rollback_that_does_not_serve_is_undone(registry: Any, build_version: Any) -> None:
    two_versions(build_version)
    with pytest.raises(DeployError, match="stays at v2"):
        run_rollback(registry, model_name="m", by="alice", reason="try", target=Target(False))
    assert registry.get_alias("m", "champion")["version"] == 2


def test_rollback_refuses_what_it_cannot_do(registry: Any, build_version: Any) -> None:
    with pytest.raises(ModelNotFound, match="nothing to roll back"):
        run_rollback(registry, model_name="m", by="a", reason="r")
    build_version("m", JAN)
    with pytest.raises(RegistryError, match="has no previous version"):
        run_rollback(registry, model_name="m", by="a", reason="r")
    with pytest.raises(ModelNotFound, match="has no version 9"):
        run_rollback(registry, model_name="m", by="a", reason="r", to_version=9)


def test_rollback_dag_and_cli_move_the_served_champion(
    airflow_db: Any, registry: Any, build_version: Any, model_server: Any, registry_uri: str
) -> None:
    two_versions(build_version)
    url = model_server("m")
    dag_run = load_dag("mlops_rollback.py").test(run_conf={"model_name": "m", "to_version": 1, "reason": "bad v2"})
    assert str(dag_run.state) == "success"
    assert httpx.get(f"{url}/metadata", timeout=60).json()["version"] == 1
    assert registry.get_alias("m", "champion")["reason"] == "rollback: bad v2"
    cli = subprocess.run([str(BIN / "mlops-airflow"), "--registry", registry_uri, "models", "rollback", "m", "--to", "2",
                          "--reason", "v2 fixed", "--by", "carol", "--server-url", url], capture_output=True, text=True,
                         timeout=120)
    assert cli.returncode == 0, cli.stderr
    assert "m@champion: v1 -> v2" in cli.stdout and httpx.get(f"{url}/metadata", timeout=60).json()["version"] == 2
