"""A real registry in tmp_path holding real fitted pipelines, for the serving tests."""

from __future__ import annotations

import time
from functools import partial
from typing import TYPE_CHECKING, Any

import pytest
import testsupport
from testsupport import candidate_fields

from mlops_airflow.data.schema import feature_schema
from mlops_airflow.persistence import dump_model
from mlops_airflow.registry.registry import ModelRegistry, idempotency_key
from mlops_airflow.storage import open_store

if TYPE_CHECKING:
    from collections.abc import Callable

DECLARED = {"hour": {"min": 0, "max": 23}, "payment_type": {"allowed": ["app", "card", "cash"]}}


# Tests reach these helpers through fixtures, never `from conftest import ...`: other test
# folders have their own conftest.py, and which one that import finds depends on the run.


def training_frame(n: int = 60) -> Any:
    import pandas as pd

    hours = [i % 24 for i in range(n)]
    frame = pd.DataFrame(
        {
            "hour": pd.Series(hours, dtype="int64"),
            # observed 1..5; every seventh value missing, so the column is nullable
            "passengers": pd.Series([None if i % 7 == 0 else 1 + i % 5 for i in range(n)], dtype="Int64"),
            "fare": pd.Series([5.0 + (i % 13) * 1.5 for i in range(n)], dtype="float64"),
            "payment_type": pd.Series([("app", "card", "cash")[i % 3] for i in range(n)], dtype="str"),
        }
    )
    frame["tipped"] = ((frame["payment_type"] != "cash") & (frame["hour"] > 6)).astype("int64")
    return frame


def fit_pipeline(frame: Any, *, C: float = 1.0) -> Any:
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline, make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    features = frame.drop(columns=["tipped"])
    pre = ColumnTransformer(
        [
            ("num", make_pipeline(SimpleImputer(), StandardScaler()), ["hour", "passengers", "fare"]),
            ("cat", OneHotEncoder(handle_unknown="ignore"), ["payment_type"]),
        ]
    )
    return Pipeline([("pre", pre), ("clf", LogisticRegression(C=C, max_iter=500))]).fit(
        features, frame["tipped"]
    )


def schema_of(frame: Any) -> dict[str, Any]:
    return feature_schema(frame, target="tipped", declared=DECLARED)


class Models:
    """Registers fitted models under one name, the way the pipeline's register stage does."""

    def __init__(self, registry: ModelRegistry, name: str = "taxi") -> None:
        self.registry = registry
        self.name = name
        self.frame = training_frame()

    def fit(self, **kwargs: Any) -> Any:
        return fit_pipeline(self.frame, **kwargs)

    def register(
        self, model: Any | None = None, *, data: bytes | None = None, **extra: Any
    ) -> dict[str, Any]:
        """Store and register ``model`` (by default a fresh fit, different for each version)."""
        if model is None:
            model = self.fit(C=1.0 + len(self.registry.list_versions(self.name)))
        blob = data if data is not None else dump_model(model)
        candidate = candidate_fields(feature_schema=schema_of(self.frame), **extra)
        record = self.registry.put_artifact(self.name, blob, candidate)
        key = idempotency_key("test", f"run-{time.monotonic_ns()}", "register")
        return self.registry.register(self.name, record, idempotency_key=key)

    def promote(self, version: int, alias: str = "champion") -> dict[str, Any]:
        current = self.registry.get_alias(self.name, alias)
        return self.registry.set_alias(
            self.name,
            alias,
            version,
            expected=current["version"] if current else None,
            by="test",
            reason="test",
        )

    def artifact_path(self, manifest: dict[str, Any]) -> Any:
        from pathlib import Path

        return Path(self.registry.store.uri) / self.registry.artifact_key(self.name, manifest["sha256"])


@pytest.fixture
def registry(tmp_path: Any) -> ModelRegistry:
    return ModelRegistry(open_store(str(tmp_path / "registry")))


@pytest.fixture
def models(registry: ModelRegistry) -> Models:
    return Models(registry)


@pytest.fixture(scope="module")
def module_models(tmp_path_factory: pytest.TempPathFactory) -> Models:
    """:class:`Models` in a registry shared by one test module (for one app serving many tests)."""
    return Models(ModelRegistry(open_store(str(tmp_path_factory.mktemp("module") / "registry"))))


@pytest.fixture
def schema() -> dict[str, Any]:
    return schema_of(training_frame())


@pytest.fixture
def eventually() -> Callable[..., Any]:
    return partial(testsupport.eventually, timeout=10.0, interval=0.02)


@pytest.fixture
def named_models(registry: ModelRegistry) -> Callable[[str], Models]:
    """``named_models("a")``: a :class:`Models` for another model name in the same registry."""
    return lambda name: Models(registry, name)
