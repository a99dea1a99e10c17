"""The whole gate on real models and data: every section of include/gate_example.yaml, reports, callbacks."""

from __future__ import annotations

import json
from typing import Any

import pytest
from testsupport import REPO, SAMPLE

from mlops_airflow.pipeline.evaluate import run_evaluation

pytestmark = pytest.mark.integration
JAN, BOTH = str(SAMPLE / "trips_2026_01.csv"), str(SAMPLE / "trips_2026_*.csv")


def challenger(registry: Any, build_version: Any, estimator_params: dict[str, Any] | None = None) -> dict[str, Any]:
    """Champion v1 on January; a challenger candidate on both months (not yet evaluated)."""
    from mlops_airflow.pipeline.train import run_training
    from mlops_airflow.pipeline.validate import run_validation

    build_version("m", JAN)
    summary = run_validation(registry, model_name="m", data_uri=BOTH, target="tipped")
    return run_training(registry, model_name="m", dataset_uri=summary["dataset_uri"], target="tipped",
                        row_key="trip_id", estimator_params=estimator_params)


def test_every_check_kind_runs_on_real_models(registry: Any, build_version: Any) -> None:
    candidate = challenger(registry, build_version)
    verdict = run_evaluation(registry, model_name="m", candidate_sha256=candidate["sha256"],
                             gate=str(REPO / "include" / "gate_example.yaml"))
    kinds = {check["kind"] for check in verdict["checks"]}
    assert kinds == {"threshold", "baseline", "champion", "statistical", "mcnemar", "slice", "slice_gap",
                     "operational", "custom"}
    interval = verdict["interval"]
    assert interval["resamples"] == 1000 and interval["low"] <= interval["gain"] <= interval["high"]
    assert {s["value"] for s in verdict["slices"][0]["slices"]} == {"app", "card", "cash"}
    assert verdict["operational"]["single_row_ms"]["p99"] > 0 and verdict["operational"]["size_mb"] > 0
    assert 0 <= verdict["custom"]["tip_rate_bias"] < 1
    json.dumps(verdict)
    stored = json.loads(registry.store.read_bytes(verdict["verdict_uri"].removeprefix(registry.store.uri + "/")))
    assert stored["verdict_id"] == verdict["verdict_id"]
    report = registry.store.read_bytes(verdict["report_uri"].removeprefix(registry.store.uri + "/")).decode()
    assert "<svg" in report and "payment_type" in report and verdict["outcome"].replace("_", " ") in report.lower()


def test_the_same_model_is_never_significantly_better_than_itself(registry: Any, build_version: Any) -> None:
    v1 = build_version("m", JAN)
    # The champion's own artifact, evaluated as a candidate against itself: identical predictions.
    verdict = run_evaluation(registry, model_name="m", candidate_sha256=v1["sha256"],
                             gate={"statistical": {"mode": "superiority"}, "mcnemar": {"alpha": 0.05}})
    assert verdict["interval"]["gain"] == 0 and verdict["mcnemar"]["outcome"] == "no_evidence"
    assert verdict["outcome"] == "rejected" and verdict["blessed"] is False


def test_a_slice_that_is_not_in_the_data_is_named(registry: Any, build_version: Any) -> None:
    from mlops_airflow.exceptions import GateSpecError

    candidate = challenger(registry, build_version)
    with pytest.raises(GateSpecError, match="slices\\[0\\].column: 'region' is not in the data"):
        run_evaluation(registry, model_name="m", candidate_sha256=candidate["sha256"],
                       gate={"slices": [{"column": "region", "min": 0.5}]})


class FakeTI:
    dag_id, run_id, task_id, map_index, try_number = "d", "r", "evaluate", -1, 1

    def __init__(self) -> None:
        self.pushed: dict[str, Any] = {}

    def xcom_push(self, key: str, value: Any) -> None:
        self.pushed[key] = value


def test_verdict_callbacks_see_every_verdict_and_cannot_change_it(registry: Any, build_version: Any, registry_uri: str) -> None:
    from mlops_airflow.operators.evaluate import EvaluateModelOperator

    candidate = challenger(registry, build_version)
    seen: list[dict[str, Any]] = []

    def broken(verdict: dict[str, Any], context: Any) -> None:
        raise RuntimeError("the alerting service is down")

    operator = EvaluateModelOperator(task_id="evaluate", model_name="m", candidate_sha256=candidate["sha256"],
                                     gate={"thresholds": {"roc_auc": {"min": 0.99}}}, registry_uri=registry_uri,
                                     verdict_callbacks=[broken, lambda verdict, context: seen.append(verdict)])
    result = operator.run({"ti": FakeTI(), "dag": None})  # type: ignore[arg-type]
    assert result["blessed"] is False and seen == [result]
    assert operator.report_uri == result["report_uri"]


def test_drift_against_the_champions_training_data(registry: Any, build_version: Any, tmp_path: Any) -> None:
    import pandas as pd

    from mlops_airflow.exceptions import DataValidationError
    from mlops_airflow.pipeline.validate import run_validation

    first = run_validation(registry, model_name="m", data_uri=JAN, target="tipped", validation=str(REPO / "include" / "trips_validation.yaml"))
    assert first["drift"]["skipped"].startswith("no champion yet")
    build_version("m", JAN)
    same = run_validation(registry, model_name="m", data_uri=JAN, target="tipped",
                          validation=str(REPO / "include" / "trips_validation.yaml"))
    assert same["drift"]["drifted_columns"] == [] and same["drift"]["breach"] is False
    # Night-time trips only: hour and everything tied to it shift.
    frame = pd.read_csv(JAN)
    night = frame[(frame["hour"] >= 20) | (frame["hour"] <= 3)]
    path = tmp_path / "night.csv"
    night.to_csv(path, index=False)
    spec = {**__import__("yaml").safe_load((REPO / "include" / "trips_validation.yaml").read_text())}
    warned = run_validation(registry, model_name="m", data_uri=str(path), target="tipped", validation=spec)
    assert "hour" in warned["drift"]["drifted_columns"] and warned["drift"]["breach"] is True
    spec["drift"] = {**spec["drift"], "policy": "stop"}
    with pytest.raises(DataValidationError, match="data drifted from the reference in .*hour.* the drift policy is stop"):
        run_validation(registry, model_name="m", data_uri=str(path), target="tipped", validation=spec)
    assert registry.list_versions("m") == [1]


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_validation_only_reads_just_the_columns_the_spec_needs(registry: Any, tmp_path: Any, fmt: str) -> None:
    import pandas as pd

    from mlops_airflow.exceptions import DataValidationError
    from mlops_airflow.pipeline.validate import run_validation

    frame = pd.read_csv(JAN).assign(**{f"wide_{i}": range(4000) for i in range(30)})  # columns nobody declared
    path = tmp_path / f"wide.{fmt}"
    frame.to_csv(path, index=False) if fmt == "csv" else frame.to_parquet(path, index=False)
    spec = {"columns": {"hour": {"type": "integer", "min": 0, "max": 23}, "payment_type": {"allowed": ["card", "cash", "app"]}}}
    summary = run_validation(registry, model_name="m", data_uri=str(path), target="tipped", validation=spec, snapshot=False)
    assert summary["columns"] == ["hour", "payment_type", "tipped"] and "dataset_uri" not in summary
    missing = {"columns": {**spec["columns"], "fare": {"type": "number"}}}
    with pytest.raises(DataValidationError, match="column 'fare' is not in the data"):
        run_validation(registry, model_name="m", data_uri=str(path), target="tipped", validation=missing, snapshot=False)
