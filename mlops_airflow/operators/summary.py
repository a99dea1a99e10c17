"""Record what a continuous-training run did, whatever the outcome."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from mlops_airflow.operators.base import MlopsBaseOperator

if TYPE_CHECKING:
    from airflow.sdk import Context


class RunSummaryOperator(MlopsBaseOperator):
    """Collect each stage's XCom result into one run record and log it as a readable story.

    Runs with ``trigger_rule="all_done"`` by default, so failed and skipped runs are
    recorded too; ``mlops-airflow runs show NAME`` prints the latest one. Being the last
    task, it decides the run's state: after recording, it fails if any stage failed, so a
    run stopped by bad data still shows as failed.

    :param model_name: the model (templated).
    :param stages: stage name -> task id, e.g. ``{"validate": "validate", ...}``.
    """

    template_fields: Sequence[str] = ("registry_uri", "model_name")
    default_timeout = timedelta(minutes=5)

    def __init__(self, *, model_name: str, stages: Mapping[str, str], **kwargs: Any) -> None:
        kwargs.setdefault("trigger_rule", "all_done")
        super().__init__(**kwargs)
        self.model_name = model_name
        self.stages = dict(stages)

    def run(self, context: Context) -> dict[str, Any]:
        from mlops_airflow.pipeline.summary import format_run, record_run

        ti = context["ti"]
        results: dict[str, Any] = {}
        for stage, task_id in self.stages.items():
            value = ti.xcom_pull(task_ids=task_id)
            if value is None and stage == "validate":
                value = ti.xcom_pull(task_ids=task_id, key="validation_summary")
            error = ti.xcom_pull(task_ids=task_id, key="error")
            results[stage] = {**(value or {}), "error": error} if error else value
        states = _states(ti, list(self.stages.values()))
        states = {stage: states.get(task_id, "unknown") for stage, task_id in self.stages.items()}
        record = record_run(self.registry, model_name=self.model_name, run_id=ti.run_id, dag_id=ti.dag_id,
                            results=results, states=states)
        self.log.info("Run summary:\n%s", format_run(record))
        failed = [stage for stage, state in states.items() if state in ("failed", "upstream_failed")]
        if failed:
            from airflow.sdk.exceptions import AirflowFailException

            raise AirflowFailException(f"stage {failed[0]!r} failed; see its log (recorded for `mlops-airflow runs show`)")
        return {"states": states}


def _states(ti: Any, task_ids: list[str]) -> dict[str, str]:
    """``{task_id: state}`` for this run, asked of the API server (tasks have no DB access)."""
    found = ti.get_task_states(dag_id=ti.dag_id, task_ids=task_ids, run_ids=[ti.run_id])
    flat: dict[str, str] = {}
    for value in found.values():  # {run_id: {task_id: state}}
        if isinstance(value, dict):
            flat.update({task_id: str(state) for task_id, state in value.items()})
    return flat
