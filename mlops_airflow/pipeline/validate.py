"""Stage 1: load the data, validate it, store the report and a typed snapshot."""

from __future__ import annotations

import hashlib
import json
import logging
from typing import Any

from mlops_airflow.data.loading import load_dataset
from mlops_airflow.data.schema import schema_columns
from mlops_airflow.data.snapshot import snapshot_key, write_snapshot
from mlops_airflow.exceptions import DataValidationError
from mlops_airflow.registry import ModelRegistry
from mlops_airflow.registry.registry import check_name

log = logging.getLogger(__name__)


def run_validation(
    registry: ModelRegistry,
    *,
    model_name: str,
    data_uri: str,
    target: str,
    validation: str | dict[str, Any] | None = None,
    spec_base_dir: str | None = None,
    champion_alias: str = "champion",
    redact_samples: bool = False,
    s3_client: Any | None = None,
) -> dict[str, Any]:
    """Validate ``data_uri``; returns the summary with ``dataset_uri`` (the snapshot) and ``report_uri``.

    Raises :class:`DataValidationError` (with the summary attached) when an error-severity
    check fails; the report is stored first so the message can point at it.
    """
    from mlops_airflow.validation import (
        declared_constraints,
        load_validation_spec,
        render_report,
        validate_dataset,
    )

    check_name(model_name)
    spec = load_validation_spec(validation, base_dir=spec_base_dir)
    dataset = load_dataset(data_uri, s3_client=s3_client)
    log.info("Loaded %d rows x %d columns from %s", dataset.rows, dataset.frame.shape[1], data_uri)

    reference, non_features = None, []
    alias = registry.get_alias(model_name, champion_alias)
    if alias is not None:
        champion = registry.get_version(model_name, alias["version"])
        reference, non_features = schema_columns(champion.get("feature_schema", {})), champion.get("drop_columns", [])
    outcome = validate_dataset(
        dataset.frame,
        target=target,
        spec=spec,
        source_format=dataset.format,
        reference_columns=reference,
        non_features=non_features,
        redact_samples=redact_samples,
    )
    spec_hash = hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()
    key = snapshot_key(model_name, dataset.fingerprint, spec_hash)
    report_uri = registry.store.url(f"{key}/validation.html")
    registry.store.write_bytes(
        f"{key}/validation.html", render_report(outcome.summary, title=f"Validation of {data_uri}").encode()
    )
    summary = {
        **outcome.summary,
        "data_uri": data_uri,
        "files": dataset.files,
        "fingerprint": dataset.fingerprint,
        "report_uri": report_uri,
        "spec": "minimal check only" if spec is None else "spec",
    }
    if not outcome.success:
        raise DataValidationError(outcome.failure_message(report_uri), summary=summary)
    sidecar = write_snapshot(
        registry.store,
        key,
        outcome.frame,
        {
            "source_uri": data_uri,
            "files": dataset.files,
            "fingerprint": dataset.fingerprint,
            "rows": dataset.rows,
            "target": target,
            "declared": declared_constraints(spec),
            "report_uri": report_uri,
        },
    )
    summary["dataset_uri"] = sidecar["uri"]
    return summary
