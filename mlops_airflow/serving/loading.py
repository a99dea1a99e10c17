"""Loading a registered model for serving: the one loader both the server and the deploy stage use.

The deploy stage stages a candidate with :func:`stage_model` before it moves the
``champion`` alias, so a model is promoted only if the server would load it: the same
checksum, trusted types, version-skew policy and schema checks, plus a prediction on
smoke rows passed through the server's own request validation.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from typing import TYPE_CHECKING, Any

from mlops_airflow.exceptions import DeployError, UnsafeModelError
from mlops_airflow.persistence import SkewPolicy, check_version_skew, load_model

if TYPE_CHECKING:
    import pandas as pd

    from mlops_airflow.registry.registry import ModelRegistry
    from mlops_airflow.serving.compiled import FastPipeline
    from mlops_airflow.serving.requests import SchemaChecker

CLASSIFIER_TASKS = ("binary", "multiclass")


@dataclass(frozen=True)
class LoadedModel:
    """A model ready to serve and the manifest it was loaded from; never mutated once built."""

    model: Any
    manifest: dict[str, Any]
    loaded_at: str
    #: Library version skew accepted under the ``warn`` policy (empty when none).
    load_warnings: list[str] = field(default_factory=list)

    @property
    def model_name(self) -> str:
        return str(self.manifest["model_name"])

    @property
    def version(self) -> int:
        return int(self.manifest["version"])

    @property
    def sha256(self) -> str:
        return str(self.manifest["sha256"])

    @property
    def feature_schema(self) -> dict[str, Any]:
        return dict(self.manifest.get("feature_schema") or {})

    @cached_property
    def request_checker(self) -> SchemaChecker:
        """The request checks of this model's schema, built once (it never changes for a loaded model)."""
        from mlops_airflow.serving.requests import SchemaChecker

        return SchemaChecker(self.feature_schema)

    @cached_property
    def fast(self) -> FastPipeline | None:
        """The pipeline compiled to numpy, verified bit for bit against it; None when it has none (see ``compiled``)."""
        from mlops_airflow.serving.compiled import verified_fast_path

        return verified_fast_path(self)

    def warm(self) -> None:
        """Build what requests need (the schema's checks, typed decoders, the fast path) now, not on the first request."""
        from mlops_airflow.serving.typed_bodies import decoders

        decoders(self.request_checker)
        _ = self.fast  # compiled and checked against the pipeline here, in the loader thread

    @property
    def task_type(self) -> str | None:
        return self.manifest.get("task_type")

    @property
    def is_classifier(self) -> bool:
        return self.task_type in CLASSIFIER_TASKS or hasattr(self.model, "classes_")

    @cached_property
    def gives_probabilities(self) -> bool:
        """Whether answers carry probabilities: a classifier with ``predict_proba`` (asked once: ~2 µs a time)."""
        return self.is_classifier and hasattr(self.model, "predict_proba")

    @property
    def classes(self) -> list[Any] | None:
        classes = getattr(self.model, "classes_", None)
        if classes is not None:
            return list(classes.tolist() if hasattr(classes, "tolist") else classes)
        return self.manifest.get("classes")


def _describe(manifest: dict[str, Any]) -> str:
    return f"{manifest.get('model_name', '?')} version {manifest.get('version', '?')}"


def feature_names(schema: dict[str, Any]) -> list[str]:
    """The feature columns a schema lists, in order."""
    return [column["name"] for column in schema.get("columns", [])]


def load_manifest_model(
    registry: ModelRegistry, manifest: dict[str, Any], *, skew_policy: SkewPolicy = "warn"
) -> LoadedModel:
    """Read, verify and load the artifact a manifest names, and check it against its schema.

    Raises :class:`UnsafeModelError` (checksum, untrusted types, version skew under
    ``refuse``), :class:`DeployError` (manifest or schema problems) or the store's own
    ``StorageError`` (the artifact could not be read: may be transient).
    """
    what = _describe(manifest)
    sha = manifest.get("sha256")
    if not sha:
        raise UnsafeModelError(
            f"{what} has no sha256 in its manifest: refusing a model that cannot be verified"
        )
    schema = manifest.get("feature_schema")
    if not isinstance(schema, dict) or not schema.get("columns"):
        raise DeployError(
            f"{what} has no feature schema in its manifest: the server could not check requests"
        )
    # Skew is checked before the bytes are deserialised: under "refuse" a model from
    # another scikit-learn is never even unpacked. Done here rather than inside
    # load_model so the accepted skew can be reported by /metadata.
    try:
        skew = check_version_skew(manifest.get("packages") or {}, skew_policy)
    except UnsafeModelError as exc:
        raise UnsafeModelError(f"{what}: {exc}") from exc
    data = registry.read_artifact(str(manifest["model_name"]), sha)
    try:
        model = load_model(data, expected_sha256=sha)
    except UnsafeModelError as exc:
        raise UnsafeModelError(f"{what}: {exc}") from exc
    _check_schema(model, manifest, what)
    return LoadedModel(
        model=model,
        manifest=manifest,
        loaded_at=datetime.now(UTC).isoformat(timespec="seconds"),
        load_warnings=[f"library version skew: {line}" for line in skew],
    )


def _check_schema(model: Any, manifest: dict[str, Any], what: str) -> None:
    """The model must predict, on exactly the schema's columns, the classes its manifest lists."""
    if not callable(getattr(model, "predict", None)):
        raise DeployError(f"{what} is a {type(model).__name__}, which has no predict method")
    expected = feature_names(manifest["feature_schema"])
    fitted = getattr(model, "feature_names_in_", None)
    if fitted is not None:
        fitted = [str(name) for name in fitted]
        if fitted != expected:
            missing = [name for name in expected if name not in fitted]
            extra = [name for name in fitted if name not in expected]
            if missing or extra:
                detail = f"schema-only columns {missing}, model-only columns {extra}"
            else:
                detail = f"same columns in another order: model {fitted}, schema {expected}"
            raise DeployError(f"{what} was fitted on other columns than its feature schema lists: {detail}")
    recorded = manifest.get("classes")
    classes = getattr(model, "classes_", None)
    if recorded is not None and classes is not None:
        actual = [str(item) for item in classes]
        if actual != [str(item) for item in recorded]:
            raise DeployError(f"{what} predicts classes {actual}, but its manifest records {list(recorded)}")


def smoke_predict(loaded: LoadedModel, smoke_rows: pd.DataFrame) -> None:
    """Predict on ``smoke_rows`` through the server's request validation; raise DeployError if that fails."""
    from mlops_airflow.serving.predict import predict_rows
    from mlops_airflow.serving.requests import parse_rows

    what = _describe(loaded.manifest)
    names = feature_names(loaded.feature_schema)
    missing = [name for name in names if name not in smoke_rows.columns]
    if missing:
        raise DeployError(f"smoke rows for {what} lack the feature columns {missing}")
    if smoke_rows.empty:
        raise DeployError(f"no smoke rows for {what}: give at least one row or none at all")
    records = smoke_rows[names].to_dict(orient="records")
    # max_rows: smoke rows are ours, not a client's, so the request limit does not apply
    parsed = parse_rows({"rows": records}, loaded.request_checker, max_rows=max(len(records), 1))
    if not parsed.ok or parsed.frame is None:
        shown = "; ".join(parsed.errors[:10])
        raise DeployError(f"smoke rows for {what} would be rejected by the server: {shown}")
    try:  # exactly what the server computes for a request
        predictions = predict_rows(loaded, parsed.frame)["predictions"]
    except Exception as exc:  # any failure here means the model cannot serve: say which and why
        raise DeployError(
            f"{what} fails to predict on {len(records)} smoke rows: {type(exc).__name__}: {exc}"
        ) from exc
    if len(predictions) != len(records):
        raise DeployError(f"{what} returned {len(predictions)} predictions for {len(records)} smoke rows")


def stage_model(
    registry: ModelRegistry,
    manifest: dict[str, Any],
    smoke_rows: pd.DataFrame | None = None,
    *,
    skew_policy: SkewPolicy = "warn",
) -> Any:
    """Load a registered model exactly as the server would, and predict on ``smoke_rows`` if given.

    Returns the loaded model object (a fitted scikit-learn estimator). Raises
    :class:`UnsafeModelError` if the artifact fails its checksum, trusted-types or
    version-skew check, and :class:`DeployError` if the model does not fit its schema or
    fails on the smoke rows; either way the model must not be promoted.
    """
    loaded = load_manifest_model(registry, manifest, skew_policy=skew_policy)
    if smoke_rows is not None:
        smoke_predict(loaded, smoke_rows)
    return loaded.model
