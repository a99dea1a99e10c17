"""Evaluation: metrics, the quality gate and its verdict records."""

from mlops_airflow.evaluation.evaluate import evaluate_candidate
from mlops_airflow.evaluation.gate import DEFAULT_GATE, check_binding, describe_check, load_gate_spec
from mlops_airflow.evaluation.metrics import compute_metrics

__all__ = ["DEFAULT_GATE", "check_binding", "compute_metrics", "describe_check", "evaluate_candidate", "load_gate_spec"]
