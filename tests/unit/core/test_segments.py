"""Planning segments and training a batch of them, without Airflow: isolation, the cascade, the record."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from mlops_airflow.exceptions import ConfigError, DataError, DataValidationError
from mlops_airflow.pipeline.segments import (
    check_architectures,
    format_segments,
    plan_segments,
    read_segments_run,
    segment_slug,
    summarise_segments,
    train_segment_batch,
)
from mlops_airflow.registry import ModelRegistry
from mlops_airflow.storage import open_store

LINEAR = {"estimator": "sklearn.linear_model.LogisticRegression", "estimator_params": {"max_iter": 300}}
SPEC = {"columns": {"cpu": {"type": "number", "min": 0, "max": 100}, "disk": {"type": "string",
                                                                             "allowed": ["ssd", "hdd"]}}}


def servers(count: int, rows: int = 120, seed: int = 0) -> pd.DataFrame:
    """``count`` servers, each with its own distribution and a learnable binary label."""
    rng = np.random.default_rng(seed)
    parts = []
    for number in range(count):
        level = 20 + 5 * (number % 10)
        cpu = rng.normal(level, 8, rows).clip(0, 100)
        part = pd.DataFrame({"server": f"srv-{number:03d}", "cpu": cpu, "mem": rng.normal(0, 1, rows),
                             "disk": rng.choice(["ssd", "hdd"], rows)})
        part["anomaly"] = ((cpu - level) / 8 + part["mem"] + rng.normal(0, 0.5, rows) > 0.8).astype(int)
        parts.append(part)
    frame = pd.concat(parts, ignore_index=True)
    frame.insert(0, "rid", np.arange(len(frame)))
    return frame


def registry_with(tmp_path: Path, frame: pd.DataFrame) -> tuple[ModelRegistry, str]:
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / "servers.csv"
    frame.to_csv(path, index=False)
    return ModelRegistry(open_store(str(tmp_path / "registry"))), str(path)


def plan(registry: ModelRegistry, uri: str, **kwargs: Any) -> dict[str, Any]:
    defaults: dict[str, Any] = {"segment_column": "server", "model_prefix": "m_", "target": "anomaly",
                                "validation": SPEC}
    return plan_segments(registry, data_uri=uri, **{**defaults, **kwargs})


def train_all(registry: ModelRegistry, planned: dict[str, Any], architectures: Any = (LINEAR,),
              **kwargs: Any) -> dict[str, dict[str, Any]]:
    outcomes = {}
    for batch in planned["batches"]:
        for outcome in train_segment_batch(registry, batch=batch, model_prefix="m_", target="anomaly",
                                           architectures=check_architectures(list(architectures)), row_key="rid",
                                           idempotency_prefix=f"test/run/train/{batch['batch']}", **kwargs):
            outcomes[outcome["segment"]] = outcome
    return outcomes


def test_the_plan_batches_segments_and_leaves_out_what_cannot_train(tmp_path: Path) -> None:
    frame = servers(7)
    frame.loc[frame["server"] == "srv-002", "anomaly"] = 0  # one class only
    small = servers(1, rows=20).assign(server="tiny", rid=lambda f: f["rid"] + 10**6)
    registry, uri = registry_with(tmp_path, pd.concat([frame, small], ignore_index=True))
    planned = plan(registry, uri, segments_per_task=2)
    assert [batch["segments"] for batch in planned["batches"]] == [
        ["srv-000", "srv-001"], ["srv-003", "srv-004"], ["srv-005", "srv-006"]]
    assert planned["batches"][0]["label"] == "srv-000 … srv-001 (2)"
    assert planned["skipped"]["tiny"]["reason"] == "20 rows, fewer than min_rows=50"
    assert "has one value only" in planned["skipped"]["srv-002"]["reason"]
    assert planned["segments"] == 8
    again = plan(registry, uri, segments_per_task=2)
    assert again["batches"] == planned["batches"]  # a retried plan writes the same batches
    only = plan(registry, uri, only=["srv-005"])
    assert [batch["segments"] for batch in only["batches"]] == [["srv-005"]]


def test_the_default_batch_size_keeps_the_map_small(tmp_path: Path) -> None:
    registry, uri = registry_with(tmp_path, servers(120, rows=60))
    planned = plan(registry, uri, validation=None)
    assert len(planned["batches"]) == 40 and {len(b["segments"]) for b in planned["batches"]} == {3}


def test_rows_failing_validation_leave_out_their_segment_only(tmp_path: Path) -> None:
    frame = servers(4)
    frame.loc[frame.index[frame["server"] == "srv-001"][:3], "cpu"] = 250.0
    frame.loc[frame.index[frame["server"] == "srv-003"][:2], "disk"] = "tape"
    registry, uri = registry_with(tmp_path, frame)
    planned = plan(registry, uri)
    assert [s for b in planned["batches"] for s in b["segments"]] == ["srv-000", "srv-002"]
    assert planned["skipped"]["srv-001"]["reason"] == "rows fail the validation spec: cpu: above 100 (3)"
    assert planned["skipped"]["srv-003"]["reason"] == "rows fail the validation spec: disk: not in the allowed set (2)"
    assert planned["skipped"]["srv-001"]["stage"] == "validate"


def test_a_table_failing_checks_no_segment_explains_fails_the_plan(tmp_path: Path) -> None:
    registry, uri = registry_with(tmp_path, servers(3))
    with pytest.raises(DataValidationError, match="expect_table_row_count_to_be_between >= 1000000"):
        plan(registry, uri, validation={**SPEC, "row_count": {"min": 10**6}})
    with pytest.raises(DataError, match="segment_column 'rack' is not in the data"):
        plan(registry, uri, segment_column="rack")


def test_segment_values_that_clash_as_model_names_are_refused(tmp_path: Path) -> None:
    frame = servers(2).assign(server=lambda f: np.where(f.index % 2 == 0, "a b", "a-b"))
    registry, uri = registry_with(tmp_path, frame.assign(server=lambda f: np.where(f.index < 120, "a b", "a_b")))
    with pytest.raises(DataError, match="both map to the model name suffix 'a_b'"):
        plan(registry, uri, validation=None)


def test_each_segment_is_trained_gated_registered_and_promoted_on_its_own(tmp_path: Path) -> None:
    registry, uri = registry_with(tmp_path, servers(4))
    planned = plan(registry, uri, segments_per_task=3)
    outcomes = train_all(registry, planned, lineage={"dag_id": "d", "trigger": {"dag_id": "d", "conf": {"x": 1}}})
    assert {o["outcome"] for o in outcomes.values()} == {"promoted"}
    for name, outcome in outcomes.items():
        model = f"m_{name}"
        assert registry.aliases(model) == {"champion": 1}
        manifest = registry.get_version(model, 1)
        assert manifest["data"]["rows"] == outcome["rows"] == 120  # its own rows only
        assert "server" not in [c["name"] for c in manifest["feature_schema"]["columns"]]  # constant: not a feature
        assert manifest["lineage"]["train"]["segment"] == name
        # a drift event for this segment's model retrains this segment alone
        assert manifest["lineage"]["train"]["trigger"] == {"dag_id": "d", "conf": {"x": 1, "segments": [name]}}
        assert outcome["architecture"] == "LogisticRegression" and outcome["attempts"][0]["blessed"]
    # a retried batch finds its versions instead of making new ones
    again = train_all(registry, planned)
    assert all(registry.list_versions(f"m_{name}") == [1] for name in outcomes)
    assert all(o["version"] == 1 for o in again.values())


def test_the_cascade_tries_the_next_architecture_when_one_fails_its_gate(tmp_path: Path) -> None:
    registry, uri = registry_with(tmp_path, servers(2))
    planned = plan(registry, uri)
    cascade = [{"estimator": "sklearn.dummy.DummyClassifier", "name": "prior"}, LINEAR]
    outcomes = train_all(registry, planned, architectures=cascade)
    for outcome in outcomes.values():
        assert outcome["outcome"] == "promoted" and outcome["architecture"] == "LogisticRegression"
        first, second = outcome["attempts"]
        assert (first["architecture"], first["blessed"]) == ("prior", False)
        assert "gain over dummy" in first["reason"] and second["blessed"]
        assert first["metric"] == "roc_auc" and 0.0 <= second["value"] <= 1.0
    # nothing passes: the segment is kept (no champion moves), with every architecture's reason
    registry2, uri2 = registry_with(tmp_path / "two", servers(1))
    kept = train_all(registry2, plan(registry2, uri2), architectures=[cascade[0]])
    (only,) = kept.values()
    assert only["outcome"] == "kept" and only["reason"].startswith("no architecture passed its gate (prior: ")
    assert registry2.get_alias("m_srv-000", "champion") is None


def test_one_failing_segment_stops_no_other(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import mlops_airflow.pipeline.train as stage

    registry, uri = registry_with(tmp_path, servers(3))
    planned = plan(registry, uri, segments_per_task=3)
    real = stage.run_training

    def flaky(registry: Any, **kwargs: Any) -> Any:
        if kwargs["model_name"] == "m_srv-001":
            raise RuntimeError("disk full")
        return real(registry, **kwargs)

    monkeypatch.setattr(stage, "run_training", flaky)
    outcomes = train_all(registry, planned)
    assert (outcomes["srv-001"]["outcome"], outcomes["srv-001"]["stage"]) == ("failed", "train")
    assert outcomes["srv-001"]["reason"] == "RuntimeError: disk full"
    assert outcomes["srv-000"]["outcome"] == outcomes["srv-002"]["outcome"] == "promoted"


def test_a_segment_the_server_does_not_serve_is_rolled_back(tmp_path: Path) -> None:
    registry, uri = registry_with(tmp_path, servers(2))
    planned = plan(registry, uri)

    class Refusing:
        def wait_for_version(self, model_name: str, version: int, sha256: str) -> dict[str, Any]:
            if model_name == "m_srv-001":
                raise RuntimeError("refused: checksum mismatch")
            return {"model_name": model_name, "version": version, "loaded_at": "now"}

    outcomes = train_all(registry, planned, target_factory=Refusing)
    assert outcomes["srv-000"]["outcome"] == "promoted" and outcomes["srv-000"]["served"] is True
    refused = outcomes["srv-001"]
    assert (refused["outcome"], refused["stage"]) == ("failed", "deploy")
    assert "rolled back to no champion: refused: checksum mismatch" in refused["reason"]
    assert registry.get_alias("m_srv-001", "champion") is None and registry.aliases("m_srv-000") == {"champion": 1}


def test_the_run_record_counts_outcomes_and_winning_architectures(tmp_path: Path) -> None:
    registry = ModelRegistry(open_store(str(tmp_path / "registry")))
    outcomes = {
        "a": {"outcome": "promoted", "architecture": "LogisticRegression", "reason": "better"},
        "b": {"outcome": "promoted", "architecture": "HistGradientBoostingClassifier", "reason": "better"},
        "c": {"outcome": "failed", "stage": "validate", "reason": "rows fail the validation spec"},
        "d": {"outcome": "kept", "reason": "no architecture passed its gate"},
    }
    record = summarise_segments(registry, dag_id="dag", run_id="manual__1", outcomes=outcomes)
    assert read_segments_run(registry, "dag", "manual__1") == record
    assert (record["promoted"], record["kept"], record["failed"]) == (["a", "b"], ["d"], ["c"])
    assert record["architectures"] == {"LogisticRegression": 1, "HistGradientBoostingClassifier": 1}
    text = format_segments(record)
    lines = text.splitlines()
    assert lines[0] == "2 promoted, 1 kept, 1 failed"
    assert lines[2].split()[:3] == ["c", "FAILED", "[validate]"]  # failures first


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ([{"estimator": "a", "pipeline_factory": "b"}], r"architectures\[0\]: give exactly one of"),
        ([{"estimator": "a", "params": {}}], r"architectures\[0\]: unknown field 'params'"),
        ([{"estimator": "a", "estimator_params": [1]}], r"architectures\[0\].estimator_params must be an object"),
        ("not json", "architectures: not a JSON list"),
        ({"estimator": "a"}, "architectures must be a list"),
    ],
)
def test_a_bad_cascade_is_refused_naming_the_entry(given: Any, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        check_architectures(given)


def test_the_default_cascade_and_short_forms() -> None:
    assert [a["name"] for a in check_architectures(None)] == ["LogisticRegression", "HistGradientBoostingClassifier"]
    assert check_architectures(["sklearn.svm.SVC"]) == [{"estimator": "sklearn.svm.SVC", "name": "SVC"}]


def test_segment_slugs_are_model_name_safe() -> None:
    assert [segment_slug(v) for v in ("Pier 9", "über/süd", 7, "--")] == ["Pier_9", "ber_s_d", "7", "blank"]


def test_an_architecture_that_errors_is_an_attempt_and_the_cascade_goes_on(tmp_path: Path) -> None:
    registry, uri = registry_with(tmp_path, servers(2))
    cascade = [{"estimator": "sklearn.linear_model.LogisticRegression", "estimator_params": {"C": -1}, "name": "bad"},
               LINEAR]
    outcomes = train_all(registry, plan(registry, uri), architectures=cascade)
    for outcome in outcomes.values():
        first, second = outcome["attempts"]
        assert (first["outcome"], first["stage"]) == ("error", "train") and "C" in first["reason"]
        assert outcome["outcome"] == "promoted" and second["blessed"]
    # every architecture errors: the segment failed, at the stage of the last, with every attempt kept
    registry2, uri2 = registry_with(tmp_path / "two", servers(1))
    (failed,) = train_all(registry2, plan(registry2, uri2), architectures=[cascade[0]]).values()
    assert (failed["outcome"], failed["stage"]) == ("failed", "train")
    assert [a["architecture"] for a in failed["attempts"]] == ["bad"]


def test_workers_train_segments_at_once_with_the_same_outcomes(tmp_path: Path) -> None:
    frame = servers(6)
    one, uri_one = registry_with(tmp_path / "one", frame)
    two, uri_two = registry_with(tmp_path / "two", frame)
    serial = train_all(one, plan(one, uri_one, segments_per_task=6))
    parallel = train_all(two, plan(two, uri_two, segments_per_task=6), workers=2)
    assert list(parallel) == list(serial)  # batch order, whatever order the workers finished in
    for name, outcome in parallel.items():
        assert outcome["outcome"] == serial[name]["outcome"] == "promoted"
        # the same data and estimator: the same model, byte for byte, trained in another process
        assert two.get_version(f"m_{name}", 1)["sha256"] == one.get_version(f"m_{name}", 1)["sha256"]
