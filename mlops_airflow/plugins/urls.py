"""Where the plugin's pages live: the one place operators' extra links and the web app agree on.

Pure string building, no Airflow or FastAPI import, so extra links can use it on a worker.
"""

from __future__ import annotations

import re
from urllib.parse import quote, urlencode

#: The path the plugin's FastAPI app is mounted on below the API server's root.
URL_PREFIX = "/mlops"
#: The Airflow UI route of the Models page (the external view shows it inside the UI as /plugin/<route>).
UI_ROUTE = "mlops-models"
#: The report files a report URL may name, relative to the model's folder in the registry:
#: validation reports of dataset snapshots and gate reports of verdicts. Nothing else is served.
#: Use it with ``fullmatch`` (``$`` would let a trailing newline through); a segment may not
#: start with ``.``, so ``..`` (and hidden names) never reach the store.
REPORT_KEY = re.compile(r"datasets/[A-Za-z0-9_-][A-Za-z0-9_.-]*/validation\.html|artifacts/[0-9a-f]{64}/verdicts/[0-9a-f]+\.html")


def _join(base: str, path: str) -> str:
    return f"{base.rstrip('/')}{URL_PREFIX}{path}"


#: Models per page of the Models index unless the URL says otherwise, and the most it may ask for.
PAGE_SIZE = 50
MAX_PAGE_SIZE = 500
#: The page sizes the index offers to choose from.
PAGE_SIZES = (25, 50, 100, 200)


def models_url(base: str = "", *, page: int = 1, size: int = PAGE_SIZE, q: str = "") -> str:
    """The Models index (page ``page`` of ``size`` models whose name matches ``q``).

    ``base`` is the API server's base URL (``[api] base_url``); '' gives a path. Defaults
    are left out of the query string, so the first page is plain ``/mlops/``.
    """
    query = {key: value for key, value in (("q", q), ("page", page), ("size", size))
             if value and value != {"page": 1, "size": PAGE_SIZE}.get(key)}
    return _join(base, "/") + (f"?{urlencode(query)}" if query else "")


def model_url(name: str, base: str = "") -> str:
    return _join(base, f"/models/{quote(name, safe='')}")


def version_url(name: str, version: int | str, base: str = "") -> str:
    return _join(base, f"/models/{quote(name, safe='')}/versions/{int(version)}")


def report_url(name: str, key: str, base: str = "") -> str | None:
    """The URL serving the report at registry ``key`` (``<name>/...``); None if it is not a report of ``name``."""
    relative = key.removeprefix(f"{name}/") if key.startswith(f"{name}/") else None
    if relative is None or not REPORT_KEY.fullmatch(relative):
        return None
    return _join(base, f"/models/{quote(name, safe='')}/reports/{relative}")


def dag_run_url(dag_id: str, run_id: str, base: str = "") -> str:
    """The Airflow UI page of a DAG run."""
    return f"{base.rstrip('/')}/dags/{quote(dag_id, safe='')}/runs/{quote(run_id, safe='')}"
