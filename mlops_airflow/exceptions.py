"""Errors raised by mlops-airflow's core.

The hierarchy, rooted in a plain ``Exception`` so that the core stays free of Airflow::

    MlopsError
    ├── ConfigError                 a spec, setting or argument is invalid (never retried)
    │   ├── GateSpecError           the quality-gate spec is invalid
    │   ├── ValidationSpecError     the data-validation spec is invalid
    │   └── EstimatorNotAllowed     the estimator is not on the allowlist, or its params are invalid
    ├── DataError                   the data itself is unusable (never retried)
    │   └── DataValidationError     the data failed its validation checks
    ├── StorageError                the artifact store failed (transient ones may be retried)
    │   └── ArtifactNotFound        no object at that key
    ├── RegistryError               the registry refused an operation
    │   ├── ModelNotFound           no such model, version or alias
    │   ├── AliasConflict           an alias moved since it was read (compare-and-swap lost)
    │   ├── VerdictMismatch         a verdict does not bind to this candidate, data, gate or champion
    │   └── CandidateRejected       the gate did not bless the candidate, and its spec says on_fail: fail
    ├── UnsafeModelError            a model failed its checksum or trusted-types check
    └── DeployError                 a deployment did not reach a serving, healthy state (never retried)

Operators turn the "never retried" branches into ``AirflowFailException``.
"""

from __future__ import annotations


class MlopsError(Exception):
    """Base class of every error raised by mlops-airflow."""


class ConfigError(MlopsError):
    """A spec, setting or argument is invalid; retrying cannot help."""


class GateSpecError(ConfigError):
    """The quality-gate spec is invalid."""


class ValidationSpecError(ConfigError):
    """The data-validation spec is invalid."""


class EstimatorNotAllowed(ConfigError):
    """The estimator is not on the allowlist, or its params are invalid."""


class DataError(MlopsError):
    """The data is missing, unreadable or unusable; retrying cannot help."""


class DataValidationError(DataError):
    """The data failed its validation checks."""

    def __init__(self, message: str, *, summary: dict | None = None) -> None:
        super().__init__(message)
        self.summary = summary or {}


class StorageError(MlopsError):
    """The artifact store failed to read or write."""


class ArtifactNotFound(StorageError):
    """No object exists at the requested key."""


class RegistryError(MlopsError):
    """The model registry refused an operation."""


class ModelNotFound(RegistryError):
    """No such model, version or alias."""


class AliasConflict(RegistryError):
    """An alias moved since it was read: the compare-and-swap was lost."""


class VerdictMismatch(RegistryError):
    """A verdict does not bind to this candidate, data, gate spec or champion."""


class CandidateRejected(RegistryError):
    """The gate did not bless the candidate, and its spec says ``on_fail: fail``."""


class UnsafeModelError(MlopsError):
    """A model failed its checksum, trusted-types or version-skew check."""


class DeployError(MlopsError):
    """A deployment did not reach a serving, healthy state."""


#: Errors that retrying the same task cannot fix.
PERMANENT_ERRORS: tuple[type[MlopsError], ...] = (
    ConfigError,
    DataError,
    RegistryError,
    UnsafeModelError,
    DeployError,  # the alias was already rolled back: alert rather than retry
)
