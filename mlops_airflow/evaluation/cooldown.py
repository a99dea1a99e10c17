"""Retraining requests and their cooldown: a monitor that keeps finding the same problem asks once.

While a retrained candidate is being trained and gated (or was rejected, and the champion
stays), drift or a quality drop persists: without a cooldown every check would start
another training run. The monitors store one record per check under
``<model>/monitoring/<kind>/``, named by the time of the check and the version judged
(:func:`record_key`); :func:`asked_since` finds the last one that asked for retraining.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from mlops_airflow.exceptions import ConfigError

if TYPE_CHECKING:
    from datetime import datetime

    from mlops_airflow.registry import ModelRegistry

#: Record names start with the check's time in this form, so that names sort by time.
STAMP = "%Y%m%dT%H%M%S%fZ"


def record_key(model_name: str, kind: str, checked_at: datetime, version: int) -> str:
    """Where a check's record goes, without extension: ``<model>/monitoring/<kind>/<time>-v<version>``."""
    return f"{model_name}/monitoring/{kind}/{checked_at.strftime(STAMP)}-v{version}"


def check_cooldown(value: Any, policy: str) -> float:
    """``cooldown_hours`` of a monitor policy, or :class:`ConfigError` naming it."""
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ConfigError(f"{policy}: cooldown_hours={value!r} must be a number >= 0")
    return float(value)


def asked_since(registry: ModelRegistry, model_name: str, kind: str, version: int, since: datetime,
                run_key: str | None) -> str | None:
    """When an earlier check of ``kind`` asked for ``version`` to be retrained, at or after ``since`` (None: never).

    Records of the same ``run_key`` are an earlier try of this very check, whose event may
    never have gone out: they do not count.
    """
    stamp = since.strftime(STAMP)
    for key in sorted(registry.store.list(f"{model_name}/monitoring/{kind}/"), reverse=True):
        name = key.rsplit("/", 1)[-1]
        if name < stamp:
            break  # the rest are older
        if not name.endswith(f"-v{version}.json"):
            continue
        record = json.loads(registry.store.read_bytes(key))
        if record.get("retrain") and (run_key is None or record.get("run_key") != run_key):
            return str(record.get("checked_at"))
    return None
