"""The feature schema that travels with a model: what the server accepts and drift compares.

``declared`` holds ranges and allowed sets from the validation spec (requests outside
them are rejected); ``observed`` holds what training saw (used for warnings and drift,
never for rejection).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

SCHEMA_FORMAT_VERSION = 1
MAX_CATEGORIES = 200


def is_numeric(series: pd.Series) -> bool:
    return series.dtype.kind in "iufb"


def feature_schema(
    frame: pd.DataFrame,
    *,
    target: str,
    exclude: list[str] | None = None,
    declared: dict[str, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Describe the feature columns of ``frame`` (all but ``target`` and ``exclude``)."""
    skip = {target, *(exclude or [])}
    declared = declared or {}
    columns = []
    for name in frame.columns:
        if name in skip:
            continue
        series = frame[name]
        column: dict[str, Any] = {
            "name": str(name),
            "kind": "numeric" if is_numeric(series) else "categorical",
            "dtype": str(series.dtype),
            "nullable": bool(series.isna().any()),
        }
        if column["kind"] == "numeric":
            present = series.dropna()
            if len(present):
                column["observed"] = {"min": float(present.min()), "max": float(present.max())}
        else:
            counts = series.dropna().astype(str).value_counts()
            column["observed"] = {
                "categories": sorted(counts.index[:MAX_CATEGORIES].tolist()),
                "distinct": int(len(counts)),
            }
        if name in declared:
            column["declared"] = declared[name]
        columns.append(column)
    target_series = frame[target]
    return {
        "format_version": SCHEMA_FORMAT_VERSION,
        "target": {"name": target, "dtype": str(target_series.dtype)},
        "columns": columns,
    }


def schema_columns(schema: dict[str, Any]) -> dict[str, str]:
    """``{name: kind}`` of a schema's features: what makes two models comparable."""
    return {column["name"]: column["kind"] for column in schema.get("columns", [])}
