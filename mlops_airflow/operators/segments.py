"""Many models in one DAG: split a dataset by segment, then summarise what happened to each."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from mlops_airflow.operators.base import MlopsBaseOperator

if TYPE_CHECKING:
    from airflow.sdk import Context


class SplitSegmentsOperator(MlopsBaseOperator):
    """Write one file per segment into the artifact store and return the list to map over.

    Returns ``[{"segment", "model_name", "data_uri", "rows"}, ...]`` for
    ``task_group.expand_kwargs``; segments with fewer than ``min_rows`` rows are left out of
    it and pushed under the XCom key ``too_small`` with the reason, for the summary.

    :param data_uri: CSV/Parquet path or ``s3://`` URI; ``*`` matches several files (templated).
    :param segment_column: the column whose values name the segments (templated).
    :param model_prefix: each segment's model is ``<model_prefix><segment>`` (templated).
    :param min_rows: segments smaller than this are reported, not trained.
    """

    template_fields: Sequence[str] = ("registry_uri", "data_uri", "segment_column", "model_prefix")
    text_fields: Sequence[str] = (*MlopsBaseOperator.text_fields, "segment_column", "model_prefix")
    default_timeout = timedelta(minutes=30)

    def __init__(
        self, *, data_uri: str, segment_column: str, model_prefix: str, min_rows: int = 50, **kwargs: Any
    ) -> None:
        kwargs.setdefault("multiple_outputs", False)  # a list, to map over
        super().__init__(**kwargs)
        self.data_uri = data_uri
        self.segment_column = segment_column
        self.model_prefix = model_prefix
        self.min_rows = min_rows

    def run(self, context: Context) -> list[dict[str, Any]]:
        from mlops_airflow.pipeline.segments import split_segments

        segments, too_small = split_segments(
            self.registry, data_uri=self.data_uri, segment_column=self.segment_column,
            model_prefix=self.model_prefix, min_rows=self.min_rows, s3_client=self.hook.s3_client,
        )
        context["ti"].xcom_push(key="too_small", value=too_small)
        self.log.info("%d segments to train, %d too small: %s", len(segments), len(too_small),
                      ", ".join(s["segment"] for s in segments))
        return segments


class SegmentSummaryOperator(MlopsBaseOperator):
    """Say, per segment, whether its model was promoted, kept (the champion stayed) or failed, and why.

    Runs whatever happened upstream (``trigger_rule="all_done"``), stores the record in the
    registry under ``_segments/runs/`` and logs one line per segment. It fails the run only
    when ``fail_on_failure`` is true and a segment failed; by default a failing segment is
    reported and the run stays green, because the other segments' models did their job.

    :param split_task_id: the :class:`SplitSegmentsOperator` task.
    :param group_id: the mapped task group holding each segment's stages.
    :param fail_on_failure: fail this task (so the run) if any segment failed (templated).
    """

    template_fields: Sequence[str] = ("registry_uri", "fail_on_failure")
    default_timeout = timedelta(minutes=10)

    def __init__(
        self, *, split_task_id: str, group_id: str, fail_on_failure: bool | str = False, **kwargs: Any
    ) -> None:
        kwargs.setdefault("trigger_rule", "all_done")
        super().__init__(**kwargs)
        self.split_task_id = split_task_id
        self.group_id = group_id
        self.fail_on_failure = fail_on_failure

    def run(self, context: Context) -> dict[str, Any]:
        from mlops_airflow.pipeline.segments import (
            SEGMENT_STAGES,
            classify_segment,
            format_segments,
            summarise_segments,
        )

        ti = context["ti"]
        segments = ti.xcom_pull(task_ids=self.split_task_id) or []
        outcomes: dict[str, dict[str, Any]] = {
            s["segment"]: {"outcome": "failed", "stage": "split", "model_name": s["model_name"], "rows": s["rows"],
                           "reason": f"split: {s['reason']}"}
            for s in ti.xcom_pull(task_ids=self.split_task_id, key="too_small") or []
        }
        found = ti.get_task_states(dag_id=ti.dag_id, task_group_id=self.group_id, run_ids=[ti.run_id])
        flat = {k: str(v) for states in found.values() for k, v in states.items()}
        for index, segment in enumerate(segments):
            task_ids = {stage: f"{self.group_id}.{stage}" for stage in SEGMENT_STAGES}
            states = {stage: flat.get(f"{task_id}_{index}", "unknown") for stage, task_id in task_ids.items()}
            results = {stage: ti.xcom_pull(task_ids=task_id, map_indexes=index) for stage, task_id in task_ids.items()}
            errors = {stage: ti.xcom_pull(task_ids=task_id, map_indexes=index, key="error")
                      for stage, task_id in task_ids.items()}
            outcomes[segment["segment"]] = {**classify_segment(states, results, errors),
                                            "model_name": segment["model_name"], "rows": segment["rows"]}
        record = summarise_segments(self.registry, dag_id=ti.dag_id, run_id=ti.run_id, outcomes=outcomes)
        self.log.info("Segments:\n%s", format_segments(record))
        if record["failed"] and self.fail_on_failure in (True, "True", "true"):
            from airflow.sdk.exceptions import AirflowFailException

            raise AirflowFailException(f"{len(record['failed'])} segment(s) failed: {', '.join(record['failed'])}")
        return {key: record[key] for key in ("promoted", "kept", "failed")}
