"""Custom pipelines: a user's own feature engineering, named by an allowlisted factory path.

A pipeline factory is a callable that takes the feature columns by kind and returns an
*unfitted* scikit-learn :class:`~sklearn.pipeline.Pipeline` ending in a classifier or
regressor::

    def make_pipeline(*, numeric: list[str], categorical: list[str]) -> Pipeline: ...

Like estimators, a factory path from a trigger form must not be a way to run arbitrary
code: it is looked up in the ``pipeline_factory_allowlist`` setting *before* its module is
imported. No factory is allowed by default.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from mlops_airflow.data.schema import is_numeric
from mlops_airflow.exceptions import EstimatorNotAllowed
from mlops_airflow.training.estimators import public_path

if TYPE_CHECKING:
    import pandas as pd


def resolve_factory(path: str, *, allowlist: list[str]) -> Any:
    """The callable at ``path``, imported only if ``allowlist`` names it."""
    if not isinstance(path, str) or not path.strip():
        raise EstimatorNotAllowed("pipeline_factory is empty: give a dotted path such as my_package.pipelines.make")
    path = path.strip()
    if path not in allowlist:
        raise EstimatorNotAllowed(
            f"pipeline_factory {path!r} is not on the allowlist: list it in the [mlops_airflow] "
            "pipeline_factory_allowlist setting (MLOPS_AIRFLOW_PIPELINE_FACTORY_ALLOWLIST)"
        )
    module_name, _, attr = path.rpartition(".")
    try:
        factory = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError, ValueError) as exc:
        raise EstimatorNotAllowed(f"pipeline_factory {path!r} is allowlisted but cannot be imported: {exc}") from exc
    if not callable(factory):
        raise EstimatorNotAllowed(f"pipeline_factory {path!r} is not callable")
    return factory


def build_pipeline(path: str, features: pd.DataFrame, *, allowlist: list[str]) -> tuple[Any, str]:
    """The unfitted pipeline the factory at ``path`` makes for ``features``, and its final step's path."""
    from sklearn.base import clone, is_classifier, is_regressor
    from sklearn.pipeline import Pipeline

    factory = resolve_factory(path, allowlist=allowlist)
    numeric = [str(c) for c in features.columns if is_numeric(features[c])]
    categorical = [str(c) for c in features.columns if str(c) not in numeric]
    try:
        pipeline = factory(numeric=numeric, categorical=categorical)
    except Exception as exc:  # the user's code: any failure is a broken spec, reported with its cause
        raise EstimatorNotAllowed(f"pipeline_factory {path!r} failed: {type(exc).__name__}: {exc}") from exc
    if not isinstance(pipeline, Pipeline):
        raise EstimatorNotAllowed(
            f"pipeline_factory {path!r} returned {type(pipeline).__name__}, not a scikit-learn Pipeline"
        )
    final = pipeline.steps[-1][1]
    if not (is_classifier(final) or is_regressor(final)):
        raise EstimatorNotAllowed(
            f"pipeline_factory {path!r}: the last step ({type(final).__name__}) is neither a classifier nor a regressor"
        )
    # clone: whatever the factory fitted or cached is dropped, so only the training split fits it.
    return clone(pipeline), public_path(type(final))
