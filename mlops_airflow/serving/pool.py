"""The models one server process holds: loaded on demand, kept in step with their aliases, within a budget.

A :class:`ModelSlot` is one model by name: the version its alias names, loaded with the
deploy stage's own loader (checksum, trusted types, skew policy, schema), and what went
wrong if it could not be. ``current`` is replaced, never mutated: a request reads it once
and is answered entirely by that model, so a swap or an eviction never splits or fails a
request already under way.

A :class:`ModelPool` holds the slots of one server:

- **which names**: one name (a single-model server, loaded at start and never evicted), or
  the registry's models matching glob patterns (all of them by default), each loaded on
  its first request; any other name is unknown (the app answers 404 naming it);
- **single-flight loads** on a small thread pool: concurrent requests for a model that is
  loading wait for the same load; a load of one model never holds up requests for others;
- **alias following**: a poller thread reads the alias of every slot each ``poll_interval``
  and loads the version it names in the background; the swap is one reference assignment;
  per-model endpoints that report versions (metadata, readiness) read the alias first when
  it was last read more than :data:`FRESH_AFTER` seconds ago, so a deploy sees its version
  at once;
- **a budget**: at most ``max_models`` models and ``memory_budget_bytes`` of estimated model
  memory (:func:`model_footprint`); loading past either evicts the least recently used
  models first, and a model larger than the whole budget is refused (503 naming it) rather
  than loaded;
- **refusal per model**: a version that fails its checks is refused in its own slot (503
  naming the model and why); every other model keeps serving, and the slot keeps serving
  its previous version if it had one.
"""

from __future__ import annotations

import fnmatch
import logging
import os
import sys
import threading
import time
from collections import OrderedDict
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from mlops_airflow.exceptions import ConfigError, DeployError, ModelNotFound, RegistryError, UnsafeModelError
from mlops_airflow.registry.registry import check_name
from mlops_airflow.serving.loading import LoadedModel, load_manifest_model

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from mlops_airflow.persistence import SkewPolicy
    from mlops_airflow.registry.registry import ModelRegistry
    from mlops_airflow.serving.metrics import ServerMetrics

log = logging.getLogger(__name__)

#: Errors that loading the same version again cannot fix: the version is refused until the alias moves.
_REFUSALS = (UnsafeModelError, DeployError, RegistryError)
#: Per-model endpoints that report versions read the alias again when it is older than this.
FRESH_AFTER = 0.25
DEFAULT_MAX_MODELS = 1000
#: A slot with no model loaded (waiting for its alias, refused) and no request for this long is dropped.
IDLE_SLOT_SECONDS = 600.0
#: Unknown names remembered (so a scanner's requests cost no registry reads), and for how long.
_UNKNOWN_NAMES = 4096
#: Alias reads the poller starts per second at most, over all models (see :meth:`ModelPool.poll_due`).
ALIAS_READS_PER_SECOND = 100
#: Loads running at once: loading is I/O and unpickling, and the event loop needs the GIL too.
LOADER_THREADS = 2
#: What a loaded model costs beyond the objects :func:`loaded_footprint` walks (its request
#: decoders' types, allocator slack): measured as resident memory per model over 400 small
#: models (46 KB a model; the walk finds 35 KB) in ``bench/serve_many.py``'s registry.
PER_MODEL_OVERHEAD = 12 * 1024


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def default_memory_budget() -> int:
    """Half the memory this process may use: the cgroup's limit if it has one, else the host's."""
    limit = None
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = open(path, encoding="ascii").read().strip()  # noqa: SIM115 - one line, closed by GC
        except OSError:
            continue
        if text.isdigit() and int(text) < 1 << 60:
            limit = int(text)
            break
    if limit is None:
        try:
            limit = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        except (ValueError, OSError):
            limit = 4 << 30
    return limit // 2


def model_footprint(model: Any) -> int:
    """An estimate of the bytes ``model`` holds: numpy buffers plus Python objects, each counted once.

    Walks instance attributes, containers and arrays (an array's buffer counted once even
    when views share it). It is an estimate (interpreter and allocator overheads are not
    seen), validated against the process's resident memory in ``bench/serve_many.py``.
    """
    import numpy as np

    seen: set[int] = set()
    total = 0
    stack = [model]
    while stack:
        obj = stack.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        if isinstance(obj, np.ndarray):
            base = obj
            while isinstance(base.base, np.ndarray):
                base = base.base
            if base is not obj and id(base) in seen:
                continue
            seen.add(id(base))
            total += base.nbytes + sys.getsizeof(obj) - (obj.nbytes if obj.flags.owndata else 0)
            if obj.dtype == object:
                stack.extend(obj.ravel().tolist())
            continue
        total += sys.getsizeof(obj)
        if isinstance(obj, dict):
            stack.extend(obj.keys())
            stack.extend(obj.values())
        elif isinstance(obj, (list, tuple, set, frozenset)):
            stack.extend(obj)
        elif not isinstance(obj, (str, bytes, int, float, bool, type)) and obj is not None:
            attributes = getattr(obj, "__dict__", None)
            if isinstance(attributes, dict):
                stack.append(attributes)
            for name in getattr(type(obj), "__slots__", ()):
                value = getattr(obj, name, None)
                if value is not None:
                    stack.append(value)
    return total


def loaded_footprint(loaded: LoadedModel) -> int:
    """What the budget counts for a loaded model: the model, its manifest and request checks, and the overhead."""
    return model_footprint((loaded.model, loaded.manifest, loaded.request_checker)) + PER_MODEL_OVERHEAD


@dataclass(frozen=True)
class _Refusal:
    version: int
    moved_at: str | None


class ModelSlot:
    """One model of the server: the version its alias names, loaded, and why not when it is not.

    ``current`` is replaced, never mutated: readers take the reference once and use that.
    :meth:`poll_once` reads the alias and loads what it names; the pool decides when (its
    poller, or a request), and ``install`` (the pool's) puts a loaded model in place.
    """

    def __init__(
        self,
        registry: ModelRegistry,
        model_name: str,
        alias: str,
        *,
        skew_policy: SkewPolicy,
        version: int | None = None,
        expect_sha256: str | None = None,
        metrics: ServerMetrics | None = None,
        install: Callable[[ModelSlot, LoadedModel], None] | None = None,
    ) -> None:
        self.registry = registry
        self.model_name = model_name
        self.alias = alias
        self.skew_policy: SkewPolicy = skew_policy
        #: Pinned: serve exactly this version and never follow the alias.
        self.pinned_version = version
        self.expect_sha256 = expect_sha256
        self.metrics = metrics
        self._install = install or ModelSlot._swap
        self.current: LoadedModel | None = None
        #: Estimated bytes of ``current`` (see :func:`model_footprint`).
        self.footprint = 0
        #: monotonic() of the last request for this model, and of the last alias read.
        self.last_used = time.monotonic()
        self.last_polled = 0.0
        #: The registry holds no version of this model (a multi-model server answers 404).
        self.unknown = False
        #: The load or alias read under way, shared by everyone who waits for it.
        self.pending: Future[None] | None = None
        if version is not None:
            self.waiting_reason = f"loading the pinned version {model_name} version {version}"
        else:
            self.waiting_reason = f"waiting for the alias {model_name}@{alias} to be read from the registry"
        self.last_error: str | None = None
        self.last_error_at: str | None = None
        self._refused: _Refusal | None = None
        self._lock = threading.Lock()

    def _fail(self, message: str, level: int = logging.WARNING) -> None:
        if message != self.last_error:  # an outage fails every poll: log it once, not every second
            log.log(level, "model loader: %s", message)
        self.last_error = message
        self.last_error_at = _now()

    def poll_once(self) -> None:
        """Read the alias once and load the version it names if that is not the one served."""
        try:
            self._poll()
        finally:
            self.last_polled = time.monotonic()

    def _poll(self) -> None:
        if self.pinned_version is not None:
            with self._lock:
                # once loaded or refused there is nothing to follow; a transient failure is retried
                if self.current is None and self._refused is None:
                    self._load(self.pinned_version, {"version": self.pinned_version, "moved_at": None})
            return
        with self._lock:
            try:
                record = self.registry.get_alias(self.model_name, self.alias)
            except Exception as exc:  # a store outage: keep serving, say so, try again next poll
                self._fail(f"cannot read {self.model_name}@{self.alias} from the registry: {exc}")
                return
            current = self.current
            if record is None:
                alias, store = f"{self.model_name}@{self.alias}", self.registry.store.uri
                if current is None:
                    reason = f"the alias {alias} does not exist yet in {store}"
                    if reason not in self.waiting_reason:  # log once, not on every poll
                        log.info("model loader: %s; waiting", reason)
                    self.waiting_reason = f"waiting for a model: {reason}"
                    self.last_error = self.last_error_at = None
                    self._refused = None
                else:
                    self._fail(
                        f"the alias {alias} no longer exists in {store}; still serving version {current.version}"
                    )
                return
            version = int(record["version"])
            if current is not None and current.version == version:
                # e.g. a deploy rolled the alias back to what is served: nothing is wrong any more
                self.last_error = self.last_error_at = None
                self._refused = None
                return
            refused = self._refused
            if refused is not None and (refused.version, refused.moved_at) == (version, record.get("moved_at")):
                return  # already refused this very alias state; it cannot load better now
            self._load(version, record)

    def _load(self, version: int, record: dict[str, Any]) -> None:
        current = self.current
        log.info("model loader: loading %s version %s (%s@%s)", self.model_name, version, self.model_name, self.alias)
        started = time.perf_counter()
        keeps = f"; still serving version {current.version}" if current else ""
        try:
            manifest = self.registry.get_version(self.model_name, version)
            self._check_expected_sha(manifest)
            loaded = load_manifest_model(self.registry, manifest, skew_policy=self.skew_policy)
            loaded.warm()  # request checks built here, not by the first request
            self._install(self, loaded)
        except _REFUSALS as exc:
            self._fail(f"refused version {version}: {exc}{keeps}", logging.ERROR)
            self._refused = _Refusal(version, record.get("moved_at"))
            if self.metrics is not None:
                self.metrics.refused()
                self.metrics.loaded("refused")
            return
        except Exception as exc:  # storage hiccups and the like: retried on the next poll
            self._fail(f"could not load version {version}, will retry: {type(exc).__name__}: {exc}{keeps}")
            if self.metrics is not None:
                self.metrics.loaded("failed")
            return
        self.last_error = self.last_error_at = None
        self._refused = None
        if self.metrics is not None:
            self.metrics.swapped(current, loaded, self.alias_label)
            self.metrics.loaded("loaded", time.perf_counter() - started)
        for line in loaded.load_warnings:
            log.warning("model loader: %s version %s: %s", self.model_name, version, line)
        log.info("model loader: now serving %s version %s (sha256 %s)", self.model_name, version, loaded.sha256[:12])

    @staticmethod
    def _swap(slot: ModelSlot, loaded: LoadedModel) -> None:
        slot.current = loaded  # the swap: one reference assignment, atomic for readers

    def _check_expected_sha(self, manifest: dict[str, Any]) -> None:
        expected = self.expect_sha256
        if expected is not None and manifest.get("sha256") != expected:
            raise UnsafeModelError(
                f"{self.model_name} version {manifest.get('version')} has sha256 {str(manifest.get('sha256'))[:12]}…, "
                f"but {expected[:12]}… was expected: refusing to serve another model than the one deployed"
            )

    # -- what the endpoints report -----------------------------------------------
    @property
    def alias_label(self) -> str:
        """The alias followed; empty when pinned to a version."""
        return "" if self.pinned_version is not None else self.alias

    @property
    def refused_version(self) -> int | None:
        refused = self._refused
        return refused.version if refused else None

    def status(self) -> dict[str, Any]:
        """The body of ``/ready``: the same keys whether or not a model is loaded."""
        current = self.current
        body: dict[str, Any] = {
            "model_name": self.model_name,
            "alias": self.alias_label or None,
            "pinned": self.pinned_version is not None,
            "version": current.version if current else self.pinned_version,
            "sha256": current.sha256 if current else self.expect_sha256,
            "loaded_at": current.loaded_at if current else None,
            "last_error": self.last_error,
            "last_error_at": self.last_error_at,
            "refused_version": self.refused_version,
            "worker_pid": os.getpid(),  # with --workers N, which process answered
        }
        if current is not None:
            return {"status": "ready", **body}
        if self.last_error is not None:
            return {"status": "failed", "reason": self.last_error, **body}
        return {"status": "waiting", "reason": self.waiting_reason, **body}


class ModelPool:
    """The slots of one server: which names it serves, loading, alias following, the budget (module docstring).

    ``model_name`` given: a single-model server (that slot is made at once, loaded as soon
    as its alias exists, and never evicted; ``version`` / ``expect_sha256`` pin it).
    Otherwise ``patterns`` (glob patterns over model names; empty means every model) say
    which names a request may load.
    """

    def __init__(
        self,
        registry: ModelRegistry,
        *,
        model_name: str | None = None,
        patterns: Sequence[str] = (),
        alias: str = "champion",
        poll_interval: float = 1.0,
        skew_policy: SkewPolicy = "warn",
        version: int | None = None,
        expect_sha256: str | None = None,
        max_models: int = DEFAULT_MAX_MODELS,
        memory_budget_bytes: int | None = None,
        metrics: ServerMetrics | None = None,
    ) -> None:
        if model_name is None and (version is not None or expect_sha256 is not None):
            raise ConfigError("a pinned version needs exactly one model name")
        if max_models < 1:
            raise ConfigError(f"max_models must be at least 1, got {max_models}")
        self.registry = registry
        self.single = model_name
        self.patterns = tuple(patterns)
        for pattern in self.patterns:
            if not pattern or len(pattern) > 200:
                raise ConfigError(f"model pattern {pattern[:40]!r} must have 1-200 characters")
        self.alias = alias
        self.poll_interval = poll_interval
        self.skew_policy: SkewPolicy = skew_policy
        self.max_models = max_models
        self.memory_budget = memory_budget_bytes if memory_budget_bytes is not None else default_memory_budget()
        self.metrics = metrics
        self.used_bytes = 0
        self._evicted_models = self._evicted_bytes = 0  # since the last full garbage collection
        self._slots: dict[str, ModelSlot] = {}
        self._unknown: OrderedDict[str, float] = OrderedDict()
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._poller: threading.Thread | None = None
        self._executor: ThreadPoolExecutor | None = None
        if model_name is not None:
            check_name(model_name)
            self._slots[model_name] = self._new_slot(model_name, version=version, expect_sha256=expect_sha256)

    # -- lifecycle ---------------------------------------------------------------------
    def start(self) -> None:
        what = f"{self.single}@{self.alias}" if self.single else f"models {', '.join(self.patterns) or '*'}@{self.alias}"
        log.info("model pool: serving %s from %s, alias checked every %gs, at most %d models / %.0f MB",
                 what, self.registry.store.uri, self.poll_interval, self.max_models, self.memory_budget / 2**20)
        self._stop.clear()
        self._executor = ThreadPoolExecutor(LOADER_THREADS, thread_name_prefix="mlops-model-loader")
        self._poller = threading.Thread(target=self._run, name="mlops-model-poller", daemon=True)
        self._poller.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._poller is not None:
            self._poller.join(timeout)
            self._poller = None
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None

    def _run(self) -> None:
        while True:
            try:
                self.poll_due()
            except Exception:  # the poller must outlive any surprise
                log.exception("model pool: unexpected error while polling")
            if self._stop.wait(self.poll_interval):
                return

    def poll_due(self) -> None:
        """Start alias reads for the slots not read within ``poll_interval``, longest unread first; drop idle ones.

        At most :data:`ALIAS_READS_PER_SECOND` reads a second: with a thousand models loaded,
        reading every alias every second took a quarter of the server's time and held the GIL
        from requests. So a model's alias is read every ``max(poll_interval, models / 100)``
        seconds (10 s with 1,000 models); a deploy does not wait for that, because metadata and
        readiness requests read their model's alias at once.
        """
        now = time.monotonic()
        with self._lock:
            slots = list(self._slots.values())
        due = []
        for slot in slots:
            if slot.model_name != self.single and slot.current is None and now - slot.last_used > IDLE_SLOT_SECONDS:
                self._drop(slot)
            elif now - slot.last_polled >= self.poll_interval * 0.999:
                due.append(slot)
        due.sort(key=lambda slot: slot.last_polled)
        for slot in due[:max(1, int(ALIAS_READS_PER_SECOND * self.poll_interval))]:
            self.refresh(slot)

    # -- names ----------------------------------------------------------------------
    def serves(self, name: str) -> bool:
        """Whether a request may ask for ``name`` (before asking the registry whether it exists)."""
        if self.single is not None:
            return name == self.single
        return not self.patterns or any(fnmatch.fnmatchcase(name, pattern) for pattern in self.patterns)

    def not_served(self, name: str) -> str:
        """Why ``name`` is not a model of this server: the 404 message."""
        shown = name if len(name) <= 80 else name[:80] + "…"
        try:
            check_name(name)
        except ConfigError:
            return f"{shown!r} is not a valid model name"
        if self.single is not None:
            return f"this server serves only {self.single!r}, not {shown!r}: start one with `mlops-airflow serve` " \
                   f"(every model) or `mlops-airflow serve {shown}`"
        if not self.serves(name):
            return f"{shown!r} does not match the models this server serves ({', '.join(self.patterns)})"
        return f"no model named {shown!r} in {self.registry.store.uri}"

    def slot(self, name: str) -> ModelSlot:
        """The slot of ``name``, made if needed; :class:`ModelNotFound` with the reason if it is not served."""
        found = self._slots.get(name)
        if found is not None:
            return found
        known_unknown = self._unknown.get(name)
        if not self.serves(name) or (known_unknown is not None
                                     and time.monotonic() - known_unknown < max(self.poll_interval, 1.0)):
            raise ModelNotFound(self.not_served(name))
        try:
            check_name(name)
        except ConfigError:
            raise ModelNotFound(self.not_served(name)) from None
        with self._lock:
            found = self._slots.get(name)
            if found is None:
                found = self._slots[name] = self._new_slot(name)
            return found

    def _new_slot(self, name: str, *, version: int | None = None, expect_sha256: str | None = None) -> ModelSlot:
        return ModelSlot(self.registry, name, self.alias, skew_policy=self.skew_policy, version=version,
                         expect_sha256=expect_sha256, metrics=self.metrics, install=self._install)

    def loaded(self) -> list[ModelSlot]:
        """The slots with a model in memory, most recently used first."""
        with self._lock:
            slots = [slot for slot in self._slots.values() if slot.current is not None]
        return sorted(slots, key=lambda slot: slot.last_used, reverse=True)

    # -- loading ----------------------------------------------------------------------
    def refresh(self, slot: ModelSlot) -> Future[None]:
        """Read ``slot``'s alias and load what it names, on the loader threads; one at a time per slot."""
        with self._lock:
            pending = slot.pending
            if pending is not None and not pending.done():
                return pending
            if self._executor is None:  # not started (a test polling by hand): do it here
                done: Future[None] = Future()
                self._poll(slot)
                done.set_result(None)
                return done
            slot.pending = self._executor.submit(self._poll, slot)
            return slot.pending

    def _poll(self, slot: ModelSlot) -> None:
        slot.poll_once()
        if slot.current is None and slot.model_name != self.single and slot.last_error is None \
                and slot.pinned_version is None and not self.registry.list_versions(slot.model_name):
            self._forget(slot)  # not in the registry at all: a 404, and nothing to keep polling

    def _forget(self, slot: ModelSlot) -> None:
        slot.unknown = True
        with self._lock:
            self._unknown[slot.model_name] = time.monotonic()
            while len(self._unknown) > _UNKNOWN_NAMES:
                self._unknown.popitem(last=False)
            if self._slots.get(slot.model_name) is slot:
                del self._slots[slot.model_name]

    def _install(self, slot: ModelSlot, loaded: LoadedModel) -> None:
        """Put ``loaded`` in ``slot``, evicting least recently used models first if the budget needs it.

        Raises :class:`DeployError` (a refusal) for a model larger than the whole budget.
        Accounting and the swap happen under one lock, so an eviction never races a swap.
        """
        size = loaded_footprint(loaded)
        if size > self.memory_budget:
            raise DeployError(
                f"{loaded.model_name} version {loaded.version} needs about {size / 2**20:.1f} MB, more than "
                f"this server's memory budget of {self.memory_budget / 2**20:.1f} MB (--memory-budget-mb)"
            )
        with self._lock:
            others = [s for s in self._slots.values() if s is not slot and s.current is not None]
            used = self.used_bytes - slot.footprint + size
            count = len(others) + 1
            for victim in sorted(others, key=lambda s: s.last_used):
                if used <= self.memory_budget and count <= self.max_models:
                    break
                if victim.model_name == self.single:
                    continue
                used -= victim.footprint
                count -= 1
                self._evict(victim)
            if used > self.memory_budget or count > self.max_models:  # only unevictable ones are left
                raise DeployError(f"no room for {loaded.model_name} version {loaded.version} in this server's budget")
            slot.current, slot.footprint = loaded, size
            self.used_bytes = used
            if self._slots.get(slot.model_name) is not slot:  # dropped while it loaded: keep it reachable
                self._slots[slot.model_name] = slot
            if self.metrics is not None:
                self.metrics.memory(count, used)
        self._settle_garbage()

    def _settle_garbage(self) -> None:
        """Keep loaded models out of the garbage collector's full collections (called after each load).

        With a thousand models loaded a full collection walks ~370,000 objects (~180 ms, every
        request in flight waits): the p99 of a server that has just loaded models. Frozen
        objects are skipped by collections; a model freed by eviction is still freed by
        reference counting, and cyclic leftovers of evicted models (the request decoders' types)
        are reclaimed by one full collection once evictions add up to half the models (at least 8) or a
        tenth of the budget.
        """
        import gc

        if self._evicted_models >= max(8, self.max_models // 2) or self._evicted_bytes >= self.memory_budget // 10:
            gc.unfreeze()
            gc.collect()
            self._evicted_models = self._evicted_bytes = 0
        else:
            gc.collect(1)  # the load's own cyclic leftovers are young: collected cheaply, never frozen
        gc.freeze()

    def _evict(self, victim: ModelSlot) -> None:
        old = victim.current
        self._evicted_models += 1
        self._evicted_bytes += victim.footprint
        victim.current, victim.footprint = None, 0
        self._slots.pop(victim.model_name, None)
        if old is not None:
            log.info("model pool: evicted %s version %s (least recently used)", old.model_name, old.version)
            if self.metrics is not None:
                self.metrics.unloaded(old, victim.alias_label)

    def _drop(self, slot: ModelSlot) -> None:
        with self._lock:
            if slot.current is None and self._slots.get(slot.model_name) is slot:
                del self._slots[slot.model_name]

    def status(self) -> dict[str, Any]:
        """What ``GET /models`` shows: the budget, what is loaded (most recent first) and what is not."""
        loaded = self.loaded()
        with self._lock:
            others = [slot for slot in self._slots.values() if slot.current is None]
        return {
            "alias": self.alias,
            "patterns": list(self.patterns) if self.single is None else [self.single],
            "max_models": self.max_models,
            "memory_budget_bytes": self.memory_budget,
            "memory_used_bytes": self.used_bytes,
            "loaded": [{"model_name": s.model_name, "version": s.current.version, "footprint_bytes": s.footprint}
                       for s in loaded if s.current is not None],
            "not_loaded": [{"model_name": s.model_name, **{k: v for k, v in s.status().items()
                                                           if k in ("status", "reason", "refused_version")}}
                           for s in others],
        }
