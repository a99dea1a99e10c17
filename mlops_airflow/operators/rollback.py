"""Roll the champion back to an earlier version, recording who and why."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from mlops_airflow.operators.deploy import ServingTargetOperator

if TYPE_CHECKING:
    from airflow.sdk import Context


class RollbackModelOperator(ServingTargetOperator):
    """Move the alias back to an earlier version (default: the one before the current) and see it served.

    :param model_name: the model (templated).
    :param to_version: the version to put back; None for the previous one (templated).
    :param reason: why, recorded on the alias (templated).

    The serving target is as :class:`~mlops_airflow.operators.deploy.ServingTargetOperator` says:
    ``local`` (wait for the model server), ``kubernetes`` (roll the earlier version out to the
    Deployment, with the same arguments as :class:`~mlops_airflow.operators.deploy.DeployModelOperator`
    except ``canary``: a rollback restores a version that served before, directly) or ``none``
    (move the alias only). If the version does not come up, the alias moves back and the task fails.
    """

    template_fields: Sequence[str] = ("registry_uri", "model_name", "to_version", "reason", "server_url",
                                      "namespace", "image")
    default_timeout = timedelta(minutes=15)
    allows_canary = False

    def __init__(self, *, model_name: str, to_version: Any = None, reason: str = "manual rollback",
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.model_name = model_name
        self.to_version = to_version
        self.reason = reason

    def run(self, context: Context) -> dict[str, Any]:
        from mlops_airflow.exceptions import ConfigError
        from mlops_airflow.pipeline.rollback import run_rollback

        to = self.to_version
        if to in (None, "", "None"):
            to = None
        else:
            try:
                to = int(to)
            except (TypeError, ValueError):
                raise ConfigError(f"to_version must be a version number or empty, got {to!r}") from None
        lineage = self.lineage(context)
        result = run_rollback(self.registry, model_name=self.model_name, to_version=to, alias=self.alias,
                              by=f"{lineage['dag_id']}/{lineage['run_id']}", reason=str(self.reason),
                              target=self.serving_target())
        self.log.info("Rollback: %s", result)
        return result
