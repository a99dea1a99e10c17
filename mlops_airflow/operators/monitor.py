"""Watch served traffic (drift) and late labels (live quality); ask for retraining through an Asset event."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
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
    only what the task adds to it. Subclasses name the default alias, the asset it resolves
    to and the result keys copied into the event's ``extra``.
    """

    default_alias: str
    event_keys: tuple[str, ...]

    def __init__(self, **kwargs: Any) -> None:
        if "outlets" not in kwargs:
            from airflow.sdk import AssetAlias

            kwargs["outlets"] = [AssetAlias(self.default_alias)]
        super().__init__(**kwargs)

    def retrain_asset(self) -> Asset:
        raise NotImplementedError

    def emit_asset_events(self, context: Context, result: dict[str, Any]) -> None:
        """Add ``retrain_asset()`` with the result's ``event_keys`` to every alias outlet (call only on retrain)."""
        from airflow.sdk import AssetAlias

        extra = {key: result[key] for key in self.event_keys}
        for outlet in self.outlets:
            if isinstance(outlet, AssetAlias):
                asset = self.retrain_asset()
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
    there) and returns its result (``outcome``, ``retrain``, ``drifted_columns``, ``rows``,
    ``window``, ``record_uri``, ``report_uri``, ...). The task succeeds whatever the
    outcome: drift is a normal finding. A missing champion or a bad policy fails it.

    Asset events: only when the result says ``retrain``, the task emits one event with
    ``extra`` ``{model_name, version, outcome, drifted_columns, max_psi, rows, record_uri,
    report_uri}``. By default the outlet is the alias :data:`DRIFT_ALIAS`, resolved at run
    time to ``drift_asset(model_name)`` (``x-mlops://<model>/drift``): an alias emits only
    what the task adds to it, whereas an ``Asset`` outlet gets an event on every success.
    Give ``outlets=[AssetAlias(...)]`` to resolve to the same asset under another alias, or
    ``outlets=[]`` for none.

    :param model_name: the served model (templated).
    :param alias: the alias whose version is judged (templated); default ``champion``.
    :param window_hours: the window's length, ending at ``until`` (templated).
    :param until: the window's end, ISO date/time; empty: now (templated).
    :param since: the window's start, overriding ``window_hours`` (templated).
    :param all_versions: count rows every version served, not only the alias's (templated).
    :param policy: ``min_rows``, ``min_drifted_columns``, ``action`` and thresholds (templated).
    :param log_uri: where the server writes its prediction logs; default the registry root (templated).
    :param redact: leave data values out of the record and report (they can be personal data).
    """

    template_fields: Sequence[str] = ("registry_uri", "model_name", "alias", "window_hours", "until", "since",
                                      "all_versions", "policy", "log_uri")
    text_fields: Sequence[str] = (*MlopsBaseOperator.text_fields, "alias", "log_uri")
    default_timeout = timedelta(minutes=20)
    default_alias = DRIFT_ALIAS
    event_keys = ("model_name", "version", "outcome", "drifted_columns", "max_psi", "rows", "record_uri",
                  "report_uri")

    def __init__(
        self,
        *,
        model_name: str,
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
        super().__init__(**kwargs)
        self.model_name = model_name
        self.alias = alias
        self.window_hours = window_hours
        self.until = until
        self.since = since
        self.all_versions = all_versions
        self.policy = policy
        self.log_uri = log_uri
        self.redact = redact

    def run(self, context: Context) -> dict[str, Any]:
        from mlops_airflow.pipeline.monitor import monitor_drift

        all_versions = self.all_versions
        if isinstance(all_versions, str):
            all_versions = all_versions.strip().lower() in ("true", "1", "yes")
        result = monitor_drift(
            self.registry,
            self.model_name,
            alias=self.alias,
            window_hours=self.hours(self.window_hours),
            since=self.since or None,
            until=str(self.until) if self.until else None,
            all_versions=bool(all_versions),
            policy=self.policy_object(self.policy),
            log_uri=self.log_uri or None,
            redact=self.redact,
            run_key=self.run_key(context),
            s3_client=self.hook.s3_client,
        )
        self.log.info("Drift of %s: %s, %s; record %s", self.model_name, result["outcome"], result["reason"],
                      result["record_uri"])
        if result["retrain"]:
            self.emit_asset_events(context, result)
        return result

    def retrain_asset(self) -> Asset:
        return drift_asset(self.model_name)


class QualityMonitorOperator(_RetrainEventOperator):
    """Score what the champion served against labels that arrived later; emit an event when quality dropped.

    Calls :func:`~mlops_airflow.pipeline.monitor.monitor_quality` (the join and the policy
    are :func:`~mlops_airflow.evaluation.live.live_quality`'s) and returns its decision
    record (``decision``, ``retrain``, ``reason``, ``metric``, ``live_value``,
    ``holdout_value``, ``labelled_rows``, ``window``, ``record_uri``, ...). The task
    succeeds whatever the decision; a missing champion, bad feedback or a bad policy fails it.

    Asset events: only when the record says ``retrain``, one event with ``extra``
    ``{model_name, version, decision, metric, live_value, holdout_value, labelled_rows,
    record_uri}``, on ``quality_asset(model_name)`` (``x-mlops://<model>/quality``) through
    the alias :data:`QUALITY_ALIAS` by default; ``outlets=[]`` for none (as for
    :class:`DriftMonitorOperator`).

    :param model_name: the served model (templated).
    :param feedback_uri: a CSV/Parquet file of true labels with the join key (templated).
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

    template_fields: Sequence[str] = ("registry_uri", "model_name", "feedback_uri", "label_column", "join_key",
                                      "alias", "window_hours", "until", "since", "policy", "log_uri")
    text_fields: Sequence[str] = (*MlopsBaseOperator.text_fields, "feedback_uri", "label_column", "join_key",
                                  "alias", "log_uri")
    default_timeout = timedelta(minutes=20)
    default_alias = QUALITY_ALIAS
    event_keys = ("model_name", "version", "decision", "metric", "live_value", "holdout_value", "labelled_rows",
                  "record_uri")

    def __init__(
        self,
        *,
        model_name: str,
        feedback_uri: str,
        label_column: str,
        join_key: str = "request_id",
        alias: str = "champion",
        window_hours: float | str = 168,
        until: str | None = None,
        since: str | None = None,
        policy: dict[str, Any] | str | None = None,
        log_uri: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.model_name = model_name
        self.feedback_uri = feedback_uri
        self.label_column = label_column
        self.join_key = join_key
        self.alias = alias
        self.window_hours = window_hours
        self.until = until
        self.since = since
        self.policy = policy
        self.log_uri = log_uri

    def run(self, context: Context) -> dict[str, Any]:
        from mlops_airflow.pipeline.monitor import monitor_quality

        result = monitor_quality(
            self.registry,
            self.model_name,
            self.feedback_uri,
            label=self.label_column,
            key=self.join_key,
            alias=self.alias,
            window_hours=self.hours(self.window_hours),
            since=self.since or None,
            until=str(self.until) if self.until else None,
            policy=self.policy_object(self.policy),
            log_uri=self.log_uri or None,
            run_key=self.run_key(context),
            s3_client=self.hook.s3_client,
        )
        self.log.info("Live quality of %s: %s, %s; record %s", self.model_name, result["decision"], result["reason"],
                      result["record_uri"])
        if result["retrain"]:
            self.emit_asset_events(context, result)
        return result

    def retrain_asset(self) -> Asset:
        return quality_asset(self.model_name)
