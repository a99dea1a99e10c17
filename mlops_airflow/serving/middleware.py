"""What every request passes before an endpoint sees it: bearer-token auth, the body size limit, metrics.

A plain ASGI middleware (not Starlette's ``BaseHTTPMiddleware``, which costs a task and a
stream per request on the hot path). In order:

1. auth, when a token is configured: ``Authorization: Bearer <token>`` (or the same in
   ``X-Mlops-Airflow-Authorization``, for clients behind the Kubernetes API server's proxy,
   which keeps ``Authorization`` for itself) compared in constant time; ``/health`` and ``/ready``
   stay open for probes, ``/metrics`` too when asked; else 401 with ``WWW-Authenticate``.
   Whether the request carried the token is left in ``scope[AUTHORIZED]``: an open probe
   without it says only ready or not and the version, never the registry or load errors.
   The token is never logged nor echoed.
2. the body limit: a ``Content-Length`` over the limit is refused before reading, and a
   body without one (chunked) is counted while it is read and refused as soon as it
   passes the limit: 413, the connection closed. The body read is handed on to the app.
3. ``mlops_requests_total`` and ``mlops_request_latency_seconds`` for every answer.

The ``POST`` endpoints ``route`` finds for a path (``/predict``, ``/models/{name}/predict``,
``/v2/models/{name}/infer``) are answered here, with the body just read: a request that
carries a thousand rows is worth ~0.3 ms less without FastAPI's routing, request object and
response classes around it (another method on their path gets 405). Every other path goes
to the app.
"""

from __future__ import annotations

import hmac
import json
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, MutableMapping

    from mlops_airflow.serving.metrics import ServerMetrics

    Scope = MutableMapping[str, Any]
    Message = MutableMapping[str, Any]
    Receive = Callable[[], Awaitable[Message]]
    Send = Callable[[Message], Awaitable[None]]
    ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
    #: (scope, body) -> (status, the JSON body as bytes, extra headers)
    BodyEndpoint = Callable[[Scope, bytes], Awaitable[tuple[int, bytes, list[tuple[bytes, bytes]]]]]

#: The scope key saying whether the request may see details (it carried the token, or none is needed).
AUTHORIZED = "mlops_airflow.authorized"
#: Paths answered without a token: what load balancers and Kubernetes (or KServe) probes call.
OPEN_PATHS = frozenset({"/health", "/ready", "/v2/health/live", "/v2/health/ready"})
_REALM = b'Bearer realm="mlops-airflow"'
#: The same ``Bearer <token>`` in another header: the Kubernetes API server's proxy takes
#: ``Authorization`` for its own authentication and does not forward it to the pod.
PROXY_AUTH_HEADER = "x-mlops-airflow-authorization"


class _TooLarge(Exception):
    pass


class _Disconnected(Exception):
    pass


async def send_json(send: Send, status: int, body: Any, headers: list[tuple[bytes, bytes]] | None = None) -> None:
    await send_bytes(send, status, json.dumps(body).encode(), headers)


async def send_bytes(send: Send, status: int, data: bytes, headers: list[tuple[bytes, bytes]] | None = None) -> None:
    """A whole answer whose body is already encoded: ``application/json`` unless ``headers`` name a content type."""
    headers = headers or []
    typed = any(name == b"content-type" for name, _ in headers)
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                *([] if typed else [(b"content-type", b"application/json")]),
                (b"content-length", str(len(data)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": data})


def route_path(scope: Scope) -> str:
    """The path the app routes by: without the ``root_path`` a proxy mounts the server under (as Starlette does)."""
    path: str = scope["path"]
    root = scope.get("root_path", "")
    if root and path.startswith(root) and path[len(root):len(root) + 1] in ("/", ""):
        return path[len(root):] or "/"
    return path


def bearer_token(scope: Scope) -> bytes | None:
    """The token of an ``Authorization: Bearer ...`` header, else of a :data:`PROXY_AUTH_HEADER` one, or None."""
    headers = dict(scope.get("headers", ()))
    for header in (b"authorization", PROXY_AUTH_HEADER.encode()):
        if header in headers:
            scheme, _, token = headers[header].partition(b" ")
            if scheme.lower() == b"bearer" and token.strip():
                return bytes(token.strip())
            return None
    return None


class GuardMiddleware:
    """Auth, body limit and request metrics around the app (see the module docstring)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        metrics: ServerMetrics,
        token: str | None = None,
        max_body_bytes: int,
        public_metrics: bool = False,
        route: Callable[[str], BodyEndpoint | None] | None = None,
    ) -> None:
        self.app = app
        #: path -> the POST endpoint answered here with the body read, or None (see the module docstring)
        self.route = route or (lambda path: None)
        self.metrics = metrics
        self._token = token.encode() if token else None
        self.max_body_bytes = max_body_bytes
        self.open_paths = OPEN_PATHS | ({"/metrics"} if public_metrics else set())

    def __repr__(self) -> str:  # never show the token, even in a debugger or a log line
        return f"GuardMiddleware(auth={'on' if self._token else 'off'}, max_body_bytes={self.max_body_bytes})"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500
        path = route_path(scope)

        async def send_recording(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            refusal = None if self._token is None else self._refuse_auth(scope)
            scope[AUTHORIZED] = refusal is None
            if refusal is not None and path not in self.open_paths:
                self.metrics.error("auth")
                await send_json(send_recording, 401, {"detail": refusal[0]}, [(b"www-authenticate", refusal[1])])
                return
            endpoint = self.route(path.rstrip("/") or "/")  # "/predict/" is "/predict"
            if endpoint is not None and scope["method"] != "POST":
                await send_json(send_recording, 405, {"detail": "Method Not Allowed"}, [(b"allow", b"POST")])
                return
            if scope["method"] in ("POST", "PUT", "PATCH"):
                try:
                    body = await self._read_body(scope, receive)
                except _TooLarge:
                    self.metrics.error("too_large")
                    detail = f"request body is larger than the limit of {self.max_body_bytes} bytes"
                    await send_json(send_recording, 413, {"detail": detail}, [(b"connection", b"close")])
                    return
                except _Disconnected:
                    status = 499  # nginx's "client closed request": nothing was answered
                    return
                if endpoint is not None:
                    await send_bytes(send_recording, *await endpoint(scope, body))
                    return
                receive = _replay(body, receive)
            await self.app(scope, receive, send_recording)
        finally:
            self.metrics.request(path, status, time.perf_counter() - started)

    def _refuse_auth(self, scope: Scope) -> tuple[str, bytes] | None:
        assert self._token is not None
        given = bearer_token(scope)
        if given is None:
            return "this server needs a bearer token: send 'Authorization: Bearer <token>'", _REALM
        if not hmac.compare_digest(given, self._token):
            return "the bearer token is not valid", _REALM + b', error="invalid_token"'
        return None

    async def _read_body(self, scope: Scope, receive: Receive) -> bytes:
        limit = self.max_body_bytes
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    if int(value) > limit:
                        raise _TooLarge
                except ValueError:
                    pass  # the HTTP server rejects a malformed length itself
                break
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise _Disconnected
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise _TooLarge
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that hands the app the body already read, then waits on the real one (disconnects)."""
    done = False

    async def replay() -> Message:
        nonlocal done
        if not done:
            done = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
