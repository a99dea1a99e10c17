"""Continuous training with quality gates between the stages.

    validate -> train -> evaluate (gate) -> approve -> register -> deploy      (+ summary, always)

Bad data fails the run at `validate` and nothing is trained. A candidate the gate does
not bless ends the run green, with `register` and `deploy` skipped and the reason in
the `evaluate` log and its "Gate report" link. When the gate's policy asks for a person
(e.g. `policies: {no_champion: require_approval}`), `approve` waits for an Approve /
Reject answer in the UI's Required Actions; otherwise it passes at once. A model that
does not come up on the server is rolled back.

Every input is a Param: trigger the DAG from the UI's form, or locally with
`airflow dags test mlops_continuous_training -c '{"data_uri": "...", "target": "..."}'`.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from airflow.sdk import DAG, Param

from mlops_airflow.operators.approve import GateApprovalOperator
from mlops_airflow.operators.deploy import DeployModelOperator
from mlops_airflow.operators.evaluate import EvaluateModelOperator
from mlops_airflow.operators.register import RegisterModelOperator
from mlops_airflow.operators.summary import RunSummaryOperator
from mlops_airflow.operators.train import TrainModelOperator
from mlops_airflow.operators.validate import ValidateDataOperator

HERE = Path(__file__).resolve().parent
# `mlops-airflow init` puts include/ inside the DAGs folder; in this repository it sits beside dags/.
INCLUDE = HERE / "include" if (HERE / "include").is_dir() else HERE.parent / "include"

with DAG(
    dag_id="mlops_continuous_training",
    description="Validate, train, gate, register and deploy a scikit-learn model",
    schedule="@daily",  # retrain on a clock by default; mlops_new_data / mlops_asset_training retrain on events
    catchup=False,  # a missed day is not worth a backlog of runs on the same data
    max_active_runs=1,  # one CT run per model at a time: two racing runs would compare against a moving champion
    render_template_as_native_obj=True,  # keep dict Params (estimator_params, gate) as dicts, not strings
    default_args={"retries": 2, "retry_delay": timedelta(seconds=30)},  # transient storage errors only
    tags=["mlops", "continuous-training"],
    params={
        "data_uri": Param(str(INCLUDE / "data" / "trips_2026_01.csv"), type="string",
                          description="CSV/Parquet path or s3:// URI; * matches several files"),
        "target": Param("tipped", type="string", description="The column to predict"),
        "model_name": Param("trip_tips", type="string", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$"),
        "estimator": Param("auto", type="string",
                           description="Dotted path of a scikit-learn estimator, or auto (chosen from the target)"),
        "estimator_params": Param({}, type="object", description="Keyword arguments for the estimator"),
        "pipeline_factory": Param(None, type=["null", "string"],
                                  description="Dotted path of an allowlisted pipeline factory, instead of estimator"),
        "search_space": Param({}, type="object",
                              description='Parameters to tune: lists, or {"type": "loguniform", "low": .., "high": ..}'),
        "tuning": Param({}, type="object", description="Search options: method (halving_random), cv, n_candidates, ..."),
        "row_key": Param("trip_id", type=["null", "string"],
                         description="Column whose hash picks the holdout rows (none: hash the whole row)"),
        "gate": Param(None, type=["null", "string", "object"],
                      description="Gate spec (path or inline); empty: the bundled default gate"),
        "validation": Param(str(INCLUDE / "trips_validation.yaml"), type=["null", "string", "object"],
                            description="Validation spec (path or inline); empty: the minimal check"),
    },
) as dag:
    validate = ValidateDataOperator(
        task_id="validate",
        data_uri="{{ params.data_uri }}",
        target="{{ params.target }}",
        model_name="{{ params.model_name }}",
        validation="{{ params.validation }}",
        retries=0,  # bad data does not get better by retrying
        outlets=[],  # this run trains on it already: an Asset event would start mlops_asset_training as well
    )
    train = TrainModelOperator(
        task_id="train",
        model_name="{{ params.model_name }}",
        dataset_uri=validate.output["dataset_uri"],
        target="{{ params.target }}",
        estimator="{{ params.estimator }}",
        estimator_params="{{ params.estimator_params }}",
        row_key="{{ params.row_key }}",
        pipeline_factory="{{ params.pipeline_factory }}",
        search_space="{{ params.search_space }}",
        tuning="{{ params.tuning }}",
    )
    evaluate = EvaluateModelOperator(
        task_id="evaluate",
        model_name="{{ params.model_name }}",
        candidate_sha256=train.output["sha256"],
        gate="{{ params.gate }}",
    )
    approve = GateApprovalOperator(
        task_id="approve",
        model_name="{{ params.model_name }}",
        verdict_uri=evaluate.output["verdict_uri"],
    )
    register = RegisterModelOperator(
        task_id="register",
        model_name="{{ params.model_name }}",
        candidate_sha256=train.output["sha256"],
        verdict_uri=evaluate.output["verdict_uri"],
    )
    deploy = DeployModelOperator(
        task_id="deploy",
        model_name="{{ params.model_name }}",
        version=register.output["version"],
        verdict_uri=evaluate.output["verdict_uri"],
    )
    summary = RunSummaryOperator(
        task_id="summary",
        model_name="{{ params.model_name }}",
        stages={s: s for s in ("validate", "train", "evaluate", "approve", "register", "deploy")},
    )
    validate >> train >> evaluate >> approve >> register >> deploy >> summary
