"""Many models in one run: plan the segments, train them in batches, summarise what happened to each."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from mlops_airflow.operators.base import MlopsBaseOperator
from mlops_airflow.operators.validate import dag_folder

if TYPE_CHECKING:
    from airflow.sdk import Context

#: What the UI shows for each mapped batch task instead of its index (Airflow renders it after the task).
BATCH_LABEL = "{{ task.batch['label'] if task.batch is mapping else task.batch }}"


class SplitSegmentsOperator(MlopsBaseOperator):
    """Validate the whole table once, split it by segment and write it in batches; returns the batches to map over.

    Returns ``[{"batch": {...}}, ...]`` for ``TrainSegmentsOperator.partial(...).expand_kwargs``:
    one mapped task per batch of ``segments_per_task`` segments (default: about 50 tasks in
    all, far below Airflow's ``max_map_length``). Segments left out (too few rows or
    classes, rows failing the validation spec) are pushed under the XCom key ``skipped``
    with the reason, for the summary. The table failing checks no segment can be blamed
    for fails the task: nothing trains on unvalidated data.

    :param data_uri: CSV/Parquet path or ``s3://`` URI; ``*`` matches several files (templated).
    :param segment_column: the column whose values name the segments (templated).
    :param model_prefix: each segment's model is ``<model_prefix><segment>`` (templated).
    :param target: the column to predict (templated).
    :param validation: validation spec: a path (relative to the DAG file, in the spec folders of
        :mod:`mlops_airflow.specfiles`), inline YAML/JSON or dict (templated).
    :param segments: train only these segments (templated; what retraining some models asks for).
    :param segments_per_task: segments per mapped task; 0 or None: about 50 tasks in all (templated).
    :param min_rows: segments smaller than this are reported, not trained (templated).
    """

    template_fields: Sequence[str] = ("registry_uri", "data_uri", "segment_column", "model_prefix", "target",
                                      "validation", "segments", "segments_per_task", "min_rows")
    text_fields: Sequence[str] = (*MlopsBaseOperator.text_fields, "segment_column", "model_prefix")
    default_timeout = timedelta(minutes=60)

    def __init__(
        self, *, data_uri: str, segment_column: str, model_prefix: str, target: str,
        validation: str | dict[str, Any] | None = None, segments: list[str] | str | None = None,
        segments_per_task: int | str | None = None, min_rows: int | str = 50, **kwargs: Any,
    ) -> None:
        kwargs.setdefault("multiple_outputs", False)  # a list, to map over
        super().__init__(**kwargs)
        self.data_uri = data_uri
        self.segment_column = segment_column
        self.model_prefix = model_prefix
        self.target = target
        self.validation = validation
        self.segments = segments
        self.segments_per_task = segments_per_task
        self.min_rows = min_rows

    def run(self, context: Context) -> list[dict[str, Any]]:
        from mlops_airflow.pipeline.segments import plan_segments

        per_task = int(self.segments_per_task) if self.segments_per_task not in (None, "", "None") else None
        only = [self.segments] if isinstance(self.segments, str) and self.segments else (self.segments or None)
        plan = plan_segments(
            self.registry, data_uri=self.data_uri, segment_column=self.segment_column, model_prefix=self.model_prefix,
            target=self.target, validation=self.validation or None, spec_base_dir=dag_folder(context),
            min_rows=int(self.min_rows), segments_per_task=per_task or None, only=only, s3_client=self.hook.s3_client,
        )
        context["ti"].xcom_push(key="skipped", value=plan["skipped"])
        trained = sum(len(batch["segments"]) for batch in plan["batches"])
        self.log.info("%d segments: %d to train in %d tasks, %d left out; validation report: %s", plan["segments"],
                      trained, len(plan["batches"]), len(plan["skipped"]), plan["report_uri"])
        for segment, why in sorted(plan["skipped"].items())[:20]:
            self.log.info("  left out %s: %s", segment, why["reason"])
        return [{"batch": batch} for batch in plan["batches"]]


class TrainSegmentsOperator(MlopsBaseOperator):
    """Train, gate, register and promote every segment of one batch, each on its own (mapped over batches).

    Each segment tries ``architectures`` in order until one is blessed by its gate (the
    cascade); the winner is registered as that segment's new version and promoted to its
    ``champion``, and with ``deploy_target="local"`` the shared model server
    (``mlops-airflow serve``) must then serve it, else it is rolled back. One segment's
    failure never stops another: it is recorded with its stage and reason. The task fails
    only if the batch could not be read at all. Returns ``{"segments": [outcome, ...]}``.

    :param batch: one batch of :class:`SplitSegmentsOperator`'s plan (templated; mapped).
    :param architectures: the cascade: a list of ``{"estimator", "estimator_params"}`` or
        ``{"pipeline_factory"}`` (templated); empty: logistic regression, then histogram boosting.
    :param deploy_target: ``local`` (the model server at ``server_url``) or ``none`` (templated).
    :param workers: segments trained at once, in worker processes (templated; default 1). More than
        one uses more cores of the worker the task runs on; for a registry on local disk only.

    Map it with ``.partial(..., map_index_template=BATCH_LABEL)`` so the UI labels each task
    by its segments (a ``partial()`` argument: Airflow reads it before the operator exists).
    """

    template_fields: Sequence[str] = ("registry_uri", "batch", "model_prefix", "target", "architectures", "row_key",
                                      "gate", "deploy_target", "server_url", "workers")
    text_fields: Sequence[str] = (*MlopsBaseOperator.text_fields, "model_prefix", "deploy_target")
    default_timeout = timedelta(hours=2)

    def __init__(
        self, *, batch: dict[str, Any] | str, model_prefix: str, target: str,
        architectures: list[Any] | str | None = None, row_key: str | None = None,
        gate: str | dict[str, Any] | None = None, deploy_target: str = "local", server_url: str | None = None,
        workers: int | str = 1, **kwargs: Any,
    ) -> None:
        kwargs.setdefault("multiple_outputs", False)
        super().__init__(**kwargs)
        self.batch = batch
        self.model_prefix = model_prefix
        self.target = target
        self.architectures = architectures
        self.row_key = row_key
        self.gate = gate
        self.deploy_target = deploy_target
        self.server_url = server_url
        self.workers = workers

    def run(self, context: Context) -> dict[str, Any]:
        import json
        from collections import Counter

        from mlops_airflow.pipeline.retrain import trigger_record
        from mlops_airflow.pipeline.segments import check_architectures, train_segment_batch
        from mlops_airflow.registry.registry import idempotency_key

        if self.deploy_target not in ("local", "none"):
            from mlops_airflow.exceptions import ConfigError

            raise ConfigError(f"deploy_target must be local or none, got {self.deploy_target!r}")
        batch = self.batch if isinstance(self.batch, dict) else json.loads(self.batch)
        architectures = check_architectures(self.architectures)
        lineage = self.lineage(context)
        params = dict(context.get("params") or {})
        ti = context["ti"]
        total = len(batch["segments"])
        every = max(1, total // 10)

        def progress(done: int, of: int, seconds: float) -> None:
            if done % every == 0 or done == of:
                self.log.info("%d of %d segments done (%.1f s, %.2f s a segment)", done, of, seconds, seconds / done)

        self.log.info("Batch %s: %d segments, cascade %s", batch["label"], total,
                      " -> ".join(a["name"] for a in architectures))
        outcomes = train_segment_batch(
            self.registry, batch=batch, model_prefix=self.model_prefix, target=self.target,
            architectures=architectures, row_key=self.row_key or None, gate=self.gate or None,
            gate_base_dir=dag_folder(context),
            target_factory=self._target_factory(), by=f"{ti.dag_id}/{ti.run_id}",
            lineage={**lineage, "trigger": trigger_record(ti.dag_id, params)},  # per segment: segments=[it]
            idempotency_prefix=idempotency_key(ti.dag_id, ti.run_id, ti.task_id, getattr(ti, "map_index", -1)),
            progress=progress, workers=int(self.workers or 1),
        )
        counts = Counter(outcome["outcome"] for outcome in outcomes)
        self.log.info("Batch %s: %d promoted, %d kept, %d failed", batch["label"], counts["promoted"],
                      counts["kept"], counts["failed"])
        return {"segments": outcomes}

    def _target_factory(self) -> Any:
        if self.deploy_target == "none":
            return None
        import httpx

        from mlops_airflow import settings
        from mlops_airflow.deploy.local import LocalServerTarget

        url = self.server_url or settings.server_url()
        client = httpx.Client(timeout=30.0)  # shared by the confirming threads; closed with the task
        return lambda: LocalServerTarget(url, client=client)


class SegmentSummaryOperator(MlopsBaseOperator):
    """Say, per segment, whether its model was promoted, kept (the champion stayed) or failed, and why.

    Runs whatever happened upstream (``trigger_rule="all_done"``), reads every batch's
    outcomes and the plan's left-out segments, stores the record in the registry under
    ``_segments/runs/`` and logs the counts, the architectures that won and one line per
    segment (failures first). A batch task that failed as a whole (its process died, say)
    fails its segments with that reason. It fails the run only when ``fail_on_failure`` is
    true and a segment failed: by default a failing segment is reported and the run stays
    green, because the other segments' models did their job.

    :param split_task_id: the :class:`SplitSegmentsOperator` task.
    :param train_task_id: the mapped :class:`TrainSegmentsOperator` task.
    :param fail_on_failure: fail this task (so the run) if any segment failed (templated).
    """

    template_fields: Sequence[str] = ("registry_uri", "fail_on_failure")
    default_timeout = timedelta(minutes=10)

    def __init__(
        self, *, split_task_id: str, train_task_id: str, fail_on_failure: bool | str = False, **kwargs: Any
    ) -> None:
        kwargs.setdefault("trigger_rule", "all_done")
        super().__init__(**kwargs)
        self.split_task_id = split_task_id
        self.train_task_id = train_task_id
        self.fail_on_failure = fail_on_failure

    def run(self, context: Context) -> dict[str, Any]:
        from mlops_airflow.pipeline.segments import format_segments, summarise_segments

        ti = context["ti"]
        batches = [entry["batch"] for entry in ti.xcom_pull(task_ids=self.split_task_id) or []]
        outcomes: dict[str, dict[str, Any]] = {
            segment: {"outcome": "failed", **why}
            for segment, why in (ti.xcom_pull(task_ids=self.split_task_id, key="skipped") or {}).items()
        }
        for index, batch in enumerate(batches):
            result = ti.xcom_pull(task_ids=self.train_task_id, map_indexes=index) or {}
            done = {outcome["segment"]: outcome for outcome in result.get("segments", [])}
            error = None if done else ti.xcom_pull(task_ids=self.train_task_id, map_indexes=index, key="error")
            for segment in batch["segments"]:
                outcomes[segment] = done.get(segment) or {
                    "outcome": "failed", "stage": "train", "model_name": None,
                    "reason": f"the batch task {batch['label']} did not finish: {error or 'see its log'}"}
        record = summarise_segments(self.registry, dag_id=ti.dag_id, run_id=ti.run_id, outcomes=outcomes)
        self.log.info("Segments:\n%s", format_segments(record))
        if record["failed"] and self.fail_on_failure in (True, "True", "true"):
            from airflow.sdk.exceptions import AirflowFailException

            raise AirflowFailException(f"{len(record['failed'])} segment(s) failed: {', '.join(record['failed'][:50])}")
        return {key: len(record[key]) for key in ("promoted", "kept", "failed")} | {
            "architectures": record["architectures"]}
