"""Score each champion's served answers against labels that arrived later; ask for retraining when quality drops.

    check_quality  -> (per model, only below policy) asset event x-mlops://<model>/quality

The server must log a sample of its traffic (`mlops-airflow serve --log-sample-rate 0.1`),
and the true outcomes must land in a feedback file per model (`feedback_uri`, where `{model}`
stands for the model's name; CSV/Parquet: the label and a join key, `request_id` + `row` or a
row-key column such as `trip_id`). Each run checks every model of `models` in turn (names, or
glob patterns such as `trips_*` for the models that logged in the window): it joins the labels
to the rows the champion answered in the last `window_hours`, computes the live metric (the
gate's primary one by default), compares it with the champion's holdout value, stores a record
under `<model>/monitoring/quality/`, and ends green whatever it found. Too few labelled rows
decide nothing; a drop found again within `cooldown_hours` of asking is recorded without a
second event; a model that cannot be checked (no feedback file, say) is listed under `failed`
and never stops the others. `mlops_drift_retraining` is scheduled on every model's event.
"""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import DAG, Param

from mlops_airflow.operators.monitor import QualityMonitorOperator

with DAG(
    dag_id="mlops_quality_monitor",
    description="Join late labels to served predictions; emit an asset event when live quality drops",
    schedule="@daily",  # labels arrive in batches, later than the traffic
    catchup=False,  # each run reads the whole window again: a backlog tells nothing new
    max_active_runs=1,
    render_template_as_native_obj=True,  # keep the policy a dict
    default_args={"retries": 2, "retry_delay": timedelta(seconds=30)},  # transient storage errors only
    tags=["mlops", "monitoring", "triggers"],
    params={
        "models": Param(["trip_tips"], type="array", minItems=1,
                        items={"type": "string", "minLength": 1},  # names and patterns are checked by the task
                        description="Model names, or glob patterns (trips_*) for the models that logged in the window"),
        "feedback_uri": Param("s3://mlops-feedback/{model}/latest.csv", type="string", minLength=1,
                              description="CSV/Parquet of true labels with the join key; {model}: each model's name"),
        "label": Param("tipped", type="string", minLength=1, description="The feedback's label column"),
        "key": Param("request_id", type="string", minLength=1,
                     description="request_id (the answer's X-Request-ID, + row) or a row-key column, e.g. trip_id"),
        "alias": Param("champion", type="string", description="The alias whose version is judged"),
        "window_hours": Param(168, type="number", exclusiveMinimum=0,
                              description="Hours of served rows, up to the run, that the labels may cover"),
        # metric (default: the gate's primary one), max_drop, min_value, min_rows, cooldown_hours:
        # see mlops_airflow.evaluation.live.
        "policy": Param({"max_drop": 0.05, "min_rows": 100, "cooldown_hours": 24}, type="object"),
    },
) as dag:
    QualityMonitorOperator(
        task_id="check_quality",
        models="{{ params.models }}",
        feedback_uri="{{ params.feedback_uri }}",
        label_column="{{ params.label }}",
        join_key="{{ params.key }}",
        alias="{{ params.alias }}",
        window_hours="{{ params.window_hours }}",
        until="{{ dag_run.run_after }}",  # the window ends when the run was due: a re-run reads the same rows
        policy="{{ params.policy }}",
    )
