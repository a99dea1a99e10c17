"""What people are shown about registered models: one summary for the CLI and the Airflow UI plugin.

Both ``mlops-airflow models list/show`` and the plugin's Models pages read these, so the
terminal and the browser never disagree about a model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mlops_airflow.registry.backend import RegistryBackend


@dataclass(frozen=True)
class ModelListing:
    """One page of the model list: its rows, and what a pager needs to show the rest."""

    #: One row per model: ``name``, ``versions`` (count), ``latest``, ``aliases`` (alias -> version),
    #: ``task_type``, ``registered_at`` (of the latest version); sorted by name.
    rows: list[dict[str, Any]]
    #: How many models match the filter, on every page together.
    total: int
    offset: int
    limit: int | None
    #: How many matching models have no index summary and are read from their version files
    #: (a registry written before the index: ``mlops-airflow models reindex`` makes them fast).
    unindexed: int = 0

    @property
    def more(self) -> bool:
        """Whether models follow this page."""
        return self.offset + len(self.rows) < self.total if self.limit is not None else False


def model_listing(registry: RegistryBackend, *, match: str | None = None, offset: int = 0,
                  limit: int | None = None) -> ModelListing:
    """The models whose name matches ``match`` (a prefix, or a glob with ``*?[``), ``limit`` of them from ``offset``.

    Reads four listings and then only the rows of the page (see
    :mod:`mlops_airflow.registry.index`): a page costs the same with 30 models or 3,000.
    """
    if offset < 0 or (limit is not None and limit < 1):
        raise ValueError(f"offset={offset}, limit={limit}: offset must be >= 0 and limit >= 1")
    catalog = registry.index.catalog(match)
    names = catalog.names[offset : None if limit is None else offset + limit]
    return ModelListing(registry.index.rows(catalog, names), len(catalog), offset, limit,
                        unindexed=len(catalog.unindexed))


def version_view(registry: RegistryBackend, name: str, manifest: dict[str, Any],
                 aliases: dict[str, int] | None = None) -> dict[str, Any]:
    """The shown form of one version: ``name``, ``version``, ``aliases``, ``metrics``, ``lineage``, verdict and more.

    ``aliases`` (alias -> version, as the registry's ``aliases`` returns) is read when not given.
    """
    aliases = registry.aliases(name) if aliases is None else aliases
    data = manifest.get("data", {})
    return {
        "name": name,
        "version": manifest["version"],
        "aliases": sorted(a for a, v in aliases.items() if v == manifest["version"]),
        "metrics": manifest.get("metrics", {}),
        "lineage": {
            **manifest.get("lineage", {}),
            "data_uri": data.get("uri"),
            "data_fingerprint": data.get("fingerprint"),
            "rows": data.get("rows"),
            "validation_report_uri": data.get("validation_report_uri"),
        },
        "verdict": manifest.get("verdict"),
        "task_type": manifest.get("task_type"),
        "estimator": manifest.get("estimator"),
        "estimator_params": manifest.get("estimator_params"),
        "sha256": manifest.get("sha256"),
        "artifact_uri": manifest.get("artifact_uri"),
        "packages": manifest.get("packages"),
        "registered_at": manifest.get("registered_at"),
        "features": [c["name"] for c in manifest.get("feature_schema", {}).get("columns", [])],
    }
