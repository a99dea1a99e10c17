"""Hostile request bodies against a real model server: what the worst body costs, and what it does to others.

One server (``mlops-airflow serve``, one worker) serves a small registered model. For each
body below the bench sends it ``--repeat`` times on one connection while another thread asks
``GET /health`` every 10 ms on its own connection, and prints per body: the answer, the
server's CPU seconds per body (from ``/proc``), and the slowest ``/health`` answer meanwhile.
Then one client sends the worst body back to back for ``--seconds`` while a second client
sends one-row predictions: their p50 / p99 / max latency beside the same client's alone.
First, the p50 of a one-row ``POST /predict`` on an idle server (the fast path's latency).

The reference is the fault report of issue 16: 40,000 column names cost 29.8 s of CPU, and
a 62 KB body froze ``/health`` for a second. ``--repo PATH`` serves another checkout (e.g.
the one before the fix) with the same venv, to compare.

    .venv/bin/python bench/hostile_bodies.py [--repeat 3] [--seconds 20] [--repo PATH]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from serve_many import register_fast, synthetic_frame  # noqa: E402 - sibling scripts, not a package
from serve_throughput import BIN, free_port, start, stop  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
MODEL = "hostile"
LIMIT = 10 * 1024 * 1024 - 4096  # just under the default body limit
ROW = {"amount": 12.5, "distance": 3.2, "hour": 9, "rating": 0.4, "segment": "north"}


def fill(head: bytes, item: Any, tail: bytes) -> bytes:
    """As many items as fit under the body limit (``item``: bytes, or a function of the index)."""
    parts, used, index = [], len(head) + len(tail), 0
    while True:
        piece = item if isinstance(item, bytes) else item(index)
        if used + len(piece) + 1 > LIMIT:
            return head + b",".join(parts) + tail
        parts.append(piece)
        used += len(piece) + 1
        index += 1


def bodies() -> dict[str, tuple[str, bytes]]:
    """name -> (path, body): the fault report's cases, then the worst of each kind at the 10 MiB limit."""
    names = [f"c{i}" for i in range(40_000)]
    return {
        "40k names, split (the report's case, 0.4 MB)": (
            "/predict", json.dumps({"columns": names, "data": [[1] * len(names)]}).encode()),
        "60 KB of names, split (parsed on the loop before)": (
            "/predict", json.dumps({"columns": names[:5000], "data": [[1] * 5000]}).encode()),
        "1M names, split": ("/predict", fill(b'{"data":[[1]],"columns":[', lambda i: b'"c%d"' % i, b"]}")),
        "1M names, one record": ("/predict", fill(b'{"row":{', lambda i: b'"c%d":1' % i, b"}}")),
        "1,000 unknown names a record": (
            "/predict", fill(b'{"rows":[', lambda j: json.dumps({f"u{j}_{i}": 1 for i in range(1000)}).encode(), b"]}")),
        "1M names, inputs dict": ("/predict", fill(b'{"inputs":{', lambda i: b'"c%d":[1]' % i, b"}}")),
        "2.6M rows, split": ("/predict", fill(b'{"columns":["hour"],"data":[', b"[1]", b"]}")),
        "10k rows of wrong types": ("/predict", json.dumps({"rows": [dict.fromkeys(ROW, "x")] * 10_000}).encode()),
        "NaN after 10 MB of records": (
            "/predict", fill(b'{"rows":[', lambda j: json.dumps({f"u{j}_{i}": 1 for i in range(1000)}).encode(),
                             b',{"hour":NaN}]}')),
        "V2: 250k tensors": ("/v2/models/hostile/infer", fill(
            b'{"inputs":[', lambda i: b'{"name":"c%d","shape":[1],"datatype":"INT64","data":[1]}' % i, b"]}")),
    }


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def post(connection: http.client.HTTPConnection, path: str, body: bytes) -> tuple[int, bytes]:
    connection.request("POST", path, body, {"Content-Type": "application/json"})
    answer = connection.getresponse()
    return answer.status, answer.read()


class HealthWatch:
    """Asks ``/health`` every 10 ms on its own connection; keeps each answer's latency."""

    def __init__(self, port: int) -> None:
        self.port, self.latencies, self._stop = port, [], threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> HealthWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
        while not self._stop.is_set():
            started = time.perf_counter()
            connection.request("GET", "/health")
            connection.getresponse().read()
            self.latencies.append(time.perf_counter() - started)
            time.sleep(0.01)


def one_row_latencies(port: int, count: int, stop_event: threading.Event | None = None) -> list[float]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    body = json.dumps({"row": ROW}).encode()
    latencies = []
    while len(latencies) < count and not (stop_event is not None and stop_event.is_set()):
        started = time.perf_counter()
        status, _ = post(connection, "/predict", body)
        assert status == 200, status
        latencies.append(time.perf_counter() - started)
    return latencies


def percentiles(latencies: list[float]) -> str:
    ordered = sorted(latencies)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return f"p50 {statistics.median(ordered) * 1e3:.2f} ms, p99 {p99 * 1e3:.1f} ms, max {ordered[-1] * 1e3:.0f} ms"


def main(args: argparse.Namespace) -> None:
    from mlops_airflow.registry.registry import ModelRegistry
    from mlops_airflow.storage import open_store

    folder = Path(tempfile.mkdtemp(prefix="hostile-bench-"))
    registry_uri = str(folder / "registry")
    register_fast(ModelRegistry(open_store(registry_uri)), MODEL, synthetic_frame(0, 2000, seed=16), registry_uri)
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(args.repo)}
    argv = [str(BIN / "mlops-airflow"), "--registry", registry_uri, "serve", MODEL, "--port", str(port)]
    server = start(argv, port, "/ready", folder / "server.log", env=env)
    try:
        print(f"server from {args.repo}; machine shared, load average {os.getloadavg()[0]:.1f} at start")
        one_row_latencies(port, 300)  # warm up
        print(f"one-row POST /predict, idle server: {percentiles(one_row_latencies(port, args.requests))}")
        print(f"\n{'body':52} {'MB':>5} {'status':>6} {'CPU s/body':>10} {'slowest /health':>16}  answer")
        worst: tuple[float, str, bytes] = (0.0, "", b"")
        for name, (path, body) in bodies().items():
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
            with HealthWatch(port) as watch:
                cpu = cpu_seconds(server.pid)
                for _ in range(args.repeat):
                    status, answer = post(connection, path, body)
                cpu = (cpu_seconds(server.pid) - cpu) / args.repeat
            slowest = max(watch.latencies, default=0.0)
            worst = max(worst, (cpu, path, body))
            print(f"{name:52} {len(body) / 1e6:5.1f} {status:6d} {cpu:10.3f} {slowest * 1e3:13.0f} ms  "
                  f"{answer[:90].decode(errors='replace')}")
        _, path, body = worst
        stop_event = threading.Event()

        def hostile() -> None:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
            while not stop_event.is_set():
                post(connection, path, body)

        sender = threading.Thread(target=hostile, daemon=True)
        with HealthWatch(port) as watch:
            sender.start()
            timer = threading.Timer(args.seconds, stop_event.set)
            timer.start()
            others = one_row_latencies(port, 10**9, stop_event)
            sender.join()
        print(f"\nwhile one client sends the costliest body back to back for {args.seconds:g} s:")
        print(f"  GET /health: {percentiles(watch.latencies)} ({len(watch.latencies)} answers)")
        print(f"  another client's one-row predictions: {percentiles(others)} ({len(others)} answered, all 200)")
    finally:
        stop(server)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3, help="times each body is sent (CPU is per body)")
    parser.add_argument("--seconds", type=float, default=20, help="length of the back-to-back phase")
    parser.add_argument("--requests", type=int, default=2000, help="one-row requests for the idle p50")
    parser.add_argument("--repo", type=Path, default=REPO, help="the checkout whose server is measured")
    return parser.parse_args()


if __name__ == "__main__":
    main(parse_args())
