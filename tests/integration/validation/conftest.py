"""A real PostgreSQL server for the SQL validation tests, installed and started by tools/postgres.sh."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Iterator

import pytest
from testsupport import REPO, free_port

POSTGRES_SH = REPO / "tools" / "postgres.sh"


@pytest.fixture(scope="session")
def postgres_dsn() -> Iterator[str]:
    """``postgresql://postgres@127.0.0.1:PORT/mlops`` of a throwaway server, stopped at the end.

    The server is installed with apt-get when missing. When that is impossible the tests
    fail, saying why, rather than skip: CI must exercise the SQL path.
    """
    # mkdtemp, not tmp_path_factory: when run as root, the server runs as `postgres`, which
    # must be able to enter the folder (pytest's temporary root is private to its user).
    datadir = tempfile.mkdtemp(prefix="mlops-airflow-pg-")
    try:
        started = subprocess.run(
            ["bash", str(POSTGRES_SH), "start", datadir, str(free_port())],
            capture_output=True,
            text=True,
            timeout=600,
        )
        if started.returncode != 0:
            pytest.fail(
                f"could not install or start PostgreSQL with {POSTGRES_SH.name} (exit {started.returncode}); "
                f"the SQL validation tests need it:\n{started.stderr.strip()}",
                pytrace=False,
            )
        yield started.stdout.strip().splitlines()[-1]
    finally:
        subprocess.run(["bash", str(POSTGRES_SH), "stop", datadir], capture_output=True, timeout=60)
        shutil.rmtree(datadir, ignore_errors=True)
