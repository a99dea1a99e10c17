"""What every mlops-airflow operator shares: the registry hook, lineage and error policy."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

if TYPE_CHECKING:
    from airflow.sdk import Context

    from mlops_airflow.hooks.registry import RegistryHook
    from mlops_airflow.registry import ModelRegistry


class MlopsBaseOperator(BaseOperator):
    """Base of the pipeline operators.

    Errors that retrying cannot fix (bad data, a broken spec, a refused verdict) fail the
    task at once with ``AirflowFailException``; storage and network errors propagate as
    they are, so Airflow's retries apply. Either way the one-line reason is pushed to XCom
    under ``error`` first, so the run summary can say why the run stopped.

    :param registry_uri: the registry root (templated); default from settings.
    :param conn_id: Airflow connection for S3 registries.
    """

    template_fields: Sequence[str] = ("registry_uri",)
    #: Templated fields that name things: kept as text even when a DAG renders templates as
    #: native objects (which would turn a model named "2024" into the number 2024).
    text_fields: Sequence[str] = ("registry_uri", "model_name", "data_uri", "target", "estimator", "row_key",
                                  "candidate_sha256", "verdict_uri", "dataset_uri", "server_url", "reason")
    ui_color = "#e8f4ea"
    #: Each stage has a default timeout so a hung task cannot hold the model's only run slot.
    default_timeout = timedelta(minutes=30)

    def __init__(self, *, registry_uri: str | None = None, conn_id: str = "mlops_s3", **kwargs: Any) -> None:
        kwargs.setdefault("execution_timeout", self.default_timeout)
        # Each key of the result is its own XCom too, so DAGs can wire `op.output["key"]`.
        kwargs.setdefault("multiple_outputs", True)
        super().__init__(**kwargs)
        self.registry_uri = registry_uri
        self.conn_id = conn_id

    def render_template_fields(self, context: Context, jinja_env: Any = None) -> None:
        super().render_template_fields(context, jinja_env)
        for name in self.text_fields:
            value = getattr(self, name, None)
            if value is not None and not isinstance(value, str):
                setattr(self, name, str(value))

    @cached_property
    def hook(self) -> RegistryHook:
        from mlops_airflow.hooks.registry import RegistryHook

        return RegistryHook(registry_uri=self.registry_uri or None, conn_id=self.conn_id)

    @cached_property
    def registry(self) -> ModelRegistry:
        return self.hook.get_registry()

    @staticmethod
    def string_list(value: Any, name: str) -> list[str]:
        """A templated list of names as a list: a DAG not rendering native objects hands over its text.

        Text is a list literal (``['a', 'b']``, as Jinja prints one) or names split by commas
        or spaces. :class:`~mlops_airflow.exceptions.ConfigError` naming ``name`` otherwise.
        """
        import ast
        import re

        from mlops_airflow.exceptions import ConfigError

        if value is None:
            return []
        if isinstance(value, str):
            text = value.strip()
            try:
                value = ast.literal_eval(text) if text.startswith("[") else [p for p in re.split(r"[,\s]+", text) if p]
            except (ValueError, SyntaxError) as exc:
                raise ConfigError(f"{name}={text!r} is not a list of names") from exc
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{name}={value!r} must be a list of names")
        return list(value)

    @staticmethod
    def lineage(context: Context) -> dict[str, Any]:
        ti = context["ti"]
        return {
            "dag_id": ti.dag_id,
            "run_id": ti.run_id,
            "task_id": ti.task_id,
            "map_index": getattr(ti, "map_index", -1),
            "try_number": getattr(ti, "try_number", None),
        }

    def execute(self, context: Context) -> Any:
        from airflow.sdk.exceptions import AirflowFailException

        from mlops_airflow.exceptions import PERMANENT_ERRORS, MlopsError

        try:
            return self.run(context)
        except MlopsError as exc:
            reason = f"{type(exc).__name__}: {exc}"
            context["ti"].xcom_push(key="error", value=reason)
            if isinstance(exc, PERMANENT_ERRORS):
                raise AirflowFailException(reason) from exc
            raise

    def run(self, context: Context) -> Any:
        raise NotImplementedError
