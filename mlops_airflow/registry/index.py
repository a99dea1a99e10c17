"""The model index: one small summary per model, so that listing thousands of models reads little.

Layout below the store's root (a model name never starts with ``_``, so nothing clashes)::

    _index/models/<model>.json                  the summary: versions, latest, aliases, task, registered_at
    _index/pending/<model>.<ms>-<id>            a change to <model> in progress, or one that crashed
    _index/empty/<folder>                       a folder the last reindex found without a version

The versions/ and aliases/ files stay the truth; a summary is derived from them. Every change
the registry makes to a model (register, set_alias, remove_alias, gc) runs inside
:meth:`ModelIndex.changing`, which writes a *pending* marker before the change, re-derives
the summary from the truth after it, and deletes the marker only once that summary is stored.
A crash (or a store error) in between leaves the marker, so readers know the summary may be
stale and read that model's truth instead; the model's next change, or
:meth:`ModelIndex.rebuild` (``mlops-airflow models reindex``), repairs it.

What a reader gets (:meth:`ModelIndex.catalog`, then :meth:`ModelIndex.rows` for one page):

- the names: delimited listings of the root (model folders), the summaries, the pending
  markers and the empty folders, each a request per 1,000 names on S3, nothing read inside a
  model's folder. A folder without a summary (a registry written before the index, or a model
  not registered yet) is checked against its versions/ listing, so no model is hidden, unless
  the last reindex recorded it as empty and no change to it has started since (a change
  writes its marker first, and its summary before removing it); a summary whose folder is
  gone is ignored.
- the rows of the models asked for only, read in parallel on S3 (``read_concurrency``): the summary, or the truth when the
  model has a pending marker or no readable summary.

Concurrent writers keep the summary right without a lock: each reads the summary's change
token *before* reading the truth and replaces it by compare-and-swap, retrying on a lost race,
so the last summary stored was derived from a truth read after every change that finished
before it. ``revision`` grows with every rewrite so that no two summaries are byte-equal (the
local store's compare-and-swap compares content).

Markers are empty objects: their name says everything. Limits, plainly: a change made by
something other than this registry code (an older mlops-airflow, a hand edit) leaves no
marker, so its summary stays stale, or, for a first version in a folder recorded as empty,
the model stays unlisted; run ``models reindex`` after one. A writer
stalled for more than :data:`ABANDONED_AFTER` between its marker and its summary may find its
marker cleared as abandoned; it still writes the summary after its change, so only a crash
after such a stall leaves a stale summary undetected.
"""

from __future__ import annotations

import contextlib
import fnmatch
import json
import logging
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from mlops_airflow.exceptions import ArtifactNotFound, ModelNotFound, RegistryError
from mlops_airflow.records import FORMAT_VERSION, check_readable, validate_record

if TYPE_CHECKING:
    from mlops_airflow.registry.registry import ModelRegistry

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")

SUMMARIES = "_index/models"
PENDING = "_index/pending"
EMPTY = "_index/empty"
#: A pending marker older than this belongs to a change that crashed: whoever re-derives the
#: model's summary after it may delete it. Changes take seconds; gc of a huge model, minutes.
ABANDONED_AFTER = 3600.0
_CAS_ATTEMPTS = 8
_GLOB_CHARS = "*?["

Refreshed = Literal["written", "unchanged", "removed", "absent", "contended"]


def name_filter(match: str | None) -> tuple[str, Callable[[str], bool]]:
    """``(literal prefix, test)`` for a name filter: a prefix, or a shell glob when it has ``*``, ``?`` or ``[``.

    Names are compared case-sensitively, as the registry stores them.
    """
    if not match:
        return "", lambda name: True
    cut = min((i for i, c in enumerate(match) if c in _GLOB_CHARS), default=None)
    if cut is None:
        return match, lambda name: name.startswith(match)
    return match[:cut], lambda name: fnmatch.fnmatchcase(name, match)


def parallel_map(fn: Callable[[T], R], items: Iterable[T], threads: int) -> list[R]:
    """``[fn(item) for item in items]``, in order, ``threads`` at a time.

    The first call runs alone, so that a client built lazily on first use (boto3's, which is
    not safe to build from several threads at once) is built once.
    """
    items = list(items)
    if len(items) <= 1 or threads <= 1:
        return [fn(item) for item in items]
    first = fn(items[0])
    with ThreadPoolExecutor(min(threads, len(items) - 1)) as pool:
        return [first, *pool.map(fn, items[1:])]


def row_of(summary: dict[str, Any]) -> dict[str, Any]:
    """The listed form of a model (``models list --json``, ``/mlops/api/models``)."""
    return {"name": summary["model_name"], "versions": summary["versions"], "latest": summary["latest"],
            "aliases": dict(summary["aliases"]), "task_type": summary.get("task_type"),
            "registered_at": summary.get("registered_at")}


@dataclass(frozen=True)
class Catalog:
    """The models a registry holds, as of one listing: sorted names, and which to read from their truth."""

    names: list[str]
    #: Models with a change in progress (or crashed): their summary may be stale.
    pending: frozenset[str] = frozenset()
    #: Models found without a summary (written before the index, or by something else): read slowly.
    unindexed: frozenset[str] = frozenset()
    #: The truth already read while listing (folders checked for versions), reused by :meth:`ModelIndex.rows`.
    versions: dict[str, list[int]] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.names)


class ModelIndex:
    """The summaries and pending markers of a registry's models (see the module docstring)."""

    def __init__(self, registry: ModelRegistry) -> None:
        self.registry = registry

    @property
    def store(self) -> Any:
        return self.registry.store

    @staticmethod
    def summary_key(model: str) -> str:
        return f"{SUMMARIES}/{model}.json"

    # -- writers -----------------------------------------------------------------------
    @contextlib.contextmanager
    def changing(self, model: str) -> Iterator[None]:
        """Wrap a change to ``model``'s versions or aliases: marker before, summary and marker removal after.

        The summary is refreshed whether the change succeeded or raised (a failed change may
        still have landed, e.g. a write whose answer was lost). Refreshing never raises: the
        change itself is done, and a marker left behind tells readers to read the truth.
        """
        from mlops_airflow.registry.registry import check_name

        check_name(model)
        marker = f"{PENDING}/{model}.{int(time.time() * 1000)}-{uuid.uuid4().hex[:12]}"
        self.store.write_bytes(marker, b"")
        try:
            yield
        finally:
            try:
                if self.refresh(model) != "contended":
                    self.store.delete(marker)
                    self._clear_abandoned(model)
            except Exception:  # noqa: BLE001 - the change is done; the marker tells readers to read the truth
                log.warning("Could not update the index summary of %s; readers will read its versions "
                            "until it is repaired (`mlops-airflow models reindex`)", model, exc_info=True)

    def summarize(self, model: str, versions: list[int] | None = None) -> dict[str, Any] | None:
        """The summary of ``model`` derived from its truth (without ``revision``); None if it has no version.

        ``versions``: its version numbers, if just listed.
        """
        registry = self.registry
        try:
            versions = registry.list_versions(model) if versions is None else versions
        except ModelNotFound:
            return None
        if not versions:
            return None
        latest = registry.get_version(model, versions[-1])
        return {
            "format_version": FORMAT_VERSION,
            "model_name": model,
            "versions": len(versions),
            "latest": versions[-1],
            "aliases": registry.aliases(model),
            "task_type": latest.get("task_type"),
            "registered_at": latest.get("registered_at"),
        }

    def refresh(self, model: str) -> Refreshed:
        """Make the stored summary of ``model`` what its truth says now, by compare-and-swap.

        ``contended`` when other writers kept winning the swap (each of them refreshes after
        its own change, so the summary ends right; the caller keeps its marker to be safe).
        """
        key = self.summary_key(model)
        for _ in range(_CAS_ATTEMPTS):
            try:
                data, token = self.store.read_versioned(key)  # the token first, the truth after: see module doc
                current: dict[str, Any] | None = json.loads(data)
            except ArtifactNotFound:
                current, token = None, ""
            except ValueError:
                current, token = {}, token  # unreadable: replaced below
            truth = self.summarize(model)
            if truth is None:
                if current is None:
                    return "absent"
                self.store.delete(key)  # the model lost its versions (by hand): no summary may claim it
                return "removed"
            if current and {k: v for k, v in current.items() if k != "revision"} == truth:
                return "unchanged"
            revision = int((current or {}).get("revision") or 0) + 1
            record = to_bytes(validate_record("summary", {**truth, "revision": revision}))
            if current is None and self.store.create(key, record):
                self.store.delete(f"{EMPTY}/{model}")  # tidy: a summary outranks the record anyway
                return "written"
            if current is not None and self.store.replace_if(key, record, token):
                return "written"
        return "contended"

    def _clear_abandoned(self, model: str) -> None:
        """Delete markers of ``model`` older than :data:`ABANDONED_AFTER`: the summary was just re-derived."""
        files, _ = self.store.list_dir(PENDING, starts_with=f"{model}.")
        cutoff = (time.time() - ABANDONED_AFTER) * 1000
        for name in files:
            owner, started = _parse_marker(name)
            if owner == model and started is not None and started < cutoff:
                self.store.delete(f"{PENDING}/{name}")

    def rebuild(self, match: str | None = None) -> dict[str, Any]:
        """Re-derive every summary from the truth (``mlops-airflow models reindex``); returns counts.

        Also removes summaries of models whose folder is gone and markers of crashed changes.
        Needed once for a registry written before the index, and after changes made by other
        means; never for correctness of what readers show, only for their speed.
        """
        from mlops_airflow.registry.registry import valid_name

        head, test = name_filter(match)
        started = time.time()
        _, folders = self.store.list_dir("", starts_with=head)
        models = [name for name in folders if valid_name(name) and test(name)]
        empties = set(self.store.list_dir(EMPTY, starts_with=head)[0])
        outcomes = parallel_map(self.refresh, models, self.store.read_concurrency)
        counts: dict[str, Any] = {outcome: outcomes.count(outcome) for outcome in sorted(set(outcomes))}
        for model, outcome in zip(models, outcomes, strict=True):
            if outcome in ("absent", "removed") and model not in empties:
                self.store.write_bytes(f"{EMPTY}/{model}", b"")  # no version: readers need not look again
            elif outcome not in ("absent", "removed") and model in empties:
                self.store.delete(f"{EMPTY}/{model}")
        stale = [name for name in empties if test(name) and name not in set(folders)]
        for name in stale:
            self.store.delete(f"{EMPTY}/{name}")
        summaries, _ = self.store.list_dir(SUMMARIES, starts_with=head)
        orphans = [n.removesuffix(".json") for n in summaries if n.endswith(".json")]
        orphans = [name for name in orphans if test(name) and name not in set(folders)]
        for name in orphans:
            self.store.delete(self.summary_key(name))
        markers, _ = self.store.list_dir(PENDING, starts_with=head)
        cutoff = (started - ABANDONED_AFTER) * 1000
        cleared = 0
        for name in markers:
            owner, at = _parse_marker(name)
            if owner is not None and test(owner) and (at is None or at < cutoff):
                self.store.delete(f"{PENDING}/{name}")
                cleared += 1
        models_found = counts.get("written", 0) + counts.get("unchanged", 0) + counts.get("contended", 0)
        return {"folders": len(models), "models": models_found, **counts, "orphans_removed": len(orphans),
                "abandoned_markers_removed": cleared}

    # -- readers -----------------------------------------------------------------------
    def catalog(self, match: str | None = None) -> Catalog:
        """The models whose name matches ``match`` (prefix or glob; None: all), from four listings.

        Reads nothing inside a model's folder except for folders without a summary (see the
        module docstring); writes nothing.
        """
        from mlops_airflow.registry.registry import valid_name

        head, test = name_filter(match)
        # The two long listings (1,000 names a request) at once; then, in this order, the short ones.
        # Order matters: a change deletes the empty record before its marker, and writes its summary
        # before both, so summaries -> markers -> empty records cannot miss a model that a change
        # finished registering before the markers were listed.
        (_, folders), (files, _) = parallel_map(lambda folder: self.store.list_dir(folder, starts_with=head),
                                                ["", SUMMARIES], self.store.read_concurrency)
        present = {name for name in folders if valid_name(name) and test(name)}
        summarized = {n.removesuffix(".json") for n in files if n.endswith(".json")} & present
        markers, _ = self.store.list_dir(PENDING, starts_with=head)
        pending = {owner for owner, _ in map(_parse_marker, markers) if owner is not None and owner in present}
        empty = set(self.store.list_dir(EMPTY, starts_with=head)[0]) - pending
        unknown = sorted(present - summarized - empty)
        found = dict(zip(unknown, parallel_map(self._versions_or_none, unknown, self.store.read_concurrency), strict=True))
        versions = {name: numbers for name, numbers in found.items() if numbers}
        names = sorted(summarized | set(versions))
        return Catalog(names, frozenset(pending & set(names)), frozenset(versions), versions)

    def _versions_or_none(self, model: str) -> list[int]:
        try:
            return self.registry.list_versions(model)
        except ModelNotFound:
            return []

    def rows(self, catalog: Catalog, names: Iterable[str]) -> list[dict[str, Any]]:
        """The listed rows of ``names`` (from ``catalog``), read in parallel; writes nothing.

        A model with a pending marker, no summary or an unreadable one is read from its truth;
        one that lost its last version meanwhile is left out.
        """
        trusted_truth = catalog.pending | catalog.unindexed

        def row(name: str) -> dict[str, Any] | None:
            summary = None if name in trusted_truth else self._read_summary(name)
            if summary is None:
                summary = self.summarize(name, catalog.versions.get(name))
            return row_of(summary) if summary is not None else None

        return [found for found in parallel_map(row, names, self.store.read_concurrency) if found is not None]

    def _read_summary(self, model: str) -> dict[str, Any] | None:
        """The stored summary, or None when missing, unreadable or from a newer format (then: the truth)."""
        key = self.summary_key(model)
        try:
            record = json.loads(self.store.read_bytes(key))
        except (ArtifactNotFound, ValueError):
            return None
        # A cheap shape check, not the JSON schema: this runs once per listed model.
        if not (isinstance(record, dict) and record.get("model_name") == model
                and isinstance(record.get("versions"), int) and isinstance(record.get("latest"), int)
                and isinstance(record.get("aliases"), dict)):
            return None
        try:
            return check_readable("summary", record, self.store.url(key))
        except RegistryError:  # a newer format: its fields may mean something else
            return None


def to_bytes(record: dict[str, Any]) -> bytes:
    return json.dumps(record, indent=2, sort_keys=True).encode()


def _parse_marker(name: str) -> tuple[str | None, float | None]:
    """``(model, started in ms)`` of a pending marker's name (``<model>.<ms>-<id>``); ``(None, None)`` if not one."""
    stem, dot, tail = name.rpartition(".")
    started, dash, _ = tail.partition("-")
    if not dot or not dash:
        return None, None
    return stem, float(started) if started.isdigit() else None
