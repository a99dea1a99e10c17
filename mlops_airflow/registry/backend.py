"""Choosing a registry backend from the one registry setting.

=====================================================  =====================================
registry URI                                           backend
=====================================================  =====================================
``/path``, ``file:///path``                            :class:`ModelRegistry` on a local folder (one host)
``s3://bucket/prefix``                                 :class:`ModelRegistry` on S3 (many hosts)
``mlflow+http://host:5000?store=s3://bucket/prefix``   :class:`MlflowRegistry`: versions in MLflow,
``mlflow+https://...``, ``mlflow+sqlite:///...``       guarantees and candidates in the side store
=====================================================  =====================================

For ``mlflow+`` URIs, everything after ``mlflow+`` except the ``store`` query parameter
is the MLflow tracking URI. Without ``store``, the side store is the local folder
``$AIRFLOW_HOME/mlops_registry_mlflow``, which serialises registrations on one host only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable
from urllib.parse import parse_qs, urlencode

if TYPE_CHECKING:
    from mlops_airflow.registry.index import ModelIndex
    from mlops_airflow.registry.registry import ModelRegistry
    from mlops_airflow.storage import ArtifactStore

MLFLOW_SCHEME = "mlflow+"


@runtime_checkable
class RegistryBackend(Protocol):
    """What every registry backend offers; the contract suite checks each one against it.

    ``capabilities`` maps each guarantee (``alias_cas``, ``concurrent_register``,
    ``idempotent_register``, ``atomic_commit``, ``multi_host``) to whether callers get it;
    ``native_capabilities`` says which the underlying system gives by itself and
    ``compensations`` how the backend makes up for the others.
    """

    store: ArtifactStore
    #: The per-model summaries listing reads (:mod:`mlops_airflow.registry.index`).
    index: ModelIndex
    native_capabilities: dict[str, bool]
    compensations: dict[str, str]

    @property
    def capabilities(self) -> dict[str, bool]: ...

    def put_artifact(self, model: str, data: bytes, candidate: dict[str, Any]) -> dict[str, Any]: ...

    def read_artifact(self, model: str, sha256: str) -> bytes: ...

    def candidate(self, model: str, sha256: str) -> dict[str, Any]: ...

    def list_models(self, match: str | None = None) -> list[str]: ...

    def list_versions(self, model: str) -> list[int]: ...

    def get_version(self, model: str, version: int) -> dict[str, Any]: ...

    def register(self, model: str, manifest: dict[str, Any], *, idempotency_key: str) -> dict[str, Any]: ...

    def resolve(self, model: str, *, version: int | None = None, alias: str | None = None) -> dict[str, Any]: ...

    def get_alias(self, model: str, alias: str) -> dict[str, Any] | None: ...

    def alias_records(self, model: str) -> dict[str, dict[str, Any]]: ...

    def aliases(self, model: str) -> dict[str, int]: ...

    def set_alias(
        self, model: str, alias: str, version: int, *, expected: int | None, by: str, reason: str
    ) -> dict[str, Any]: ...

    def remove_alias(self, model: str, alias: str, *, expected: int) -> None: ...


def split_mlflow_uri(uri: str) -> tuple[str, str]:
    """(tracking URI, side-store URI) of an ``mlflow+...`` registry URI."""
    from mlops_airflow.settings import airflow_home

    base, _, query = uri.removeprefix(MLFLOW_SCHEME).partition("?")
    params = parse_qs(query, keep_blank_values=True)
    store = (params.pop("store", None) or [""])[0] or str(airflow_home() / "mlops_registry_mlflow")
    return base + (f"?{urlencode(params, doseq=True)}" if params else ""), store


def store_uri(uri: str) -> str:
    """The artifact store behind a registry URI (where S3 credentials, if any, are needed)."""
    return split_mlflow_uri(uri)[1] if uri.startswith(MLFLOW_SCHEME) else uri


def open_registry(uri: str | None = None, *, s3_client: Any | None = None,
                  mlflow_client: Any | None = None) -> ModelRegistry:
    """The registry named by ``uri`` (default: the ``registry_uri`` setting); see the module table.

    ``s3_client`` is used for an ``s3://`` store (the registry's or the MLflow side store);
    ``mlflow_client`` replaces the ``MlflowClient`` the MLflow backend would build.
    """
    from mlops_airflow.registry.registry import ModelRegistry
    from mlops_airflow.settings import registry_uri
    from mlops_airflow.storage import open_store

    uri = uri or registry_uri()
    if uri.startswith(MLFLOW_SCHEME):
        from mlops_airflow.registry.mlflow import MlflowRegistry

        tracking, side = split_mlflow_uri(uri)
        return MlflowRegistry(tracking, open_store(side, s3_client=s3_client), client=mlflow_client)
    return ModelRegistry(open_store(uri, s3_client=s3_client))
