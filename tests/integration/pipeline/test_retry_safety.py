"""Airflow runs tasks at least once: each CT stage run twice with the same inputs must end where one run ends."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from testsupport import SAMPLE, SPEC

from mlops_airflow.deploy.local import LocalServerTarget
from mlops_airflow.pipeline.deploy import run_deployment
from mlops_airflow.pipeline.evaluate import run_evaluation
from mlops_airflow.pipeline.register import read_verdict, run_registration
from mlops_airflow.pipeline.train import run_training
from mlops_airflow.pipeline.validate import run_validation

pytestmark = pytest.mark.integration
MODEL = "retry_model"
DATA = str(SAMPLE / "trips_2026_01.csv")
VOLATILE = {"created_at", "verdict_id", "verdict_uri", "report_uri", "trained_at", "fit_seconds", "timings"}


def stable(record: Any) -> Any:
    """A record without the fields that name a moment or an attempt."""
    if isinstance(record, dict):
        return {k: stable(v) for k, v in record.items() if k not in VOLATILE}
    if isinstance(record, list):
        return [stable(v) for v in record]
    return record


def store_key(registry: Any, uri: str) -> str:
    return uri.removeprefix(registry.store.uri.rstrip("/") + "/")


def test_every_stage_run_twice_converges(registry: Any, model_server: Any) -> None:
    url = model_server(MODEL)

    # validate: same summary, same snapshot, the same report byte for byte
    first = run_validation(registry, model_name=MODEL, data_uri=DATA, target="tipped", validation=str(SPEC))
    report = registry.store.read_bytes(store_key(registry, first["report_uri"]))
    snapshot = registry.store.read_bytes(store_key(registry, first["dataset_uri"]))
    again = run_validation(registry, model_name=MODEL, data_uri=DATA, target="tipped", validation=str(SPEC))
    assert again == first
    assert registry.store.read_bytes(store_key(registry, again["report_uri"])) == report
    assert registry.store.read_bytes(store_key(registry, again["dataset_uri"])) == snapshot

    # train: the same candidate (content-addressed: same bytes, same sha256)
    trained = [run_training(registry, model_name=MODEL, dataset_uri=first["dataset_uri"], target="tipped",
                            row_key="trip_id") for _ in range(2)]
    assert trained[0]["sha256"] == trained[1]["sha256"]
    assert stable(trained[0]) == stable(trained[1])
    sha = trained[0]["sha256"]
    assert len([k for k in registry.store.list(f"{MODEL}/artifacts") if k.endswith("model.skops")]) == 1

    # evaluate: the same decision, metrics and checks
    verdicts = [run_evaluation(registry, model_name=MODEL, candidate_sha256=sha) for _ in range(2)]
    assert stable(verdicts[0]) == stable(verdicts[1])
    assert verdicts[0]["blessed"] is True

    # register: the same version, not a second one
    key = "mlops_continuous_training/manual__1/register/-1"
    versions = [run_registration(registry, model_name=MODEL, candidate_sha256=sha,
                                 verdict_uri=verdicts[0]["verdict_uri"], idempotency_key=key) for _ in range(2)]
    assert versions[0] == versions[1] and registry.list_versions(MODEL) == [1]

    # deploy: the second run finds the alias already moved and checks it serves
    target = LocalServerTarget(url, timeout=60)
    deployed = [run_deployment(registry, model_name=MODEL, version=1, verdict_uri=verdicts[0]["verdict_uri"],
                               target=target, by="retry-test") for _ in range(2)]
    assert [d["promoted"] for d in deployed] == [True, True] and deployed[1]["served"] is True
    assert registry.get_alias(MODEL, "champion")["version"] == 1
    assert registry.get_alias(MODEL, "champion")["previous"] is None  # not "moved from 1 to 1"
    assert httpx.get(f"{url}/metadata", timeout=60).json()["version"] == 1
    assert read_verdict(registry, verdicts[0]["verdict_uri"])["candidate_sha256"] == sha
