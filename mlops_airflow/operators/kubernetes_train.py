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

from mlops_airflow.operators.train import TRAINING_FIELDS, training_arguments, training_lineage

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
    :param retrain_trigger: record in the lineage that this DAG, with this run's Params, retrains
        the model (as ``TrainModelOperator`` does).
    """

    template_fields: Sequence[str] = (*KubernetesPodOperator.template_fields, *TRAINING_FIELDS, "registry_uri")
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
        retrain_trigger: bool = True,
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
        self.retrain_trigger = retrain_trigger
        self._env_set_by_us: frozenset[str] = frozenset()

    @cached_property
    def registry_hook(self) -> RegistryHook:
        # Not `hook`: the provider's `hook` is the KubernetesHook.
        from mlops_airflow.hooks.registry import RegistryHook

        return RegistryHook(registry_uri=self.registry_uri or None, conn_id=self.conn_id)

    def training_request(self, context: Context | None) -> dict[str, Any]:
        """The JSON request the pod's entrypoint receives (see :mod:`mlops_airflow.pipeline.entrypoint`)."""
        from mlops_airflow.registry import idempotency_key

        lineage = training_lineage(context, retrain_trigger=self.retrain_trigger) if context else {}
        claim = (idempotency_key(lineage["dag_id"], lineage["run_id"], lineage["task_id"], lineage["map_index"])
                 + f"/try-{lineage['try_number']}") if lineage else "dry-run"
        return {**training_arguments(self), "lineage": {**lineage, "pod": True}, "claim": claim}

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

        request = self.training_request(context)  # checked: a bad mapping raises ConfigError here
        self.arguments = [json.dumps(request, sort_keys=True)]
        ours = self.pod_env()
        given = convert_env_vars_or_raise_error(self.env_vars) if self.env_vars else []
        # Ours would win anyway (they come last), but a DAG that sets one of them means
        # something else than what the pod will do: say so instead of ignoring it.
        taken = [e.name for e in given if e.name in ours and e.name not in self._env_set_by_us]
        if taken:
            raise ValueError(f"env_vars: {taken[0]} is set by the operator from the worker's settings; "
                             f"do not set it in env_vars (set it in the worker's [mlops_airflow] config)")
        self.env_vars = [e for e in given if e.name not in ours] + [k8s.V1EnvVar(name=k, value=v) for k, v in ours.items()]
        self._env_set_by_us = frozenset(ours)  # a rebuild (a retry) finds them in env_vars: not the DAG's
        return super().build_pod_request_obj(context, dry_run=dry_run)

    def pod_env(self) -> dict[str, str]:
        """The settings the pod must share with this worker: registry, S3 endpoint, allowlists.

        The allowlists are the worker's resolved ``[mlops_airflow]`` settings, so the pod
        allows what the worker would. An empty list is passed as an empty variable, which the
        pod reads as unset: it then falls back to the image's own ``[mlops_airflow]`` config,
        if it has one.
        """
        from mlops_airflow import settings

        env = {"MLOPS_AIRFLOW_REGISTRY_URI": self.registry_hook.registry_uri}
        if env["MLOPS_AIRFLOW_REGISTRY_URI"].startswith("s3://"):
            env.update(self._s3_env())
        env["MLOPS_AIRFLOW_ESTIMATOR_ALLOWLIST"] = ",".join(settings.estimator_allowlist_extra())
        env["MLOPS_AIRFLOW_PIPELINE_FACTORY_ALLOWLIST"] = ",".join(settings.pipeline_factory_allowlist())
        return env

    def cleanup(self, pod: k8s.V1Pod, remote_pod: k8s.V1Pod, xcom_result: dict | None = None,
                context: Context | None = None) -> None:
        """The provider's, but a pod whose entrypoint exited 2 (retrying cannot help) fails the task for good.

        Both ways of running the pod (waiting, or deferred) end here with the finished pod.
        """
        from airflow.sdk.exceptions import AirflowException, AirflowFailException, AirflowSkipException

        from mlops_airflow.pipeline.entrypoint import EXIT_PERMANENT

        try:
            super().cleanup(pod, remote_pod, xcom_result, context)
        except (AirflowSkipException, AirflowFailException):
            raise
        except AirflowException as exc:
            code = terminated_exit_code(remote_pod, self.base_container_name)
            if code != EXIT_PERMANENT:
                raise
            message = (f"the training pod exited {code}: the request, data or spec is wrong, "
                       f"retrying cannot help (the reason is the last line of the pod's log)")
            if context is not None:
                context["ti"].xcom_push(key="error", value=message)
            raise AirflowFailException(f"{message}\n{exc}") from exc

    def execute(self, context: Context) -> Any:
        from airflow.sdk.exceptions import AirflowFailException

        from mlops_airflow.exceptions import ConfigError

        try:  # bad arguments fail here, for good, before a pod is asked for
            self.build_pod_request_obj(context, dry_run=True)
        except (ConfigError, ValueError) as exc:
            raise AirflowFailException(str(exc)) from exc
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


def terminated_exit_code(pod: k8s.V1Pod | None, container_name: str) -> int | None:
    """The exit code of the pod's container ``container_name`` if it has terminated, else None."""
    statuses = (pod.status.container_statuses if pod is not None and pod.status else None) or []
    for status in statuses:
        if status.name == container_name and status.state and status.state.terminated:
            return int(status.state.terminated.exit_code)
    return None
