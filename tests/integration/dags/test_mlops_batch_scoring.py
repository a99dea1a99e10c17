"""The example batch-scoring DAG through a real Airflow metadata DB: mapped partitions equal direct predict."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from testsupport import SAMPLE, load_dag

pytestmark = pytest.mark.integration
DAG_ID = "mlops_batch_scoring"


def task_states(dag_run: Any) -> dict[str, list[str]]:
    from airflow.models import TaskInstance
    from airflow.utils.session import create_session

    states: dict[str, list[str]] = {}
    with create_session() as session:
        for ti in session.query(TaskInstance).filter_by(dag_id=DAG_ID, run_id=dag_run.run_id):
            states.setdefault(ti.task_id, []).append(str(ti.state))
    return states


def test_daily_scoring_over_mapped_partitions(airflow_db: Path, registry: Any, build_version: Any,
                                              tmp_path: Path) -> None:
    from mlops_airflow.serving.batch import read_manifest, read_predictions
    from mlops_airflow.serving.loading import feature_names, load_manifest_model

    dag = load_dag(f"{DAG_ID}.py")
    assert dag.schedule == "@daily"
    manifest = build_version("trips_daily", str(SAMPLE / "trips_2026_01.csv"))
    source = pd.read_csv(SAMPLE / "trips_2026_02.csv")
    source.to_parquet(tmp_path / "trips.parquet", index=False, row_group_size=500)  # 8 row groups

    dag_run = dag.test(run_conf={"model_name": "trips_daily", "input_uri": str(tmp_path / "trips.parquet"),
                                 "output_uri": str(tmp_path / "predictions"), "partitions": 3, "chunk_rows": 400})
    assert str(dag_run.state) == "success"
    states = task_states(dag_run)
    assert states["score"] == ["success"] * 3  # one mapped task per partition
    assert states["publish"] == ["success"]

    (published,) = (tmp_path / "predictions").iterdir()  # <output_uri>/<ds>
    output = read_predictions(str(published))
    info = read_manifest(str(published))
    assert (info["version"], info["sha256"], info["partitions"], info["rows_out"]) == (
        manifest["version"], manifest["sha256"], 3, 4000)
    loaded = load_manifest_model(registry, manifest)
    features = source[feature_names(loaded.feature_schema)]
    assert output["trip_id"].tolist() == source["trip_id"].tolist()
    np.testing.assert_array_equal(output["prediction"], loaded.model.predict(features))
    np.testing.assert_allclose(output[["probability_0", "probability_1"]], loaded.model.predict_proba(features),
                               rtol=0, atol=1e-12)


def test_bad_rows_fail_the_run_and_publish_nothing(airflow_db: Path, registry: Any, build_version: Any,
                                                   tmp_path: Path) -> None:
    build_version("trips_daily_bad", str(SAMPLE / "trips_2026_01.csv"))
    frame = pd.read_csv(SAMPLE / "trips_2026_02.csv")
    frame.loc[7, "hour"] = 77
    frame.to_csv(tmp_path / "bad.csv", index=False)

    dag_run = load_dag(f"{DAG_ID}.py").test(run_conf={
        "model_name": "trips_daily_bad", "input_uri": str(tmp_path / "bad.csv"),
        "output_uri": str(tmp_path / "predictions")})
    assert str(dag_run.state) == "failed"
    states = task_states(dag_run)
    assert states["score"] == ["failed"] and states["publish"] == ["upstream_failed"]
    assert not list((tmp_path / "predictions").rglob("_SUCCESS"))
