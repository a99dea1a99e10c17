"""`mlops-airflow init` puts the example DAGs and their include/ files into a deployment."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

from testsupport import REPO

from mlops_airflow.cli import main


def test_init_copies_dags_and_include_and_the_copy_parses(tmp_path: Path) -> None:
    dags = tmp_path / "dags"
    assert main(["init", str(dags)]) == 0
    assert (dags / "mlops_continuous_training.py").is_file()
    assert (dags / "include" / "trips_validation.yaml").is_file()
    assert (dags / "include" / "data" / "trips_2026_01.csv").is_file()
    # The copied DAG finds its include/ folder next to itself.
    probe = (
        "import importlib.util, sys; s = importlib.util.spec_from_file_location('d', sys.argv[1]); "
        "m = importlib.util.module_from_spec(s); s.loader.exec_module(m); print(m.dag.params['data_uri'])"
    )
    out = subprocess.run([sys.executable, "-c", probe, str(dags / "mlops_continuous_training.py")],
                         capture_output=True, text=True, check=True, timeout=120)
    assert out.stdout.strip().splitlines()[-1] == str(dags / "include" / "data" / "trips_2026_01.csv")


def test_init_keeps_existing_files_unless_forced(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    dag = tmp_path / "mlops_continuous_training.py"
    dag.write_text("# my edited copy\n")
    assert main(["init", str(tmp_path)]) == 0
    assert dag.read_text() == "# my edited copy\n"
    assert "skip" in capsys.readouterr().out
    assert main(["init", str(tmp_path), "--force"]) == 0
    assert "mlops_continuous_training" in dag.read_text()


def test_the_wheel_ships_dags_and_include(tmp_path: Path) -> None:
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(REPO)],
                   check=True, capture_output=True, timeout=300)
    wheel = next(tmp_path.glob("mlops_airflow-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "mlops_airflow/_bundled/dags/mlops_continuous_training.py" in names
    assert "mlops_airflow/_bundled/include/trips_validation.yaml" in names
    assert "mlops_airflow/_bundled/include/data/trips_2026_02.csv" in names
    assert "mlops_airflow/_bundled/include/k8s/deployment.yaml" in names
    # pyproject lists packages explicitly: a new subpackage left out of it would vanish from the wheel.
    sources = {p.relative_to(REPO).as_posix() for p in (REPO / "mlops_airflow").rglob("*.py")}
    assert sources - names == set()
    assert "mlops_airflow/py.typed" in names

