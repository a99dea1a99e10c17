"""Batch scoring stages: plan, score a partition, publish (or all three in one task).

Each returns a small JSON-serialisable dict for XCom; the parts, the plan and the
manifest themselves stay in the output store (see :mod:`mlops_airflow.serving.batch`).
"""

from __future__ import annotations

from typing import Any

from mlops_airflow.registry import ModelRegistry
from mlops_airflow.serving.batch import (
    partition_descriptors,
    plan_batch,
    publish_batch,
    score_batch,
    score_partition,
)

_SUMMARY = ("model_name", "version", "sha256", "input_fingerprint", "output_uri", "rows_in", "rows_out",
            "rows_rejected", "warnings", "partitions", "chunks")


def run_batch_plan(registry: ModelRegistry, *, s3_client: Any | None = None, **settings: Any) -> dict[str, Any]:
    """Plan a batch (see :func:`~mlops_airflow.serving.batch.plan_batch`): the plan's URI and one descriptor per partition."""
    plan = plan_batch(registry, s3_client=s3_client, **settings)
    return {
        "plan_uri": plan["plan_uri"],
        "partitions": partition_descriptors(plan),
        "model_name": plan["model"]["name"],
        "version": plan["model"]["version"],
        "input_fingerprint": plan["input_fingerprint"],
        "files": len(plan["files"]),
    }


def run_batch_partition(
    registry: ModelRegistry, partition: dict[str, Any], *, s3_client: Any | None = None
) -> dict[str, Any]:
    """Score one partition, given its descriptor from :func:`run_batch_plan`: its row counts."""
    record = score_partition(registry, partition["plan_uri"], int(partition["index"]), s3_client=s3_client)
    return {key: record[key] for key in ("partition", "chunks", "rows_in", "rows_out", "rows_rejected", "warnings")}


def run_batch_publish(plan_uri: str, *, s3_client: Any | None = None) -> dict[str, Any]:
    """Publish every scored partition of the plan: the manifest's counts and model."""
    return summary(publish_batch(plan_uri, s3_client=s3_client))


def run_batch_scoring(registry: ModelRegistry, *, s3_client: Any | None = None, **settings: Any) -> dict[str, Any]:
    """Plan, score and publish in one task: the manifest's counts and model."""
    return summary(score_batch(registry, s3_client=s3_client, **settings))


def summary(manifest: dict[str, Any]) -> dict[str, Any]:
    """What goes to XCom from a published manifest (not the list of parts)."""
    return {key: manifest.get(key) for key in _SUMMARY} | {"manifest_uri": f"{manifest['output_uri']}/_SUCCESS"}
