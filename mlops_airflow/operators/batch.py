"""Score a dataset with the model behind an alias, in one task or spread over mapped tasks.

One task::

    BatchPredictOperator(task_id="score", model_name="trips", input_uri="s3://in/2026-01-*.parquet",
                         output_uri="s3://out/{{ ds }}/", id_columns=["trip_id"])

Spread over workers (dynamic task mapping)::

    plan = PlanBatchOperator(task_id="plan", model_name=..., input_uri=..., output_uri=..., partitions=8)
    score = BatchPredictOperator.partial(task_id="score").expand(partition=plan.output)
    publish = PublishBatchOperator(task_id="publish", partitions=plan.output)
    score >> publish
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from mlops_airflow.operators.base import MlopsBaseOperator

if TYPE_CHECKING:
    from airflow.sdk import Context

_TEXT_FIELDS = (*MlopsBaseOperator.text_fields, "alias", "input_uri", "output_uri", "plan_uri", "on_invalid",
                "output_format")


def _columns(value: Any, name: str) -> list[str]:
    """A list of column names from a list or a comma-separated string (a template renders either)."""
    from mlops_airflow.exceptions import ConfigError

    if value in (None, "", "None"):
        return []
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    if isinstance(value, list | tuple) and all(isinstance(item, str) for item in value):
        return list(value)
    raise ConfigError(f"{name} must be a list of column names, got {value!r}")


def _count(value: Any, name: str) -> int:
    from mlops_airflow.exceptions import ConfigError

    try:
        number = int(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be a positive whole number, got {value!r}") from None
    if number < 1 or str(number) != str(value).strip():
        raise ConfigError(f"{name} must be a positive whole number, got {value!r}")
    return number


def _s3_client_for(operator: MlopsBaseOperator, *uris: Any) -> Any | None:
    """The connection's S3 client if any of ``uris`` is on S3 (input and output need not be where the registry is)."""
    if any(str(uri or "").startswith("s3://") for uri in uris):
        return operator.hook.get_s3_client()
    return None


class _BatchOperator(MlopsBaseOperator):
    """The settings the plan and the one-task scoring share, checked and converted at run time."""

    text_fields: Sequence[str] = _TEXT_FIELDS
    default_timeout = timedelta(hours=4)

    def __init__(
        self,
        *,
        model_name: str | None = None,
        input_uri: str | None = None,
        output_uri: str | None = None,
        alias: str = "champion",
        id_columns: list[str] | str | None = None,
        ignore_columns: list[str] | str | None = None,
        chunk_rows: int | str = 100_000,
        on_invalid: str = "fail",
        output_format: str = "parquet",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.model_name = model_name
        self.input_uri = input_uri
        self.output_uri = output_uri
        self.alias = alias
        self.id_columns = id_columns
        self.ignore_columns = ignore_columns
        self.chunk_rows = chunk_rows
        self.on_invalid = on_invalid
        self.output_format = output_format

    def settings(self) -> dict[str, Any]:
        """The batch settings, checked and converted from whatever the templates rendered."""
        return {
            "model_name": self.model_name, "alias": self.alias, "input_uri": self.input_uri,
            "output_uri": self.output_uri, "id_columns": _columns(self.id_columns, "id_columns"),
            "ignore_columns": _columns(self.ignore_columns, "ignore_columns"),
            "chunk_rows": _count(self.chunk_rows, "chunk_rows"), "on_invalid": self.on_invalid,
            "output_format": self.output_format,
        }


class PlanBatchOperator(_BatchOperator):
    """Resolve the alias to one version, hash the input and split it into partitions for mapped scoring.

    Returns the list of partition descriptors (small dicts holding the plan's URI and an
    index) for ``BatchPredictOperator.partial(...).expand(partition=plan.output)`` and
    ``PublishBatchOperator(partitions=plan.output)``.

    :param model_name: the model (templated).
    :param input_uri: a CSV/Parquet file, a ``*`` pattern or a folder / prefix ending in ``/``,
        local or ``s3://`` (templated).
    :param output_uri: the folder / ``s3://`` prefix the predictions are published under (templated).
    :param alias: the alias naming the model to score with (templated).
    :param id_columns: input columns copied to each prediction row, e.g. the row key (templated).
    :param ignore_columns: input columns that are neither features nor ids, e.g. a label (templated).
    :param chunk_rows: rows read, checked and scored at a time: bounds a task's memory (templated).
    :param partitions: at most this many partitions (whole files, or row-group ranges of
        Parquet files) (templated).
    :param on_invalid: ``fail`` (default: any row outside the schema fails the task, nothing is
        published) or ``skip`` (such rows go to a rejects file with their reasons) (templated).
    :param output_format: ``parquet`` (default) or ``csv`` (templated).
    """

    template_fields: Sequence[str] = (
        "registry_uri", "model_name", "input_uri", "output_uri", "alias", "id_columns", "ignore_columns",
        "chunk_rows", "partitions", "on_invalid", "output_format",
    )

    def __init__(self, *, model_name: str, input_uri: str, output_uri: str, partitions: int | str = 1,
                 **kwargs: Any) -> None:
        # NB: the descriptors are the return value itself, because Airflow maps only over return values
        kwargs.setdefault("multiple_outputs", False)
        super().__init__(model_name=model_name, input_uri=input_uri, output_uri=output_uri, **kwargs)
        self.partitions = partitions

    def run(self, context: Context) -> list[dict[str, Any]]:
        from mlops_airflow.pipeline.batch import run_batch_plan

        result = run_batch_plan(self.registry, s3_client=_s3_client_for(self, self.input_uri, self.output_uri),
                                partitions=_count(self.partitions, "partitions"), **self.settings())
        self.log.info("Planned %d partition(s) of %d file(s) for %s v%s, input %s: %s", len(result["partitions"]),
                      result["files"], result["model_name"], result["version"], result["input_fingerprint"],
                      result["plan_uri"])
        return list(result["partitions"])


class BatchPredictOperator(_BatchOperator):
    """Score a dataset with the model behind ``alias`` and publish the predictions atomically.

    Without ``partition`` the task plans, scores every chunk (loading the model once) and
    publishes ``_SUCCESS``. With ``partition`` (one descriptor from :class:`PlanBatchOperator`,
    for ``.partial(...).expand(partition=plan.output)``) it scores that partition only, and
    :class:`PublishBatchOperator` publishes; the other arguments then come from the plan.
    Each output row holds the ``id_columns``, ``prediction``, ``probability_<class>`` for
    classifiers, ``model_version`` and ``input_fingerprint``. Parameters as for
    :class:`PlanBatchOperator` (but ``partitions``), plus:

    :param partition: one partition descriptor (mapped).
    """

    template_fields: Sequence[str] = (
        "registry_uri", "model_name", "input_uri", "output_uri", "alias", "id_columns", "ignore_columns",
        "chunk_rows", "on_invalid", "output_format",
    )

    def __init__(self, *, partition: dict[str, Any] | None = None, **kwargs: Any) -> None:
        given = [name for name in ("model_name", "input_uri", "output_uri") if kwargs.get(name)]
        if partition is None and len(given) < 3:
            raise ValueError("give model_name, input_uri and output_uri, or a partition from PlanBatchOperator")
        if partition is not None and given:
            raise ValueError(f"{', '.join(given)} come(s) from the partition's plan: give a partition or these, not both")
        super().__init__(**kwargs)
        self.partition = partition

    def run(self, context: Context) -> dict[str, Any]:
        from mlops_airflow.exceptions import ConfigError
        from mlops_airflow.pipeline.batch import run_batch_partition, run_batch_scoring

        if self.partition is not None:
            if not isinstance(self.partition, dict) or not {"plan_uri", "index"} <= set(self.partition):
                raise ConfigError(f"partition must be a descriptor from PlanBatchOperator, got {self.partition!r}")
            self.log.info("Scoring partition %s: %s", self.partition["index"], self.partition.get("label"))
            result = run_batch_partition(self.registry, self.partition,
                                         s3_client=_s3_client_for(self, self.partition["plan_uri"]))
        else:
            result = run_batch_scoring(self.registry, s3_client=_s3_client_for(self, self.input_uri, self.output_uri),
                                       **self.settings())
        self.log.info("Batch scoring: %s", result)
        return result


class PublishBatchOperator(MlopsBaseOperator):
    """Publish a mapped batch once every partition is scored: writes the ``_SUCCESS`` manifest.

    :param partitions: the descriptors from :class:`PlanBatchOperator` (``plan.output``) (templated).
    """

    template_fields: Sequence[str] = ("registry_uri", "partitions")
    default_timeout = timedelta(minutes=30)

    def __init__(self, *, partitions: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.partitions = partitions

    def run(self, context: Context) -> dict[str, Any]:
        from mlops_airflow.exceptions import ConfigError
        from mlops_airflow.pipeline.batch import run_batch_publish

        plans = {item.get("plan_uri") for item in self.partitions or [] if isinstance(item, dict)}
        if len(plans) != 1 or None in plans:
            raise ConfigError(f"partitions must be the descriptors of one PlanBatchOperator, got {self.partitions!r}")
        plan_uri = str(plans.pop())
        result = run_batch_publish(plan_uri, s3_client=_s3_client_for(self, plan_uri))
        self.log.info("Published %s: %s rows from %s partition(s)", result["manifest_uri"], result["rows_out"],
                      result["partitions"])
        return result
