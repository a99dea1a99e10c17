"""New data: which objects under a prefix arrived since the last processed watermark.

A :class:`ArrivalTracker` keeps one small JSON record per watch (``_watermarks/<key>.json``
in the registry's store, so it lives as long as the models it feeds and works wherever
the registry works, with no Airflow at all)::

    {"format_version": 1, "key": ..., "source": "s3://bucket/landing", "pattern": "*.csv",
     "watermark": "<newest committed modification time>",
     "seen": {"<object key>": {"etag": ..., "modified": ...}},  # committed objects near the watermark
     "claims": {"<run id>": {"objects": [...], "committed": true, "claimed_at": ...}, ...}}

An object is *new* when it is not among the committed ``seen`` ones and was modified after
``watermark - lookback``. The lookback (default one day) covers objects that are listed
late with an older modification time (S3 dates a multipart upload by its start) and
clocks that disagree; committed objects older than that window are forgotten, which
keeps the record small.

A run *claims* what it found under its run id. Claiming again with the same run id (a
retried or cleared task) returns the same objects, so a retry processes the same data.
``commit="on_claim"`` advances the watermark at once: the next run never sees those
objects again, even if this run fails later (clear the run to reprocess them).
``commit="on_success"`` leaves the claim pending until :meth:`ArrivalTracker.commit` is
called at the end of the pipeline: until then, later runs see the objects as new too.
Every write is a compare-and-swap on the record, so two runs racing for it cannot both
advance it blindly.
"""

from __future__ import annotations

import fnmatch
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from mlops_airflow.exceptions import ArtifactNotFound, ConfigError, StorageError
from mlops_airflow.records import FORMAT_VERSION, check_readable
from mlops_airflow.storage import ArtifactStore, open_store
from mlops_airflow.storage.base import ObjectInfo

CommitMode = Literal["on_claim", "on_success"]
COMMIT_MODES = ("on_claim", "on_success")
DEFAULT_LOOKBACK = timedelta(days=1)
#: Claims kept in the record (oldest dropped first): enough for any retry to find its own.
MAX_CLAIMS = 50
_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,199}$")
_CAS_ATTEMPTS = 10


def check_watch_key(key: str) -> str:
    if not isinstance(key, str) or not _KEY.match(key):
        raise ConfigError(
            f"state_key={key!r} is not valid: use 1-200 letters, digits, '_', '.' or '-', starting with a letter or digit"
        )
    return key


def check_commit_mode(commit: str) -> CommitMode:
    if commit not in COMMIT_MODES:
        raise ValueError(f"commit must be one of {', '.join(COMMIT_MODES)}, got {commit!r}")
    return commit  # type: ignore[return-value]


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat()


def _object_record(store: ArtifactStore, info: ObjectInfo) -> dict[str, Any]:
    return {"key": info.key, "uri": store.url(info.key), "etag": info.etag, "size": info.size,
            "modified": _iso(info.modified)}


@dataclass
class Source:
    """The objects being watched: everything below ``uri`` whose key (relative to it) matches ``pattern``.

    ``pattern`` is a shell pattern (``*.csv``, ``2026-*/*.parquet``); ``*`` also matches
    ``/``. Folder markers and names starting with ``.`` or ``_`` (``_SUCCESS``, temp
    files of uploaders) are never data.
    """

    uri: str
    pattern: str = "*"
    s3_client: Any | None = None

    def list(self) -> list[dict[str, Any]]:
        store = open_store(self.uri, s3_client=self.s3_client)
        found = []
        for info in store.list_info():
            name = info.key.rsplit("/", 1)[-1]
            if name.startswith((".", "_")) or not fnmatch.fnmatchcase(info.key, self.pattern):
                continue
            found.append(_object_record(store, info))
        return found


class ArrivalTracker:
    """The watermark record of one watch, kept in ``store`` under ``_watermarks/<key>.json``."""

    def __init__(self, store: ArtifactStore, key: str, *, lookback: timedelta = DEFAULT_LOOKBACK) -> None:
        self.store = store
        self.key = check_watch_key(key)
        self.record_key = f"_watermarks/{key}.json"
        if lookback < timedelta(0):
            raise ValueError(f"lookback must not be negative, got {lookback}")
        self.lookback = lookback

    # -- reading ---------------------------------------------------------------------
    def _read(self) -> tuple[dict[str, Any], str | None]:
        try:
            data, token = self.store.read_versioned(self.record_key)
        except ArtifactNotFound:
            return {"format_version": FORMAT_VERSION, "key": self.key, "watermark": None, "seen": {}, "claims": {}}, None
        try:
            record = json.loads(data)
        except ValueError as exc:
            raise StorageError(f"{self.store.url(self.record_key)} is not valid JSON: {exc}") from exc
        return check_readable("watermark", record, self.store.url(self.record_key)), token

    def state(self) -> dict[str, Any]:
        """The record as stored (an empty one before the first claim)."""
        return self._read()[0]

    def new_objects(self, listing: list[dict[str, Any]], state: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        """The objects of ``listing`` not yet committed, oldest first."""
        state = state if state is not None else self.state()
        seen: dict[str, dict[str, str]] = state.get("seen", {})
        horizon = None
        if state.get("watermark"):
            horizon = datetime.fromisoformat(state["watermark"]) - self.lookback
        fresh = [
            obj for obj in listing
            if seen.get(obj["key"], {}).get("etag") != obj["etag"]
            and (horizon is None or datetime.fromisoformat(obj["modified"]) > horizon)
        ]
        return sorted(fresh, key=lambda obj: (obj["modified"], obj["key"]))

    # -- writing ---------------------------------------------------------------------
    def _update(self, change: Any) -> Any:
        """Apply ``change(record) -> (new record or None, result)`` by compare-and-swap, retrying lost races."""
        for _ in range(_CAS_ATTEMPTS):
            record, token = self._read()
            updated, result = change(record)
            if updated is None:
                return result
            data = json.dumps(updated, indent=2, sort_keys=True).encode()
            done = self.store.create(self.record_key, data) if token is None else self.store.replace_if(
                self.record_key, data, token)
            if done:
                return result
        raise StorageError(f"{self.store.url(self.record_key)} kept changing: gave up after {_CAS_ATTEMPTS} attempts")

    def _committed(self, record: dict[str, Any], objects: list[dict[str, Any]]) -> dict[str, Any]:
        """``record`` with ``objects`` added to ``seen``, the watermark advanced and old entries forgotten."""
        seen = {**record.get("seen", {}), **{o["key"]: {"etag": o["etag"], "modified": o["modified"]} for o in objects}}
        stamps = [datetime.fromisoformat(entry["modified"]) for entry in seen.values()]
        if record.get("watermark"):
            stamps.append(datetime.fromisoformat(record["watermark"]))
        watermark = max(stamps) if stamps else None
        if watermark is not None:
            horizon = watermark - self.lookback
            seen = {k: entry for k, entry in seen.items() if datetime.fromisoformat(entry["modified"]) > horizon}
        return {**record, "watermark": _iso(watermark) if watermark else None, "seen": seen}

    def claim(
        self,
        claimant: str,
        listing: list[dict[str, Any]],
        *,
        commit: CommitMode = "on_claim",
        source: str | None = None,
        pattern: str | None = None,
    ) -> list[dict[str, Any]]:
        """The new objects of ``listing``, recorded as ``claimant``'s; [] when there are none.

        A claimant that already holds a claim gets the same objects back, whatever the
        listing says now: a retried task processes exactly what its first attempt found.
        """
        check_commit_mode(commit)

        def change(record: dict[str, Any]) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
            mine = record.get("claims", {}).get(claimant)
            if mine is not None:
                return None, mine["objects"]
            fresh = self.new_objects(listing, record)
            if not fresh:
                return None, []
            claims = {**record.get("claims", {}), claimant: {
                "objects": fresh, "committed": commit == "on_claim", "claimed_at": _iso(datetime.now(UTC))}}
            if len(claims) > MAX_CLAIMS:
                oldest = sorted(claims, key=lambda name: claims[name]["claimed_at"])[: len(claims) - MAX_CLAIMS]
                claims = {name: claim for name, claim in claims.items() if name not in oldest}
            updated = {**record, "format_version": FORMAT_VERSION, "key": self.key, "claims": claims,
                       "updated_at": _iso(datetime.now(UTC))}
            if source is not None:
                updated.update(source=source, pattern=pattern)
            return (self._committed(updated, fresh) if commit == "on_claim" else updated), fresh

        result: list[dict[str, Any]] = self._update(change)
        return result

    def commit(self, claimant: str) -> list[dict[str, Any]]:
        """Mark ``claimant``'s claim processed and advance the watermark past it (idempotent).

        Returns the committed objects; [] when the claimant holds no claim (nothing was new).
        """

        def change(record: dict[str, Any]) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
            mine = record.get("claims", {}).get(claimant)
            if mine is None:
                return None, []
            if mine.get("committed"):
                return None, mine["objects"]
            claims = {**record["claims"], claimant: {**mine, "committed": True}}
            updated = {**record, "claims": claims, "updated_at": _iso(datetime.now(UTC))}
            return self._committed(updated, mine["objects"]), mine["objects"]

        result: list[dict[str, Any]] = self._update(change)
        return result
