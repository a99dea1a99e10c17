"""Train a candidate model on a validated dataset."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from mlops_airflow.operators.base import MlopsBaseOperator

if TYPE_CHECKING:
    from airflow.sdk import Context


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
    """

    template_fields: Sequence[str] = (
        "registry_uri", "model_name", "dataset_uri", "target", "estimator", "estimator_params", "row_key",
        "pipeline_factory", "search_space", "tuning",
    )
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

    def run(self, context: Context) -> dict[str, Any]:
        from mlops_airflow.exceptions import ConfigError
        from mlops_airflow.pipeline.train import run_training, short_candidate

        for name in ("estimator_params", "search_space", "tuning"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, dict):
                raise ConfigError(f"{name} must be a mapping, got {value!r}")
        record = run_training(
            self.registry,
            model_name=self.model_name,
            dataset_uri=self.dataset_uri,
            target=self.target,
            estimator=self.estimator,
            estimator_params=self.estimator_params,
            row_key=self.row_key or None,
            lineage=self.lineage(context),
            pipeline_factory=self.pipeline_factory or None,
            search_space=self.search_space or None,
            tuning=self.tuning or None,
        )
        self.log.info(
            "Trained %s (%s) in %ss: candidate %s (%d bytes)",
            record["estimator"], record["task_type"], record["fit_seconds"], record["sha256"][:12], record["size_bytes"],
        )
        return short_candidate(record)
