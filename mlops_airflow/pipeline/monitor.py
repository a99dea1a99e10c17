"""Drift monitor: what the model server answered, compared with what its champion was trained on.

The server logs a sample of the rows it serves (:mod:`mlops_airflow.serving.logs`);
:func:`monitor_drift` reads a time window of them, keeps the rows the champion itself
answered, and compares their features with the champion's own training snapshot using
the validation stage's drift checks (:func:`~mlops_airflow.validation.compute_drift`).
The decision is data: a JSON record (schema ``drift``) and an HTML report under
``<model>/monitoring/drift/``. A retraining trigger reads ``retrain``.
:func:`monitor_quality` is the same kind of check for labels that arrive later: it scores
a window of those rows with :func:`~mlops_airflow.evaluation.live.live_quality`. Both judge
one model; :func:`monitored_models` says which models a many-model check covers.

Policy (all optional)::

    min_rows: 300             # fewer logged rows in the window: "insufficient_data", never a retrain
    min_drifted_columns: 1    # retrain when at least this many feature columns drifted
    action: retrain           # retrain: ask for retraining on drift; warn: record and report only
    cooldown_hours: 24        # after asking for retraining of a version, do not ask again for so long
    columns: [hour, fare_usd] # the features compared (default: all the champion's features)
    psi: 0.2                  # thresholds, as in a validation spec's drift section
    ks_pvalue: 0.001
    chi2_pvalue: 0.001
    unseen_share: 0.01
    per_column: {hour: {psi: 0.3}}
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

from mlops_airflow.evaluation.cooldown import asked_since, check_cooldown, record_key
from mlops_airflow.exceptions import ConfigError, ValidationSpecError

if TYPE_CHECKING:
    from mlops_airflow.registry import ModelRegistry
    from mlops_airflow.storage import ArtifactStore

log = logging.getLogger(__name__)

DEFAULT_POLICY: dict[str, Any] = {"min_rows": 300, "min_drifted_columns": 1, "action": "retrain", "cooldown_hours": 24}
ACTIONS = ("retrain", "warn")
#: Drift-section keys that make no sense here: the reference is always the champion's training data,
#: and what a breach does is the monitor's ``action``.
_NOT_HERE = ("reference", "policy")
Outcome = Literal["drifted", "stable", "insufficient_data"]


def check_monitor_policy(policy: dict[str, Any] | None) -> dict[str, Any]:
    """The policy with defaults filled in (thresholds normalised); :class:`ConfigError` naming the field."""
    from mlops_airflow.validation.spec import normalise_drift

    policy = dict(policy or {})
    for key in _NOT_HERE:
        if key in policy:
            raise ConfigError(f"drift policy: {key!r} is not a monitor setting (the reference is the champion's "
                              f"training data; use action: retrain|warn)")
    own = {key: policy.pop(key, default) for key, default in DEFAULT_POLICY.items()}
    try:
        thresholds = normalise_drift(policy, source="drift policy")
    except ValidationSpecError as exc:
        raise ConfigError(str(exc)) from exc
    for name in ("min_rows", "min_drifted_columns"):
        value = own[name]
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"drift policy: {name}={value!r} must be a positive integer")
    check_cooldown(own["cooldown_hours"], "drift policy")
    if own["action"] not in ACTIONS:
        raise ConfigError(f"drift policy: action={own['action']!r} must be one of {', '.join(ACTIONS)}")
    thresholds.pop("reference", None)
    thresholds.pop("policy", None)
    return {**own, **thresholds}


def _when(value: datetime | str | None, name: str) -> datetime | None:
    if value is None or value == "":
        return None
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError as exc:
            raise ConfigError(f"{name}={value!r} is not an ISO date/time") from exc
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def monitor_window(window_hours: float | None, since: datetime | str | None,
                   until: datetime | str | None) -> tuple[datetime, datetime]:
    """The window ``[since, until)`` a check reads: ``until`` defaults to now, ``since`` to ``until - window_hours``.

    :class:`ConfigError` naming the field for a bad time or length, or an empty window.
    """
    end = _when(until, "until") or datetime.now(UTC)
    start = _when(since, "since")
    if start is None:
        if window_hours is None or isinstance(window_hours, bool) or not float(window_hours) > 0:
            raise ConfigError(f"window_hours={window_hours!r} must be a positive number (or give since)")
        start = end - timedelta(hours=float(window_hours))
    if start >= end:
        raise ConfigError(f"the window is empty: since {start.isoformat()} is not before until {end.isoformat()}")
    return start, end


#: A model name, or a shell-style pattern over names (``*``, ``?``, ``[...]``).
_PATTERN = re.compile(r"^[A-Za-z0-9_.*?!\[\]-]{1,128}$")


def monitored_models(store: ArtifactStore, models: Sequence[str], since: datetime, until: datetime) -> list[str]:
    """The models a many-model check covers, each once: names as given, then the matches of glob patterns.

    A name is checked whether or not it logged (no rows is a finding: ``insufficient_data``);
    a pattern (``trips_*``) stands for the models whose names match and that logged in
    ``[since, until)`` in ``store`` (:func:`~mlops_airflow.serving.logs.logged_models`,
    which lists model and ``date=`` folders, never every log file). :class:`ConfigError`
    names an entry that is neither.
    """
    from mlops_airflow.registry.registry import check_name
    from mlops_airflow.serving.logs import logged_models

    names: list[str] = []
    patterns: list[str] = []
    for entry in models:
        if isinstance(entry, str) and any(ch in entry for ch in "*?["):
            if not _PATTERN.match(entry):
                raise ConfigError(f"models: {entry!r} is not a model name pattern (letters, digits, _.- and * ? [ ])")
            patterns.append(entry)
        else:
            names.append(check_name(entry, "models entry"))
    if patterns:
        names += logged_models(store, since, until, patterns=patterns)
    return list(dict.fromkeys(names))


def monitor_drift(
    registry: ModelRegistry,
    model_name: str,
    *,
    alias: str = "champion",
    window_hours: float | None = 24,
    since: datetime | str | None = None,
    until: datetime | str | None = None,
    all_versions: bool = False,
    policy: dict[str, Any] | None = None,
    log_uri: str | None = None,
    redact: bool = False,
    run_key: str | None = None,
    s3_client: Any | None = None,
) -> dict[str, Any]:
    """Compare the rows served in a window with ``alias``'s training data; store and return the decision.

    The window is ``[since, until)``; ``until`` defaults to now and ``since`` to ``until``
    minus ``window_hours``. Only rows the current ``alias`` version answered count unless
    ``all_versions`` (a new champion is not judged on traffic its predecessor saw, nor
    compared with a reference it was not trained on). ``log_uri`` is where the server
    logs (its ``--log-uri``; default the registry root). After asking for retraining of a
    version, later checks do not ask again for ``cooldown_hours``, except a retry of the same
    ``run_key`` (e.g. dag, run and task ids): the try that asked may have failed before its
    event was sent.

    Returns a small JSON-able result: ``outcome`` (``drifted`` | ``stable`` |
    ``insufficient_data``), ``retrain``, ``reason``, ``drifted_columns``, ``max_psi``,
    ``rows``, ``window``, ``version``, ``record_uri`` and ``report_uri``. Raises
    :class:`~mlops_airflow.exceptions.ModelNotFound` when there is no such alias and
    :class:`ConfigError` for a bad policy or window.
    """
    from mlops_airflow.data.schema import schema_columns
    from mlops_airflow.data.snapshot import read_snapshot
    from mlops_airflow.records import validate_record
    from mlops_airflow.serving.logs import read_prediction_logs
    from mlops_airflow.validation import compute_drift
    from mlops_airflow.validation.report import render_drift_report

    rules = check_monitor_policy(policy)
    start, end = monitor_window(window_hours, since, until)
    champion = registry.resolve(model_name, alias=alias)  # ModelNotFound names the model and alias
    version = int(champion["version"])
    logs = read_prediction_logs(log_uri or registry.store, model_name, start, end,
                                version=None if all_versions else version, s3_client=s3_client)
    features = list(schema_columns(champion.get("feature_schema") or {}))
    columns = rules["columns"] or features
    checked_at = datetime.now(UTC)
    record: dict[str, Any] = {
        "format_version": 1, "kind": "drift", "model_name": model_name, "alias": alias, "version": version,
        "versions": "all" if all_versions else "champion", "policy": rules,
        "window": {"since": start.isoformat(), "until": end.isoformat()},
        "rows": int(len(logs)), "reference_uri": champion["data"].get("dataset_uri"),
        "checked_at": checked_at.isoformat(timespec="seconds"), "run_key": run_key,
    }
    if len(logs) < rules["min_rows"]:
        reason = f"{len(logs)} logged rows in the window, fewer than min_rows={rules['min_rows']}: no decision"
        drift: dict[str, Any] = {"skipped": reason, "breach": False, "drifted_columns": [], "max_psi": None,
                                 "reference": f"{model_name} version {version}'s training data"}
        outcome: Outcome = "insufficient_data"
        retrain = False
    else:
        reference, _ = read_snapshot(registry.store, champion["data"]["dataset_uri"])
        config = {key: rules[key] for key in ("psi", "ks_pvalue", "chi2_pvalue", "unseen_share", "per_column")}
        drift = compute_drift(reference, logs, columns=columns, config=config, redact=redact)
        drift["reference"] = f"{model_name} version {version}'s training data"
        drifted = drift["drifted_columns"]
        outcome = "drifted" if len(drifted) >= rules["min_drifted_columns"] else "stable"
        retrain = outcome == "drifted" and rules["action"] == "retrain"
        if outcome == "drifted":
            since_cooldown = checked_at - timedelta(hours=rules["cooldown_hours"])
            asked = asked_since(registry, model_name, "drift", version, since_cooldown, run_key) if retrain else None
            if retrain and asked:
                retrain = False
                then = "no retraining: asked for at " + asked
            else:
                then = "retraining asked for" if retrain else "action: warn, no retraining"
            reason = f"{len(drifted)} of {len(drift['columns'])} columns drifted ({', '.join(drifted)}); {then}"
        else:
            reason = (f"{len(drifted)} of {len(drift['columns'])} columns drifted, fewer than "
                      f"min_drifted_columns={rules['min_drifted_columns']}")
    record.update(outcome=outcome, retrain=retrain, reason=reason, drifted_columns=list(drift["drifted_columns"]),
                  max_psi=drift["max_psi"], drift=drift)

    base = record_key(model_name, "drift", checked_at, version)
    title = f"Drift of {model_name} version {version} ({alias}) in served traffic"
    intro = (f"{len(logs)} logged rows from {start.isoformat(timespec='seconds')} to "
             f"{end.isoformat(timespec='seconds')}. Outcome: {outcome}. {reason}.")
    registry.store.write_bytes(f"{base}.html", render_drift_report(drift, title=title, intro=intro).encode())
    record["report_uri"] = registry.store.url(f"{base}.html")
    record_uri = registry.write_record(f"{base}.json", validate_record("drift", record))
    log.info("Drift of %s v%s: %s (%d rows); %s", model_name, version, outcome, len(logs), record_uri)
    result = {key: record[key] for key in ("outcome", "retrain", "reason", "drifted_columns", "max_psi", "rows",
                                           "window", "model_name", "alias", "version", "report_uri")}
    result["record_uri"] = record_uri
    json.dumps(result)  # the result travels through XCom: it must be plain JSON
    return result


def monitor_quality(
    registry: ModelRegistry,
    model_name: str,
    feedback_uri: str,
    *,
    label: str,
    key: str = "request_id",
    alias: str = "champion",
    window_hours: float | None = 168,
    since: datetime | str | None = None,
    until: datetime | str | None = None,
    policy: dict[str, Any] | None = None,
    log_uri: str | None = None,
    run_key: str | None = None,
    s3_client: Any | None = None,
) -> dict[str, Any]:
    """Score what ``alias`` served in a window against labels that arrived later; store and return the decision.

    The window is :func:`monitor_window`'s (default the last 7 days: labels lag the traffic);
    the join, the metric and the policy are :func:`~mlops_airflow.evaluation.live.live_quality`'s.
    Returns its record (``decision``: ``ok`` | ``retrain`` | ``insufficient_data`` |
    ``undefined``, ``retrain``, ``reason``, ``metric``, ``live_value``, ``holdout_value``,
    ``labelled_rows``, ``record_uri``, ...) plus the ``window`` read.
    """
    from mlops_airflow.evaluation.live import live_quality

    start, end = monitor_window(window_hours, since, until)
    result = live_quality(registry, model_name, feedback_uri, label=label, key=key, since=start, until=end,
                          policy=policy, alias=alias, log_uri=log_uri, run_key=run_key, s3_client=s3_client)
    result["window"] = {"since": start.isoformat(), "until": end.isoformat()}
    return result
