"""Promote a registered version and see it served, rolling back if it does not come up."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Literal

from mlops_airflow.operators.base import MlopsBaseOperator
from mlops_airflow.operators.links import ModelVersionLink

if TYPE_CHECKING:
    from airflow.sdk import Context

    from mlops_airflow.pipeline.deploy import ServingTarget

Target = Literal["local", "none", "kubernetes"]
#: Arguments of :class:`~mlops_airflow.deploy.kubernetes.KubernetesSettings` that ``kubernetes_options`` may set.
KUBERNETES_OPTIONS = ("name", "registry_uri", "template_dir", "env", "env_secret", "token_secret", "resources",
                      "service_type", "service_port", "base_url", "ready_timeout", "poll_interval")


def check_target(target: str, allowed: tuple[str, ...] = ("local", "none")) -> None:
    if target not in allowed:
        names = [repr(name) for name in allowed]
        raise ValueError(f"target must be {', '.join(names[:-1])} or {names[-1]}, got {target!r}")


class ServingTargetOperator(MlopsBaseOperator):
    """Base of the operators that move ``alias`` to a version and see it served: the serving-target arguments.

    One place for them, so deploying and rolling back reach the same targets the same way.

    :param target: ``local`` (the ``mlops-airflow serve`` model server), ``kubernetes`` (a Deployment
        behind a Service, see :mod:`mlops_airflow.deploy.kubernetes`) or ``none`` (move the alias only).
    :param server_url: the local server's URL; default from settings (templated).
    :param alias: the alias that names what is live.
    :param wait_timeout: seconds to wait for the local server to report the new version.
    :param kubernetes_conn_id: the provider's Kubernetes connection (kube_config / in_cluster, namespace).
    :param namespace: where the server runs; default the connection's namespace, else ``default`` (templated).
    :param image: the model server image; default ``mlops-airflow-server:<version>`` (templated).
    :param replicas: replicas of the main Deployment.
    :param canary: a canary policy (``share``, ``window`` seconds, ``max_error_rate``,
        ``max_p99_seconds``, ``min_requests``, ``client_errors``); None rolls out directly.
        Only where :attr:`allows_canary`.
    :param rollout_timeout: seconds each rollout may take before it is rolled back.
    :param kubernetes_options: further settings: ``name``, ``registry_uri`` (as the pods reach it),
        ``template_dir``, ``env``, ``env_secret``, ``token_secret`` (the Secret the pods read the server
        token from; the deploy's own calls send the ``MLOPS_AIRFLOW_SERVER_TOKEN`` setting of the worker),
        ``resources``, ``service_type``, ``service_port``, ``base_url``, ``ready_timeout``, ``poll_interval``.
    """

    #: Whether a ``canary`` policy is accepted; an operator that restores a known version says no.
    allows_canary = True
    model_name: str

    def __init__(
        self,
        *,
        target: Target = "local",
        server_url: str | None = None,
        alias: str = "champion",
        wait_timeout: float = 60.0,
        kubernetes_conn_id: str = "kubernetes_default",
        namespace: str | None = None,
        image: str | None = None,
        replicas: int = 2,
        canary: dict[str, Any] | None = None,
        rollout_timeout: float = 600.0,
        kubernetes_options: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        check_target(target, ("local", "none", "kubernetes"))
        if canary is not None and not self.allows_canary:
            raise ValueError(f"canary is not supported by {type(self).__name__}, which rolls the version out "
                             f"directly; got canary={canary!r}")
        if target != "kubernetes" and (canary or kubernetes_options):
            raise ValueError(f"canary and kubernetes_options need target='kubernetes', got target={target!r}")
        if target == "kubernetes":
            from mlops_airflow.deploy.kubernetes import CanaryPolicy, check_number

            check_number("replicas", replicas, low=1, integer=True)
            check_number("rollout_timeout", rollout_timeout, low=0, low_open=True)
            if canary is not None:
                CanaryPolicy.from_mapping(canary)
            unknown = sorted(set(kubernetes_options or {}) - set(KUBERNETES_OPTIONS))
            if unknown:
                raise ValueError(f"kubernetes_options has unknown keys {unknown}; known: {list(KUBERNETES_OPTIONS)}")
        super().__init__(**kwargs)
        self.target = target
        self.server_url = server_url
        self.alias = alias
        self.wait_timeout = wait_timeout
        self.kubernetes_conn_id = kubernetes_conn_id
        self.namespace = namespace
        self.image = image
        self.replicas = replicas
        self.canary = canary
        self.rollout_timeout = rollout_timeout
        self.kubernetes_options = dict(kubernetes_options or {})

    def serving_target(self) -> ServingTarget | None:
        """The target to see the version served on, or None (``target="none"``) to move the alias only."""
        if self.target == "kubernetes":
            return self.kubernetes_target()
        if self.target == "none":
            return None
        from mlops_airflow import settings
        from mlops_airflow.deploy.local import LocalServerTarget

        return LocalServerTarget(self.server_url or settings.server_url(), timeout=self.wait_timeout)

    def kubernetes_target(self) -> ServingTarget:
        """The Kubernetes target, its clients from the provider's KubernetesHook (``kubernetes_conn_id``)."""
        from mlops_airflow.deploy.kubernetes import target_from_connection

        return target_from_connection(
            self.registry, self.model_name, conn_id=self.kubernetes_conn_id, namespace=self.namespace,
            image=self.image, replicas=self.replicas, rollout_timeout=self.rollout_timeout, canary=self.canary,
            options=self.kubernetes_options)


class DeployModelOperator(ServingTargetOperator):
    """Stage, move ``alias`` by compare-and-swap, wait for the server, roll back on failure.

    :param model_name: the model (templated).
    :param version: from :class:`RegisterModelOperator` (templated).
    :param verdict_uri: from :class:`EvaluateModelOperator` (templated).

    The serving target (``target``, ``server_url``, ``alias``, ``wait_timeout`` and, for
    ``target="kubernetes"``, ``kubernetes_conn_id``, ``namespace``, ``image``, ``replicas``,
    ``canary``, ``rollout_timeout``, ``kubernetes_options``) is as :class:`ServingTargetOperator` says.
    """

    template_fields: Sequence[str] = ("registry_uri", "model_name", "version", "verdict_uri", "server_url",
                                      "namespace", "image")
    operator_extra_links = (ModelVersionLink(),)
    default_timeout = timedelta(minutes=15)
    #: The version being deployed, once known; the extra link opens its page.
    model_version: int | None = None

    def __init__(self, *, model_name: str, version: Any, verdict_uri: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.model_name = model_name
        self.version = version
        self.verdict_uri = verdict_uri

    def run(self, context: Context) -> dict[str, Any]:
        from mlops_airflow.pipeline.deploy import run_deployment

        lineage = self.lineage(context)
        self.model_version = version = int(self.version)
        result = run_deployment(
            self.registry,
            model_name=self.model_name,
            version=version,
            verdict_uri=self.verdict_uri,
            target=self.serving_target(),
            by=f"{lineage['dag_id']}/{lineage['run_id']}/{lineage['task_id']}",
            alias=self.alias,
        )
        self.log.info("Deploy result: %s", result)
        return result
