"""Retention as a pipeline step: the last task of a CT DAG."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from mlops_airflow.operators.base import MlopsBaseOperator

if TYPE_CHECKING:
    from airflow.sdk import Context


class CleanupOperator(MlopsBaseOperator):
    """Delete a model's old versions and unreferenced candidates and datasets by policy.

    Keeps the newest ``keep`` versions, every version an alias names (or names as
    ``previous``), and everything those versions refer to; young unregistered
    candidates, dataset snapshots and crash leftovers stay for ``grace_days``, even when a
    deleted version shares their folder (see :mod:`mlops_airflow.registry.gc`). Safe to retry:
    a second run finds nothing more to delete.

    :param model_name: the model (templated).
    :param keep: how many of the newest versions to keep (at least 1).
    :param older_than_days: delete only what is older than this many days.
    :param grace_days: never delete a candidate, dataset or crash leftover written within this
        many days (default: ``older_than_days``, else 7).
    :param plan_only: a dry run: log what would go, delete nothing (``dry_run`` is taken by BaseOperator).
    """

    template_fields: Sequence[str] = ("registry_uri", "model_name")
    default_timeout = timedelta(minutes=15)

    def __init__(
        self,
        *,
        model_name: str,
        keep: int = 5,
        older_than_days: float | None = None,
        grace_days: float | None = None,
        plan_only: bool = False,
        **kwargs: Any,
    ) -> None:
        if not isinstance(keep, int) or keep < 1:
            raise ValueError(f"keep must be an integer of at least 1, got {keep!r}")
        super().__init__(**kwargs)
        self.model_name = model_name
        self.keep = keep
        self.older_than_days = older_than_days
        self.grace_days = grace_days
        self.plan_only = plan_only

    def run(self, context: Context) -> dict[str, Any]:
        from mlops_airflow.registry.gc import collect_garbage

        lineage = self.lineage(context)
        older = None if self.older_than_days is None else timedelta(days=self.older_than_days)
        grace = None if self.grace_days is None else timedelta(days=self.grace_days)
        report = collect_garbage(self.registry, self.model_name, keep=self.keep, older_than=older, grace=grace,
                                 dry_run=self.plan_only,
                                 by=f"{lineage['dag_id']}/{lineage['run_id']}/{lineage['task_id']}")
        plan = report["plan"]
        done = plan if self.plan_only else report["deleted"]
        self.log.info("%s %s: versions %s, %d candidate(s), %d dataset(s), %d crash leftover(s); kept %s, %s",
                      "Would delete" if self.plan_only else "Deleted", self.model_name, done["versions"],
                      len(done["candidates"]), len(done["datasets"]), len(done["leftovers"]), plan["protected"],
                      plan["kept"])
        if self.plan_only:
            self.log.info("Would delete: %s", plan["reasons"])
        return {"dry_run": self.plan_only, "versions": done["versions"], "candidates": len(done["candidates"]),
                "datasets": len(done["datasets"]), "leftovers": len(done["leftovers"]), "skipped": report["skipped"]}
