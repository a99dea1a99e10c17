"""Import cost of KubernetesTrainOperator, the one operator module allowed to import heavy clients.

Each sample is a fresh Python process timing one import: our module
(`mlops_airflow.operators.kubernetes_train`), the provider's `KubernetesPodOperator` module
it subclasses, and a plain operator module of ours (`mlops_airflow.operators.train`) as the
reference every other task pays. The three are measured alternately in the same run; the
medians are printed side by side. Usage: python bench/pod_operator_import.py [--runs N]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

MODULES = {
    "ours: operators.kubernetes_train": "mlops_airflow.operators.kubernetes_train",
    "provider: cncf.kubernetes.operators.pod": "airflow.providers.cncf.kubernetes.operators.pod",
    "plain: operators.train": "mlops_airflow.operators.train",
}
PROBE = """
import importlib, json, sys, time
start = time.perf_counter()
importlib.import_module(sys.argv[1])
elapsed = time.perf_counter() - start
heavy = [m for m in ("pandas", "sklearn", "great_expectations", "boto3", "kubernetes", "mlflow") if m in sys.modules]
print(json.dumps({"seconds": elapsed, "modules": len(sys.modules), "heavy": heavy}))
"""


def measure(module: str, env: dict[str, str]) -> dict[str, object]:
    out = subprocess.run([sys.executable, "-c", PROBE, module], capture_output=True, text=True, env=env, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    env = {**os.environ, "AIRFLOW_HOME": tempfile.mkdtemp(prefix="bench-airflow-home-"),
           "AIRFLOW__CORE__LOAD_EXAMPLES": "False"}
    for module in MODULES.values():  # warm the OS file cache once, for all alike
        measure(module, env)
    samples: dict[str, list[float]] = {name: [] for name in MODULES}
    facts: dict[str, dict[str, object]] = {}
    for _ in range(args.runs):
        for name, module in MODULES.items():
            result = measure(module, env)
            samples[name].append(float(result["seconds"]))  # type: ignore[arg-type]
            facts[name] = result
    print(f"cold import time, median of {args.runs} fresh processes each (Python {sys.version.split()[0]}, {os.cpu_count()} cores)")
    print(f"{'module':<42} {'median ms':>10} {'min ms':>8} {'max ms':>8} {'modules':>8}  heavy imports")
    for name, values in samples.items():
        print(f"{name:<42} {statistics.median(values) * 1000:>10.0f} {min(values) * 1000:>8.0f} "
              f"{max(values) * 1000:>8.0f} {facts[name]['modules']:>8}  {', '.join(facts[name]['heavy']) or 'none'}")  # type: ignore[arg-type]
    ours, provider, plain = (statistics.median(v) for v in samples.values())
    print(f"ours vs provider: {(ours - provider) * 1000:+.0f} ms; ours vs plain operator: {(ours - plain) * 1000:+.0f} ms "
          f"({ours / plain:.2f}x)")


if __name__ == "__main__":
    main()
