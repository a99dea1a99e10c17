"""How to retrain a model, recorded in its lineage, and the plan a retraining trigger follows.

Contract: a manifest's ``lineage.train.trigger`` is ``{"dag_id": ..., "conf": {...}}`` and
means "to retrain this model, trigger ``dag_id`` with ``conf``". The training stage records
it (:func:`trigger_record`: the DAG that trained the model and the Params of that run), the
registry copies it into the manifest, and :func:`plan_retraining` turns the monitors' asset
events (``x-mlops://<model>/drift`` and ``.../quality``) into one DAG run per model from it.
A model trained before this was recorded (or by a DAG that cannot be re-run by hand) is
retrained by :data:`FALLBACK_DAG_ID` with ``{"model_name": <model>}`` instead, and the plan
says so.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from mlops_airflow.exceptions import ConfigError, ModelNotFound
from mlops_airflow.registry.registry import check_name

if TYPE_CHECKING:
    from mlops_airflow.registry import ModelRegistry

log = logging.getLogger(__name__)

#: What retrains a model whose manifest records no trigger: the example CT DAG, for that model.
FALLBACK_DAG_ID = "mlops_continuous_training"
#: The monitors' assets (``drift_asset`` / ``quality_asset`` in :mod:`mlops_airflow.operators.monitor`).
_MONITOR_URI = re.compile(r"^x-mlops://(?P<model>[^/]+)/(?P<kind>drift|quality)$")


def trigger_record(dag_id: str, params: Mapping[str, Any]) -> dict[str, Any]:
    """The ``lineage.train.trigger`` record: retrain by triggering ``dag_id`` with these Params.

    ``params`` are the training run's Params; values JSON cannot carry become their text,
    so the record survives the manifest's JSON and a DAG run's ``conf``.
    """
    if not isinstance(dag_id, str) or not dag_id:
        raise ConfigError(f"trigger dag_id={dag_id!r} must be a non-empty string")
    return {"dag_id": dag_id, "conf": json.loads(json.dumps(dict(params), default=str))}


def retrain_request(manifest: Mapping[str, Any]) -> dict[str, Any] | None:
    """``{"dag_id", "conf"}`` that retrains the model of ``manifest``; None if its lineage records none.

    A malformed record counts as none (it is logged): a model is still retrained, by the fallback.
    """
    trigger = ((manifest.get("lineage") or {}).get("train") or {}).get("trigger")
    if trigger is None:
        return None
    if (not isinstance(trigger, Mapping) or not isinstance(trigger.get("dag_id"), str) or not trigger["dag_id"]
            or not isinstance(trigger.get("conf"), Mapping)):
        log.warning("%s version %s: lineage.train.trigger is not {dag_id, conf}: %r", manifest.get("model_name"),
                    manifest.get("version"), trigger)
        return None
    return {"dag_id": trigger["dag_id"], "conf": dict(trigger["conf"])}


def event_model(uri: str, extra: Mapping[str, Any] | None = None) -> str | None:
    """The model a monitor's asset event is about: from ``x-mlops://<model>/drift|quality``, else ``extra.model_name``.

    None (logged) when neither names a valid model, or when they disagree.
    """
    match = _MONITOR_URI.match(uri)
    named = (extra or {}).get("model_name")
    model = match.group("model") if match else named
    if match and named is not None and named != model:
        log.warning("asset event on %s names model %r in its extra: ignored", uri, named)
        return None
    try:
        return check_name(model) if model is not None else None
    except ConfigError:
        log.warning("asset event on %s names no valid model (%r): ignored", uri, model)
        return None


def plan_retraining(
    registry: ModelRegistry,
    events: Iterable[Mapping[str, Any]] = (),
    *,
    models: Sequence[str] = (),
    alias: str = "champion",
    fallback_dag_id: str | None = None,
    limit: int | None = None,
) -> dict[str, Any]:
    """One retraining per model asked for, read from each model's ``alias`` manifest.

    ``events`` are the triggering asset events as ``{"uri", "extra", ...}``; ``models`` are
    names asked for by hand. Several events for one model make one retraining, and models
    whose recorded triggers are the same DAG with the same conf share one run; so do
    segments trained by one run, whose confs differ only in their ``segments`` list: one
    run retrains them all (``segments`` merged). An event about a version that is no longer ``alias`` is dropped:
    the model it judged has been replaced, and the monitors judge the new one on its own.

    Returns ``{"runs": [...], "skipped": {model: reason}, "deferred": [model, ...]}``; each run
    is ``{"dag_id", "conf", "models", "reasons", "source"}`` with ``source`` ``lineage``
    (the recorded trigger) or ``fallback``. Past ``limit`` runs (Airflow's ``max_map_length``)
    the remaining models are ``deferred``, not planned: their monitors will ask again.
    ``fallback_dag_id`` defaults to :data:`FALLBACK_DAG_ID`.
    """
    fallback_dag_id = fallback_dag_id or FALLBACK_DAG_ID
    asked: dict[str, list[str]] = {}
    judged: dict[str, set[int]] = {}  # the versions the events were about, per model
    for event in events:
        uri, extra = str(event.get("uri", "")), event.get("extra") or {}
        model = event_model(uri, extra)
        if model is None:
            continue
        kind, version = uri.rsplit("/", 1)[-1], extra.get("version")
        asked.setdefault(model, []).append(f"{kind} event" + (f" on version {version}" if version is not None else ""))
        if isinstance(version, int):
            judged.setdefault(model, set()).add(version)
    by_hand = {check_name(model) for model in models}
    for model in by_hand:
        asked.setdefault(model, []).append("asked for by hand")

    runs: dict[tuple[str, str, bool], dict[str, Any]] = {}
    skipped: dict[str, str] = {}
    for model in sorted(asked):
        try:
            manifest: dict[str, Any] | None = registry.resolve(model, alias=alias)
        except ModelNotFound:
            manifest = None
        if manifest is not None and model not in by_hand and judged.get(model) \
                and manifest["version"] not in judged[model]:
            skipped[model] = (f"the events judged version {', '.join(map(str, sorted(judged[model])))}; "
                              f"{alias} is version {manifest['version']} now")
            log.info("%s: not retrained: %s", model, skipped[model])
            continue
        request = retrain_request(manifest) if manifest is not None else None
        reason = f"{model}: {'; '.join(dict.fromkeys(asked[model]))}"
        if request is not None:
            source = "lineage"
        else:
            why = (f"no {alias} to read how it was trained" if manifest is None
                   else f"version {manifest['version']} records no lineage.train.trigger")
            log.info("%s: %s; retrained by %s with model_name only", model, why, fallback_dag_id)
            request, source = {"dag_id": fallback_dag_id, "conf": {"model_name": model}}, "fallback"
            reason += f" ({why})"
        segments = request["conf"].get("segments")
        segments = segments if isinstance(segments, list) and segments else None
        shared = {k: v for k, v in request["conf"].items() if k != "segments" or segments is None}
        key = (request["dag_id"], json.dumps(shared, sort_keys=True), segments is not None)
        run = runs.setdefault(key, {**request, "conf": dict(request["conf"]), "models": [], "reasons": [],
                                    "source": source})
        if segments is not None:
            run["conf"]["segments"] = sorted({*run["conf"]["segments"], *segments})
        run["models"].append(model)
        run["reasons"].append(reason)

    planned = list(runs.values())
    deferred: list[str] = []
    if limit is not None and len(planned) > limit:
        deferred = [model for run in planned[limit:] for model in run["models"]]
        planned = planned[:limit]
        log.warning("%d retrainings asked for, more than %d in one run: deferred %s", len(runs), limit,
                    ", ".join(deferred))
    return {"runs": planned, "skipped": skipped, "deferred": deferred}
