"""Retrain when a monitor asks for it: scheduled on the drift and quality Assets, not a clock.

    (asset event x-mlops://trip_tips/drift or x-mlops://trip_tips/quality)
        -> a mlops_continuous_training run for trip_tips

`mlops_drift_monitor` and `mlops_quality_monitor` emit their event only when their policy
says retrain; the event's `extra` holds the finding (drifted columns, or the live metric
against the holdout's) and the record's URI. Either event alone starts a run. The CT run
validates the current data (its `data_uri` Param) and gates the retrained candidate against
the champion as usual. To keep one DAG instead, give the CT DAG the triggers and a clock:
`schedule=AssetOrTimeSchedule(timetable=CronTriggerTimetable("@daily", timezone="UTC"),
assets=drift_asset(MODEL) | quality_asset(MODEL))`.
"""

from __future__ import annotations

from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator
from airflow.sdk import DAG

from mlops_airflow.operators.monitor import drift_asset, quality_asset

MODEL = "trip_tips"  # the schedule names one model's asset, so the model is fixed here, not a Param

with DAG(
    dag_id="mlops_drift_retraining",
    description="Start continuous training when served traffic drifted or live quality dropped",
    schedule=drift_asset(MODEL) | quality_asset(MODEL),  # a list would wait for both
    catchup=False,
    max_active_runs=1,
    tags=["mlops", "continuous-training", "triggers"],
) as dag:
    TriggerDagRunOperator(
        task_id="retrain",
        trigger_dag_id="mlops_continuous_training",
        conf={"model_name": MODEL},  # its other Params (data_uri, gate, ...) keep their defaults
    )
