"""Roll a model's champion back to an earlier version, by hand.

Trigger it from the UI with the model's name, the version to put back (empty: the one
before the current champion) and a reason; the alias moves by compare-and-swap, the model
server picks the version up, and who/why is recorded on the alias.
"""

from __future__ import annotations

from airflow.sdk import DAG, Param

from mlops_airflow.operators.rollback import RollbackModelOperator

with DAG(
    dag_id="mlops_rollback",
    description="Put an earlier model version back behind the champion alias",
    schedule=None,
    catchup=False,
    max_active_runs=1,
    tags=["mlops", "rollback"],
    params={
        "model_name": Param("trip_tips", type="string", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$"),
        "to_version": Param(None, type=["null", "integer"], minimum=1,
                            description="The version to put back; empty for the previous champion"),
        "reason": Param("manual rollback", type="string", minLength=3, description="Why: recorded on the alias"),
    },
) as dag:
    RollbackModelOperator(
        task_id="rollback",
        model_name="{{ params.model_name }}",
        to_version="{{ params.to_version }}",
        reason="{{ params.reason }}",
        retries=0,  # a person is watching: fail once, clearly
    )
