"""The model server: serves the version an alias names, and follows the alias without a restart.

A background thread polls the registry alias. When it names another version than the one
loaded, the thread loads that version with the deploy stage's own loader (checksum,
trusted types, skew policy, schema) and then swaps one reference; a request reads that
reference once, so it is answered entirely by one model. A version that fails to load
is refused and the previous model keeps serving; ``/ready`` and ``/metadata`` say why.
Pinned (``version=N``, what a Kubernetes Deployment runs) it loads that version once,
checks it against ``expect_sha256`` if given, and never follows an alias.

Endpoints::

    GET  /health    200 while the process lives
    GET  /ready     200 {status: "ready", model_name, alias, version, sha256, loaded_at, last_error, ...}
                    503 {status: "waiting" | "failed", reason, last_error, ...} while nothing is loaded
    GET  /metadata  200 {model_name, alias, version, sha256, task_type, feature_schema, classes,
                         loaded_at, load_warnings, last_error, refused_version}; 503 {detail: {...}}
    GET  /metrics   Prometheus text format (see :mod:`mlops_airflow.serving.metrics`)
    POST /predict   200 {model_name, version, predictions, [probabilities, classes], warnings}
                    422 {detail: {errors: [...], warnings: [...]}}; 503 {detail: {...}}
                    401 without the bearer token (when one is set), 413 over the body limit

The answer carries ``X-Request-ID`` (the client's, if it sent a usable one); the
prediction log records it. A request is parsed and validated on the event loop (in the
thread pool when its body is large), then predicted by the
:class:`~mlops_airflow.serving.predict.MicroBatcher` together with the requests that queued
up meanwhile (one too big to share a batch is predicted where it was parsed). Auth, the body limit and request metrics live in
:mod:`~mlops_airflow.serving.middleware`.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
import uuid
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

import msgspec
from fastapi import FastAPI
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from mlops_airflow.exceptions import DeployError, RegistryError, UnsafeModelError
from mlops_airflow.serving.config import DEFAULT_MAX_BODY_BYTES
from mlops_airflow.serving.loading import LoadedModel, load_manifest_model
from mlops_airflow.serving.metrics import ServerMetrics, worker_exited
from mlops_airflow.serving.middleware import GuardMiddleware
from mlops_airflow.serving.predict import MicroBatcher, predict_parsed
from mlops_airflow.serving.requests import DEFAULT_MAX_ROWS, ParsedRows
from mlops_airflow.serving.typed_bodies import parse_body

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from mlops_airflow.persistence import SkewPolicy
    from mlops_airflow.registry.registry import ModelRegistry
    from mlops_airflow.serving.logs import PredictionLogger
    from mlops_airflow.serving.middleware import Scope

log = logging.getLogger(__name__)

#: Errors that loading the same version again cannot fix: the version is refused until the alias moves.
_REFUSALS = (UnsafeModelError, DeployError, RegistryError)
#: Bodies up to this size are parsed and validated on the event loop: a thread hop costs more
#: than the work. One too big to share a batch (rows >= the batcher's) is predicted there too,
#: which blocks the loop for about as long as a 1,000-row predict (~10-15 ms here): a hop to the
#: predicting thread and back costs two wake-ups, ~0.5 ms, and the batcher could combine it with
#: nothing. Bigger bodies go to the thread pool, so that probes stay answered meanwhile.
_INLINE_BODY_BYTES = 64 * 1024
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass(frozen=True)
class _Refusal:
    version: int
    moved_at: str | None


class ModelSlot:
    """The model being served, and the thread that keeps it in step with the registry alias.

    ``current`` is replaced, never mutated: readers take the reference once and use that.
    """

    def __init__(
        self,
        registry: ModelRegistry,
        model_name: str,
        alias: str,
        *,
        poll_interval: float,
        skew_policy: SkewPolicy,
        version: int | None = None,
        expect_sha256: str | None = None,
        metrics: ServerMetrics | None = None,
    ) -> None:
        self.registry = registry
        self.model_name = model_name
        self.alias = alias
        self.poll_interval = poll_interval
        self.skew_policy: SkewPolicy = skew_policy
        #: Pinned: serve exactly this version and never follow the alias.
        self.pinned_version = version
        self.expect_sha256 = expect_sha256
        self.metrics = metrics
        self.current: LoadedModel | None = None
        if version is not None:
            self.waiting_reason = f"loading the pinned version {model_name} version {version}"
        else:
            self.waiting_reason = f"waiting for the alias {model_name}@{alias} to be read from the registry"
        self.last_error: str | None = None
        self.last_error_at: str | None = None
        self._refused: _Refusal | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- the loader thread -------------------------------------------------------
    def start(self) -> None:
        if self.pinned_version is not None:
            log.info(
                "model loader: serving %s version %s (pinned) from %s",
                self.model_name,
                self.pinned_version,
                self.registry.store.uri,
            )
        else:
            log.info(
                "model loader: following %s@%s in %s, every %gs",
                self.model_name,
                self.alias,
                self.registry.store.uri,
                self.poll_interval,
            )
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="mlops-model-loader", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _run(self) -> None:
        while True:
            try:
                self.poll_once()
            except Exception:  # the loop must outlive any surprise; poll_once records what it can
                log.exception(
                    "model loader: unexpected error while polling %s@%s", self.model_name, self.alias
                )
            if self._stop.wait(self.poll_interval):
                return

    def _fail(self, message: str, level: int = logging.WARNING) -> None:
        if message != self.last_error:  # an outage fails every poll: log it once, not every second
            log.log(level, "model loader: %s", message)
        self.last_error = message
        self.last_error_at = _now()

    def poll_once(self) -> None:
        """Read the alias once and load the version it names if that is not the one served."""
        if self.pinned_version is not None:
            with self._lock:
                # once loaded or refused there is nothing to follow; a transient failure is retried
                if self.current is None and self._refused is None:
                    self._load(self.pinned_version, {"version": self.pinned_version, "moved_at": None})
            return
        with self._lock:
            try:
                record = self.registry.get_alias(self.model_name, self.alias)
            except Exception as exc:  # a store outage: keep serving, say so, try again next poll
                self._fail(f"cannot read {self.model_name}@{self.alias} from the registry: {exc}")
                return
            current = self.current
            if record is None:
                alias, store = f"{self.model_name}@{self.alias}", self.registry.store.uri
                if current is None:
                    reason = f"the alias {alias} does not exist yet in {store}"
                    if reason not in self.waiting_reason:  # log once, not on every poll
                        log.info("model loader: %s; waiting", reason)
                    self.waiting_reason = f"waiting for a model: {reason}"
                    self.last_error = self.last_error_at = None
                    self._refused = None
                else:
                    self._fail(
                        f"the alias {alias} no longer exists in {store}; still serving version {current.version}"
                    )
                return
            version = int(record["version"])
            if current is not None and current.version == version:
                # e.g. a deploy rolled the alias back to what is served: nothing is wrong any more
                self.last_error = self.last_error_at = None
                self._refused = None
                return
            refused = self._refused
            if refused is not None and (refused.version, refused.moved_at) == (
                version,
                record.get("moved_at"),
            ):
                return  # already refused this very alias state; it cannot load better now
            self._load(version, record)

    def _load(self, version: int, record: dict[str, Any]) -> None:
        current = self.current
        log.info(
            "model loader: loading %s version %s (%s@%s)",
            self.model_name,
            version,
            self.model_name,
            self.alias,
        )
        try:
            manifest = self.registry.get_version(self.model_name, version)
            self._check_expected_sha(manifest)
            loaded = load_manifest_model(self.registry, manifest, skew_policy=self.skew_policy)
        except _REFUSALS as exc:
            keeps = f"; still serving version {current.version}" if current else ""
            self._fail(f"refused version {version}: {exc}{keeps}", logging.ERROR)
            self._refused = _Refusal(version, record.get("moved_at"))
            if self.metrics is not None:
                self.metrics.refused()
            return
        except Exception as exc:  # storage hiccups and the like: retried on the next poll
            keeps = f"; still serving version {current.version}" if current else ""
            self._fail(f"could not load version {version}, will retry: {type(exc).__name__}: {exc}{keeps}")
            return
        self.current = loaded  # the swap: one reference assignment, atomic for readers
        self.last_error = self.last_error_at = None
        self._refused = None
        if self.metrics is not None:
            self.metrics.swapped(current, loaded, self.alias_label)
        for line in loaded.load_warnings:
            log.warning("model loader: %s version %s: %s", self.model_name, version, line)
        log.info(
            "model loader: now serving %s version %s (sha256 %s)",
            self.model_name,
            version,
            loaded.sha256[:12],
        )

    def _check_expected_sha(self, manifest: dict[str, Any]) -> None:
        expected = self.expect_sha256
        if expected is not None and manifest.get("sha256") != expected:
            raise UnsafeModelError(
                f"{self.model_name} version {manifest.get('version')} has sha256 {str(manifest.get('sha256'))[:12]}…, "
                f"but {expected[:12]}… was expected: refusing to serve another model than the one deployed"
            )

    # -- what the endpoints report -----------------------------------------------
    @property
    def alias_label(self) -> str:
        """The alias followed; empty when pinned to a version."""
        return "" if self.pinned_version is not None else self.alias

    @property
    def refused_version(self) -> int | None:
        refused = self._refused
        return refused.version if refused else None

    def status(self) -> dict[str, Any]:
        """The body of ``/ready``: the same keys whether or not a model is loaded."""
        current = self.current
        body: dict[str, Any] = {
            "model_name": self.model_name,
            "alias": self.alias_label or None,
            "pinned": self.pinned_version is not None,
            "version": current.version if current else self.pinned_version,
            "sha256": current.sha256 if current else self.expect_sha256,
            "loaded_at": current.loaded_at if current else None,
            "last_error": self.last_error,
            "last_error_at": self.last_error_at,
            "refused_version": self.refused_version,
            "worker_pid": os.getpid(),  # with --workers N, which process answered
        }
        if current is not None:
            return {"status": "ready", **body}
        if self.last_error is not None:
            return {"status": "failed", "reason": self.last_error, **body}
        return {"status": "waiting", "reason": self.waiting_reason, **body}


def _not_ready(slot: ModelSlot) -> JSONResponse:
    return JSONResponse(status_code=503, content={"detail": slot.status()})


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


def _query(scope: Scope) -> dict[str, str]:
    """The query string's parameters (the last of repeated ones), decoded as Starlette decodes them."""
    return dict(parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True))


def _check_and_predict(loaded: LoadedModel, raw: bytes, max_rows: int, probabilities: bool) -> tuple[ParsedRows, Any]:
    parsed = parse_body(raw, loaded.request_checker, max_rows=max_rows)
    return parsed, (predict_parsed(loaded, parsed, probabilities=probabilities) if parsed.ok else None)


_FLAGS = {"true": True, "1": True, "false": False, "0": False}


def create_app(
    registry: ModelRegistry,
    model_name: str,
    alias: str = "champion",
    *,
    poll_interval: float = 1.0,
    skew_policy: SkewPolicy = "warn",
    max_rows: int = DEFAULT_MAX_ROWS,
    version: int | None = None,
    expect_sha256: str | None = None,
    token: str | None = None,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    public_metrics: bool = False,
    metrics: ServerMetrics | None = None,
    prediction_logger: PredictionLogger | None = None,
) -> FastAPI:
    """A FastAPI app serving ``model_name@alias`` from ``registry``, or exactly ``version`` when given.

    The loader thread (and the prediction logger's flush thread) run for the app's
    lifespan: start the app with a server, or a ``TestClient`` used as a context manager.
    ``app.state.slot`` is the :class:`ModelSlot`, ``app.state.metrics`` the
    :class:`~mlops_airflow.serving.metrics.ServerMetrics`. ``token`` set: every endpoint
    but ``/health`` and ``/ready`` (and ``/metrics`` with ``public_metrics``) needs it.
    """
    metrics = metrics or ServerMetrics()
    slot = ModelSlot(registry, model_name, alias, poll_interval=poll_interval, skew_policy=skew_policy,
                     version=version, expect_sha256=expect_sha256, metrics=metrics)
    logger = prediction_logger
    batcher = MicroBatcher()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        slot.start()
        batcher.start()
        if logger is not None:
            logger.start()
        try:
            yield
        finally:
            slot.stop()
            batcher.stop()
            if logger is not None:
                logger.stop()
            worker_exited(os.getpid())

    title = f"{model_name} version {version}" if version is not None else f"{model_name}@{alias}"
    app = FastAPI(title=f"mlops-airflow model server: {title}", lifespan=lifespan)
    app.state.slot = slot
    app.state.metrics = metrics

    @app.get("/health")
    def health() -> dict[str, str]:
        """Liveness: the process answers."""
        return {"status": "alive"}

    @app.get("/ready")
    def ready() -> JSONResponse:
        """Readiness: 200 once a model is loaded, 503 with the reason until then."""
        body = slot.status()
        return JSONResponse(status_code=200 if body["status"] == "ready" else 503, content=body)

    @app.get("/metrics")
    def prometheus() -> Response:
        """The Prometheus text exposition (over all workers)."""
        content, content_type = metrics.render()
        return Response(content, media_type=content_type)

    @app.get("/metadata")
    def metadata() -> Any:
        """What is served: the version, its checksum and the feature schema requests are checked against."""
        current = slot.current
        if current is None:
            return _not_ready(slot)
        return {
            "model_name": current.model_name,
            "alias": slot.alias_label or None,
            "pinned": slot.pinned_version is not None,
            "version": current.version,
            "sha256": current.sha256,
            "task_type": current.task_type,
            "feature_schema": current.feature_schema,
            "classes": current.classes,
            "metrics": current.manifest.get("metrics"),
            "registered_at": current.manifest.get("registered_at"),
            "loaded_at": current.loaded_at,
            "load_warnings": current.load_warnings,
            "last_error": slot.last_error,
            "refused_version": slot.refused_version,
        }

    async def predict(scope: Scope, raw: bytes) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
        """``POST /predict``, answered by GuardMiddleware with the body it read (see its module).

        Validate the rows against the served model's schema, then predict with that same model.
        """
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
        if len(raw) <= _INLINE_BODY_BYTES:
            parsed = parse_body(raw, loaded.request_checker, max_rows=max_rows)
            if not parsed.ok:
                result: Any = None
            elif parsed.rows >= batcher.max_rows:  # nothing to share a batch with: no hop (see _INLINE_BODY_BYTES)
                result = predict_parsed(loaded, parsed, probabilities=probabilities)
            else:
                result = await batcher.predict(loaded, parsed, probabilities=probabilities)
        else:  # big enough to predict alone: one trip to the thread pool for all of it
            parsed, result = await run_in_threadpool(_check_and_predict, loaded, raw, max_rows, probabilities)
        if parsed.warning_fields:
            metrics.warned(parsed.warning_fields)
        if not parsed.ok:
            metrics.error("validation")
            return 422, _encode({"detail": {"errors": parsed.errors, "warnings": parsed.warnings}}), headers
        if isinstance(result, (ValueError, TypeError)):
            # scikit-learn signals input it cannot handle with ValueError / TypeError
            metrics.error("model")
            errors = [f"the model rejected the rows: {result}"]
            return 422, _encode({"detail": {"errors": errors, "warnings": parsed.warnings}}), headers
        if isinstance(result, Exception):
            metrics.error("internal")
            log.error("predict: %s version %s failed", loaded.model_name, loaded.version, exc_info=result)
            message = f"{loaded.model_name} version {loaded.version} failed to predict: {type(result).__name__}: {result}"
            return 500, _encode({"detail": message}), headers
        metrics.predicted(loaded, result["predictions"])
        if logger is not None:
            logger.offer(version=loaded.version, request_id=request_id, values=parsed.values,
                         predictions=result["predictions"], probabilities=result.get("probabilities"),
                         classes=result.get("classes"))
        body = {"model_name": loaded.model_name, "version": loaded.version, **result, "warnings": parsed.warnings}
        return 200, _encode(body), headers

    app.add_middleware(
        GuardMiddleware, metrics=metrics, token=token, max_body_bytes=max_body_bytes, public_metrics=public_metrics,
        endpoints={"/predict": predict},
    )
    routes_only = app.openapi

    def openapi() -> dict[str, Any]:
        """FastAPI's schema of the routes, and ``POST /predict``, which the middleware answers (so /docs shows it)."""
        if app.openapi_schema is None:
            routes_only()["paths"]["/predict"] = _PREDICT_OPENAPI
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
            "413": {"description": "the body is over the size limit"},
            "422": {"description": "detail.errors names each offending field and why"},
            "503": {"description": "no model is loaded yet: detail says why"},
        },
    }
}
