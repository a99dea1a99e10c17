"""Register a blessed candidate as a new model version."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from mlops_airflow.operators.base import MlopsBaseOperator
from mlops_airflow.operators.links import ModelVersionLink

if TYPE_CHECKING:
    from airflow.sdk import Context


class RegisterModelOperator(MlopsBaseOperator):
    """Commit a new version, after checking the verdict binds to this candidate and blessed it.

    A candidate the gate did not bless (and no person approved or overrode) skips this
    task, and so the deploy after it, with the reason in the log. A retried task returns
    the version its first attempt made.

    :param model_name: the model (templated).
    :param candidate_sha256: from :class:`TrainModelOperator` (templated).
    :param verdict_uri: from :class:`EvaluateModelOperator` (templated).
    """

    template_fields: Sequence[str] = ("registry_uri", "model_name", "candidate_sha256", "verdict_uri")
    operator_extra_links = (ModelVersionLink(),)
    default_timeout = timedelta(minutes=10)
    #: Set once registered; the extra link opens its page.
    model_version: int | None = None

    def __init__(
        self, *, model_name: str, candidate_sha256: str, verdict_uri: str, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.model_name = model_name
        self.candidate_sha256 = candidate_sha256
        self.verdict_uri = verdict_uri

    def run(self, context: Context) -> dict[str, Any]:
        from airflow.sdk.exceptions import AirflowSkipException

        from mlops_airflow.pipeline.register import read_verdict, run_registration, verdict_gate
        from mlops_airflow.registry import idempotency_key

        allowed, why, _ = verdict_gate(self.registry, read_verdict(self.registry, self.verdict_uri))
        if not allowed:
            raise AirflowSkipException(f"not registering: {why}")
        lineage = self.lineage(context)
        manifest = run_registration(
            self.registry,
            model_name=self.model_name,
            candidate_sha256=self.candidate_sha256,
            verdict_uri=self.verdict_uri,
            idempotency_key=idempotency_key(lineage["dag_id"], lineage["run_id"], lineage["task_id"], lineage["map_index"]),
            lineage=lineage,
        )
        self.model_version = manifest["version"]
        self.log.info("Registered %s version %s", self.model_name, manifest["version"])
        return {"model_name": self.model_name, "version": manifest["version"], "sha256": manifest["sha256"]}
