"""Retention on a local and an S3 registry: what goes, what an alias protects, dry runs, racing alias moves,
what a running pipeline still uses, crash leftovers."""

from __future__ import annotations

import json
import os
import re
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


def test_a_deleted_versions_folder_stays_until_the_grace_period_is_over(reg: ModelRegistry,
                                                                         six: list[dict[str, Any]]) -> None:
    report = collect_garbage(reg, MODEL, keep=2)
    assert report["deleted"]["versions"] == [4] and report["deleted"]["candidates"] == []
    assert reg.read_artifact(MODEL, six[3]["sha256"])  # written minutes ago: a pipeline may still use it
    assert report["plan"]["kept"][folder(reg, six[3])].startswith("deleted version 4 shares it with candidate.json")
    later = datetime.now(UTC) + timedelta(days=30)
    report = collect_garbage(reg, MODEL, keep=2, now=later)
    assert report["deleted"]["candidates"] == [folder(reg, six[3])]  # unreferenced and old: now it goes
    assert report["plan"]["reasons"][folder(reg, six[3])] == "unregistered candidate, 30 days old"


def retrain(reg: ModelRegistry, manifest: dict[str, Any]) -> dict[str, Any]:
    """The same data trains the same model again: same bytes, same sha256, so the same folder; a fresh verdict."""
    fields = candidate_fields()
    fields["data"] = manifest["data"]
    record = reg.put_artifact(MODEL, reg.read_artifact(MODEL, manifest["sha256"]), fields)
    assert record["sha256"] == manifest["sha256"]
    verdict_key = reg.artifact_key(MODEL, record["sha256"], "verdicts/feedc0de.json")
    reg.store.write_bytes(verdict_key, json.dumps({"candidate_sha256": record["sha256"]}).encode())
    record["verdict"] = {**fields["verdict"], "verdict_uri": reg.store.url(verdict_key)}
    return record


def test_a_retrain_sharing_a_deleted_versions_folder_can_still_register(reg: ModelRegistry,
                                                                       six: list[dict[str, Any]]) -> None:
    pending = retrain(reg, six[3])  # v4 is beyond keep=2: its folder is the pending candidate's too
    report = collect_garbage(reg, MODEL, keep=2)
    assert report["deleted"]["versions"] == [4]
    assert folder(reg, six[3]) not in report["deleted"]["candidates"]
    kept = report["plan"]["kept"][folder(reg, six[3])]
    assert re.fullmatch("deleted version 4 shares it with candidate.json, unregistered verdict feedc0de and "
                        rf"verdict {six[3]['verdict']['verdict_uri'][-13:-5]} written \d+ minutes? ago", kept)
    assert reg.register(MODEL, pending, idempotency_key="retrain")["version"] == 7
    assert reg.read_artifact(MODEL, pending["sha256"])


def test_what_a_pending_candidate_refers_to_stays(tmp_path: Path) -> None:
    reg = ModelRegistry(open_store(str(tmp_path / "registry")))
    old = [add_version(reg) for _ in range(3)]
    ten_days_ago = (datetime.now(UTC) - timedelta(days=10)).timestamp()
    for info in reg.store.list_info(MODEL):
        os.utime(reg.store.uri + "/" + info.key, (ten_days_ago, ten_days_ago))
    fields = candidate_fields()
    fields["data"] = old[0]["data"]  # trained again on v1's (old, unchanged) snapshot
    pending = reg.put_artifact(MODEL, b"a new model", fields)
    report = collect_garbage(reg, MODEL, keep=1)
    assert report["deleted"]["versions"] == [1, 2]
    assert reg.store.exists(old[0]["data"]["dataset_uri"].removeprefix(reg.store.uri + "/"))
    assert dataset_folder(reg, old[1]) in report["deleted"]["datasets"]
    assert report["plan"]["kept"][dataset_folder(reg, old[0])].startswith(f"referenced by candidate {pending['sha256'][:12]}, written ")


def test_crash_leftovers_older_than_the_grace_period_go(tmp_path: Path) -> None:
    """A local store writes ``.<name>.<hex>.tmp`` and renames it: a crash in between leaves it (S3 PUTs leave none)."""
    reg = ModelRegistry(open_store(str(tmp_path / "registry")))
    kept = add_version(reg)
    root = Path(reg.store.uri)
    old = [root / folder(reg, kept) / ".model.skops.0a1b.tmp", root / "_index" / ".x.json.2c3d.tmp",
           root / MODEL / "aliases" / ".champion.json.4e5f.tmp"]
    young = root / folder(reg, kept) / ".candidate.json.6a7b.tmp"
    nine_days_ago = (datetime.now(UTC) - timedelta(days=9, hours=1)).timestamp()
    for path in [*old, young]:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x" * 1000)
    for path in old:
        os.utime(path, (nine_days_ago, nine_days_ago))
    keys = sorted(str(path.relative_to(root)) for path in old)
    dry = collect_garbage(reg, MODEL, dry_run=True)
    assert sorted(dry["plan"]["leftovers"]) == keys and all(path.exists() for path in old)
    assert {dry["plan"]["reasons"][key] for key in keys} == {"crash leftover, 9 days old"}
    report = collect_garbage(reg, MODEL)
    assert sorted(report["deleted"]["leftovers"]) == keys
    assert not any(path.exists() for path in old) and young.exists()
    assert reg.read_artifact(MODEL, kept["sha256"]) and reg.list_versions(MODEL) == [1]


def test_dry_run_deletes_nothing(reg: ModelRegistry, six: list[dict[str, Any]]) -> None:
    before = reg.store.list()
    report = collect_garbage(reg, MODEL, keep=1, grace=timedelta(0), dry_run=True)
    assert report["plan"]["versions"] == [4, 5]
    assert reg.store.list() == before


def test_dry_run_says_why_each_path_would_go_and_why_some_stay(reg: ModelRegistry,
                                                               six: list[dict[str, Any]]) -> None:
    orphan = add_candidate(reg)
    before = reg.store.list()
    later = datetime.now(UTC) + timedelta(days=30)
    plan = collect_garbage(reg, MODEL, keep=2, dry_run=True, now=later)["plan"]
    assert plan["reasons"] == {
        f"{MODEL}/versions/4.json": "version 4 beyond keep=2, registered 30 days ago",
        folder(reg, six[3]): "candidate of deleted version 4, 30 days old",
        folder(reg, orphan): "unregistered candidate, 30 days old",
        dataset_folder(reg, six[3]): "dataset snapshot nothing refers to, 30 days old",
        dataset_folder(reg, orphan): "dataset snapshot nothing refers to, 30 days old",
    }
    retrain(reg, six[3])
    plan = collect_garbage(reg, MODEL, keep=2, dry_run=True)["plan"]
    assert folder(reg, six[3]) not in plan["reasons"]
    assert "candidate.json, unregistered verdict feedc0de and verdict" in plan["kept"][folder(reg, six[3])]
    assert plan["kept"][folder(reg, orphan)].startswith("candidate.json and unregistered verdict")
    assert reg.store.list() == sorted([*before, reg.artifact_key(MODEL, six[3]["sha256"], "verdicts/feedc0de.json")])


def test_a_folder_written_to_after_planning_is_left_alone(reg: ModelRegistry, six: list[dict[str, Any]]) -> None:
    plan = plan_gc(reg, MODEL, keep=2, grace=timedelta(0))
    assert folder(reg, six[3]) in plan.candidates
    pending = retrain(reg, six[3])  # lands between plan and apply
    report = apply_gc(reg, plan)
    assert report["skipped"][folder(reg, six[3])] == "written to since planning: a pipeline is using it"
    assert reg.register(MODEL, pending, idempotency_key="retrain")["version"] == 7


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
    with pytest.raises(ConfigError, match="grace=.* must not be negative"):
        plan_gc(reg, MODEL, grace=timedelta(days=-1))

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
    said = mlops("--registry", root, "models", "gc", MODEL, "--keep", "1", "--grace", "0", "--dry-run")
    assert said.returncode == 0, said.stderr
    assert re.search(rf"would delete {MODEL}/versions/2.json: version 2 beyond keep=1, registered \d+ minutes? ago",
                     said.stdout)
    assert f"would delete {folder(reg, reg.get_version(MODEL, 2))}: candidate of deleted version 2" in said.stdout
    assert reg.list_versions(MODEL) == [1, 2, 3] and reg.read_artifact(MODEL, reg.get_version(MODEL, 2)["sha256"])
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
