#!/usr/bin/env bash
# The whole test suite: lint, types, then unit and integration tests (real Airflow metadata DB,
# a real moto S3 server and real model-server processes, all started by the tests themselves).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
start=$(date +%s)
# The UI tests drive Debian's Chromium; a fresh machine installs it here (apt, as root).
# Without root it cannot install; the browser tests then skip and say why.
bash tools/chromium.sh >/dev/null || [ "$(id -u)" -ne 0 ]
echo "== ruff"
$BIN/ruff check mlops_airflow dags tests bench tools
echo "== mypy"
$BIN/mypy
echo "== pytest"
$BIN/python -m pytest -q -p no:cacheprovider "$@"
echo "test suite wall time: $(( $(date +%s) - start ))s"
