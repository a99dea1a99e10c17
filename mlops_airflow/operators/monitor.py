"""Watch served traffic for drift and ask for retraining through an Asset event."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from mlops_airflow.operators.base import MlopsBaseOperator

if TYPE_CHECKING:
    from airflow.sdk import Asset, Context

#: The alias every DriftMonitorOperator emits through by default; it resolves to :func:`drift_asset`.
DRIFT_ALIAS = "mlops_drift"


def drift_asset(model_name: str) -> Asset:
    """The Asset a drift monitor updates when ``model_name`` should be retrained: schedule training on it.

    ``x-mlops://`` like :func:`~mlops_airflow.operators.validate.validated_asset`: Airflow's
    ``x-`` custom scheme skips the provider URI normalizers (cheap to parse).
    """
    from airflow.sdk import Asset

    return Asset(f"x-mlops://{model_name}/drift")


class DriftMonitorOperator(MlopsBaseOperator):
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
        if "outlets" not in kwargs:
            from airflow.sdk import AssetAlias

            kwargs["outlets"] = [AssetAlias(DRIFT_ALIAS)]
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
        from mlops_airflow.exceptions import ConfigError
        from mlops_airflow.pipeline.monitor import monitor_drift
        from mlops_airflow.registry.registry import idempotency_key

        policy = self.policy
        if isinstance(policy, str):  # a DAG not rendering native objects hands JSON text over
            import json

            try:
                policy = json.loads(policy) if policy.strip() else None
            except ValueError as exc:
                raise ConfigError(f"policy is not a JSON object: {exc}") from exc
        all_versions = self.all_versions
        if isinstance(all_versions, str):
            all_versions = all_versions.strip().lower() in ("true", "1", "yes")
        try:
            window_hours = float(self.window_hours) if self.window_hours not in (None, "") else None
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"window_hours={self.window_hours!r} is not a number") from exc
        result = monitor_drift(
            self.registry,
            self.model_name,
            alias=self.alias,
            window_hours=window_hours,
            since=self.since or None,
            until=str(self.until) if self.until else None,
            all_versions=bool(all_versions),
            policy=policy,
            log_uri=self.log_uri or None,
            redact=self.redact,
            run_key=idempotency_key(**{k: v for k, v in self.lineage(context).items() if k != "try_number"}),
            s3_client=self.hook.s3_client,
        )
        self.log.info("Drift of %s: %s, %s; record %s", self.model_name, result["outcome"], result["reason"],
                      result["record_uri"])
        if result["retrain"]:
            self.emit_asset_events(context, result)
        return result

    def emit_asset_events(self, context: Context, result: dict[str, Any]) -> None:
        from airflow.sdk import AssetAlias

        extra = {key: result[key] for key in ("model_name", "version", "outcome", "drifted_columns", "max_psi",
                                              "rows", "record_uri", "report_uri")}
        for outlet in self.outlets:
            if isinstance(outlet, AssetAlias):
                asset = drift_asset(self.model_name)
                context["outlet_events"][outlet].add(asset, extra=extra)
                self.log.info("Asset event for %s through alias %s: retraining asked for", asset.uri, outlet.name)
