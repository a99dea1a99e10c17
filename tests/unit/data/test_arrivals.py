"""The new-data watermark: what counts as new, claims that survive retries, commits, races."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from mlops_airflow.data.arrivals import ArrivalTracker, Source
from mlops_airflow.exceptions import ConfigError
from mlops_airflow.storage.local import LocalStore

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def obj(key: str, minutes: float, etag: str = "e1") -> dict[str, Any]:
    return {"key": key, "uri": f"s3://b/in/{key}", "etag": etag, "size": 10,
            "modified": (T0 + timedelta(minutes=minutes)).isoformat()}


@pytest.fixture
def tracker(tmp_path: Path) -> ArrivalTracker:
    return ArrivalTracker(LocalStore(tmp_path), "trips.watch", lookback=timedelta(hours=1))


def keys(objects: list[dict[str, Any]]) -> list[str]:
    return [o["key"] for o in objects]


def test_first_claim_takes_everything_and_the_next_run_nothing(tracker: ArrivalTracker) -> None:
    listing = [obj("b.csv", 2), obj("a.csv", 1)]
    assert keys(tracker.claim("run1", listing)) == ["a.csv", "b.csv"]  # oldest first
    assert tracker.claim("run2", listing) == []
    state = tracker.state()
    assert state["watermark"] == (T0 + timedelta(minutes=2)).isoformat()
    assert state["claims"]["run1"]["committed"] is True


def test_a_retried_claim_gets_the_same_objects_whatever_arrived_since(tracker: ArrivalTracker) -> None:
    first = tracker.claim("run1", [obj("a.csv", 1)])
    again = tracker.claim("run1", [obj("a.csv", 1), obj("b.csv", 5)])
    assert again == first
    assert keys(tracker.claim("run2", [obj("a.csv", 1), obj("b.csv", 5)])) == ["b.csv"]


def test_a_replaced_object_is_new_again(tracker: ArrivalTracker) -> None:
    tracker.claim("run1", [obj("a.csv", 1)])
    assert keys(tracker.claim("run2", [obj("a.csv", 9, etag="e2")])) == ["a.csv"]


def test_late_listed_objects_inside_the_lookback_are_new_older_ones_are_not(tracker: ArrivalTracker) -> None:
    tracker.claim("run1", [obj("a.csv", 120)])
    # A multipart upload started before the watermark but listed only now: within the hour, so new.
    late, ancient = obj("late.csv", 90), obj("ancient.csv", 30)
    assert keys(tracker.claim("run2", [obj("a.csv", 120), late, ancient])) == ["late.csv"]


def test_committed_objects_older_than_the_lookback_are_forgotten(tracker: ArrivalTracker) -> None:
    tracker.claim("run1", [obj("a.csv", 0)])
    tracker.claim("run2", [obj("a.csv", 0), obj("b.csv", 300)])
    assert set(tracker.state()["seen"]) == {"b.csv"}
    assert tracker.claim("run3", [obj("a.csv", 0), obj("b.csv", 300)]) == []


def test_on_success_leaves_the_claim_pending_until_committed(tracker: ArrivalTracker) -> None:
    listing = [obj("a.csv", 1)]
    assert keys(tracker.claim("run1", listing, commit="on_success")) == ["a.csv"]
    assert tracker.state()["watermark"] is None
    # run1 failed before committing: the next run sees the same data as new.
    assert keys(tracker.claim("run2", listing, commit="on_success")) == ["a.csv"]
    assert keys(tracker.commit("run2")) == ["a.csv"]
    assert keys(tracker.commit("run2")) == ["a.csv"]  # idempotent
    assert tracker.claim("run3", listing, commit="on_success") == []
    assert tracker.commit("never-claimed") == []


def test_racing_runs_claim_each_object_exactly_once(tmp_path: Path) -> None:
    listing = [obj(f"part-{i}.csv", i) for i in range(5)]
    results: dict[str, list[dict[str, Any]]] = {}

    def run(name: str) -> None:
        results[name] = ArrivalTracker(LocalStore(tmp_path), "race").claim(name, listing)

    threads = [threading.Thread(target=run, args=(f"run{i}",)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    winners = [name for name, got in results.items() if got]
    assert len(winners) == 1 and keys(results[winners[0]]) == keys(listing)


def test_bad_arguments_name_the_parameter(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="state_key='../x' is not valid"):
        ArrivalTracker(LocalStore(tmp_path), "../x")
    with pytest.raises(ValueError, match="commit must be one of on_claim, on_success"):
        ArrivalTracker(LocalStore(tmp_path), "k").claim("r", [], commit="later")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="lookback must not be negative"):
        ArrivalTracker(LocalStore(tmp_path), "k", lookback=timedelta(seconds=-1))


def test_source_lists_matching_data_files_only(tmp_path: Path) -> None:
    for name in ("2026/a.csv", "2026/b.parquet", "2026/_SUCCESS", "2026/.a.csv.swp", "c.csv"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("x")
    found = Source(str(tmp_path), "*.csv").list()
    assert keys(found) == ["2026/a.csv", "c.csv"]
    assert found[0]["uri"] == str(tmp_path / "2026" / "a.csv") and found[0]["size"] == 1
    assert datetime.fromisoformat(found[0]["modified"]).tzinfo is not None
