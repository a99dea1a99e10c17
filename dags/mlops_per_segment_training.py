"""One model per segment (per server, store, zone), thousands of them in one run, each gated and served.

    split ──► train_segments[batch 0 .. ~50] ──► summary

`split` validates the whole table once and cuts it by `segment_column` into batches; each
mapped `train_segments` task trains its batch's segments one by one with the same stages a
continuous-training run uses. Per segment, the `architectures` are tried in order (a
cascade) until one passes that segment's gate; the winner becomes `<model_prefix><segment>`'s
next version and champion, and the shared model server (`mlops-airflow serve`) must serve it,
else it is rolled back. A segment that fails (too few rows, rows failing validation, a
training error, nothing passing the gate) never stops another; `summary` says, per segment,
promoted / kept / failed, which architecture won, and why. The run fails only if
`fail_on_segment_failure` is true. Mapped tasks are labelled by their segments in the UI.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from airflow.sdk import DAG, Param

from mlops_airflow.operators.segments import (
    BATCH_LABEL,
    SegmentSummaryOperator,
    SplitSegmentsOperator,
    TrainSegmentsOperator,
)

HERE = Path(__file__).resolve().parent
INCLUDE = HERE / "include" if (HERE / "include").is_dir() else HERE.parent / "include"

with DAG(
    dag_id="mlops_per_segment_training",
    description="One model per segment, thousands per run, each gated, registered and served",
    schedule=None,
    catchup=False,
    max_active_runs=1,
    render_template_as_native_obj=True,  # keep lists and dicts (architectures, gate) as they are
    default_args={"retries": 2, "retry_delay": timedelta(seconds=30)},  # transient storage errors only
    tags=["mlops", "continuous-training", "segments"],
    params={
        "data_uri": Param(str(INCLUDE / "data" / "trips_2026_01.csv"), type="string"),
        "segment_column": Param("pickup_zone", type="string", description="One model per value of this column"),
        "model_prefix": Param("trips_", type="string", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,100}$"),
        "target": Param("tipped", type="string"),
        # Tried in order per segment until one passes its gate. Each: {"estimator": dotted path,
        # "estimator_params": {...}} or {"pipeline_factory": dotted path}; empty: the default cascade.
        "architectures": Param(
            [{"estimator": "sklearn.linear_model.LogisticRegression", "estimator_params": {"max_iter": 500}},
             {"estimator": "sklearn.ensemble.HistGradientBoostingClassifier"}],
            type="array", description="Ordered cascade of architectures tried per segment"),
        "row_key": Param("trip_id", type=["null", "string"]),
        "gate": Param(None, type=["null", "string", "object"]),
        "validation": Param(str(INCLUDE / "trips_validation.yaml"), type=["null", "string", "object"]),
        "segments": Param([], type="array", description="Only these segments (empty: all); retraining uses it"),
        "min_rows": Param(50, type="integer", minimum=1, description="Smaller segments are reported, not trained"),
        "segments_per_task": Param(0, type="integer", minimum=0,
                                   description="Segments per mapped task (0: about 50 tasks in all)"),
        "workers": Param(1, type="integer", minimum=1, maximum=64,
                         description="Segments trained at once per task, in worker processes (local registry)"),
        "deploy_target": Param("local", enum=["local", "none"],
                               description="local: the shared model server must serve each champion"),
        "fail_on_segment_failure": Param(False, type="boolean",
                                         description="Fail the run when any segment fails (default: report it only)"),
    },
) as dag:
    split = SplitSegmentsOperator(
        task_id="split",
        data_uri="{{ params.data_uri }}",
        segment_column="{{ params.segment_column }}",
        model_prefix="{{ params.model_prefix }}",
        target="{{ params.target }}",
        validation="{{ params.validation }}",
        segments="{{ params.segments }}",
        segments_per_task="{{ params.segments_per_task }}",
        min_rows="{{ params.min_rows }}",
        retries=0,  # bad data does not get better by retrying
    )
    train = TrainSegmentsOperator.partial(
        task_id="train_segments",
        model_prefix="{{ params.model_prefix }}",
        target="{{ params.target }}",
        architectures="{{ params.architectures }}",
        row_key="{{ params.row_key }}",
        gate="{{ params.gate }}",
        deploy_target="{{ params.deploy_target }}",
        workers="{{ params.workers }}",
        map_index_template=BATCH_LABEL,  # the UI names each task by its segments, not 0, 1, 2
    ).expand_kwargs(split.output)
    summary = SegmentSummaryOperator(task_id="summary", split_task_id="split", train_task_id="train_segments",
                                     fail_on_failure="{{ params.fail_on_segment_failure }}")
    train >> summary
