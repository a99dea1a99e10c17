"""Plan retraining from the monitors' asset events: one DAG run per model, as its lineage records."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from mlops_airflow.operators.base import MlopsBaseOperator

if TYPE_CHECKING:
    from airflow.sdk import Context

#: A DAG run's note holds at most 1000 characters (``dag_run_note.content``).
NOTE_LIMIT = 1000


def triggering_events(context: Context) -> list[dict[str, Any]]:
    """The run's triggering asset events as plain ``{"uri", "extra", "timestamp", "source"}``, each once.

    Airflow lists an event under its asset and again under each alias it came through;
    only the asset's list is read.
    """
    from airflow.sdk import Asset

    accessor = context.get("triggering_asset_events") or {}
    events = []
    for key in accessor:
        if not isinstance(key, Asset):
            continue
        for event in accessor[key]:
            events.append({
                "uri": event.asset.uri,
                "extra": dict(event.extra or {}),
                "timestamp": event.timestamp.isoformat(),
                "source": f"{event.source_dag_id}/{event.source_run_id}/{event.source_task_id}",
            })
    return events


class PlanRetrainingOperator(MlopsBaseOperator):
    """Read which models the triggering asset events (and ``models``) ask to retrain; plan one DAG run each.

    Calls :func:`~mlops_airflow.pipeline.retrain.plan_retraining` on the run's
    ``triggering_asset_events`` (the monitors' ``x-mlops://<model>/drift|quality``): each
    model's ``alias`` manifest names the DAG and conf that retrain it
    (``lineage.train.trigger``), else ``fallback_dag_id`` with ``{"model_name": <model>}``.
    Several events for one model make one run. Returns the keyword arguments of one
    ``TriggerDagRunOperator`` per run (``trigger_dag_id``, ``conf``, ``trigger_run_id``,
    ``note``), for ``TriggerDagRunOperator.partial(...).expand_kwargs(plan.output)``
    (Airflow maps only over a return value), and pushes the plan itself (``runs``,
    ``skipped``, ``deferred``) under the XCom key ``plan``. Each ``trigger_run_id`` is
    derived from this run and the model, so a retried trigger task finds the run it
    started (``skip_when_already_exists=True``) instead of starting a second.

    :param models: model names to retrain whatever the events say, e.g. from a manual run (templated).
    :param alias: the alias whose manifest says how to retrain (templated); default ``champion``.
    :param fallback_dag_id: what retrains a model whose manifest records no trigger; default
        ``mlops_continuous_training`` (templated).
    """

    template_fields: Sequence[str] = ("registry_uri", "models", "alias", "fallback_dag_id")
    text_fields: Sequence[str] = (*MlopsBaseOperator.text_fields, "alias", "fallback_dag_id")

    def __init__(self, *, models: list[str] | str | None = None, alias: str = "champion",
                 fallback_dag_id: str | None = None, **kwargs: Any) -> None:
        kwargs.setdefault("multiple_outputs", False)  # the return value is the list mapped over
        super().__init__(**kwargs)
        self.models = models
        self.alias = alias
        self.fallback_dag_id = fallback_dag_id

    def run(self, context: Context) -> list[dict[str, Any]]:
        from airflow.sdk.configuration import conf

        from mlops_airflow.pipeline.retrain import plan_retraining

        events = triggering_events(context)
        uris = sorted({event["uri"] for event in events})
        self.log.info("%d triggering asset events: %s%s", len(events), ", ".join(uris[:20]), " ..." if len(uris) > 20 else "")
        # More mapped triggers than max_map_length would fail this task and so retrain nothing.
        plan = plan_retraining(self.registry, events, models=self.string_list(self.models, "models"),
                               alias=self.alias, fallback_dag_id=self.fallback_dag_id,
                               limit=conf.getint("core", "max_map_length", fallback=1024))
        triggers = []
        for run in plan["runs"]:
            self.log.info("Retrain %s: %s with conf %s (%s)", ", ".join(run["models"]), run["dag_id"], run["conf"],
                          "as its lineage records" if run["source"] == "lineage" else "fallback: no trigger recorded")
            triggers.append({
                "trigger_dag_id": run["dag_id"],
                "conf": run["conf"],
                "trigger_run_id": f"retrain__{run['models'][0]}__{context['run_id']}",
                "note": "; ".join(run["reasons"])[:NOTE_LIMIT],
            })
        context["ti"].xcom_push(key="plan", value=plan)
        return triggers
