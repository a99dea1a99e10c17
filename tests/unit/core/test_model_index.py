"""The model index: summaries kept by every change, staleness seen by readers, pages and filters (local disk)."""

from __future__ import annotations

import json
import threading
import uuid
from pathlib import Path
from typing import Any

import pytest
from testsupport import candidate_fields

from mlops_airflow import cli
from mlops_airflow.records import validate_record
from mlops_airflow.registry import ModelRegistry, open_registry
from mlops_airflow.registry import index as index_module
from mlops_airflow.registry.gc import collect_garbage
from mlops_airflow.registry.index import name_filter
from mlops_airflow.registry.overview import model_listing


@pytest.fixture
def registry(tmp_path: Path) -> ModelRegistry:
    return open_registry(str(tmp_path / "registry"))


def add_version(registry: ModelRegistry, model: str, *, promote: bool = True) -> int:
    payload = f"{model}-{uuid.uuid4().hex}"
    record = registry.put_artifact(model, payload.encode(), candidate_fields())
    version = int(registry.register(model, record, idempotency_key=payload)["version"])
    if promote:
        current = registry.get_alias(model, "champion")
        registry.set_alias(model, "champion", version, expected=current["version"] if current else None,
                           by="test", reason="promote")
    return version


def stored(registry: ModelRegistry, model: str) -> dict[str, Any]:
    return json.loads(registry.store.read_bytes(f"_index/models/{model}.json"))


def markers(registry: ModelRegistry) -> list[str]:
    return registry.store.list_dir("_index/pending")[0]


def assert_summary_is_the_truth(registry: ModelRegistry, model: str) -> None:
    summary = stored(registry, model)
    validate_record("summary", summary)
    assert {k: v for k, v in summary.items() if k != "revision"} == registry.index.summarize(model)
    assert markers(registry) == []


def test_every_change_keeps_the_summary_and_leaves_no_marker(registry: ModelRegistry) -> None:
    add_version(registry, "m")
    assert stored(registry, "m")["aliases"] == {"champion": 1}
    add_version(registry, "m")
    add_version(registry, "m")
    assert_summary_is_the_truth(registry, "m")
    assert (stored(registry, "m")["versions"], stored(registry, "m")["latest"]) == (3, 3)
    collect_garbage(registry, "m", keep=1)  # v1 goes: v3 is the champion, v2 its previous
    assert registry.list_versions("m") == [2, 3] and stored(registry, "m")["versions"] == 2
    add_version(registry, "m", promote=False)
    registry.set_alias("m", "champion", 2, expected=3, by="ana", reason="rollback")
    assert stored(registry, "m")["aliases"] == {"champion": 2} and stored(registry, "m")["latest"] == 4
    registry.set_alias("m", "challenger", 4, expected=None, by="t", reason="r")
    assert stored(registry, "m")["aliases"] == {"champion": 2, "challenger": 4}
    registry.remove_alias("m", "challenger", expected=4)
    assert stored(registry, "m")["aliases"] == {"champion": 2}
    assert_summary_is_the_truth(registry, "m")


def test_a_failed_change_still_leaves_a_true_summary(registry: ModelRegistry) -> None:
    from mlops_airflow.exceptions import AliasConflict

    add_version(registry, "m")
    before = stored(registry, "m")
    with pytest.raises(AliasConflict):
        registry.set_alias("m", "champion", 1, expected=7, by="t", reason="stale")
    assert stored(registry, "m") == before and markers(registry) == []


def test_a_crash_after_the_commit_is_seen_by_readers_and_repaired(
    registry: ModelRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    add_version(registry, "m")
    add_version(registry, "other")

    def crash(model: str) -> str:
        raise OSError("killed before the summary was written")

    with monkeypatch.context() as patch:
        patch.setattr(registry.index, "refresh", crash)
        add_version(registry, "m", promote=True)  # committed: v2, champion -> 2
    assert stored(registry, "m")["latest"] == 1  # the summary is stale...
    assert len(markers(registry)) == 2  # ...and says so (register and set_alias each left a marker)
    listing = model_listing(registry)
    assert listing.rows[0] == {**listing.rows[0], "name": "m", "versions": 2, "latest": 2, "aliases": {"champion": 2}}
    assert registry.index.catalog().pending == {"m"}

    add_version(registry, "m", promote=False)  # the next change re-derives the summary
    assert stored(registry, "m")["latest"] == 3 and len(markers(registry)) == 2  # crashed markers are young
    monkeypatch.setattr(index_module, "ABANDONED_AFTER", 0.0)
    add_version(registry, "m", promote=False)
    assert_summary_is_the_truth(registry, "m")  # ...and, once abandoned, clears the crashed markers


def test_no_summary_or_a_bad_one_falls_back_to_the_truth(registry: ModelRegistry) -> None:
    for model in ("a", "b", "c"):
        add_version(registry, model)
    registry.put_artifact("rejected", b"only a candidate", candidate_fields())  # a folder, not a model
    registry.store.delete("_index/models/a.json")  # written before the index existed
    registry.store.write_bytes("_index/models/b.json", b"{not json")
    registry.store.write_bytes("_index/models/c.json", json.dumps({**stored(registry, "c"), "format_version": 99,
                                                                  "latest": 42}).encode())
    registry.store.write_bytes("_index/models/gone.json", registry.store.read_bytes("_index/models/c.json"))
    listing = model_listing(registry)
    assert [(row["name"], row["latest"]) for row in listing.rows] == [("a", 1), ("b", 1), ("c", 1)]
    assert listing.total == 3 and listing.unindexed == 1  # only "a" lacks a summary file
    assert registry.list_models() == ["a", "b", "c"]


def test_reindex_rebuilds_what_was_lost_or_hand_edited(registry: ModelRegistry,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    for model in ("a", "b"):
        add_version(registry, model)
    for key in registry.store.list("_index"):
        registry.store.delete(key)
    registry.store.write_bytes("_index/models/gone.json", b"{}")
    assert cli.main(["--registry", registry.store.uri, "models", "list"]) == 0
    assert "2 model(s) have no index summary" in capsys.readouterr().err
    assert cli.main(["--registry", registry.store.uri, "models", "reindex", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["models"] == 2 and report["written"] == 2 and report["orphans_removed"] == 1
    assert_summary_is_the_truth(registry, "a")
    assert model_listing(registry).unindexed == 0 and not registry.store.exists("_index/models/gone.json")


def test_racing_writers_leave_the_summary_equal_to_the_truth(registry: ModelRegistry) -> None:
    add_version(registry, "m")
    records = [registry.put_artifact("m", f"race-{i}".encode(), candidate_fields()) for i in range(6)]
    barrier = threading.Barrier(len(records))

    def register(index: int) -> None:
        barrier.wait()
        registry.register("m", records[index], idempotency_key=f"race-{index}")

    threads = [threading.Thread(target=register, args=(i,)) for i in range(len(records))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert registry.list_versions("m") == list(range(1, 8))
    assert_summary_is_the_truth(registry, "m")


@pytest.fixture(scope="module")
def seven(tmp_path_factory: pytest.TempPathFactory) -> ModelRegistry:
    registry = open_registry(str(tmp_path_factory.mktemp("seven") / "registry"))
    for model in ("srv-1", "srv-2", "srv-3", "srv-4", "srv-10", "srv-11", "web.a"):
        add_version(registry, model, promote=False)
    return registry


@pytest.mark.parametrize(
    ("match", "names"),
    [(None, 7), ("srv-1", ["srv-1", "srv-10", "srv-11"]), ("srv-1*", ["srv-1", "srv-10", "srv-11"]),
     ("srv-?", ["srv-1", "srv-2", "srv-3", "srv-4"]), ("*-1[01]", ["srv-10", "srv-11"]), ("SRV", []),
     ("x", [])],
)
def test_filter_by_prefix_or_glob(seven: ModelRegistry, match: str | None, names: Any) -> None:
    registry = seven
    found = [row["name"] for row in model_listing(registry, match=match).rows]
    assert (len(found) if isinstance(names, int) else found) == names
    assert registry.list_models(match) == found


def test_pages_cover_every_model_once(registry: ModelRegistry) -> None:
    models = [f"m{i:02d}" for i in range(7)]
    for model in models:
        add_version(registry, model, promote=False)
    pages = [model_listing(registry, offset=offset, limit=3) for offset in (0, 3, 6, 9)]
    assert [[row["name"] for row in page.rows] for page in pages] == [models[:3], models[3:6], models[6:], []]
    assert [page.total for page in pages] == [7] * 4 and [page.more for page in pages] == [True, True, False, False]
    assert [row["name"] for row in model_listing(registry).rows] == models  # no limit: all, as before
    with pytest.raises(ValueError, match="limit"):
        model_listing(registry, limit=0)


def test_models_list_pages_on_the_command_line(registry: ModelRegistry, capsys: pytest.CaptureFixture[str]) -> None:
    for model in ("a", "b", "c"):
        add_version(registry, model)
    uri = registry.store.uri
    assert cli.main(["--registry", uri, "models", "list"]) == 0
    out = capsys.readouterr()
    assert out.out.splitlines()[1:] == [f"{m:<28} {1:>8} {1:>6}  {'binary':<11} champion=v1" for m in "abc"]
    assert out.err == ""  # a few models: the output is what it always was
    assert cli.main(["--registry", uri, "models", "list", "--limit", "1", "--offset", "1", "--json"]) == 0
    out = capsys.readouterr()
    assert [row["name"] for row in json.loads(out.out)] == ["b"]
    assert out.err.strip() == "models 2-2 of 3; --offset 2 for the next"
    assert cli.main(["--registry", uri, "models", "list", "--match", "z"]) == 0
    assert capsys.readouterr().out.startswith("no models matching 'z'")
    with pytest.raises(SystemExit):
        cli.main(["--registry", uri, "models", "list", "--limit", "0"])


def test_name_filter_pushes_the_literal_head_down() -> None:
    assert name_filter("srv-12*")[0] == "srv-12" and name_filter("srv")[0] == "srv"
    assert name_filter("*a")[0] == "" and name_filter(None)[1]("anything")


def test_default_list_dir_matches_the_local_one(registry: ModelRegistry) -> None:
    from mlops_airflow.storage.base import ArtifactStore

    add_version(registry, "m")
    store = registry.store
    assert ArtifactStore.list_dir(store, "") == store.list_dir("")  # the base version, over list()
    assert store.list_dir("", starts_with="_")[1] == ["_index"]
    assert store.list_dir("m/versions") == (["1.json"], []) and store.list_dir("nope") == ([], [])


def test_parallel_reads_keep_the_order_and_run_the_first_alone() -> None:
    from mlops_airflow.registry.index import parallel_map

    seen: list[str] = []

    def work(item: int) -> int:
        seen.append(threading.current_thread().name)
        return item * 2

    assert parallel_map(work, range(20), 4) == [i * 2 for i in range(20)]
    assert seen[0] == threading.main_thread().name and len(set(seen)) > 1  # a lazy client is built once, alone
    assert parallel_map(work, [], 4) == [] and parallel_map(work, [3], 4) == [6]


def test_reindex_records_empty_folders_which_a_change_reopens(registry: ModelRegistry,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    add_version(registry, "a")
    for name in ("rejected", "later"):
        registry.put_artifact(name, name.encode(), candidate_fields())  # candidates only, no version
    registry.index.rebuild()
    assert registry.store.list_dir("_index/empty")[0] == ["later", "rejected"]
    probed: list[str] = []
    real = registry.list_versions
    monkeypatch.setattr(registry, "list_versions", lambda model: probed.append(model) or real(model))
    assert registry.list_models() == ["a"] and probed == []  # nothing to look into: one listing each

    def crash(model: str) -> str:
        raise OSError("died after the commit")

    with monkeypatch.context() as patch:
        patch.setattr(registry.index, "refresh", crash)
        add_version(registry, "later", promote=False)  # a first version, then no summary: the marker says so
    probed.clear()
    assert registry.list_models() == ["a", "later"] and probed == ["later"]
    add_version(registry, "later", promote=False)  # its next change writes the summary, drops the empty record
    assert registry.store.list_dir("_index/empty")[0] == ["rejected"] and stored(registry, "later")["versions"] == 2
