#!/usr/bin/env bash
# The whole test suite: lint, types, then unit and integration tests (real Airflow metadata DB,
# a real moto S3 server and real model-server processes, all started by the tests themselves).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
start=$(date +%s)
echo "== ruff"
$BIN/ruff check mlops_airflow dags tests bench tools
echo "== mypy"
$BIN/mypy
echo "== pytest"
$BIN/python -m pytest -q -p no:cacheprovider "$@"
echo "test suite wall time: $(( $(date +%s) - start ))s"
