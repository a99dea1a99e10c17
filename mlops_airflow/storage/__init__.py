"""Artifact storage: one interface, a local-path and an ``s3://`` backend."""

from __future__ import annotations

from typing import Any

from mlops_airflow.storage.base import ArtifactStore, sha256_hex

__all__ = ["ArtifactStore", "open_store", "split_uri", "sha256_hex"]


def open_store(uri: str, *, s3_client: Any | None = None) -> ArtifactStore:
    """The store rooted at ``uri``: ``s3://bucket/prefix`` or a local path (``file://`` allowed)."""
    if uri.startswith("s3://"):
        from mlops_airflow.storage.s3 import S3Store

        return S3Store(uri, client=s3_client)
    from mlops_airflow.storage.local import LocalStore

    return LocalStore(uri.removeprefix("file://"))


def split_uri(uri: str) -> tuple[str, str]:
    """Split an object URI into (store root, key): ``s3://b/x/y.csv`` -> (``s3://b``, ``x/y.csv``)."""
    if uri.startswith("s3://"):
        bucket, _, key = uri[len("s3://") :].partition("/")
        return f"s3://{bucket}", key
    from pathlib import Path

    path = Path(uri.removeprefix("file://")).expanduser().resolve()
    return str(path.parent), path.name
