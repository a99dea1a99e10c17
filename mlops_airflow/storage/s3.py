"""The S3 artifact store, over any S3-compatible endpoint (AWS, MinIO, moto)."""

from __future__ import annotations

import builtins
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from mlops_airflow.exceptions import ArtifactNotFound, StorageError
from mlops_airflow.storage.base import ArtifactStore

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client  # noqa: F401

T = TypeVar("T")

_ATTEMPTS = 4


def _error_code(exc: BaseException) -> str:
    response = getattr(exc, "response", None) or {}
    return str(response.get("Error", {}).get("Code", ""))


def _is_transient(exc: BaseException) -> bool:
    from botocore.exceptions import ConnectionError as BotoConnectionError
    from botocore.exceptions import ReadTimeoutError

    return isinstance(exc, BotoConnectionError | ReadTimeoutError) or _error_code(exc) in {
        "ConditionalRequestConflict",  # 409: a concurrent conditional write is in flight
        "SlowDown",
        "InternalError",
        "ServiceUnavailable",
        "RequestTimeout",
    }


class S3Store(ArtifactStore):
    """Objects under ``s3://bucket/prefix``; the boto3 client is injected.

    ``create`` is a PUT with ``IfNoneMatch="*"`` and ``replace_if`` a PUT with
    ``IfMatch=<etag>``: S3 decides the race, so no lock service is needed. A transient
    error (including 409 ``ConditionalRequestConflict`` and a lost response) retries the
    same conditional PUT; if the lost one had landed, the retry answers 412 and the
    caller (the registry) recognises its own object.
    """

    def __init__(self, uri: str, client: Any | None = None, *, backoff: float = 0.2) -> None:
        if not uri.startswith("s3://"):
            raise ValueError(f"uri must start with s3://, got {uri!r}")
        bucket, _, prefix = uri[len("s3://") :].partition("/")
        if not bucket:
            raise ValueError(f"uri {uri!r} names no bucket")
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.uri = f"s3://{bucket}" + (f"/{self.prefix}" if self.prefix else "")
        self._client = client
        self._backoff = backoff

    @property
    def client(self) -> Any:
        # NB: built lazily so that a store can be constructed (and pickled) without boto3 I/O.
        if self._client is None:
            import boto3

            self._client = boto3.client("s3")
        return self._client

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def _call(self, what: str, key: str, fn: Callable[[], T]) -> T:
        from botocore.exceptions import BotoCoreError, ClientError

        for attempt in range(1, _ATTEMPTS + 1):
            try:
                return fn()
            except (ClientError, BotoCoreError) as exc:
                if _error_code(exc) in {"NoSuchKey", "404", "NotFound"}:
                    raise ArtifactNotFound(f"no artifact at {self.url(key)}") from exc
                if _error_code(exc) in {"PreconditionFailed", "412"}:
                    raise
                if attempt < _ATTEMPTS and _is_transient(exc):
                    time.sleep(self._backoff * attempt)
                    continue
                raise StorageError(f"cannot {what} {self.url(key)}: {exc}") from exc
        raise AssertionError("unreachable")

    def read_bytes(self, key: str) -> bytes:
        return self.read_versioned(key)[0]

    def read_versioned(self, key: str) -> tuple[bytes, str]:
        def get() -> tuple[bytes, str]:
            response = self.client.get_object(Bucket=self.bucket, Key=self._key(key))
            return response["Body"].read(), str(response["ETag"])

        return self._call("read", key, get)

    def write_bytes(self, key: str, data: bytes) -> None:
        self._call("write", key, lambda: self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data))

    def _conditional_put(self, key: str, data: bytes, **condition: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            self._call(
                "write",
                key,
                lambda: self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data, **condition),
            )
        except ClientError as exc:  # only PreconditionFailed escapes _call as a ClientError
            if _error_code(exc) in {"PreconditionFailed", "412"}:
                return False
            raise
        return True

    def create(self, key: str, data: bytes) -> bool:
        return self._conditional_put(key, data, IfNoneMatch="*")

    def replace_if(self, key: str, data: bytes, token: str) -> bool:
        return self._conditional_put(key, data, IfMatch=token)

    def exists(self, key: str) -> bool:
        try:
            self._call("stat", key, lambda: self.client.head_object(Bucket=self.bucket, Key=self._key(key)))
        except ArtifactNotFound:
            return False
        return True

    def list(self, prefix: str = "") -> builtins.list[str]:
        full = self._key(prefix)
        if prefix and not full.endswith("/"):
            full += "/"

        def collect() -> builtins.list[str]:
            keys: list[str] = []
            paginator = self.client.get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=self.bucket, Prefix=full):
                keys.extend(item["Key"] for item in page.get("Contents", []))
            return keys

        strip = len(self.prefix) + 1 if self.prefix else 0
        return sorted(key[strip:] for key in self._call("list", prefix, collect))

    def delete(self, key: str) -> None:
        self._call("delete", key, lambda: self.client.delete_object(Bucket=self.bucket, Key=self._key(key)))
