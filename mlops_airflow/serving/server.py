"""Running the model server as a process: what ``mlops-airflow serve NAME`` starts."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mlops_airflow.registry.registry import ModelRegistry, check_name
from mlops_airflow.storage import open_store

if TYPE_CHECKING:
    from mlops_airflow.persistence import SkewPolicy


def serve(
    registry_uri: str,
    model_name: str,
    *,
    alias: str = "champion",
    host: str = "127.0.0.1",
    port: int = 8765,
    poll_interval: float = 1.0,
    s3_client: Any | None = None,
    skew_policy: SkewPolicy = "warn",
    log_level: str = "info",
) -> None:
    """Serve ``model_name@alias`` from the registry at ``registry_uri`` until interrupted.

    Blocks. Starts even if the model or alias does not exist yet: ``/ready`` answers 503
    until the alias appears, then the server loads it and follows it as it moves. Raises
    ``ConfigError`` for an invalid model or alias name.
    """
    import uvicorn

    from mlops_airflow.serving.app import create_app

    check_name(model_name)
    check_name(alias, "alias")
    registry = ModelRegistry(open_store(registry_uri, s3_client=s3_client))
    app = create_app(registry, model_name, alias, poll_interval=poll_interval, skew_policy=skew_policy)
    # One worker: the loaded model lives in this process, and a second worker would poll and
    # load it again for nothing. Scale out with more processes behind a load balancer.
    uvicorn.run(app, host=host, port=port, workers=1, log_level=log_level, log_config=_log_config(log_level))


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
