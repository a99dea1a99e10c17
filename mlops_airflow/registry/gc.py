"""Retention: remove old versions and unreferenced candidates and datasets, never what an alias names.

Two steps, so that a dry run and a real run decide the same way::

    plan = plan_gc(registry, "trip_tips", keep=5)     # reads only
    report = apply_gc(registry, plan)                  # deletes, re-checking aliases first

What is kept, whatever the policy says:

- the newest ``keep`` versions (at least one: the highest number must survive, or the
  next registration would reuse it);
- every version an alias points at, and every version an alias record names as
  ``previous`` (what a rollback returns to);
- with ``older_than``, every version registered and every candidate or dataset written
  more recently than that;
- unregistered candidates and dataset snapshots younger than ``grace`` (default 7 days,
  or ``older_than`` if given): a running pipeline may still be evaluating or waiting
  for approval on them;
- every artifact, verdict, report and dataset a kept version's manifest refers to.

``apply_gc`` reads the aliases again right before each version it deletes, and once
more after: if an alias moved onto that version meanwhile, the manifest is put back
and its artifacts are left alone. Runs records and watermarks are never touched.
"""

from __future__ import annotations

import contextlib
import json
import logging
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from mlops_airflow.exceptions import ArtifactNotFound, ConfigError
from mlops_airflow.registry.registry import ModelRegistry, check_name, to_json, utcnow
from mlops_airflow.storage.base import ObjectInfo

log = logging.getLogger(__name__)

DEFAULT_KEEP = 5
DEFAULT_GRACE = timedelta(days=7)


@dataclass
class GcPlan:
    """What a collection would delete, and why the rest stays."""

    model: str
    keep: int
    older_than_days: float | None
    versions: list[int] = field(default_factory=list)
    protected: dict[int, str] = field(default_factory=dict)
    candidates: list[str] = field(default_factory=list)
    datasets: list[str] = field(default_factory=list)
    #: Keys per doomed version / candidate / dataset prefix, for the report and for apply.
    keys: dict[str, list[str]] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        shown = asdict(self)
        shown.pop("keys")
        shown["protected"] = {str(v): why for v, why in sorted(self.protected.items())}
        shown["objects"] = sum(len(keys) for keys in self.keys.values())
        return shown


def protected_versions(registry: ModelRegistry, model: str) -> dict[int, str]:
    """Versions an alias names (as ``version`` or ``previous``), with the reason."""
    found: dict[int, str] = {}
    for key in registry.store.list(f"{check_name(model)}/aliases"):
        if not key.endswith(".json"):
            continue
        alias = key.rsplit("/", 1)[1].removesuffix(".json")
        record = registry.get_alias(model, alias)
        if record is None:
            continue
        found.setdefault(int(record["version"]), f"alias {alias}")
        if record.get("previous") is not None:
            found.setdefault(int(record["previous"]), f"previous version of alias {alias}")
    return found


def _folder_of(registry: ModelRegistry, uri: str | None) -> str | None:
    """The store key of the folder holding ``uri`` (None if it is not in this store)."""
    root = registry.store.uri.rstrip("/") + "/"
    if not uri or not uri.startswith(root):
        return None
    return uri[len(root):].rsplit("/", 1)[0]


def _groups(infos: list[ObjectInfo], base: str) -> dict[str, list[ObjectInfo]]:
    """Objects below ``base`` grouped by their first folder: ``<base>/<name>/...``."""
    groups: dict[str, list[ObjectInfo]] = {}
    for info in infos:
        name = info.key[len(base) + 1 :].split("/", 1)[0]
        groups.setdefault(f"{base}/{name}", []).append(info)
    return groups


def references(registry: ModelRegistry, model: str, manifests: list[dict[str, Any]]) -> set[str]:
    """Store folders that ``manifests`` refer to: their candidate, dataset snapshot, verdict and report."""
    found = set()
    for manifest in manifests:
        found.add(registry.artifact_key(model, manifest["sha256"]).rsplit("/", 1)[0])
        verdict = manifest.get("verdict") or {}
        for uri in (manifest.get("data", {}).get("dataset_uri"), verdict.get("verdict_uri"), verdict.get("report_uri")):
            folder = _folder_of(registry, uri)
            if folder:
                found.add(folder)
    return found


def _is_referenced(folder: str, referenced: set[str]) -> bool:
    return any(ref == folder or ref.startswith(folder + "/") for ref in referenced)


def plan_gc(
    registry: ModelRegistry,
    model: str,
    *,
    keep: int = DEFAULT_KEEP,
    older_than: timedelta | None = None,
    grace: timedelta | None = None,
    now: datetime | None = None,
) -> GcPlan:
    """Decide what to delete for ``model``; reads only."""
    check_name(model)
    if type(registry) is not ModelRegistry:
        # Other backends (MLflow) keep versions outside the store: deleting files here would not remove them.
        raise ConfigError(f"gc works on the built-in registry only, not {type(registry).__name__}: "
                          "use that backend's own retention")
    if not isinstance(keep, int) or keep < 1:
        raise ConfigError(f"keep={keep!r} is not valid: keep at least 1 version (the newest number must survive)")
    if older_than is not None and older_than < timedelta(0):
        raise ConfigError(f"older_than={older_than} is not valid: it must not be negative")
    now = now or datetime.now(UTC)
    grace = grace if grace is not None else (older_than if older_than is not None else DEFAULT_GRACE)
    plan = GcPlan(model, keep, None if older_than is None else older_than.total_seconds() / 86400)

    versions = registry.list_versions(model)
    protected = protected_versions(registry, model)
    for number in versions[-keep:]:
        protected.setdefault(number, f"one of the newest {keep}")
    kept_manifests: list[dict[str, Any]] = []
    doomed: list[dict[str, Any]] = []
    for number in versions:
        manifest = registry.get_version(model, number)
        young = older_than is not None and datetime.fromisoformat(manifest["registered_at"]) > now - older_than
        if young:
            protected.setdefault(number, f"registered less than {plan.older_than_days:g} days ago")
        (kept_manifests if number in protected else doomed).append(manifest)
    plan.protected = {n: why for n, why in protected.items() if n in versions}

    for manifest in doomed:
        number = manifest["version"]
        plan.versions.append(number)
        plan.keys[f"version:{number}"] = [f"{model}/versions/{number}.json"]

    referenced = references(registry, model, kept_manifests)
    doomed_folders = {registry.artifact_key(model, m["sha256"]).rsplit("/", 1)[0] for m in doomed}
    cutoff = now - grace
    for kind, base in (("candidates", f"{model}/artifacts"), ("datasets", f"{model}/datasets")):
        for folder, infos in sorted(_groups(registry.store.list_info(base), base).items()):
            if _is_referenced(folder, referenced):
                continue
            # Young unregistered candidates and snapshots may still be in use by a running pipeline;
            # a doomed version's own candidate goes with it, whatever its age.
            if folder not in doomed_folders and max(info.modified for info in infos) > cutoff:
                continue
            getattr(plan, kind).append(folder)
            plan.keys[f"{kind[:-1]}:{folder}"] = [info.key for info in infos]
    return plan


def apply_gc(registry: ModelRegistry, plan: GcPlan, *, by: str = "gc") -> dict[str, Any]:
    """Delete what ``plan`` names, skipping any version an alias came to name since; returns a report.

    The report is also stored as ``<model>/gc/<time>.json`` when anything was deleted.
    """
    model = plan.model
    deleted: dict[str, list[Any]] = {"versions": [], "candidates": [], "datasets": []}
    skipped: dict[str, str] = {}
    # Deleting versions changes the model's count in the index: keep its summary right.
    with registry.index.changing(model) if plan.versions else contextlib.nullcontext():
        for number in plan.versions:
            now_protected = protected_versions(registry, model)
            if number in now_protected:
                skipped[str(number)] = f"{now_protected[number]} moved onto it during gc"
                continue
            key = f"{model}/versions/{number}.json"
            try:
                data = registry.store.read_bytes(key)
            except ArtifactNotFound:
                continue  # another gc got there first
            registry.store.delete(key)
            now_protected = protected_versions(registry, model)
            if number in now_protected:  # the alias moved between our check and the delete: undo
                registry.store.create(key, data)
                skipped[str(number)] = f"{now_protected[number]} moved onto it during gc"
                log.warning("Kept %s v%s: %s", model, number, skipped[str(number)])
                continue
            deleted["versions"].append(number)
            _drop_claims(registry, model, number)
            log.info("Deleted %s v%s", model, number)

    # Whatever a surviving version refers to stays, including versions skipped above or registered meanwhile.
    surviving = references(registry, model, [registry.get_version(model, n) for n in registry.list_versions(model)])
    for kind in ("candidates", "datasets"):
        for folder in getattr(plan, kind):
            if _is_referenced(folder, surviving):
                continue
            for key in plan.keys[f"{kind[:-1]}:{folder}"]:
                registry.store.delete(key)
            deleted[kind].append(folder)
    at = utcnow()
    report = {"model": model, "at": at, "by": by, "deleted": deleted, "skipped": skipped,
              "plan": plan.summary()}
    if any(deleted.values()):
        registry.store.write_bytes(f"{model}/gc/{at.replace(':', '')}.json", to_json(report))
    return report


def _drop_claims(registry: ModelRegistry, model: str, version: int) -> None:
    """Idempotency claims naming a deleted version would send a retry to a missing manifest."""
    for key in registry.store.list(f"{model}/claims"):
        try:
            claim = json.loads(registry.store.read_bytes(key))
        except (ArtifactNotFound, ValueError):
            continue
        if claim.get("version") == version:
            registry.store.delete(key)


def collect_garbage(
    registry: ModelRegistry,
    model: str,
    *,
    keep: int = DEFAULT_KEEP,
    older_than: timedelta | None = None,
    grace: timedelta | None = None,
    dry_run: bool = False,
    by: str = "gc",
) -> dict[str, Any]:
    """Plan and (unless ``dry_run``) apply a collection; returns the plan and what was deleted."""
    plan = plan_gc(registry, model, keep=keep, older_than=older_than, grace=grace)
    if dry_run:
        return {"model": model, "dry_run": True, "plan": plan.summary(), "deleted": {}, "skipped": {}}
    return {**apply_gc(registry, plan, by=by), "dry_run": False}
