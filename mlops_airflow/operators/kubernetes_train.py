"""Train a candidate in its own Kubernetes pod.

The one named exception to the parse rule: subclassing the provider's
``KubernetesPodOperator`` means importing it, and with it the kubernetes client, when
this module is imported (measured in ``bench/pod_operator_import.py``). Keep it in its
own module and import it only from DAGs that train in pods.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
from airflow.providers.cncf.kubernetes.secret import Secret
from kubernetes.client import models as k8s

if TYPE_CHECKING:
    from airflow.sdk import Context

    from mlops_airflow.hooks.registry import RegistryHook

#: The training entrypoint the pod runs; the image must have mlops-airflow installed.
ENTRYPOINT = ["python", "-m", "mlops_airflow.training"]


class KubernetesTrainOperator(KubernetesPodOperator):
    """Run the training stage in a pod: ``python -m mlops_airflow.training '<request>'``.

    The pod runs the same :func:`~mlops_airflow.pipeline.train.run_training` as
    :class:`~mlops_airflow.operators.train.TrainModelOperator`, on the validated snapshot,
    and stores the candidate in the registry (which must be ``s3://``, or storage the pod
    and the workers share). The candidate comes back through the registry, not the pod's
    logs: the task reads the *training claim* the pod wrote under a key made from dag id,
    run id, task id, map index and try number, checks it answers this very request, and
    pushes the same small result as ``TrainModelOperator`` (``sha256``, ``artifact_uri``,
    ...), so the evaluate / register / deploy tasks after it are unchanged.

    Credentials never appear in the pod spec: the pod gets the registry URI and the S3
    endpoint and region (from the connection ``conn_id``'s extra or host) as plain
    environment variables, and the access keys only from the Kubernetes Secret
    ``credentials_secret`` (its keys, e.g. ``AWS_ACCESS_KEY_ID`` and
    ``AWS_SECRET_ACCESS_KEY``, become environment variables), or from the pod's service
    account (IRSA, workload identity) when no secret is given.

    Everything else is the provider's: ``image``, ``namespace``, ``container_resources``,
    ``service_account_name``, ``node_selector``, ``tolerations``, ``secrets``,
    ``env_vars``, ... pass straight through.

    :param model_name: the model (templated).
    :param dataset_uri: the validated snapshot from ``ValidateDataOperator`` (templated).
    :param target: the target column (templated).
    :param estimator: dotted path of an allowlisted estimator, or ``auto`` (templated).
    :param estimator_params: keyword arguments for the estimator (templated).
    :param row_key: column whose hash chooses the holdout (templated).
    :param pipeline_factory: allowlisted pipeline factory instead of ``estimator`` (templated).
    :param search_space: parameters to tune; empty: no tuning (templated).
    :param tuning: search options (templated).
    :param registry_uri: the registry root the pod writes to; default from settings (templated).
    :param conn_id: Airflow connection giving the S3 endpoint and region (its credentials are not forwarded).
    :param credentials_secret: name of a Kubernetes Secret whose keys become the pod's environment.
    """

    template_fields: Sequence[str] = (
        *KubernetesPodOperator.template_fields,
        "model_name", "dataset_uri", "target", "estimator", "estimator_params", "row_key",
        "pipeline_factory", "search_space", "tuning", "registry_uri",
    )
    ui_color = "#e8f4ea"

    def __init__(
        self,
        *,
        model_name: str,
        dataset_uri: str,
        target: str,
        image: str,
        estimator: str = "auto",
        estimator_params: dict[str, Any] | None = None,
        row_key: str | None = None,
        pipeline_factory: str | None = None,
        search_space: dict[str, Any] | None = None,
        tuning: dict[str, Any] | None = None,
        registry_uri: str | None = None,
        conn_id: str = "mlops_s3",
        credentials_secret: str | None = None,
        **kwargs: Any,
    ) -> None:
        if kwargs.get("do_xcom_push"):
            raise ValueError("do_xcom_push: the candidate comes back through the registry; leave it False")
        if kwargs.get("cmds") or kwargs.get("arguments"):
            raise ValueError("cmds/arguments: the pod runs the training entrypoint; give training arguments instead")
        kwargs.setdefault("execution_timeout", timedelta(hours=2))
        kwargs.setdefault("name", "mlops-train")
        secrets = list(kwargs.pop("secrets", None) or [])
        if credentials_secret:
            secrets.append(Secret("env", None, credentials_secret))
        super().__init__(image=image, cmds=list(ENTRYPOINT), secrets=secrets, **kwargs)
        self.model_name = model_name
        self.dataset_uri = dataset_uri
        self.target = target
        self.estimator = estimator
        self.estimator_params = estimator_params
        self.row_key = row_key
        self.pipeline_factory = pipeline_factory
        self.search_space = search_space
        self.tuning = tuning
        self.registry_uri = registry_uri
        self.conn_id = conn_id
        self.credentials_secret = credentials_secret

    @cached_property
    def registry_hook(self) -> RegistryHook:
        # Not `hook`: the provider's `hook` is the KubernetesHook.
        from mlops_airflow.hooks.registry import RegistryHook

        return RegistryHook(registry_uri=self.registry_uri or None, conn_id=self.conn_id)

    def training_request(self, context: Context | None) -> dict[str, Any]:
        """The JSON request the pod's entrypoint receives (see :mod:`mlops_airflow.pipeline.entrypoint`)."""
        from mlops_airflow.operators.base import MlopsBaseOperator
        from mlops_airflow.registry import idempotency_key

        lineage = MlopsBaseOperator.lineage(context) if context else {}
        claim = (idempotency_key(lineage["dag_id"], lineage["run_id"], lineage["task_id"], lineage["map_index"])
                 + f"/try-{lineage['try_number']}") if lineage else "dry-run"
        return {
            "model_name": str(self.model_name),
            "dataset_uri": str(self.dataset_uri),
            "target": str(self.target),
            "estimator": str(self.estimator or "auto"),
            "estimator_params": self.estimator_params or None,
            "row_key": str(self.row_key) if self.row_key else None,
            "pipeline_factory": str(self.pipeline_factory) if self.pipeline_factory else None,
            "search_space": self.search_space or None,
            "tuning": self.tuning or None,
            "lineage": {**lineage, "pod": True},
            "claim": claim,
        }

    def _s3_env(self) -> dict[str, str]:
        """Endpoint and region from the connection (never its keys: those come from the Secret)."""
        from airflow.sdk.exceptions import AirflowNotFoundException

        from mlops_airflow.hooks.registry import endpoint_from

        try:
            conn = self.registry_hook.get_connection(self.conn_id)
        except AirflowNotFoundException:
            return {}
        extra = conn.extra_dejson
        env = {"AWS_ENDPOINT_URL": extra.get("endpoint_url") or endpoint_from(conn.host, conn.port),
               "AWS_DEFAULT_REGION": extra.get("region_name")}
        return {name: value for name, value in env.items() if value}

    def build_pod_request_obj(self, context: Context | None = None, *, dry_run: bool = False) -> k8s.V1Pod:
        """The pod: the provider's, with the training request as the argument and the registry in the environment."""
        from airflow.providers.cncf.kubernetes.backcompat.backwards_compat_converters import (
            convert_env_vars_or_raise_error,
        )

        request = self.training_request(context)
        for name in ("estimator_params", "search_space", "tuning"):
            if request[name] is not None and not isinstance(request[name], dict):
                raise ValueError(f"{name} must be a mapping, got {request[name]!r}")
        self.arguments = [json.dumps(request, sort_keys=True)]
        ours = {"MLOPS_AIRFLOW_REGISTRY_URI": self.registry_hook.registry_uri}
        if ours["MLOPS_AIRFLOW_REGISTRY_URI"].startswith("s3://"):
            ours.update(self._s3_env())
        given = convert_env_vars_or_raise_error(self.env_vars) if self.env_vars else []
        self.env_vars = [e for e in given if e.name not in ours] + [k8s.V1EnvVar(name=k, value=v) for k, v in ours.items()]
        return super().build_pod_request_obj(context, dry_run=dry_run)

    def execute(self, context: Context) -> Any:
        super().execute(context)  # with deferrable=True this defers, and trigger_reentry collects
        return self.collect(context)

    def trigger_reentry(self, context: Context, event: dict[str, Any]) -> Any:
        super().trigger_reentry(context, event)
        return self.collect(context)

    def collect(self, context: Context) -> None:
        """Read the candidate the pod stored, by its claim, and push what ``TrainModelOperator`` pushes."""
        from airflow.sdk.exceptions import AirflowFailException

        from mlops_airflow.exceptions import RegistryError
        from mlops_airflow.pipeline.entrypoint import read_claim
        from mlops_airflow.pipeline.train import short_candidate

        # The request is rebuilt from the same rendered fields and context, so it is the one the pod got.
        try:
            record = read_claim(self.registry_hook.get_registry(), self.training_request(context))
        except RegistryError as exc:
            context["ti"].xcom_push(key="error", value=f"{type(exc).__name__}: {exc}")
            raise AirflowFailException(str(exc)) from exc
        result = short_candidate(record)
        self.log.info("Pod trained %s (%s): candidate %s", result["estimator"], result["task_type"], result["sha256"][:12])
        # Pushed by hand, key by key like multiple_outputs: the provider's do_xcom_push means
        # "add the XCom sidecar", which this operator does not need.
        ti = context["ti"]
        for key, value in result.items():
            ti.xcom_push(key=key, value=value)
        ti.xcom_push(key="return_value", value=result)
        return None
