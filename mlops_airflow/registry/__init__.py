"""The model registry: versions, aliases and lineage on a plain artifact store."""

from mlops_airflow.registry.backend import RegistryBackend, open_registry
from mlops_airflow.registry.registry import FORMAT_VERSION, ModelRegistry, idempotency_key

__all__ = ["FORMAT_VERSION", "ModelRegistry", "RegistryBackend", "idempotency_key", "open_registry"]
