"""Retrain whichever model a monitor asks for: scheduled on the monitors' asset aliases, not a clock.

    (asset events x-mlops://<model>/drift or x-mlops://<model>/quality, any model)
        -> plan -> retrain[i]: one run of the DAG that trained <model>, with that run's Params

`mlops_drift_monitor` and `mlops_quality_monitor` emit one event per model whose policy says
retrain, through the aliases `mlops_drift` and `mlops_quality`. `plan` reads the model names
from the events, and each model's champion manifest says how to retrain it
(`lineage.train.trigger`: the DAG that trained it and the Params of that run); a model
trained before that was recorded is retrained by `mlops_continuous_training` with only its
`model_name` (the log says so). Several events for one model make one run; the retrained
candidate is gated against the champion as usual. A manual run retrains the models named in
its `models` Param.
"""

from __future__ import annotations

from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator
from airflow.sdk import DAG, AssetAlias, Param

from mlops_airflow.operators.monitor import DRIFT_ALIAS, QUALITY_ALIAS
from mlops_airflow.operators.retrain import PlanRetrainingOperator

with DAG(
    dag_id="mlops_drift_retraining",
    description="Retrain each model whose served traffic drifted or whose live quality dropped",
    # Scheduled on the aliases, so every model's event counts, including models first seen after this
    # file was parsed. Airflow 3.3 queues a DAG scheduled on an alias for each event added through it
    # (airflow/assets/manager.py, register_asset_change: dags_to_queue_from_asset_alias) and resolves
    # the alias when the scheduler evaluates the schedule, not at parse time (assets/evaluation.py,
    # AssetEvaluator._resolve_asset_alias), so an alias that had no asset yet needs no re-parse. The
    # run's triggering_asset_events are every event through the aliases since the previous run
    # (jobs/scheduler_job_runner.py, _create_dag_runs_asset_triggered). `|`: either alias alone starts a run.
    schedule=AssetAlias(DRIFT_ALIAS) | AssetAlias(QUALITY_ALIAS),
    catchup=False,
    max_active_runs=1,  # events arriving meanwhile wait for the next run, which plans them together
    render_template_as_native_obj=True,  # keep the models list a list
    tags=["mlops", "continuous-training", "triggers"],
    params={
        "models": Param([], type="array", items={"type": "string", "minLength": 1},
                        description="Models to retrain besides those the triggering events name (for manual runs)"),
    },
) as dag:
    plan = PlanRetrainingOperator(task_id="plan", models="{{ params.models }}")
    # One trigger per model. No logical date, as a run triggered from the UI or REST has none (a
    # utcnow() one could collide); the run id comes from the plan, so a retry finds its run.
    TriggerDagRunOperator.partial(
        task_id="retrain",
        logical_date=None,
        skip_when_already_exists=True,
    ).expand_kwargs(plan.output)
