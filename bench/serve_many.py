"""Many models, one server: our multi-model server with 1,000 registered models, against our
single-model server and against MLServer serving the same fitted pipelines.

The models: one synthetic tabular family (three float features, an integer hour, a
five-valued categorical ``segment``, a binary label; every model draws its own feature
distributions and its own true coefficients), a scikit-learn ``LogisticRegression`` behind
our default preprocessing per model, fitted by our ``train_model`` and registered with its
feature schema through ``ModelRegistry.put_artifact`` / ``register`` / ``set_alias``, so
the server loads them exactly as in production. Model 0 goes through the whole pipeline
(validate, train, gate, register) to show what that costs per model; the rest skip the
validation and gate stages (their manifests record a ``bench`` verdict instead of a gate's).

Load: ``wrk`` with ``bench/serve_many.lua`` (required: ``apt-get install -y wrk``), which
picks each request's model from a Zipf law (P(rank k) ~ k^-s, s = ``--zipf-s``, fixed seed),
model 0 the hottest; one row per request, the same split body ``{"columns": [...],
"data": [[...]]}`` (ours) or the same V2 tensors (V2 endpoints) for every variant. Closed
loop, ``--connections`` keep-alive connections, one server worker with one OpenMP/BLAS
thread, a ``--warmup`` run of wrk before each measured ``--duration`` run (not counted).

Variants, one after another on the same machine:

- ``single``: today's ``mlops-airflow serve m0000`` (the hottest model), ``POST /predict``;
  measured first and again last, to see the machine drift;
- ``multi, hot set fits`` (when the multi-model server exists: ``serve --help`` lists
  ``--max-models``): ``mlops-airflow --registry ROOT serve --max-models N`` with room for
  every model; first a sequential pass requests every model once (the **cold load**: the
  first request to a model never loaded, against the second one right after), then wrk on
  ``POST /models/{name}/predict``, on the hottest model's path alone (a diagnostic: the same
  server without the spread, so that routing and lost batching show apart; concurrent
  requests for one model are predicted together, requests for different models are not),
  then on ``POST /v2/models/{name}/infer``;
- ``multi, max-models 100``: the same with ``--max-models`` ``--evict-max-models``, so the
  Zipf tail keeps loading and evicting (evictions counted from ``/metrics``);
- ``mlserver``: MLServer with ``mlserver-sklearn`` in its own virtualenv (created on first
  use, scikit-learn pinned to ours), the same fitted pipelines saved with joblib, one
  ``model-settings.json`` each (content type ``pd``: the V2 tensors arrive as a pandas
  DataFrame with our column names and dtypes), ``parallel_workers`` 0 (inference in the
  server process, no worker pool: one process, like ours with one worker; MLServer 1.7.1's
  pool workers also crash at start here, see bench/README.md), all models loaded at start; ``POST /v2/models/{name}/infer`` asking for ``predict`` and
  ``predict_proba`` (what our endpoints answer), then ``predict`` only.

RSS is the server's process tree's ``VmRSS`` from ``/proc`` (peak: ``VmHWM``, summed
over the tree's processes). Everything started is stopped on exit, Ctrl-C included.

    .venv/bin/python bench/serve_many.py [--models 1000] [--duration 20] [--connections 8]
    .venv/bin/python bench/serve_many.py --models 50 --duration 3       # a smoke run
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from serve_throughput import BIN, free_port, stop  # noqa: E402 - a sibling script, not a package

LUA = Path(__file__).resolve().parent / "serve_many.lua"
ESTIMATOR = "sklearn.linear_model.LogisticRegression"
TARGET = "label"
ROW_KEY = "row_id"
SEGMENTS = ("north", "south", "east", "west", "centre")
BUILD_FORMAT = 1
MLSERVER_VENV = Path(tempfile.gettempdir()) / "mlops-airflow-bench-mlserver"


def model_name(index: int) -> str:
    return f"m{index:04d}"


# -- the models ---------------------------------------------------------------------------


def synthetic_frame(index: int, rows: int, seed: int) -> Any:
    """Model ``index``'s training table: its own feature distributions and true coefficients."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng([seed, index])
    amount = np.round(rng.lognormal(rng.uniform(1, 4), rng.uniform(0.3, 1.0), rows), 2)
    distance = np.round(rng.gamma(rng.uniform(1, 5), rng.uniform(0.5, 3), rows), 3)
    rating = np.round(rng.normal(rng.uniform(-2, 2), rng.uniform(0.5, 2), rows), 3)
    hour = rng.integers(0, 24, rows)
    segment = rng.choice(len(SEGMENTS), rows, p=rng.dirichlet(np.ones(len(SEGMENTS))))
    numeric = np.column_stack([np.log(amount), distance, rating, np.cos(hour * np.pi / 12)])
    z = (numeric - numeric.mean(axis=0)) / (numeric.std(axis=0) + 1e-9)
    logit = z @ rng.normal(0, 1.5, 4) + rng.normal(0, 1, len(SEGMENTS))[segment] + rng.normal(0, 0.5)
    label = (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype("int64")
    label[:2] = (0, 1)  # both classes, whatever the draw
    return pd.DataFrame({ROW_KEY: np.arange(rows), "amount": amount, "distance": distance, "hour": hour,
                         "rating": rating, "segment": [SEGMENTS[k] for k in segment], TARGET: label})


def fingerprint(frame: Any) -> str:
    import pandas as pd

    return "sha256:" + hashlib.sha256(pd.util.hash_pandas_object(frame).to_numpy().tobytes()).hexdigest()


def register_fast(registry: Any, name: str, frame: Any, uri: str) -> tuple[Any, dict[str, Any]]:
    """Train with our ``train_model`` and register with a manifest as the pipeline writes it, minus the gate."""
    from sklearn.metrics import accuracy_score, roc_auc_score

    from mlops_airflow.data.schema import feature_schema
    from mlops_airflow.data.split import hash_split
    from mlops_airflow.persistence import dump_model, runtime_versions
    from mlops_airflow.training.train import train_model

    split = hash_split(frame, target=TARGET, key=ROW_KEY, fraction=0.2)
    result = train_model(frame.iloc[split.train], target=TARGET, estimator=ESTIMATOR, drop_columns=[ROW_KEY])
    holdout = frame.iloc[split.holdout]
    features = holdout.drop(columns=[TARGET, ROW_KEY])
    scores = result.model.predict_proba(features)[:, 1]
    candidate: dict[str, Any] = {
        "target": TARGET, "task_type": result.task_type, "estimator": result.estimator,
        "estimator_params": result.estimator_params, "classes": result.classes, "drop_columns": [ROW_KEY],
        "feature_schema": feature_schema(frame, target=TARGET, exclude=[ROW_KEY]),
        "split": {**split.info, "row_key": ROW_KEY},
        "data": {"uri": uri, "files": [], "fingerprint": fingerprint(frame), "rows": len(frame), "dataset_uri": uri,
                 "validation_report_uri": None},
        "packages": runtime_versions(), "fit_seconds": result.fit_seconds, "trained_at": "bench",
        "pipeline_factory": None, "tuning": None, "lineage": {"train": {"bench": True}},
    }
    record = registry.put_artifact(name, dump_model(result.model), candidate)
    manifest = {
        **record,
        "metrics": {"roc_auc": float(roc_auc_score(holdout[TARGET], scores)),
                    "accuracy": float(accuracy_score(holdout[TARGET], result.model.predict(features)))},
        # No gate ran: the record says so instead of imitating a gate's verdict.
        "verdict": {"verdict_id": f"bench-{name}", "verdict_uri": "bench://no-gate", "outcome": "blessed",
                    "reason": "bench/serve_many.py: registered without the gate", "gate_source": "bench",
                    "blessed": True, "gate_blessed": False, "decision": None},
    }
    registered = registry.register(name, manifest, idempotency_key="bench")
    registry.set_alias(name, "champion", registered["version"], expected=None, by="bench", reason="bench")
    return result.model, registered


def register_pipeline(registry: Any, name: str, frame: Any, folder: Path) -> tuple[Any, dict[str, Any]]:
    """The production path: validate, train, gate and register through the pipeline functions."""
    from mlops_airflow.pipeline.evaluate import run_evaluation
    from mlops_airflow.pipeline.register import run_registration
    from mlops_airflow.pipeline.train import run_training
    from mlops_airflow.pipeline.validate import run_validation
    from mlops_airflow.serving.loading import load_manifest_model

    csv = folder / f"{name}.csv"
    frame.to_csv(csv, index=False)
    summary = run_validation(registry, model_name=name, data_uri=str(csv), target=TARGET, validation=None)
    candidate = run_training(registry, model_name=name, dataset_uri=summary["dataset_uri"], target=TARGET,
                             estimator=ESTIMATOR, row_key=ROW_KEY)
    verdict = run_evaluation(registry, model_name=name, candidate_sha256=candidate["sha256"], gate=None)
    manifest = run_registration(registry, model_name=name, candidate_sha256=candidate["sha256"],
                                verdict_uri=verdict["verdict_uri"], idempotency_key="bench")
    registry.set_alias(name, "champion", manifest["version"], expected=None, by="bench", reason="bench")
    return load_manifest_model(registry, manifest).model, manifest


def v2_datatype(column: dict[str, Any]) -> str:
    if column["kind"] != "numeric":
        return "BYTES"
    return "INT64" if column["dtype"].startswith("int") else "FP64"


def export_for_mlserver(model: Any, manifest: dict[str, Any], folder: Path) -> None:
    """The fitted pipeline as ``model.joblib`` and a ``model-settings.json`` that decodes requests to a DataFrame."""
    import joblib

    folder.mkdir(parents=True)
    joblib.dump(model, folder / "model.joblib")
    inputs = []
    for column in manifest["feature_schema"]["columns"]:
        datatype = v2_datatype(column)
        # "str" turns BYTES into Python strings (else they stay bytes); "pd" below builds the frame
        tensor = {"name": column["name"], "datatype": datatype, "shape": [-1]}
        if datatype == "BYTES":
            tensor["parameters"] = {"content_type": "str"}
        inputs.append(tensor)
    settings = {"name": manifest["model_name"], "implementation": "mlserver_sklearn.SKLearnModel",
                "inputs": inputs, "parameters": {"uri": "./model.joblib", "version": str(manifest["version"]),
                                                 "content_type": "pd"}}
    (folder / "model-settings.json").write_text(json.dumps(settings, indent=1))


def build(folder: Path, models: int, rows: int, seed: int) -> dict[str, Any]:
    """The registry, the MLServer repository and one request row per model, in ``folder`` (reused if complete)."""
    done = folder / "build.json"
    if done.exists():
        info = json.loads(done.read_text())
        print(f"# reusing the {models} models built in {folder} ({info['seconds']:.0f} s to build)")
        return info
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    from threadpoolctl import threadpool_limits

    from mlops_airflow.registry import ModelRegistry
    from mlops_airflow.storage import open_store

    threadpool_limits(limits=1)  # lbfgs on 400 rows: more BLAS threads only wait for each other
    registry = ModelRegistry(open_store(str(folder / "registry")))
    (folder / "data").mkdir()
    started = time.perf_counter()
    timings: list[float] = []
    entries = []
    for index in range(models):
        name = model_name(index)
        begun = time.perf_counter()
        frame = synthetic_frame(index, rows, seed)
        if index == 0:
            model, manifest = register_pipeline(registry, name, frame, folder / "data")
            pipeline_seconds = time.perf_counter() - begun
        else:
            model, manifest = register_fast(registry, name, frame, f"bench://synthetic/{seed}/{index}")
            timings.append(time.perf_counter() - begun)
        export_for_mlserver(model, manifest, folder / "mlserver" / name)
        columns = manifest["feature_schema"]["columns"]
        row = json.loads(frame[[c["name"] for c in columns]].iloc[:1].to_json(orient="records"))[0]
        entries.append({"name": name, "columns": columns, "row": row})
        if (index + 1) % 100 == 0:
            print(f"#   built {index + 1}/{models} ({time.perf_counter() - started:.0f} s)", flush=True)
    (folder / "requests.json").write_text(json.dumps(entries))
    info = {"format": BUILD_FORMAT, "models": models, "rows": rows, "seed": seed,
            "seconds": time.perf_counter() - started, "pipeline_seconds": pipeline_seconds,
            "fast_median_seconds": statistics.median(timings) if timings else None}
    done.write_text(json.dumps(info))
    return info


# -- request bodies -----------------------------------------------------------------------


def split_body(entry: dict[str, Any]) -> dict[str, Any]:
    names = [c["name"] for c in entry["columns"]]
    return {"columns": names, "data": [[entry["row"][n] for n in names]]}


def v2_body(entry: dict[str, Any], outputs: list[str] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"inputs": [{"name": c["name"], "shape": [1], "datatype": v2_datatype(c),
                                        "data": [entry["row"][c["name"]]]} for c in entry["columns"]]}
    if outputs:
        body["outputs"] = [{"name": name} for name in outputs]
    return body


def write_requests(path: Path, lines: list[tuple[str, dict[str, Any]]]) -> Path:
    """The wrk script's table: one ``path<TAB>body`` line per model, hottest first."""
    path.write_text("".join(f"{url}\t{json.dumps(body, separators=(',', ':'))}\n" for url, body in lines))
    return path


# -- processes ----------------------------------------------------------------------------

RUNNING: list[subprocess.Popen[bytes]] = []


def launch(argv: list[str], port: int, ready_path: str, log: Path, env: dict[str, str],
           timeout: float = 180) -> tuple[subprocess.Popen[bytes], float]:
    """Start a server in its own process group (recorded for the clean-up first) and wait until it answers."""
    started = time.perf_counter()
    process = subprocess.Popen(argv, stdout=log.open("wb"), stderr=subprocess.STDOUT, env=env,
                               start_new_session=True)
    RUNNING.append(process)
    while time.perf_counter() - started < timeout:
        if process.poll() is not None:
            raise RuntimeError(f"{argv[0]} exited with {process.returncode}: {log.read_text()[-3000:]}")
        if get(port, ready_path)[0] == 200:
            return process, time.perf_counter() - started
        time.sleep(0.2)
    raise RuntimeError(f"{argv[0]} not ready after {timeout:.0f}s: {log.read_text()[-3000:]}")


def halt(process: subprocess.Popen[bytes]) -> None:
    stop(process)
    if process in RUNNING:
        RUNNING.remove(process)


def get(port: int, path: str, method: str = "GET", body: bytes | None = None) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        connection.request(method, path, body=body, headers={"content-type": "application/json"})
        response = connection.getresponse()
        return response.status, response.read()
    except OSError:
        return 0, b""
    finally:
        connection.close()


def tree(pid: int) -> list[int]:
    pids, index = [pid], 0
    while index < len(pids):
        for task in Path(f"/proc/{pids[index]}/task").glob("*"):
            try:
                pids += [int(child) for child in (task / "children").read_text().split()]
            except OSError:
                pass
        index += 1
    return pids


def memory_mb(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) in MB, summed over the process and its descendants."""
    rss = hwm = 0
    for member in tree(pid):
        try:
            fields = dict(line.split(":", 1) for line in Path(f"/proc/{member}/status").read_text().splitlines())
        except OSError:
            continue
        rss += int(fields.get("VmRSS", "0 kB").split()[0])
        hwm += int(fields.get("VmHWM", "0 kB").split()[0])
    return rss / 1024, hwm / 1024


# -- load ---------------------------------------------------------------------------------


def wrk(port: int, requests_file: Path, *, connections: int, seconds: int, zipf_s: float, seed: int,
        threads: int = 2) -> dict[str, Any]:
    argv = ["wrk", "-t", str(min(threads, connections)), "-c", str(connections), "-d", f"{seconds}s",
            "--timeout", "30s", "-s", str(LUA), f"http://127.0.0.1:{port}", "--", str(requests_file),
            str(zipf_s), str(seed)]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 120)
    line = next((line for line in out.stdout.splitlines() if line.startswith("JSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk failed ({out.returncode}): {out.stdout[-2000:]} {out.stderr[-2000:]}")
    found = json.loads(line[5:])
    return {"requests": found["requests"], "rps": found["requests"] / (found["duration_us"] / 1e6),
            "p50_ms": found["p50_us"] / 1000, "p90_ms": found["p90_us"] / 1000,
            "p99_ms": found["p99_us"] / 1000, "max_ms": found["max_us"] / 1000,
            "errors": found["non_2xx"] + found["socket_errors"]}


def expected_distinct(models: int, zipf_s: float, requests: int) -> float:
    """How many distinct models ``requests`` Zipf draws touch, on average."""
    weights = [k ** -zipf_s for k in range(1, models + 1)]
    total = sum(weights)
    return sum(1 - (1 - w / total) ** requests for w in weights)


def measured(port: int, requests_file: Path, args: argparse.Namespace, *, count_evictions: bool = False
             ) -> dict[str, Any]:
    """A warm-up run of wrk (not counted), then the measured one (with our evictions meanwhile, if asked)."""
    wrk(port, requests_file, connections=args.connections, seconds=args.warmup, zipf_s=args.zipf_s,
        seed=args.seed + 1)
    before = evictions(port) if count_evictions else None
    result = wrk(port, requests_file, connections=args.connections, seconds=args.duration, zipf_s=args.zipf_s,
                 seed=args.seed)
    after = evictions(port) if count_evictions else None
    result["evictions"] = after - before if before is not None and after is not None else None
    return result


def evictions(port: int) -> float | None:
    """Our server's ``mlops_model_evictions_total`` (None if it has no such counter)."""
    status, data = get(port, "/metrics")
    for line in data.decode(errors="replace").splitlines() if status == 200 else []:
        if line.startswith("mlops_model_evictions_total "):
            return float(line.split()[1])
    return None


def first_requests(port: int, lines: list[tuple[str, dict[str, Any]]]) -> tuple[list[float], list[float], int]:
    """Each model's first request (cold) and the one right after (warm), in ms, one keep-alive connection."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    cold: list[float] = []
    warm: list[float] = []
    failed = 0
    try:
        for path, body in lines:
            data = json.dumps(body).encode()
            for timings in (cold, warm):
                started = time.perf_counter()
                connection.request("POST", path, body=data, headers={"content-type": "application/json"})
                response = connection.getresponse()
                response.read()
                timings.append((time.perf_counter() - started) * 1000)
                failed += response.status != 200
    finally:
        connection.close()
    return cold, warm, failed


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p * len(ordered)))] if ordered else float("nan")


# -- the variants -------------------------------------------------------------------------


def multi_model_supported() -> bool:
    out = subprocess.run([str(BIN / "mlops-airflow"), "serve", "--help"], capture_output=True, text=True,
                         timeout=120)
    return "--max-models" in out.stdout


def our_server(args: argparse.Namespace, folder: Path, env: dict[str, str], log: str,
               *serve: str) -> tuple[subprocess.Popen[bytes], int, float]:
    port = free_port()
    argv = [str(BIN / "mlops-airflow"), "--registry", str(folder / "registry"), "serve", *serve, "--port", str(port),
            "--workers", "1", "--threads", "1", "--log-level", "warning"]
    process, seconds = launch(argv, port, "/health", folder / log, env)
    return process, port, seconds


def run_single(args: argparse.Namespace, folder: Path, entries: list[dict[str, Any]], env: dict[str, str],
               label: str) -> dict[str, Any]:
    process, port, _ = our_server(args, folder, env, "single.log", entries[0]["name"])
    try:
        deadline = time.monotonic() + 120
        while get(port, "/ready")[0] != 200 and time.monotonic() < deadline:
            time.sleep(0.2)
        requests = write_requests(folder / "single.txt", [("/predict", split_body(entries[0]))])
        result = measured(port, requests, args)
        rss, hwm = memory_mb(process.pid)
    finally:
        halt(process)
    return {"variant": label, **result, "rss_mb": rss, "hwm_mb": hwm,
            "notes": f"{entries[0]['name']} only, POST /predict"}


def run_multi(args: argparse.Namespace, folder: Path, entries: list[dict[str, Any]], env: dict[str, str],
              max_models: int, label: str, details: list[str], *, cold_pass: bool) -> list[dict[str, Any]]:
    process, port, _ = our_server(args, folder, env, f"multi-{max_models}.log", "--max-models", str(max_models),
                                  "--memory-budget-mb", str(args.memory_budget_mb))
    rows: list[dict[str, Any]] = []
    try:
        empty_rss, _ = memory_mb(process.pid)
        predict = [(f"/models/{e['name']}/predict", split_body(e)) for e in entries]
        if not cold_pass:
            first_requests(port, predict[:1])  # the first load imports scikit-learn: seconds, not a model's load
        if cold_pass:
            # The first model also pays the imports (scikit-learn, the loader): reported apart.
            first_cold, _, failed = first_requests(port, predict[:1])
            one_rss, _ = memory_mb(process.pid)
            started = time.perf_counter()
            cold, warm, more_failed = first_requests(port, predict[1:])
            loaded_rss, _ = memory_mb(process.pid)
            details.append(
                f"{label}: cold load = the first request to a model never loaded (sequential, one connection, "
                f"no other requests), {len(cold)} models: median {statistics.median(cold):.1f} ms, p90 "
                f"{pct(cold, 0.9):.1f} ms, max {max(cold):.1f} ms; the same model's next request: median "
                f"{statistics.median(warm):.1f} ms; the very first model (imports included) {first_cold[0]:.0f} ms; "
                f"{failed + more_failed} non-200; {len(cold)} loads in {time.perf_counter() - started:.1f} s. "
                f"RSS {empty_rss:.0f} MB started, {one_rss:.0f} MB with one model, {loaded_rss:.0f} MB with "
                f"{len(entries)}: {(loaded_rss - one_rss) / max(1, len(cold)) * 1024:.0f} KB per further model")
            print(f"#   {details[-1]}", flush=True)
        result = measured(port, write_requests(folder / "multi.txt", predict), args, count_evictions=True)
        rss, hwm = memory_mb(process.pid)
        touched = expected_distinct(len(entries), args.zipf_s, result["requests"])
        rows.append({"variant": label, **result, "rss_mb": rss, "hwm_mb": hwm,
                     "notes": f"/models/{{name}}/predict, ~{touched:.0f} models drawn, "
                              f"{evicted(result)}; {pool_summary(port)}"})
        if cold_pass:
            # the same server, every request to the hottest model: routing cost apart from lost batching
            one = write_requests(folder / "multi-one.txt", predict[:1])
            result = measured(port, one, args)
            rss, hwm = memory_mb(process.pid)
            rows.append({"variant": f"{label}, {entries[0]['name']} only", **result, "rss_mb": rss, "hwm_mb": hwm,
                         "notes": f"/models/{entries[0]['name']}/predict only (diagnostic)"})
        if args.v2:
            infer = [(f"/v2/models/{e['name']}/infer", v2_body(e)) for e in entries]
            result = measured(port, write_requests(folder / "multi-v2.txt", infer), args, count_evictions=True)
            rss, hwm = memory_mb(process.pid)
            rows.append({"variant": f"{label}, V2", **result, "rss_mb": rss, "hwm_mb": hwm,
                         "notes": f"/v2/models/{{name}}/infer, {evicted(result)}; {pool_summary(port)}"})
    finally:
        halt(process)
    return rows


def evicted(result: dict[str, Any]) -> str:
    found = result.get("evictions")
    return "evictions not counted" if found is None else f"{found:.0f} evictions ({found / (result['requests'] or 1):.0%} of requests)"


def pool_summary(port: int) -> str:
    """What ``GET /models`` says about the budget, in a few words."""
    status, data = get(port, "/models")
    if status != 200:
        return f"GET /models: {status}"
    found = json.loads(data)
    loaded = found.get("loaded") or []
    footprints = [m.get("footprint_bytes") or 0 for m in loaded]
    return (f"{len(loaded)} loaded (max {found.get('max_models')}), estimated "
            f"{found.get('memory_used_bytes', 0) / 2**20:.1f} of {found.get('memory_budget_bytes', 0) / 2**20:.0f} MB"
            + (f", {statistics.median(footprints) / 1024:.0f} KB per model" if footprints else ""))


def mlserver_venv(venv: Path, log: Path) -> tuple[Path | None, str]:
    """MLServer's own virtualenv (created on first use): its ``mlserver`` and its versions, or None and why."""
    mlserver = venv / "bin" / "mlserver"
    if not mlserver.exists():
        print(f"# installing MLServer into {venv} (once)", flush=True)
        import sklearn

        base = getattr(sys, "_base_executable", sys.executable)
        with log.open("w") as out:
            steps = [[base, "-m", "venv", str(venv)],
                     [str(venv / "bin" / "pip"), "install", "mlserver", "mlserver-sklearn",
                      f"scikit-learn=={sklearn.__version__}"]]  # the pickles need the scikit-learn that wrote them
            for step in steps:
                if subprocess.run(step, stdout=out, stderr=subprocess.STDOUT, timeout=1800).returncode != 0:
                    return None, f"`{' '.join(step[-4:])}` failed: {log.read_text()[-1500:]}"
    versions = subprocess.run([str(venv / "bin" / "python"), "-c",
                               "from importlib.metadata import version as v; print(', '.join(f'{p} {v(p)}' for p in "
                               "('mlserver', 'mlserver-sklearn', 'scikit-learn', 'pandas', 'uvicorn')))"],
                              capture_output=True, text=True, timeout=120)
    return mlserver, versions.stdout.strip()


def run_mlserver(args: argparse.Namespace, folder: Path, entries: list[dict[str, Any]], env: dict[str, str],
                 details: list[str]) -> tuple[list[dict[str, Any]], str]:
    mlserver, versions = mlserver_venv(args.mlserver_venv, folder / "mlserver-pip.log")
    if mlserver is None:
        return [], f"MLServer did not install: {versions}"
    repository = folder / "mlserver"
    port = free_port()
    settings = {"debug": False, "host": "127.0.0.1", "http_port": port, "grpc_port": free_port(),
                "metrics_port": free_port(), "parallel_workers": args.mlserver_workers,
                "load_models_at_startup": True}
    (repository / "settings.json").write_text(json.dumps(settings))
    process, seconds = launch([str(mlserver), "start", str(repository)], port, "/v2/health/ready",
                              folder / "mlserver.log", env, timeout=600)
    rows: list[dict[str, Any]] = []
    try:
        index = json.loads(get(port, "/v2/repository/index", "POST", b"{}")[1] or b"[]")
        ready = sum(1 for model in index if model.get("state") == "READY")
        rss, hwm = memory_mb(process.pid)
        details.append(f"mlserver: {versions}; parallel_workers {args.mlserver_workers}; started with "
                       f"{ready}/{len(entries)} models READY in {seconds:.1f} s (all loaded at start), RSS then "
                       f"{rss:.0f} MB")
        print(f"#   {details[-1]}", flush=True)
        status, answer = get(port, f"/v2/models/{entries[0]['name']}/infer", "POST",
                             json.dumps(v2_body(entries[0], ["predict", "predict_proba"])).encode())
        if status != 200:
            return rows, f"MLServer cannot serve these models: {status} {answer[:1500].decode(errors='replace')}"
        details.append(f"mlserver: {mlserver_cold_loads(port, entries, args.cold_samples)}")
        print(f"#   {details[-1]}", flush=True)
        for outputs in (["predict", "predict_proba"], ["predict"]):
            lines = [(f"/v2/models/{e['name']}/infer", v2_body(e, outputs)) for e in entries]
            result = measured(port, write_requests(folder / "mlserver.txt", lines), args)
            rss, hwm = memory_mb(process.pid)
            touched = expected_distinct(len(entries), args.zipf_s, result["requests"])
            rows.append({"variant": f"mlserver, outputs {' + '.join(outputs)}", **result, "rss_mb": rss,
                         "hwm_mb": hwm, "notes": f"/v2/models/{{name}}/infer, ~{touched:.0f} models drawn; "
                                                 f"all {len(entries)} loaded"})
    finally:
        halt(process)
    return rows, ""


def mlserver_cold_loads(port: int, entries: list[dict[str, Any]], samples: int) -> str:
    """Unload ``samples`` models, then time loading each back through the repository API (and its first infer)."""
    step = max(1, len(entries) // samples)
    chosen = entries[::step][:samples]
    loads, firsts = [], []
    for entry in chosen:
        get(port, f"/v2/repository/models/{entry['name']}/unload", "POST", b"{}")
    for entry in chosen:
        started = time.perf_counter()
        status, answer = get(port, f"/v2/repository/models/{entry['name']}/load", "POST", b"{}")
        loads.append((time.perf_counter() - started) * 1000)
        if status != 200:
            return f"repository load failed: {status} {answer[:300]!r}"
        started = time.perf_counter()
        get(port, f"/v2/models/{entry['name']}/infer", "POST", json.dumps(v2_body(entry, ["predict"])).encode())
        firsts.append((time.perf_counter() - started) * 1000)
    return (f"cold load of one model (unload, then POST /v2/repository/models/{{name}}/load, {len(loads)} models): "
            f"median {statistics.median(loads):.1f} ms, max {max(loads):.1f} ms, first infer after it median "
            f"{statistics.median(firsts):.1f} ms (each load lists and parses every model-settings.json of the "
            "repository: mlserver.repository.ModelRepository.find)")


# -- main ---------------------------------------------------------------------------------


def table(rows: list[dict[str, Any]]) -> None:
    print("| variant | req/s | p50 ms | p90 ms | p99 ms | errors | RSS MB (peak) | notes |")
    print("|---|---:|---:|---:|---:|---:|---:|---|")
    for row in rows:
        print(f"| {row['variant']} | {row['rps']:.0f} | {row['p50_ms']:.1f} | {row['p90_ms']:.1f} | "
              f"{row['p99_ms']:.1f} | {row['errors']} | {row['rss_mb']:.0f} ({row['hwm_mb']:.0f}) | {row['notes']} |")


def main(args: argparse.Namespace) -> None:
    if shutil.which("wrk") is None:
        sys.exit("wrk is required (apt-get install -y wrk): its Lua hooks draw each request's model")
    own = args.workdir is None
    workdir = Path(tempfile.mkdtemp(prefix="mlops-bench-many-")) if own else args.workdir.resolve()
    folder = workdir / f"build-{args.models}x{args.rows}-seed{args.seed}-v{BUILD_FORMAT}"
    env = {**os.environ, "AIRFLOW_HOME": str(workdir), "MLOPS_AIRFLOW_REGISTRY_URI": str(folder / "registry"),
           # one native thread in every server (ours sets these itself from --threads)
           "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    os.environ.update({k: env[k] for k in ("AIRFLOW_HOME", "MLOPS_AIRFLOW_REGISTRY_URI")})
    multi = {"on": True, "off": False}.get(args.multi) if args.multi != "auto" else multi_model_supported()
    print(f"# {platform.node()}: {os.cpu_count()} cores, Python {platform.python_version()}, load average "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}; wrk, {args.connections} connections, {args.warmup} s "
          f"warm-up + {args.duration} s; Zipf s={args.zipf_s} over {args.models} models, seed {args.seed}; "
          f"multi-model server: {'yes' if multi else 'not available yet (serve --help has no --max-models)'}",
          flush=True)
    rows: list[dict[str, Any]] = []
    notes: list[str] = []
    details: list[str] = []
    try:
        info = build(folder, args.models, args.rows, args.seed)
        print(f"# built {args.models} models ({args.rows} rows each) in {info['seconds']:.0f} s: model 0 through "
              f"the whole pipeline (validate, train, gate, register) {info['pipeline_seconds']:.2f} s; the others "
              f"train + register, median {(info['fast_median_seconds'] or 0) * 1000:.0f} ms each", flush=True)
        entries = json.loads((folder / "requests.json").read_text())
        if args.only in (None, "ours"):
            rows.append(run_single(args, folder, entries, env, "single"))
            print(f"#   single: {rows[-1]['rps']:.0f} req/s, p99 {rows[-1]['p99_ms']:.1f} ms", flush=True)
            if multi:
                rows += run_multi(args, folder, entries, env, args.models, "multi, hot set fits", details,
                                  cold_pass=True)
                if args.evict_max_models < args.models:
                    rows += run_multi(args, folder, entries, env, args.evict_max_models,
                                      f"multi, max-models {args.evict_max_models}", details, cold_pass=False)
                rows.append(run_single(args, folder, entries, env, "single (again)"))
            else:
                notes.append("multi-model rows wait for `serve --max-models` (the multi-model server)")
        if args.only in (None, "mlserver") and not args.no_mlserver:
            found, why = run_mlserver(args, folder, entries, env, details)
            rows += found
            if why:
                notes.append(why)
    finally:
        for process in list(RUNNING):
            halt(process)
        if own and not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    print()
    print(f"load average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    table(rows)
    singles = [row["p99_ms"] for row in rows if row["variant"].startswith("single")]
    hot = next((row for row in rows if row["variant"] == "multi, hot set fits"), None)
    if singles and hot:
        reference = statistics.mean(singles)
        print(f"\np99 multi (hot set fits) / single: {hot['p99_ms']:.1f} / {reference:.1f} ms = "
              f"{hot['p99_ms'] / reference:.2f}x (target <= 1.5x; single = mean of {len(singles)} runs)")
    for line in details + notes:
        print(f"- {line}")
    if not own or args.keep:
        print(f"kept: {workdir}")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", type=int, default=1000)
    parser.add_argument("--rows", type=int, default=400, help="training rows per model")
    parser.add_argument("--duration", type=int, default=20, help="seconds of each measured wrk run")
    parser.add_argument("--warmup", type=int, default=3, help="seconds of wrk before each measured run")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--zipf-s", type=float, default=1.1)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--multi", choices=["auto", "on", "off"], default="auto",
                        help="measure the multi-model server (auto: if `serve --help` lists --max-models)")
    parser.add_argument("--memory-budget-mb", type=int, default=2048, help="the multi-model server's budget")
    parser.add_argument("--evict-max-models", type=int, default=100,
                        help="--max-models of the eviction run (skipped if >= --models)")
    parser.add_argument("--no-v2", dest="v2", action="store_false", help="skip our V2 endpoint")
    parser.add_argument("--cold-samples", type=int, default=20, help="models whose load MLServer times")
    parser.add_argument("--no-mlserver", action="store_true")
    parser.add_argument("--mlserver-venv", type=Path, default=MLSERVER_VENV)
    parser.add_argument("--mlserver-workers", type=int, default=0, help="MLServer's parallel_workers")
    parser.add_argument("--only", choices=["ours", "mlserver"])
    parser.add_argument("--workdir", type=Path, help="keep the models here and reuse them on the next run")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    return parser.parse_args()


def _terminate(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt  # the clean-up in main's `finally` stops every server started


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, _terminate)
    try:
        main(parse_args())
    except KeyboardInterrupt:
        sys.exit("interrupted: every server this run started has been stopped")
