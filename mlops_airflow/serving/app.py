"""The model server: serves the version an alias names, and follows the alias without a restart.

A background thread polls the registry alias. When it names another version than the one
loaded, the thread loads that version with the deploy stage's own loader (checksum,
trusted types, skew policy, schema) and then swaps one reference; a request reads that
reference once, so it is answered entirely by one model. A version that fails to load
is refused and the previous model keeps serving; ``/ready`` and ``/metadata`` say why.

Endpoints::

    GET  /health    200 while the process lives
    GET  /ready     200 {status: "ready", model_name, alias, version, sha256, loaded_at, last_error, ...}
                    503 {status: "waiting" | "failed", reason, last_error, ...} while nothing is loaded
    GET  /metadata  200 {model_name, alias, version, sha256, task_type, feature_schema, classes,
                         loaded_at, load_warnings, last_error, refused_version}; 503 {detail: {...}}
    POST /predict   200 {model_name, version, predictions, [probabilities, classes], warnings}
                    422 {detail: {errors: [...], warnings: [...]}}; 503 {detail: {...}}
"""

from __future__ import annotations

import logging
import math
import threading
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from mlops_airflow.exceptions import DeployError, RegistryError, UnsafeModelError
from mlops_airflow.serving.loading import LoadedModel, load_manifest_model
from mlops_airflow.serving.requests import DEFAULT_MAX_ROWS, parse_rows

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from mlops_airflow.persistence import SkewPolicy
    from mlops_airflow.registry.registry import ModelRegistry

log = logging.getLogger(__name__)

#: Errors that loading the same version again cannot fix: the version is refused until the alias moves.
_REFUSALS = (UnsafeModelError, DeployError, RegistryError)


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
    ) -> None:
        self.registry = registry
        self.model_name = model_name
        self.alias = alias
        self.poll_interval = poll_interval
        self.skew_policy: SkewPolicy = skew_policy
        self.current: LoadedModel | None = None
        self.waiting_reason = f"waiting for the alias {model_name}@{alias} to be read from the registry"
        self.last_error: str | None = None
        self.last_error_at: str | None = None
        self._refused: _Refusal | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- the loader thread -------------------------------------------------------
    def start(self) -> None:
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
            loaded = load_manifest_model(self.registry, manifest, skew_policy=self.skew_policy)
        except _REFUSALS as exc:
            keeps = f"; still serving version {current.version}" if current else ""
            self._fail(f"refused version {version}: {exc}{keeps}", logging.ERROR)
            self._refused = _Refusal(version, record.get("moved_at"))
            return
        except Exception as exc:  # storage hiccups and the like: retried on the next poll
            keeps = f"; still serving version {current.version}" if current else ""
            self._fail(f"could not load version {version}, will retry: {type(exc).__name__}: {exc}{keeps}")
            return
        self.current = loaded  # the swap: one reference assignment, atomic for readers
        self.last_error = self.last_error_at = None
        self._refused = None
        for line in loaded.load_warnings:
            log.warning("model loader: %s version %s: %s", self.model_name, version, line)
        log.info(
            "model loader: now serving %s version %s (sha256 %s)",
            self.model_name,
            version,
            loaded.sha256[:12],
        )

    # -- what the endpoints report -----------------------------------------------
    @property
    def refused_version(self) -> int | None:
        refused = self._refused
        return refused.version if refused else None

    def status(self) -> dict[str, Any]:
        """The body of ``/ready``: the same keys whether or not a model is loaded."""
        current = self.current
        body: dict[str, Any] = {
            "model_name": self.model_name,
            "alias": self.alias,
            "version": current.version if current else None,
            "sha256": current.sha256 if current else None,
            "loaded_at": current.loaded_at if current else None,
            "last_error": self.last_error,
            "last_error_at": self.last_error_at,
            "refused_version": self.refused_version,
        }
        if current is not None:
            return {"status": "ready", **body}
        if self.last_error is not None:
            return {"status": "failed", "reason": self.last_error, **body}
        return {"status": "waiting", "reason": self.waiting_reason, **body}


def _not_ready(slot: ModelSlot) -> JSONResponse:
    return JSONResponse(status_code=503, content={"detail": slot.status()})


def _json_number(value: Any) -> Any:
    # JSON has no NaN or Infinity: a model that produces one answers null for that row
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _predict(loaded: LoadedModel, frame: Any) -> dict[str, Any]:
    import numpy as np

    predictions = np.asarray(loaded.model.predict(frame))
    body: dict[str, Any] = {"predictions": [_json_number(value) for value in predictions.tolist()]}
    if loaded.is_classifier and hasattr(loaded.model, "predict_proba"):
        probabilities = np.asarray(loaded.model.predict_proba(frame))
        body["probabilities"] = [[_json_number(p) for p in row] for row in probabilities.tolist()]
        body["classes"] = loaded.classes
    return body


def create_app(
    registry: ModelRegistry,
    model_name: str,
    alias: str = "champion",
    *,
    poll_interval: float = 1.0,
    skew_policy: SkewPolicy = "warn",
    max_rows: int = DEFAULT_MAX_ROWS,
) -> FastAPI:
    """A FastAPI app serving ``model_name@alias`` from ``registry``.

    The loader thread runs for the app's lifespan (start the app with a server, or a
    ``TestClient`` used as a context manager). ``app.state.slot`` is the :class:`ModelSlot`.
    """
    slot = ModelSlot(registry, model_name, alias, poll_interval=poll_interval, skew_policy=skew_policy)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        slot.start()
        try:
            yield
        finally:
            slot.stop()

    app = FastAPI(title=f"mlops-airflow model server: {model_name}@{alias}", lifespan=lifespan)
    app.state.slot = slot

    @app.get("/health")
    def health() -> dict[str, str]:
        """Liveness: the process answers."""
        return {"status": "alive"}

    @app.get("/ready")
    def ready() -> JSONResponse:
        """Readiness: 200 once a model is loaded, 503 with the reason until then."""
        body = slot.status()
        return JSONResponse(status_code=200 if body["status"] == "ready" else 503, content=body)

    @app.get("/metadata")
    def metadata() -> Any:
        """What is served: the version, its checksum and the feature schema requests are checked against."""
        current = slot.current
        if current is None:
            return _not_ready(slot)
        return {
            "model_name": current.model_name,
            "alias": alias,
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

    @app.post("/predict")
    async def predict(request: Request) -> Any:
        """Validate the rows against the served model's schema, then predict with that same model."""
        loaded = slot.current  # read once: the whole request is answered by this model
        if loaded is None:
            return _not_ready(slot)
        try:
            payload = await request.json()
        except (ValueError, RecursionError) as exc:  # RecursionError: absurdly deep nesting
            return JSONResponse(
                status_code=422,
                content={"detail": {"errors": [f"body is not valid JSON: {exc}"], "warnings": []}},
            )
        parsed = await run_in_threadpool(parse_rows, payload, loaded.feature_schema, max_rows=max_rows)
        if not parsed.ok:
            return JSONResponse(
                status_code=422, content={"detail": {"errors": parsed.errors, "warnings": parsed.warnings}}
            )
        try:
            result = await run_in_threadpool(_predict, loaded, parsed.frame)
        except (ValueError, TypeError) as exc:
            # scikit-learn signals input it cannot handle with ValueError / TypeError
            message = f"the model rejected the rows: {exc}"
            return JSONResponse(
                status_code=422, content={"detail": {"errors": [message], "warnings": parsed.warnings}}
            )
        except Exception as exc:
            log.exception("predict: %s version %s failed", loaded.model_name, loaded.version)
            message = (
                f"{loaded.model_name} version {loaded.version} failed to predict: {type(exc).__name__}: {exc}"
            )
            return JSONResponse(status_code=500, content={"detail": message})
        return {
            "model_name": loaded.model_name,
            "version": loaded.version,
            **result,
            "warnings": parsed.warnings,
        }

    return app
