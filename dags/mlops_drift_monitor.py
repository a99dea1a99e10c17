"""Watch what the model server answers for drift from each champion's training data; ask for retraining.

    check_drift  -> (per model, only on drift, by policy) asset event x-mlops://<model>/drift

The server must log a sample of its traffic (`mlops-airflow serve --log-sample-rate 0.1`).
Each run checks every model of `models` in turn (names, or glob patterns such as `trips_*`
for the models that logged in the window): it compares the rows each champion answered in
the last `window_hours` with the data it was trained on, stores a record and an HTML report
under `<model>/monitoring/drift/`, and ends green whatever it found. Too few rows decide
nothing; a model that cannot be checked is listed under `failed` and never stops the others.
`mlops_drift_retraining` is scheduled on every model's event (through the alias `mlops_drift`);
for one model alone, schedule on `drift_asset("trip_tips")`.
"""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import DAG, Param

from mlops_airflow.operators.monitor import DriftMonitorOperator

with DAG(
    dag_id="mlops_drift_monitor",
    description="Compare served traffic with the champion's training data; emit an asset event on drift",
    schedule="@hourly",
    catchup=False,  # a backlog of checks over the same logs tells nothing new
    max_active_runs=1,
    render_template_as_native_obj=True,  # keep the policy a dict
    default_args={"retries": 2, "retry_delay": timedelta(seconds=30)},  # transient storage errors only
    tags=["mlops", "monitoring", "triggers"],
    params={
        "models": Param(["trip_tips"], type="array", minItems=1,
                        items={"type": "string", "minLength": 1},  # names and patterns are checked by the task
                        description="Model names, or glob patterns (trips_*) for the models that logged in the window"),
        "alias": Param("champion", type="string", description="The alias whose version is judged"),
        "window_hours": Param(24, type="number", exclusiveMinimum=0, description="Hours of traffic, up to the run"),
        "min_rows": Param(300, type="integer", minimum=1, description="Fewer logged rows: no decision"),
        # min_drifted_columns, action (retrain | warn), cooldown_hours, columns, psi, ks_pvalue, chi2_pvalue,
        # unseen_share, per_column: see mlops_airflow.pipeline.monitor. The tests' p-values are off
        # (0) by default here: with many rows they flag shifts too small to matter; PSI decides.
        "policy": Param({"psi": 0.2, "ks_pvalue": 0, "chi2_pvalue": 0, "unseen_share": 0.01}, type="object"),
    },
) as dag:
    DriftMonitorOperator(
        task_id="check_drift",
        models="{{ params.models }}",
        alias="{{ params.alias }}",
        window_hours="{{ params.window_hours }}",
        until="{{ dag_run.run_after }}",  # the window ends when the run was due: a re-run checks the same rows
        policy="{{ dict(params.policy, min_rows=params.min_rows) }}",
    )
