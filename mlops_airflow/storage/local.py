"""The local-disk artifact store, for one host (use S3 with Celery or Kubernetes executors)."""

from __future__ import annotations

import builtins
import contextlib
import fcntl
import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

from mlops_airflow.exceptions import ArtifactNotFound, StorageError
from mlops_airflow.storage.base import ArtifactStore, ObjectInfo, sha256_hex

_SUFFIXES_HIDDEN = (".lock", ".tmp")


class LocalStore(ArtifactStore):
    """Objects as files under a root folder.

    ``create`` links a fully written, fsynced temp file into place (``os.link`` fails
    if the target exists, atomically); ``replace_if`` holds an ``flock`` on a lock file,
    which the kernel releases if the process dies, around compare + ``os.replace``.
    """

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).expanduser().resolve()
        self.uri = str(self.root)
        self._prefix = os.path.join(self.uri, "")

    def _path(self, key: str) -> Path:
        # Lexical, not resolve(): a key is refused if ".." (or an absolute path) would lead out of
        # the root. resolve() stats every component (~40 µs a call, a model server reads a
        # thousand aliases a second); links inside the root are the operator's own.
        path = os.path.normpath(os.path.join(self.uri, key))
        if "\x00" in key or (path != self.uri and not path.startswith(self._prefix)):
            raise StorageError(f"key {key[:200]!r} escapes the store root {self.root}")
        return Path(path)

    def _write_temp(self, path: Path, data: bytes) -> Path:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
            with open(tmp, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
        except OSError as exc:
            raise StorageError(f"cannot write {path}: {exc.strerror or exc}") from exc
        return tmp

    @staticmethod
    def _fsync_dir(folder: Path) -> None:
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def read_bytes(self, key: str) -> bytes:
        path = self._path(key)
        try:
            return path.read_bytes()
        except FileNotFoundError as exc:
            raise ArtifactNotFound(f"no artifact at {path}") from exc
        except OSError as exc:
            raise StorageError(f"cannot read {path}: {exc.strerror or exc}") from exc

    def write_bytes(self, key: str, data: bytes) -> None:
        path = self._path(key)
        tmp = self._write_temp(path, data)
        os.replace(tmp, path)
        self._fsync_dir(path.parent)

    def create(self, key: str, data: bytes) -> bool:
        path = self._path(key)
        tmp = self._write_temp(path, data)
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
        except OSError as exc:
            raise StorageError(f"cannot create {path}: {exc.strerror or exc}") from exc
        finally:
            tmp.unlink(missing_ok=True)
        self._fsync_dir(path.parent)
        return True

    def read_versioned(self, key: str) -> tuple[bytes, str]:
        data = self.read_bytes(key)
        return data, sha256_hex(data)

    @contextlib.contextmanager
    def _locked(self, path: Path) -> Iterator[None]:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path.with_name(path.name + ".lock"), "a") as lock:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock.fileno(), fcntl.LOCK_UN)

    def replace_if(self, key: str, data: bytes, token: str) -> bool:
        path = self._path(key)
        with self._locked(path):
            try:
                current = sha256_hex(path.read_bytes())
            except FileNotFoundError:
                return False
            if current != token:
                return False
            self.write_bytes(key, data)
            return True

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def list(self, prefix: str = "") -> builtins.list[str]:
        base = self._path(prefix) if prefix else self.root
        if not base.is_dir():
            return []
        keys = []
        for dirpath, _dirs, files in os.walk(base):
            for name in files:
                if name.startswith(".") or name.endswith(_SUFFIXES_HIDDEN):
                    continue
                keys.append(Path(dirpath, name).relative_to(self.root).as_posix())
        return sorted(keys)

    def list_dir(self, folder: str = "", *, starts_with: str = "") -> tuple[builtins.list[str], builtins.list[str]]:
        """See :meth:`ArtifactStore.list_dir`; on disk a folder is listed even while it is empty."""
        base = self._path(folder) if folder.strip("/") else self.root
        files, folders = [], []
        try:
            entries = list(os.scandir(base))
        except (FileNotFoundError, NotADirectoryError):
            return [], []
        for entry in entries:
            name = entry.name
            if name.startswith(".") or not name.startswith(starts_with):
                continue
            if entry.is_dir():
                folders.append(name)
            elif not name.endswith(_SUFFIXES_HIDDEN):
                files.append(name)
        return sorted(files), sorted(folders)

    def _info(self, key: str) -> ObjectInfo | None:
        """The object's details; None if it was deleted (or renamed) since it was listed."""
        try:
            stat = self._path(key).stat()
        except FileNotFoundError:
            return None
        modified = datetime.fromtimestamp(stat.st_mtime, UTC)
        return ObjectInfo(key, stat.st_size, modified, f"{stat.st_mtime_ns}-{stat.st_size}")

    def list_info(self, prefix: str = "") -> builtins.list[ObjectInfo]:
        return [info for info in map(self._info, self.list(prefix)) if info is not None]

    def list_leftovers(self, prefix: str = "") -> builtins.list[ObjectInfo]:
        """The ``.<name>.<hex>.tmp`` files of writes that crashed before their rename (or link) into place."""
        base = self._path(prefix) if prefix else self.root
        keys = sorted(Path(dirpath, name).relative_to(self.root).as_posix()
                      for dirpath, _dirs, files in os.walk(base) for name in files if name.endswith(".tmp"))
        return [info for info in map(self._info, keys) if info is not None]

    def open_read(self, key: str) -> BinaryIO:
        path = self._path(key)
        try:
            return open(path, "rb")  # noqa: SIM115 - the caller closes it
        except FileNotFoundError as exc:
            raise ArtifactNotFound(f"no artifact at {path}") from exc
        except OSError as exc:
            raise StorageError(f"cannot read {path}: {exc.strerror or exc}") from exc

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)
