"""One model per segment (per zone, store, region), each through the whole pipeline on its own.

    split ──► segment[i]: validate -> train -> evaluate (gate) -> register -> deploy ──► summary

`split` writes one file per value of `segment_column` into the artifact store; the
`segment` task group is mapped over them, so each segment is validated, trained, gated,
registered and promoted under its own model (`<model_prefix><segment>`). A segment that
fails stops only its own chain; `summary` runs whatever happened and says, per segment,
promoted / kept / failed and why. The run fails only if `fail_on_segment_failure` is true.

`deploy` moves each segment's `champion` alias only (target "none"): serve a segment with
`mlops-airflow serve <model_prefix><segment>`.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from airflow.sdk import DAG, Param, task_group

from mlops_airflow.operators.deploy import DeployModelOperator
from mlops_airflow.operators.evaluate import EvaluateModelOperator
from mlops_airflow.operators.register import RegisterModelOperator
from mlops_airflow.operators.segments import SegmentSummaryOperator, SplitSegmentsOperator
from mlops_airflow.operators.train import TrainModelOperator
from mlops_airflow.operators.validate import ValidateDataOperator

HERE = Path(__file__).resolve().parent
INCLUDE = HERE / "include" if (HERE / "include").is_dir() else HERE.parent / "include"

with DAG(
    dag_id="mlops_per_segment_training",
    description="One model per segment, trained and promoted independently",
    schedule=None,
    catchup=False,
    max_active_runs=1,
    render_template_as_native_obj=True,
    default_args={"retries": 2, "retry_delay": timedelta(seconds=30)},
    tags=["mlops", "continuous-training", "segments"],
    params={
        "data_uri": Param(str(INCLUDE / "data" / "trips_2026_01.csv"), type="string"),
        "segment_column": Param("pickup_zone", type="string", description="One model per value of this column"),
        "model_prefix": Param("trips_", type="string", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,100}$"),
        "target": Param("tipped", type="string"),
        "estimator": Param("auto", type="string"),
        "estimator_params": Param({}, type="object"),
        "row_key": Param("trip_id", type=["null", "string"]),
        "gate": Param(None, type=["null", "string", "object"]),
        "validation": Param(str(INCLUDE / "trips_validation.yaml"), type=["null", "string", "object"]),
        "fail_on_segment_failure": Param(False, type="boolean",
                                         description="Fail the run when any segment fails (default: report it only)"),
    },
) as dag:
    split = SplitSegmentsOperator(
        task_id="split",
        data_uri="{{ params.data_uri }}",
        segment_column="{{ params.segment_column }}",
        model_prefix="{{ params.model_prefix }}",
        retries=0,
    )

    @task_group(group_id="segment")
    def segment(segment: str, model_name: str, data_uri: str, rows: int) -> None:
        # Inside a mapped group each task depends only on the same segment's upstream task,
        # so one segment's failure never blocks another's chain.
        validate = ValidateDataOperator(task_id="validate", data_uri=data_uri, model_name=model_name,
                                        target="{{ params.target }}", validation="{{ params.validation }}", retries=0)
        train = TrainModelOperator(task_id="train", model_name=model_name, dataset_uri=validate.output["dataset_uri"],
                                   target="{{ params.target }}", estimator="{{ params.estimator }}",
                                   estimator_params="{{ params.estimator_params }}", row_key="{{ params.row_key }}")
        evaluate = EvaluateModelOperator(task_id="evaluate", model_name=model_name,
                                         candidate_sha256=train.output["sha256"], gate="{{ params.gate }}")
        register = RegisterModelOperator(task_id="register", model_name=model_name,
                                         candidate_sha256=train.output["sha256"],
                                         verdict_uri=evaluate.output["verdict_uri"])
        deploy = DeployModelOperator(task_id="deploy", model_name=model_name, version=register.output["version"],
                                     verdict_uri=evaluate.output["verdict_uri"], target="none")
        validate >> train >> evaluate >> register >> deploy

    summary = SegmentSummaryOperator(task_id="summary", split_task_id="split", group_id="segment",
                                     fail_on_failure="{{ params.fail_on_segment_failure }}")
    split >> segment.expand_kwargs(split.output) >> summary
