"""Provider registration: Airflow reads this through the ``apache_airflow_provider`` entry point.

Kept import-free: Airflow calls it while discovering providers.
"""

from __future__ import annotations

from typing import Any

PACKAGE_NAME = "mlops-airflow"
OPERATOR_MODULES = [
    "mlops_airflow.operators.validate",
    "mlops_airflow.operators.train",
    "mlops_airflow.operators.evaluate",
    "mlops_airflow.operators.approve",
    "mlops_airflow.operators.register",
    "mlops_airflow.operators.deploy",
    "mlops_airflow.operators.summary",
    "mlops_airflow.operators.rollback",
    "mlops_airflow.operators.batch",
    "mlops_airflow.operators.segments",
    "mlops_airflow.operators.cleanup",
    "mlops_airflow.operators.watermark",
    "mlops_airflow.operators.monitor",
    "mlops_airflow.operators.retrain",
]


def get_provider_info() -> dict[str, Any]:
    return {
        "package-name": PACKAGE_NAME,
        "name": "mlops-airflow",
        "description": "Continuous training of scikit-learn models with quality gates between the stages.",
        "integrations": [{"integration-name": "mlops-airflow", "tags": ["software"]}],
        "operators": [{"integration-name": "mlops-airflow", "python-modules": OPERATOR_MODULES}],
        "sensors": [{"integration-name": "mlops-airflow", "python-modules": ["mlops_airflow.sensors.s3"]}],
        "hooks": [{"integration-name": "mlops-airflow", "python-modules": ["mlops_airflow.hooks.registry"]}],
        "triggers": [{"integration-name": "mlops-airflow", "python-modules": ["mlops_airflow.sensors.triggers.s3",
                                                                          "mlops_airflow.sensors.triggers.messaging"]}],
        "extra-links": [
            "mlops_airflow.operators.links.ValidationReportLink",
            "mlops_airflow.operators.links.GateReportLink",
            "mlops_airflow.operators.links.ModelVersionLink",
        ],
        "connection-types": [
            {
                "connection-type": "mlops_s3",
                "hook-class-name": "mlops_airflow.hooks.registry.RegistryHook",
                "hook-name": "mlops-airflow S3 registry",
            }
        ],
        "config": {
            "mlops_airflow": {
                "description": "Where mlops-airflow keeps its registry and finds its model server.",
                "options": {
                    "registry_uri": {
                        "description": "Registry root: a local path, s3://bucket/prefix, or an MLflow "
                        "registry mlflow+http://host:port?store=s3://bucket/prefix. "
                        "Default: $AIRFLOW_HOME/mlops_registry.",
                        "version_added": "0.1.0",
                        "type": "string",
                        "example": "s3://ml-models/registry",
                        "default": None,
                    },
                    "mlflow_tracking_uri": {
                        "description": "MLflow tracking server that training and evaluation runs are logged to "
                        "(implied by an mlflow+ registry_uri). Default: no tracking.",
                        "version_added": "0.1.0",
                        "type": "string",
                        "example": "http://mlflow:5000",
                        "default": None,
                    },
                    "server_url": {
                        "description": "Base URL of the local model server the local deploy target waits on.",
                        "version_added": "0.1.0",
                        "type": "string",
                        "example": "http://127.0.0.1:8765",
                        "default": "http://127.0.0.1:8765",
                    },
                    "custom_check_allowlist": {
                        "description": "Comma-separated dotted paths of custom gate check functions allowed "
                        "beyond the bundled ones.",
                        "version_added": "0.1.0",
                        "type": "string",
                        "example": "my_team.checks.prediction_bias",
                        "default": "",
                    },
                    "pipeline_factory_allowlist": {
                        "description": "Comma-separated dotted paths of pipeline factories a DAG may name "
                        "(none by default).",
                        "version_added": "0.1.0",
                        "type": "string",
                        "example": "my_team.pipelines.trips_pipeline",
                        "default": "",
                    },
                    "trusted_types": {
                        "description": "Comma-separated dotted paths of your own types (transformers, "
                        "functions) that saved models may contain, beyond scikit-learn's own.",
                        "version_added": "0.1.0",
                        "type": "string",
                        "example": "my_team.features.add_hour_features",
                        "default": "",
                    },
                    "spec_roots": {
                        "description": "Comma-separated folders validation and gate spec files may be read "
                        "from, beyond the DAGs folder and its include/ folder.",
                        "version_added": "0.1.0",
                        "type": "string",
                        "example": "/opt/airflow/shared_specs",
                        "default": "",
                    },
                    "data_roots": {
                        "description": "Comma-separated folders local data files (data_uri, input_uri) may be "
                        "read from; empty: any file the worker can read.",
                        "version_added": "0.1.0",
                        "type": "string",
                        "example": "/data/ml",
                        "default": "",
                    },
                    "estimator_allowlist": {
                        "description": "Comma-separated dotted paths of estimators allowed beyond scikit-learn's own.",
                        "version_added": "0.1.0",
                        "type": "string",
                        "example": "xgboost.XGBClassifier",
                        "default": "",
                    },
                },
            }
        },
    }
