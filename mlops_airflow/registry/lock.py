"""A lease lock kept in an artifact store, for backends that cannot serialise a step themselves.

The lock is one small JSON object ``{"owner", "expires_at"}``. Taking it is a
create-if-absent, or a compare-and-swap over an expired or released lease; releasing it is
a compare-and-swap to ``owner: null``. Both are the store's atomic primitives (``os.link`` /
``flock`` on disk, ``IfNoneMatch`` / ``IfMatch`` on S3), so the lock is as strong, and as
local or as shared, as the store: a local folder serialises one host, S3 every host.

A holder that dies keeps the lock until its lease expires (``ttl``); a holder that stalls
longer than ``ttl`` loses it. Users of this lock therefore keep a second line of defence
(MLflow's own unique version numbers) and hold it only for short steps.
"""

from __future__ import annotations

import json
import random
import time
import uuid
from types import TracebackType

from mlops_airflow.exceptions import ArtifactNotFound, RegistryError
from mlops_airflow.storage import ArtifactStore


class StoreLock:
    """``with StoreLock(store, key): ...`` holds an exclusive lease on ``key`` for the block."""

    def __init__(
        self, store: ArtifactStore, key: str, *, ttl: float = 120.0, timeout: float = 300.0, poll: float = 0.1
    ) -> None:
        self.store = store
        self.key = key
        self.ttl = ttl
        self.timeout = timeout
        self.poll = poll
        self.owner = uuid.uuid4().hex

    def _lease(self) -> bytes:
        return json.dumps({"owner": self.owner, "expires_at": time.time() + self.ttl}).encode()

    def acquire(self) -> None:
        deadline = time.monotonic() + self.timeout
        holder: object = None
        while True:
            if self.store.create(self.key, self._lease()):
                return
            try:
                data, token = self.store.read_versioned(self.key)
            except ArtifactNotFound:
                continue  # removed by hand between our two requests: try to create it again
            current = json.loads(data)
            holder = current.get("owner")
            # A released or expired lease is taken over by CAS, so two waiters never both win it.
            if (holder is None or float(current.get("expires_at", 0)) < time.time()) and self.store.replace_if(
                self.key, self._lease(), token
            ):
                return
            if time.monotonic() >= deadline:
                raise RegistryError(
                    f"timed out after {self.timeout:.0f}s waiting for the lock {self.store.url(self.key)} "
                    f"(held by {holder}); if its holder died, it frees itself within {self.ttl:.0f}s"
                )
            # Jitter: waiters that all retry on the same beat would all collide again.
            time.sleep(self.poll * (1 + random.random()))

    def release(self) -> None:
        try:
            data, token = self.store.read_versioned(self.key)
        except ArtifactNotFound:
            return
        if json.loads(data).get("owner") == self.owner:
            self.store.replace_if(self.key, json.dumps({"owner": None, "expires_at": 0}).encode(), token)

    def __enter__(self) -> StoreLock:
        self.acquire()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()
