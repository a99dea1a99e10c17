"""Validated dataset snapshots: what validation passed is exactly what training reads.

Validation writes the typed frame as Parquet plus a JSON sidecar (source URI, fingerprint,
declared constraints, report location) into the artifact store; later stages receive the
sidecar's URI through XCom, so data that changes at its source between tasks cannot
slip past validation.
"""

from __future__ import annotations

import io
import json
from typing import TYPE_CHECKING, Any

from mlops_airflow.exceptions import ArtifactNotFound, DataError
from mlops_airflow.storage import ArtifactStore

if TYPE_CHECKING:
    import pandas as pd


def snapshot_key(model_name: str, fingerprint: str, spec_hash: str) -> str:
    return f"{model_name}/datasets/{fingerprint.removeprefix('sha256:')[:24]}-{spec_hash[:12]}"


def write_snapshot(store: ArtifactStore, key: str, frame: pd.DataFrame, meta: dict[str, Any]) -> dict[str, Any]:
    """Store ``frame`` and ``meta``; returns the sidecar (with ``uri`` and ``data_uri``)."""
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    store.write_bytes(f"{key}/data.parquet", buffer.getvalue())
    sidecar = {**meta, "data_uri": store.url(f"{key}/data.parquet"), "uri": store.url(f"{key}/dataset.json")}
    store.write_bytes(f"{key}/dataset.json", json.dumps(sidecar, indent=2, default=str).encode())
    return sidecar


def read_snapshot(store: ArtifactStore, uri: str) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The frame and sidecar of a snapshot, given the sidecar's URI within ``store``."""
    import pandas as pd

    key = uri.removeprefix(store.uri.rstrip("/") + "/")
    try:
        sidecar = json.loads(store.read_bytes(key))
        frame = pd.read_parquet(io.BytesIO(store.read_bytes(key.rsplit("/", 1)[0] + "/data.parquet")))
    except ArtifactNotFound as exc:
        raise DataError(f"validated dataset {uri} is gone: re-run validation") from exc
    return frame, sidecar
