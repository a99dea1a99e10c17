"""Listing many models: `models list`, the UI's Models index and a model's page, ours against the naive reads.

A registry of ``--models`` models (default 3,000, named ``srv-0001`` ...) is built through the
registry API on a local folder: per model ``--versions`` registered versions of a tiny fake
model, the ``champion`` alias on the newest, and beside each version the files a real run
leaves (verdict record and report, dataset snapshot and validation report, run record), so
that listing the store costs what it would. The same files are then uploaded, byte for byte,
to the moto S3 server the tests use (``tests/s3_server.py``, a separate process over HTTP).

Each store is measured with:

- naive: the code before the model index (frozen below: ``list_models`` globbing every key
  of the registry, then for every model its version list, its newest manifest, the alias
  folder and every alias record), rendering all rows as one page; and the model page as it
  was (every manifest and alias record read one after another). On S3 the naive Models
  page is measured only with ``--naive-page-on-s3``: it makes exactly the reads of the
  naive ``models list`` (13 minutes on moto at 3,000 models) plus the HTML, timed locally;
- ours: what the package does now, through its entry points: ``mlops-airflow models list``
  (``cli.main`` in this process, output discarded), and the plugin's routes through FastAPI's
  test client (authentication overridden: it is the same for both and not what is measured;
  the naive pages are served by a FastAPI app of their own through the same test client):
  the Models index (first page, last page, a name filter) and one model's page;
- legacy: ours again after deleting the index (a registry written before it existed, until
  ``mlops-airflow models reindex`` runs: every model folder is checked for versions), and
  the time that reindex takes. ``models list`` of all models without the index reads what
  the naive one reads, so it is measured on the local store only.

One more model, ``deep``, has ``--deep`` versions (default 100), for the model page.

Figures are medians of ``--repeat`` runs (the naive side ``--naive-repeat``), in seconds, with
the number of S3 requests each made (counted on boto3's event hooks): on real S3 a request
costs 10-50 ms, so the request count is the figure that carries over from moto.

``--latency-ms 20`` adds a wait before every S3 request, as a real S3 round trip would: moto
answers from this host in a few milliseconds of its own CPU, so it cannot show what reading
in parallel saves against a real endpoint, where requests spend their time waiting.

    .venv/bin/python bench/registry_listing.py [--models 3000] [--versions 1] [--stores local,s3] [--repeat 3]
                                               [--latency-ms 20] [--only "page,list --limit"]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from testsupport import free_port, wait_for_port  # noqa: E402

REQUESTS = {"count": 0}
_COUNT_LOCK = threading.Lock()


def _count_request(**_: Any) -> None:
    with _COUNT_LOCK:
        REQUESTS["count"] += 1


def _network_latency(seconds: float) -> Callable[..., None]:
    """A botocore hook that waits before each request is sent: the round trip moto, on this host, lacks."""

    def wait(**_: Any) -> None:
        time.sleep(seconds)

    return wait


# -- the registry ------------------------------------------------------------------------
def candidate_fields(index: int) -> dict[str, Any]:
    """A schema-valid candidate record, as small as the schema allows."""
    return {
        "task_type": "binary", "target": "y", "estimator": "sklearn.linear_model.LogisticRegression",
        "estimator_params": {}, "classes": [0, 1], "drop_columns": [],
        "feature_schema": {"format_version": 1, "target": {"name": "y", "dtype": "int64"},
                           "columns": [{"name": "x", "kind": "numeric", "dtype": "float64", "nullable": False}]},
        "data": {"uri": "s3://data/servers.parquet", "fingerprint": "sha256:" + "0" * 64, "rows": 1000},
        "split": {"method": "hash", "fraction": 0.2, "train_rows": 800, "holdout_rows": 200},
        "metrics": {"roc_auc": 0.8 + (index % 100) / 1000}, "packages": {"python": platform.python_version(), "scikit-learn": "1.9.1", "skops": "0.13"},
        "verdict": {"verdict_id": "v", "verdict_uri": "v", "outcome": "no_champion", "blessed": True,
                    "gate_source": "default"},
        "lineage": {},
    }


def populate(root: Path, models: int, versions: int, deep: int) -> float:
    """Build the registry through the registry API (two threads); returns seconds taken.

    Besides ``models`` models of ``versions`` versions, one model ``deep`` has ``deep`` versions.
    """
    from mlops_airflow.registry import ModelRegistry
    from mlops_airflow.storage import open_store

    registry = ModelRegistry(open_store(str(root)))

    def one(index: int) -> None:
        name = f"srv-{index:04d}" if index else "deep"
        for version in range(1, (versions if index else deep) + 1):
            record = registry.put_artifact(name, f"{name}/{version}".encode(), candidate_fields(index))
            sha = record["sha256"]
            # What a real run leaves beside the version (the naive listing walks all of it).
            registry.store.write_bytes(f"{name}/artifacts/{sha}/verdicts/v{version}.json", b"{}")
            registry.store.write_bytes(f"{name}/artifacts/{sha}/verdicts/v{version}.html", b"<html></html>")
            registry.store.write_bytes(f"{name}/datasets/d{version}/data.parquet", b"PAR1")
            registry.store.write_bytes(f"{name}/datasets/d{version}/validation.html", b"<html></html>")
            registry.store.write_bytes(f"{name}/runs/r{version}.json", b"{}")
            manifest = registry.register(name, record, idempotency_key=f"ct/r{version}/register/-1")
            registry.set_alias(name, "champion", manifest["version"], expected=version - 1 or None,
                               by="bench", reason="populate")

    started = time.perf_counter()
    with ThreadPoolExecutor(2) as pool:
        list(pool.map(one, range(0 if deep else 1, models + 1)))
    return time.perf_counter() - started


def upload(root: Path, client: Any, bucket: str) -> tuple[int, float]:
    """Copy every file of the local registry to ``s3://bucket/registry/`` (8 threads)."""
    files = [p for p in root.rglob("*") if p.is_file() and not p.name.startswith(".") and p.suffix != ".lock"]

    def put(path: Path) -> None:
        client.put_object(Bucket=bucket, Key=f"registry/{path.relative_to(root).as_posix()}", Body=path.read_bytes())

    started = time.perf_counter()
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(put, files))
    return len(files), time.perf_counter() - started


# -- the naive reads: the code before the index, frozen --------------------------------------
def naive_model_rows(registry: Any) -> list[dict[str, Any]]:
    """``overview.model_rows`` and ``ModelRegistry.list_models``/``aliases`` as they were."""
    names = sorted({key.split("/", 1)[0] for key in registry.store.glob("*/versions/*.json")})
    rows = []
    for name in names:
        versions = registry.list_versions(name)
        latest = registry.get_version(name, versions[-1])
        aliases = {}
        for key in registry.store.list(f"{name}/aliases"):
            alias = key.rsplit("/", 1)[1].removesuffix(".json")
            record = registry.get_alias(name, alias)
            if record:
                aliases[alias] = int(record["version"])
        rows.append({"name": name, "versions": len(versions), "latest": versions[-1], "aliases": aliases,
                     "task_type": latest.get("task_type"), "registered_at": latest.get("registered_at")})
    return rows


def naive_model_page(registry: Any, name: str) -> str:
    """The plugin's model page as it was: every manifest and every alias record read one after another."""
    from mlops_airflow.plugins import app as plugin
    from mlops_airflow.plugins import pages
    from mlops_airflow.registry.overview import version_view

    def aliases() -> dict[str, int]:
        found = {}
        for key in registry.store.list(f"{name}/aliases"):
            alias = key.rsplit("/", 1)[1].removesuffix(".json")
            record = registry.get_alias(name, alias)
            if record:
                found[alias] = int(record["version"])
        return found

    current = aliases()
    views = [version_view(registry, name, registry.get_version(name, v), current) for v in registry.list_versions(name)]
    records = {alias: registry.get_alias(name, alias) for alias in aliases()}
    links = {view["version"]: plugin.version_links(registry, view, "") for view in views}
    return pages.model_page(name, views, links, records, base="")


def naive_list(registry: Any) -> str:
    out = [f"{'NAME':<28} {'VERSIONS':>8} {'LATEST':>6}  {'TASK':<11} ALIASES"]
    for row in naive_model_rows(registry):
        aliases = ", ".join(f"{a}=v{v}" for a, v in sorted(row["aliases"].items())) or "-"
        out.append(f"{row['name']:<28} {row['versions']:>8} {row['latest']:>6}  {row['task_type'] or '-':<11} {aliases}")
    return "\n".join(out)


def naive_index_page(registry: Any) -> str:
    from mlops_airflow.plugins import urls
    from mlops_airflow.reporting import escape, page, table

    rows = naive_model_rows(registry)
    body = table(["Model", "Versions", "Latest", "Aliases", "Task", "Registered"],
                 [[row["name"], row["versions"], f"v{row['latest']}",
                   " ".join(f"{a}=v{v}" for a, v in sorted(row["aliases"].items())), row.get("task_type"),
                   row.get("registered_at")] for row in rows])
    return page("Models", f'<a href="{escape(urls.models_url())}">Models</a>{body}')


def naive_app(registry: Any) -> Any:
    """The naive pages as a FastAPI app, so that both sides pay the same request handling."""
    from fastapi import FastAPI
    from fastapi.responses import HTMLResponse

    app = FastAPI()

    @app.get("/")
    def index() -> HTMLResponse:
        return HTMLResponse(naive_index_page(registry))

    @app.get("/models/{name}")
    def model(name: str) -> HTMLResponse:
        return HTMLResponse(naive_model_page(registry, name))

    return app


# -- measuring -------------------------------------------------------------------------------
def measure(fn: Callable[[], Any], repeat: int) -> tuple[float, int]:
    """Median seconds of ``repeat`` calls, and the S3 requests one call makes."""
    times, requests = [], 0
    for _ in range(repeat):
        before = REQUESTS["count"]
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
        requests = REQUESTS["count"] - before
    return statistics.median(times), requests


def cli_list(uri: str, *extra: str) -> Callable[[], None]:
    """``mlops-airflow models list EXTRA...`` (or ``models reindex`` when EXTRA is ``reindex``)."""
    from mlops_airflow import cli

    argv = ["--registry", uri, "models", *(extra if extra == ("reindex",) else ("list", *extra))]

    def run() -> None:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            try:
                status = cli.main(argv)
            except SystemExit as exc:  # argparse: an option this build does not have
                raise AssertionError(f"exit {exc.code}") from None
            assert status == 0, f"exit {status}"

    return run


def client_get(client: Any, path: str) -> Callable[[], None]:
    def run() -> None:
        reply = client.get(path)
        assert reply.status_code == 200, (path, reply.status_code, reply.text[:300])

    return run


def bench_store(label: str, uri: str, args: argparse.Namespace, reindex: Callable[[], None] | None) -> list[str]:
    from fastapi.testclient import TestClient

    from mlops_airflow.plugins import app as plugin
    from mlops_airflow.plugins.auth import require_viewer
    from mlops_airflow.registry import open_registry

    os.environ["MLOPS_AIRFLOW_REGISTRY_URI"] = uri
    plugin._registry_at.cache_clear()
    plugin.app.dependency_overrides[require_viewer] = lambda: None
    client = TestClient(plugin.app)
    naive_registry = open_registry(uri)
    naive = TestClient(naive_app(naive_registry))  # the naive pages go through the same HTTP machinery
    last = max(1, -(-args.models // 50))
    some = f"srv-{args.models // 2:04d}"
    naive_page = label != "s3" or args.naive_page_on_s3
    cases: list[tuple[str, str, Callable[[], Any], int]] = [
        *([("`models list` (all models)", "naive", lambda: naive_list(naive_registry), args.naive_repeat)]
          if args.naive_list else []),
        ("`models list` (all models)", "ours", cli_list(uri), args.repeat),
        ("`models list --limit 50`", "ours", cli_list(uri, "--limit", "50"), args.repeat),
        *([("Models index page (all models)", "naive", client_get(naive, "/"), args.naive_repeat)]
          if naive_page else []),
        ("Models index page 1 (50 a page)", "ours", client_get(client, "/"), args.repeat),
        (f"Models index page {last} (last)", "ours", client_get(client, f"/?page={last}"), args.repeat),
        ("Models index, filter `srv-12*`", "ours", client_get(client, "/?q=srv-12*"), args.repeat),
        (f"model page ({some})", "naive", client_get(naive, f"/models/{some}"), args.naive_repeat),
        (f"model page ({some})", "ours", client_get(client, f"/models/{some}"), args.repeat),
    ]
    store = naive_registry.store
    cases += [  # what the index's listings cost by themselves (moto's grow with the bucket's size)
        ("listing: the model folders (delimited)", "ours", lambda: store.list_dir(""), args.repeat),
        ("listing: the summaries", "ours", lambda: store.list_dir("_index/models"), args.repeat),
        ("listing: one model's versions/", "ours", lambda: store.list(f"{some}/versions"), args.repeat),
    ]
    if args.deep:
        cases += [
            (f"model page (`deep`, {args.deep} versions)", "naive", client_get(naive, "/models/deep"), args.repeat),
            (f"model page (`deep`, {args.deep} versions)", "ours", client_get(client, "/models/deep"), args.repeat),
        ]
    if args.only:
        cases = [case for case in cases if any(part in case[0] for part in args.only.split(","))]
    lines = []
    for what, side, fn, repeat in cases:
        try:
            seconds, requests = measure(fn, repeat)
        except AssertionError as exc:  # an option this build does not have (the code before the change)
            lines.append(f"| {label} | {what} | {side} | n/a ({str(exc)[:60]}) | |")
            continue
        shown = str(requests) if label == "s3" else "-"
        lines.append(f"| {label} | {what} | {side} | {seconds:.3f} | {shown} |")
        print(lines[-1], flush=True)
    if reindex is not None and args.legacy:
        lines.extend(legacy(label, uri, args, client, reindex))
    return lines


def legacy(label: str, uri: str, args: argparse.Namespace, client: Any, reindex: Callable[[], None]) -> list[str]:
    """Ours on the same registry without its index (written before the index existed), then the reindex."""
    from mlops_airflow.registry import open_registry

    store = open_registry(uri).store
    index_keys = store.list("_index")
    if not index_keys:
        return []
    for key in index_keys:
        store.delete(key)
    lines = []
    cases = [("Models index page 1, no index", client_get(client, "/"))]
    if label != "s3":
        cases.insert(0, ("`models list` (all), no index", cli_list(uri)))
    for what, fn in cases:
        seconds, requests = measure(fn, 1)
        lines.append(f"| {label} | {what} | ours | {seconds:.3f} | {requests if label == 's3' else '-'} |")
        print(lines[-1], flush=True)
    seconds, requests = measure(reindex, 1)
    lines.append(f"| {label} | `models reindex` (once) | ours | {seconds:.3f} | {requests if label == 's3' else '-'} |")
    print(lines[-1], flush=True)
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", type=int, default=3000)
    parser.add_argument("--versions", type=int, default=1)
    parser.add_argument("--deep", type=int, default=100, help="versions of the one model `deep` (0: none)")
    parser.add_argument("--stores", default="local,s3")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--naive-repeat", type=int, default=1)
    parser.add_argument("--no-legacy", dest="legacy", action="store_false", help="skip the no-index measurements")
    parser.add_argument("--naive-page-on-s3", action="store_true", help="also time the naive Models page on S3")
    parser.add_argument("--latency-ms", type=float, default=0.0,
                        help="wait this long before every S3 request (what a real S3 round trip adds; moto is local)")
    parser.add_argument("--no-naive-list", dest="naive_list", action="store_false",
                        help="skip the naive `models list` (12,000 sequential requests at 3,000 models)")
    parser.add_argument("--only", help="comma-separated parts of operation names to time (default: all)")
    args = parser.parse_args()
    stores = args.stores.split(",")

    os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    import boto3

    boto3.setup_default_session()
    assert boto3.DEFAULT_SESSION is not None
    boto3.DEFAULT_SESSION.events.register("before-call.s3", _count_request)

    def reindexer(uri: str) -> Callable[[], None] | None:
        from mlops_airflow import cli

        if not hasattr(cli, "cmd_models_reindex"):  # the code before the index
            return None
        return cli_list(uri, "reindex")

    print(f"# {platform.node()}: {os.cpu_count()} cores, Python {platform.python_version()}, "
          f"load average {os.getloadavg()[0]:.1f}; {args.models} models x {args.versions} version(s), "
          f"and `deep` with {args.deep}", flush=True)
    lines = ["| store | operation | side | seconds | S3 requests |", "|---|---|---|---:|---:|"]
    with tempfile.TemporaryDirectory(prefix="registry-listing-") as tmp:
        root = Path(tmp) / "registry"
        seconds = populate(root, args.models, args.versions, args.deep)
        files = sum(1 for p in root.rglob("*") if p.is_file())
        print(f"# populated {args.models} models through the registry API in {seconds:.0f} s ({files} files)", flush=True)
        if "local" in stores:
            lines += bench_store("local", str(root), args, reindexer(str(root)))
        if "s3" in stores:
            port = free_port()
            server = subprocess.Popen([sys.executable, str(REPO / "tests" / "s3_server.py"), "-H", "127.0.0.1",
                                       "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                wait_for_port(port)
                endpoint = f"http://127.0.0.1:{port}"
                os.environ["AWS_ENDPOINT_URL"] = endpoint
                client = boto3.client("s3", endpoint_url=endpoint)
                client.create_bucket(Bucket="bench-registry")
                count, seconds = upload(root, client, "bench-registry")
                print(f"# uploaded {count} objects to moto in {seconds:.0f} s", flush=True)
                if args.latency_ms:
                    boto3.DEFAULT_SESSION.events.register("before-send.s3", _network_latency(args.latency_ms / 1000))
                    print(f"# every S3 request from now on waits {args.latency_ms:g} ms first", flush=True)
                uri = "s3://bench-registry/registry"
                lines += bench_store("s3", uri, args, reindexer(uri))
            finally:
                server.terminate()
                server.wait(timeout=10)
    print()
    print("\n".join(lines))
    print(json.dumps({"load_average_after": os.getloadavg()[0]}))


if __name__ == "__main__":
    main()
