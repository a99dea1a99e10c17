# mlops-airflow: the two commands a newcomer needs are `make demo` and `make test`.
# Each does its own set-up: a virtualenv in .venv with the pinned dependencies
# (constraints.txt) and an Airflow home in .airflow, both inside the checkout.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin

.PHONY: install demo test lint bench clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e ".[test]"
	touch $@

demo: install  ## run continuous training twice on the sample data and query the deployed model
	bash tools/demo.sh

test: install  ## lint, type-check and run the whole test suite
	bash tools/test.sh

bench: install  ## parse-time benchmark (results: bench/README.md)
	$(BIN)/python bench/parse_time.py

clean:
	rm -rf .airflow build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache
