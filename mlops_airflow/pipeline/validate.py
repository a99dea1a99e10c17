"""Stage 1: load the data, validate it, store the report and a typed snapshot."""

from __future__ import annotations

import hashlib
import json
import logging
from typing import Any

from mlops_airflow.data.loading import is_sql_uri, load_dataset, mask_dsn
from mlops_airflow.data.schema import schema_columns
from mlops_airflow.data.snapshot import snapshot_key, write_snapshot
from mlops_airflow.exceptions import DataValidationError
from mlops_airflow.registry import ModelRegistry
from mlops_airflow.registry.registry import check_name

log = logging.getLogger(__name__)


def needed_columns(spec: dict[str, Any] | None, target: str) -> list[str] | None:
    """The columns a validation-only read needs: the spec's, the target and the drift check's (None: all)."""
    from mlops_airflow.validation import drift_config

    if not spec:
        return None
    drift = drift_config(spec)
    if drift is not None and not drift.get("columns"):
        return None  # drift compares every feature column
    return sorted({*spec["columns"], target, *((drift or {}).get("columns") or [])})


def drift_against_reference(
    registry: ModelRegistry,
    spec: dict[str, Any] | None,
    frame: Any,
    *,
    champion: dict[str, Any] | None,
    target: str,
    redact: bool = False,
    s3_client: Any | None = None,
) -> dict[str, Any] | None:
    """Drift of ``frame`` from the spec's reference: the champion's training data, or a URI.

    None when the spec asks for no drift check; ``{"skipped": reason}`` when there is no
    reference to compare with (no champion yet).
    """
    from mlops_airflow.data.snapshot import read_snapshot
    from mlops_airflow.validation import compute_drift, drift_config

    config = drift_config(spec)
    if config is None:
        return None
    source = config.get("reference", "champion")
    if source == "champion":
        if champion is None:
            return {"skipped": "no champion yet: nothing to compare with", "breach": False, "policy": config.get("policy")}
        reference, _ = read_snapshot(registry.store, champion["data"]["dataset_uri"])
        columns = [c["name"] for c in champion["feature_schema"]["columns"]]
    else:
        reference = load_dataset(source, s3_client=s3_client).frame
        columns = [c for c in reference.columns if c != target]
    columns = config.get("columns") or [c for c in columns if c in frame.columns]
    log.info("Drift of %d columns against %s (%d reference rows)", len(columns), source, len(reference))
    return {**compute_drift(reference, frame, columns=columns, config=config, redact=redact), "reference": source}


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
    snapshot: bool = True,
    s3_client: Any | None = None,
) -> dict[str, Any]:
    """Validate ``data_uri``; returns the summary with ``dataset_uri`` (the snapshot) and ``report_uri``.

    With ``snapshot=False`` (validation only, nothing trains on it) a file is read for just
    the columns the spec and the drift check need, and no snapshot is written. Raises
    :class:`DataValidationError` (with the summary attached) when an error-severity check
    fails; the report is stored first so the message can point at it.
    """
    from mlops_airflow.validation import (
        declared_constraints,
        load_validation_spec,
        render_report,
        validate_dataset,
    )

    check_name(model_name)
    spec = load_validation_spec(validation, base_dir=spec_base_dir)
    reference, non_features, champion = None, [], None
    alias = registry.get_alias(model_name, champion_alias)
    if alias is not None:
        champion = registry.get_version(model_name, alias["version"])
        reference, non_features = schema_columns(champion.get("feature_schema", {})), champion.get("drop_columns", [])

    dataset = None
    if is_sql_uri(data_uri):
        from mlops_airflow.validation.sql import validate_sql

        # The database computes every check; rows are pulled only once they passed (training needs them).
        outcome = validate_sql(data_uri, spec=spec, target=target, redact_samples=redact_samples)
        if outcome.success:
            dataset = load_dataset(data_uri)
    else:
        dataset = load_dataset(data_uri, s3_client=s3_client, columns=None if snapshot else needed_columns(spec, target))
        log.info("Loaded %d rows x %d columns from %s", dataset.rows, dataset.frame.shape[1], data_uri)
        outcome = validate_dataset(
            dataset.frame,
            target=target,
            spec=spec,
            source_format=dataset.format,
            reference_columns=reference,
            non_features=non_features,
            redact_samples=redact_samples,
        )
    frame = outcome.frame if outcome.frame is not None else (dataset.frame if dataset else None)
    if frame is not None:
        drift = drift_against_reference(registry, spec, frame, champion=champion, target=target,
                                        redact=redact_samples, s3_client=s3_client)
        if drift is not None:
            outcome.summary["drift"] = drift
    else:
        drift = None
    shown_uri = mask_dsn(data_uri) if is_sql_uri(data_uri) else data_uri  # never a password in records or XCom
    spec_hash = hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()
    fingerprint = dataset.fingerprint if dataset else "sha256:" + hashlib.sha256(shown_uri.encode()).hexdigest()
    key = snapshot_key(model_name, fingerprint, spec_hash)
    report_uri = registry.store.url(f"{key}/validation.html")
    registry.store.write_bytes(
        f"{key}/validation.html", render_report(outcome.summary, title=f"Validation of {shown_uri}").encode()
    )
    summary = {
        **outcome.summary,
        "data_uri": shown_uri,
        "files": dataset.files if dataset else [shown_uri],
        "fingerprint": fingerprint,
        "report_uri": report_uri,
        "spec": "minimal check only" if spec is None else "spec",
    }
    if not outcome.success:
        raise DataValidationError(outcome.failure_message(report_uri), summary=summary)
    if drift and drift.get("breach") and drift.get("policy") == "stop":
        raise DataValidationError(
            f"data drifted from the reference in {', '.join(drift['drifted_columns'])} and the drift policy is stop; "
            f"full report: {report_uri}",
            summary=summary,
        )
    if not snapshot:
        return summary
    assert dataset is not None and frame is not None  # validation passed, so the rows were loaded
    sidecar = write_snapshot(
        registry.store,
        key,
        frame,
        {
            "source_uri": shown_uri,
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
