"""The plugin's web app, mounted on the Airflow API server at ``/mlops``: read-only pages over the registry.

    GET /mlops/?q=&page=&size=                    the Models index, a page at a time (50 by default)
    GET /mlops/models/{name}                      a model: aliases, metrics over versions, versions
    GET /mlops/models/{name}/versions/{n}         a version: verdict, metrics, lineage, reports
    GET /mlops/models/{name}/reports/{key}        a gate or validation report, from the registry
    GET /mlops/api/models?q=&offset=&limit=       the models as JSON (as ``mlops-airflow models list --json``);
                                                  the count matching ``q`` in the ``X-Total-Count`` header
    GET /mlops/api/models/{name}/versions/{n}     a version as JSON (as ``mlops-airflow models show --json``)

Every route requires the API server's token (:func:`~mlops_airflow.plugins.auth.require_viewer`).
The registry is the one the settings name (``MLOPS_AIRFLOW_REGISTRY_URI`` or
``[mlops_airflow] registry_uri``; any backend :func:`~mlops_airflow.registry.open_registry`
opens), S3 credentials from the standard AWS environment, as for the CLI. Routes are plain
``def``: storage reads block, so FastAPI runs them in its thread pool.
"""

from __future__ import annotations

import functools
from typing import Any

from fastapi import Depends, FastAPI, HTTPException, Query, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse

from mlops_airflow import settings
from mlops_airflow.exceptions import ConfigError, ModelNotFound, StorageError
from mlops_airflow.plugins import pages, urls
from mlops_airflow.plugins.auth import require_viewer

#: Pages and reports are static HTML with inline CSS and SVG: nothing else may load or run in them.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; img-src data:; "
                               "frame-ancestors 'self'; base-uri 'none'; form-action 'self'",  # the name filter (GET)
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}

app = FastAPI(
    title="mlops-airflow models",
    dependencies=[Depends(require_viewer)],
    docs_url=None, redoc_url=None, openapi_url=None,  # read-only pages, not a public API to browse
)


@functools.lru_cache(maxsize=4)
def _registry_at(uri: str) -> Any:
    from mlops_airflow.registry import open_registry

    return open_registry(uri)


def registry() -> Any:
    """The registry the settings name (one client per location, reused across requests)."""
    return _registry_at(settings.registry_uri())


def api_base(request: Request) -> str:
    """The API server's root path (``[api] base_url``'s path), which every page link starts from."""
    return str(request.scope.get("root_path", "")).removesuffix(urls.URL_PREFIX)


def html(text: str) -> HTMLResponse:
    return HTMLResponse(text, headers=SECURITY_HEADERS)


@app.exception_handler(ModelNotFound)
async def _not_found(request: Request, exc: ModelNotFound) -> JSONResponse:
    return JSONResponse({"detail": str(exc)}, status_code=404, headers=SECURITY_HEADERS)


@app.exception_handler(ConfigError)
async def _bad_name(request: Request, exc: ConfigError) -> JSONResponse:
    return JSONResponse({"detail": str(exc)}, status_code=404, headers=SECURITY_HEADERS)


@app.exception_handler(StorageError)
async def _storage(request: Request, exc: StorageError) -> JSONResponse:
    return JSONResponse({"detail": f"the registry could not be read: {exc}"}, status_code=502, headers=SECURITY_HEADERS)


def version_links(reg: Any, view: dict[str, Any], base: str) -> pages.Links:
    """The URLs of a version's page, reports and training run."""
    name = view["name"]
    train = view["lineage"].get("train") or {}

    def report(uri: str | None) -> str | None:
        key = reg.store.key_of(uri)
        return urls.report_url(name, key, base) if key else None

    return pages.Links(
        version=urls.version_url(name, view["version"], base),
        gate_report=report((view.get("verdict") or {}).get("report_uri")),
        validation_report=report(view["lineage"].get("validation_report_uri")),
        train_run=urls.dag_run_url(train["dag_id"], train["run_id"], base) if train.get("run_id") else None,
    )


def _views(reg: Any, name: str, aliases: dict[str, int]) -> list[dict[str, Any]]:
    from mlops_airflow.registry.index import parallel_map
    from mlops_airflow.registry.overview import version_view

    versions = reg.list_versions(name)
    if not versions:
        raise ModelNotFound(f"no model named {name!r} in {reg.store.uri}")
    # One read per version: in parallel, so that a model with hundreds of versions on S3 opens in a second.
    manifests = parallel_map(lambda version: reg.get_version(name, version), versions, reg.store.read_concurrency)
    return [version_view(reg, name, manifest, aliases) for manifest in manifests]


#: The name filter: a prefix, or a glob with ``*``, ``?`` or ``[`` (model names are at most 128 characters).
QUERY = Query("", max_length=200, description="name prefix, or glob")


@app.get("/", response_class=HTMLResponse)
def models_page(request: Request, q: str = QUERY, page: int = Query(1, ge=1, le=1_000_000),
                size: int = Query(urls.PAGE_SIZE, ge=1, le=urls.MAX_PAGE_SIZE)) -> HTMLResponse:
    """The Models index: only the page's models are read (see :mod:`mlops_airflow.registry.index`)."""
    from mlops_airflow.registry.overview import model_listing

    reg, query = registry(), q.strip()
    listing = model_listing(reg, match=query or None, offset=(page - 1) * size, limit=size)
    return html(pages.models_page(listing.rows, total=listing.total, number=page, size=size, query=query,
                                  registry_uri=reg.store.uri, base=api_base(request)))


@app.get("/models/{name}", response_class=HTMLResponse)
def model_page(name: str, request: Request) -> HTMLResponse:
    reg, base = registry(), api_base(request)
    alias_records = reg.alias_records(name)
    views = _views(reg, name, {alias: int(record["version"]) for alias, record in alias_records.items()})
    links = {view["version"]: version_links(reg, view, base) for view in views}
    return html(pages.model_page(name, views, links, alias_records, base=base))


@app.get("/models/{name}/versions/{version}", response_class=HTMLResponse)
def version_page(name: str, version: int, request: Request) -> HTMLResponse:
    from mlops_airflow.registry.overview import version_view

    reg, base = registry(), api_base(request)
    view = version_view(reg, name, reg.get_version(name, version))
    return html(pages.version_page(view, version_links(reg, view, base), base=base))


@app.get("/models/{name}/reports/{path:path}", response_class=HTMLResponse)
def report(name: str, path: str) -> HTMLResponse:
    """A stored report, only of the two kinds the pipeline writes, only below the model's folder."""
    from mlops_airflow.exceptions import ArtifactNotFound
    from mlops_airflow.registry.registry import check_name

    if not urls.REPORT_KEY.fullmatch(path):
        raise HTTPException(status_code=404, detail="not a report")
    try:
        data = registry().store.read_bytes(f"{check_name(name)}/{path}")
    except ArtifactNotFound as exc:
        raise ModelNotFound(f"no report {path} for model {name!r}") from exc
    return html(data.decode("utf-8", errors="replace"))


@app.get("/api/models")
def models_json(response: Response, q: str = QUERY, offset: int = Query(0, ge=0),
                limit: int | None = Query(None, ge=1)) -> list[dict[str, Any]]:
    """Every model (or ``limit`` of them from ``offset``) whose name matches ``q``, sorted by name."""
    from mlops_airflow.registry.overview import model_listing

    listing = model_listing(registry(), match=q.strip() or None, offset=offset, limit=limit)
    response.headers["X-Total-Count"] = str(listing.total)
    return listing.rows


@app.get("/api/models/{name}/versions/{version}")
def version_json(name: str, version: int) -> dict[str, Any]:
    from mlops_airflow.registry.overview import version_view

    reg = registry()
    return version_view(reg, name, reg.get_version(name, version))
