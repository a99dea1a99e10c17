"""The per-segment DAG through a real metadata DB: one model per zone, a bad zone never blocks the rest."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from testsupport import SAMPLE, load_dag

from mlops_airflow.pipeline.segments import read_segments_run

pytestmark = pytest.mark.integration
DAG_ID = "mlops_per_segment_training"
FAST = {"estimator": "sklearn.linear_model.LogisticRegression", "estimator_params": {"max_iter": 500}}


def segmented_csv(tmp_path: Path) -> str:
    """Four zones of the sample data, one of them broken (hour 77), plus a zone too small to train."""
    import pandas as pd

    frame = pd.read_csv(SAMPLE / "trips_2026_01.csv")
    frame = frame[frame["pickup_zone"].isin(["airport", "harbor", "university", "old_town"])].copy()
    frame.loc[frame["pickup_zone"] == "harbor", "hour"] = 77
    tiny = frame[frame["pickup_zone"] == "airport"].head(5).assign(pickup_zone="pier 9", trip_id=lambda f: f["trip_id"] + 10**6)
    path = tmp_path / "zones.csv"
    pd.concat([frame, tiny]).to_csv(path, index=False)
    return str(path)


def test_each_segment_is_trained_on_its_own_and_a_failing_one_blocks_none(
    airflow_db: Path, registry: Any, tmp_path: Path
) -> None:
    dag = load_dag(f"{DAG_ID}.py")
    conf = {"data_uri": segmented_csv(tmp_path), "model_prefix": "zone_", **FAST}
    run = dag.test(run_conf=conf)
    assert str(run.state) == "success"  # a failed segment is reported, not a failed run (by default)
    states = {(ti.task_id, ti.map_index): str(ti.state) for ti in run.get_task_instances()}
    assert sorted(m for (t, m) in states if t == "segment.validate") == [0, 1, 2, 3]

    record = read_segments_run(registry, DAG_ID, run.run_id)
    outcomes = record["segments"]
    assert set(outcomes) == {"airport", "harbor", "old_town", "university", "pier_9"}
    harbor = outcomes["harbor"]
    assert (harbor["outcome"], harbor["stage"]) == ("failed", "validate") and "hour" in harbor["reason"]
    assert outcomes["pier_9"]["outcome"] == "failed" and "fewer than min_rows=50" in outcomes["pier_9"]["reason"]
    assert sorted(record["failed"]) == ["harbor", "pier_9"]
    good = ["airport", "old_town", "university"]
    assert sorted(record["promoted"]) == good  # no champion yet: each beats its Dummy baseline
    for zone in good:
        assert registry.aliases(f"zone_{zone}") == {"champion": 1}
        manifest = registry.get_version(f"zone_{zone}", 1)
        assert manifest["data"]["rows"] == outcomes[zone]["rows"]  # its own rows only
        assert manifest["lineage"]["train"]["map_index"] >= 0  # trained by a mapped task
    assert registry.list_versions("zone_harbor") == []

    # Again, asking for a red run: the others still train (now against their champions); the run fails.
    run = dag.test(run_conf={**conf, "fail_on_segment_failure": True,
                             "gate": {"thresholds": {"roc_auc": {"min": 0.99}}}})
    assert str(run.state) == "failed"
    second = read_segments_run(registry, DAG_ID, run.run_id)
    assert sorted(second["kept"]) == good and sorted(second["failed"]) == ["harbor", "pier_9"]
    assert "roc_auc = " in second["segments"]["airport"]["reason"]
    for zone in good:
        assert registry.aliases(f"zone_{zone}") == {"champion": 1}
