"""The model server (FastAPI) and the safe loader it shares with the deploy stage.

Exports are lazy so that ``import mlops_airflow.serving`` stays cheap (no FastAPI, pandas
or scikit-learn until a name is used).
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "LoadedModel",
    "ParsedRows",
    "ServerConfig",
    "create_app",
    "parse_rows",
    "read_prediction_logs",
    "serve",
    "stage_model",
]

_EXPORTS = {
    "LoadedModel": "mlops_airflow.serving.loading",
    "stage_model": "mlops_airflow.serving.loading",
    "ParsedRows": "mlops_airflow.serving.requests",
    "parse_rows": "mlops_airflow.serving.requests",
    "create_app": "mlops_airflow.serving.app",
    "serve": "mlops_airflow.serving.server",
    "ServerConfig": "mlops_airflow.serving.config",
    "read_prediction_logs": "mlops_airflow.serving.logs",
}


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
