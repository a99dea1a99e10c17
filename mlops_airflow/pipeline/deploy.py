"""Stage 5: promote only what serves.

1. stage the model with the same loader the server uses (checksum, trusted types, schema,
   smoke rows);
2. move the alias by compare-and-swap *from the champion the verdict was compared with*;
   if the champion moved meanwhile, re-evaluate against the new one instead of promoting;
3. wait until the serving target reports the new version;
4. on any failure after the move, put the alias back by compare-and-swap and fail.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

from mlops_airflow.data.snapshot import read_snapshot
from mlops_airflow.evaluation.evaluate import evaluate_candidate, split_for
from mlops_airflow.evaluation.gate import check_binding
from mlops_airflow.exceptions import AliasConflict, DeployError, RegistryError
from mlops_airflow.pipeline.register import read_verdict, verdict_gate
from mlops_airflow.registry import ModelRegistry
from mlops_airflow.training.train import split_xy

log = logging.getLogger(__name__)

SMOKE_ROWS = 5


class ServingTarget(Protocol):
    def wait_for_version(self, model_name: str, version: int, sha256: str) -> dict[str, Any]: ...


def run_deployment(
    registry: ModelRegistry,
    *,
    model_name: str,
    version: int,
    verdict_uri: str,
    target: ServingTarget | None,
    by: str,
    alias: str = "champion",
) -> dict[str, Any]:
    """Promote ``version`` to ``alias`` and see it served; returns what happened."""
    promoted = promote(registry, model_name=model_name, version=version, verdict_uri=verdict_uri, by=by, alias=alias)
    if not promoted["promoted"]:
        return promoted
    return confirm_served(registry, promoted, target=target, by=by, alias=alias)


def promote(
    registry: ModelRegistry,
    *,
    model_name: str,
    version: int,
    verdict_uri: str,
    by: str,
    alias: str = "champion",
) -> dict[str, Any]:
    """Steps 1-2: stage ``version`` and move ``alias`` to it from the champion its verdict was compared with.

    Returns ``{"promoted", "version", "previous_version", "sha256", ...}``; ``promoted`` is
    False (with the reason) when re-evaluation against a champion that moved meanwhile
    does not bless it. :func:`confirm_served` is the rest of the deployment.
    """
    from mlops_airflow.serving.loading import stage_model

    manifest = registry.get_version(model_name, version)
    verdict = read_verdict(registry, verdict_uri)
    check_binding(verdict, model_name=model_name, candidate_sha256=manifest["sha256"],
                  data_fingerprint=manifest["data"]["fingerprint"])
    allowed, why, _ = verdict_gate(registry, verdict)
    if not allowed:
        raise RegistryError(f"refusing to deploy v{version}: {why}")

    frame, _ = read_snapshot(registry.store, manifest["data"]["dataset_uri"])
    current = registry.get_alias(model_name, alias)
    current_version = current["version"] if current else None
    expected = (verdict.get("champion") or {}).get("version")
    done = {"promoted": True, "version": version, "sha256": manifest["sha256"], "model_name": model_name}

    if current_version == version:
        log.info("%s@%s already points at v%s (a retry): checking it serves", model_name, alias, version)
        # a retry: what the alias moved from is in its record
        return {**done, "previous_version": current.get("previous") if current else expected}
    if current_version != expected:
        log.warning("Champion moved from v%s to v%s since the comparison: re-evaluating", expected, current_version)
        verdict = evaluate_candidate(registry, manifest, frame, gate=verdict["gate"],
                                     gate_source=verdict["gate_source"], champion_alias=alias)
        if not verdict_gate(registry, verdict)[0]:
            return {"promoted": False, "version": version, "champion_version": current_version,
                    "reason": f"re-evaluated against v{current_version}: {verdict['reason']}"}
        expected = current_version

    smoke = smoke_rows(registry, manifest, frame)
    stage_model(registry, manifest, smoke)
    log.info("Staged v%s: checksum, trusted types and %d smoke rows OK", version, len(smoke))
    try:
        registry.set_alias(model_name, alias, version, expected=expected, by=by,
                           reason=f"verdict {verdict['verdict_id']}: {verdict['reason']}")
    except AliasConflict as exc:
        raise DeployError(f"not promoted: {exc}; the next run will re-evaluate against the new champion") from exc
    log.info("Moved %s@%s: v%s -> v%s", model_name, alias, expected, version)
    return {**done, "previous_version": expected}


def confirm_served(
    registry: ModelRegistry,
    promoted: dict[str, Any],
    *,
    target: ServingTarget | None,
    by: str,
    alias: str = "champion",
) -> dict[str, Any]:
    """Steps 3-4: wait until ``target`` serves what :func:`promote` promoted; else move the alias back and fail."""
    model_name, version, expected = promoted["model_name"], promoted["version"], promoted["previous_version"]
    result = {"promoted": True, "version": version, "previous_version": expected}
    if target is None:
        return {**result, "served": False}
    try:
        served = target.wait_for_version(model_name, version, promoted["sha256"])
    except Exception as exc:
        try:
            _roll_back(registry, model_name, alias, version, expected, by, reason=str(exc))
        except Exception as rollback_error:
            raise DeployError(
                f"v{version} did not come up on the serving target ({exc}), and rolling back to v{expected} "
                f"failed too: {rollback_error}; check the alias by hand"
            ) from exc
        back = f"v{expected}" if expected is not None else "no champion"
        raise DeployError(f"v{version} did not come up on the serving target, rolled back to {back}: {exc}") from exc
    return {**result, "served": True, "server": {k: served.get(k) for k in ("model_name", "version", "loaded_at")}}


def smoke_rows(registry: ModelRegistry, manifest: dict[str, Any], frame: Any = None) -> Any:
    """The first rows of the version's holdout, features only: what staging and serving targets predict on.

    ``frame`` is the version's dataset snapshot when the caller has it already (read otherwise).
    """
    if frame is None:
        frame, _ = read_snapshot(registry.store, manifest["data"]["dataset_uri"])
    _, holdout = split_for(manifest, frame)
    smoke, _ = split_xy(holdout.head(SMOKE_ROWS), manifest["target"], manifest.get("drop_columns"))
    return smoke


def _roll_back(registry: ModelRegistry, model: str, alias: str, version: int, previous: int | None, by: str, reason: str) -> None:
    log.error("Rolling %s@%s back from v%s to v%s: %s", model, alias, version, previous, reason)
    if previous is None:
        registry.remove_alias(model, alias, expected=version)
    else:
        registry.set_alias(model, alias, previous, expected=version, by=by, reason=f"rollback: {reason}")
