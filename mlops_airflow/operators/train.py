"""Train a candidate model on a validated dataset."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from mlops_airflow.operators.base import MlopsBaseOperator

if TYPE_CHECKING:
    from airflow.sdk import Context


#: The training arguments both training operators take and template (``run_training``'s own).
TRAINING_FIELDS: tuple[str, ...] = (
    "model_name", "dataset_uri", "target", "estimator", "estimator_params", "row_key", "pipeline_factory",
    "search_space", "tuning",
)


def training_arguments(task: Any) -> dict[str, Any]:
    """``task``'s rendered training fields as ``run_training`` takes them; raises ``ConfigError`` for a bad one.

    One reading for :class:`TrainModelOperator` and the pod operator, so a DAG gets the same
    candidate whichever trains it: text fields as strings, empty options as None.
    """
    from mlops_airflow.pipeline.entrypoint import check_mappings

    values = {name: getattr(task, name) for name in TRAINING_FIELDS}
    check_mappings(values)
    return {
        "model_name": str(values["model_name"]),
        "dataset_uri": str(values["dataset_uri"]),
        "target": str(values["target"]),
        "estimator": str(values["estimator"] or "auto"),
        "estimator_params": values["estimator_params"] or None,
        "row_key": str(values["row_key"]) if values["row_key"] else None,
        "pipeline_factory": str(values["pipeline_factory"]) if values["pipeline_factory"] else None,
        "search_space": values["search_space"] or None,
        "tuning": values["tuning"] or None,
    }


def training_lineage(context: Context, *, retrain_trigger: bool = True) -> dict[str, Any]:
    """What the train stage records about its run: dag, run, task, map index, try and how to retrain.

    ``trigger`` (unless ``retrain_trigger`` is False) is
    :func:`~mlops_airflow.pipeline.retrain.trigger_record`: this DAG with this run's Params,
    which the drift/quality retraining follows for this model. One reading for
    :class:`TrainModelOperator` and the pod operator.
    """
    from mlops_airflow.pipeline.retrain import trigger_record

    lineage = MlopsBaseOperator.lineage(context)
    if retrain_trigger:
        lineage["trigger"] = trigger_record(lineage["dag_id"], context.get("params") or {})
    return lineage


class TrainModelOperator(MlopsBaseOperator):
    """Fit an allowlisted scikit-learn estimator inside the default preprocessing, or a factory's pipeline.

    The candidate lands in the artifact store, content-addressed by its sha256; only
    small facts travel through XCom.

    :param model_name: the model (templated).
    :param dataset_uri: the validated snapshot from :class:`ValidateDataOperator` (templated).
    :param target: the target column (templated).
    :param estimator: dotted path of an allowlisted estimator, or ``auto`` (templated).
    :param estimator_params: keyword arguments for the estimator (templated).
    :param row_key: column whose hash chooses the holdout; None hashes the whole row (templated).
    :param pipeline_factory: dotted path of an allowlisted factory returning an unfitted
        scikit-learn Pipeline, instead of ``estimator`` (templated).
    :param search_space: parameters to tune, each a list of values or a distribution;
        empty: no tuning (templated).
    :param tuning: search options (method, cv, n_candidates, factor, scoring, random_state,
        top_k) (templated).
    :param retrain_trigger: record in the lineage that this DAG, with this run's Params,
        retrains the model (what ``mlops_drift_retraining`` triggers). False where a run by
        hand with the same Params cannot retrain it, e.g. a DAG fed by an asset event.
    """

    template_fields: Sequence[str] = ("registry_uri", *TRAINING_FIELDS)
    text_fields: Sequence[str] = (*MlopsBaseOperator.text_fields, "pipeline_factory")
    default_timeout = timedelta(hours=2)

    def __init__(
        self,
        *,
        model_name: str,
        dataset_uri: str,
        target: str,
        estimator: str = "auto",
        estimator_params: dict[str, Any] | None = None,
        row_key: str | None = None,
        pipeline_factory: str | None = None,
        search_space: dict[str, Any] | None = None,
        tuning: dict[str, Any] | None = None,
        retrain_trigger: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.model_name = model_name
        self.dataset_uri = dataset_uri
        self.target = target
        self.estimator = estimator
        self.estimator_params = estimator_params
        self.row_key = row_key
        self.pipeline_factory = pipeline_factory
        self.search_space = search_space
        self.tuning = tuning
        self.retrain_trigger = retrain_trigger

    def run(self, context: Context) -> dict[str, Any]:
        from mlops_airflow.pipeline.train import run_training, short_candidate

        record = run_training(self.registry, **training_arguments(self),
                              lineage=training_lineage(context, retrain_trigger=self.retrain_trigger))
        self.log.info(
            "Trained %s (%s) in %ss: candidate %s (%d bytes)",
            record["estimator"], record["task_type"], record["fit_seconds"], record["sha256"][:12], record["size_bytes"],
        )
        return short_candidate(record)
