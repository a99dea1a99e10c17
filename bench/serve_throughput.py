"""Model-server throughput and latency: ours against `mlflow models serve`, on the same model, in one run.

The model: our own pipeline (validate, train, gate, register) on
``include/data/trips_2026_01.csv`` with ``--estimator`` (default HistGradientBoosting),
promoted to ``champion``. The very same fitted pipeline is saved with
``mlflow.sklearn.save_model`` (with a signature inferred from the training rows, so MLflow
checks the input schema too, as we do) and served by ``mlflow models serve --env-manager
local``. Both servers get the same number of workers and the same load generator, and
both answer the same body: ``{"dataframe_records": [row]}`` is a shape both accept. Both
servers run at once and take turns under load, in alternating order, ``--rounds`` times;
the table shows medians (a busy shared machine drifts; taking turns spreads that over both).

1. single-row ``POST /predict`` (``/invocations`` for MLflow): requests/s and p50/p99
   latency, closed loop with ``--connections`` keep-alive connections for ``--seconds``;
   ``wrk`` when installed (``apt-get install wrk``), else a multi-process raw-socket load
   generator in this file (the same one for both servers);
2. batch: rows/s of ``POST /predict?probabilities=false`` with ``--batch-rows`` rows (split
   shape; labels only, as ``model.predict`` and MLflow answer), one keep-alive client, against
   ``model.predict`` on the same rows in this process, one direct call after each request
   (so that both see the same machine at the same moment); also ``predict`` +
   ``predict_proba``, which is what the endpoint answers for a classifier by default.

Targets (issue 5): at least 3x MLflow's single-row throughput at a lower p99, and batch
within 20% of direct ``predict``. On this 2-core machine the load generator shares the
cores with the server it measures; both servers pay that equally.

    .venv/bin/python bench/serve_throughput.py [--workers 1] [--connections 8] [--seconds 10] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
DATA = REPO / "include" / "data" / "trips_2026_01.csv"
SPEC = REPO / "include" / "trips_validation.yaml"
BIN = Path(sys.executable).parent
MODEL = "bench_taxi"


# -- the model --------------------------------------------------------------------------


def train(registry_uri: str, estimator: str) -> tuple[Any, dict[str, Any], Any]:
    """Our pipeline end to end; returns (fitted pipeline, manifest, the feature rows)."""
    from mlops_airflow.data.loading import load_dataset
    from mlops_airflow.pipeline.evaluate import run_evaluation
    from mlops_airflow.pipeline.register import run_registration
    from mlops_airflow.pipeline.train import run_training
    from mlops_airflow.pipeline.validate import run_validation
    from mlops_airflow.registry import ModelRegistry
    from mlops_airflow.serving.loading import load_manifest_model
    from mlops_airflow.storage import open_store

    registry = ModelRegistry(open_store(registry_uri))
    summary = run_validation(registry, model_name=MODEL, data_uri=str(DATA), target="tipped", validation=str(SPEC))
    candidate = run_training(registry, model_name=MODEL, dataset_uri=summary["dataset_uri"], target="tipped",
                             estimator=estimator, row_key="trip_id")
    verdict = run_evaluation(registry, model_name=MODEL, candidate_sha256=candidate["sha256"], gate=None)
    manifest = run_registration(registry, model_name=MODEL, candidate_sha256=candidate["sha256"],
                                verdict_uri=verdict["verdict_uri"], idempotency_key="bench")
    registry.set_alias(MODEL, "champion", manifest["version"], expected=None, by="bench", reason="bench")
    loaded = load_manifest_model(registry, manifest)
    names = [column["name"] for column in manifest["feature_schema"]["columns"]]
    frame = load_dataset(str(DATA)).frame
    return loaded.model, manifest, frame[names]


def save_for_mlflow(model: Any, features: Any, folder: Path) -> None:
    import mlflow.sklearn
    from mlflow.models import infer_signature

    from mlops_airflow.persistence import TRUSTED_TYPES

    signature = infer_signature(features.head(100), model.predict(features.head(100)))
    # MLflow 3 saves scikit-learn models with skops too, and needs the same trusted types we allow
    mlflow.sklearn.save_model(model, str(folder), signature=signature, skops_trusted_types=sorted(TRUSTED_TYPES))


def records(features: Any, n: int) -> list[dict[str, Any]]:
    return json.loads(features.head(n).to_json(orient="records"))


# -- servers ----------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start(argv: list[str], port: int, ready_path: str, log: Path, env: dict[str, str] | None = None,
          timeout: float = 180) -> subprocess.Popen[bytes]:
    import httpx

    process = subprocess.Popen(argv, stdout=log.open("wb"), stderr=subprocess.STDOUT, env=env,
                               start_new_session=True)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{argv[0]} exited with {process.returncode}: {log.read_text()[-3000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}{ready_path}", timeout=2).status_code == 200:
                return process
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    stop(process)
    raise RuntimeError(f"{argv[0]} not ready after {timeout}s: {log.read_text()[-3000:]}")


def stop(process: subprocess.Popen[bytes]) -> None:
    import signal

    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)  # the server and its workers: a group we started
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)


# -- the load generator -----------------------------------------------------------------


def _request_bytes(port: int, path: str, body: bytes) -> bytes:
    head = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: keep-alive\r\n\r\n")
    return head.encode() + body


async def _connection(port: int, request: bytes, until: float, warm_until: float,
                      latencies: list[float], errors: list[int]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        while True:
            started = time.perf_counter()
            if started >= until:
                return
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            await reader.readexactly(length)
            done = time.perf_counter()
            if started >= warm_until:
                latencies.append(done - started)
                if status != 200:
                    errors.append(status)
    finally:
        writer.close()


def _load_process(port: int, request: bytes, connections: int, warmup: float, seconds: float, start_at: float,
                  out: Any) -> None:
    async def main() -> tuple[list[float], list[int]]:
        latencies: list[float] = []
        errors: list[int] = []
        await asyncio.sleep(max(0.0, start_at - time.time()))
        now = time.perf_counter()
        warm_until, until = now + warmup, now + warmup + seconds
        await asyncio.gather(*(_connection(port, request, until, warm_until, latencies, errors)
                               for _ in range(connections)))
        return latencies, errors

    try:
        import uvloop

        latencies, errors = uvloop.run(main())
    except ImportError:
        latencies, errors = asyncio.run(main())
    out.put((latencies, errors))


def python_load(port: int, path: str, body: bytes, *, connections: int, processes: int, warmup: float,
                seconds: float) -> dict[str, Any]:
    """Closed-loop load over keep-alive connections spread across processes; counts after the warm-up."""
    request = _request_bytes(port, path, body)
    queue: Any = multiprocessing.get_context("fork").Queue()
    start_at = time.time() + 0.5
    per = [connections // processes + (1 if i < connections % processes else 0) for i in range(processes)]
    workers = [multiprocessing.get_context("fork").Process(
        target=_load_process, args=(port, request, n, warmup, seconds, start_at, queue)) for n in per if n]
    for worker in workers:
        worker.start()
    latencies: list[float] = []
    errors: list[int] = []
    for _ in workers:
        got_latencies, got_errors = queue.get(timeout=warmup + seconds + 120)
        latencies += got_latencies
        errors += got_errors
    for worker in workers:
        worker.join(30)
    return summarise(latencies, errors, seconds)


def summarise(latencies: list[float], errors: list[int], seconds: float) -> dict[str, Any]:
    ordered = sorted(latencies)

    def pct(p: float) -> float:
        return ordered[min(len(ordered) - 1, int(p * len(ordered)))] * 1000 if ordered else float("nan")

    return {"requests": len(ordered), "rps": len(ordered) / seconds, "p50_ms": pct(0.50), "p99_ms": pct(0.99),
            "errors": len(errors)}


def wrk_load(port: int, path: str, body: bytes, *, connections: int, seconds: float, warmup: float,
             folder: Path) -> dict[str, Any]:
    script = folder / "post.lua"
    script.write_text(
        f'wrk.method = "POST"\nwrk.body = {json.dumps(body.decode())}\n'
        'wrk.headers["Content-Type"] = "application/json"\n'
        "done = function(summary, latency, requests)\n"
        '  io.write(string.format("JSON {\\"requests\\": %d, \\"p50\\": %d, \\"p99\\": %d, \\"errors\\": %d}\\n",\n'
        "    summary.requests, latency:percentile(50), latency:percentile(99),\n"
        "    summary.errors.status + summary.errors.connect + summary.errors.read + summary.errors.write"
        " + summary.errors.timeout))\nend\n"
    )
    url = f"http://127.0.0.1:{port}{path}"
    threads = str(min(2, connections))
    subprocess.run(["wrk", "-t", threads, "-c", str(connections), "-d", f"{max(1, int(warmup))}s", "-s", str(script),
                    url], capture_output=True, check=True)
    out = subprocess.run(["wrk", "-t", threads, "-c", str(connections), "-d", f"{int(seconds)}s", "-s",
                          str(script), url], capture_output=True, text=True, check=True).stdout
    found = json.loads(next(line for line in out.splitlines() if line.startswith("JSON "))[5:])
    return {"requests": found["requests"], "rps": found["requests"] / seconds, "p50_ms": found["p50"] / 1000,
            "p99_ms": found["p99"] / 1000, "errors": found["errors"]}


# -- batch ------------------------------------------------------------------------------


def time_batch_http(url: str, body: bytes, rows: int, repeats: int, direct: Any,
                    content_type: str = "application/json") -> tuple[float, float]:
    """(HTTP rows/s, direct rows/s): each POST is followed by one direct call, so both see the same machine.

    The client is the standard library's keep-alive ``http.client`` (lighter than httpx: ~0.3 ms
    against ~0.7 ms a round trip here); the server and the direct call get the same thread count.
    """
    import http.client
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=120)
    target = parts.path + (f"?{parts.query}" if parts.query else "")

    def post() -> None:
        connection.request("POST", target, body=body, headers={"content-type": content_type})
        response = connection.getresponse()
        answer = response.read()
        assert response.status == 200, answer[:500]

    post()
    direct()
    http_timings, direct_timings = [], []
    for _ in range(repeats):
        started = time.perf_counter()
        post()
        http_timings.append(time.perf_counter() - started)
        started = time.perf_counter()
        direct()
        direct_timings.append(time.perf_counter() - started)
    connection.close()
    return rows / statistics.median(http_timings), rows / statistics.median(direct_timings)


def time_direct(fn: Any, rows: int, repeats: int) -> float:
    fn()
    timings = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        timings.append(time.perf_counter() - started)
    return rows / statistics.median(timings)


# -- main -------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1,
                        help="OpenMP/BLAS threads per worker, the same for both servers and direct predict")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--load-processes", type=int, default=2, help="processes of the Python load generator")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds per server; medians are shown")
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--batch-rows", type=int, default=1000)
    parser.add_argument("--batch-repeats", type=int, default=20)
    parser.add_argument("--estimator", default="sklearn.ensemble.HistGradientBoostingClassifier")
    parser.add_argument("--only", choices=["ours", "mlflow"], help="measure one server only")
    parser.add_argument("--no-wrk", action="store_true", help="use the Python load generator even if wrk exists")
    args = parser.parse_args()

    use_wrk = shutil.which("wrk") is not None and not args.no_wrk
    folder = Path(tempfile.mkdtemp(prefix="mlops-bench-serve-"))
    # mlflow runs `uvicorn` from PATH: the venv's own
    env = {**os.environ, "MLOPS_AIRFLOW_REGISTRY_URI": str(folder / "registry"), "AIRFLOW_HOME": str(folder),
           "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
           # the same native thread pools for both servers (ours sets these itself from --threads)
           "OMP_NUM_THREADS": str(args.threads), "OPENBLAS_NUM_THREADS": str(args.threads),
           "MKL_NUM_THREADS": str(args.threads)}
    os.environ.update({k: env[k] for k in ("MLOPS_AIRFLOW_REGISTRY_URI", "AIRFLOW_HOME")})
    print(f"# {platform.node()}: {os.cpu_count()} cores, Python {platform.python_version()}, "
          f"load average {os.getloadavg()[0]:.1f}; load generator: "
          f"{'wrk' if use_wrk else f'python ({args.load_processes} processes)'}"
          + ("" if use_wrk else " (install wrk for a lighter one: apt-get install wrk)"))
    model, manifest, features = train(str(folder / "registry"), args.estimator)
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=args.threads)  # direct predict with the servers' thread count
    print(f"# model: {manifest['estimator']} v{manifest['version']}, {len(features.columns)} features, "
          f"{args.workers} worker(s) x {args.threads} thread(s), {args.connections} connections, {args.seconds:g}s after {args.warmup:g}s warm-up")
    save_for_mlflow(model, features, folder / "mlflow_model")

    one_row = json.dumps({"dataframe_records": records(features, 1)}).encode()
    batch = features.head(args.batch_rows)
    batch_body = json.dumps({"dataframe_split": json.loads(batch.to_json(orient="split", index=False))}).encode()

    results: dict[str, dict[str, Any]] = {}
    servers = {
        "ours": (["mlops-airflow", "serve", MODEL, "--workers", str(args.workers), "--threads", str(args.threads),
                  "--log-level", "warning"],
                 "/predict", "/ready"),
        "mlflow": (["mlflow", "models", "serve", "-m", str(folder / "mlflow_model"), "--env-manager", "local",
                    "-w", str(args.workers)], "/invocations", "/ping"),
    }
    answers: dict[str, Any] = {}
    running: dict[str, tuple[subprocess.Popen[bytes], str]] = {}
    rounds: dict[str, list[dict[str, Any]]] = {}
    try:
        for name, (argv, path, ready) in servers.items():
            if args.only and name != args.only:
                continue
            port = free_port()
            port_flag = ["--port", str(port)] if name == "ours" else ["-p", str(port)]
            process = start([str(BIN / argv[0]), *argv[1:], *port_flag], port, ready, folder / f"{name}.log", env)
            running[name] = (process, f"http://127.0.0.1:{port}{path}")
        import httpx

        for name, (_process, url) in running.items():
            answer = httpx.post(url, content=one_row, headers={"content-type": "application/json"}, timeout=30)
            assert answer.status_code == 200, answer.text
            answers[name] = answer.json()["predictions"]
        # the servers take turns, in alternating order, so that both see the same machine load
        for round_ in range(args.rounds):
            order = list(running) if round_ % 2 == 0 else list(reversed(running))
            for name in order:
                url = running[name][1]
                port, path = int(url.split(":")[2].split("/")[0]), "/" + url.split("/", 3)[3]
                if use_wrk:
                    result = wrk_load(port, path, one_row, connections=args.connections, seconds=args.seconds,
                                      warmup=args.warmup, folder=folder)
                else:
                    result = python_load(port, path, one_row, connections=args.connections,
                                         processes=args.load_processes, warmup=args.warmup, seconds=args.seconds)
                # labels only, as model.predict and MLflow's /invocations give (ours adds probabilities by default)
                batch_url = url + "?probabilities=false" if name == "ours" else url
                result["batch_rows_per_s"], result["direct_rows_per_s"] = time_batch_http(
                    batch_url, batch_body, len(batch), args.batch_repeats, lambda: model.predict(batch))
                result["batch_ratio"] = result["batch_rows_per_s"] / result["direct_rows_per_s"]
                rounds.setdefault(name, []).append(result)
                print(f"#   round {round_ + 1} {name}: {result['rps']:.0f} req/s, p50 {result['p50_ms']:.1f} ms, "
                      f"p99 {result['p99_ms']:.1f} ms, batch {result['batch_rows_per_s']:.0f} rows/s = "
                      f"{result['batch_ratio']:.2f}x direct predict ({result['direct_rows_per_s']:.0f} rows/s "
                      "interleaved)", flush=True)
    finally:
        for process, _url in running.values():
            stop(process)
    results = {
        name: {key: statistics.median(r[key] for r in found) for key in found[0] if key != "errors"}
        | {"errors": sum(r["errors"] for r in found)}
        for name, found in rounds.items()
    }
    if len(answers) == 2:
        assert answers["ours"] == answers["mlflow"], answers  # the same model answers the same

    both = time_direct(lambda: (model.predict(batch), model.predict_proba(batch)), len(batch), args.batch_repeats)

    print()
    print(f"medians of {args.rounds} alternating rounds:")
    print("| server | single-row req/s | p50 ms | p99 ms | non-200 | batch rows/s | direct `predict` rows/s "
          "(interleaved) | batch / direct |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, result in results.items():
        print(f"| {name} | {result['rps']:.0f} | {result['p50_ms']:.2f} | {result['p99_ms']:.2f} | "
              f"{result['errors']} | {result['batch_rows_per_s']:.0f} | {result['direct_rows_per_s']:.0f} | "
              f"{result['batch_ratio']:.2f}x |")
    print(f"| direct `predict` + `predict_proba` (after the rounds) | | | | | {both:.0f} | | |")
    if len(results) == 2:
        ours, theirs = results["ours"], results["mlflow"]
        print()
        print(f"single-row throughput: {ours['rps'] / theirs['rps']:.2f}x MLflow (target >= 3x); "
              f"p99 {ours['p99_ms']:.2f} ms vs {theirs['p99_ms']:.2f} ms (target: lower)")
    if "ours" in results:
        ratios = ", ".join(f"{found['batch_ratio']:.2f}" for found in rounds["ours"])
        print(f"batch: {results['ours']['batch_ratio']:.2f}x direct predict (median of the rounds' {ratios}; "
              "target >= 0.8x)")
    shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
