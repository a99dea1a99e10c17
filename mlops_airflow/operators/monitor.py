"""Watch served traffic (drift) and late labels (live quality); ask for retraining through an Asset event."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from mlops_airflow.operators.base import MlopsBaseOperator

if TYPE_CHECKING:
    from airflow.sdk import Asset, Context

#: The alias every DriftMonitorOperator emits through by default; it resolves to :func:`drift_asset`.
DRIFT_ALIAS = "mlops_drift"
#: The alias every QualityMonitorOperator emits through by default; it resolves to :func:`quality_asset`.
QUALITY_ALIAS = "mlops_quality"


def drift_asset(model_name: str) -> Asset:
    """The Asset a drift monitor updates when ``model_name`` should be retrained: schedule training on it.

    ``x-mlops://`` like :func:`~mlops_airflow.operators.validate.validated_asset`: Airflow's
    ``x-`` custom scheme skips the provider URI normalizers (cheap to parse).
    """
    from airflow.sdk import Asset

    return Asset(f"x-mlops://{model_name}/drift")


def quality_asset(model_name: str) -> Asset:
    """The Asset a quality monitor updates when ``model_name``'s live metric fell below policy: schedule training on it."""
    from airflow.sdk import Asset

    return Asset(f"x-mlops://{model_name}/quality")


class _RetrainEventOperator(MlopsBaseOperator):
    """A monitor whose result may ask for retraining: one Asset event then, through an alias, else none.

    An ``Asset`` outlet would get an event on every success, retrain or not; an alias emits
    only what the task adds to it. Subclasses name the default alias, the asset a model's
    event goes to, the result keys copied into the event's ``extra`` and the keys a
    many-model run keeps per model, and implement :meth:`check` for one model.

    ``model_name`` checks one model and returns its result (each key its own XCom), failing
    the task when the check fails. ``models`` checks each name, and every model matching a
    glob pattern that logged in the window, in turn: one model's failure is logged and
    listed, never stops the others (nor their events); the task fails only when every
    model failed. It returns one mapping: ``models`` (per model, ``summary_keys`` of its
    result), ``failed`` (model: reason), ``retrain`` (the models asked for) and ``window``.
    """

    default_alias: str
    event_keys: tuple[str, ...]
    summary_keys: tuple[str, ...]

    def __init__(self, *, model_name: str | None = None, models: list[str] | str | None = None,
                 window_hours: float | str, until: str | None = None, since: str | None = None,
                 log_uri: str | None = None, **kwargs: Any) -> None:
        if (model_name is None) == (models is None):
            raise ValueError("give model_name (one model) or models (names or glob patterns), not both")
        if "outlets" not in kwargs:
            from airflow.sdk import AssetAlias

            kwargs["outlets"] = [AssetAlias(self.default_alias)]
        # One model: each key of its result is an XCom, as DAGs wire op.output["key"]. Many: one mapping, once.
        kwargs.setdefault("multiple_outputs", model_name is not None)
        super().__init__(**kwargs)
        self.model_name = model_name
        self.models = models
        self.window_hours = window_hours
        self.until = until
        self.since = since
        self.log_uri = log_uri

    @staticmethod
    def retrain_asset(model_name: str) -> Asset:
        raise NotImplementedError

    def check(self, context: Context, model_name: str, since: datetime, until: datetime) -> dict[str, Any]:
        """Check one model over ``[since, until)``; its result, with ``model_name`` and ``retrain``."""
        raise NotImplementedError

    def run(self, context: Context) -> dict[str, Any]:
        from mlops_airflow.pipeline.monitor import monitor_window

        # One window for every model of the run, whatever the time each check starts.
        since, until = monitor_window(self.hours(self.window_hours), self.since or None,
                                      str(self.until) if self.until else None)
        if self.model_name is not None:
            result = self.check(context, self.model_name, since, until)
            if result["retrain"]:
                self.emit_asset_events(context, result)
            return result
        return self.check_models(context, since, until)

    def check_models(self, context: Context, since: datetime, until: datetime) -> dict[str, Any]:
        from mlops_airflow.pipeline.monitor import monitored_models
        from mlops_airflow.storage import open_store

        store = open_store(self.log_uri, s3_client=self.hook.s3_client) if self.log_uri else self.registry.store
        names = monitored_models(store, self.model_patterns(), since, until)
        self.log.info("Checking %d models: %s", len(names), ", ".join(names[:20]) + (" ..." if len(names) > 20 else ""))
        checked: dict[str, dict[str, Any]] = {}
        failed: dict[str, str] = {}
        first_error: Exception | None = None
        for name in names:
            try:
                result = self.check(context, name, since, until)
            except Exception as exc:  # one model's failure must cost the others neither their check nor their event
                failed[name] = f"{type(exc).__name__}: {exc}"
                first_error = first_error or exc
                self.log.error("%s: not checked: %s", name, failed[name])
                continue
            checked[name] = {key: result.get(key) for key in self.summary_keys}
            if result["retrain"]:
                self.emit_asset_events(context, result)
        if first_error is not None and not checked:
            raise first_error  # nothing was checked: the task fails with the reason (retried if transient)
        if failed:
            self.log.error("%d of %d models not checked: %s", len(failed), len(names), ", ".join(failed))
        return {"models": checked, "failed": failed, "retrain": [name for name in checked if checked[name]["retrain"]],
                "window": {"since": since.isoformat(), "until": until.isoformat()}}

    def model_patterns(self) -> list[str]:
        """``models`` as a non-empty list of names and patterns (checked by ``monitored_models``)."""
        from mlops_airflow.exceptions import ConfigError

        patterns = self.string_list(self.models, "models")
        if not patterns:
            raise ConfigError("models is empty: give model names or glob patterns")
        return patterns

    def emit_asset_events(self, context: Context, result: dict[str, Any]) -> None:
        """Add the model's ``retrain_asset`` with the result's ``event_keys`` to every alias outlet (call only on retrain)."""
        from airflow.sdk import AssetAlias

        extra = {key: result[key] for key in self.event_keys}
        for outlet in self.outlets:
            if isinstance(outlet, AssetAlias):
                asset = self.retrain_asset(result["model_name"])
                context["outlet_events"][outlet].add(asset, extra=extra)
                self.log.info("Asset event for %s through alias %s: retraining asked for", asset.uri, outlet.name)

    def run_key(self, context: Context) -> str:
        """This check, the same for each try of it: a retry may ask again within the cooldown."""
        from mlops_airflow.registry.registry import idempotency_key

        return idempotency_key(**{k: v for k, v in self.lineage(context).items() if k != "try_number"})

    @staticmethod
    def policy_object(policy: dict[str, Any] | str | None) -> dict[str, Any] | None:
        """The policy as a dict: a DAG not rendering native objects hands JSON text over."""
        if not isinstance(policy, str):
            return policy
        import json

        from mlops_airflow.exceptions import ConfigError

        try:
            return json.loads(policy) if policy.strip() else None
        except ValueError as exc:
            raise ConfigError(f"policy is not a JSON object: {exc}") from exc

    @staticmethod
    def hours(value: float | str | None) -> float | None:
        """``window_hours`` as a number (None when not given); :class:`ConfigError` naming it otherwise."""
        from mlops_airflow.exceptions import ConfigError

        try:
            return float(value) if value not in (None, "") else None
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"window_hours={value!r} is not a number") from exc


class DriftMonitorOperator(_RetrainEventOperator):
    """Compare the prediction logs of a window with the champion's training data; emit an event on drift.

    Calls :func:`~mlops_airflow.pipeline.monitor.monitor_drift` (the policy is documented
    there) for ``model_name``, or for each of ``models`` (see the many-model contract of
    :class:`_RetrainEventOperator`). One model's result: ``outcome``, ``retrain``,
    ``drifted_columns``, ``rows``, ``window``, ``record_uri``, ``report_uri``, ... The task
    succeeds whatever the outcome: drift is a normal finding. A missing champion or a bad
    policy fails it (with ``models``: only when no model could be checked).

    Asset events: for each model whose result says ``retrain``, one event with ``extra``
    ``{model_name, version, outcome, drifted_columns, max_psi, rows, record_uri,
    report_uri}``. By default the outlet is the alias :data:`DRIFT_ALIAS`, resolved at run
    time to ``drift_asset(<model>)`` (``x-mlops://<model>/drift``): an alias emits only
    what the task adds to it, whereas an ``Asset`` outlet gets an event on every success.
    Give ``outlets=[AssetAlias(...)]`` to resolve to the same asset under another alias, or
    ``outlets=[]`` for none.

    :param model_name: the served model (templated); or
    :param models: model names and glob patterns (``trips_*``, matching the models that
        logged in the window), checked in turn (templated).
    :param alias: the alias whose version is judged (templated); default ``champion``.
    :param window_hours: the window's length, ending at ``until`` (templated).
    :param until: the window's end, ISO date/time; empty: now (templated).
    :param since: the window's start, overriding ``window_hours`` (templated).
    :param all_versions: count rows every version served, not only the alias's (templated).
    :param policy: ``min_rows``, ``min_drifted_columns``, ``action`` and thresholds (templated).
    :param log_uri: where the server writes its prediction logs; default the registry root (templated).
    :param redact: leave data values out of the record and report (they can be personal data).
    """

    template_fields: Sequence[str] = ("registry_uri", "model_name", "models", "alias", "window_hours", "until",
                                      "since", "all_versions", "policy", "log_uri")
    text_fields: Sequence[str] = (*MlopsBaseOperator.text_fields, "alias", "log_uri")
    default_timeout = timedelta(minutes=20)
    default_alias = DRIFT_ALIAS
    event_keys = ("model_name", "version", "outcome", "drifted_columns", "max_psi", "rows", "record_uri",
                  "report_uri")
    summary_keys = ("outcome", "retrain", "reason", "version", "rows", "drifted_columns", "record_uri", "report_uri")

    def __init__(
        self,
        *,
        model_name: str | None = None,
        models: list[str] | str | None = None,
        alias: str = "champion",
        window_hours: float | str = 24,
        until: str | None = None,
        since: str | None = None,
        all_versions: bool | str = False,
        policy: dict[str, Any] | str | None = None,
        log_uri: str | None = None,
        redact: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(model_name=model_name, models=models, window_hours=window_hours, until=until, since=since,
                         log_uri=log_uri, **kwargs)
        self.alias = alias
        self.all_versions = all_versions
        self.policy = policy
        self.redact = redact

    def check(self, context: Context, model_name: str, since: datetime, until: datetime) -> dict[str, Any]:
        from mlops_airflow.pipeline.monitor import monitor_drift

        all_versions = self.all_versions
        if isinstance(all_versions, str):
            all_versions = all_versions.strip().lower() in ("true", "1", "yes")
        result = monitor_drift(
            self.registry,
            model_name,
            alias=self.alias,
            since=since,
            until=until,
            all_versions=bool(all_versions),
            policy=self.policy_object(self.policy),
            log_uri=self.log_uri or None,
            redact=self.redact,
            run_key=self.run_key(context),
            s3_client=self.hook.s3_client,
        )
        self.log.info("Drift of %s: %s, %s; record %s", model_name, result["outcome"], result["reason"],
                      result["record_uri"])
        return result

    @staticmethod
    def retrain_asset(model_name: str) -> Asset:
        return drift_asset(model_name)


class QualityMonitorOperator(_RetrainEventOperator):
    """Score what the champion served against labels that arrived later; emit an event when quality dropped.

    Calls :func:`~mlops_airflow.pipeline.monitor.monitor_quality` (the join and the policy
    are :func:`~mlops_airflow.evaluation.live.live_quality`'s) for ``model_name``, or for
    each of ``models`` (see the many-model contract of :class:`_RetrainEventOperator`).
    One model's result is its decision record (``decision``, ``retrain``, ``reason``,
    ``metric``, ``live_value``, ``holdout_value``, ``labelled_rows``, ``window``,
    ``record_uri``, ...). The task succeeds whatever the decision; a missing champion, bad
    feedback or a bad policy fails it (with ``models``: only when no model could be checked).

    Asset events: for each model whose record says ``retrain``, one event with ``extra``
    ``{model_name, version, decision, metric, live_value, holdout_value, labelled_rows,
    record_uri}``, on ``quality_asset(<model>)`` (``x-mlops://<model>/quality``) through
    the alias :data:`QUALITY_ALIAS` by default; ``outlets=[]`` for none (as for
    :class:`DriftMonitorOperator`).

    :param model_name: the served model (templated); or
    :param models: model names and glob patterns (``trips_*``, matching the models that
        logged in the window), checked in turn (templated).
    :param feedback_uri: a CSV/Parquet file of true labels with the join key; ``{model}`` in
        it stands for each model's name, e.g. ``s3://feedback/{model}/latest.csv`` (templated).
    :param label_column: the feedback's label column (templated).
    :param join_key: ``request_id`` (with ``row`` for requests of several rows) or a row-key
        column present in the logged features and the feedback (templated).
    :param alias: the alias whose version is judged (templated); default ``champion``.
    :param window_hours: how far back served rows are read, ending at ``until`` (templated).
    :param until: the window's end, ISO date/time; empty: now (templated).
    :param since: the window's start, overriding ``window_hours`` (templated).
    :param policy: ``metric``, ``max_drop``, ``min_value``, ``min_rows``, ``cooldown_hours`` (templated).
    :param log_uri: where the server writes its prediction logs; default the registry root (templated).
    """

    template_fields: Sequence[str] = ("registry_uri", "model_name", "models", "feedback_uri", "label_column",
                                      "join_key", "alias", "window_hours", "until", "since", "policy", "log_uri")
    text_fields: Sequence[str] = (*MlopsBaseOperator.text_fields, "feedback_uri", "label_column", "join_key",
                                  "alias", "log_uri")
    default_timeout = timedelta(minutes=20)
    default_alias = QUALITY_ALIAS
    event_keys = ("model_name", "version", "decision", "metric", "live_value", "holdout_value", "labelled_rows",
                  "record_uri")
    summary_keys = ("decision", "retrain", "reason", "version", "labelled_rows", "metric", "live_value", "record_uri")

    def __init__(
        self,
        *,
        feedback_uri: str,
        label_column: str,
        model_name: str | None = None,
        models: list[str] | str | None = None,
        join_key: str = "request_id",
        alias: str = "champion",
        window_hours: float | str = 168,
        until: str | None = None,
        since: str | None = None,
        policy: dict[str, Any] | str | None = None,
        log_uri: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(model_name=model_name, models=models, window_hours=window_hours, until=until, since=since,
                         log_uri=log_uri, **kwargs)
        self.feedback_uri = feedback_uri
        self.label_column = label_column
        self.join_key = join_key
        self.alias = alias
        self.policy = policy

    def check(self, context: Context, model_name: str, since: datetime, until: datetime) -> dict[str, Any]:
        from mlops_airflow.pipeline.monitor import monitor_quality

        result = monitor_quality(
            self.registry,
            model_name,
            self.feedback_uri.replace("{model}", model_name),
            label=self.label_column,
            key=self.join_key,
            alias=self.alias,
            since=since,
            until=until,
            policy=self.policy_object(self.policy),
            log_uri=self.log_uri or None,
            run_key=self.run_key(context),
            s3_client=self.hook.s3_client,
        )
        self.log.info("Live quality of %s: %s, %s; record %s", model_name, result["decision"], result["reason"],
                      result["record_uri"])
        return result

    @staticmethod
    def retrain_asset(model_name: str) -> Asset:
        return quality_asset(model_name)
