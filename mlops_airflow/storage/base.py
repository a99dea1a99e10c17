"""The artifact store interface: keys are ``/``-separated paths below a root URI."""

from __future__ import annotations

import builtins
import fnmatch
import hashlib
from abc import ABC, abstractmethod
from dataclasses import dataclass
from datetime import datetime
from typing import BinaryIO


@dataclass(frozen=True)
class ObjectInfo:
    """One listed object: its key below the store root, size, last change (UTC) and a change token."""

    key: str
    size: int
    modified: datetime
    #: Changes whenever the object's content is replaced (the S3 ETag; mtime and size on disk).
    etag: str


class ArtifactStore(ABC):
    """Bytes under keys, with the two atomic primitives the registry is built on.

    ``create`` writes only if nothing is there yet, and ``replace_if`` replaces only if
    the object is unchanged since it was read (compare-and-swap). Everything else is an
    ordinary read or write.
    """

    #: The root URI (a local path or ``s3://bucket/prefix``).
    uri: str
    #: How many reads are worth running at once: several over a network, one on a local disk
    #: (its reads take microseconds; threads would only add switching).
    read_concurrency: int = 1

    @abstractmethod
    def read_bytes(self, key: str) -> bytes:
        """The object's bytes; ``ArtifactNotFound`` if there is none."""

    @abstractmethod
    def write_bytes(self, key: str, data: bytes) -> None:
        """Write (or overwrite) an object; readers never see a partial object."""

    @abstractmethod
    def create(self, key: str, data: bytes) -> bool:
        """Write only if no object exists at ``key``: True if written, False if one existed."""

    @abstractmethod
    def read_versioned(self, key: str) -> tuple[bytes, str]:
        """The object's bytes and a token that ``replace_if`` compares against."""

    @abstractmethod
    def replace_if(self, key: str, data: bytes, token: str) -> bool:
        """Replace the object only if it still carries ``token``: True if replaced."""

    @abstractmethod
    def exists(self, key: str) -> bool:
        """Whether an object exists at ``key``."""

    @abstractmethod
    def list(self, prefix: str = "") -> builtins.list[str]:
        """Keys of all objects below ``prefix``, sorted."""

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove an object (no error if absent)."""

    def list_dir(self, folder: str = "", *, starts_with: str = "") -> tuple[builtins.list[str], builtins.list[str]]:
        """The names of the objects and of the folders directly below ``folder``, each sorted.

        Only names beginning with ``starts_with`` are returned. Nothing deeper is read: on S3
        this is a delimited listing, one request per 1,000 names, whatever the folders hold.
        This default lists every key below ``folder``; backends override it.
        """
        base = folder.strip("/")
        files: set[str] = set()
        folders: set[str] = set()
        for key in self.list(base):
            name, slash, _ = key[len(base) + 1 if base else 0 :].partition("/")
            if name.startswith(starts_with):
                (folders if slash else files).add(name)
        return sorted(files), sorted(folders)

    def list_info(self, prefix: str = "") -> builtins.list[ObjectInfo]:
        """Like :meth:`list`, with each object's size, modification time and change token."""
        from mlops_airflow.exceptions import StorageError

        raise StorageError(f"{type(self).__name__} cannot list object details")

    def list_leftovers(self, prefix: str = "") -> builtins.list[ObjectInfo]:
        """Temp objects below ``prefix`` that a write which died half-way left behind (never listed otherwise).

        This default has none: a backend that writes each object in one request (S3's PUT) leaves none.
        """
        return []

    def open_read(self, key: str) -> BinaryIO:
        """A seekable binary file reading the object without holding all of it in memory (if the backend can).

        ``ArtifactNotFound`` if there is none. This default reads the whole object; backends override it.
        """
        import io

        return io.BytesIO(self.read_bytes(key))

    def url(self, key: str) -> str:
        """A URI naming the object, for people and for records."""
        return f"{self.uri.rstrip('/')}/{key}"

    def key_of(self, url: str | None) -> str | None:
        """The key that :meth:`url` turned into ``url``; None if ``url`` lies outside this store."""
        root = self.uri.rstrip("/") + "/"
        if not url:
            return None
        url = url.removeprefix("file://")
        return url[len(root) :] if url.startswith(root) and len(url) > len(root) else None

    def glob(self, pattern: str) -> builtins.list[str]:
        """Keys matching a shell pattern (``*`` does not cross ``/``), sorted."""
        head = pattern.split("*", 1)[0].split("?", 1)[0].split("[", 1)[0]
        prefix = head.rsplit("/", 1)[0] if "/" in head else ""
        depth = pattern.count("/")
        return [
            key
            for key in self.list(prefix)
            if key.count("/") == depth and fnmatch.fnmatchcase(key, pattern)
        ]


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
