"""Which estimators a DAG's Params may name.

A dotted path from a trigger form must not be a way to run arbitrary code, so a path is
looked up in an allowlist *before* anything is imported: scikit-learn's own classifiers
and regressors (by their public paths), plus paths listed in the
``estimator_allowlist`` setting (see :mod:`mlops_airflow.settings`).
"""

from __future__ import annotations

import functools
import importlib
from typing import Any

from mlops_airflow.exceptions import EstimatorNotAllowed

#: ``estimator: auto`` picks one of these from the target.
AUTO_CLASSIFIER = "sklearn.ensemble.HistGradientBoostingClassifier"
AUTO_REGRESSOR = "sklearn.ensemble.HistGradientBoostingRegressor"


def public_path(cls: type) -> str:
    """The dotted path without private module parts: sklearn.linear_model.LogisticRegression."""
    parts = []
    for part in cls.__module__.split("."):
        if part.startswith("_"):
            break
        parts.append(part)
    return ".".join(parts + [cls.__name__])


@functools.cache
def _sklearn_estimators() -> dict[str, type]:
    from sklearn.utils import all_estimators

    allowed: dict[str, type] = {}
    for _name, cls in all_estimators(type_filter=["classifier", "regressor"]):
        allowed[public_path(cls)] = cls
        allowed[f"{cls.__module__}.{cls.__name__}"] = cls
    return allowed


def allowed_estimators(extra: list[str] | None = None) -> list[str]:
    """The public dotted paths a DAG may name."""
    public = sorted(path for path, cls in _sklearn_estimators().items() if path == public_path(cls))
    return public + sorted(extra or [])


def resolve_estimator(path: str, *, extra: list[str] | None = None) -> type:
    """The estimator class at ``path``, if the allowlist names it and it is a classifier or regressor."""
    from sklearn.base import is_classifier, is_regressor

    if not isinstance(path, str) or not path.strip():
        raise EstimatorNotAllowed("estimator is empty: give a dotted path such as sklearn.linear_model.LogisticRegression")
    path = path.strip()
    cls = _sklearn_estimators().get(path)
    if cls is None and path in (extra or []):
        module_name, _, attr = path.rpartition(".")
        try:
            cls = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as exc:
            raise EstimatorNotAllowed(f"estimator {path!r} is allowlisted but cannot be imported: {exc}") from exc
    if cls is None:
        hint = ""
        name = path.rsplit(".", 1)[-1]
        close = [p for p in allowed_estimators() if p.endswith("." + name)]
        if close:
            hint = f" (did you mean {close[0]}?)"
        raise EstimatorNotAllowed(
            f"estimator {path!r} is not on the allowlist{hint}: scikit-learn classifiers and regressors are allowed, "
            "others must be listed in the [mlops_airflow] estimator_allowlist setting"
        )
    try:
        probe = cls()
    except TypeError as exc:  # meta-estimators (stacking, one-vs-rest, ...) need an inner estimator
        raise EstimatorNotAllowed(f"estimator {path!r} needs constructor arguments this DAG cannot give: {exc}") from exc
    if not (is_classifier(probe) or is_regressor(probe)):
        raise EstimatorNotAllowed(f"estimator {path!r} is neither a classifier nor a regressor")
    return cls


def make_estimator(cls: type, params: dict[str, Any] | None) -> Any:
    """An instance of ``cls`` with ``params``, each checked against the estimator's parameters."""
    return apply_params(cls(), params)


def apply_params(estimator: Any, params: dict[str, Any] | None, *, deep: bool = False) -> Any:
    """Set ``params`` (``estimator_params``) on ``estimator``, each checked against its parameters.

    ``deep`` admits nested names (``clf__C``), as a pipeline from a factory has them.
    """
    if params is None:
        params = {}
    if not isinstance(params, dict):
        raise EstimatorNotAllowed(f"estimator_params must be a mapping, got {type(params).__name__}")
    known = estimator.get_params(deep=deep)
    name = type(estimator).__name__
    for key, value in params.items():
        if key not in known:
            raise EstimatorNotAllowed(
                f"estimator_params.{key}: not a parameter of {name} (known: {', '.join(sorted(known))})"
            )
        if not isinstance(value, str | int | float | bool | type(None) | list | dict):
            raise EstimatorNotAllowed(f"estimator_params.{key}: {type(value).__name__} values are not allowed")
    try:
        estimator.set_params(**params)
    except (ValueError, TypeError) as exc:
        raise EstimatorNotAllowed(f"estimator_params: {exc}") from exc
    return estimator
