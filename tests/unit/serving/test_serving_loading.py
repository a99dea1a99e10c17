"""stage_model: the server's loader, as the deploy stage uses it before promoting a model."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from mlops_airflow.exceptions import DeployError, UnsafeModelError
from mlops_airflow.serving.loading import load_manifest_model, stage_model


def double(values: Any) -> Any:
    return values * 2


def test_stages_a_registered_model_and_predicts_on_smoke_rows(models: Any) -> None:
    manifest = models.register()
    # the smoke rows may carry the target: only the schema's columns are used
    model = stage_model(models.registry, manifest, models.frame.head(5))
    assert model.predict(models.frame.drop(columns=["tipped"]).head(3)).shape == (3,)


def test_a_tampered_artifact_is_refused(models: Any) -> None:
    manifest = models.register()
    models.artifact_path(manifest).write_bytes(b"not the registered model")
    with pytest.raises(
        UnsafeModelError, match=r"taxi version 1: checksum mismatch: the manifest says sha256"
    ):
        stage_model(models.registry, manifest, None)


def test_untrusted_types_are_refused(models: Any) -> None:
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import FunctionTransformer

    pipeline = Pipeline(
        [
            ("pre", ColumnTransformer([("x2", FunctionTransformer(double), ["hour", "fare"])])),
            ("clf", LogisticRegression()),
        ]
    ).fit(models.frame.drop(columns=["tipped"]), models.frame["tipped"])
    manifest = models.register(pipeline)
    with pytest.raises(UnsafeModelError, match=r"types that are not on the trusted list: .*double"):
        stage_model(models.registry, manifest, None)


def test_version_skew_refused_or_reported_by_policy(models: Any) -> None:
    packages = {"scikit-learn": "0.24.2", "skops": "0.16.0"}
    manifest = models.register(packages=packages)
    with pytest.raises(UnsafeModelError, match=r"library version skew: scikit-learn 0.24.2 \(model\)"):
        stage_model(models.registry, manifest, None, skew_policy="refuse")
    with pytest.warns(UserWarning, match="library version skew"):
        loaded = load_manifest_model(models.registry, manifest, skew_policy="warn")
    assert loaded.load_warnings == [
        f"library version skew: scikit-learn 0.24.2 (model) vs {_sklearn_version()} (runtime)"
    ]


def _sklearn_version() -> str:
    import sklearn

    return sklearn.__version__


def test_a_manifest_without_checksum_is_refused(models: Any) -> None:
    manifest = {**models.register(), "sha256": None}
    with pytest.raises(UnsafeModelError, match="has no sha256 in its manifest"):
        stage_model(models.registry, manifest, None)


def test_a_schema_that_does_not_match_the_fitted_columns(models: Any) -> None:
    manifest = copy.deepcopy(models.register())
    manifest["feature_schema"]["columns"][2]["name"] = "distance"
    with pytest.raises(
        DeployError,
        match=r"fitted on other columns than its feature schema lists: "
        r"schema-only columns \['distance'\], model-only columns \['fare'\]",
    ):
        stage_model(models.registry, manifest, None)
    manifest["feature_schema"] = None
    with pytest.raises(DeployError, match="has no feature schema"):
        stage_model(models.registry, manifest, None)


def test_classes_must_match_the_manifest(models: Any) -> None:
    manifest = {**models.register(), "classes": ["no", "yes"]}
    with pytest.raises(
        DeployError, match=r"predicts classes \['0', '1'\], but its manifest records \['no', 'yes'\]"
    ):
        stage_model(models.registry, manifest, None)


def test_smoke_rows_must_have_the_features_and_pass_request_validation(models: Any) -> None:
    manifest = models.register()
    with pytest.raises(
        DeployError, match=r"smoke rows for taxi version 1 lack the feature columns \['fare'\]"
    ):
        stage_model(models.registry, manifest, models.frame.drop(columns=["fare"]))
    bad = models.frame.head(2).copy()
    bad.loc[1, "hour"] = 30
    with pytest.raises(
        DeployError, match=r"would be rejected by the server: rows\[1\]\.hour=30 is outside \[0, 23\]"
    ):
        stage_model(models.registry, manifest, bad)
    with pytest.raises(DeployError, match="no smoke rows"):
        stage_model(models.registry, manifest, models.frame.head(0))


def test_a_model_that_fails_on_the_smoke_rows_is_not_staged(models: Any) -> None:
    from sklearn.preprocessing import OneHotEncoder

    pipeline = models.fit()
    pipeline.set_params(pre__cat=OneHotEncoder(handle_unknown="error"))
    pipeline.fit(models.frame.drop(columns=["tipped"]), models.frame["tipped"])
    schema = models.register(pipeline)
    # "voucher" is allowed by nothing declared, but this encoder never saw it
    del schema["feature_schema"]["columns"][3]["declared"]
    smoke = models.frame.head(1).assign(payment_type="voucher")
    with pytest.raises(DeployError, match="taxi version 1 fails to predict on 1 smoke rows: ValueError"):
        stage_model(models.registry, schema, smoke)
