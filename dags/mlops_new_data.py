"""New data lands on S3 -> validate it -> an Asset event starts training (`mlops_asset_training`).

    wait_for_data (deferrable: no worker slot while waiting) -> validate (emits x-mlops://<model>/validated)

`@continuous` with one active run: as soon as a run ends, the next one waits for the
next batch. The sensor remembers what it handed on in a watermark record beside the
models, so each file triggers one run; a cleared or retried run gets the same files
again. Validation covers everything under the prefix that matches `pattern`: the
model retrains on all data so far, the new files being what made it worth doing.

S3 comes from the `mlops_s3` connection (or the standard AWS environment).
"""

from __future__ import annotations

from airflow.sdk import DAG, Param

from mlops_airflow.operators.validate import ValidateDataOperator
from mlops_airflow.sensors.s3 import S3NewDataSensor

with DAG(
    dag_id="mlops_new_data",
    description="Wait for new files under an S3 prefix and validate them for training",
    schedule="@continuous",
    catchup=False,
    max_active_runs=1,  # required by @continuous, and one watcher per watermark keeps claims simple
    tags=["mlops", "continuous-training", "triggers"],
    params={
        "prefix_uri": Param("s3://mlops-landing/trips", type="string", description="The S3 prefix new files land under"),
        "pattern": Param("*.csv", type="string", description="Which keys below the prefix are data"),
        "target": Param("tipped", type="string", description="The column to predict"),
        "model_name": Param("trip_tips", type="string", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$"),
        "validation": Param(None, type=["null", "string", "object"],
                            description="Validation spec (path or inline); empty: the minimal check"),
    },
) as dag:
    wait_for_data = S3NewDataSensor(
        task_id="wait_for_data",
        prefix_uri="{{ params.prefix_uri }}",
        pattern="{{ params.pattern }}",
        state_key="{{ params.model_name }}.new_data",  # one watermark per model, whatever the DAG is called
        poke_interval=60,
    )
    validate = ValidateDataOperator(
        task_id="validate",
        data_uri="{{ params.prefix_uri.rstrip('/') }}/{{ params.pattern }}",
        target="{{ params.target }}",
        model_name="{{ params.model_name }}",
        validation="{{ params.validation }}",
        retries=0,  # bad data does not get better by retrying
    )
    wait_for_data >> validate
