"""The reference for bench/parse_time.py: the example CT DAG's shape, made of EmptyOperators.

Same DAG arguments, same Params, seven tasks in a chain: the difference in parse time between
this file and dags/mlops_continuous_training.py is what our operators cost the DAG processor.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import DAG, Param, chain

INCLUDE = Path(__file__).resolve().parent.parent / "include"

with DAG(
    dag_id="empty_twin",
    schedule=None,
    catchup=False,
    max_active_runs=1,
    render_template_as_native_obj=True,
    default_args={"retries": 2, "retry_delay": timedelta(seconds=30)},
    params={
        "data_uri": Param(str(INCLUDE / "data" / "trips_2026_01.csv"), type="string"),
        "target": Param("tipped", type="string"),
        "model_name": Param("trip_tips", type="string", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$"),
        "estimator": Param("auto", type="string"),
        "estimator_params": Param({}, type="object"),
        "row_key": Param("trip_id", type=["null", "string"]),
        "gate": Param(None, type=["null", "string", "object"]),
        "validation": Param(str(INCLUDE / "trips_validation.yaml"), type=["null", "string", "object"]),
    },
) as dag:
    chain(*(EmptyOperator(task_id=name) for name in ("validate", "train", "evaluate", "approve", "register", "deploy", "summary")))
