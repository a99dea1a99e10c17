"""Training: allowlisted estimators inside the default preprocessing, task inference, fitting."""

from mlops_airflow.training.estimators import allowed_estimators, resolve_estimator
from mlops_airflow.training.train import TaskType, TrainResult, infer_task, train_model

__all__ = ["TaskType", "TrainResult", "allowed_estimators", "infer_task", "resolve_estimator", "train_model"]
