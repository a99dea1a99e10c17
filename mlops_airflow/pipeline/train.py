"""Stage 2: fit a candidate on the training side of the validated snapshot and store it."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from mlops_airflow.data.schema import feature_schema
from mlops_airflow.data.snapshot import read_snapshot
from mlops_airflow.data.split import hash_split
from mlops_airflow.persistence import dump_model, runtime_versions
from mlops_airflow.registry import ModelRegistry
from mlops_airflow.settings import estimator_allowlist_extra, pipeline_factory_allowlist
from mlops_airflow.tracking import tracker_for
from mlops_airflow.training.train import train_model

HOLDOUT_FRACTION = 0.2


def run_training(
    registry: ModelRegistry,
    *,
    model_name: str,
    dataset_uri: str,
    target: str,
    estimator: str | None = "auto",
    estimator_params: dict[str, Any] | None = None,
    row_key: str | None = None,
    holdout_fraction: float = HOLDOUT_FRACTION,
    lineage: dict[str, Any] | None = None,
    pipeline_factory: str | None = None,
    search_space: dict[str, Any] | None = None,
    tuning: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Train and store a candidate; returns its record (``sha256``, ``artifact_uri``, schema, split)."""
    frame, dataset = read_snapshot(registry.store, dataset_uri)
    row_key = row_key or None
    split = hash_split(frame, target=target, key=row_key, fraction=holdout_fraction)
    drop = [row_key] if row_key else []
    result = train_model(
        frame.iloc[split.train],
        target=target,
        estimator=estimator,
        estimator_params=estimator_params,
        drop_columns=drop,
        extra_allowlist=estimator_allowlist_extra(),
        pipeline_factory=pipeline_factory or None,
        factory_allowlist=pipeline_factory_allowlist(),
        search_space=search_space or None,
        tuning=tuning or None,
    )
    candidate = {
        "target": target,
        "task_type": result.task_type,
        "estimator": result.estimator,
        "estimator_params": result.estimator_params,
        "classes": result.classes,
        "drop_columns": drop,
        "feature_schema": feature_schema(frame, target=target, exclude=drop, declared=dataset.get("declared")),
        "split": {**split.info, "row_key": row_key},
        "data": {
            "uri": dataset["source_uri"],
            "files": dataset.get("files", []),
            "fingerprint": dataset["fingerprint"],
            "rows": dataset["rows"],
            "dataset_uri": dataset_uri,
            "validation_report_uri": dataset.get("report_uri"),
        },
        "packages": runtime_versions(),
        "fit_seconds": result.fit_seconds,
        "trained_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "pipeline_factory": result.pipeline_factory,
        "tuning": result.tuning,
        "lineage": {"train": {**(lineage or {}), "pipeline_factory": result.pipeline_factory,
                              "tuned": result.tuning is not None}},
    }
    record = registry.put_artifact(model_name, dump_model(result.model), candidate)
    return tracker_for(registry).training(registry, record, frame)


def short_candidate(record: dict[str, Any]) -> dict[str, Any]:
    """What the train stage puts on XCom: the candidate's key facts, not the whole record."""
    return {
        "sha256": record["sha256"],
        "artifact_uri": record["artifact_uri"],
        "task_type": record["task_type"],
        "estimator": record["estimator"],
        "train_rows": record["split"]["train_rows"],
        "holdout_rows": record["split"]["holdout_rows"],
        "fit_seconds": record["fit_seconds"],
        "pipeline_factory": record.get("pipeline_factory"),
        "best_params": (record.get("tuning") or {}).get("best_params"),
    }
