"""What users and Airflow rely on: names, exports, provider registration, templated fields."""

from __future__ import annotations

import json
from importlib import metadata
from pathlib import Path

import pytest

import mlops_airflow
from mlops_airflow.provider import get_provider_info

REPO = Path(__file__).resolve().parents[3]


def test_public_exports_are_pinned() -> None:
    assert mlops_airflow.__all__ == [
        "BatchPredictOperator",
        "CleanupOperator",
        "CommitNewDataOperator",
        "DeployModelOperator",
        "DriftMonitorOperator",
        "EvaluateModelOperator",
        "GateApprovalOperator",
        "ModelRegistry",
        "PlanBatchOperator",
        "PlanRetrainingOperator",
        "PublishBatchOperator",
        "QualityMonitorOperator",
        "RegisterModelOperator",
        "RegistryHook",
        "RollbackModelOperator",
        "RunSummaryOperator",
        "S3NewDataSensor",
        "SegmentSummaryOperator",
        "SplitSegmentsOperator",
        "TrainModelOperator",
        "TrainSegmentsOperator",
        "ValidateDataOperator",
        "__version__",
        "open_registry",
        "open_store",
    ]
    for name in mlops_airflow.__all__:
        assert getattr(mlops_airflow, name) is not None
    with pytest.raises(AttributeError):
        mlops_airflow.NotAThing  # noqa: B018


def test_provider_info_matches_the_distribution_and_airflows_schema() -> None:
    import jsonschema

    info = get_provider_info()
    assert info["package-name"] == metadata.metadata("mlops-airflow")["Name"] == "mlops-airflow"
    schema_path = Path(metadata.distribution("apache-airflow-core").locate_file("airflow/provider_info.schema.json"))
    jsonschema.validate(info, json.loads(schema_path.read_text()))
    entry_points = metadata.entry_points(group="apache_airflow_provider")
    assert any(ep.value == "mlops_airflow.provider:get_provider_info" for ep in entry_points)
    for group in ("operators", "sensors", "hooks", "triggers"):
        for module in info[group][0]["python-modules"]:
            __import__(module)


def test_airflow_discovers_the_provider() -> None:
    from airflow.providers_manager import ProvidersManager

    providers = ProvidersManager().providers
    assert "mlops-airflow" in providers
    assert "mlops_s3" in ProvidersManager().hooks


@pytest.mark.parametrize(
    ("operator", "fields"),
    [
        ("ValidateDataOperator", ("registry_uri", "data_uri", "target", "model_name", "validation")),
        ("TrainModelOperator", ("registry_uri", "model_name", "dataset_uri", "target", "estimator", "estimator_params", "row_key",
                                "pipeline_factory", "search_space", "tuning")),
        ("EvaluateModelOperator", ("registry_uri", "model_name", "candidate_sha256", "gate")),
        ("RegisterModelOperator", ("registry_uri", "model_name", "candidate_sha256", "verdict_uri")),
        ("DeployModelOperator", ("registry_uri", "model_name", "version", "verdict_uri", "server_url", "namespace",
                                 "image")),
        ("RunSummaryOperator", ("registry_uri", "model_name")),
        ("RollbackModelOperator", ("registry_uri", "model_name", "to_version", "reason", "server_url", "namespace",
                                   "image")),
        ("GateApprovalOperator", ("subject", "body", "model_name", "verdict_uri", "registry_uri")),
        ("CleanupOperator", ("registry_uri", "model_name")),
        ("CommitNewDataOperator", ("registry_uri", "state_key", "claim")),
        ("S3NewDataSensor", ("prefix_uri", "pattern", "state_key", "registry_uri")),
        ("SplitSegmentsOperator", ("registry_uri", "data_uri", "segment_column", "model_prefix", "target",
                                   "validation", "segments", "segments_per_task", "min_rows")),
        ("TrainSegmentsOperator", ("registry_uri", "batch", "model_prefix", "target", "architectures", "row_key",
                                   "gate", "deploy_target", "server_url", "workers")),
        ("SegmentSummaryOperator", ("registry_uri", "fail_on_failure")),
        ("PublishBatchOperator", ("registry_uri", "partitions")),
        ("DriftMonitorOperator", ("registry_uri", "model_name", "models", "alias", "window_hours", "until", "since",
                                  "all_versions", "policy", "log_uri")),
        ("QualityMonitorOperator", ("registry_uri", "model_name", "models", "feedback_uri", "label_column", "join_key",
                                    "alias", "window_hours", "until", "since", "policy", "log_uri")),
        ("PlanRetrainingOperator", ("registry_uri", "models", "alias", "fallback_dag_id")),
        ("PlanBatchOperator", ("registry_uri", "model_name", "input_uri", "output_uri", "alias", "id_columns",
                               "ignore_columns", "chunk_rows", "partitions", "on_invalid", "output_format")),
        ("BatchPredictOperator", ("registry_uri", "model_name", "input_uri", "output_uri", "alias", "id_columns",
                                  "ignore_columns", "chunk_rows", "on_invalid", "output_format")),
    ],
)
def test_template_fields_are_pinned(operator: str, fields: tuple[str, ...]) -> None:
    assert tuple(getattr(mlops_airflow, operator).template_fields) == fields


def test_deploy_operator_rejects_an_unknown_target() -> None:
    with pytest.raises(ValueError, match="target must be 'local', 'none' or 'kubernetes'"):
        mlops_airflow.DeployModelOperator(task_id="d", model_name="m", version=1, verdict_uri="x", target="k8s")


def test_py_typed_ships() -> None:
    assert (Path(mlops_airflow.__file__).parent / "py.typed").is_file()


def test_extra_links_are_registered_and_attached() -> None:
    info = get_provider_info()
    assert info["extra-links"] == [
        "mlops_airflow.operators.links.ValidationReportLink",
        "mlops_airflow.operators.links.GateReportLink",
        "mlops_airflow.operators.links.ModelVersionLink",
    ]
    assert [link.name for link in mlops_airflow.ValidateDataOperator.operator_extra_links] == ["Validation report"]
    assert [link.name for link in mlops_airflow.EvaluateModelOperator.operator_extra_links] == ["Gate report"]
    assert [link.name for link in mlops_airflow.RegisterModelOperator.operator_extra_links] == ["Model version"]
    assert [link.name for link in mlops_airflow.DeployModelOperator.operator_extra_links] == ["Model version"]
    registered = {path.rsplit(".", 1)[1] for path in info["extra-links"]}
    attached = {type(link).__name__ for name in mlops_airflow.__all__ if name.endswith("Operator")
                for link in getattr(mlops_airflow, name).operator_extra_links}
    assert attached <= registered  # the UI can only show links whose class the provider registers
