"""A registry that cannot lie, on nothing but an artifact store (a disk or S3).

Layout below the store's root::

    <model>/artifacts/<sha256>/model.skops    the model, content-addressed (racers never collide)
    <model>/artifacts/<sha256>/candidate.json what training recorded about it
    <model>/versions/<n>.json                 the manifest; creating it IS the commit
    <model>/aliases/<alias>.json              {version, previous, moved_at, by, reason}, CAS-replaced
    <model>/claims/<hash>.json                idempotency: the attempt registering, the number it may
                                              create, then the version it produced
    _index/...                                derived summaries for listing (see :mod:`.index`)

Guarantees: a version number is never given twice (manifests are created only if absent);
a crash before the manifest leaves only an unreferenced artifact; moving an alias is a
compare-and-swap; a retried register (same idempotency key *and* same candidate sha256)
returns the version it made the first time, even while that first attempt is still running
(it waits for it, or takes its claim over, never numbering a second version). Each of those
changes also keeps the model's summary in the model index (:mod:`mlops_airflow.registry.index`)
up to date, after the change.
"""

from __future__ import annotations

import json
import random
import re
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from mlops_airflow.exceptions import (
    AliasConflict,
    ArtifactNotFound,
    ConfigError,
    ModelNotFound,
    RegistryError,
)
from mlops_airflow.records import FORMAT_VERSION, check_readable, validate_record
from mlops_airflow.registry.index import ModelIndex
from mlops_airflow.storage import ArtifactStore, sha256_hex

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
_VERSION_FILE = re.compile(r"^versions/(\d+)\.json$")
#: An unfinished idempotency claim unchanged this long belongs to an attempt presumably dead;
#: a twin then takes it over. Taking over is safe even from a live attempt, so this trades only
#: a retry's wait after a crash against needless takeovers (a registration takes a second or two).
TAKEOVER_AFTER = 30.0


def utcnow() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def to_json(record: dict[str, Any]) -> bytes:
    return json.dumps(record, indent=2, sort_keys=True, default=str).encode()


def idempotency_key(dag_id: str, run_id: str, task_id: str, map_index: int = -1) -> str:
    """The key that makes a retried task attempt find its own version."""
    return f"{dag_id}/{run_id}/{task_id}/{map_index}"


def valid_name(name: str) -> bool:
    """Whether ``name`` may name a model or an alias (folders like ``_index`` never do)."""
    return bool(_NAME.match(name))


def check_name(name: str, what: str = "model_name") -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise ConfigError(
            f"{what}={name!r} is not valid: use 1-128 letters, digits, '_', '.' or '-', starting with a letter or digit"
        )
    return name


class ModelRegistry:
    """Versions, aliases and artifacts of models, kept in an :class:`ArtifactStore`."""

    #: Guarantees this backend gives natively; a backend lacking one says how it compensates
    #: in :attr:`compensations` (see :mod:`mlops_airflow.registry.backend`).
    native_capabilities: dict[str, bool] = {
        "alias_cas": True,
        "concurrent_register": True,
        "idempotent_register": True,
        "atomic_commit": True,
    }
    compensations: dict[str, str] = {}

    def __init__(self, store: ArtifactStore, *, takeover_after: float = TAKEOVER_AFTER, claim_poll: float = 0.05) -> None:
        self.store = store
        #: Seconds an unfinished idempotency claim may stand still before a twin takes it over.
        self.takeover_after = takeover_after
        #: Seconds between looks at a twin's unfinished claim (jittered up to twice that).
        self.claim_poll = claim_poll
        #: Per-model summaries for listing, kept up to date by every change made here.
        self.index = ModelIndex(self)

    @property
    def capabilities(self) -> dict[str, bool]:
        """The guarantees callers get (native or compensated); ``multi_host``: safe from many hosts at once."""
        return {**dict.fromkeys(self.native_capabilities, True), "multi_host": self.store.uri.startswith("s3://")}

    # -- artifacts -------------------------------------------------------------------
    def artifact_key(self, model: str, sha256: str, name: str = "model.skops") -> str:
        return f"{check_name(model)}/artifacts/{sha256}/{name}"

    def put_artifact(self, model: str, data: bytes, candidate: dict[str, Any]) -> dict[str, Any]:
        """Store a candidate model and its record; returns the record with ``sha256`` and ``artifact_uri``."""
        sha = sha256_hex(data)
        key = self.artifact_key(model, sha)
        if not self.store.exists(key):
            self.store.write_bytes(key, data)
        record = {
            **candidate,
            "format_version": FORMAT_VERSION,
            "model_name": model,
            "sha256": sha,
            "artifact_uri": self.store.url(key),
            "size_bytes": len(data),
        }
        self.store.write_bytes(self.artifact_key(model, sha, "candidate.json"), to_json(record))
        return record

    def read_artifact(self, model: str, sha256: str) -> bytes:
        return self.store.read_bytes(self.artifact_key(model, sha256))

    def candidate(self, model: str, sha256: str) -> dict[str, Any]:
        try:
            return self._read_json(self.artifact_key(model, sha256, "candidate.json"))
        except ArtifactNotFound as exc:
            raise ModelNotFound(f"no candidate {sha256[:12]} for model {model!r}") from exc

    # -- versions --------------------------------------------------------------------
    def list_models(self, match: str | None = None) -> list[str]:
        """Sorted names of the models with at least one version (``match``: a name prefix or glob).

        From the model index's listings, not a scan of every object: see :meth:`ModelIndex.catalog`.
        """
        return self.index.catalog(match).names

    def list_versions(self, model: str) -> list[int]:
        versions = []
        for key in self.store.list(f"{check_name(model)}/versions"):
            match = _VERSION_FILE.match(key.split("/", 1)[1])
            if match:
                versions.append(int(match.group(1)))
        return sorted(versions)

    def get_version(self, model: str, version: int) -> dict[str, Any]:
        try:
            return self._read_json(f"{check_name(model)}/versions/{int(version)}.json")
        except ArtifactNotFound as exc:
            raise ModelNotFound(f"model {model!r} has no version {version}") from exc

    def latest(self, model: str) -> dict[str, Any]:
        versions = self.list_versions(model)
        if not versions:
            raise ModelNotFound(f"no model named {model!r} in {self.store.uri}")
        return self.get_version(model, versions[-1])

    def register(self, model: str, manifest: dict[str, Any], *, idempotency_key: str) -> dict[str, Any]:
        """Commit a new version of ``model`` and return its manifest (with ``version``).

        ``manifest`` must hold the candidate's ``sha256``, whose artifact must exist. A retry
        with the same idempotency key and sha256 returns the version made the first time.
        """
        with self.index.changing(model):
            return self._register(model, manifest, idempotency_key=idempotency_key)

    def _register(self, model: str, manifest: dict[str, Any], *, idempotency_key: str) -> dict[str, Any]:
        """:meth:`register` without the index: the commit protocol of this backend.

        The claim belongs to one attempt at a time (``owner``) and names the one version number
        its owner may create (``trying``). ``trying`` moves, and ownership passes to a twin, only
        by compare-and-swap, and a twin that takes over creates the same number its predecessor
        may still be creating: twins overlapping, or a twin taking over from a stalled or dead
        one, create or find one manifest, never two versions for one key.
        """
        sha = self._check_registrable(model, manifest)
        self._manifest_record(model, manifest, 1, idempotency_key)  # refuse an invalid manifest before claiming
        key = f"{model}/claims/{sha256_hex(f'{idempotency_key}|{sha}'.encode())}.json"
        me = uuid.uuid4().hex
        watch = _ClaimWatch(self.takeover_after)
        state = self._open_claim(model, key, idempotency_key, sha, me)
        while True:
            if state is None:  # deleted meanwhile (gc of the version it named): start afresh
                state = self._open_claim(model, key, idempotency_key, sha, me)
                continue
            claim, token = state
            number = claim.get("version")
            if number is not None:
                found = self._find_own(model, number, idempotency_key, sha)
                if found is not None:
                    return found
                # It names a version that is gone or not ours (a hand edit): make a new one.
                state = self._update_claim(key, claim, token, owner=me, version=None, trying=self._next_number(model))
            elif claim.get("owner") == me:
                record = self._commit_number(model, manifest, int(claim["trying"]), idempotency_key, sha)
                if record is not None:
                    # Unconditional: whoever else may write this claim now writes this same version.
                    self.store.write_bytes(key, to_json({**claim, "version": record["version"]}))
                    return record
                state = self._update_claim(key, claim, token, trying=self._next_number(model))
            elif token is not None and watch.stale(claim, token):
                state = self._take_over(model, key, claim, token, me)
            else:
                time.sleep(self.claim_poll * (1 + random.random()))  # jitter: twins polling in step collide again
                state = self._read_claim(key)

    def _open_claim(self, model: str, key: str, idempotency_key: str, sha: str,
                    me: str) -> tuple[dict[str, Any], str | None] | None:
        """Create the claim, owned by ``me``, or read the one a twin made (token None: ours, not read back)."""
        claim = {"idempotency_key": idempotency_key, "sha256": sha, "version": None, "owner": me,
                 "trying": self._next_number(model), "updated_at": time.time()}
        return (claim, None) if self.store.create(key, to_json(claim)) else self._read_claim(key)

    def _read_claim(self, key: str) -> tuple[dict[str, Any], str | None] | None:
        try:
            data, token = self.store.read_versioned(key)
        except ArtifactNotFound:
            return None
        try:
            return json.loads(data), token
        except ValueError as exc:
            raise RegistryError(f"{self.store.url(key)} is not valid JSON: {exc}") from exc

    def _update_claim(self, key: str, claim: dict[str, Any], token: str | None,
                      **changes: Any) -> tuple[dict[str, Any], str | None] | None:
        """Compare-and-swap ``changes`` into the claim as it was read; then the claim as it now is."""
        if token is None:  # we created it and never read it back: its token is unknown
            state = self._read_claim(key)
            if state is None or state[0] != claim:
                return state  # changed meanwhile: the caller looks again
            token = state[1]
        assert token is not None
        self.store.replace_if(key, to_json({**claim, **changes, "updated_at": time.time()}), token)
        return self._read_claim(key)

    def _take_over(self, model: str, key: str, claim: dict[str, Any], token: str,
                   me: str) -> tuple[dict[str, Any], str | None] | None:
        """Own a claim whose attempt stopped, keeping the number it may have created."""
        trying = claim.get("trying")
        if trying is None:  # written by an older mlops-airflow, which records no number: look for its version
            found = self._find_own(model, None, str(claim.get("idempotency_key")), str(claim.get("sha256")))
            trying = found["version"] if found else self._next_number(model)
        return self._update_claim(key, claim, token, owner=me, trying=trying)

    def _next_number(self, model: str) -> int:
        versions = self.list_versions(model)
        return (versions[-1] if versions else 0) + 1

    def _commit_number(self, model: str, manifest: dict[str, Any], number: int, idempotency_key: str,
                        sha: str) -> dict[str, Any] | None:
        """Commit version ``number``, or find it already ours (a twin's, or our PUT whose answer was lost).

        None if another registration has that number.
        """
        record = self._manifest_record(model, manifest, number, idempotency_key)
        key = f"{model}/versions/{number}.json"
        if self.store.create(key, to_json(record)):
            return record
        existing = self._read_json(key)
        return existing if self._is_own(existing, idempotency_key, sha) else None

    def _check_registrable(self, model: str, manifest: dict[str, Any]) -> str:
        """The candidate's sha256, if its artifact is stored; else :class:`RegistryError`."""
        check_name(model)
        sha = manifest.get("sha256")
        if not sha or not self.store.exists(self.artifact_key(model, sha)):
            raise RegistryError(f"cannot register {model!r}: no stored artifact for sha256 {sha!r}")
        return str(sha)

    @staticmethod
    def _manifest_record(model: str, manifest: dict[str, Any], number: int, idempotency_key: str) -> dict[str, Any]:
        """The schema-valid manifest of version ``number`` (:class:`RegistryError` naming the bad field)."""
        record = {
            **manifest,
            "format_version": FORMAT_VERSION,
            "model_name": model,
            "version": number,
            "idempotency_key": idempotency_key,
            "registered_at": utcnow(),
        }
        return validate_record("manifest", record)

    @staticmethod
    def _is_own(record: dict[str, Any], idempotency_key: str, sha: str) -> bool:
        return record.get("idempotency_key") == idempotency_key and record.get("sha256") == sha

    def _find_own(self, model: str, hint: int | None, idempotency_key: str, sha: str) -> dict[str, Any] | None:
        """The version an earlier attempt made, if it got that far (newest first: retries are recent)."""
        candidates = [hint] if hint else list(reversed(self.list_versions(model)))
        for number in candidates:
            try:
                record = self.get_version(model, number)
            except ModelNotFound:  # collected by gc, or never committed
                continue
            if self._is_own(record, idempotency_key, sha):
                return record
        return None

    # -- aliases ---------------------------------------------------------------------
    def get_alias(self, model: str, alias: str) -> dict[str, Any] | None:
        try:
            return self._read_json(f"{check_name(model)}/aliases/{check_name(alias, 'alias')}.json")
        except ArtifactNotFound:
            return None

    def alias_records(self, model: str) -> dict[str, dict[str, Any]]:
        """Every alias of ``model`` with its whole record (version, previous, moved_at, by, reason)."""
        found = {}
        for key in self.store.list(f"{check_name(model)}/aliases"):
            if not key.endswith(".json"):
                continue
            name = key.rsplit("/", 1)[1].removesuffix(".json")
            record = self.get_alias(model, name)
            if record:
                found[name] = record
        return found

    def aliases(self, model: str) -> dict[str, int]:
        """Every alias of ``model`` and the version it names."""
        return {name: int(record["version"]) for name, record in self.alias_records(model).items()}

    def resolve(self, model: str, *, version: int | None = None, alias: str | None = None) -> dict[str, Any]:
        """The manifest named by a version or an alias (the latest version if neither)."""
        if version is not None and alias is not None:
            raise ValueError("give version or alias, not both")
        if alias is not None:
            record = self.get_alias(model, alias)
            if record is None:
                raise ModelNotFound(f"model {model!r} has no alias {alias!r}")
            return self.get_version(model, record["version"])
        if version is not None:
            return self.get_version(model, version)
        return self.latest(model)

    def set_alias(
        self,
        model: str,
        alias: str,
        version: int,
        *,
        expected: int | None,
        by: str,
        reason: str,
    ) -> dict[str, Any]:
        """Point ``alias`` at ``version`` only if it still points at ``expected`` (None: absent).

        Raises :class:`AliasConflict` if the alias moved meanwhile; the caller decides
        what to do (the deploy stage re-evaluates instead of promoting).
        """
        with self.index.changing(model):
            return self._set_alias(model, alias, version, expected=expected, by=by, reason=reason)

    def _set_alias(self, model: str, alias: str, version: int, *, expected: int | None, by: str,
                   reason: str) -> dict[str, Any]:
        self.get_version(model, version)  # the target must exist
        key = f"{check_name(model)}/aliases/{check_name(alias, 'alias')}.json"
        record = {
            "format_version": FORMAT_VERSION,
            "model_name": model,
            "alias": alias,
            "version": int(version),
            "previous": expected,
            "moved_at": utcnow(),
            "by": by,
            "reason": reason,
        }
        validate_record("alias", record)
        try:
            data, token = self.store.read_versioned(key)
        except ArtifactNotFound:
            if expected is not None:
                raise AliasConflict(f"{model}@{alias} does not exist; expected it at version {expected}") from None
            if not self.store.create(key, to_json(record)) and not self._is_our_alias(model, alias, record):
                raise AliasConflict(f"{model}@{alias} was created by someone else meanwhile") from None
            return record
        current = json.loads(data)
        if current.get("version") != expected:
            raise AliasConflict(
                f"{model}@{alias} is at version {current.get('version')}, expected {expected}"
            )
        if not self.store.replace_if(key, to_json(record), token) and not self._is_our_alias(model, alias, record):
            raise AliasConflict(f"{model}@{alias} moved while it was being set")
        return record

    def _is_our_alias(self, model: str, alias: str, record: dict[str, Any]) -> bool:
        """Whether the alias now holds exactly our record: our conditional write landed but its answer was lost."""
        return self.get_alias(model, alias) == record

    def remove_alias(self, model: str, alias: str, *, expected: int) -> None:
        """Delete ``alias`` if it still points at ``expected`` (a rollback when there was no champion).

        Not every S3-compatible server supports a conditional delete, so the check and the
        delete are two requests; deploys of one model run one at a time, which keeps the
        window harmless in practice.
        """
        key = f"{check_name(model)}/aliases/{check_name(alias, 'alias')}.json"
        with self.index.changing(model):
            self._remove_alias(model, alias, key, expected=expected)

    def _remove_alias(self, model: str, alias: str, key: str, *, expected: int) -> None:
        current = self.get_alias(model, alias)
        if current is None:
            return
        if current.get("version") != expected:
            raise AliasConflict(f"{model}@{alias} is at version {current.get('version')}, expected {expected}")
        self.store.delete(key)

    def wait_for_alias(self, model: str, alias: str, *, timeout: float, poll: float = 1.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            record = self.get_alias(model, alias)
            if record is not None:
                return record
            if time.monotonic() >= deadline:
                raise ModelNotFound(f"model {model!r} has no alias {alias!r} after {timeout:.0f}s")
            time.sleep(poll)

    # -- records ---------------------------------------------------------------------
    def write_record(self, key: str, record: dict[str, Any]) -> str:
        self.store.write_bytes(key, to_json(record))
        return self.store.url(key)

    def _read_json(self, key: str) -> dict[str, Any]:
        data = self.store.read_bytes(key)
        try:
            record = json.loads(data)
        except ValueError as exc:
            raise RegistryError(f"{self.store.url(key)} is not valid JSON: {exc}") from exc
        if not isinstance(record, dict):
            raise RegistryError(f"{self.store.url(key)} does not hold a JSON object")
        return check_readable("record", record, self.store.url(key))


class _ClaimWatch:
    """Tells when a twin's unfinished claim has stood still for ``after`` seconds.

    Still means: unchanged under our eyes that long (our own clock, so clock skew between
    hosts cannot hurry it), or last written that long ago by the writer's clock (a retry
    arriving minutes after a crash need not wait).
    """

    def __init__(self, after: float) -> None:
        self.after = after
        self.token = ""
        self.since = time.monotonic()

    def stale(self, claim: dict[str, Any], token: str) -> bool:
        if token != self.token:
            self.token, self.since = token, time.monotonic()
        written = float(claim.get("updated_at") or time.time())
        return max(time.time() - written, time.monotonic() - self.since) >= self.after
