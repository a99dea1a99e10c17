"""Airflow parses DAG files in the DAG processor and again at every task start: keep that cheap."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from mlops_airflow.provider import get_provider_info

REPO = Path(__file__).resolve().parents[3]
HEAVY = ("pandas", "sklearn", "great_expectations", "boto3", "kubernetes", "mlflow")
PROBE = """
import importlib, importlib.util, json, sys
target = sys.argv[1]
if target.endswith(".py"):
    spec = importlib.util.spec_from_file_location("dag_under_test", target)
    spec.loader.exec_module(importlib.util.module_from_spec(spec))
else:
    module = importlib.import_module(target)
    if target == "mlops_airflow.provider":
        module.get_provider_info()
print(json.dumps(sorted(name for name in HEAVY_NAMES if name in sys.modules)))
""".replace("HEAVY_NAMES", repr(HEAVY))


def heavy_imports(target: str) -> list[str]:
    out = subprocess.run([sys.executable, "-c", PROBE, target], capture_output=True, text=True, timeout=120, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("dag_file", sorted(str(p) for p in (REPO / "dags").glob("*.py")))
def test_parsing_a_dag_file_imports_nothing_heavy(dag_file: str) -> None:
    assert heavy_imports(dag_file) == []


@pytest.mark.parametrize(
    "module",
    [
        "mlops_airflow",
        "mlops_airflow.provider",
        "mlops_airflow.cli",
        # every operator, sensor, hook and trigger module Airflow is told about, so a new one is covered too
        *(module for group in ("operators", "sensors", "hooks", "triggers")
          for module in get_provider_info()[group][0]["python-modules"]),
        "mlops_airflow.operators.links",
        "mlops_airflow.plugins.plugin",
    ],
)
def test_operator_hook_and_package_modules_import_nothing_heavy(module: str) -> None:
    assert heavy_imports(module) == []


def test_the_probe_would_notice_a_heavy_import() -> None:
    assert heavy_imports("mlops_airflow.training.train") == []  # lazy inside functions...
    assert "pandas" in heavy_imports("pandas")  # ...and the probe does see a real one


def test_the_pod_training_operator_is_the_named_exception() -> None:
    # Subclassing the provider's KubernetesPodOperator loads the kubernetes client (bench/pod_operator_import.py);
    # it must stay that module's cost alone, never the other operators' or a DAG's that does not train in pods.
    assert heavy_imports("mlops_airflow.operators.kubernetes_train") == ["kubernetes"]
