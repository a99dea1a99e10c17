"""mlops-airflow: continuous training of scikit-learn models in Airflow 3, with quality gates.

Exports are lazy (module ``__getattr__``): Airflow imports this package while parsing
every DAG file and at every task start, so importing it must not pull in pandas,
scikit-learn, Great Expectations or boto3.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "ValidateDataOperator": "mlops_airflow.operators.validate",
    "TrainModelOperator": "mlops_airflow.operators.train",
    "EvaluateModelOperator": "mlops_airflow.operators.evaluate",
    "GateApprovalOperator": "mlops_airflow.operators.approve",
    "RegisterModelOperator": "mlops_airflow.operators.register",
    "DeployModelOperator": "mlops_airflow.operators.deploy",
    "RunSummaryOperator": "mlops_airflow.operators.summary",
    "RollbackModelOperator": "mlops_airflow.operators.rollback",
    "PlanBatchOperator": "mlops_airflow.operators.batch",
    "BatchPredictOperator": "mlops_airflow.operators.batch",
    "PublishBatchOperator": "mlops_airflow.operators.batch",
    "SplitSegmentsOperator": "mlops_airflow.operators.segments",
    "SegmentSummaryOperator": "mlops_airflow.operators.segments",
    "TrainSegmentsOperator": "mlops_airflow.operators.segments",
    "CleanupOperator": "mlops_airflow.operators.cleanup",
    "CommitNewDataOperator": "mlops_airflow.operators.watermark",
    "S3NewDataSensor": "mlops_airflow.sensors.s3",
    "DriftMonitorOperator": "mlops_airflow.operators.monitor",
    "QualityMonitorOperator": "mlops_airflow.operators.monitor",
    "PlanRetrainingOperator": "mlops_airflow.operators.retrain",
    "RegistryHook": "mlops_airflow.hooks.registry",
    "ModelRegistry": "mlops_airflow.registry",
    "open_registry": "mlops_airflow.registry",
    "open_store": "mlops_airflow.storage",
}

__all__ = sorted([*_EXPORTS, "__version__"])


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'mlops_airflow' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
