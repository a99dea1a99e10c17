"""The data_roots setting: local data is read only from the folders a deployment lists."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import pytest

from mlops_airflow.data.chunks import input_files
from mlops_airflow.data.loading import load_dataset
from mlops_airflow.exceptions import DataError

if TYPE_CHECKING:
    from pathlib import Path

SECRET = "hunter2-do-not-echo"


@pytest.fixture
def layout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    data = tmp_path / "data"
    data.mkdir()
    (data / "ok.csv").write_text("x,y\n1,0\n2,1\n")
    private = tmp_path / "private"
    private.mkdir()
    (private / "secret.csv").write_text(f"token\n{SECRET}\n")
    monkeypatch.setenv("MLOPS_AIRFLOW_DATA_ROOTS", f"{tmp_path / 'elsewhere'}, {data}")
    return {"data": data, "private": private}


def test_data_inside_the_roots_is_read(layout: dict[str, Path]) -> None:
    assert load_dataset(str(layout["data"] / "ok.csv")).rows == 2
    assert load_dataset(str(layout["data"] / "*.csv")).rows == 2


@pytest.mark.parametrize("how", ["absolute", "dotdot", "symlink", "pattern-symlink"])
def test_data_outside_the_roots_is_refused_before_it_is_read(layout: dict[str, Path], how: str) -> None:
    data, secret = layout["data"], layout["private"] / "secret.csv"
    if how in ("symlink", "pattern-symlink"):
        os.symlink(secret, data / "link.csv")
    uri = {"absolute": str(secret), "dotdot": f"{data}/../private/secret.csv",
           "symlink": str(data / "link.csv"), "pattern-symlink": str(data / "l*.csv")}[how]
    with pytest.raises(DataError) as caught:
        load_dataset(uri)
    message = str(caught.value)
    assert message.startswith("data_uri: ") and "is outside the folders data is read from" in message
    assert "MLOPS_AIRFLOW_DATA_ROOTS" in message and SECRET not in message


def test_batch_input_is_held_to_the_same_roots(layout: dict[str, Path]) -> None:
    with pytest.raises(DataError, match="^input_uri: .* is outside the folders data is read from"):
        input_files(str(layout["private"]))
    with pytest.raises(DataError, match="^input_uri: .* is outside"):
        input_files(str(layout["private"] / "secret.csv"))


def test_without_the_setting_any_readable_file_is_data(layout: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLOPS_AIRFLOW_DATA_ROOTS")
    assert load_dataset(str(layout["private"] / "secret.csv")).rows == 1


def test_a_missing_relative_path_says_what_it_was_relative_to(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DataError, match=f"read from the worker's working directory, {tmp_path}: give an absolute path"):
        load_dataset("data/trips.csv")
    with pytest.raises(DataError, match="no data files match data/trips-\\*.csv \\(a relative path is read from"):
        load_dataset("data/trips-*.csv")
    with pytest.raises(DataError) as absolute:
        load_dataset(str(tmp_path / "trips.csv"))
    assert "working directory" not in str(absolute.value)
