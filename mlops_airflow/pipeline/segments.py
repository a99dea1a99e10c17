"""Many models: one per segment (store, region, zone), each through the whole pipeline on its own.

:func:`split_segments` cuts a dataset into one file per value of a segment column (CSV for
CSV input, Parquet keeping the column types otherwise), in the artifact store, and names each segment's model; a DAG maps the pipeline over them.
:func:`classify_segment` and :func:`summarise_segments` turn each segment's stage states
and results into promoted / kept / failed, with the reason, for the run's last task.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
from datetime import UTC, datetime
from typing import Any, Literal

from mlops_airflow.data.loading import load_dataset
from mlops_airflow.exceptions import ArtifactNotFound, DataError, ModelNotFound
from mlops_airflow.registry import ModelRegistry
from mlops_airflow.registry.registry import check_name

Outcome = Literal["promoted", "kept", "failed"]
SEGMENT_STAGES = ("validate", "train", "evaluate", "register", "deploy")
DEFAULT_MIN_ROWS = 50
FAILED_STATES = ("failed", "upstream_failed")


def segment_slug(value: Any) -> str:
    """A segment value as it may appear in a model name and a file name."""
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", str(value)).strip("_.-")
    return slug or "blank"


def split_segments(
    registry: ModelRegistry,
    *,
    data_uri: str,
    segment_column: str,
    model_prefix: str,
    min_rows: int = DEFAULT_MIN_ROWS,
    s3_client: Any | None = None,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Write one file per segment into the store; returns (segments to train, segments too small to).

    A segment file has the input's format: CSV for CSV input, Parquet (keeping the column
    types) for anything else.

    Each segment is ``{"segment", "model_name", "data_uri", "rows"}``; the model is named
    ``<model_prefix><segment>``. Files go under a key derived from the data's fingerprint and
    the column, so a retried split rewrites the same files. Rows without a segment value
    belong to no segment and are left out.
    """
    dataset = load_dataset(data_uri, s3_client=s3_client)
    frame = dataset.frame
    if segment_column not in frame.columns:
        raise DataError(f"segment_column {segment_column!r} is not in the data (columns: {', '.join(map(str, frame.columns))})")
    # The input's own format: Parquet (or SQL) types would become guesses in a CSV (integers
    # with gaps, timestamps, text with leading zeros), and a CSV's rows are validated as CSV.
    suffix = "csv" if dataset.format == "csv" else "parquet"
    base = hashlib.sha256(f"{dataset.fingerprint}|{segment_column}".encode()).hexdigest()[:24]
    segments: list[dict[str, Any]] = []
    too_small: list[dict[str, Any]] = []
    seen: dict[str, Any] = {}
    for value, part in frame.groupby(segment_column, sort=True, dropna=True):
        slug = segment_slug(value)
        if slug in seen:
            raise DataError(f"segment values {seen[slug]!r} and {value!r} both map to the model name suffix {slug!r}")
        seen[slug] = value
        model_name = check_name(f"{model_prefix}{slug}", "model_prefix + segment")
        entry = {"segment": slug, "model_name": model_name, "rows": len(part)}
        if len(part) < min_rows:
            too_small.append({**entry, "reason": f"{len(part)} rows, fewer than min_rows={min_rows}"})
            continue
        key = f"_segments/{base}/{slug}.{suffix}"
        registry.store.write_bytes(key, _segment_bytes(part, suffix))
        segments.append({**entry, "data_uri": registry.store.url(key)})
    if not segments and not too_small:
        raise DataError(f"segment_column {segment_column!r} has no values: nothing to train")
    return segments, too_small


def _segment_bytes(part: Any, suffix: str) -> bytes:
    if suffix == "csv":
        return str(part.to_csv(index=False)).encode()
    buffer = io.BytesIO()
    part.to_parquet(buffer, index=False)
    return buffer.getvalue()


def classify_segment(states: dict[str, str], results: dict[str, Any], errors: dict[str, str | None]) -> dict[str, Any]:
    """One segment's outcome from its stages' states, results and error lines."""
    for stage in SEGMENT_STAGES:
        if states.get(stage) in FAILED_STATES:
            first = next((s for s in SEGMENT_STAGES if errors.get(s)), None)
            reason = f"{first}: {errors[first]}" if first else f"{stage} {states[stage]}"
            return {"outcome": "failed", "stage": first or stage, "reason": reason}
    deploy = results.get("deploy") or {}
    verdict = results.get("evaluate") or {}
    if states.get("deploy") == "success" and deploy.get("promoted"):
        return {"outcome": "promoted", "version": deploy.get("version"), "previous_version": deploy.get("previous_version"),
                "reason": verdict.get("reason")}
    if deploy and not deploy.get("promoted"):
        return {"outcome": "kept", "reason": deploy.get("reason")}
    if verdict and not verdict.get("blessed"):
        return {"outcome": "kept", "champion_version": verdict.get("champion_version"), "reason": verdict.get("reason")}
    # Neither failed nor finished: e.g. the run was stopped, or a task was skipped by hand.
    return {"outcome": "failed", "stage": None, "reason": f"did not finish (states: {states})"}


def summarise_segments(
    registry: ModelRegistry,
    *,
    dag_id: str,
    run_id: str,
    outcomes: dict[str, dict[str, Any]],
) -> dict[str, Any]:
    """The run's per-segment record, stored under ``_segments/runs/``; returns it."""
    by: dict[str, list[str]] = {"promoted": [], "kept": [], "failed": []}
    for segment, outcome in sorted(outcomes.items()):
        by[outcome["outcome"]].append(segment)
    record = {"format_version": 1, "dag_id": dag_id, "run_id": run_id,
              "recorded_at": datetime.now(UTC).isoformat(timespec="seconds"), **by, "segments": outcomes}
    registry.write_record(_run_key(dag_id, run_id), record)
    return record


def _run_key(dag_id: str, run_id: str) -> str:
    return f"_segments/runs/{re.sub(r'[^A-Za-z0-9_.-]', '_', f'{dag_id}__{run_id}')}.json"


def read_segments_run(registry: ModelRegistry, dag_id: str, run_id: str) -> dict[str, Any]:
    """The per-segment record :func:`summarise_segments` stored for a run."""
    try:
        return json.loads(registry.store.read_bytes(_run_key(dag_id, run_id)))
    except ArtifactNotFound as exc:
        raise ModelNotFound(f"no per-segment record for run {run_id} of {dag_id}") from exc


def format_segments(record: dict[str, Any]) -> str:
    """The summary as the task log shows it: one line per segment."""
    lines = [f"{len(record['promoted'])} promoted, {len(record['kept'])} kept, {len(record['failed'])} failed"]
    for segment, outcome in sorted(record["segments"].items()):
        lines.append(f"  {segment:<20} {outcome['outcome'].upper():<9} {outcome.get('reason') or ''}")
    return "\n".join(lines)
