"""Spec Params read only the spec folders, and never echo a file that is not a spec."""

from __future__ import annotations

import re
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from mlops_airflow.evaluation.gate import load_gate_spec
from mlops_airflow.exceptions import ConfigError, GateSpecError, ValidationSpecError
from mlops_airflow.settings import dags_folder
from mlops_airflow.specfiles import resolve_spec_path, spec_roots
from mlops_airflow.validation import load_validation_spec

SECRET = "SECRET-7f3a-do-not-echo"
LOADERS: dict[str, Callable[..., Any]] = {
    "validation": load_validation_spec,
    "gate": lambda ref, base_dir=None: load_gate_spec(ref, base_dir=base_dir),
}
VALID = {"validation": "columns:\n  hour: {type: integer}\n", "gate": "thresholds:\n  roc_auc: {min: 0.7}\n"}


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A deployment: DAGs folder ``project/dags`` with ``include/`` beside it, nothing else allowed."""
    (tmp_path / "project" / "dags").mkdir(parents=True)
    (tmp_path / "project" / "include").mkdir()
    monkeypatch.setenv("AIRFLOW__CORE__DAGS_FOLDER", str(tmp_path / "project" / "dags"))
    monkeypatch.delenv("MLOPS_AIRFLOW_SPEC_ROOTS", raising=False)
    monkeypatch.delenv("AIRFLOW__MLOPS_AIRFLOW__SPEC_ROOTS", raising=False)
    return tmp_path / "project"


@pytest.fixture
def secret_file(tmp_path: Path) -> Path:
    """A worker's file outside the spec folders, as a YAML mapping would leak it most easily."""
    path = tmp_path / "secrets.yaml"
    path.write_text(f"{SECRET}: {SECRET}\n")
    return path


def refusal(param: str, reference: str, base_dir: str | None = None) -> str:
    """The whole printed error, traceback and chained causes included, as a task log would show it."""
    with pytest.raises(GateSpecError if param == "gate" else ValidationSpecError) as info:
        LOADERS[param](reference, base_dir=base_dir)
    text = "".join(traceback.format_exception(info.value))
    assert SECRET not in text
    return str(info.value)


@pytest.mark.parametrize("param", list(LOADERS))
def test_absolute_path_outside_the_spec_folders_is_refused(param: str, project: Path, secret_file: Path) -> None:
    message = refusal(param, str(secret_file))
    assert message.startswith(f"{param}: '{secret_file}' is outside the folders spec files are read from")
    assert str(project / "include") in message and "MLOPS_AIRFLOW_SPEC_ROOTS" in message
    # refused by path alone: a missing file gets the same answer, so the refusal tells nothing about the disk
    assert refusal(param, str(secret_file.with_name("absent.yaml"))).endswith(message.split("):", 1)[1])


@pytest.mark.parametrize("param", list(LOADERS))
def test_dotdot_cannot_leave_the_spec_folders(param: str, project: Path, secret_file: Path) -> None:
    assert "is outside the folders" in refusal(param, "../../secrets.yaml")
    assert "is outside the folders" in refusal(param, str(project / "include" / ".." / ".." / "secrets.yaml"))


@pytest.mark.parametrize("param", list(LOADERS))
def test_symlink_cannot_leave_the_spec_folders(param: str, project: Path, secret_file: Path) -> None:
    (project / "include" / "spec.yaml").symlink_to(secret_file)
    assert "is outside the folders" in refusal(param, "include/spec.yaml")
    assert "is outside the folders" in refusal(param, str(project / "include" / "spec.yaml"))


@pytest.mark.parametrize("param", list(LOADERS))
def test_relative_paths_resolve_against_the_dag_folder(param: str, project: Path) -> None:
    (project / "include" / "spec.yaml").write_text(VALID[param])
    dags = str(project / "dags")
    assert LOADERS[param]("include/spec.yaml", base_dir=dags)  # include/ beside dags/
    assert LOADERS[param]("include/spec.yaml")  # no DAG given: the configured DAGs folder
    (project / "dags" / "include").mkdir()
    (project / "dags" / "include" / "own.yaml").write_text(VALID[param])
    assert LOADERS[param]("include/own.yaml", base_dir=dags)  # include/ inside, as `mlops-airflow init` lays it out
    message = refusal(param, "missing.yaml", base_dir=dags)
    assert "looked up in the DAG's folder" in message and str(project / "dags" / "missing.yaml") in message


def test_a_running_dags_own_folder_is_a_spec_folder(project: Path, tmp_path: Path) -> None:
    bundle = tmp_path / "bundle" / "dags"  # a DAG bundle outside the configured DAGs folder
    (bundle.parent / "include").mkdir(parents=True)
    bundle.mkdir()
    assert spec_roots(str(bundle))[-2:] == [bundle / "include", bundle.parent / "include"]
    (bundle.parent / "include" / "gate.yaml").write_text(VALID["gate"])
    assert resolve_spec_path("include/gate.yaml", param="gate", dag_dir=str(bundle), error=ConfigError) == (
        bundle.parent / "include" / "gate.yaml")


@pytest.mark.parametrize("variable", ["MLOPS_AIRFLOW_SPEC_ROOTS", "AIRFLOW__MLOPS_AIRFLOW__SPEC_ROOTS"])
def test_the_deployment_can_add_spec_folders(variable: str, project: Path, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    shared = tmp_path / "shared-specs"
    shared.mkdir()
    (shared / "gate.yaml").write_text(VALID["gate"])
    assert "is outside the folders" in refusal("gate", str(shared / "gate.yaml"))
    monkeypatch.setenv(variable, f"{tmp_path / 'other'}, {shared}")
    assert load_gate_spec(str(shared / "gate.yaml"))[1] == "user"


NOT_SPECS: dict[str, bytes] = {
    "plain text": f"first line {SECRET}\nroot:x:0:0:root:/root:/bin/bash\n".encode(),
    "foreign keys": f"aws_secret_access_key: {SECRET}\n{SECRET}: 1\n".encode(),
    "foreign key beside spec keys": f"format_version: 1\n{SECRET}: 1\n".encode(),
    "parse error": f"columns: [1, 2\n  {SECRET}: {{]\n".encode(),
    "list": f"- {SECRET}\n- two\n".encode(),
    "unknown tag": f"!{SECRET} value\n".encode(),
    "undefined alias": f"columns: *{SECRET}\n".encode(),
    "two documents": f"a: 1\n---\n{SECRET}: 2\n".encode(),
    "not utf-8": b"\xff\xfe" + SECRET.encode(),
    "empty": b"",
}


@pytest.mark.parametrize("case", list(NOT_SPECS))
@pytest.mark.parametrize("param", list(LOADERS))
def test_a_file_in_the_spec_folders_that_is_not_a_spec_is_never_quoted(param: str, case: str, project: Path) -> None:
    path = project / "include" / "config.yaml"
    path.write_bytes(NOT_SPECS[case])
    message = refusal(param, "include/config.yaml")
    assert message.startswith(f"{param}: spec file {path} ")


def test_parse_errors_give_line_and_column_only(project: Path) -> None:
    (project / "include" / "bad.yaml").write_text(f"columns:\n  hour: [1, 2\n  {SECRET}: x\n")
    message = refusal("validation", "include/bad.yaml")
    assert re.search(r"is not valid YAML/JSON at line 3, column \d+$", message)
    (project / "include" / "keys.yaml").write_text(f"thresholds: {{}}\n{SECRET}: 1\n")
    assert refusal("gate", "include/keys.yaml").endswith("top-level key(s) at line(s) 2 are not spec keys (allowed: "
                                                          "baseline, champion, custom, format_version, mcnemar, "
                                                          "min_holdout_rows, on_fail, operational, policies, "
                                                          "primary_metric, slices, statistical, thresholds)")


def test_inline_specs_still_work(project: Path) -> None:
    assert load_validation_spec({"columns": {"hour": None}}) is not None
    assert load_validation_spec('{"columns": {"hour": {"type": "integer"}}}') is not None
    assert load_gate_spec("baseline: {min_improvement: 0.02}")[0]["baseline"]["min_improvement"] == 0.02


def test_dags_folder_follows_airflow_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AIRFLOW__CORE__DAGS_FOLDER", raising=False)
    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path))
    monkeypatch.setenv("AIRFLOW_CONFIG", str(tmp_path / "airflow.cfg"))
    assert dags_folder() == tmp_path / "dags"
    (tmp_path / "airflow.cfg").write_text("[core]\ndags_folder = {AIRFLOW_HOME}/pipelines\n")
    assert dags_folder() == tmp_path / "pipelines"
