"""Validate a dataset before anything trains on it."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlops_airflow.operators.base import MlopsBaseOperator
from mlops_airflow.operators.links import ValidationReportLink

if TYPE_CHECKING:
    from airflow.sdk import Asset, Context


#: The alias every ValidateDataOperator emits through by default; it resolves to :func:`validated_asset`.
VALIDATED_ALIAS = "mlops_validated_dataset"


def validated_asset(model_name: str) -> Asset:
    """The Asset of ``model_name``'s validated dataset: schedule training DAGs on it.

    The ``x-`` scheme is Airflow's convention for custom schemes: it skips the provider
    URI normalizers, which would load every provider (boto3 included) while parsing.
    """
    from airflow.sdk import Asset

    return Asset(f"x-mlops://{model_name}/validated")


def dag_folder(context: Context) -> str | None:
    """The running DAG file's folder: spec files may be read from it and the ``include/`` inside or beside it.

    Relative spec paths in Params are looked up there (see :mod:`mlops_airflow.specfiles`).
    """
    fileloc = getattr(context.get("dag"), "fileloc", None)
    return str(Path(fileloc).parent) if fileloc else None


class ValidateDataOperator(MlopsBaseOperator):
    """Check a dataset with Great Expectations and store a typed snapshot of it.

    Always runs the minimal check (readable, non-empty, target present, columns as in
    the champion's schema); with a spec, also its types, ranges, sets, nulls and more.
    Returns a SUMMARY-sized result (never GX's COMPLETE one) with ``dataset_uri``, the
    snapshot later stages read. On failure the summary is pushed to XCom under
    ``validation_summary`` first, then the task fails naming up to ten failed checks.

    :param data_uri: CSV/Parquet path or ``s3://`` URI; ``*`` matches several files (templated).
    :param target: the target column (templated).
    :param model_name: the model whose champion schema applies (templated).
    :param validation: a YAML spec path (in the spec folders of :mod:`mlops_airflow.specfiles`), inline spec
        or dict; None for the minimal check (templated).
    :param redact_samples: leave sample values out of results and reports (they can be personal data).
    :param snapshot: store the validated data for training (default). False for validation-only
        tasks: a file is then read for just the columns the spec needs.

    Asset events: after a successful validation the task emits an event with ``extra``
    ``{model_name, dataset_uri, data_uri, fingerprint, rows, report_uri}``, so DAGs
    scheduled on the validated data start. By default the outlet is the alias
    :data:`VALIDATED_ALIAS`, which resolves at run time to
    ``validated_asset(model_name)`` (``x-mlops://<model>/validated``): the model name may
    be a template. Give ``outlets=[Asset(...)]`` to emit on your own asset instead, or
    ``outlets=[]`` for none. A failed validation emits nothing.
    """

    template_fields: Sequence[str] = ("registry_uri", "data_uri", "target", "model_name", "validation")
    operator_extra_links = (ValidationReportLink(),)
    default_timeout = timedelta(minutes=30)
    #: Set while running; the extra link opens it.
    report_uri: str | None = None

    def __init__(
        self,
        *,
        data_uri: str,
        target: str,
        model_name: str,
        validation: str | dict[str, Any] | None = None,
        redact_samples: bool = False,
        snapshot: bool = True,
        **kwargs: Any,
    ) -> None:
        if "outlets" not in kwargs:
            from airflow.sdk import AssetAlias

            kwargs["outlets"] = [AssetAlias(VALIDATED_ALIAS)]
        super().__init__(**kwargs)
        self.snapshot = snapshot
        self.data_uri = data_uri
        self.target = target
        self.model_name = model_name
        self.validation = validation
        self.redact_samples = redact_samples

    def run(self, context: Context) -> dict[str, Any]:
        from mlops_airflow.exceptions import DataValidationError
        from mlops_airflow.pipeline.validate import run_validation

        try:
            summary = run_validation(
                self.registry,
                model_name=self.model_name,
                data_uri=self.data_uri,
                target=self.target,
                validation=self.validation,
                spec_base_dir=dag_folder(context),
                redact_samples=self.redact_samples,
                snapshot=self.snapshot,
                s3_client=self.hook.s3_client,
            )
        except DataValidationError as exc:
            self.report_uri = exc.summary.get("report_uri")
            context["ti"].xcom_push(key="validation_summary", value=exc.summary)
            raise
        self.report_uri = summary["report_uri"]
        stats = summary.get("statistics", {})
        self.log.info(
            "Validation passed: %s rows, %s checks (%s warnings); report: %s",
            summary.get("rows"), stats.get("evaluated"), stats.get("failed_warnings"), summary["report_uri"],
        )
        self.emit_asset_events(context, summary)
        return summary

    def emit_asset_events(self, context: Context, summary: dict[str, Any]) -> None:
        from airflow.sdk import Asset, AssetAlias

        extra = {
            "model_name": self.model_name,
            "dataset_uri": summary.get("dataset_uri"),
            "data_uri": summary["data_uri"],
            "fingerprint": summary["fingerprint"],
            "rows": None if summary.get("rows") is None else int(summary["rows"]),
            "report_uri": summary["report_uri"],
        }
        for outlet in self.outlets:
            if isinstance(outlet, AssetAlias):
                asset = validated_asset(self.model_name)
                context["outlet_events"][outlet].add(asset, extra=extra)
                self.log.info("Asset event for %s through alias %s", asset.uri, outlet.name)
            elif isinstance(outlet, Asset):
                context["outlet_events"][outlet].extra.update(extra)
                self.log.info("Asset event for %s", outlet.uri)
