"""Batch scoring: our chunked, validated, published scoring against the naive whole-file predict.

The reference is what a notebook does: ``pd.read_csv`` of the whole file, ``predict`` and
``predict_proba`` on all of it, one ``to_parquet``: no validation, no chunks, no manifest.
Ours reads ``--chunk-rows`` rows at a time, checks every value with the model server's rules,
writes a part per chunk and publishes ``_SUCCESS``. Each side runs in a fresh process, so its
peak resident memory (``ru_maxrss``) is its own; both score the same file with the same model
in the same run.

    .venv/bin/python bench/batch_scoring.py --rows 400000 --chunk-rows 50000 --repeat 3
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SAMPLE = REPO / "include" / "data"
MODEL = "bench_batch"


def prepare(work: Path, rows: int) -> None:
    """A registered model (trained on the sample) and a ``rows``-row input CSV made from the sample."""
    import pandas as pd

    from mlops_airflow.pipeline.evaluate import run_evaluation
    from mlops_airflow.pipeline.register import run_registration
    from mlops_airflow.pipeline.train import run_training
    from mlops_airflow.pipeline.validate import run_validation
    from mlops_airflow.registry import ModelRegistry
    from mlops_airflow.storage import open_store

    registry = ModelRegistry(open_store(str(work / "registry")))
    summary = run_validation(registry, model_name=MODEL, data_uri=str(SAMPLE / "trips_2026_01.csv"), target="tipped",
                             validation=str(REPO / "include" / "trips_validation.yaml"))
    candidate = run_training(registry, model_name=MODEL, dataset_uri=summary["dataset_uri"], target="tipped",
                             row_key="trip_id")
    verdict = run_evaluation(registry, model_name=MODEL, candidate_sha256=candidate["sha256"])
    manifest = run_registration(registry, model_name=MODEL, candidate_sha256=candidate["sha256"],
                                verdict_uri=verdict["verdict_uri"], idempotency_key="bench")
    registry.set_alias(MODEL, "champion", manifest["version"], expected=None, by="bench", reason="bench")
    sample = pd.read_csv(SAMPLE / "trips_2026_02.csv").drop(columns="tipped")
    frame = sample.sample(n=rows, replace=True, random_state=0).reset_index(drop=True)
    frame["trip_id"] = range(len(frame))
    frame.to_csv(work / "input.csv", index=False)


def worker(side: str, work: Path, chunk_rows: int) -> dict[str, float]:
    import pandas as pd

    from mlops_airflow.registry import ModelRegistry
    from mlops_airflow.serving.loading import feature_names, load_manifest_model
    from mlops_airflow.storage import open_store

    registry = ModelRegistry(open_store(str(work / "registry")))
    started = time.perf_counter()
    if side == "ours":
        from mlops_airflow.pipeline.batch import run_batch_scoring

        result = run_batch_scoring(registry, model_name=MODEL, input_uri=str(work / "input.csv"),
                                   output_uri=str(work / "ours"), id_columns=["trip_id"], chunk_rows=chunk_rows)
        rows = result["rows_out"]
    else:
        loaded = load_manifest_model(registry, registry.resolve(MODEL, alias="champion"))
        frame = pd.read_csv(work / "input.csv")
        features = frame[feature_names(loaded.feature_schema)]
        out = frame[["trip_id"]].copy()
        out["prediction"] = loaded.model.predict(features)
        probabilities = loaded.model.predict_proba(features)
        for index, label in enumerate(loaded.classes or []):
            out[f"probability_{label}"] = probabilities[:, index]
        out.to_parquet(work / "naive.parquet", index=False)
        rows = len(out)
    seconds = time.perf_counter() - started
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"seconds": seconds, "rows": rows, "peak_mb": peak_mb}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=400_000)
    parser.add_argument("--chunk-rows", type=int, default=50_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--worker", choices=["ours", "naive"])
    parser.add_argument("--work")
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, Path(args.work), args.chunk_rows)))
        return
    with tempfile.TemporaryDirectory(prefix="bench-batch-") as tmp:
        work = Path(tmp)
        prepare(work, args.rows)
        size_mb = (work / "input.csv").stat().st_size / 2**20
        print(f"input: {args.rows} rows, {size_mb:.1f} MB CSV; chunk_rows={args.chunk_rows}")
        runs: dict[str, list[dict[str, float]]] = {"naive": [], "ours": []}
        for _ in range(args.repeat):  # alternate the sides, so a busy moment of the machine hits both
            for side in runs:
                out = subprocess.run([sys.executable, __file__, "--worker", side, "--work", str(work),
                                      "--chunk-rows", str(args.chunk_rows)], capture_output=True, text=True, check=True)
                runs[side].append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(f"best of {args.repeat} runs each, alternated")
        print(f"{'side':<40} {'seconds':>8} {'rows/s':>10} {'peak RSS MB':>12}")
        labels = {"naive": "naive whole-file predict (reference)", "ours": "BatchPredict core (ours)"}
        for side, figures_list in runs.items():
            figures = min(figures_list, key=lambda f: f["seconds"])
            peak = max(f["peak_mb"] for f in figures_list)
            print(f"{labels[side]:<40} {figures['seconds']:>8.1f} {figures['rows'] / figures['seconds']:>10.0f}"
                  f" {peak:>12.0f}")


if __name__ == "__main__":
    main()
