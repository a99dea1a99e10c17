"""Retrain when the drift monitor asks for it: scheduled on the drift Asset, not a clock.

    (asset event x-mlops://trip_tips/drift) -> a mlops_continuous_training run for trip_tips

`mlops_drift_monitor` emits the event only when its policy says retrain; the event's
`extra` holds the drifted columns and the record's URI. The CT run validates the current
data (its `data_uri` Param) and gates the retrained candidate against the champion as
usual. To keep one DAG instead, give the CT DAG both triggers:
`schedule=AssetOrTimeSchedule(timetable=CronTriggerTimetable("@daily", timezone="UTC"), assets=drift_asset(MODEL))`.
"""

from __future__ import annotations

from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator
from airflow.sdk import DAG

from mlops_airflow.operators.monitor import drift_asset

MODEL = "trip_tips"  # the schedule names one model's asset, so the model is fixed here, not a Param

with DAG(
    dag_id="mlops_drift_retraining",
    description="Start continuous training when served traffic drifted from the champion's training data",
    schedule=[drift_asset(MODEL)],
    catchup=False,
    max_active_runs=1,
    tags=["mlops", "continuous-training", "triggers"],
) as dag:
    TriggerDagRunOperator(
        task_id="retrain",
        trigger_dag_id="mlops_continuous_training",
        conf={"model_name": MODEL},  # its other Params (data_uri, gate, ...) keep their defaults
    )
