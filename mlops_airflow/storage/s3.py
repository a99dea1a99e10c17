"""The S3 artifact store, over any S3-compatible endpoint (AWS, MinIO, moto)."""

from __future__ import annotations

import builtins
import io
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, BinaryIO, TypeVar

from mlops_airflow.exceptions import ArtifactNotFound, StorageError
from mlops_airflow.storage.base import ArtifactStore, ObjectInfo

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client  # noqa: F401

T = TypeVar("T")

_ATTEMPTS = 4
#: Bytes fetched per ranged GET by :meth:`S3Store.open_read`.
_READ_BLOCK = 8 << 20


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

    #: Each request waits tens of milliseconds on the network; boto3 pools 10 connections.
    read_concurrency = 8

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
        return [info.key for info in self.list_info(prefix)]

    def list_info(self, prefix: str = "") -> builtins.list[ObjectInfo]:
        full = self._key(prefix)
        if prefix and not full.endswith("/"):
            full += "/"

        def collect() -> builtins.list[dict[str, Any]]:
            items: list[dict[str, Any]] = []
            paginator = self.client.get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=self.bucket, Prefix=full):
                items.extend(page.get("Contents", []))
            return items

        strip = len(self.prefix) + 1 if self.prefix else 0
        infos = [
            ObjectInfo(item["Key"][strip:], int(item.get("Size", 0)), item["LastModified"], str(item.get("ETag", "")))
            for item in self._call("list", prefix, collect)
            if not item["Key"].endswith("/")  # "folder" markers some tools create are not objects
        ]
        return sorted(infos, key=lambda info: info.key)

    def list_dir(self, folder: str = "", *, starts_with: str = "") -> tuple[builtins.list[str], builtins.list[str]]:
        """See :meth:`ArtifactStore.list_dir`: one delimited ``ListObjectsV2`` per 1,000 names."""
        base = self._key(folder.strip("/")) if folder.strip("/") else self.prefix
        full = (f"{base}/" if base else "") + starts_with

        def collect() -> tuple[builtins.list[str], builtins.list[str]]:
            files: builtins.list[str] = []
            folders: builtins.list[str] = []
            paginator = self.client.get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=self.bucket, Prefix=full, Delimiter="/"):
                files.extend(item["Key"] for item in page.get("Contents", []))
                folders.extend(item["Prefix"] for item in page.get("CommonPrefixes", []))
            return files, folders

        files, folders = self._call("list", folder, collect)
        strip = len(base) + 1 if base else 0
        return (sorted(key[strip:] for key in files if not key.endswith("/")),
                sorted(prefix[strip:].rstrip("/") for prefix in folders))

    def open_read(self, key: str) -> BinaryIO:
        """A seekable reader over ranged GETs (8 MB at a time): Parquet footers and CSV streams alike."""
        head = self._call("stat", key, lambda: self.client.head_object(Bucket=self.bucket, Key=self._key(key)))
        raw = _RangeReader(self, key, int(head["ContentLength"]), str(head.get("ETag", "")))
        return io.BufferedReader(raw, buffer_size=_READ_BLOCK)  # type: ignore[return-value]

    def delete(self, key: str) -> None:
        self._call("delete", key, lambda: self.client.delete_object(Bucket=self.bucket, Key=self._key(key)))


class _RangeReader(io.RawIOBase):
    """One S3 object as a seekable raw file: each read is a ranged GET pinned to the ETag seen at open.

    Pinning (``IfMatch``) makes a reader fail instead of mixing bytes of two versions of
    an object that is replaced while it is read.
    """

    def __init__(self, store: S3Store, key: str, size: int, etag: str) -> None:
        super().__init__()
        self._store, self._key, self._size, self._etag = store, key, size, etag
        self._position = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self._size}[whence]
        self._position = max(0, base + offset)
        return self._position

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        end = min(self._position + len(view), self._size)
        if end <= self._position:
            return 0
        store = self._store
        condition = {"IfMatch": self._etag} if self._etag else {}

        def get() -> bytes:
            response = store.client.get_object(
                Bucket=store.bucket, Key=store._key(self._key), Range=f"bytes={self._position}-{end - 1}", **condition
            )
            return bytes(response["Body"].read())

        try:
            data = store._call("read", self._key, get)
        except Exception as exc:
            if _error_code(exc) in {"PreconditionFailed", "412"}:
                raise StorageError(f"{store.url(self._key)} was replaced while it was being read") from exc
            raise
        view[: len(data)] = data
        self._position += len(data)
        return len(data)
