"""The model server: one model (``mlops-airflow serve NAME``) or every model of the registry, by name.

The models live in a :class:`~mlops_airflow.serving.pool.ModelPool`: loaded on their first
request (a single-model server loads its one model at start), kept in step with their
aliases by a background poller, swapped by one reference assignment, evicted least
recently used beyond the budget, refused one by one. A request reads its model's
reference once, so it is answered entirely by one model.

Endpoints (paths: :mod:`~mlops_airflow.serving.paths`)::

    GET  /health                200 while the process lives
    GET  /ready                 one model: 200 {status: "ready", model_name, version, sha256, ...},
                                503 {status: "waiting" | "failed", reason, ...}; many: 200 once started;
                                without the token (when there is one): only {status: "ready" | "not ready", version}
    GET  /metadata, POST /predict   a single-model server's own routes (as before: unchanged)
    GET  /metrics               Prometheus text format (see :mod:`mlops_airflow.serving.metrics`)
    GET  /models                what is loaded, the budget, models waiting or refused
    GET  /models/{name}/metadata    200 {model_name, alias, version, sha256, task_type, feature_schema, ...}
    GET  /models/{name}/ready       200 / 503 as /ready, for that model
    POST /models/{name}/predict     200 {model_name, version, predictions, [probabilities, classes], warnings}
                                    422 {detail: {errors, warnings}}; 503 {detail: {...}}
    Open Inference Protocol (V2), as KServe, MLServer and Triton speak it (see :mod:`~mlops_airflow.serving.v2`):
    GET  /v2, /v2/health/live, /v2/health/ready
    GET  /v2/models/{name}[/versions/{v}], /v2/models/{name}[/versions/{v}]/ready
    POST /v2/models/{name}[/versions/{v}]/infer     errors as {"error": "..."}

A model the server does not serve answers 404 naming it; one waiting for its alias,
refused or still loading answers 503 saying which and why. Requests that report versions
(metadata, readiness) read the model's alias first if it was last read more than a
quarter of a second ago, so a deploy sees its version at once.

The answer carries ``X-Request-ID`` (the client's, if it sent a usable one); the
prediction log records it. A request is parsed and validated in the thread pool (on the event
loop when its body is tiny), then predicted by the
:class:`~mlops_airflow.serving.predict.MicroBatcher` together with the requests that queued
up meanwhile (one too big to share a batch is predicted where it was parsed). Auth, the
body limit and request metrics live in :mod:`~mlops_airflow.serving.middleware`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import time
import uuid
from contextlib import asynccontextmanager
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import parse_qsl

import anyio
import anyio.to_thread
import msgspec
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from mlops_airflow.exceptions import ModelNotFound
from mlops_airflow.serving.config import DEFAULT_MAX_BODY_BYTES
from mlops_airflow.serving.metrics import ServerMetrics, worker_exited
from mlops_airflow.serving.middleware import AUTHORIZED, GuardMiddleware
from mlops_airflow.serving.paths import model_route
from mlops_airflow.serving.pool import DEFAULT_MAX_MODELS, FRESH_AFTER, ModelPool, ModelSlot
from mlops_airflow.serving.predict import LoopBatcher, MicroBatcher, predict_parsed
from mlops_airflow.serving.requests import DEFAULT_MAX_COLUMNS, DEFAULT_MAX_ROWS, ParsedRows
from mlops_airflow.serving.typed_bodies import parse_body

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Sequence

    from mlops_airflow.persistence import SkewPolicy
    from mlops_airflow.registry.registry import ModelRegistry
    from mlops_airflow.serving.loading import LoadedModel
    from mlops_airflow.serving.logs import PredictionLogger
    from mlops_airflow.serving.middleware import BodyEndpoint, Scope

__all__ = ["ModelSlot", "create_app"]

log = logging.getLogger(__name__)

#: Bodies up to this size are parsed and validated on the event loop: a thread hop (~0.1 ms)
#: costs more than the work, and a one-row body is ~100 bytes. Parsing is linear in the body
#: (and the column names capped), so 4 KiB of the worst JSON holds the loop well under a
#: millisecond; anything bigger is parsed in the thread pool (see ``off_loop`` in create_app),
#: so that a hostile body does not hold the loop for its whole parse.
_INLINE_PARSE_BYTES = 4 * 1024
#: Bodies up to this size are predicted on the loop (batched there or in the batcher) once parsed.
#: One too big to share a batch (rows >= the batcher's) is predicted there too, which blocks the
#: loop for about as long as a 1,000-row predict (~10-15 ms here): a hop to the predicting thread
#: and back costs two wake-ups, ~0.5 ms, and the batcher could combine it with nothing. Bigger
#: bodies are predicted in the thread pool.
_INLINE_BODY_BYTES = 64 * 1024
T = TypeVar("T")
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
#: (status, JSON body, extra headers): what a POST endpoint answers.
Answer = tuple[int, bytes, list[tuple[bytes, bytes]]]


def _encode(body: Any) -> bytes:
    # straight to bytes: FastAPI's jsonable_encoder walk costs more than the model on one row, and
    # msgspec writes a thousand predictions several times faster than json.dumps (no NaN gets here)
    try:
        return msgspec.json.encode(body)
    except (UnicodeEncodeError, TypeError, msgspec.EncodeError):
        # a lone surrogate (which json.loads accepts) echoed in a message: json.dumps escapes it
        return json.dumps(body, allow_nan=False).encode()


def _request_id(scope: Scope) -> str:
    for name, value in scope["headers"]:
        if name == b"x-request-id":
            given = value.decode("latin-1")
            return given if _REQUEST_ID.fullmatch(given) else uuid.uuid4().hex
    return uuid.uuid4().hex


def _header(scope: Scope, wanted: bytes) -> str | None:
    for name, value in scope["headers"]:
        if name == wanted:
            return str(value.decode("latin-1"))
    return None


def _query(scope: Scope) -> dict[str, str]:
    """The query string's parameters (the last of repeated ones), decoded as Starlette decodes them."""
    return dict(parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True))


def _v2() -> Any:
    from mlops_airflow.serving import v2

    return v2


_FLAGS = {"true": True, "1": True, "false": False, "0": False}


def metadata_of(slot: ModelSlot, loaded: LoadedModel) -> dict[str, Any]:
    """What ``/metadata`` and ``/models/{name}/metadata`` answer for a loaded model."""
    return {
        "model_name": loaded.model_name,
        "alias": slot.alias_label or None,
        "pinned": slot.pinned_version is not None,
        "version": loaded.version,
        "sha256": loaded.sha256,
        "task_type": loaded.task_type,
        "feature_schema": loaded.feature_schema,
        "classes": loaded.classes,
        "metrics": loaded.manifest.get("metrics"),
        "registered_at": loaded.manifest.get("registered_at"),
        "loaded_at": loaded.loaded_at,
        "load_warnings": loaded.load_warnings,
        "last_error": slot.last_error,
        "refused_version": slot.refused_version,
    }


def create_app(
    registry: ModelRegistry,
    model_name: str | None = None,
    alias: str = "champion",
    *,
    models: Sequence[str] = (),
    poll_interval: float = 1.0,
    skew_policy: SkewPolicy = "warn",
    max_rows: int = DEFAULT_MAX_ROWS,
    max_columns: int = DEFAULT_MAX_COLUMNS,
    version: int | None = None,
    expect_sha256: str | None = None,
    token: str | None = None,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    public_metrics: bool = False,
    metrics: ServerMetrics | None = None,
    prediction_logger: PredictionLogger | None = None,
    max_models: int = DEFAULT_MAX_MODELS,
    memory_budget_bytes: int | None = None,
    load_timeout: float = 30.0,
) -> FastAPI:
    """A FastAPI app serving ``model_name@alias`` from ``registry`` (exactly ``version`` when given),
    or, without ``model_name``, every model whose name matches one of ``models`` (glob patterns; none: all).

    The pool's poller and loaders (and the prediction logger's flush thread) run for the
    app's lifespan: start the app with a server, or a ``TestClient`` used as a context
    manager. ``app.state.pool`` is the :class:`~mlops_airflow.serving.pool.ModelPool`,
    ``app.state.slot`` the one model's slot (single-model servers), ``app.state.metrics``
    the :class:`~mlops_airflow.serving.metrics.ServerMetrics`. ``token`` set: every endpoint
    but the probes (and ``/metrics`` with ``public_metrics``) needs it. ``load_timeout``:
    how long a request waits for its model to load before it is answered 503.
    """
    single = model_name is not None
    metrics = metrics or ServerMetrics(per_version=single)
    pool = ModelPool(registry, model_name=model_name, patterns=models, alias=alias, poll_interval=poll_interval,
                     skew_policy=skew_policy, version=version, expect_sha256=expect_sha256, max_models=max_models,
                     memory_budget_bytes=memory_budget_bytes, metrics=metrics)
    logger = prediction_logger
    batcher = MicroBatcher()
    loop_batcher = LoopBatcher()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        pool.start()
        batcher.start()
        if logger is not None:
            logger.start()
        try:
            yield
        finally:
            pool.stop()
            batcher.stop()
            if logger is not None:
                logger.stop()
            worker_exited(os.getpid())

    if single:
        title = f"{model_name} version {version}" if version is not None else f"{model_name}@{alias}"
    else:
        title = f"models {', '.join(models) or '*'}@{alias}"
    app = FastAPI(title=f"mlops-airflow model server: {title}", lifespan=lifespan)
    app.state.pool = pool
    app.state.slot = pool.slot(model_name) if model_name is not None else None
    app.state.metrics = metrics

    async def acquire(name: str, *, fresh: bool = False) -> ModelSlot:
        """The slot of ``name``, its model loaded if it can be (waiting up to ``load_timeout``).

        ``fresh``: read the alias again if it was last read more than FRESH_AFTER ago.
        Raises :class:`ModelNotFound` for a name this server does not serve.
        """
        slot = pool.slot(name)
        slot.last_used = time.monotonic()
        wanted = slot.current is None or fresh
        pending = slot.pending
        if wanted and (pending is None or pending.done()) and time.monotonic() - slot.last_polled > FRESH_AFTER:
            pending = pool.refresh(slot)
        if wanted and pending is not None and not pending.done():
            try:
                await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(pending)), load_timeout)
            except TimeoutError:
                pass  # still loading: the slot's status says so
        if slot.unknown:
            raise ModelNotFound(pool.not_served(name))
        return slot

    def not_found(exc: ModelNotFound, *, v2_route: bool) -> JSONResponse:
        content = {"error": str(exc)} if v2_route else {"detail": str(exc)}
        return JSONResponse(status_code=404, content=content)

    def described(slot: ModelSlot) -> Any:
        """A slot's ``/metadata`` answer: 503 with its status until a model is loaded."""
        current = slot.current
        if current is None:
            return JSONResponse(status_code=503, content={"detail": slot.status()})
        return metadata_of(slot, current)

    @app.get("/health")
    def health() -> dict[str, str]:
        """Liveness: the process answers."""
        return {"status": "alive"}

    @app.get("/ready")
    def ready(request: Request) -> JSONResponse:
        """Readiness: one model: 200 once it is loaded, 503 with the reason until then; many: 200 once started.

        Open to probes; without the token (when the server has one) it says only ready or not
        and the version: the reason would show the registry's location and what a load refused.
        """
        slot = app.state.slot
        detailed = request.scope.get(AUTHORIZED, False)
        if slot is None:
            if not detailed:
                return JSONResponse({"status": "ready"})
            return JSONResponse({"status": "ready", "models_loaded": len(pool.loaded()), "worker_pid": os.getpid()})
        body = slot.status()
        code = 200 if body["status"] == "ready" else 503
        if not detailed:
            body = {"status": "ready" if code == 200 else "not ready", "version": body["version"]}
        return JSONResponse(status_code=code, content=body)

    @app.get("/metrics")
    def prometheus() -> Response:
        """The Prometheus text exposition (over all workers)."""
        content, content_type = metrics.render()
        return Response(content, media_type=content_type)

    @app.get("/metadata")
    def metadata() -> Any:
        """What is served: the version, its checksum and the feature schema requests are checked against."""
        slot = app.state.slot
        if slot is None:
            return JSONResponse(status_code=404, content={"detail": "this server serves many models: "
                                                                   "GET /models/{name}/metadata"})
        return described(slot)

    @app.get("/models")
    def listing() -> dict[str, Any]:
        """The models loaded (most recently used first), the budget, and models waiting or refused."""
        return pool.status()

    @app.get("/models/{name}/metadata")
    async def model_metadata(name: str) -> Any:
        """``/metadata`` for one model; loads it if it is not loaded."""
        try:
            slot = await acquire(name, fresh=True)
        except ModelNotFound as exc:
            return not_found(exc, v2_route=False)
        return described(slot)

    @app.get("/models/{name}/ready")
    async def model_ready(name: str) -> JSONResponse:
        """``/ready`` for one model; loads it if it is not loaded."""
        try:
            slot = await acquire(name, fresh=True)
        except ModelNotFound as exc:
            return not_found(exc, v2_route=False)
        body = slot.status()
        return JSONResponse(status_code=200 if body["status"] == "ready" else 503, content=body)

    # -- Open Inference Protocol (V2) --------------------------------------------------
    @app.get("/v2")
    def v2_server() -> dict[str, Any]:
        """Server metadata (V2)."""
        return _v2().server_metadata()

    @app.get("/v2/health/live")
    def v2_live() -> dict[str, bool]:
        """Server liveness (V2)."""
        return {"live": True}

    @app.get("/v2/health/ready")
    def v2_ready() -> JSONResponse:
        """Server readiness (V2): a single-model server once its model is loaded, else once started."""
        slot = app.state.slot
        ok = slot is None or slot.current is not None
        return JSONResponse(status_code=200 if ok else 503, content={"ready": ok})

    async def v2_model(name: str, version: str | None) -> tuple[ModelSlot | None, JSONResponse | None]:
        """The slot of a V2 model route with its model loaded, or the error answer."""
        try:
            slot = await acquire(name, fresh=True)
        except ModelNotFound as exc:
            return None, not_found(exc, v2_route=True)
        current = slot.current
        if current is None:
            reason = slot.status().get("reason") or "not loaded"
            return None, JSONResponse(status_code=400, content={"error": f"model {name!r} is not ready: {reason}"})
        if version is not None and version != str(current.version):
            message = f"{name} serves version {current.version}, not version {version[:20]!r}"
            return None, JSONResponse(status_code=404, content={"error": message})
        return slot, None

    @app.get("/v2/models/{name}")
    @app.get("/v2/models/{name}/versions/{version}")
    async def v2_metadata(name: str, version: str | None = None) -> Any:
        """Model metadata (V2): inputs as one tensor per feature column, outputs predict / predict_proba."""
        slot, refusal = await v2_model(name, version)
        if refusal is not None or slot is None:
            return refusal
        loaded = slot.current
        assert loaded is not None
        return _v2().model_metadata(loaded.model_name, [loaded.version], loaded.feature_schema, loaded.task_type,
                                 loaded.classes)

    @app.get("/v2/models/{name}/ready")
    @app.get("/v2/models/{name}/versions/{version}/ready")
    async def v2_model_ready(name: str, version: str | None = None) -> JSONResponse:
        """Model readiness (V2): 200 when ready, 400 (a 4xx, as the protocol asks) when not, 404 unknown."""
        slot, refusal = await v2_model(name, version)
        if refusal is not None or slot is None:
            assert refusal is not None
            return refusal
        return JSONResponse({"name": name, "ready": True})

    # -- the hot path: answered by the middleware with the body it read -------------------
    parsers: list[anyio.CapacityLimiter] = []  # made on the event loop, at the first body parsed off it

    async def off_loop(parse: Callable[[], T]) -> T:
        """``parse()`` in the thread pool, one body at a time.

        JSON decoding holds the GIL for a whole body (one C call: ~0.1-0.4 s for 10 MiB of the
        worst JSON), and the event loop needs the GIL to answer anyone. One parsing thread leaves
        the loop a turn between such calls; several would take turns among themselves first. It
        costs no throughput: two decodes never run at once under the GIL anyway.
        """
        if not parsers:
            parsers.append(anyio.CapacityLimiter(1))
        return await anyio.to_thread.run_sync(parse, limiter=parsers[0])

    async def run_model(loaded: LoadedModel, raw: bytes, parse: Callable[[], ParsedRows],
                        probabilities: bool, *, parsed_already: bool = False) -> tuple[ParsedRows, Any]:
        """Check the rows and predict them with ``loaded``: in the batcher, on the loop or in the thread pool.

        ``parsed_already``: ``parse`` only hands over rows checked before (no reason to leave the loop for it).
        """
        inline = parsed_already or len(raw) <= _INLINE_PARSE_BYTES
        parsed = parse() if inline else await off_loop(parse)
        if not parsed.ok:
            return parsed, None
        if len(raw) > _INLINE_BODY_BYTES:  # big enough to predict alone: in the thread pool
            return parsed, await run_in_threadpool(predict_parsed, loaded, parsed, probabilities=probabilities)
        if parsed.rows >= batcher.max_rows:  # nothing to share a batch with: no hop (see _INLINE_BODY_BYTES)
            return parsed, predict_parsed(loaded, parsed, probabilities=probabilities)
        if loaded.fast is not None:  # cheaper than a hop to the batcher's thread: batched on the loop
            return parsed, await loop_batcher.predict(loaded, parsed, probabilities=probabilities)
        return parsed, await batcher.predict(loaded, parsed, probabilities=probabilities)

    def failure(loaded: LoadedModel, parsed: ParsedRows, result: Any) -> tuple[int, str, str] | None:
        """(status, error kind, message) when the rows or the model failed; None on success."""
        if not parsed.ok:
            return 422, "validation", "; ".join(parsed.errors)
        if isinstance(result, (ValueError, TypeError)):
            # scikit-learn signals input it cannot handle with ValueError / TypeError
            return 422, "model", f"the model rejected the rows: {result}"
        if isinstance(result, Exception):
            log.error("predict: %s version %s failed", loaded.model_name, loaded.version, exc_info=result)
            return 500, "internal", (f"{loaded.model_name} version {loaded.version} failed to predict: "
                                     f"{type(result).__name__}: {result}")
        return None

    def answered(loaded: LoadedModel, parsed: ParsedRows, result: dict[str, Any], request_id: str) -> None:
        metrics.predicted(loaded, result["predictions"])
        if logger is not None:
            logger.offer(model_name=loaded.model_name, version=loaded.version, request_id=request_id,
                         values=parsed.values, predictions=result["predictions"],
                         probabilities=result.get("probabilities"), classes=result.get("classes"))

    async def predict(slot: ModelSlot, scope: Scope, raw: bytes) -> Answer:
        """Our ``POST /predict`` for ``slot``: validate the rows against its schema, then predict with that model."""
        loaded = slot.current  # read once: the whole request is answered by this model
        if loaded is None:
            metrics.error("not_ready")
            return 503, _encode({"detail": slot.status()}), []
        request_id = _request_id(scope)
        headers = [(b"x-request-id", request_id.encode())]
        # ?probabilities=false: labels only, exactly what model.predict gives, and a smaller answer
        given = _query(scope).get("probabilities", "true")
        probabilities = _FLAGS.get(given.lower())
        if probabilities is None:
            metrics.error("validation")
            errors = [f"probabilities: expected true or false, got {given!r}"]
            return 422, _encode({"detail": {"errors": errors, "warnings": []}}), headers
        parse = partial(parse_body, raw, loaded.request_checker, max_rows=max_rows, max_columns=max_columns)
        parsed, result = await run_model(loaded, raw, parse, probabilities)
        if parsed.warning_fields:
            metrics.warned(parsed.warning_fields)
        failed = failure(loaded, parsed, result)
        if failed is not None:
            status, kind, message = failed
            metrics.error(kind)
            if kind == "validation":
                return status, _encode({"detail": {"errors": parsed.errors, "warnings": parsed.warnings}}), headers
            if kind == "model":
                return status, _encode({"detail": {"errors": [message], "warnings": parsed.warnings}}), headers
            return status, _encode({"detail": message}), headers
        answered(loaded, parsed, result, request_id)
        body = {"model_name": loaded.model_name, "version": loaded.version, **result, "warnings": parsed.warnings}
        return 200, _encode(body), headers

    async def infer(slot: ModelSlot, version: str | None, scope: Scope, raw: bytes) -> Answer:
        """V2 ``infer``: tensors in, checked against the model's schema, tensors out."""
        loaded = slot.current
        if loaded is None:
            metrics.error("not_ready")
            reason = slot.status().get("reason") or "not loaded"
            return 400, _v2().error_body(f"model {slot.model_name!r} is not ready: {reason}"), []
        if version is not None and version != str(loaded.version):
            return 404, _v2().error_body(f"{slot.model_name} serves version {loaded.version}, "
                                      f"not version {version[:20]!r}"), []
        length = _header(scope, b"inference-header-content-length")
        v2 = _v2()
        try:
            parse = partial(v2.parse_infer, raw, loaded.request_checker, max_rows=max_rows,
                            header_length=int(length) if length is not None else None,
                            content_encoding=_header(scope, b"content-encoding"))
            # any but a tiny body is decoded off the event loop, as /predict's are
            request = parse() if len(raw) <= _INLINE_PARSE_BYTES else await off_loop(parse)
        except (ValueError, v2.V2Error) as exc:  # a malformed request, or length header
            metrics.error("validation")
            return getattr(exc, "status", 400), v2.error_body(str(exc)), []
        parsed, result = await run_model(loaded, raw, lambda: request.parsed, request.probabilities,
                                         parsed_already=True)
        if parsed.warning_fields:
            metrics.warned(parsed.warning_fields)
        failed = failure(loaded, parsed, result)
        if failed is not None:
            status, kind, message = failed
            metrics.error(kind)
            return status, v2.error_body(message), []
        try:
            body, headers = v2.infer_response(loaded.model_name, loaded.version, request, result, loaded.classes)
        except v2.V2Error as exc:  # e.g. predict_proba asked of a regressor
            metrics.error("validation")
            return exc.status, v2.error_body(str(exc)), []
        answered(loaded, parsed, result, request.id or _request_id(scope))
        return 200, body, headers

    def outcome(status: int) -> str:
        return {200: "ok", 404: "not_found", 422: "validation", 503: "not_ready"}.get(status, f"{status // 100}xx")

    def per_model(name: str, answer: Callable[[ModelSlot], Any], *, v2_route: bool) -> BodyEndpoint:
        async def endpoint(scope: Scope, raw: bytes) -> Answer:
            started = time.perf_counter()
            try:
                slot = await acquire(name)
            except ModelNotFound as exc:
                metrics.error("not_found")
                metrics.model_request("__unknown__", "not_found", time.perf_counter() - started)
                body = _v2().error_body(str(exc)) if v2_route else _encode({"detail": str(exc)})
                return 404, body, []
            status, data, headers = await answer(slot)(scope, raw)
            metrics.model_request(name, outcome(status), time.perf_counter() - started)
            return status, data, headers
        return endpoint

    async def many_models(scope: Scope, raw: bytes) -> Answer:
        return 404, _encode({"detail": "this server serves many models: POST /models/{name}/predict"}), []

    def route(path: str) -> BodyEndpoint | None:
        """The POST endpoint answered in the middleware for ``path``, or None (FastAPI answers it)."""
        if path == "/predict":
            slot = app.state.slot
            if slot is None:
                return many_models
            return per_model(slot.model_name, lambda s: partial(predict, s), v2_route=False)
        found = model_route(path)
        if found is None:
            return None
        if found.verb == "predict" and not found.v2:
            return per_model(found.name, lambda s: partial(predict, s), v2_route=False)
        if found.verb == "infer" and found.v2:
            return per_model(found.name, lambda s: partial(infer, s, found.version), v2_route=True)
        return None

    app.add_middleware(
        GuardMiddleware, metrics=metrics, token=token, max_body_bytes=max_body_bytes, public_metrics=public_metrics,
        route=route,
    )
    routes_only = app.openapi

    def openapi() -> dict[str, Any]:
        """FastAPI's schema of the routes, and the POST routes the middleware answers (so /docs shows them)."""
        if app.openapi_schema is None:
            paths = routes_only()["paths"]
            paths["/predict"] = _PREDICT_OPENAPI
            paths["/models/{name}/predict"] = _PREDICT_OPENAPI
            paths["/v2/models/{name}/infer"] = _INFER_OPENAPI
        return app.openapi_schema  # type: ignore[return-value]

    app.openapi = openapi  # type: ignore[method-assign]
    return app


_PREDICT_OPENAPI = {
    "post": {
        "summary": "Predict",
        "description": "Validate the rows against the served model's schema, then predict with that same model. "
        "Bodies: records (`rows`, `instances`, `dataframe_records`, `inputs`), one `row`, split "
        "(`columns` + `data`, or `dataframe_split`), or `inputs` as one list per column.",
        "parameters": [{"name": "probabilities", "in": "query", "required": False,
                        "schema": {"type": "boolean", "default": True},
                        "description": "false: labels only, exactly what model.predict gives"}],
        "requestBody": {"required": True, "content": {"application/json": {"schema": {"type": "object"}}}},
        "responses": {
            "200": {"description": "model_name, version, predictions, [probabilities, classes], warnings"},
            "401": {"description": "a bearer token is needed (when the server has one)"},
            "404": {"description": "this server does not serve that model"},
            "413": {"description": "the body is over the size limit"},
            "422": {"description": "detail.errors names each offending field and why"},
            "503": {"description": "the model is not loaded: detail says why"},
        },
    }
}

_INFER_OPENAPI = {
    "post": {
        "summary": "Infer (Open Inference Protocol V2)",
        "description": "One input tensor per feature column (or one [N, features] numeric tensor); outputs "
        "`predict` and, for classifiers, `predict_proba`. The binary tensor data extension is supported.",
        "requestBody": {"required": True, "content": {"application/json": {"schema": {"type": "object"}}}},
        "responses": {
            "200": {"description": "model_name, model_version, id, outputs"},
            "400": {"description": "{\"error\": ...}: a malformed request, or the model is not ready"},
            "404": {"description": "{\"error\": ...}: this server does not serve that model (or version)"},
            "422": {"description": "{\"error\": ...}: the tensors fail the model's schema checks"},
        },
    }
}
