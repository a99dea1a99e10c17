"""A small fake kube-apiserver over real HTTP, for the Kubernetes deploy target's tests.

There is no cluster here. This speaks the REST paths the real ``kubernetes`` client calls
for ConfigMaps, Services and Deployments (create -> 201 / 409 AlreadyExists, read -> 404,
strategic-merge patch (simplified: maps merge, lists of named items merge by name, other
lists are replaced), replace (PUT; 409 Conflict on a stale metadata.resourceVersion), delete), lists pods by label selector, and proxies to
Services and Pods. It validates every object it is sent against the Kubernetes OpenAPI
schema (``kubernetes_validate``, strict), as an API server with strict field validation does.

It also plays the controllers, crudely: a Deployment whose spec changed rolls out after
``reads_to_roll_out`` reads of it, then has ready pods of the new template; a scenario per
Deployment name keeps it ``stuck`` (a new pod in ImagePullBackOff) or reports
``deadline`` (ProgressDeadlineExceeded). Pods do not run anything: the proxy forwards their
traffic to a REAL model server (``backends[deployment name]`` or ``default_backend``).
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import threading
from typing import Any, Literal

import httpx
import kubernetes_validate
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from testsupport import eventually, free_port

Scenario = Literal["ok", "stuck", "deadline"]
KUBE_VERSION = "1.33"
#: URL plural -> (kind, apiVersion)
KINDS = {
    "configmaps": ("ConfigMap", "v1"),
    "services": ("Service", "v1"),
    "deployments": ("Deployment", "apps/v1"),
}


def status(code: int, reason: str, message: str) -> JSONResponse:
    body = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message,
            "reason": reason, "code": code}
    return JSONResponse(body, status_code=code)


def strategic_merge(base: Any, patch: Any) -> Any:
    if isinstance(base, dict) and isinstance(patch, dict):
        merged = dict(base)
        for key, value in patch.items():
            if value is None:
                merged.pop(key, None)
            else:
                merged[key] = strategic_merge(base.get(key), value)
        return merged
    named = isinstance(base, list) and isinstance(patch, list) and all(
        isinstance(item, dict) and "name" in item for item in base + patch)
    if named and base:
        by_name = {item["name"]: item for item in base}
        result = [strategic_merge(by_name.get(item["name"]), item) for item in patch]
        return result + [item for item in base if item["name"] not in {p["name"] for p in patch}]
    return copy.deepcopy(patch)


class FakeKube:
    """The fake API server; ``start()`` it, point a kubeconfig (``kubeconfig()``) at ``url``."""

    def __init__(self, *, token: str = "fake-token", reads_to_roll_out: int = 2) -> None:
        self.token = token
        self.reads_to_roll_out = reads_to_roll_out
        self.objects: dict[tuple[str, str, str], dict[str, Any]] = {}  # (plural, namespace, name)
        self.pods: dict[tuple[str, str], dict[str, Any]] = {}  # (namespace, name)
        self.pod_owner: dict[tuple[str, str], str] = {}  # pod -> deployment name
        self.rollouts: dict[tuple[str, str], int] = {}  # deployment -> reads left before it is rolled out
        self.scenario: dict[str, Scenario] = {}
        self.backends: dict[str, str] = {}
        self.default_backend: str | None = None
        self.requests: list[tuple[str, str, int]] = []
        self._lock = threading.RLock()
        self._versions = itertools.count(1)
        self._round_robin = itertools.count()
        self.app = self._build()
        self.url = ""
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    # -- life cycle ------------------------------------------------------------------------------
    def start(self) -> str:
        port = free_port()
        self._server = uvicorn.Server(uvicorn.Config(self.app, host="127.0.0.1", port=port, log_level="warning"))
        self._thread = threading.Thread(target=self._server.run, name="fake-kube", daemon=True)
        self._thread.start()
        eventually(lambda: self._server is not None and self._server.started, 30, "the fake API server to start")
        self.url = f"http://127.0.0.1:{port}"
        return self.url

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(10)

    def kubeconfig(self, namespace: str = "default") -> dict[str, Any]:
        return {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "fake", "cluster": {"server": self.url}}],
            "users": [{"name": "fake", "user": {"token": self.token}}],
            "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "fake", "namespace": namespace}}],
            "current-context": "fake",
        }

    # -- what tests look at ----------------------------------------------------------------------
    def get(self, plural: str, name: str, namespace: str = "default") -> dict[str, Any] | None:
        with self._lock:
            found = self.objects.get((plural, namespace, name))
            return copy.deepcopy(found) if found else None

    def calls(self, method: str, fragment: str) -> list[int]:
        """Statuses of the requests with ``method`` whose path contains ``fragment``."""
        return [code for m, path, code in self.requests if m == method and fragment in path]

    def pods_of(self, deployment: str, namespace: str = "default") -> list[dict[str, Any]]:
        with self._lock:
            return [copy.deepcopy(pod) for key, pod in self.pods.items()
                    if key[0] == namespace and self.pod_owner.get(key) == deployment]

    # -- the controllers -------------------------------------------------------------------------
    def _pod(self, namespace: str, deployment: dict[str, Any], index: int, *, ready: bool) -> dict[str, Any]:
        template = deployment["spec"]["template"]
        digest = hashlib.sha256(json.dumps(template, sort_keys=True).encode()).hexdigest()[:10]
        name = f"{deployment['metadata']['name']}-{digest}-{index}"
        container = template["spec"]["containers"][0]
        state: dict[str, Any] = {"running": {"startedAt": "2026-01-01T00:00:00Z"}} if ready else {
            "waiting": {"reason": "ImagePullBackOff", "message": f'Back-off pulling image "{container["image"]}"'}}
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "namespace": namespace,
                         "labels": {**template["metadata"].get("labels", {}), "pod-template-hash": digest},
                         "annotations": dict(template["metadata"].get("annotations") or {})},
            "spec": copy.deepcopy(template["spec"]),
            "status": {
                "phase": "Running" if ready else "Pending",
                "podIP": "127.0.0.1",
                "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
                "containerStatuses": [{"name": container["name"], "image": container["image"], "imageID": "",
                                       "ready": ready, "restartCount": 0, "state": state}],
            },
        }
        self.pods[(namespace, name)] = pod
        self.pod_owner[(namespace, name)] = deployment["metadata"]["name"]
        return pod

    def _drop_pods(self, namespace: str, deployment: str, keep: set[str] = frozenset()) -> None:  # type: ignore[assignment]
        for key in [k for k in self.pods if k[0] == namespace and self.pod_owner.get(k) == deployment]:
            if key[1] not in keep:
                del self.pods[key]
                del self.pod_owner[key]

    def _observe(self, namespace: str, deployment: dict[str, Any]) -> None:
        """One look at a Deployment by a client: the fake controller moves on and writes its status."""
        name = deployment["metadata"]["name"]
        want = deployment["spec"].get("replicas", 1)
        generation = deployment["metadata"]["generation"]
        scenario = self.scenario.get(name, "ok")
        left = self.rollouts.get((namespace, name), 0)
        if scenario == "ok" and left > 0:
            left -= 1
            self.rollouts[(namespace, name)] = left
        old = [p for k, p in self.pods.items() if k[0] == namespace and self.pod_owner.get(k) == name]
        if scenario == "ok" and left == 0:
            new_names = {self._pod(namespace, deployment, i, ready=True)["metadata"]["name"] for i in range(want)}
            self._drop_pods(namespace, name, keep=new_names)
            deployment["status"] = {
                "observedGeneration": generation, "replicas": want, "updatedReplicas": want, "readyReplicas": want,
                "availableReplicas": want,
                "conditions": [{"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable"},
                               {"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable"}],
            }
            return
        ready_old = [p for p in old if p["status"]["phase"] == "Running"]
        if scenario != "ok":
            self._pod(namespace, deployment, 0, ready=False)
        conditions = [{"type": "Progressing", "status": "True", "reason": "ReplicaSetUpdated"}]
        if scenario == "deadline":
            conditions = [{"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded",
                           "message": f'ReplicaSet "{name}" has timed out progressing.'}]
        deployment["status"] = {
            "observedGeneration": generation, "replicas": len(ready_old) + 1, "updatedReplicas": 1 if want > 1 else 0,
            "readyReplicas": len(ready_old), "availableReplicas": len(ready_old), "conditions": conditions,
        }

    # -- storing ---------------------------------------------------------------------------------
    def _store(self, plural: str, namespace: str, body: dict[str, Any], old: dict[str, Any] | None) -> dict[str, Any]:
        body = copy.deepcopy(body)
        body.pop("status", None)
        metadata = body.setdefault("metadata", {})
        metadata["namespace"] = namespace
        metadata["resourceVersion"] = str(next(self._versions))
        if old is None:
            metadata["uid"] = f"uid-{metadata['resourceVersion']}"
            metadata["creationTimestamp"] = "2026-01-01T00:00:00Z"
        else:
            metadata["uid"] = old["metadata"]["uid"]
            metadata["creationTimestamp"] = old["metadata"]["creationTimestamp"]
        if plural == "services":
            spec = body.setdefault("spec", {})
            spec.setdefault("clusterIP", (old or {}).get("spec", {}).get("clusterIP") or f"10.0.0.{len(self.objects) + 1}")
            for port in spec.get("ports", []):
                port.setdefault("protocol", "TCP")
        if plural == "deployments":
            changed = old is None or old.get("spec") != body.get("spec")
            generation = (old or {}).get("metadata", {}).get("generation", 0)
            metadata["generation"] = generation + 1 if changed else generation
            body["status"] = copy.deepcopy((old or {}).get("status") or {})
            if changed:
                self.rollouts[(namespace, metadata["name"])] = self.reads_to_roll_out
        self.objects[(plural, namespace, metadata["name"])] = body
        return body

    # -- the HTTP API ----------------------------------------------------------------------------
    def _build(self) -> FastAPI:  # noqa: C901 - one route table, read top to bottom
        app = FastAPI()
        fake = self

        @app.middleware("http")
        async def auth_and_log(request: Request, call_next: Any) -> Response:
            if request.headers.get("authorization") != f"Bearer {fake.token}":
                response: Response = status(401, "Unauthorized", "Unauthorized")
            else:
                response = await call_next(request)
            fake.requests.append((request.method, request.url.path, response.status_code))
            return response

        def invalid(body: dict[str, Any]) -> JSONResponse | None:
            try:
                kubernetes_validate.validate(body, KUBE_VERSION, strict=True)
            except kubernetes_validate.ValidationError as exc:
                where = ".".join(str(p) for p in exc.absolute_path)
                return status(422, "Invalid", f"{body.get('kind')} is invalid: {where}: {exc.message}")
            return None

        async def create(plural: str, namespace: str, request: Request) -> Response:
            body = await request.json()
            kind, api_version = KINDS[plural]
            if body.get("kind") != kind or body.get("apiVersion") != api_version:
                return status(400, "BadRequest", f"expected {api_version} {kind}")
            if (problem := invalid(body)) is not None:
                return problem
            name = body["metadata"]["name"]
            with fake._lock:
                if (plural, namespace, name) in fake.objects:
                    return status(409, "AlreadyExists", f'{plural} "{name}" already exists')
                return JSONResponse(fake._store(plural, namespace, body, None), status_code=201)

        async def one(plural: str, namespace: str, name: str, request: Request) -> Response:
            key = (plural, namespace, name)
            with fake._lock:
                old = fake.objects.get(key)
                if old is None:
                    return status(404, "NotFound", f'{plural} "{name}" not found')
                if request.method == "GET":
                    if plural == "deployments":
                        fake._observe(namespace, old)
                    return JSONResponse(old)
                if request.method == "DELETE":
                    del fake.objects[key]
                    if plural == "deployments":
                        fake._drop_pods(namespace, name)
                    return JSONResponse({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success"})
            body = await request.json()
            with fake._lock:
                given = (body.get("metadata") or {}).get("resourceVersion")
                if request.method == "PUT" and given and given != old["metadata"]["resourceVersion"]:
                    return status(409, "Conflict", f'Operation cannot be fulfilled on {plural} "{name}": the object '
                                                   "has been modified; please apply your changes to the latest version")
                if request.method == "PATCH":
                    if "strategic-merge-patch" not in request.headers.get("content-type", ""):
                        return status(415, "UnsupportedMediaType", "the fake speaks strategic merge patch only")
                    body = strategic_merge(old, body)
                    body.pop("status", None)
                if (problem := invalid(body)) is not None:
                    return problem
                return JSONResponse(fake._store(plural, namespace, body, old))

        def routes(plural: str) -> tuple[Any, Any]:
            async def create_route(namespace: str, request: Request) -> Response:
                return await create(plural, namespace, request)

            async def one_route(namespace: str, name: str, request: Request) -> Response:
                return await one(plural, namespace, name, request)

            return create_route, one_route

        for plural in KINDS:
            prefix = "/apis/apps/v1" if plural == "deployments" else "/api/v1"
            create_route, one_route = routes(plural)
            app.add_api_route(f"{prefix}/namespaces/{{namespace}}/{plural}", create_route, methods=["POST"])
            app.add_api_route(f"{prefix}/namespaces/{{namespace}}/{plural}/{{name}}", one_route,
                              methods=["GET", "PUT", "PATCH", "DELETE"])

        @app.get("/apis/apps/v1/namespaces/{namespace}/deployments/{name}/status")
        def deployment_status(namespace: str, name: str) -> Response:
            with fake._lock:
                deployment = fake.objects.get(("deployments", namespace, name))
                if deployment is None:
                    return status(404, "NotFound", f'deployments.apps "{name}" not found')
                fake._observe(namespace, deployment)
                return JSONResponse(deployment)

        @app.get("/api/v1/namespaces/{namespace}/pods")
        def list_pods(namespace: str, labelSelector: str = "") -> Response:  # noqa: N803 - the API's name
            wanted = dict(term.split("=", 1) for term in labelSelector.split(",") if term)
            with fake._lock:
                items = [copy.deepcopy(p) for (ns, _), p in fake.pods.items() if ns == namespace
                         and all(p["metadata"]["labels"].get(k) == v for k, v in wanted.items())]
            return JSONResponse({"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": items})

        async def forward(backend: str, path: str, request: Request, body: bytes) -> Response:
            # as the real API server: Authorization was its own and is not forwarded; other headers are
            headers = {k: v for k, v in request.headers.items()
                       if k.lower() in ("content-type", "accept", "x-mlops-airflow-authorization")}
            try:
                async with httpx.AsyncClient(timeout=30) as client:
                    answer = await client.request(request.method, f"{backend}/{path}", content=body, headers=headers,
                                                  params=list(request.query_params.multi_items()))
            except httpx.TransportError as exc:
                return status(503, "ServiceUnavailable", f"error trying to reach service: {exc}")
            return Response(answer.content, status_code=answer.status_code,
                            media_type=answer.headers.get("content-type"))

        def backend_of(deployment: str) -> str | None:
            return fake.backends.get(deployment, fake.default_backend)

        @app.api_route("/api/v1/namespaces/{namespace}/services/{name}/proxy/{path:path}", methods=["GET", "POST"])
        async def service_proxy(namespace: str, name: str, path: str, request: Request) -> Response:
            body = await request.body()
            with fake._lock:
                service = fake.objects.get(("services", namespace, name.split(":")[0]))
                if service is None:
                    return status(404, "NotFound", f'services "{name}" not found')
                selector = service["spec"].get("selector") or {}
                ready = [key for key, p in fake.pods.items() if key[0] == namespace
                         and p["status"]["phase"] == "Running"
                         and all(p["metadata"]["labels"].get(k) == v for k, v in selector.items())]
                if not ready:
                    return status(503, "ServiceUnavailable", f'no endpoints available for service "{name}"')
                pod = ready[next(fake._round_robin) % len(ready)]
                backend = backend_of(fake.pod_owner[pod])
            if backend is None:
                return status(503, "ServiceUnavailable", "the fake has no backend for this pod")
            return await forward(backend, path, request, body)

        @app.api_route("/api/v1/namespaces/{namespace}/pods/{name}/proxy/{path:path}", methods=["GET", "POST"])
        async def pod_proxy(namespace: str, name: str, path: str, request: Request) -> Response:
            body = await request.body()
            pod_name, _, port = name.partition(":")
            with fake._lock:
                owner = fake.pod_owner.get((namespace, pod_name))
            if owner is None:
                return status(404, "NotFound", f'pods "{pod_name}" not found')
            if port != "8080":
                return status(503, "ServiceUnavailable", f"dial tcp 127.0.0.1:{port or 80}: connection refused")
            backend = backend_of(owner)
            if backend is None:
                return status(503, "ServiceUnavailable", "the fake has no backend for this pod")
            return await forward(backend, path, request, body)

        return app
