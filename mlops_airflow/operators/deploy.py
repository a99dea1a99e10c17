"""Promote a registered version and see it served, rolling back if it does not come up."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Literal

from mlops_airflow.operators.base import MlopsBaseOperator

if TYPE_CHECKING:
    from airflow.sdk import Context


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
        target: Literal["local", "none"] = "local",
        server_url: str | None = None,
        alias: str = "champion",
        wait_timeout: float = 60.0,
        **kwargs: Any,
    ) -> None:
        if target not in ("local", "none"):
            raise ValueError(f"target must be 'local' or 'none', got {target!r}")
        super().__init__(**kwargs)
        self.model_name = model_name
        self.version = version
        self.verdict_uri = verdict_uri
        self.target = target
        self.server_url = server_url
        self.alias = alias
        self.wait_timeout = wait_timeout

    def run(self, context: Context) -> dict[str, Any]:
        from mlops_airflow import settings
        from mlops_airflow.pipeline.deploy import run_deployment

        serving = None
        if self.target == "local":
            from mlops_airflow.deploy.local import LocalServerTarget

            serving = LocalServerTarget(self.server_url or settings.server_url(), timeout=self.wait_timeout)
        lineage = self.lineage(context)
        result = run_deployment(
            self.registry,
            model_name=self.model_name,
            version=int(self.version),
            verdict_uri=self.verdict_uri,
            target=serving,
            by=f"{lineage['dag_id']}/{lineage['run_id']}/{lineage['task_id']}",
            alias=self.alias,
        )
        self.log.info("Deploy result: %s", result)
        return result
