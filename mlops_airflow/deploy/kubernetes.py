"""The Kubernetes deploy target: the model server as a Deployment behind a Service.

The deploy stage moves the alias, then calls :meth:`KubernetesTarget.wait_for_version`,
which renders three objects from YAML templates (``include/k8s/`` or the user's folder)::

    ConfigMap  <app>           stable settings: model name, registry URI (+ extra env)
    Deployment <app>           `mlops-airflow serve` pinned to that version and checksum (pod env)
    Service    <app>           the stable address; selects every track of <app>

creates each (replaces it when it exists: 409), waits for the rollout, and smoke-tests
through the Service: the server must report the version and checksum, and answer
``/predict`` on smoke rows. With a :class:`CanaryPolicy` and a version already serving, the
new version first runs as ``<app>-canary`` (its own ConfigMap and Deployment) beside the
main Deployment behind the same Service; the canary pods' ``/metrics`` decide: promote
(roll the main Deployment, delete the canary) or roll back (delete the canary; the main
Deployment was never touched).

Any failure puts back what was there before — the objects as read before the change, or
nothing where there was nothing — and raises :class:`DeployError` with the reason; the
deploy stage then moves the alias back.

The kubernetes client objects are injected (``AppsV1Api``, ``CoreV1Api``); the kubernetes
package itself is imported only inside functions, so importing this module stays cheap.
"""

from __future__ import annotations

import copy
import functools
import json
import logging
import math
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import httpx
import yaml

from mlops_airflow import __version__
from mlops_airflow.deploy.local import LocalServerTarget, bearer_header
from mlops_airflow.exceptions import ConfigError, DeployError
from mlops_airflow.serving.middleware import PROXY_AUTH_HEADER

if TYPE_CHECKING:
    from kubernetes.client import ApiClient, AppsV1Api, CoreV1Api

    from mlops_airflow.registry import ModelRegistry

log = logging.getLogger(__name__)

DEFAULT_IMAGE = f"mlops-airflow-server:{__version__}"
DEFAULT_RESOURCES: dict[str, Any] = {"requests": {"cpu": "250m", "memory": "512Mi"}, "limits": {"memory": "1Gi"}}
APP_LABEL = "app.kubernetes.io/name"
TRACK_LABEL = "mlops-airflow/track"
#: On the pod template, so that a new version always rolls even if nothing else changed.
SHA_ANNOTATION = "mlops-airflow/model-sha256"
SERVER_PORT = 8080
#: The variables the container's command line reads; `env` may not override them.
RESERVED_ENV = ("MLOPS_AIRFLOW_MODEL_NAME", "MLOPS_AIRFLOW_MODEL_VERSION", "MLOPS_AIRFLOW_MODEL_SHA256",
                "MLOPS_AIRFLOW_REGISTRY_URI")
#: `env` lands in a plain ConfigMap: credentials belong in `env_secret` / `token_secret` instead.
CREDENTIAL_ENV = ("MLOPS_AIRFLOW_SERVER_TOKEN", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")
CREDENTIAL_WORDS = ("PASSWORD", "SECRET", "TOKEN")
TOKEN_ENV = "MLOPS_AIRFLOW_SERVER_TOKEN"
#: key -> (template file, kind); also the order in which they are applied.
TEMPLATES: dict[str, tuple[str, str]] = {
    "configmap": ("configmap.yaml", "ConfigMap"),
    "deployment": ("deployment.yaml", "Deployment"),
    "service": ("service.yaml", "Service"),
}
#: kind -> (client attribute, method suffix): create_namespaced_<suffix> and friends.
_API: dict[str, tuple[str, str]] = {
    "ConfigMap": ("core_v1", "config_map"),
    "Deployment": ("apps_v1", "deployment"),
    "Service": ("core_v1", "service"),
}
_PLACEHOLDER = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_DNS_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

Track = Literal["stable", "canary"]
SmokeRows = Callable[[str, int], Any] | Sequence[Mapping[str, Any]] | None


def check_number(name: str, value: Any, *, low: float, high: float = math.inf, low_open: bool = False,
            integer: bool = False) -> None:
    kind = "an integer" if integer else "a number"
    if isinstance(value, bool) or not isinstance(value, int if integer else (int, float)):
        raise ValueError(f"{name} must be {kind}, got {value!r}")
    if not math.isfinite(value) or value < low or (low_open and value == low) or value > high:
        bounds = f"{'(' if low_open else '['}{low:g}, {high:g}]" if math.isfinite(high) else (
            f"> {low:g}" if low_open else f">= {low:g}")
        raise ValueError(f"{name} must be {bounds}, got {value!r}")


@dataclass(frozen=True)
class CanaryPolicy:
    """How a new version earns the main Deployment.

    The canary runs ``ceil(replicas * share)`` pods (at least one) beside the main replicas,
    behind the same Service, for ``window`` seconds. Then its pods' ``/metrics`` are read:
    it is promoted only if it answered at least ``min_requests`` ``/predict`` requests, with
    an error rate of at most ``max_error_rate`` and a p99 latency (from the histogram
    buckets, as Prometheus' ``histogram_quantile`` computes it) of at most
    ``max_p99_seconds``. Errors are answers >= 500 and, with ``client_errors`` (default),
    also 4xx: a version that refuses rows the previous one accepted is a regression.
    Only the traffic of the window counts: each canary pod's ``/metrics`` is read once after
    its smoke test and once at the end, and the difference is judged (the smoke requests
    are not traffic). ``min_requests`` (default 20) keeps a canary that saw almost nothing
    from being promoted on a handful of lucky requests; set it to 0 to promote on silence.
    """

    share: float = 0.25
    window: float = 300.0
    max_error_rate: float = 0.01
    max_p99_seconds: float = 0.5
    min_requests: int = 20
    client_errors: bool = True

    def __post_init__(self) -> None:
        check_number("share", self.share, low=0, high=1, low_open=True)
        check_number("window", self.window, low=0)
        check_number("max_error_rate", self.max_error_rate, low=0, high=1)
        check_number("max_p99_seconds", self.max_p99_seconds, low=0, low_open=True)
        check_number("min_requests", self.min_requests, low=0, integer=True)
        if not isinstance(self.client_errors, bool):
            raise ValueError(f"client_errors must be true or false, got {self.client_errors!r}")

    @classmethod
    def from_mapping(cls, value: Mapping[str, Any], *, name: str = "canary") -> CanaryPolicy:
        """A policy from a plain mapping (a DAG argument); ValueError names ``<name>.<key>``."""
        if not isinstance(value, Mapping):
            raise ValueError(f"{name} must be a mapping of canary settings, got {value!r}")
        known = [f.name for f in fields(cls)]
        unknown = sorted(set(value) - set(known))
        if unknown:
            raise ValueError(f"{name} has unknown keys {unknown}; known: {known}")
        try:
            return cls(**value)
        except ValueError as exc:
            raise ValueError(f"{name}.{exc}") from None

    def canary_replicas(self, replicas: int) -> int:
        return max(1, math.ceil(replicas * self.share))


@dataclass(frozen=True)
class KubernetesSettings:
    """Where and how the model server runs. Validated on construction (ValueError naming the field).

    :param registry_uri: the registry the pods read (``MLOPS_AIRFLOW_REGISTRY_URI`` in the
        ConfigMap); it must be reachable from the cluster, e.g. ``s3://bucket/prefix``.
    :param name: the app name (Deployment, Service, ConfigMap); default ``mlops-<model>``.
    :param env: extra environment for the pods (e.g. ``AWS_ENDPOINT_URL``), added to the ConfigMap;
        credentials are refused here (``*PASSWORD*``, ``*SECRET*``, ``*TOKEN*``, ...): use ``env_secret``.
    :param token_secret: ``name`` or ``name/key`` of a Secret holding the server's bearer token
        (key default ``token``); the pods get it as ``MLOPS_AIRFLOW_SERVER_TOKEN`` (secretKeyRef).
    :param env_secret: a Secret whose keys become environment too (credentials); optional in
        the pod spec, default ``<app>-env``.
    :param base_url: smoke-test through this URL (an Ingress, a port-forward) instead of the
        API server's service proxy.
    :param ready_timeout: seconds the smoke test waits for the server to report the version
        once the rollout is complete.
    """

    registry_uri: str
    namespace: str = "default"
    name: str | None = None
    image: str = DEFAULT_IMAGE
    replicas: int = 2
    canary: CanaryPolicy | None = None
    rollout_timeout: float = 600.0
    ready_timeout: float = 60.0
    poll_interval: float = 2.0
    template_dir: str | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    env_secret: str | None = None
    token_secret: str | None = None
    resources: Mapping[str, Any] = field(default_factory=lambda: copy.deepcopy(DEFAULT_RESOURCES))
    service_type: str = "ClusterIP"
    service_port: int = 80
    base_url: str | None = None
    field_manager: str = "mlops-airflow"

    def __post_init__(self) -> None:
        if not isinstance(self.registry_uri, str) or not self.registry_uri.strip():
            raise ValueError(f"registry_uri must be a registry URI the pods can read, got {self.registry_uri!r}")
        if not isinstance(self.namespace, str) or not _DNS_LABEL.match(self.namespace) or len(self.namespace) > 63:
            raise ValueError(f"namespace must be a Kubernetes namespace name (DNS label), got {self.namespace!r}")
        if self.name is not None and (not isinstance(self.name, str) or not _DNS_LABEL.match(self.name)
                                      or len(self.name) > 56):
            raise ValueError(f"name must be a DNS label of at most 56 characters (room for '-canary'), got {self.name!r}")
        if not isinstance(self.image, str) or not self.image or any(c.isspace() for c in self.image):
            raise ValueError(f"image must be a container image reference, got {self.image!r}")
        check_number("replicas", self.replicas, low=1, integer=True)
        if self.canary is not None and not isinstance(self.canary, CanaryPolicy):
            raise ValueError(f"canary must be a CanaryPolicy or None, got {self.canary!r}")
        check_number("rollout_timeout", self.rollout_timeout, low=0, low_open=True)
        check_number("ready_timeout", self.ready_timeout, low=0, low_open=True)
        check_number("poll_interval", self.poll_interval, low=0, low_open=True)
        if not isinstance(self.env, Mapping):
            raise ValueError(f"env must be a mapping of variable names to strings, got {self.env!r}")
        for key, value in self.env.items():
            if not isinstance(key, str) or not _ENV_NAME.match(key):
                raise ValueError(f"env: {key!r} is not a valid environment variable name")
            if key in RESERVED_ENV:
                raise ValueError(f"env: {key} is set by the deploy target itself and cannot be overridden")
            if key in CREDENTIAL_ENV or any(word in key.upper() for word in CREDENTIAL_WORDS):
                raise ValueError(f"env: {key} looks like a credential and env lands in a plain ConfigMap: "
                                 f"put it in the env_secret Secret (the server token: token_secret)")
            if not isinstance(value, str):
                raise ValueError(f"env.{key} must be a string, got {value!r}")
        if self.env_secret is not None and (not isinstance(self.env_secret, str) or not self.env_secret
                                            or len(self.env_secret) > 253):
            raise ValueError(f"env_secret must be a Secret name, got {self.env_secret!r}")
        if self.token_secret is not None:
            secret, _, key = str(self.token_secret).partition("/")
            if (not isinstance(self.token_secret, str) or not secret or len(secret) > 253
                    or self.token_secret.count("/") > 1 or (_ and not key)):
                raise ValueError(f"token_secret must be a Secret name or 'name/key', got {self.token_secret!r}")
        if not isinstance(self.resources, Mapping):
            raise ValueError(f"resources must be a mapping (requests/limits), got {self.resources!r}")
        if self.service_type not in ("ClusterIP", "NodePort", "LoadBalancer"):
            raise ValueError(f"service_type must be ClusterIP, NodePort or LoadBalancer, got {self.service_type!r}")
        check_number("service_port", self.service_port, low=1, high=65535, integer=True)
        if self.base_url is not None and not str(self.base_url).startswith(("http://", "https://")):
            raise ValueError(f"base_url must be an http(s) URL, got {self.base_url!r}")

    def app_name(self, model_name: str) -> str:
        """The name of the Deployment, Service and ConfigMap: ``name``, or ``mlops-<model>`` made DNS-safe."""
        if self.name:
            return self.name
        slug = re.sub(r"[^a-z0-9]+", "-", model_name.lower()).strip("-")
        return f"mlops-{slug}"[:56].rstrip("-")

    def token_secret_ref(self) -> dict[str, str] | None:
        """The ``secretKeyRef`` of the server token (``name``, ``key``), or None."""
        if not self.token_secret:
            return None
        name, _, key = self.token_secret.partition("/")
        return {"name": name, "key": key or "token"}


def _read_or_none(api_client: ApiClient, call: Callable[..., Any], *args: Any) -> dict[str, Any] | None:
    """``call(*args)`` (a ``read_namespaced_*``) as a plain dict; None when the object does not exist."""
    from kubernetes.client.exceptions import ApiException

    try:
        return dict(api_client.sanitize_for_serialization(call(*args)))
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise


def default_template_dir() -> Path:
    """The templates shipped with the package (``include/k8s``)."""
    from mlops_airflow.settings import bundled_files

    return bundled_files()[1] / "k8s"


# -- rendering ------------------------------------------------------------------------


def _fill(node: Any, values: Mapping[str, Any], where: str) -> Any:
    """Fill ``${name}`` placeholders in every string of a parsed template.

    A string that is one placeholder becomes the value itself (a number stays a number);
    a placeholder inside a longer string is replaced by the value's text. Filling the
    parsed structure, not the YAML text, means no value can change the document's shape.
    """
    if isinstance(node, dict):
        return {key: _fill(value, values, where) for key, value in node.items()}
    if isinstance(node, list):
        return [_fill(item, values, where) for item in node]
    if not isinstance(node, str):
        return node

    def value_of(name: str) -> Any:
        if name not in values:
            raise ConfigError(f"{where}: unknown placeholder ${{{name}}}; known: {', '.join(sorted(values))}")
        return values[name]

    whole = _PLACEHOLDER.fullmatch(node)
    if whole:
        return copy.deepcopy(value_of(whole.group(1)))
    return _PLACEHOLDER.sub(lambda match: str(value_of(match.group(1))), node)


def _load_template(folder: Path, file_name: str, kind: str) -> dict[str, Any]:
    path = folder / file_name
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"no {file_name} in the Kubernetes template folder {folder}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from None
    if not isinstance(document, dict) or document.get("kind") != kind:
        found = document.get("kind") if isinstance(document, dict) else type(document).__name__
        raise ConfigError(f"{path} must hold one {kind} object, found {found!r}")
    return document


def render(settings: KubernetesSettings, model_name: str, version: int, sha256: str,
           *, track: Track = "stable") -> dict[str, dict[str, Any]]:
    """The ConfigMap, Deployment and Service serving ``model_name`` ``version``, as the API takes them.

    Keys ``configmap``, ``deployment``, ``service``. ``track="canary"`` names the ConfigMap and
    Deployment ``<app>-canary`` with the canary's share of replicas; the Service is the same
    for both tracks. Raises :class:`ConfigError` for a missing or broken template.
    """
    app = settings.app_name(model_name)
    name = app if track == "stable" else f"{app}-canary"
    replicas = settings.replicas
    if track == "canary":
        if settings.canary is None:
            raise ConfigError("a canary needs a canary policy in the Kubernetes settings")
        replicas = settings.canary.canary_replicas(settings.replicas)
    values: dict[str, Any] = {
        "app": app,
        "name": name,
        "configmap": name,
        "namespace": settings.namespace,
        "track": track,
        "model_name": model_name,
        "model_version": str(version),
        "model_sha256": sha256,
        "registry_uri": settings.registry_uri,
        "image": settings.image,
        "replicas": replicas,
        "progress_deadline_seconds": max(1, math.ceil(settings.rollout_timeout)),
        "resources": dict(settings.resources),
        "env_secret": settings.env_secret or f"{app}-env",
        "service_type": settings.service_type,
        "service_port": settings.service_port,
    }
    folder = Path(settings.template_dir) if settings.template_dir else default_template_dir()
    objects = {key: _fill(_load_template(folder, file_name, kind), values, str(folder / file_name))
               for key, (file_name, kind) in TEMPLATES.items()}
    # The names are what this module reads, patches and deletes by: a template cannot move them.
    for key, object_name in (("configmap", name), ("deployment", name), ("service", app)):
        metadata = objects[key].setdefault("metadata", {})
        metadata["name"], metadata["namespace"] = object_name, settings.namespace
    objects["configmap"].setdefault("data", {}).update(settings.env)
    pod = objects["deployment"].setdefault("spec", {}).setdefault("template", {})
    pod.setdefault("metadata", {}).setdefault("annotations", {})[SHA_ANNOTATION] = sha256
    # The version and checksum the pods pin, in each container's own env (which wins over envFrom):
    # a template that lacks them, or an old ConfigMap that carries them, cannot serve another model.
    # First in the list, so that the template's own entries may refer to them as $(NAME).
    pinned: list[dict[str, Any]] = [{"name": "MLOPS_AIRFLOW_MODEL_VERSION", "value": str(version)},
              {"name": "MLOPS_AIRFLOW_MODEL_SHA256", "value": sha256}]
    token_ref = settings.token_secret_ref()
    if token_ref is not None:
        pinned.append({"name": TOKEN_ENV, "valueFrom": {"secretKeyRef": token_ref}})
    ours = {item["name"] for item in pinned}
    for container in (pod.get("spec") or {}).get("containers") or []:
        env = [item for item in container.get("env") or [] if item.get("name") not in ours]
        container["env"] = [*copy.deepcopy(pinned), *env]
    return objects


# -- reaching the server through the API server ------------------------------------------


def api_error(exc: Any) -> str:
    """``409 Conflict: <the API server's message>`` from a kubernetes ``ApiException``."""
    message = ""
    body = getattr(exc, "body", None)
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    if body:
        try:
            message = str(json.loads(body).get("message") or "")
        except (ValueError, AttributeError):
            message = body[:500]
    head = f"{getattr(exc, 'status', '?')} {getattr(exc, 'reason', '') or ''}".strip()
    return f"{head}: {message}" if message else head


class KubeProxyTransport(httpx.BaseTransport):
    """An httpx transport that sends each request through the API server's proxy to a Service or a Pod.

    Requests carry the kubernetes client's own credentials and TLS settings, so the smoke
    test needs no network path into the cluster beyond the one the API calls use. The API
    server takes ``Authorization`` for itself and does not forward it: a request's own
    ``Authorization`` (the model server's bearer token) is sent as ``X-Mlops-Airflow-Authorization``,
    which the model server accepts the same way. The
    request's host is ignored: ``name`` (``pod:port`` for pods) says where it goes.
    """

    def __init__(self, api_client: ApiClient, *, namespace: str, kind: Literal["services", "pods"], name: str,
                 timeout: float = 30.0) -> None:
        self.api_client = api_client
        self.namespace = namespace
        self.kind = kind
        self.name = name
        self.timeout = timeout

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        import urllib3
        from kubernetes.client.exceptions import ApiException

        content = request.read()
        content_type = request.headers.get("content-type", "application/json")
        headers = {"Accept": "*/*", "Content-Type": content_type}
        if request.headers.get("authorization"):
            # the API server authenticates with Authorization and drops it: the server's token rides beside it
            headers[PROXY_AUTH_HEADER] = request.headers["authorization"]
        body: Any = None
        if content:
            # the client serialises JSON bodies itself: hand it the object, not the bytes
            body = json.loads(content) if "json" in content_type else content.decode("utf-8")
        try:
            answer = self.api_client.call_api(
                f"/api/v1/namespaces/{{namespace}}/{self.kind}/{{name}}/proxy/{{path}}",
                request.method,
                path_params={"namespace": self.namespace, "name": self.name, "path": request.url.path.lstrip("/")},
                query_params=list(request.url.params.multi_items()),
                header_params=headers,
                body=body,
                auth_settings=["BearerToken"],
                _preload_content=False,
                _return_http_data_only=True,
                _request_timeout=self.timeout,
            )
        except ApiException as exc:
            if not exc.status:  # TLS and the like: the client reports status 0
                raise httpx.ConnectError(f"Kubernetes API: {exc.reason}", request=request) from exc
            data = exc.body if isinstance(exc.body, bytes) else str(exc.body or "").encode()
            return httpx.Response(exc.status, headers=_plain(exc.headers), content=data, request=request)
        except urllib3.exceptions.HTTPError as exc:
            raise httpx.ConnectError(f"Kubernetes API unreachable: {exc}", request=request) from exc
        return httpx.Response(answer.status, headers=_plain(answer.headers), content=answer.data, request=request)


def _plain(headers: Any) -> dict[str, str]:
    """Response headers minus those about the wire encoding: urllib3 has decoded the body already."""
    return {key: value for key, value in dict(headers or {}).items()
            if key.lower() not in ("content-encoding", "transfer-encoding", "content-length")}


# -- reading rollouts and canary metrics ------------------------------------------------------


def rollout_status(deployment: Mapping[str, Any]) -> tuple[bool, str]:
    """``(done, what is seen)`` for a Deployment as the API returns it (camelCase dict).

    Done means the controller saw the latest spec and every replica is updated and available,
    with no old replica left (as ``kubectl rollout status``). Raises :class:`DeployError` when
    the Deployment reports it cannot progress (ProgressDeadlineExceeded, ReplicaFailure).
    """
    metadata = deployment.get("metadata") or {}
    status = deployment.get("status") or {}
    name = f"{metadata.get('namespace')}/{metadata.get('name')}"
    want = (deployment.get("spec") or {}).get("replicas", 1)
    generation, observed = metadata.get("generation") or 0, status.get("observedGeneration") or 0
    # before the conditions: until the controller has seen this spec they speak of the previous one
    if observed < generation:
        return False, f"the controller has not yet seen generation {generation} (observed {observed})"
    for condition in status.get("conditions") or []:
        failed = condition.get("type") == "ReplicaFailure" and condition.get("status") == "True"
        if failed or condition.get("reason") == "ProgressDeadlineExceeded":
            raise DeployError(f"Deployment {name}: {condition.get('reason')}: {condition.get('message')}")
    updated, available = status.get("updatedReplicas") or 0, status.get("availableReplicas") or 0
    total = status.get("replicas") or 0
    if updated < want:
        return False, f"{updated} of {want} replicas updated"
    if total > updated:
        return False, f"{total - updated} old replicas pending termination"
    if available < want:
        return False, f"{available} of {want} updated replicas available"
    return True, f"{want} of {want} replicas updated and available"


def histogram_quantile(q: float, buckets: Mapping[float, float]) -> float | None:
    """The ``q`` quantile from cumulative buckets ``{upper bound: count}``, as Prometheus computes it.

    Linear interpolation inside the bucket holding the rank; a rank in the ``+Inf`` bucket
    answers the highest finite bound. None when nothing was observed.
    """
    ordered = sorted(buckets.items())
    if not ordered or ordered[-1][1] <= 0:
        return None
    rank = q * ordered[-1][1]
    lower, below = 0.0, 0.0
    for bound, count in ordered:
        if count >= rank:
            if math.isinf(bound):
                return lower
            if count == below:
                return bound
            return lower + (bound - lower) * (rank - below) / (count - below)
        lower, below = bound, count
    return lower


@dataclass(frozen=True)
class CanaryFigures:
    """What the canary pods' ``/metrics`` say about ``/predict``, summed over the pods."""

    pods: int
    requests: int
    errors: int
    p99_seconds: float | None
    error_kinds: dict[str, int]

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "error_rate": self.error_rate}

    def describe(self) -> str:
        p99 = "n/a" if self.p99_seconds is None else f"{self.p99_seconds:.4f}s"
        kinds = ", ".join(f"{kind}={count}" for kind, count in sorted(self.error_kinds.items())) or "none"
        return (f"{self.requests} /predict requests on {self.pods} pod(s), {self.errors} errors "
                f"(error rate {self.error_rate:.4f}), p99 latency {p99}; error kinds: {kinds}")


def _counters(text: str, *, client_errors: bool, endpoint: str) -> dict[str, float]:
    """One pod's exposition as flat counters: ``requests``, ``errors``, ``le:<bound>``, ``kind:<kind>``."""
    from prometheus_client.parser import text_string_to_metric_families

    counters: dict[str, float] = {"requests": 0.0, "errors": 0.0}

    def add(key: str, value: float) -> None:
        counters[key] = counters.get(key, 0.0) + value

    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = sample.labels
            if sample.name == "mlops_requests_total" and labels.get("endpoint") == endpoint:
                status = int(labels.get("status", "0"))
                add("requests", sample.value)
                if status >= 500 or (client_errors and status >= 400):
                    add("errors", sample.value)
            elif sample.name == "mlops_request_latency_seconds_bucket" and labels.get("endpoint") == endpoint:
                add(f"le:{float(labels['le'])!r}", sample.value)
            elif sample.name == "mlops_request_errors_total":
                add(f"kind:{labels.get('kind', '?')}", sample.value)
    return counters


def canary_figures(texts: Iterable[str], *, client_errors: bool = True, endpoint: str = "/predict",
                   baselines: Sequence[str] | None = None) -> CanaryFigures:
    """Sum ``mlops_requests_total``, the latency histogram and ``mlops_request_errors_total`` over pods.

    ``texts`` are Prometheus text expositions, one per pod. With ``baselines`` (the same pods'
    expositions taken earlier, in the same order) only what happened since counts: each
    counter and histogram bucket is the difference, so the p99 is that of the later requests.
    """
    pods = 0
    total: dict[str, float] = {}
    for index, text in enumerate(texts):
        pods += 1
        now = _counters(text, client_errors=client_errors, endpoint=endpoint)
        then = (_counters(baselines[index], client_errors=client_errors, endpoint=endpoint)
                if baselines is not None else {})
        for key, value in now.items():
            # a counter below its baseline means the process restarted: everything it shows is new
            total[key] = total.get(key, 0.0) + (value - then.get(key, 0.0) if value >= then.get(key, 0.0) else value)
    buckets = {float(key[3:]): value for key, value in total.items() if key.startswith("le:")}
    kinds = {key[5:]: int(value) for key, value in total.items() if key.startswith("kind:") and value}
    return CanaryFigures(pods, int(total.get("requests", 0)), int(total.get("errors", 0)),
                         histogram_quantile(0.99, buckets), kinds)


def judge_canary(figures: CanaryFigures, policy: CanaryPolicy) -> list[str]:
    """What is wrong with the canary by ``policy``; empty when it may be promoted."""
    problems = []
    if figures.requests < policy.min_requests:
        problems.append(f"only {figures.requests} /predict requests reached it (at least {policy.min_requests} needed)")
    if figures.requests and figures.error_rate > policy.max_error_rate:
        problems.append(f"error rate {figures.error_rate:.4f} ({figures.errors} of {figures.requests}) "
                        f"is over the limit {policy.max_error_rate:g}")
    if figures.p99_seconds is not None and figures.p99_seconds > policy.max_p99_seconds:
        problems.append(f"p99 latency {figures.p99_seconds:.4f}s is over the limit {policy.max_p99_seconds:g}s")
    return problems


# -- the target ---------------------------------------------------------------------------------


class _Changes:
    """The objects a deploy touched, and each one as it was before: enough to put everything back."""

    def __init__(self) -> None:
        self.before: dict[tuple[str, str], dict[str, Any] | None] = {}

    def remember(self, kind: str, name: str, before: dict[str, Any] | None) -> None:
        self.before.setdefault((kind, name), before)

    def in_undo_order(self) -> list[tuple[tuple[str, str], dict[str, Any] | None]]:
        """Restores first, in the order applied (a ConfigMap before the Deployment reading it), then
        deletions, last created first (a Deployment before the ConfigMap it reads)."""
        restores = [item for item in self.before.items() if item[1] is not None]
        deletions = [item for item in reversed(self.before.items()) if item[1] is None]
        return restores + deletions


def _restorable(obj: Mapping[str, Any]) -> dict[str, Any]:
    """An object as read, minus what the API server owns (status, resourceVersion, uid, ...)."""
    metadata = obj.get("metadata") or {}
    body = {key: copy.deepcopy(value) for key, value in obj.items() if key not in ("metadata", "status")}
    body["metadata"] = {key: copy.deepcopy(metadata[key]) for key in ("name", "namespace", "labels", "annotations")
                        if metadata.get(key)}
    return body


def _is_ready(pod: Mapping[str, Any]) -> bool:
    status = pod.get("status") or {}
    if (pod.get("metadata") or {}).get("deletionTimestamp") or status.get("phase") != "Running":
        return False
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or [])


def _restarts(pod: Mapping[str, Any]) -> int:
    return sum(int(c.get("restartCount") or 0) for c in (pod.get("status") or {}).get("containerStatuses") or [])


class KubernetesTarget:
    """A serving target that rolls the model server out on Kubernetes (see the module docstring).

    :param apps_v1: a ``kubernetes.client.AppsV1Api``.
    :param core_v1: a ``kubernetes.client.CoreV1Api`` (same API client: the proxy uses its credentials).
    :param settings: where and how the server runs.
    :param smoke_rows: feature rows to ``POST /predict`` as the smoke test, or a function
        ``(model_name, version) -> rows`` (records or a DataFrame); None skips the predict step.
    :param token: the server's bearer token for the smoke tests and ``/metrics`` reads; default
        the ``MLOPS_AIRFLOW_SERVER_TOKEN`` setting. Never logged, never put in an object.
    """

    def __init__(self, *, apps_v1: AppsV1Api, core_v1: CoreV1Api, settings: KubernetesSettings,
                 smoke_rows: SmokeRows = None, token: str | None = None) -> None:
        if token is None:
            from mlops_airflow import settings as mlops_settings

            token = mlops_settings.server_token()
        self._token = token
        self.apps_v1 = apps_v1
        self.core_v1 = core_v1
        self.settings = settings
        self._smoke_source = smoke_rows
        self._smoke_cache: list[dict[str, Any]] | None = None
        if "://" not in settings.registry_uri:
            log.warning("The pods will read the registry at %s, a local path: it must be mounted in the pods "
                        "(a custom template) or be an s3:// URI", settings.registry_uri)

    # -- the protocol ------------------------------------------------------------------------------
    def wait_for_version(self, model_name: str, version: int, sha256: str) -> dict[str, Any]:
        """Roll ``version`` out (through a canary if the policy says so) and see it served.

        Returns the server's metadata as the smoke test saw it, plus a ``kubernetes`` entry
        (names, replicas, canary figures). On any failure, puts back the objects as they
        were and raises :class:`DeployError` saying why and what was put back.
        """
        settings = self.settings
        stable = render(settings, model_name, version, sha256, track="stable")
        canary = render(settings, model_name, version, sha256, track="canary") if settings.canary else None
        app = settings.app_name(model_name)
        changes = _Changes()
        figures: CanaryFigures | None = None
        try:
            if canary is not None:
                if self._read("Deployment", app) is None:
                    log.info("No Deployment %s/%s serves yet: rolling v%s out directly, without a canary",
                             settings.namespace, app, version)
                else:
                    figures = self._canary(canary, changes, model_name, version, sha256)
            served = self._roll_out(stable, changes, model_name, version, sha256)
        except Exception as exc:
            reason = str(exc) if isinstance(exc, DeployError) else self._describe(exc)
            raise DeployError(f"{reason}; {self._undo(changes)}") from exc
        self._remove_canary(app)
        return {**served, "kubernetes": {"namespace": settings.namespace, "deployment": app, "service": app,
                                         "replicas": settings.replicas,
                                         "canary": figures.as_dict() if figures else None}}

    # -- stages ------------------------------------------------------------------------------------
    def _roll_out(self, objects: dict[str, dict[str, Any]], changes: _Changes, model_name: str, version: int,
                  sha256: str) -> dict[str, Any]:
        for key in TEMPLATES:
            self._apply(objects[key], changes)
        self._await_rollout(objects["deployment"]["metadata"]["name"])
        return self._smoke(self._service_server(objects["service"]["metadata"]["name"]), model_name, version, sha256)

    def _canary(self, objects: dict[str, dict[str, Any]], changes: _Changes, model_name: str, version: int,
                sha256: str) -> CanaryFigures:
        policy = self.settings.canary
        assert policy is not None  # only called with a canary policy
        name = objects["deployment"]["metadata"]["name"]
        for key in TEMPLATES:
            # a canary left behind by an interrupted deploy is not worth keeping: on failure it goes
            self._apply(objects[key], changes, keep_previous=key == "service")
        deployment = self._await_rollout(name)
        pods = self._ready_pods(deployment)
        for pod in pods:
            self._smoke(self._pod_server(pod, deployment), model_name, version, sha256)
        # what the smoke tests did is not the window's traffic: judge only what comes after this
        baselines = [self._pod_get(pod, deployment, "/metrics") for pod in pods]
        restarts = {p["metadata"]["name"]: _restarts(p) for p in pods}
        log.info("Canary %s: %d pod(s) serve v%s; watching them for %gs", name, len(pods), version, policy.window)
        deadline = time.monotonic() + policy.window
        while (remaining := deadline - time.monotonic()) > 0:
            time.sleep(min(self.settings.poll_interval, remaining))
            for pod in self._pods(deployment):
                pod_name = pod["metadata"]["name"]
                if pod_name in restarts and (_restarts(pod) > restarts[pod_name] or not _is_ready(pod)):
                    raise DeployError(f"canary of {model_name} v{version}: pod {pod_name} restarted or stopped being "
                                      f"ready during the {policy.window:g}s window")
        texts = [self._pod_get(pod, deployment, "/metrics") for pod in pods]
        figures = canary_figures(texts, client_errors=policy.client_errors, baselines=baselines)
        problems = judge_canary(figures, policy)
        if problems:
            raise DeployError(f"canary of {model_name} v{version} failed after a {policy.window:g}s window: "
                              f"{'; '.join(problems)} (measured: {figures.describe()})")
        log.info("Canary %s passed: %s", name, figures.describe())
        return figures

    def _remove_canary(self, app: str) -> None:
        """Delete the canary once the main Deployment serves the version; failing that is only worth a warning."""
        for kind in ("Deployment", "ConfigMap"):
            try:
                if self._delete(kind, f"{app}-canary"):
                    log.info("Deleted %s %s/%s-canary", kind, self.settings.namespace, app)
            except Exception as exc:  # it serves the same version as the main Deployment: harmless, not a failure
                log.warning("Could not delete %s %s/%s-canary (delete it by hand): %s", kind,
                            self.settings.namespace, app, self._describe(exc))

    # -- the API -----------------------------------------------------------------------------------
    def _call(self, kind: str, verb: str, *args: Any, **kwargs: Any) -> Any:
        attribute, suffix = _API[kind]
        method = getattr(getattr(self, attribute), f"{verb}_namespaced_{suffix}")
        return method(*args, **kwargs)

    def _as_dict(self, obj: Any) -> dict[str, Any]:
        return dict(self.apps_v1.api_client.sanitize_for_serialization(obj))

    def _read(self, kind: str, name: str, *, status: bool = False) -> dict[str, Any] | None:
        call = self.apps_v1.read_namespaced_deployment_status if status else functools.partial(self._call, kind, "read")
        return _read_or_none(self.apps_v1.api_client, call, name, self.settings.namespace)

    def _apply(self, obj: dict[str, Any], changes: _Changes, *, keep_previous: bool = True) -> None:
        """Create ``obj``; when it exists (409), replace it. Remembers what was there first."""
        from kubernetes.client.exceptions import ApiException

        kind, name, namespace = obj["kind"], obj["metadata"]["name"], self.settings.namespace
        if (kind, name) not in changes.before:
            changes.remember(kind, name, self._read(kind, name) if keep_previous else None)
        manager = self.settings.field_manager
        try:
            self._call(kind, "create", namespace, obj, field_manager=manager)
            log.info("Created %s %s/%s", kind, namespace, name)
        except ApiException as exc:
            if exc.status != 409:
                raise
            self._replace(obj)
            log.info("Replaced %s %s/%s (it existed)", kind, namespace, name)

    def _replace(self, obj: dict[str, Any]) -> None:
        """PUT ``obj`` over the live object, conditional on the resourceVersion just read.

        A replace, not a patch: a field (an env key, a label) that ``obj`` no longer has goes
        away. What the API server assigned and will not let change (a Service's cluster IPs
        and node ports) is carried over from the live object. A concurrent change answers 409.
        """
        kind, name, namespace = obj["kind"], obj["metadata"]["name"], self.settings.namespace
        body = copy.deepcopy(obj)
        live = self._read(kind, name)
        if live is None:
            self._call(kind, "create", namespace, body, field_manager=self.settings.field_manager)
            return
        body["metadata"]["resourceVersion"] = live["metadata"]["resourceVersion"]
        if kind == "Service":
            live_spec, spec = live.get("spec") or {}, body.setdefault("spec", {})
            for key in ("clusterIP", "clusterIPs"):
                if live_spec.get(key) and key not in spec:
                    spec[key] = live_spec[key]
            node_ports = {port.get("name"): port.get("nodePort") for port in live_spec.get("ports") or []}
            for port in spec.get("ports") or []:
                if spec.get("type") in ("NodePort", "LoadBalancer") and node_ports.get(port.get("name")):
                    port.setdefault("nodePort", node_ports[port.get("name")])
        self._call(kind, "replace", name, namespace, body, field_manager=self.settings.field_manager)

    def _delete(self, kind: str, name: str) -> bool:
        from kubernetes.client.exceptions import ApiException

        try:
            self._call(kind, "delete", name, self.settings.namespace)
        except ApiException as exc:
            if exc.status == 404:
                return False
            raise
        return True

    def _undo(self, changes: _Changes) -> str:
        """Put every touched object back as it was (last touched first); says what it did."""
        done, failed = [], []
        for (kind, name), before in changes.in_undo_order():
            try:
                if before is None:
                    if self._delete(kind, name):
                        done.append(f"deleted {kind} {name}")
                else:
                    self._replace(_restorable(before))
                    done.append(f"restored {kind} {name} to its previous spec")
            except Exception as exc:
                failed.append(f"{kind} {name}: {self._describe(exc)}")
        where = f"namespace {self.settings.namespace}"
        said = f"put back in {where}: {', '.join(done)}" if done else f"nothing to put back in {where}"
        if failed:
            said += f"; could NOT put back {'; '.join(failed)}: check them by hand"
        log.error("Kubernetes deploy failed, %s", said)
        return said

    @staticmethod
    def _describe(exc: Exception) -> str:
        if type(exc).__name__ == "ApiException":
            return f"Kubernetes API answered {api_error(exc)}"
        return f"{type(exc).__name__}: {exc}"

    # -- rollouts and pods ---------------------------------------------------------------------------
    def _await_rollout(self, name: str) -> dict[str, Any]:
        namespace, timeout = self.settings.namespace, self.settings.rollout_timeout
        deadline = time.monotonic() + timeout
        while True:
            deployment = self._read("Deployment", name, status=True)
            if deployment is None:
                raise DeployError(f"Deployment {namespace}/{name} disappeared during its rollout")
            done, seen = rollout_status(deployment)
            if done:
                log.info("Deployment %s/%s rolled out: %s", namespace, name, seen)
                return deployment
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise DeployError(f"Deployment {namespace}/{name} did not roll out within {timeout:g}s: "
                                  f"{seen}{self._pod_trouble(deployment)}")
            time.sleep(min(self.settings.poll_interval, remaining))

    def _pods(self, deployment: Mapping[str, Any]) -> list[dict[str, Any]]:
        labels = ((deployment.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
        selector = ",".join(f"{key}={value}" for key, value in sorted(labels.items()))
        answer = self.core_v1.list_namespaced_pod(self.settings.namespace, label_selector=selector)
        return list(self._as_dict(answer).get("items") or [])

    def _ready_pods(self, deployment: Mapping[str, Any]) -> list[dict[str, Any]]:
        pods = [pod for pod in self._pods(deployment) if _is_ready(pod)]
        if not pods:
            raise DeployError(f"Deployment {deployment['metadata']['name']} reports available replicas "
                              f"but no pod is ready")
        return pods

    def _pod_trouble(self, deployment: Mapping[str, Any]) -> str:
        """Why pods are not ready, as far as their status says (diagnostics: never raises)."""
        try:
            notes = []
            for pod in self._pods(deployment)[:5]:
                for container in (pod.get("status") or {}).get("containerStatuses") or []:
                    state = container.get("state") or {}
                    why = state.get("waiting") or state.get("terminated")
                    if why and why.get("reason"):
                        detail = f": {why['message']}" if why.get("message") else ""
                        notes.append(f"{pod['metadata']['name']} {why['reason']}{detail}")
            return f"; pods: {'; '.join(notes)}" if notes else ""
        except Exception:  # diagnostics must not hide the timeout itself
            log.debug("could not read the pods' state", exc_info=True)
            return ""

    # -- talking to the servers ------------------------------------------------------------------------
    def _proxy_client(self, kind: Literal["services", "pods"], name: str) -> httpx.Client:
        transport = KubeProxyTransport(self.core_v1.api_client, namespace=self.settings.namespace, kind=kind,
                                       name=name)
        return httpx.Client(transport=transport, timeout=30.0)

    def _service_server(self, service: str) -> tuple[str, httpx.Client]:
        if self.settings.base_url:
            return self.settings.base_url.rstrip("/"), httpx.Client(timeout=30.0)
        return f"http://{service}.{self.settings.namespace}.svc", self._proxy_client("services", service)

    @staticmethod
    def _pod_port(deployment: Mapping[str, Any]) -> int:
        containers = (((deployment.get("spec") or {}).get("template") or {}).get("spec") or {}).get("containers") or []
        for container in containers:
            for port in container.get("ports") or []:
                if port.get("name") == "http":
                    return int(port["containerPort"])
        return SERVER_PORT

    def _pod_server(self, pod: Mapping[str, Any], deployment: Mapping[str, Any]) -> tuple[str, httpx.Client]:
        name = pod["metadata"]["name"]
        return f"http://{name}.{self.settings.namespace}.pod", self._proxy_client(
            "pods", f"{name}:{self._pod_port(deployment)}")

    def _pod_get(self, pod: Mapping[str, Any], deployment: Mapping[str, Any], path: str) -> str:
        url, client = self._pod_server(pod, deployment)
        with client:
            try:
                response = client.get(f"{url}{path}", headers=bearer_header(self._token))
            except httpx.TransportError as exc:
                raise DeployError(f"GET {path} on pod {pod['metadata']['name']} failed: {exc}") from exc
        if response.status_code != 200:
            raise DeployError(f"GET {path} on pod {pod['metadata']['name']} answered {response.status_code}: "
                              f"{response.text[:500]}")
        return response.text

    def _smoke(self, server: tuple[str, httpx.Client], model_name: str, version: int, sha256: str) -> dict[str, Any]:
        """The server reports ``version`` with ``sha256``, and predicts on the smoke rows."""
        url, client = server
        timeout = self.settings.ready_timeout
        with client, LocalServerTarget(url, timeout=timeout, poll=min(self.settings.poll_interval, 1.0),
                                       client=client, token=self._token or "") as target:
            metadata = target.wait_for_version(model_name, version, sha256)
            rows = self._smoke_rows(model_name, version)
            if rows:
                answer = target.predict(rows)
                predictions = answer.get("predictions") or []
                if answer.get("version") != version or len(predictions) != len(rows):
                    raise DeployError(f"POST /predict at {url} answered version {answer.get('version')} with "
                                      f"{len(predictions)} predictions for {len(rows)} smoke rows; "
                                      f"expected version {version}")
        log.info("Smoke test at %s: %s v%s (sha256 %s…) answers /predict on %d rows", url, model_name, version,
                 sha256[:12], len(rows or []))
        return metadata

    def _smoke_rows(self, model_name: str, version: int) -> list[dict[str, Any]]:
        if self._smoke_cache is None:
            source = self._smoke_source
            rows = source(model_name, version) if callable(source) else source
            if rows is not None and hasattr(rows, "to_dict"):
                rows = rows.to_dict(orient="records")
            self._smoke_cache = [dict(row) for row in rows or []]
        return self._smoke_cache


def target_from_connection(
    registry: ModelRegistry,
    model_name: str,
    *,
    conn_id: str = "kubernetes_default",
    namespace: str | None = None,
    image: str | None = None,
    replicas: int | None = None,
    rollout_timeout: float = 600.0,
    canary: Mapping[str, Any] | None = None,
    options: Mapping[str, Any] | None = None,
    inherit: bool = False,
) -> KubernetesTarget:
    """A :class:`KubernetesTarget` whose clients come from the provider's KubernetesHook (Airflow connection ``conn_id``).

    ``namespace`` defaults to the connection's, else ``default``; ``image`` to :data:`DEFAULT_IMAGE`,
    ``replicas`` to 2; ``options`` are further :class:`KubernetesSettings` (``registry_uri`` defaults
    to ``registry``'s). With ``inherit``, what is not given is first taken from what runs now
    (:func:`live_settings`): a rollback from a shell then keeps the deploy's image, replicas, token
    Secret, env Secret, registry URI and env instead of falling back to defaults.
    The templates are rendered once here, so a broken one fails before any alias moves.
    :class:`ConfigError` names a bad setting.
    """
    from airflow.providers.cncf.kubernetes.hooks.kubernetes import KubernetesHook

    from mlops_airflow.pipeline.deploy import smoke_rows

    hook = KubernetesHook(conn_id=conn_id)
    given = dict(options or {})
    try:
        settings = KubernetesSettings(
            namespace=namespace or hook.get_namespace() or "default", image=image or DEFAULT_IMAGE,
            replicas=replicas or 2, rollout_timeout=rollout_timeout,
            canary=CanaryPolicy.from_mapping(canary) if canary else None,
            **{"registry_uri": registry.store.uri, **given})
        if inherit:
            explicit = {*given, *(["image"] if image else []), *(["replicas"] if replicas else [])}
            live = live_settings(hook.apps_v1_client, hook.core_v1_client, settings.namespace,
                                 settings.app_name(model_name))
            kept = {key: value for key, value in live.items() if key not in explicit}
            log.info("Kubernetes: keeping what %s/%s runs with: %s", settings.namespace,
                     settings.app_name(model_name), sorted(kept))
            settings = replace(settings, **kept)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"Kubernetes settings: {exc}") from exc
    render(settings, model_name, 0, "0" * 64)
    return KubernetesTarget(apps_v1=hook.apps_v1_client, core_v1=hook.core_v1_client, settings=settings,
                            smoke_rows=lambda name, version: smoke_rows(registry, registry.get_version(name, version)))


def live_settings(apps_v1: AppsV1Api, core_v1: CoreV1Api, namespace: str, app: str) -> dict[str, Any]:
    """What the main Deployment and ConfigMap named ``app`` run with now, as :class:`KubernetesSettings` fields.

    ``image``, ``replicas``, ``token_secret``, ``env_secret`` from the Deployment; ``registry_uri``
    and the other ``env`` from the ConfigMap (without the entries the target sets itself). Only
    what is there: nothing for objects that do not exist.
    """
    def read(call: Callable[[str, str], Any]) -> dict[str, Any]:
        return _read_or_none(apps_v1.api_client, call, app, namespace) or {}

    found: dict[str, Any] = {}
    spec = read(apps_v1.read_namespaced_deployment).get("spec") or {}
    if spec.get("replicas"):
        found["replicas"] = int(spec["replicas"])
    containers = ((spec.get("template") or {}).get("spec") or {}).get("containers") or []
    if containers:
        container = containers[0]
        if container.get("image"):
            found["image"] = container["image"]
        for item in container.get("env") or []:
            ref = (item.get("valueFrom") or {}).get("secretKeyRef") or {}
            if item.get("name") == TOKEN_ENV and ref.get("name"):
                found["token_secret"] = f"{ref['name']}/{ref.get('key') or 'token'}"
        secrets = [source["secretRef"]["name"] for source in container.get("envFrom") or []
                   if (source.get("secretRef") or {}).get("name")]
        if secrets:
            found["env_secret"] = secrets[0]  # the template's first secretRef is env_secret
    data = dict(read(core_v1.read_namespaced_config_map).get("data") or {})
    if data.get("MLOPS_AIRFLOW_REGISTRY_URI"):
        found["registry_uri"] = data["MLOPS_AIRFLOW_REGISTRY_URI"]
    env = {key: value for key, value in data.items() if key not in RESERVED_ENV}
    if env:
        found["env"] = env
    return found
