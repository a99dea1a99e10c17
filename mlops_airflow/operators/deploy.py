"""Promote a registered version and see it served, rolling back if it does not come up."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Literal

from mlops_airflow.operators.base import MlopsBaseOperator

if TYPE_CHECKING:
    from airflow.sdk import Context

    from mlops_airflow.pipeline.deploy import ServingTarget

Target = Literal["local", "none"]


def check_target(target: str) -> None:
    if target not in ("local", "none"):
        raise ValueError(f"target must be 'local' or 'none', got {target!r}")


def serving_target(target: Target, server_url: str | None, timeout: float) -> ServingTarget | None:
    """The local model server to wait for (URL from settings unless given), or None to move the alias only."""
    if target == "none":
        return None
    from mlops_airflow import settings
    from mlops_airflow.deploy.local import LocalServerTarget

    return LocalServerTarget(server_url or settings.server_url(), timeout=timeout)


class DeployModelOperator(MlopsBaseOperator):
    """Stage, move ``alias`` by compare-and-swap, wait for the server, roll back on failure.

    :param model_name: the model (templated).
    :param version: from :class:`RegisterModelOperator` (templated).
    :param verdict_uri: from :class:`EvaluateModelOperator` (templated).
    :param target: ``local`` (the ``mlops-airflow serve`` model server) or ``none`` (move the alias only).
    :param server_url: the local server's URL; default from settings (templated).
    :param alias: the alias that names what is live.
    :param wait_timeout: seconds to wait for the server to report the new version.
    """

    template_fields: Sequence[str] = ("registry_uri", "model_name", "version", "verdict_uri", "server_url")
    default_timeout = timedelta(minutes=15)

    def __init__(
        self,
        *,
        model_name: str,
        version: Any,
        verdict_uri: str,
        target: Target = "local",
        server_url: str | None = None,
        alias: str = "champion",
        wait_timeout: float = 60.0,
        **kwargs: Any,
    ) -> None:
        check_target(target)
        super().__init__(**kwargs)
        self.model_name = model_name
        self.version = version
        self.verdict_uri = verdict_uri
        self.target = target
        self.server_url = server_url
        self.alias = alias
        self.wait_timeout = wait_timeout

    def run(self, context: Context) -> dict[str, Any]:
        from mlops_airflow.pipeline.deploy import run_deployment

        lineage = self.lineage(context)
        result = run_deployment(
            self.registry,
            model_name=self.model_name,
            version=int(self.version),
            verdict_uri=self.verdict_uri,
            target=serving_target(self.target, self.server_url, self.wait_timeout),
            by=f"{lineage['dag_id']}/{lineage['run_id']}/{lineage['task_id']}",
            alias=self.alias,
        )
        self.log.info("Deploy result: %s", result)
        return result
