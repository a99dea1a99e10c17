"""Where things live: one setting for the registry, with a documented precedence.

``registry_uri()`` resolves, first match wins:

1. the ``MLOPS_AIRFLOW_REGISTRY_URI`` environment variable;
2. Airflow's config ``[mlops_airflow] registry_uri`` (``AIRFLOW__MLOPS_AIRFLOW__REGISTRY_URI``
   or ``airflow.cfg``), read without importing Airflow so the CLI and server stay light;
3. ``$AIRFLOW_HOME/mlops_registry`` (``~/airflow/mlops_registry`` when AIRFLOW_HOME is unset).

The model server's URL used by the local deploy target resolves the same way from
``MLOPS_AIRFLOW_SERVER_URL`` / ``[mlops_airflow] server_url``, default ``http://127.0.0.1:8765``.
Airflow's own ``[core] dags_folder`` is read the same way (``AIRFLOW__CORE__DAGS_FOLDER``, then
``airflow.cfg``), default ``$AIRFLOW_HOME/dags``.
"""

from __future__ import annotations

import configparser
import os
from pathlib import Path

SECTION = "mlops_airflow"
DEFAULT_SERVER_URL = "http://127.0.0.1:8765"


def airflow_home() -> Path:
    return Path(os.environ.get("AIRFLOW_HOME") or Path.home() / "airflow")


def _airflow_config(section: str, key: str) -> str | None:
    """``AIRFLOW__<SECTION>__<KEY>``, else ``airflow.cfg``: Airflow's own precedence, without importing it."""
    env = os.environ.get(f"AIRFLOW__{section.upper()}__{key.upper()}")
    if env:
        return env
    cfg_path = Path(os.environ.get("AIRFLOW_CONFIG") or airflow_home() / "airflow.cfg")
    if cfg_path.is_file():
        parser = configparser.ConfigParser(interpolation=None)
        parser.read(cfg_path)
        if parser.has_option(section, key):
            return parser.get(section, key) or None
    return None


def _setting(key: str) -> str | None:
    return os.environ.get(f"MLOPS_AIRFLOW_{key.upper()}") or _airflow_config(SECTION, key)


def registry_uri() -> str:
    """The registry root: a local path or ``s3://bucket/prefix``."""
    return _setting("registry_uri") or str(airflow_home() / "mlops_registry")


def mlflow_tracking_uri() -> str | None:
    """The MLflow tracking server stages log runs to (``MLOPS_AIRFLOW_MLFLOW_TRACKING_URI``); None: no tracking.

    An ``mlflow+...`` registry URI turns tracking on by itself, to the same server.
    """
    return _setting("mlflow_tracking_uri")


def server_url() -> str:
    """The base URL of the local model server the local deploy target talks to."""
    return (_setting("server_url") or DEFAULT_SERVER_URL).rstrip("/")


def server_token() -> str | None:
    """The model server's bearer token for the deploy targets' own calls (``MLOPS_AIRFLOW_SERVER_TOKEN``), or None."""
    return _setting("server_token")


def _list_setting(key: str) -> list[str]:
    raw = _setting(key) or ""
    return [item.strip() for item in raw.split(",") if item.strip()]


def estimator_allowlist_extra() -> list[str]:
    """Dotted paths allowed beyond scikit-learn's own estimators (comma-separated setting)."""
    return _list_setting("estimator_allowlist")


def pipeline_factory_allowlist() -> list[str]:
    """Dotted paths of pipeline factories a DAG may name (comma-separated setting; none by default)."""
    return _list_setting("pipeline_factory_allowlist")


def trusted_types_extra() -> list[str]:
    """Dotted paths of types (your transformers, functions) skops may load beyond scikit-learn's own.

    Explicit, like the estimator allowlist: a model file's own list of types is never trusted.
    """
    return _list_setting("trusted_types")


def custom_check_allowlist() -> list[str]:
    """Dotted paths of custom gate check functions allowed beyond the bundled ones (comma-separated setting)."""
    return _list_setting("custom_check_allowlist")


def dags_folder() -> Path:
    """Airflow's ``[core] dags_folder``, default ``$AIRFLOW_HOME/dags``."""
    raw = _airflow_config("core", "dags_folder")
    if not raw:
        return airflow_home() / "dags"
    # airflow.cfg may keep Airflow's own placeholder, which only Airflow's config parser expands
    return Path(raw.replace("{AIRFLOW_HOME}", str(airflow_home()))).expanduser()


def spec_roots() -> list[str]:
    """Folders validation and gate spec files may be read from beyond the DAGs folder and its include/.

    Comma-separated ``spec_roots`` setting; none by default (see :mod:`mlops_airflow.specfiles`).
    """
    return _list_setting("spec_roots")


def data_roots() -> list[str]:
    """Folders local data files may be read from (comma-separated ``data_roots`` setting); none: any."""
    return _list_setting("data_roots")


def bundled_files() -> tuple[Path, Path]:
    """The example DAGs and include/ folders: from the installed package, or this checkout."""
    from importlib import resources

    bundled = resources.files("mlops_airflow") / "_bundled"
    dags, include = Path(str(bundled / "dags")), Path(str(bundled / "include"))
    if dags.is_dir():
        return dags, include
    root = Path(__file__).resolve().parent.parent  # an editable install of the repository
    return root / "dags", root / "include"
