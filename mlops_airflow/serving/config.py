"""The model server's settings: one record that the CLI fills and every worker process reads back.

Every ``mlops-airflow serve`` flag has an environment variable (listed in :data:`ENV`),
so a container can be configured without a command line. With ``--workers N`` uvicorn
starts N fresh processes that import the app by name; they get the settings from
:data:`CONFIG_ENV` (JSON written by the parent). The bearer token is never put there:
each worker reads it again from ``MLOPS_AIRFLOW_SERVER_TOKEN`` or the token file.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Literal

from mlops_airflow.exceptions import ConfigError

#: Where the parent process hands the settings to its uvicorn workers (internal).
CONFIG_ENV = "MLOPS_AIRFLOW_SERVER_CONFIG"
#: The bearer token clients must send (optional).
TOKEN_ENV = "MLOPS_AIRFLOW_SERVER_TOKEN"

#: Default request body limit: 10 MiB holds the default 10,000-row limit of ordinary rows.
DEFAULT_MAX_BODY_BYTES = 10 * 1024 * 1024

#: The environment variable behind each setting (and so behind each ``serve`` flag).
ENV: dict[str, str] = {
    "model_name": "MLOPS_AIRFLOW_MODEL_NAME",
    "models": "MLOPS_AIRFLOW_SERVER_MODELS",
    "max_models": "MLOPS_AIRFLOW_SERVER_MAX_MODELS",
    "memory_budget_mb": "MLOPS_AIRFLOW_SERVER_MEMORY_BUDGET_MB",
    "load_timeout": "MLOPS_AIRFLOW_SERVER_LOAD_TIMEOUT",
    "metrics_max_models": "MLOPS_AIRFLOW_SERVER_METRICS_MAX_MODELS",
    "alias": "MLOPS_AIRFLOW_SERVER_ALIAS",
    "version": "MLOPS_AIRFLOW_MODEL_VERSION",
    "expect_sha256": "MLOPS_AIRFLOW_MODEL_SHA256",
    "host": "MLOPS_AIRFLOW_SERVER_HOST",
    "port": "MLOPS_AIRFLOW_SERVER_PORT",
    "workers": "MLOPS_AIRFLOW_SERVER_WORKERS",
    "threads": "MLOPS_AIRFLOW_SERVER_THREADS",
    "poll_interval": "MLOPS_AIRFLOW_SERVER_POLL_INTERVAL",
    "skew_policy": "MLOPS_AIRFLOW_SERVER_SKEW_POLICY",
    "max_rows": "MLOPS_AIRFLOW_SERVER_MAX_ROWS",
    "max_columns": "MLOPS_AIRFLOW_SERVER_MAX_COLUMNS",
    "max_body_bytes": "MLOPS_AIRFLOW_SERVER_MAX_BODY_BYTES",
    "token_file": "MLOPS_AIRFLOW_SERVER_TOKEN_FILE",
    "public_metrics": "MLOPS_AIRFLOW_SERVER_PUBLIC_METRICS",
    "log_sample_rate": "MLOPS_AIRFLOW_SERVER_LOG_SAMPLE_RATE",
    "log_uri": "MLOPS_AIRFLOW_SERVER_LOG_URI",
    "log_flush_rows": "MLOPS_AIRFLOW_SERVER_LOG_FLUSH_ROWS",
    "log_flush_seconds": "MLOPS_AIRFLOW_SERVER_LOG_FLUSH_SECONDS",
    "log_level": "MLOPS_AIRFLOW_SERVER_LOG_LEVEL",
}

_SHA256 = re.compile(r"[0-9a-f]{64}")
_PATTERN_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-*?[]!")


@dataclass(frozen=True)
class ServerConfig:
    """What one model server serves and how.

    ``model_name`` set: that one model (``version`` set means pinned: the alias is never
    followed). Else every model whose name matches one of ``models`` (glob patterns; none:
    every model of the registry), loaded on first request, within ``max_models`` and
    ``memory_budget_mb`` (default: half the memory the process may use) per worker.
    """

    registry_uri: str
    model_name: str | None = None
    models: tuple[str, ...] = ()
    alias: str = "champion"
    version: int | None = None
    expect_sha256: str | None = None
    host: str = "127.0.0.1"
    port: int = 8765
    workers: int = 1
    #: OpenMP / BLAS threads per worker. One is fastest for the small requests a server gets:
    #: a parallel region per row costs more than the row, and on a busy host it waits for cores.
    threads: int = 1
    poll_interval: float = 1.0
    skew_policy: Literal["refuse", "warn"] = "warn"
    max_rows: int = 10_000
    #: Column names a request may carry, unless the model has more features (a body with more: 422).
    #: ``requests.DEFAULT_MAX_COLUMNS``, written out: importing the request checks here would
    #: cost every CLI command ~20 ms.
    max_columns: int = 2048
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    token_file: str | None = None
    public_metrics: bool = False
    #: Fraction of requests whose rows and predictions are logged (0 = off, the default).
    log_sample_rate: float = 0.0
    #: Root the prediction logs go under (default: the registry root).
    log_uri: str | None = None
    log_flush_rows: int = 1000
    log_flush_seconds: float = 10.0
    log_level: str = "info"
    max_models: int = 1000
    memory_budget_mb: float | None = None
    #: Seconds a request waits for its model to load before it is answered 503.
    load_timeout: float = 30.0
    #: Per-model metric series for at most this many models (the rest: one ``__other__`` series).
    metrics_max_models: int = 100

    def __post_init__(self) -> None:
        from mlops_airflow.registry.registry import check_name

        if isinstance(self.models, str):  # from the environment: comma separated
            object.__setattr__(self, "models", tuple(p.strip() for p in self.models.split(",") if p.strip()))
        else:
            object.__setattr__(self, "models", tuple(self.models))
        if self.model_name is not None:
            check_name(self.model_name)
        check_name(self.alias, "alias")
        problems = []
        if self.model_name is not None and self.models:
            problems.append("give one model name or model patterns, not both")
        for pattern in self.models:
            if len(pattern) > 200 or not set(pattern) <= _PATTERN_CHARS:
                problems.append(f"model pattern {pattern[:40]!r} may hold only name characters and * ? [ ]")
        if self.max_models < 1:
            problems.append(f"max_models must be at least 1, got {self.max_models}")
        if self.memory_budget_mb is not None and self.memory_budget_mb <= 0:
            problems.append(f"memory_budget_mb must be positive, got {self.memory_budget_mb}")
        if self.load_timeout <= 0:
            problems.append(f"load_timeout must be positive, got {self.load_timeout}")
        if self.metrics_max_models < 0:
            problems.append(f"metrics_max_models must be at least 0, got {self.metrics_max_models}")
        if self.version is not None and self.version < 1:
            problems.append(f"version must be a positive integer, got {self.version}")
        if self.version is not None and self.model_name is None:
            problems.append("a pinned version (--version N) needs exactly one model name")
        if self.expect_sha256 is not None:
            if self.version is None:
                problems.append("expect_sha256 needs a pinned version (--version N)")
            if not _SHA256.fullmatch(self.expect_sha256):
                problems.append(f"expect_sha256 must be 64 lowercase hex digits, got {self.expect_sha256!r}")
        if not 1 <= self.port <= 65535:
            problems.append(f"port must be in [1, 65535], got {self.port}")
        if self.workers < 1:
            problems.append(f"workers must be at least 1, got {self.workers}")
        if self.threads < 1:
            problems.append(f"threads must be at least 1, got {self.threads}")
        if self.poll_interval <= 0:
            problems.append(f"poll_interval must be positive, got {self.poll_interval}")
        if self.skew_policy not in ("refuse", "warn"):
            problems.append(f"skew_policy must be 'refuse' or 'warn', got {self.skew_policy!r}")
        if self.max_rows < 1:
            problems.append(f"max_rows must be at least 1, got {self.max_rows}")
        if self.max_columns < 1:
            problems.append(f"max_columns must be at least 1, got {self.max_columns}")
        if self.max_body_bytes < 1024:
            problems.append(f"max_body_bytes must be at least 1024, got {self.max_body_bytes}")
        if not 0.0 <= self.log_sample_rate <= 1.0:
            problems.append(f"log_sample_rate must be in [0, 1], got {self.log_sample_rate}")
        if self.log_flush_rows < 1 or self.log_flush_seconds <= 0:
            problems.append("log_flush_rows must be at least 1 and log_flush_seconds positive")
        if problems:
            raise ConfigError("invalid server settings: " + "; ".join(problems))

    @property
    def pinned(self) -> bool:
        return self.version is not None

    @property
    def memory_budget_bytes(self) -> int | None:
        return None if self.memory_budget_mb is None else int(self.memory_budget_mb * 2**20)

    def token(self) -> str | None:
        """The bearer token clients must send, or None (no auth): the token file wins over the variable."""
        if self.token_file:
            try:
                token = Path(self.token_file).expanduser().read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise ConfigError(f"cannot read the token file {self.token_file}: {exc.strerror or exc}") from exc
            if not token:
                raise ConfigError(f"the token file {self.token_file} is empty")
            return token
        return os.environ.get(TOKEN_ENV) or None

    def to_env(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> ServerConfig:
        """The settings the parent process wrote to :data:`CONFIG_ENV`."""
        raw = (os.environ if environ is None else environ).get(CONFIG_ENV)
        if not raw:
            raise ConfigError(f"{CONFIG_ENV} is not set: start the server with `mlops-airflow serve`")
        known = {f.name for f in fields(cls)}
        values = {key: value for key, value in json.loads(raw).items() if key in known}
        values["models"] = tuple(values.get("models") or ())
        return cls(**values)


def settings_from_env(environ: dict[str, str] | None = None) -> dict[str, Any]:
    """The settings given by environment variables (:data:`ENV`), converted to their field types."""
    env: Any = os.environ if environ is None else environ
    types = {f.name: f.type for f in fields(ServerConfig)}
    found: dict[str, Any] = {}
    for name, variable in ENV.items():
        raw = env.get(variable)
        if raw is None or raw.strip() == "":
            continue
        kind = str(types[name])
        try:
            if kind.startswith("bool"):
                found[name] = raw.strip().lower() in ("1", "true", "yes", "on")
            elif kind.startswith("int"):
                found[name] = int(raw)
            elif kind.startswith("float"):
                found[name] = float(raw)
            else:
                found[name] = raw.strip()
        except ValueError as exc:
            raise ConfigError(f"{variable}={raw!r} is not a valid {name}: {exc}") from exc
    return found
