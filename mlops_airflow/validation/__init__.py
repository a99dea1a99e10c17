"""Data validation: a declarative spec, checked with Great Expectations 1.x, and its report.

The spec format is documented in :mod:`mlops_airflow.validation.spec`; what a validation
checks, in :mod:`mlops_airflow.validation.checks`; drift from a reference, in
:mod:`mlops_airflow.validation.drift`. Importing this package is cheap: pandas, scipy and
great_expectations are imported only when data is validated.
"""

from __future__ import annotations

from mlops_airflow.validation.checks import ValidationOutcome, validate_dataset
from mlops_airflow.validation.drift import DEFAULT_THRESHOLDS, compute_drift
from mlops_airflow.validation.report import render_report
from mlops_airflow.validation.spec import declared_constraints, drift_config, load_validation_spec

__all__ = [
    "DEFAULT_THRESHOLDS",
    "ValidationOutcome",
    "compute_drift",
    "declared_constraints",
    "drift_config",
    "load_validation_spec",
    "render_report",
    "validate_dataset",
]
