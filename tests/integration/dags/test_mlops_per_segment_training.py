"""The per-segment DAG through a real metadata DB: batches of segments, a cascade, a shared model server."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from testsupport import SAMPLE, load_dag

from mlops_airflow.pipeline.segments import read_segments_run

pytestmark = pytest.mark.integration
DAG_ID = "mlops_per_segment_training"
LINEAR = {"estimator": "sklearn.linear_model.LogisticRegression", "estimator_params": {"max_iter": 500}}


def segmented_csv(tmp_path: Path) -> str:
    """Four zones of the sample data, one of them broken (hour 77), plus a zone too small to train."""
    import pandas as pd

    frame = pd.read_csv(SAMPLE / "trips_2026_01.csv")
    frame = frame[frame["pickup_zone"].isin(["airport", "harbor", "university", "old_town"])].copy()
    frame.loc[frame.index[frame["pickup_zone"] == "harbor"][:4], "hour"] = 77
    tiny = frame[frame["pickup_zone"] == "airport"].head(5).assign(pickup_zone="stadium", trip_id=lambda f: f["trip_id"] + 10**6)
    path = tmp_path / "zones.csv"
    pd.concat([frame, tiny]).to_csv(path, index=False)
    return str(path)


def test_each_segment_is_trained_gated_and_served_and_a_failing_one_blocks_none(
    airflow_db: Path, registry: Any, tmp_path: Path, model_server: Any
) -> None:
    url = model_server()  # one server for every model
    dag = load_dag(f"{DAG_ID}.py")
    conf = {"data_uri": segmented_csv(tmp_path), "model_prefix": "zone_", "segments_per_task": 2,
            "architectures": [{"estimator": "sklearn.dummy.DummyClassifier", "name": "prior"}, LINEAR]}
    run = dag.test(run_conf=conf)
    assert str(run.state) == "success"  # a failed segment is reported, not a failed run (by default)
    mapped = {ti.map_index: ti for ti in run.get_task_instances() if ti.task_id == "train_segments"}
    assert sorted(mapped) == [0, 1]  # three trainable zones, two per task
    assert mapped[0].rendered_map_index == "airport … old_town (2)" and mapped[1].rendered_map_index == "university"

    record = read_segments_run(registry, DAG_ID, run.run_id)
    outcomes = record["segments"]
    assert set(outcomes) == {"airport", "harbor", "old_town", "university", "stadium"}
    harbor = outcomes["harbor"]
    assert (harbor["outcome"], harbor["stage"]) == ("failed", "validate")
    assert harbor["reason"] == "rows fail the validation spec: hour: above 23 (4)"
    assert outcomes["stadium"]["outcome"] == "failed" and "fewer than min_rows=50" in outcomes["stadium"]["reason"]
    good = ["airport", "old_town", "university"]
    assert sorted(record["promoted"]) == good and sorted(record["failed"]) == ["harbor", "stadium"]
    assert record["architectures"] == {"LogisticRegression": 3}  # the Dummy never passes: the cascade went on
    for zone in good:
        model = f"zone_{zone}"
        assert registry.aliases(model) == {"champion": 1}
        assert [a["architecture"] for a in outcomes[zone]["attempts"]] == ["prior", "LogisticRegression"]
        manifest = registry.get_version(model, 1)
        assert manifest["data"]["rows"] == outcomes[zone]["rows"]  # its own rows only
        trigger = manifest["lineage"]["train"]["trigger"]
        assert (trigger["dag_id"], trigger["conf"]["segments"], trigger["conf"]["model_prefix"]) == (DAG_ID, [zone], "zone_")
        served = httpx.get(f"{url}/models/{model}/metadata", timeout=30).json()  # the shared server serves it
        assert (served["model_name"], served["version"], served["sha256"]) == (model, 1, manifest["sha256"])
        assert outcomes[zone]["served"] is True
    assert registry.list_versions("zone_harbor") == []

    # Again, asking for a red run: the others still train (now against their champions); the run fails.
    run = dag.test(run_conf={**conf, "fail_on_segment_failure": True, "architectures": [LINEAR],
                             "gate": {"thresholds": {"roc_auc": {"min": 0.99}}}})
    assert str(run.state) == "failed"
    second = read_segments_run(registry, DAG_ID, run.run_id)
    assert sorted(second["kept"]) == good and sorted(second["failed"]) == ["harbor", "stadium"]
    assert "roc_auc = " in second["segments"]["airport"]["reason"]
    for zone in good:
        assert registry.aliases(f"zone_{zone}") == {"champion": 1}


def test_more_segments_than_airflow_maps_train_in_one_run(airflow_db: Path, registry: Any, tmp_path: Path) -> None:
    """1,100 tiny segments (Airflow maps at most 1,024 task instances): ~50 batch tasks, every segment recorded."""
    import numpy as np
    import pandas as pd

    count, rows = 1100, 12
    rng = np.random.default_rng(3)
    frame = pd.DataFrame({"unit": np.repeat([f"u{i:04d}" for i in range(count)], rows),
                          "load": rng.uniform(0, 1, count * rows).round(3),
                          "fault": np.tile([0, 1], count * rows // 2)})
    frame.loc[frame["unit"] == "u0007", "load"] = 5.0  # one broken unit: validation leaves it out, alone
    path = tmp_path / "units.csv"
    frame.to_csv(path, index=False)
    conf = {"data_uri": str(path), "segment_column": "unit", "model_prefix": "unit_", "target": "fault",
            "row_key": None, "min_rows": 10, "validation": {"columns": {"load": {"type": "number", "min": 0, "max": 1}}},
            "architectures": ["sklearn.dummy.DummyClassifier"], "deploy_target": "none", "workers": 2}
    run = load_dag(f"{DAG_ID}.py").test(run_conf=conf)
    assert str(run.state) == "success"
    mapped = [ti for ti in run.get_task_instances() if ti.task_id == "train_segments"]
    assert 40 <= len(mapped) <= 60 and all(str(ti.state) == "success" for ti in mapped)
    record = read_segments_run(registry, DAG_ID, run.run_id)
    assert len(record["segments"]) == count
    assert record["failed"] == ["u0007"] and "load: above 1" in record["segments"]["u0007"]["reason"]
    assert len(record["kept"]) == count - 1  # a Dummy never passes the gate: every other unit kept, each with a verdict
    assert all(record["segments"][unit]["attempts"][0]["verdict_uri"] for unit in record["kept"])
