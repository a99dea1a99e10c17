"""Train whenever the model's validated dataset changes: scheduled on an Asset, not a clock.

    (asset event x-mlops://trip_tips/validated) -> train -> evaluate (gate) -> approve -> register -> deploy

Any `ValidateDataOperator` for `trip_tips` that succeeds emits the event, with the
validated snapshot's URI in its `extra` (see `mlops_new_data`). This DAG does not
validate again, so it cannot trigger itself. `mlops_continuous_training` validates with
`outlets=[]` (it trains in the same run), so only `mlops_new_data` starts this DAG.
"""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import DAG, Param

from mlops_airflow.operators.approve import GateApprovalOperator
from mlops_airflow.operators.deploy import DeployModelOperator
from mlops_airflow.operators.evaluate import EvaluateModelOperator
from mlops_airflow.operators.register import RegisterModelOperator
from mlops_airflow.operators.summary import RunSummaryOperator
from mlops_airflow.operators.train import TrainModelOperator
from mlops_airflow.operators.validate import validated_asset

MODEL = "trip_tips"  # the schedule names one model's asset, so the model is fixed here, not a Param

with DAG(
    dag_id="mlops_asset_training",
    description="Train, gate, register and deploy when the validated dataset changes",
    schedule=[validated_asset(MODEL)],
    catchup=False,
    max_active_runs=1,
    render_template_as_native_obj=True,
    default_args={"retries": 2, "retry_delay": timedelta(seconds=30)},
    tags=["mlops", "continuous-training", "triggers"],
    params={
        # Empty: the snapshot named by the triggering asset event (set it to run by hand).
        "dataset_uri": Param(None, type=["null", "string"], description="A validated snapshot's dataset.json URI"),
        "target": Param("tipped", type="string"),
        "estimator": Param("auto", type="string"),
        "estimator_params": Param({}, type="object"),
        "row_key": Param("trip_id", type=["null", "string"]),
        "gate": Param(None, type=["null", "string", "object"]),
    },
) as dag:
    train = TrainModelOperator(
        task_id="train",
        model_name=MODEL,
        dataset_uri="{{ params.dataset_uri or (triggering_asset_events.values() | first | last).extra.dataset_uri }}",
        target="{{ params.target }}",
        estimator="{{ params.estimator }}",
        estimator_params="{{ params.estimator_params }}",
        row_key="{{ params.row_key }}",
        # A run by hand with these Params has no event to read its data from: retraining on drift
        # goes through mlops_continuous_training instead (mlops_drift_retraining's fallback).
        retrain_trigger=False,
    )
    evaluate = EvaluateModelOperator(task_id="evaluate", model_name=MODEL, candidate_sha256=train.output["sha256"],
                                     gate="{{ params.gate }}")
    approve = GateApprovalOperator(task_id="approve", model_name=MODEL, verdict_uri=evaluate.output["verdict_uri"])
    register = RegisterModelOperator(task_id="register", model_name=MODEL, candidate_sha256=train.output["sha256"],
                                     verdict_uri=evaluate.output["verdict_uri"])
    deploy = DeployModelOperator(task_id="deploy", model_name=MODEL, version=register.output["version"],
                                 verdict_uri=evaluate.output["verdict_uri"])
    summary = RunSummaryOperator(
        task_id="summary",
        model_name=MODEL,
        stages={s: s for s in ("train", "evaluate", "approve", "register", "deploy")},
    )
    train >> evaluate >> approve >> register >> deploy >> summary
