"""Choosing a registry backend from its URI, the side-store lease lock, and the tracker selection (no servers)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mlops_airflow.exceptions import RegistryError
from mlops_airflow.registry import ModelRegistry, RegistryBackend, open_registry
from mlops_airflow.registry.backend import split_mlflow_uri, store_uri
from mlops_airflow.registry.lock import StoreLock
from mlops_airflow.registry.mlflow import MlflowRegistry
from mlops_airflow.storage import open_store
from mlops_airflow.tracking import MlflowTracker, NoTracker, tracker_for


def test_plain_uris_open_the_built_in_registry(tmp_path: Path) -> None:
    for uri in (str(tmp_path / "reg"), f"file://{tmp_path / 'reg'}"):
        registry = open_registry(uri)
        assert type(registry) is ModelRegistry and registry.store.uri == str(tmp_path / "reg")
    s3 = open_registry("s3://bucket/prefix", s3_client=object())
    assert type(s3) is ModelRegistry and s3.store.uri == "s3://bucket/prefix"
    assert s3.capabilities["multi_host"] and not open_registry(str(tmp_path)).capabilities["multi_host"]


def test_mlflow_uris_open_the_mlflow_registry_with_its_side_store(tmp_path: Path) -> None:
    registry = open_registry(f"mlflow+http://mlflow:5000?store={tmp_path / 'side'}", mlflow_client=object())
    assert isinstance(registry, MlflowRegistry) and isinstance(registry, RegistryBackend)
    assert registry.tracking_uri == "http://mlflow:5000" and registry.store.uri == str(tmp_path / "side")
    assert not registry.native_capabilities["alias_cas"] and registry.capabilities["alias_cas"]
    assert split_mlflow_uri("mlflow+https://h/x?a=1&store=s3://b/p") == ("https://h/x?a=1", "s3://b/p")
    assert store_uri("mlflow+http://h:5000?store=s3://b/p") == "s3://b/p"
    assert store_uri("s3://b/p") == "s3://b/p"


def test_mlflow_uri_without_a_store_uses_a_local_side_store_under_airflow_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path))
    assert split_mlflow_uri("mlflow+http://h:5000") == ("http://h:5000", str(tmp_path / "mlops_registry_mlflow"))


def test_the_registry_modules_import_no_mlflow() -> None:
    code = "import sys, mlops_airflow.registry.mlflow, mlops_airflow.tracking; sys.exit('mlflow' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


def test_the_lease_lock_is_exclusive_and_released_by_its_owner_only(tmp_path: Path) -> None:
    store = open_store(str(tmp_path))
    holder = StoreLock(store, "m/locks/register.json")
    holder.acquire()
    waiter = StoreLock(store, "m/locks/register.json", timeout=0.3)
    with pytest.raises(RegistryError, match=f"waiting for the lock .*held by {holder.owner}"):
        waiter.acquire()
    waiter.release()  # not the owner: must not free the holder's lease
    with pytest.raises(RegistryError):
        waiter.acquire()
    holder.release()
    with StoreLock(store, "m/locks/register.json", timeout=60):
        assert json.loads(store.read_bytes("m/locks/register.json"))["owner"] is not None
    assert json.loads(store.read_bytes("m/locks/register.json"))["owner"] is None


def test_an_expired_lease_of_a_dead_holder_is_taken_over(tmp_path: Path) -> None:
    store = open_store(str(tmp_path))
    dead = StoreLock(store, "lock.json", ttl=0.2)
    dead.acquire()  # never released: its process "died"
    time.sleep(0.3)  # let the lease expire (the lock's own clock, not an assertion)
    with StoreLock(store, "lock.json", timeout=60) as taker:
        assert json.loads(store.read_bytes("lock.json"))["owner"] == taker.owner


def test_tracking_is_off_unless_configured(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLOPS_AIRFLOW_MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path))
    local = open_registry(str(tmp_path / "reg"))
    assert isinstance(tracker_for(local), NoTracker)
    monkeypatch.setenv("MLOPS_AIRFLOW_MLFLOW_TRACKING_URI", "http://mlflow:5000")
    tracker = tracker_for(local)
    assert isinstance(tracker, MlflowTracker) and tracker.tracking_uri == "http://mlflow:5000"
    client = object()
    own = tracker_for(open_registry(f"mlflow+http://other:1?store={tmp_path}", mlflow_client=client))
    assert isinstance(own, MlflowTracker) and own.tracking_uri == "http://other:1" and own.client is client
