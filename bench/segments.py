"""Many models: 50 segments in one `airflow dags test` run against the same work in a plain Python loop.

Both sides train one model per segment of the same 50-segment dataset (the two sample months,
8,000 rows, with a `store` column cutting them into 50 stores of 160 rows), each with the
same validation spec, estimator and default gate, into fresh registries:

- Airflow: `airflow dags test mlops_per_segment_training` in a subprocess (its metadata DB
  migrated beforehand, untimed): split, then the mapped validate -> train -> evaluate ->
  register -> deploy chain for every segment, then the summary;
- loop: the same pipeline functions called one after another in this process.

The difference is what Airflow's orchestration costs per task. Usage: python bench/segments.py [--segments N]
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

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
SPEC = REPO / "include" / "trips_validation.yaml"
ESTIMATOR = {"estimator": "sklearn.linear_model.LogisticRegression", "estimator_params": {"max_iter": 500}}


def make_data(folder: Path, segments: int) -> str:
    import pandas as pd

    frame = pd.concat([pd.read_csv(p) for p in sorted((REPO / "include" / "data").glob("trips_2026_*.csv"))])
    frame["store"] = [f"s{i % segments:02d}" for i in frame["trip_id"]]
    path = folder / "stores.csv"
    frame.to_csv(path, index=False)
    return str(path)


def run_airflow(data_uri: str, home: Path, segments: int) -> tuple[float, dict[str, object]]:
    env = {**os.environ, "AIRFLOW_HOME": str(home), "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
           "AIRFLOW__CORE__LOAD_EXAMPLES": "False", "MLOPS_AIRFLOW_REGISTRY_URI": str(home / "registry"),
           "GX_ANALYTICS_ENABLED": "false"}
    subprocess.run([str(BIN / "airflow"), "db", "migrate"], env=env, check=True, capture_output=True)
    conf = {"data_uri": data_uri, "segment_column": "store", "model_prefix": "store_", "validation": str(SPEC),
            **ESTIMATOR}
    started = time.perf_counter()
    proc = subprocess.run([str(BIN / "airflow"), "dags", "test", "mlops_per_segment_training", "-c", json.dumps(conf)],
                          env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if proc.returncode:
        sys.exit(f"airflow dags test failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    runs = sorted((home / "registry" / "_segments" / "runs").glob("*.json"))
    record = json.loads(runs[-1].read_text())
    return elapsed, {k: len(record[k]) for k in ("promoted", "kept", "failed")}


def run_loop(data_uri: str, root: Path) -> tuple[float, dict[str, object]]:
    from mlops_airflow.pipeline.deploy import run_deployment
    from mlops_airflow.pipeline.evaluate import run_evaluation
    from mlops_airflow.pipeline.register import run_registration
    from mlops_airflow.pipeline.segments import split_segments
    from mlops_airflow.pipeline.train import run_training
    from mlops_airflow.pipeline.validate import run_validation
    from mlops_airflow.registry import open_registry

    registry = open_registry(str(root / "registry"))
    counts = {"promoted": 0, "kept": 0, "failed": 0}
    started = time.perf_counter()
    segments, _ = split_segments(registry, data_uri=data_uri, segment_column="store", model_prefix="store_")
    for segment in segments:
        name = segment["model_name"]
        try:
            summary = run_validation(registry, model_name=name, data_uri=segment["data_uri"], target="tipped",
                                     validation=str(SPEC))
            candidate = run_training(registry, model_name=name, dataset_uri=summary["dataset_uri"], target="tipped",
                                     row_key="trip_id", **ESTIMATOR)  # type: ignore[arg-type]
            verdict = run_evaluation(registry, model_name=name, candidate_sha256=candidate["sha256"])
            if not verdict["blessed"]:
                counts["kept"] += 1
                continue
            manifest = run_registration(registry, model_name=name, candidate_sha256=candidate["sha256"],
                                        verdict_uri=verdict["verdict_uri"], idempotency_key=f"loop/{name}")
            run_deployment(registry, model_name=name, version=manifest["version"], verdict_uri=verdict["verdict_uri"],
                           target=None, by="bench")
            counts["promoted"] += 1
        except Exception:  # noqa: BLE001 - a failing segment must not stop the others, as in the DAG
            counts["failed"] += 1
    return time.perf_counter() - started, counts  # type: ignore[return-value]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--segments", type=int, default=50)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="bench-segments-"))
    os.environ["GX_ANALYTICS_ENABLED"] = "false"
    data_uri = make_data(folder, args.segments)
    loop_s, loop_counts = run_loop(data_uri, folder / "loop")
    airflow_s, airflow_counts = run_airflow(data_uri, folder / "airflow", args.segments)
    tasks = 5 * args.segments + 2
    print(f"{args.segments} segments, 160 rows each (Python {sys.version.split()[0]}, {os.cpu_count()} cores, "
          f"load average {os.getloadavg()[0]:.1f})")
    print(f"{'variant':<44} {'wall s':>8} {'per segment s':>14}  outcomes")
    print(f"{'airflow dags test (' + str(tasks) + ' task instances)':<44} {airflow_s:>8.1f} "
          f"{airflow_s / args.segments:>14.2f}  {airflow_counts}")
    print(f"{'plain Python loop over the pipeline functions':<44} {loop_s:>8.1f} {loop_s / args.segments:>14.2f}  {loop_counts}")
    print(f"Airflow overhead: {airflow_s - loop_s:+.1f} s ({airflow_s / loop_s:.2f}x the loop, "
          f"{(airflow_s - loop_s) / tasks * 1000:.0f} ms per task instance)")


if __name__ == "__main__":
    main()
