"""The multiprocess metrics directory: a restart starts from zero, and dead workers stop reporting."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from mlops_airflow.serving import server
from mlops_airflow.serving.config import CONFIG_ENV, ServerConfig

MAKE_LIVE_GAUGE = """
from prometheus_client import Gauge
Gauge("mlops_model_info", "info", ["version"], multiprocess_mode="liveall").labels("3").set(1)
"""


@pytest.mark.parametrize("workers", [1, 2])
def test_a_given_multiprocess_dir_is_wiped_of_old_metric_files_before_serving(
    workers: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    for name in ("counter_4242.db", "gauge_liveall_4242.db", "histogram_77.db"):
        (metrics_dir / name).write_bytes(b"old run")
    (metrics_dir / "notes.txt").write_text("not ours")
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(metrics_dir))
    monkeypatch.setenv(CONFIG_ENV, "")  # run() sets it for the workers: restored after the test
    monkeypatch.setattr(server, "limit_threads", lambda threads: None)
    monkeypatch.setattr(server, "build_app", lambda config, s3_client=None: "app")
    seen: list[list[str]] = []
    import uvicorn

    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: seen.append(sorted(os.listdir(metrics_dir))))
    monkeypatch.setattr(server.DeadWorkerReaper, "start", lambda self: None)
    monkeypatch.setattr(server.DeadWorkerReaper, "stop", lambda self: None)
    server.run(ServerConfig(registry_uri=str(tmp_path / "reg"), model_name="taxi", workers=workers))
    assert seen == [["notes.txt"]]  # the servers started on a clean directory; other files untouched
    assert metrics_dir.is_dir()  # the user's directory is kept


def test_the_reaper_marks_dead_workers_dead_and_keeps_live_ones(tmp_path: Path) -> None:
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    worker = subprocess.run([sys.executable, "-c", MAKE_LIVE_GAUGE], env=env, timeout=60, check=True)
    assert worker.returncode == 0
    (dead_file,) = tmp_path.glob("gauge_liveall_*.db")
    dead_pid = int(dead_file.stem.rsplit("_", 1)[1])
    live_file = tmp_path / f"gauge_liveall_{os.getpid()}.db"  # this process: alive
    live_file.write_bytes(dead_file.read_bytes())
    reaper = server.DeadWorkerReaper(str(tmp_path))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
        assert reaper.reap() == [dead_pid]
    assert not dead_file.exists() and live_file.exists()


def test_the_reaper_thread_stops_with_the_server(tmp_path: Path) -> None:
    reaper: Any = server.DeadWorkerReaper(str(tmp_path), interval=0.01)
    reaper.start()
    reaper.stop()
    assert not reaper._thread.is_alive()
