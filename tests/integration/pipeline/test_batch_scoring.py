"""Batch scoring against a real registry, on disk and on an S3 server: output equals the model's own predict."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from testsupport import SAMPLE, SPEC

from mlops_airflow.exceptions import DataError, DataValidationError, ModelNotFound, UnsafeModelError
from mlops_airflow.pipeline.batch import (
    run_batch_partition,
    run_batch_plan,
    run_batch_publish,
    run_batch_scoring,
)
from mlops_airflow.registry import ModelRegistry
from mlops_airflow.serving import batch
from mlops_airflow.serving.batch import read_manifest, read_predictions
from mlops_airflow.serving.loading import feature_names, load_manifest_model
from mlops_airflow.storage import open_store

pytestmark = pytest.mark.integration
MODEL = "trips_batch"
INPUT = SAMPLE / "trips_2026_02.csv"


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A registry holding one champion, trained once for the module through the pipeline's own stages."""
    from mlops_airflow.pipeline.evaluate import run_evaluation
    from mlops_airflow.pipeline.register import run_registration
    from mlops_airflow.pipeline.train import run_training
    from mlops_airflow.pipeline.validate import run_validation

    root = tmp_path_factory.mktemp("batch") / "registry"
    registry = ModelRegistry(open_store(str(root)))
    summary = run_validation(registry, model_name=MODEL, data_uri=str(SAMPLE / "trips_2026_01.csv"), target="tipped",
                             validation=str(SPEC))
    candidate = run_training(registry, model_name=MODEL, dataset_uri=summary["dataset_uri"], target="tipped",
                             estimator="sklearn.linear_model.LogisticRegression", row_key="trip_id")
    verdict = run_evaluation(registry, model_name=MODEL, candidate_sha256=candidate["sha256"])
    manifest = run_registration(registry, model_name=MODEL, candidate_sha256=candidate["sha256"],
                                verdict_uri=verdict["verdict_uri"], idempotency_key="batch")
    registry.set_alias(MODEL, "champion", manifest["version"], expected=None, by="test", reason="fixture")
    return root


@pytest.fixture
def registry(trained: Path, tmp_path: Path) -> ModelRegistry:
    """A private copy of the trained registry: a test may tamper with it."""
    copy = tmp_path / "registry"
    shutil.copytree(trained, copy)
    return ModelRegistry(open_store(str(copy)))


def direct(registry: ModelRegistry, frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """What the champion itself predicts on these rows, with no batch machinery in between."""
    loaded = load_manifest_model(registry, registry.resolve(MODEL, alias="champion"))
    features = frame[feature_names(loaded.feature_schema)]
    return np.asarray(loaded.model.predict(features)), np.asarray(loaded.model.predict_proba(features))


def assert_matches_direct(registry: ModelRegistry, output: pd.DataFrame, source: pd.DataFrame) -> None:
    predictions, probabilities = direct(registry, source)
    assert len(output) == len(source)
    assert output["trip_id"].astype("int64").tolist() == source["trip_id"].tolist()
    np.testing.assert_array_equal(output["prediction"].to_numpy(), predictions)
    np.testing.assert_allclose(output[["probability_0", "probability_1"]].to_numpy(), probabilities, rtol=0, atol=1e-12)
    assert set(output["model_version"]) == {1}


def score(registry: ModelRegistry, input_uri: str, output_uri: str, s3_client: Any = None, **settings: Any) -> dict[str, Any]:
    options = {"id_columns": ["trip_id"], "ignore_columns": ["tipped"], **settings}
    return run_batch_scoring(registry, model_name=MODEL, input_uri=input_uri, output_uri=output_uri,
                             s3_client=s3_client, **options)


def parquet_copy(tmp_path: Path, frame: pd.DataFrame, name: str = "trips.parquet", row_group_size: int = 1000) -> Path:
    path = tmp_path / name
    frame.to_parquet(path, index=False, row_group_size=row_group_size)
    return path


@pytest.fixture
def chunk_sizes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The size of every frame the scorer receives: memory is bounded if none exceeds chunk_rows."""
    seen: list[int] = []
    real = batch.read_chunks

    def recording(*args: Any, **kwargs: Any) -> Any:
        for first, frame in real(*args, **kwargs):
            seen.append(len(frame))
            yield first, frame

    monkeypatch.setattr(batch, "read_chunks", recording)
    return seen


def test_csv_in_chunks_equals_direct_predict(registry: ModelRegistry, tmp_path: Path, chunk_sizes: list[int]) -> None:
    result = score(registry, str(INPUT), str(tmp_path / "out"), chunk_rows=700)
    assert (result["rows_in"], result["rows_out"], result["rows_rejected"], result["chunks"]) == (4000, 4000, 0, 6)
    assert chunk_sizes == [700] * 5 + [500]  # never more than a chunk in memory
    output = read_predictions(str(tmp_path / "out"))
    assert_matches_direct(registry, output, pd.read_csv(INPUT))
    manifest = read_manifest(str(tmp_path / "out"))
    assert [part["rows"] for part in manifest["parts"]] == [700] * 5 + [500]
    fingerprint = manifest["input_fingerprint"]
    from mlops_airflow.data.loading import load_dataset

    assert fingerprint == load_dataset(str(INPUT)).fingerprint  # the same fingerprint validation records
    assert set(output["input_fingerprint"]) == {fingerprint}
    assert (manifest["model_name"], manifest["version"], manifest["alias"]) == (MODEL, 1, "champion")
    assert manifest["sha256"] == registry.get_version(MODEL, 1)["sha256"]

    # one chunk for the whole file gives the very same rows
    score(registry, str(INPUT), str(tmp_path / "whole"), chunk_rows=100_000)
    pd.testing.assert_frame_equal(read_predictions(str(tmp_path / "whole")), output)


def test_parquet_row_groups_partitions_and_mapping_equal_one_task(
    registry: ModelRegistry, tmp_path: Path, chunk_sizes: list[int]
) -> None:
    source = pd.read_csv(INPUT)
    path = parquet_copy(tmp_path, source.drop(columns="tipped"))  # 4 row groups of 1000 rows
    one = score(registry, str(path), str(tmp_path / "one"), chunk_rows=300, ignore_columns=[])
    assert one["chunks"] == 14 and max(chunk_sizes) == 300  # batches run on across row groups
    single = read_predictions(str(tmp_path / "one"))
    assert_matches_direct(registry, single, source)
    assert single["trip_id"].dtype == "int64"  # Parquet keeps the id's type

    plan = run_batch_plan(registry, model_name=MODEL, input_uri=str(path), output_uri=str(tmp_path / "mapped"),
                          id_columns=["trip_id"], chunk_rows=300, partitions=3)
    assert [p["index"] for p in plan["partitions"]] == [0, 1, 2]
    assert "row groups" in plan["partitions"][0]["label"]
    json.dumps(plan)  # travels through XCom
    for descriptor in reversed(plan["partitions"]):  # any order, as mapped tasks finish
        run_batch_partition(registry, descriptor)
    published = run_batch_publish(plan["plan_uri"])
    assert (published["partitions"], published["rows_out"]) == (3, 4000)
    pd.testing.assert_frame_equal(read_predictions(str(tmp_path / "mapped")), single)


def test_a_folder_of_files_splits_by_file(registry: ModelRegistry, tmp_path: Path) -> None:
    source = pd.read_csv(INPUT)
    folder = tmp_path / "in"
    folder.mkdir()
    source.iloc[:1500].to_csv(folder / "a.csv", index=False)
    parquet_copy(folder, source.iloc[1500:], "b.parquet", row_group_size=5000)
    plan = run_batch_plan(registry, model_name=MODEL, input_uri=f"{folder}/", output_uri=str(tmp_path / "out"),
                          id_columns=["trip_id"], ignore_columns=["tipped"], partitions=5)
    assert [p["label"] for p in plan["partitions"]] == ["a.csv", "b.parquet[row groups 0-0]"]
    for descriptor in plan["partitions"]:
        run_batch_partition(registry, descriptor)
    run_batch_publish(plan["plan_uri"])
    assert_matches_direct(registry, read_predictions(str(tmp_path / "out")), source)


def test_s3_csv_and_parquet_mapped_equal_direct_predict(
    registry: ModelRegistry, s3_client: Any, s3_bucket: str, tmp_path: Path
) -> None:
    source = pd.read_csv(INPUT)
    s3_client.upload_file(str(INPUT), s3_bucket, "in/part-1.csv")
    s3_client.upload_file(str(parquet_copy(tmp_path, source)), s3_bucket, "in/part-2.parquet")
    out = f"s3://{s3_bucket}/predictions/day=1"
    plan = run_batch_plan(registry, model_name=MODEL, input_uri=f"s3://{s3_bucket}/in/part-*", output_uri=out,
                          id_columns=["trip_id"], ignore_columns=["tipped"], chunk_rows=900, partitions=3,
                          s3_client=s3_client)
    for descriptor in plan["partitions"]:
        run_batch_partition(registry, descriptor, s3_client=s3_client)
    published = run_batch_publish(plan["plan_uri"], s3_client=s3_client)
    assert published["rows_out"] == 8000 and published["manifest_uri"] == f"{out}/_SUCCESS"
    output = read_predictions(out, s3_client=s3_client)
    assert_matches_direct(registry, output, pd.concat([source, source], ignore_index=True))
    keys = [item["Key"] for item in s3_client.list_objects_v2(Bucket=s3_bucket, Prefix="predictions/")["Contents"]]
    assert "predictions/day=1/_SUCCESS" in keys

    # and one task with CSV output, straight from S3 to S3
    result = score(registry, f"s3://{s3_bucket}/in/part-1.csv", f"s3://{s3_bucket}/csv-out", s3_client,
                   output_format="csv", chunk_rows=1500)
    assert result["chunks"] == 3
    manifest = read_manifest(f"s3://{s3_bucket}/csv-out", s3_client=s3_client)
    assert all(part["key"].endswith(".csv") for part in manifest["parts"])
    assert_matches_direct(registry, read_predictions(f"s3://{s3_bucket}/csv-out", s3_client=s3_client), source)


def _edited(tmp_path: Path, column: str, row: int, value: Any, name: str = "bad.csv") -> str:
    frame = pd.read_csv(INPUT).astype({column: object})
    frame.loc[row, column] = value
    frame.to_csv(tmp_path / name, index=False)
    return str(tmp_path / name)


def _write(tmp_path: Path, name: str, content: bytes) -> str:
    (tmp_path / name).write_bytes(content)
    return str(tmp_path / name)


BAD_INPUTS = {
    # file, extra settings, the error's class and what its message must say
    "out of the declared range": (lambda t: _edited(t, "hour", 5, 77), {}, DataValidationError,
                                  "row 6: hour=77 is outside [0, 23]"),
    "wrong type": (lambda t: _edited(t, "fare_usd", 9, "abc"), {}, DataValidationError,
                   'row 10: fare_usd: expected number, got "abc"'),
    "not an allowed category": (lambda t: _edited(t, "payment_type", 0, "bitcoin"), {}, DataValidationError,
                                'row 1: payment_type="bitcoin" is not one of [card, cash, app]'),
    "null where not nullable": (lambda t: _edited(t, "hour", 3999, None), {}, DataValidationError,
                                "row 4000: hour: null is not allowed"),
    "unknown column": (lambda t: str(INPUT), {"ignore_columns": []}, DataError,
                       'unknown column "tipped" (it is the target the model predicts)'),
    "missing column": (lambda t: (pd.read_csv(INPUT).drop(columns="hour").to_csv(t / "m.csv", index=False),
                                  str(t / "m.csv"))[1], {}, DataError, 'missing column "hour"'),
    "missing id column": (lambda t: str(INPUT), {"id_columns": ["ride_id"]}, DataError, "no id column(s) ['ride_id']"),
    "missing file": (lambda t: str(t / "nowhere.csv"), {}, DataError, "data file not found"),
    "no file matches": (lambda t: str(t / "nowhere-*.csv"), {}, DataError, "no data files match"),
    "gzip named .csv": (lambda t: _write(t, "z.csv", b"\x1f\x8b\x08\x00" + b"\x00" * 40), {}, DataError,
                        "gzip-compressed"),
    "unbalanced quote": (lambda t: _write(t, "q.csv", INPUT.read_bytes() + b'1,2,"mon,x\n'), {}, DataError,
                         "is not a readable CSV file"),
    "truncated": (lambda t: _write(t, "t.csv", INPUT.read_bytes() + b"199999,8,tue"), {}, DataError,
                  "ends in an incomplete row"),
    "semicolons": (lambda t: _write(t, "s.csv", INPUT.read_bytes().replace(b",", b";")), {}, DataError,
                   "semicolon-separated"),
    "corrupt parquet": (lambda t: _write(t, "c.parquet", b"PAR1 this is not parquet PAR1"), {}, DataError,
                        "is not a readable Parquet file"),
    "parquet with text numbers": (
        lambda t: str(parquet_copy(t, pd.read_csv(INPUT).astype({"hour": str}))), {}, DataError,
        "hour: expected numbers, the column holds text (str)"),
    "parquet with numbers for text": (
        lambda t: str(parquet_copy(t, pd.read_csv(INPUT).assign(payment_type=1))), {}, DataError,
        "payment_type: expected strings, the column holds numbers (int64)"),
    "unknown alias": (lambda t: str(INPUT), {"alias": "nope"}, ModelNotFound, "has no alias 'nope'"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_fails_clearly_and_publishes_nothing(registry: ModelRegistry, tmp_path: Path, case: str) -> None:
    make, settings, error, message = BAD_INPUTS[case]
    out = tmp_path / "out"
    with pytest.raises(error) as caught:
        score(registry, make(tmp_path), str(out), chunk_rows=1000, **settings)
    assert message in str(caught.value)
    assert not (out / "_SUCCESS").exists()


def test_a_failed_run_leaves_the_published_output_as_it_was(registry: ModelRegistry, tmp_path: Path) -> None:
    out = str(tmp_path / "out")
    score(registry, str(INPUT), out, chunk_rows=1000)
    before = read_manifest(out)
    with pytest.raises(DataValidationError, match=r"nothing was published: row 3001: hour=77"):
        score(registry, _edited(tmp_path, "hour", 3000, 77), out, chunk_rows=1000)  # fails in the last chunk
    assert read_manifest(out) == before
    assert len(read_predictions(out)) == 4000


def test_skip_mode_writes_rejects_with_reasons(registry: ModelRegistry, tmp_path: Path) -> None:
    frame = pd.read_csv(INPUT).astype({"hour": object, "fare_usd": object})
    frame.loc[[10, 2500], "hour"] = 99
    frame.loc[2500, "fare_usd"] = "free"
    frame.loc[3999, "payment_type"] = "barter"
    frame.to_csv(tmp_path / "mixed.csv", index=False)
    result = score(registry, str(tmp_path / "mixed.csv"), str(tmp_path / "out"), chunk_rows=1000, on_invalid="skip")
    assert (result["rows_in"], result["rows_out"], result["rows_rejected"]) == (4000, 3997, 3)
    rejects = read_predictions(str(tmp_path / "out"), rejects=True)
    assert rejects["row"].tolist() == [11, 2501, 4000]
    assert rejects["trip_id"].astype(int).tolist() == frame.loc[[10, 2500, 3999], "trip_id"].tolist()
    assert rejects["reasons"].tolist() == [
        "row 11: hour=99 is outside [0, 23]",
        'row 2501: hour=99 is outside [0, 23]; row 2501: fare_usd: expected number, got "free"',
        'row 4000: payment_type="barter" is not one of [card, cash, app]',
    ]
    kept = pd.read_csv(INPUT).drop(index=[10, 2500, 3999]).reset_index(drop=True)
    assert_matches_direct(registry, read_predictions(str(tmp_path / "out")), kept)


def test_a_retry_converges_to_one_output(registry: ModelRegistry, tmp_path: Path) -> None:
    out = tmp_path / "out"
    score(registry, str(INPUT), str(out), chunk_rows=3000, partitions=2)  # an earlier attempt with other settings
    first = score(registry, str(INPUT), str(out), chunk_rows=1000)
    manifest = read_manifest(str(out))
    second = score(registry, str(INPUT), str(out), chunk_rows=1000)
    again = read_manifest(str(out))
    assert first == second
    assert [p["sha256"] for p in again["parts"]] == [p["sha256"] for p in manifest["parts"]]
    assert again["plan_key"] == manifest["plan_key"]
    leftovers = {path.parent.name for path in (out / "_parts").rglob("*") if path.is_file()}
    assert leftovers == {manifest["plan_key"]}  # the other attempt's parts are gone
    assert sorted(path.name for path in out.iterdir()) == ["_SUCCESS", "_parts"]


def test_publish_refuses_before_every_partition_is_scored(registry: ModelRegistry, tmp_path: Path) -> None:
    from mlops_airflow.exceptions import ConfigError

    path = parquet_copy(tmp_path, pd.read_csv(INPUT).drop(columns="tipped"))
    plan = run_batch_plan(registry, model_name=MODEL, input_uri=str(path), output_uri=str(tmp_path / "out"),
                          id_columns=["trip_id"], partitions=2)
    run_batch_partition(registry, plan["partitions"][0])
    with pytest.raises(ConfigError, match="partition 1 of 2 .* has not been scored"):
        run_batch_publish(plan["plan_uri"])
    assert not (tmp_path / "out" / "_SUCCESS").exists()


def test_the_plan_pins_the_version_even_if_the_alias_moves(registry: ModelRegistry, tmp_path: Path) -> None:
    plan = run_batch_plan(registry, model_name=MODEL, input_uri=str(INPUT), output_uri=str(tmp_path / "out"),
                          id_columns=["trip_id"], ignore_columns=["tipped"])
    registry.remove_alias(MODEL, "champion", expected=1)  # a deploy or rollback between plan and score
    run_batch_partition(registry, plan["partitions"][0])
    assert run_batch_publish(plan["plan_uri"])["version"] == 1


def test_a_tampered_model_is_refused(registry: ModelRegistry, tmp_path: Path) -> None:
    manifest = registry.get_version(MODEL, 1)
    artifact = Path(registry.store.uri) / registry.artifact_key(MODEL, manifest["sha256"])
    artifact.write_bytes(artifact.read_bytes()[:-10] + b"tampered!!")
    with pytest.raises(UnsafeModelError, match="checksum mismatch"):
        score(registry, str(INPUT), str(tmp_path / "out"))
    assert not (tmp_path / "out" / "_SUCCESS").exists()


def test_s3_inputs_are_read_in_ranges_not_downloaded_whole(s3_client: Any, s3_bucket: str) -> None:
    from mlops_airflow.storage.s3 import _READ_BLOCK

    data = bytes(range(256)) * (5 * _READ_BLOCK // 256 // 2)  # two and a half blocks
    s3_client.put_object(Bucket=s3_bucket, Key="big.bin", Body=data)
    ranges: list[str] = []

    class Recording:
        """The real client, with each GET's Range noted."""

        def __getattr__(self, name: str) -> Any:
            return getattr(s3_client, name)

        def get_object(self, **kwargs: Any) -> Any:
            ranges.append(kwargs.get("Range", "whole object"))
            return s3_client.get_object(**kwargs)

    with open_store(f"s3://{s3_bucket}", s3_client=Recording()).open_read("big.bin") as fh:
        fh.seek(-8, 2)
        assert fh.read() == data[-8:]  # a Parquet footer costs one small GET
        fh.seek(0)
        assert b"".join(iter(lambda: fh.read(1 << 20), b"")) == data
    assert ranges[0] == f"bytes={len(data) - 8}-{len(data) - 1}"
    assert len(ranges) == 4 and "whole object" not in ranges  # 3 blocks of at most 8 MB after the footer
