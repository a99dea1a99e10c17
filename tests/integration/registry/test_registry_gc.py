"""Retention on a local and an S3 registry: what goes, what an alias protects, dry runs, racing alias moves."""

from __future__ import annotations

import json
import subprocess
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from testsupport import BIN, candidate_fields

from mlops_airflow.exceptions import ConfigError
from mlops_airflow.registry import ModelRegistry
from mlops_airflow.registry.gc import apply_gc, collect_garbage, plan_gc
from mlops_airflow.storage import open_store

pytestmark = pytest.mark.integration
MODEL = "gc_model"


@pytest.fixture(params=["local", "s3"])
def reg(request: pytest.FixtureRequest, tmp_path: Path) -> ModelRegistry:
    if request.param == "local":
        return ModelRegistry(open_store(str(tmp_path / "registry")))
    client = request.getfixturevalue("s3_client")
    bucket = request.getfixturevalue("s3_bucket")
    return ModelRegistry(open_store(f"s3://{bucket}/registry", s3_client=client))


def add_candidate(reg: ModelRegistry) -> dict[str, Any]:
    """A stored candidate with its own dataset snapshot and verdict, as the pipeline leaves them."""
    tag = uuid.uuid4().hex
    dataset = f"{MODEL}/datasets/{tag[:24]}-spec"
    reg.store.write_bytes(f"{dataset}/data.parquet", b"rows")
    reg.store.write_bytes(f"{dataset}/dataset.json", b"{}")
    fields = candidate_fields()
    fields["data"] = {**fields["data"], "dataset_uri": reg.store.url(f"{dataset}/dataset.json")}
    record = reg.put_artifact(MODEL, f"model {tag}".encode(), fields)
    verdict_key = reg.artifact_key(MODEL, record["sha256"], f"verdicts/{tag[:8]}.json")
    reg.store.write_bytes(verdict_key, b"{}")
    record["verdict"] = {**fields["verdict"], "verdict_uri": reg.store.url(verdict_key)}
    return record


def add_version(reg: ModelRegistry) -> dict[str, Any]:
    return reg.register(MODEL, add_candidate(reg), idempotency_key=uuid.uuid4().hex)


@pytest.fixture
def six(reg: ModelRegistry) -> list[dict[str, Any]]:
    """v1..v6; champion moved v1 -> v2 (so v1 is its `previous`), challenger at v3."""
    versions = [add_version(reg) for _ in range(6)]
    reg.set_alias(MODEL, "champion", 1, expected=None, by="t", reason="t")
    reg.set_alias(MODEL, "champion", 2, expected=1, by="t", reason="t")
    reg.set_alias(MODEL, "challenger", 3, expected=None, by="t", reason="t")
    return versions


def folder(reg: ModelRegistry, manifest: dict[str, Any]) -> str:
    return reg.artifact_key(MODEL, manifest["sha256"]).rsplit("/", 1)[0]


def dataset_folder(reg: ModelRegistry, manifest: dict[str, Any]) -> str:
    return manifest["data"]["dataset_uri"].removeprefix(reg.store.uri + "/").rsplit("/", 1)[0]


def test_keeps_the_newest_and_everything_an_alias_names(reg: ModelRegistry, six: list[dict[str, Any]]) -> None:
    orphan = add_candidate(reg)  # trained, never registered
    report = collect_garbage(reg, MODEL, keep=2, grace=timedelta(0))
    assert report["deleted"]["versions"] == [4]
    assert reg.list_versions(MODEL) == [1, 2, 3, 5, 6]
    assert reg.store.list(folder(reg, six[3])) == [] and reg.store.list(dataset_folder(reg, six[3])) == []
    assert reg.store.list(folder(reg, orphan)) == []
    for kept in (six[0], six[1], six[2], six[4], six[5]):  # what kept versions refer to stays
        assert reg.read_artifact(MODEL, kept["sha256"])
        assert reg.store.exists(kept["data"]["dataset_uri"].removeprefix(reg.store.uri + "/"))
        assert reg.store.exists(kept["verdict"]["verdict_uri"].removeprefix(reg.store.uri + "/"))
    assert report["plan"]["protected"] == {"1": "previous version of alias champion", "2": "alias champion",
                                           "3": "alias challenger", "5": "one of the newest 2",
                                           "6": "one of the newest 2"}
    assert [k for k in reg.store.list(f"{MODEL}/gc") if k.endswith(".json")]  # an audit record
    assert add_version(reg)["version"] == 7  # a number is never given twice
    assert collect_garbage(reg, MODEL, keep=2, grace=timedelta(0))["deleted"]["versions"] == [5]  # idempotent policy


def test_young_unregistered_candidates_stay_for_the_grace_period(reg: ModelRegistry, six: list[dict[str, Any]]) -> None:
    orphan = add_candidate(reg)  # a running pipeline may still be evaluating it
    collect_garbage(reg, MODEL, keep=2)
    assert reg.read_artifact(MODEL, orphan["sha256"])
    assert reg.store.list(folder(reg, six[3])) == []  # a deleted version's candidate goes with it


def test_dry_run_deletes_nothing(reg: ModelRegistry, six: list[dict[str, Any]]) -> None:
    before = reg.store.list()
    report = collect_garbage(reg, MODEL, keep=1, grace=timedelta(0), dry_run=True)
    assert report["plan"]["versions"] == [4, 5]
    assert reg.store.list() == before


def test_older_than_spares_recent_versions(reg: ModelRegistry, six: list[dict[str, Any]]) -> None:
    assert plan_gc(reg, MODEL, keep=1, older_than=timedelta(days=30)).versions == []
    later = datetime.now(UTC) + timedelta(days=40)
    assert plan_gc(reg, MODEL, keep=1, older_than=timedelta(days=30), now=later).versions == [4, 5]


def test_an_alias_moved_after_planning_protects_its_version(reg: ModelRegistry, six: list[dict[str, Any]]) -> None:
    plan = plan_gc(reg, MODEL, keep=1, grace=timedelta(0))
    assert plan.versions == [4, 5]
    reg.set_alias(MODEL, "challenger", 4, expected=3, by="someone", reason="moved during gc")
    report = apply_gc(reg, plan)
    assert report["deleted"]["versions"] == [5]
    assert report["skipped"] == {"4": "alias challenger moved onto it during gc"}
    assert reg.get_version(MODEL, 4) and reg.read_artifact(MODEL, six[3]["sha256"])
    assert reg.store.exists(six[3]["data"]["dataset_uri"].removeprefix(reg.store.uri + "/"))


def test_an_alias_moved_between_check_and_delete_puts_the_version_back(reg: ModelRegistry,
                                                                         six: list[dict[str, Any]]) -> None:
    plan = plan_gc(reg, MODEL, keep=1, grace=timedelta(0))
    real_delete = reg.store.delete

    def delete_racing_an_alias_move(key: str) -> None:
        if key == f"{MODEL}/versions/5.json":  # the alias lands just before our delete does
            reg.set_alias(MODEL, "champion", 5, expected=2, by="someone", reason="race")
        real_delete(key)

    reg.store.delete = delete_racing_an_alias_move  # type: ignore[method-assign]
    report = apply_gc(reg, plan)
    assert report["skipped"] == {"5": "alias champion moved onto it during gc"}
    assert reg.resolve(MODEL, alias="champion")["version"] == 5
    assert reg.read_artifact(MODEL, six[4]["sha256"])


def test_bad_policies_are_refused(reg: ModelRegistry) -> None:
    with pytest.raises(ConfigError, match="keep=0 is not valid"):
        plan_gc(reg, MODEL, keep=0)
    with pytest.raises(ConfigError, match="older_than=.* must not be negative"):
        plan_gc(reg, MODEL, older_than=timedelta(days=-1))

    class ElsewhereRegistry(ModelRegistry):  # e.g. MLflow: versions are not files in the store
        pass

    with pytest.raises(ConfigError, match="gc works on the built-in registry only, not ElsewhereRegistry"):
        plan_gc(ElsewhereRegistry(reg.store), MODEL)


def mlops(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / "mlops-airflow"), *args], capture_output=True, text=True, timeout=60)


def test_models_gc_command(tmp_path: Path) -> None:
    root = str(tmp_path / "registry")
    reg = ModelRegistry(open_store(root))
    for _ in range(3):
        add_version(reg)
    reg.set_alias(MODEL, "champion", 1, expected=None, by="t", reason="t")
    dry = mlops("--registry", root, "models", "gc", MODEL, "--keep", "1", "--dry-run", "--json")
    assert dry.returncode == 0, dry.stderr
    assert json.loads(dry.stdout)["plan"]["versions"] == [2] and reg.list_versions(MODEL) == [1, 2, 3]
    real = mlops("--registry", root, "models", "gc", MODEL, "--keep", "1")
    assert real.returncode == 0, real.stderr
    assert "deleted versions [2]" in real.stdout and "v1 (alias champion)" in real.stdout
    assert reg.list_versions(MODEL) == [1, 3]
    missing = mlops("--registry", root, "models", "gc", "nope")
    assert missing.returncode == 1 and "no model named 'nope'" in missing.stderr
    bad = mlops("--registry", root, "models", "gc", MODEL, "--keep", "0")
    assert bad.returncode == 1 and "keep=0 is not valid" in bad.stderr


def test_cleanup_operator(tmp_path: Path) -> None:
    from mlops_airflow.operators.cleanup import CleanupOperator

    root = str(tmp_path / "registry")
    reg = ModelRegistry(open_store(root))
    for _ in range(3):
        add_version(reg)
    ti = SimpleNamespace(dag_id="d", run_id="r", task_id="cleanup", map_index=-1, try_number=1)
    preview = CleanupOperator(task_id="cleanup", model_name=MODEL, keep=1, plan_only=True, registry_uri=root)
    assert preview.execute({"ti": ti})["versions"] == [1, 2] and reg.list_versions(MODEL) == [1, 2, 3]
    op = CleanupOperator(task_id="cleanup", model_name=MODEL, keep=1, registry_uri=root)
    assert op.execute({"ti": ti})["versions"] == [1, 2]
    assert op.execute({"ti": ti})["versions"] == []  # a retry finds nothing more to do
    assert reg.list_versions(MODEL) == [3]
    with pytest.raises(ValueError, match="keep must be an integer of at least 1"):
        CleanupOperator(task_id="c", model_name=MODEL, keep=0)
