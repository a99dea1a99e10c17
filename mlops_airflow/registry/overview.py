"""What people are shown about registered models: one summary for the CLI and the Airflow UI plugin.

Both ``mlops-airflow models list/show`` and the plugin's Models pages read these, so the
terminal and the browser never disagree about a model.
"""

from __future__ import annotations

from typing import Any

from mlops_airflow.registry.backend import RegistryBackend


def model_rows(registry: RegistryBackend) -> list[dict[str, Any]]:
    """One row per registered model: version count, latest version, aliases, task type, registration time."""
    rows = []
    for name in registry.list_models():
        versions = registry.list_versions(name)
        latest = registry.get_version(name, versions[-1])
        rows.append({"name": name, "versions": len(versions), "latest": versions[-1], "aliases": registry.aliases(name),
                     "task_type": latest.get("task_type"), "registered_at": latest.get("registered_at")})
    return rows


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
