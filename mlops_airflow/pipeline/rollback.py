"""Put a previous version back behind the alias: the manual undo of a promotion.

The target version is staged with the server's loader first (a version that would not load
is never put back), the alias moves by compare-and-swap from the current champion with who
and why recorded, and, with a serving target, the move is undone if the server does not
report the version.
"""

from __future__ import annotations

from typing import Any

from mlops_airflow.exceptions import DeployError, ModelNotFound, RegistryError
from mlops_airflow.pipeline.deploy import ServingTarget
from mlops_airflow.registry import ModelRegistry


def run_rollback(
    registry: ModelRegistry,
    *,
    model_name: str,
    by: str,
    reason: str,
    to_version: int | None = None,
    alias: str = "champion",
    target: ServingTarget | None = None,
) -> dict[str, Any]:
    """Move ``alias`` back to ``to_version`` (default: the version it pointed at before)."""
    from mlops_airflow.serving.loading import stage_model

    current = registry.get_alias(model_name, alias)
    if current is None:
        raise ModelNotFound(f"{model_name}@{alias} does not exist: nothing to roll back")
    to = to_version if to_version is not None else current.get("previous")
    if to is None:
        raise RegistryError(f"{model_name}@{alias} (v{current['version']}) has no previous version: give one to roll back to")
    if int(to) == current["version"]:
        return {"rolled_back": False, "version": current["version"], "reason": f"{alias} already points at v{to}"}
    manifest = registry.get_version(model_name, int(to))
    stage_model(registry, manifest)
    registry.set_alias(model_name, alias, int(to), expected=current["version"], by=by, reason=f"rollback: {reason}")
    if target is not None:
        try:
            target.wait_for_version(model_name, int(to), manifest["sha256"])
        except Exception as exc:
            registry.set_alias(model_name, alias, current["version"], expected=int(to), by=by,
                               reason=f"undo rollback: v{to} did not come up: {exc}")
            raise DeployError(f"v{to} did not come up on the serving target; {alias} stays at v{current['version']}: {exc}") from exc
    return {"rolled_back": True, "version": int(to), "previous_version": current["version"], "by": by, "reason": reason}
