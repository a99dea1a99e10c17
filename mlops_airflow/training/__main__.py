"""``python -m mlops_airflow.training REQUEST_JSON``: see :mod:`mlops_airflow.pipeline.entrypoint`."""

from __future__ import annotations

import sys

from mlops_airflow.pipeline.entrypoint import main

if __name__ == "__main__":
    sys.exit(main())
