"""Daily batch scoring with the champion model, spread over Airflow workers.

    plan -> score (one mapped task per partition) -> publish

`plan` pins the version behind the alias (every partition scores with the same model even
if a deploy moves the alias meanwhile), fingerprints the input and splits it into
partitions: files of a pattern or folder, and row-group ranges of large Parquet files.
Each `score` task reads its partition in `chunk_rows` chunks, checks every row against the
model's feature schema exactly as the model server does, and writes one part per chunk.
`publish` writes `_SUCCESS`, the manifest listing the parts: until then nothing is
visible, so a failed or retried run never leaves half an output.

Locally: `airflow dags test mlops_batch_scoring -c '{"model_name": "trip_tips"}'` after a
run of `mlops_continuous_training` has promoted a champion.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

from airflow.sdk import DAG, Param

from mlops_airflow import settings
from mlops_airflow.operators.batch import BatchPredictOperator, PlanBatchOperator, PublishBatchOperator

HERE = Path(__file__).resolve().parent
# `mlops-airflow init` puts include/ inside the DAGs folder; in this repository it sits beside dags/.
INCLUDE = HERE / "include" if (HERE / "include").is_dir() else HERE.parent / "include"

with DAG(
    dag_id="mlops_batch_scoring",
    description="Score a dataset with the champion model, in chunks, over mapped tasks",
    schedule="@daily",
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    render_template_as_native_obj=True,  # keep list Params (id_columns) and numbers as they are
    default_args={"retries": 2, "retry_delay": timedelta(seconds=30)},  # a retry rewrites the same parts
    tags=["mlops", "batch-scoring"],
    params={
        "model_name": Param("trip_tips", type="string", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$"),
        "alias": Param("champion", type="string", description="The alias naming the model to score with"),
        "input_uri": Param(str(INCLUDE / "data" / "trips_2026_02.csv"), type="string",
                           description="CSV/Parquet file, * pattern or folder (ending in /), local or s3://"),
        "output_uri": Param(str(settings.airflow_home() / "mlops_predictions"), type="string",
                            description="Folder or s3:// prefix; each run publishes under <output_uri>/<YYYY-MM-DD>"),
        "id_columns": Param(["trip_id"], type="array", description="Input columns copied to every prediction row"),
        "ignore_columns": Param(["tipped"], type="array",
                                description="Input columns that are neither features nor ids (e.g. a label)"),
        "chunk_rows": Param(100_000, type="integer", minimum=1, description="Rows per chunk: bounds memory"),
        "partitions": Param(4, type="integer", minimum=1, description="At most this many mapped scoring tasks"),
        "on_invalid": Param("fail", enum=["fail", "skip"],
                            description="fail: a row outside the schema fails the run; skip: it goes to a rejects file"),
    },
) as dag:
    plan = PlanBatchOperator(
        task_id="plan",
        model_name="{{ params.model_name }}",
        alias="{{ params.alias }}",
        input_uri="{{ params.input_uri }}",
        # the day the run was due: runs from the UI or the REST API have no logical date (and so no `ds`)
        output_uri="{{ params.output_uri.rstrip('/') }}/{{ dag_run.run_after.strftime('%Y-%m-%d') }}",
        id_columns="{{ params.id_columns }}",
        ignore_columns="{{ params.ignore_columns }}",
        chunk_rows="{{ params.chunk_rows }}",
        partitions="{{ params.partitions }}",
        on_invalid="{{ params.on_invalid }}",
    )
    # one task instance per partition; each loads the pinned version once
    score = BatchPredictOperator.partial(task_id="score").expand(partition=plan.output)
    publish = PublishBatchOperator(task_id="publish", partitions=plan.output)
    score >> publish
