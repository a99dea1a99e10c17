"""Mass production: thousands of per-segment models in one `airflow dags test` run, against the bare floor.

The data: N synthetic segments (default 3,000 servers), 300-1,000 rows each, a binary
label whose relation to the features differs by segment (each segment has its own means,
spreads and coefficients), one categorical feature and a row key.

- ours: `airflow dags test mlops_per_segment_training` in a subprocess (metadata DB migrated
  beforehand, untimed) with a model server for every model (`mlops-airflow serve`) running, so
  each segment is validated (the table once), trained through the cascade, gated, registered,
  promoted and confirmed served by that server;
- floor: the same fits and predictions in a bare scikit-learn loop in this process: for each
  segment, the same holdout split, and for each architecture our run tried on it (from the run
  record) the same pipeline (our default preprocessing + the estimator) fitted on the training
  rows, then `predict` and `predict_proba` on the holdout. No validation, gate, storage or serving.

Usage: python bench/segments.py [--segments 3000] [--segments-per-task 0] [--floor-sample 300]
(--floor-sample N times the floor on N segments and scales it; 0 times all of them).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
sys.path.insert(0, str(REPO / "tests"))


def make_data(folder: Path, segments: int, seed: int = 7) -> str:
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    parts = []
    for number in range(segments):
        rows = int(rng.integers(300, 1001))
        cpu = rng.normal(rng.uniform(20, 70), rng.uniform(5, 15), rows).clip(0, 100)
        mem = rng.normal(rng.uniform(30, 80), rng.uniform(5, 20), rows).clip(0, 100)
        latency = rng.lognormal(rng.uniform(2, 4), 0.5, rows)
        disk = rng.choice(["ssd", "hdd", "nvme"], rows, p=rng.dirichlet([2, 2, 2]))
        weights = rng.normal(0, 1, 3)
        score = (weights[0] * (cpu - cpu.mean()) / cpu.std() + weights[1] * (mem - mem.mean()) / mem.std()
                 + weights[2] * (np.log(latency) - np.log(latency).mean()) + 0.5 * (disk == "hdd")
                 + rng.normal(0, 1, rows))
        anomaly = (score > np.quantile(score, rng.uniform(0.7, 0.9))).astype(int)
        parts.append(pd.DataFrame({"server": f"srv{number:05d}", "cpu": cpu.round(2), "mem": mem.round(2),
                                   "latency_ms": latency.round(2), "disk": disk, "anomaly": anomaly}))
    frame = pd.concat(parts, ignore_index=True)
    frame.insert(0, "sample_id", np.arange(len(frame)))
    path = folder / "servers.parquet"
    frame.to_parquet(path, index=False)
    return str(path)


SPEC = {"columns": {"cpu": {"type": "number", "min": 0, "max": 100}, "mem": {"type": "number", "min": 0, "max": 100},
                    "latency_ms": {"type": "number", "min": 0}, "disk": {"type": "string", "allowed": ["ssd", "hdd", "nvme"]},
                    "anomaly": {"type": "integer", "allowed": [0, 1]}}}


def run_airflow(data_uri: str, home: Path, segments_per_task: int, workers: int) -> tuple[float, dict[str, Any], dict[str, Any]]:
    from testsupport import ServerProcess, free_port

    registry = home / "registry"
    env = {**os.environ, "AIRFLOW_HOME": str(home), "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
           "AIRFLOW__CORE__LOAD_EXAMPLES": "False", "MLOPS_AIRFLOW_REGISTRY_URI": str(registry),
           "GX_ANALYTICS_ENABLED": "false"}
    subprocess.run([str(BIN / "airflow"), "db", "migrate"], env=env, check=True, capture_output=True)
    port = free_port()
    server = ServerProcess([str(BIN / "mlops-airflow"), "--registry", str(registry), "serve", "--port", str(port),
                            "--log-level", "warning"], port, home / "server.log", env=env)
    try:
        server.wait_healthy()
        env["MLOPS_AIRFLOW_SERVER_URL"] = server.url
        conf = {"data_uri": data_uri, "segment_column": "server", "model_prefix": "srv_", "target": "anomaly",
                "row_key": "sample_id", "validation": SPEC, "segments_per_task": segments_per_task, "workers": workers}
        started = time.perf_counter()
        proc = subprocess.run([str(BIN / "airflow"), "dags", "test", "mlops_per_segment_training", "-c", json.dumps(conf)],
                              env=env, capture_output=True, text=True)
        elapsed = time.perf_counter() - started
        (home / "dags-test.log").write_text(proc.stdout + proc.stderr)
        if proc.returncode:
            sys.exit(f"airflow dags test failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
        runs = sorted((registry / "_segments" / "runs").glob("*.json"))
        record = json.loads(runs[-1].read_text())
        import httpx

        status = httpx.get(f"{server.url}/models", timeout=60).json()
        served = {"loaded": len(status["loaded"]), "memory_mb": status["memory_used_bytes"] / 2**20}
    finally:
        server.stop()
    return elapsed, record, served


def run_floor(data_uri: str, record: dict[str, Any], sample: int) -> tuple[float, int]:
    """The same fits and predictions, bare: seconds for the segments timed, and how many."""
    import pandas as pd
    from sklearn.pipeline import Pipeline

    from mlops_airflow.data.split import hash_split
    from mlops_airflow.pipeline.segments import check_architectures
    from mlops_airflow.training.estimators import make_estimator, resolve_estimator
    from mlops_airflow.training.preprocessing import default_preprocessor

    frame = pd.read_parquet(data_uri)
    cascade = {a["name"]: a for a in check_architectures(None)}
    trained = [(name, o) for name, o in sorted(record["segments"].items()) if o.get("attempts")]
    if sample:
        trained = trained[:: max(1, len(trained) // sample)][:sample]
    groups = dict(iter(frame.groupby("server")))
    started = time.perf_counter()
    for name, outcome in trained:
        part = groups[name].drop(columns=["server"]).reset_index(drop=True)
        split = hash_split(part, target="anomaly", key="sample_id", fraction=0.2)
        train, holdout = part.iloc[split.train], part.iloc[split.holdout]
        X, y = train.drop(columns=["anomaly", "sample_id"]), train["anomaly"]
        X_holdout = holdout.drop(columns=["anomaly", "sample_id"])
        for attempt in outcome["attempts"]:
            architecture = cascade[attempt["architecture"]]
            estimator = make_estimator(resolve_estimator(architecture["estimator"]), architecture.get("estimator_params"))
            model = Pipeline([("preprocess", default_preprocessor(X)), ("estimator", estimator)]).fit(X, y)
            model.predict(X_holdout)
            model.predict_proba(X_holdout)
    return time.perf_counter() - started, len(trained)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--segments", type=int, default=3000)
    parser.add_argument("--segments-per-task", type=int, default=0, help="0: the DAG's default (about 50 tasks)")
    parser.add_argument("--floor-sample", type=int, default=300)
    parser.add_argument("--workers", type=int, default=2, help="segments trained at once per task (the DAG's workers)")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="bench-segments-"))
    os.environ["GX_ANALYTICS_ENABLED"] = "false"
    data_uri = make_data(folder, args.segments)
    import pandas as pd

    rows = len(pd.read_parquet(data_uri, columns=["server"]))
    load_before = os.getloadavg()[0]
    ours, record, served = run_airflow(data_uri, folder / "airflow", args.segments_per_task, args.workers)
    floor_s, timed = run_floor(data_uri, record, args.floor_sample)
    trained = sum(1 for o in record["segments"].values() if o.get("attempts"))
    floor_total = floor_s * trained / max(timed, 1)
    attempts = sum(len(o.get("attempts") or []) for o in record["segments"].values())
    print(f"{args.segments} segments, {rows} rows ({rows / args.segments:.0f} a segment), Python "
          f"{sys.version.split()[0]}, {os.cpu_count()} cores, load average {load_before:.1f} before / "
          f"{os.getloadavg()[0]:.1f} after")
    print(f"outcomes: {len(record['promoted'])} promoted, {len(record['kept'])} kept, {len(record['failed'])} failed; "
          f"{attempts} fits ({attempts / max(trained, 1):.2f} a segment); winners {record['architectures']}; "
          f"model server: {served['loaded']} models loaded, {served['memory_mb']:.0f} MB estimated")
    print(f"{'variant':<62} {'wall s':>8} {'per segment ms':>15}")
    print(f"{'ours: airflow dags test, workers=' + str(args.workers) + ' (validate, cascade, gate, serve)':<62} "
          f"{ours:>8.1f} {ours / args.segments * 1000:>15.1f}")
    basis = f"measured on {timed}, scaled" if timed < trained else "all"
    print(f"{'floor: same fits + predictions, bare loop, 1 process (' + basis + ')':<62} {floor_total:>8.1f} "
          f"{floor_total / max(trained, 1) * 1000:>15.1f}")
    print(f"ratio to the floor: {ours / floor_total:.2f}x; target <= 600 s: {'met' if ours <= 600 else 'NOT met'}; "
          f"task log: {folder / 'airflow' / 'dags-test.log'}")


if __name__ == "__main__":
    main()
