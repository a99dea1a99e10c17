"""Live quality: labels that arrive later, joined to the served predictions, scored and judged.

The model server logs a sample of what it served (:mod:`mlops_airflow.serving.logs`).
When the true outcomes arrive (a "feedback" file: a CSV or Parquet with the label and
a join key), :func:`live_quality` joins them to the logged rows, computes the live
metric with the same definitions the gate uses, compares it with the metric the
champion had on its holdout, and decides per policy whether to retrain. The decision
is data: a JSON record under ``<model>/monitoring/quality/``.

Join keys: ``request_id`` (the ``X-Request-ID`` of the answer; feedback then needs a
``request_id`` column and, for requests of several rows, a ``row`` column with the
row's position in the request), or the name of a feature column that identifies a row
(e.g. ``trip_id``), present in both the logs and the feedback.

Policy (all optional)::

    metric: roc_auc      # default: the task's primary metric (the gate's)
    max_drop: 0.05       # retrain when live is worse than the champion's holdout by more than this
    min_value: 0.7       # ...or worse than this, whatever the holdout said
    min_rows: 100        # fewer joined rows: no decision ("insufficient_data"), never a retrain
    cooldown_hours: 24   # after asking for retraining of a version, do not ask again for so long

A drop found again within the cooldown is recorded as ``decision: retrain`` with
``retrain: false`` and the reason saying when retraining was asked for: the retrained
candidate is on its way (or was rejected at the gate, which a second run would not change).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from mlops_airflow.evaluation.cooldown import asked_since, check_cooldown, record_key
from mlops_airflow.exceptions import ConfigError, DataError

if TYPE_CHECKING:
    import pandas as pd

    from mlops_airflow.registry import ModelRegistry

DEFAULT_POLICY: dict[str, Any] = {"metric": None, "max_drop": 0.05, "min_value": None, "min_rows": 100,
                                  "cooldown_hours": 24}


def check_policy(policy: dict[str, Any] | None, task: str) -> dict[str, Any]:
    """The policy with defaults filled in; :class:`ConfigError` naming the field otherwise."""
    from mlops_airflow.evaluation.metrics import PRIMARY_METRIC, metrics_for

    policy = dict(policy or {})
    unknown = sorted(set(policy) - set(DEFAULT_POLICY))
    if unknown:
        raise ConfigError(f"quality policy: unknown field(s) {', '.join(unknown)}; known: {', '.join(DEFAULT_POLICY)}")
    merged = {**DEFAULT_POLICY, **policy}
    merged["metric"] = merged["metric"] or PRIMARY_METRIC[task]
    if merged["metric"] not in metrics_for(task):
        raise ConfigError(f"quality policy: metric={merged['metric']!r} is not a {task} metric "
                          f"({', '.join(metrics_for(task))})")
    for name in ("max_drop", "min_value"):
        if merged[name] is not None and (isinstance(merged[name], bool) or not isinstance(merged[name], int | float)):
            raise ConfigError(f"quality policy: {name}={merged[name]!r} is not a number")
    if merged["max_drop"] is not None and merged["max_drop"] < 0:
        raise ConfigError(f"quality policy: max_drop={merged['max_drop']!r} must not be negative")
    if isinstance(merged["min_rows"], bool) or not isinstance(merged["min_rows"], int) or merged["min_rows"] < 1:
        raise ConfigError(f"quality policy: min_rows={merged['min_rows']!r} must be a positive integer")
    check_cooldown(merged["cooldown_hours"], "quality policy")
    return merged


def join_feedback(logs: pd.DataFrame, feedback: pd.DataFrame, *, label: str, key: str = "request_id") -> pd.DataFrame:
    """The logged rows that have a label, with it in ``_label``; one row per logged row."""
    if label not in feedback.columns:
        raise DataError(f"feedback has no label column {label!r} (columns: {', '.join(map(str, feedback.columns))})")
    if key == "request_id":
        if "request_id" not in feedback.columns:
            raise DataError("feedback has no request_id column to join on (or give key=<a row-key column>)")
        right_on = ["request_id", "row"] if "row" in feedback.columns else ["request_id"]
        left_on = ["_request_id", "_row"][: len(right_on)]
        if right_on == ["request_id"] and logs["_request_id"].duplicated().any():
            raise DataError("some logged requests hold several rows: feedback needs a row column "
                            "(the row's position in its request) besides request_id")
    else:
        if key not in feedback.columns or key not in logs.columns:
            where = "feedback" if key not in feedback.columns else "the prediction logs"
            raise DataError(f"{where} has no column {key!r} to join on")
        left_on = right_on = [key]
    duplicated = int(feedback.duplicated(subset=right_on).sum())
    if duplicated:
        raise DataError(f"feedback holds {duplicated} duplicate label(s) for the same {' + '.join(right_on)}")
    right = feedback[[*right_on, label]].rename(columns={label: "_label"})
    if left_on != right_on:
        right = right.rename(columns=dict(zip(right_on, left_on, strict=True)))
    joined = logs.merge(right, on=left_on, how="inner", validate="many_to_one")
    return joined[joined["_label"].notna()].reset_index(drop=True)


def _predictions(joined: pd.DataFrame, task: str, classes: list[Any] | None) -> Any:
    import numpy as np

    from mlops_airflow.evaluation.statistics import Predictions

    if task == "regression":
        return Predictions(y_pred=joined["_prediction"].to_numpy(dtype=float))
    columns = [f"_proba_{label}" for label in classes or []]
    scores = None
    if classes and all(column in joined.columns for column in columns):
        proba = joined[columns].to_numpy(dtype=float)
        scores = proba[:, -1] if task == "binary" else proba
    return Predictions(y_pred=np.asarray(joined["_prediction"].tolist()), scores=scores, classes=classes)


def live_quality(
    registry: ModelRegistry,
    model_name: str,
    feedback_uri: str,
    *,
    label: str,
    key: str = "request_id",
    since: datetime | str | None = None,
    until: datetime | str | None = None,
    policy: dict[str, Any] | None = None,
    alias: str = "champion",
    log_uri: str | None = None,
    run_key: str | None = None,
    s3_client: Any | None = None,
) -> dict[str, Any]:
    """Score what ``alias`` served against the labels in ``feedback_uri``; the stored decision record.

    Only rows the current ``alias`` version served count: a retrained model is not blamed
    for its predecessor's answers. ``run_key`` names this check (e.g. dag, run and task
    ids): a retry of it may ask for retraining again within the cooldown, since the try
    that asked may have failed before its event was sent.
    """
    from mlops_airflow.data.loading import load_dataset
    from mlops_airflow.evaluation.metrics import HIGHER_IS_BETTER, metrics_from_predictions
    from mlops_airflow.registry.registry import to_json
    from mlops_airflow.serving.logs import read_prediction_logs

    champion = registry.resolve(model_name, alias=alias)
    task = champion["task_type"]
    rules = check_policy(policy, task)
    metric = rules["metric"]
    logs = read_prediction_logs(log_uri or registry.store, model_name, since, until, version=champion["version"],
                                s3_client=s3_client)
    feedback = load_dataset(feedback_uri, s3_client=s3_client).frame
    joined = join_feedback(logs, feedback, label=label, key=key) if len(logs) else logs.assign(_label=[])
    reference = (champion.get("metrics") or {}).get(metric)
    checked_at = datetime.now(UTC)
    record: dict[str, Any] = {
        "format_version": 1, "model_name": model_name, "alias": alias, "version": champion["version"],
        "metric": metric, "policy": rules, "feedback_uri": feedback_uri, "key": key,
        "logged_rows": int(len(logs)), "labelled_rows": int(len(joined)), "holdout_value": reference,
        "live_value": None, "live_metrics": {}, "retrain": False,
        "checked_at": checked_at.isoformat(timespec="seconds"), "run_key": run_key,
    }
    if len(joined) < rules["min_rows"]:
        record.update(decision="insufficient_data",
                      reason=f"{len(joined)} labelled rows, fewer than min_rows={rules['min_rows']}: no decision")
    else:
        live = metrics_from_predictions(task, joined["_label"], _predictions(joined, task, champion.get("classes")))
        value = live.get(metric)
        record.update(live_metrics=live, live_value=value)
        sign = 1 if HIGHER_IS_BETTER[metric] else -1
        reasons = []
        if value is None:
            record.update(decision="undefined", reason=f"{metric} is undefined on the labelled rows (one class only?)")
        else:
            if reference is not None and rules["max_drop"] is not None and sign * (reference - value) > rules["max_drop"]:
                reasons.append(f"live {metric}={value:.4f} is more than {rules['max_drop']} worse than the "
                               f"holdout's {reference:.4f}")
            if rules["min_value"] is not None and sign * (rules["min_value"] - value) > 0:
                reasons.append(f"live {metric}={value:.4f} is worse than min_value={rules['min_value']}")
            record.update(decision="retrain" if reasons else "ok", retrain=bool(reasons),
                          reason="; ".join(reasons) or f"live {metric}={value:.4f} is within policy "
                                                         f"(holdout {reference})")
    if record["retrain"]:
        since = checked_at - timedelta(hours=rules["cooldown_hours"])
        asked = asked_since(registry, model_name, "quality", int(champion["version"]), since, run_key)
        if asked:
            record.update(retrain=False, reason=f"{record['reason']}; no retraining: asked for at {asked}, "
                                                f"within cooldown_hours={rules['cooldown_hours']:g}")
    key_name = record_key(model_name, "quality", checked_at, int(champion["version"])) + ".json"
    registry.store.write_bytes(key_name, to_json(record))
    record["record_uri"] = registry.store.url(key_name)
    json.dumps(record)  # the decision travels through XCom: it must be plain JSON
    return record
