"""Cold parse time of the example DAG file against an EmptyOperator DAG of the same shape.

Each measurement is a fresh Python process (as the DAG processor and every task start
see it) that times importing and executing the DAG file, Airflow's own import included.
The two files are measured alternately in the same run; the medians are printed side by
side. Usage: python bench/parse_time.py [--runs N]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
FILES = {
    "mlops_continuous_training.py (ours)": REPO / "dags" / "mlops_continuous_training.py",
    "empty_twin_dag.py (EmptyOperators)": REPO / "bench" / "empty_twin_dag.py",
}
PROBE = """
import importlib.util, json, sys, time
start = time.perf_counter()
spec = importlib.util.spec_from_file_location("dag_under_test", sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
elapsed = time.perf_counter() - start
heavy = [m for m in ("pandas", "sklearn", "great_expectations", "boto3", "kubernetes", "mlflow") if m in sys.modules]
print(json.dumps({"seconds": elapsed, "tasks": len(module.dag.task_ids), "heavy": heavy}))
"""


def measure(path: Path, env: dict[str, str]) -> dict[str, object]:
    out = subprocess.run([sys.executable, "-c", PROBE, str(path)], capture_output=True, text=True, env=env, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    home = tempfile.mkdtemp(prefix="bench-airflow-home-")
    env = {**os.environ, "AIRFLOW_HOME": home, "AIRFLOW__CORE__LOAD_EXAMPLES": "False"}
    measure(FILES[next(iter(FILES))], env)  # warm the OS file cache once, for both alike
    samples: dict[str, list[float]] = {name: [] for name in FILES}
    facts: dict[str, dict[str, object]] = {}
    for _ in range(args.runs):
        for name, path in FILES.items():
            result = measure(path, env)
            samples[name].append(float(result["seconds"]))  # type: ignore[arg-type]
            facts[name] = result
    print(f"cold parse time, median of {args.runs} fresh processes each (Python {sys.version.split()[0]}, {os.cpu_count()} cores)")
    print(f"{'file':<40} {'median ms':>10} {'min ms':>8} {'max ms':>8} {'tasks':>6}  heavy imports")
    for name, values in samples.items():
        print(f"{name:<40} {statistics.median(values) * 1000:>10.0f} {min(values) * 1000:>8.0f} "
              f"{max(values) * 1000:>8.0f} {facts[name]['tasks']:>6}  {', '.join(facts[name]['heavy']) or 'none'}")  # type: ignore[arg-type]
    ours, twin = (statistics.median(v) for v in samples.values())
    print(f"difference: {(ours - twin) * 1000:+.0f} ms ({ours / twin:.2f}x the EmptyOperator twin)")


if __name__ == "__main__":
    main()
