"""Running the model server as a process: what ``mlops-airflow serve [NAME ...]`` starts.

With one worker the app is built in this process. With ``workers > 1`` uvicorn starts
fresh worker processes that build it from :func:`app_from_env` (an import string is the
only way uvicorn can hand an app to a new process); the settings travel as JSON in an
environment variable, and Prometheus metrics go through a multiprocess directory so that
``/metrics`` counts every worker whichever one answers.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlops_airflow.exceptions import ConfigError
from mlops_airflow.registry.registry import check_name
from mlops_airflow.serving.config import CONFIG_ENV, ServerConfig
from mlops_airflow.storage import open_store

if TYPE_CHECKING:
    from fastapi import FastAPI

    from mlops_airflow.persistence import SkewPolicy

log = logging.getLogger(__name__)

#: The import string uvicorn's workers build the app from.
APP_FACTORY = "mlops_airflow.serving.server:app_from_env"


def build_app(config: ServerConfig, *, s3_client: Any | None = None) -> FastAPI:
    """The app ``config`` describes: registry, metrics, prediction logger and auth wired together."""
    from mlops_airflow.registry.backend import open_registry
    from mlops_airflow.serving.app import create_app
    from mlops_airflow.serving.metrics import ServerMetrics

    registry = open_registry(config.registry_uri, s3_client=s3_client)
    metrics = ServerMetrics(max_model_labels=config.metrics_max_models, per_version=config.model_name is not None)
    logger = None
    if config.log_sample_rate > 0:
        from mlops_airflow.serving.logs import PredictionLogger

        store = open_store(config.log_uri, s3_client=s3_client) if config.log_uri else registry.store
        logger = PredictionLogger(
            store,
            config.model_name,
            sample_rate=config.log_sample_rate,
            flush_rows=config.log_flush_rows,
            flush_seconds=config.log_flush_seconds,
            metrics=metrics,
        )
    return create_app(
        registry,
        config.model_name,
        config.alias,
        models=config.models,
        max_models=config.max_models,
        memory_budget_bytes=config.memory_budget_bytes,
        load_timeout=config.load_timeout,
        poll_interval=config.poll_interval,
        skew_policy=config.skew_policy,
        max_rows=config.max_rows,
        max_columns=config.max_columns,
        version=config.version,
        expect_sha256=config.expect_sha256,
        token=config.token(),
        max_body_bytes=config.max_body_bytes,
        public_metrics=config.public_metrics,
        metrics=metrics,
        prediction_logger=logger,
    )


def app_from_env() -> FastAPI:
    """The app for one uvicorn worker, from the settings the parent process put in the environment."""
    return build_app(ServerConfig.from_env())


def run(config: ServerConfig, *, s3_client: Any | None = None) -> None:
    """Serve as ``config`` says until interrupted (blocks). ``s3_client`` needs one worker."""
    import uvicorn

    if s3_client is not None and config.workers != 1:
        raise ConfigError("an injected s3_client cannot reach other worker processes: use workers=1")
    config.token()  # a missing or empty token file fails here, once, not in every worker
    limit_threads(config.threads)
    common: dict[str, Any] = {
        "host": config.host,
        "port": config.port,
        "log_level": config.log_level,
        "log_config": _log_config(config.log_level),
        "access_log": False,  # one line per prediction is a log flood; /metrics counts them instead
    }
    from mlops_airflow.serving.metrics import MULTIPROC_ENV

    given_dir = os.environ.get(MULTIPROC_ENV)
    if given_dir:
        wipe_metrics_dir(given_dir)  # before any metric of this run exists
    if config.workers == 1:
        uvicorn.run(build_app(config, s3_client=s3_client), workers=1, **common)
        return
    made_dir = None
    if not given_dir:
        made_dir = tempfile.mkdtemp(prefix="mlops-airflow-metrics-")
        os.environ[MULTIPROC_ENV] = made_dir
    os.environ[CONFIG_ENV] = config.to_env()
    reaper = DeadWorkerReaper(given_dir or str(made_dir))
    reaper.start()
    try:
        uvicorn.run(APP_FACTORY, factory=True, workers=config.workers, **common)
    finally:
        reaper.stop()
        if made_dir is not None:
            shutil.rmtree(made_dir, ignore_errors=True)


def wipe_metrics_dir(path: str) -> list[str]:
    """Delete the metric files (``*.db``) a previous run left in ``path``; returns their names.

    prometheus_client sums every file it finds there, so without this a restarted server
    would carry on the old run's counters, and report the model versions of workers long
    gone. Other files are left alone. The server owns the directory: two servers must not
    share one.
    """
    wiped = []
    for db in sorted(Path(path).glob("*.db")):
        db.unlink(missing_ok=True)
        wiped.append(db.name)
    return wiped


class DeadWorkerReaper:
    """Marks dead workers' metrics dead (multiprocess mode), from the parent process.

    uvicorn's supervisor replaces a worker that dies but has no hook to say so; this thread
    looks for live-gauge files of processes that no longer exist and calls
    ``mark_process_dead`` for them, so ``mlops_model_info`` stops showing 1 for what a crashed
    worker served. It notices within ``interval`` seconds.
    """

    def __init__(self, path: str, interval: float = 5.0) -> None:
        self.path, self.interval = path, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="mlops-metrics-reaper", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(self.interval + 1)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.reap()
            except Exception:  # never take the server down over metrics bookkeeping
                log.exception("metrics: could not mark dead workers")

    def reap(self) -> list[int]:
        """Mark every dead process found in the directory's live-gauge files; returns their pids."""
        from mlops_airflow.serving.metrics import worker_exited

        pids = {int(match.group(1)) for db in Path(self.path).glob("gauge_live*_*.db")
                if (match := re.fullmatch(r"gauge_live\w+?_(\d+)\.db", db.name))}
        dead = sorted(pid for pid in pids if not _alive(pid))
        for pid in dead:
            worker_exited(pid)
        return dead


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, someone else's
        return True
    return True


#: The variables native thread pools read when they start (scikit-learn's OpenMP, numpy's BLAS).
THREAD_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def limit_threads(threads: int) -> None:
    """Size the native thread pools of this process and of the workers it starts.

    Environment variables, read when the libraries load (they have not yet: the model is
    loaded later), and threadpoolctl for any pool already running (a server started in
    a process that has used numpy or scikit-learn before).
    """
    for variable in THREAD_ENV:
        os.environ[variable] = str(threads)
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=threads)


def serve(
    registry_uri: str,
    model_name: str | None = None,
    *,
    alias: str = "champion",
    host: str = "127.0.0.1",
    port: int = 8765,
    poll_interval: float = 1.0,
    s3_client: Any | None = None,
    skew_policy: SkewPolicy = "warn",
    log_level: str = "info",
    **settings: Any,
) -> None:
    """Serve ``model_name@alias`` (or, without it, every model ``models=`` patterns match) until interrupted.

    Blocks. Starts even if the model or alias does not exist yet: ``/ready`` answers 503
    until the alias appears, then the server loads it and follows it as it moves. Raises
    ``ConfigError`` for an invalid model or alias name or setting. ``settings`` are the
    other fields of :class:`~mlops_airflow.serving.config.ServerConfig` (``models``,
    ``version``, ``workers``, ``max_models``, ...); ``s3_client`` only works with one worker.
    """
    if model_name is not None:
        check_name(model_name)
    check_name(alias, "alias")
    config = ServerConfig(
        registry_uri=registry_uri,
        model_name=model_name,
        alias=alias,
        host=host,
        port=port,
        poll_interval=poll_interval,
        skew_policy=skew_policy,
        log_level=log_level,
        **settings,
    )
    run(config, s3_client=s3_client)


def _log_config(log_level: str) -> dict[str, Any]:
    """Uvicorn's logging, extended to our loggers: the loader's "now serving version N" lines matter."""
    import copy

    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    config["loggers"]["mlops_airflow"] = {
        "handlers": ["default"],
        "level": log_level.upper(),
        "propagate": False,
    }
    return config
