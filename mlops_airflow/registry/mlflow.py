"""The model registry over an MLflow Model Registry, with the built-in registry's guarantees.

MLflow holds the versions: registered model ``<model>``, one model version per registered
version, created from the candidate's training run (or a ``register`` run) whose artifacts
hold ``model/model.skops``. Our manifest — the same JSON record the built-in registry
writes, schema-valid — is the version's tag ``mlops.manifest``; setting that tag is the
commit, so a version without it (a crash between MLflow's create and our tag) is not ours
yet and stays invisible until a retry completes it.

MLflow lacks three guarantees the contract asks for; this backend compensates with a
*side store* (an :class:`~mlops_airflow.storage.ArtifactStore`, S3 or a local folder, named
in the registry URI) using the same atomic primitives as the built-in registry:

- **alias compare-and-swap** — MLflow's ``set_registered_model_alias`` is an unconditional
  write. The alias record in the side store (``<model>/aliases/<alias>.json``) is moved by
  CAS exactly as in the built-in registry; only after the CAS succeeds is the MLflow alias
  set to match (a mirror for MLflow's UI and clients). Our readers read the record.
- **concurrent registration** — MLflow's SQL store gives up after three colliding inserts.
  Registrations of one model are serialised by a lease lock in the side store, so N
  racers each get a distinct version and none is refused.
- **idempotent retries** — under the same lock, a version tagged with the caller's
  idempotency key and the candidate's sha256 is returned (and completed if the earlier
  attempt crashed before its commit tag) instead of creating another. An attempt that
  stalled past the lock's lease and created one after its twin did settles on the same
  version as the twin (the committed one, else the lowest-numbered), so only one is committed.

Candidates, verdicts, reports and snapshots stay in the side store, as with the
built-in registry; the registered model's bytes are read back from MLflow and, as
everywhere, loaded only after their sha256 matches the manifest.
"""

from __future__ import annotations

import json
import os
import tempfile
from typing import Any

from mlops_airflow.exceptions import ModelNotFound, RegistryError, StorageError
from mlops_airflow.records import check_readable
from mlops_airflow.registry.lock import StoreLock
from mlops_airflow.registry.registry import ModelRegistry, check_name, to_json
from mlops_airflow.storage import ArtifactStore
from mlops_airflow.tracking import MlflowTracker, experiment_id, find_runs, mlflow_client

TAG_MANIFEST = "mlops.manifest"
TAG_SHA = "mlops.sha256"
TAG_KEY = "mlops.idempotency_key"
ARTIFACT_PATH = "model"
ARTIFACT_NAME = "model.skops"
#: MLflow's limit on a model-version tag value.
MAX_MANIFEST_CHARS = 100_000


_REFUSALS = {"INVALID_PARAMETER_VALUE", "PERMISSION_DENIED", "UNAUTHENTICATED", "RESOURCE_ALREADY_EXISTS"}


def _error_code(exc: BaseException) -> str:
    return str(getattr(exc, "error_code", "") or "")


class MlflowRegistry(ModelRegistry):
    """Versions in MLflow, guarantees from a side store (see the module docstring)."""

    native_capabilities = {
        "alias_cas": False,  # set_registered_model_alias is an unconditional write
        "concurrent_register": False,  # the SQL store gives up after 3 colliding version inserts
        "idempotent_register": False,  # a retried create_model_version makes a second version
        "atomic_commit": True,  # one INSERT; our commit is the manifest tag on top of it
    }
    compensations = {
        "alias_cas": "CAS on the alias record in the side store, then the MLflow alias is set to match",
        "concurrent_register": "registrations of a model are serialised by a lease lock in the side store",
        "idempotent_register": "under that lock, a version tagged with the same idempotency key and sha256 is reused",
    }

    def __init__(self, tracking_uri: str, store: ArtifactStore, *, client: Any | None = None,
                 lock_ttl: float = 120.0) -> None:
        super().__init__(store)
        self.tracking_uri = tracking_uri
        self._client = client
        self.lock_ttl = lock_ttl

    @property
    def client(self) -> Any:
        # NB: built lazily so that a registry can be constructed (and pickled) without importing mlflow.
        if self._client is None:
            self._client = mlflow_client(self.tracking_uri)
        return self._client

    @property
    def tracker(self) -> MlflowTracker:
        """Stages working on this registry log their runs to the same MLflow server."""
        return MlflowTracker(self.tracking_uri, client=self.client)

    def _call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """Run an MLflow call; its errors become ours (outages as ``StorageError``, which operators retry)."""
        from mlflow.exceptions import MlflowException

        try:
            return fn(*args, **kwargs)
        except MlflowException as exc:
            code = _error_code(exc)
            if code == "RESOURCE_DOES_NOT_EXIST":
                raise ModelNotFound(f"{what}: not in MLflow at {self.tracking_uri}") from exc
            if code in _REFUSALS:  # retrying cannot help: say so instead of burning the task's retries
                raise RegistryError(f"MLflow at {self.tracking_uri} refused to {what}: {exc}") from exc
            raise StorageError(f"MLflow at {self.tracking_uri} failed to {what}: {exc}") from exc

    # -- versions --------------------------------------------------------------------
    def _model_versions(self, model: str) -> list[Any]:
        found: list[Any] = []
        token = None
        query = f"name = '{check_name(model)}'"
        while True:
            page = self._call("list model versions", self.client.search_model_versions, query,
                              max_results=1000, page_token=token)
            found.extend(page)
            token = getattr(page, "token", None)
            if not token:
                return found

    def list_versions(self, model: str) -> list[int]:
        return sorted(int(mv.version) for mv in self._model_versions(model) if TAG_MANIFEST in mv.tags)

    def get_version(self, model: str, version: int) -> dict[str, Any]:
        missing = f"model {model!r} has no version {version}"
        try:
            mv = self._call(missing, self.client.get_model_version, check_name(model), str(int(version)))
        except ModelNotFound as exc:
            raise ModelNotFound(missing) from exc
        return self._manifest_of(mv, missing)

    def _manifest_of(self, mv: Any, missing: str) -> dict[str, Any]:
        text = mv.tags.get(TAG_MANIFEST)
        if text is None:
            raise ModelNotFound(missing + " (an MLflow version not committed by mlops-airflow)")
        where = f"models:/{mv.name}/{mv.version} tag {TAG_MANIFEST}"
        try:
            record = json.loads(text)
        except ValueError as exc:
            raise RegistryError(f"{where} is not valid JSON: {exc}") from exc
        if not isinstance(record, dict):
            raise RegistryError(f"{where} does not hold a JSON object")
        return check_readable("manifest", record, where)

    def latest(self, model: str) -> dict[str, Any]:
        versions = self.list_versions(model)
        if not versions:
            raise ModelNotFound(f"no model named {model!r} in MLflow at {self.tracking_uri}")
        return self.get_version(model, versions[-1])

    def _register(self, model: str, manifest: dict[str, Any], *, idempotency_key: str) -> dict[str, Any]:
        """Commit a new MLflow model version of ``model``; see :meth:`ModelRegistry.register` for the promise."""
        sha = self._check_registrable(model, manifest)
        self._manifest_record(model, manifest, 1, idempotency_key)  # refuse an invalid manifest before MLflow sees it
        client = self.client  # NB: imports mlflow (seconds) before taking the lock, not while others wait on it
        with StoreLock(self.store, f"{model}/locks/register.json", ttl=self.lock_ttl):
            versions = self._model_versions(model)
            mv = self._find_own_version(versions, idempotency_key, sha)
            if mv is None:
                outcome = str((manifest.get("verdict") or {}).get("outcome"))
                self._create_version(model, sha, idempotency_key, outcome, model_exists=bool(versions))
                # A twin that took the lock over while we stalled past its lease may have made one too:
                # every attempt settles on the same one, so only one is ever committed.
                mv = self._find_own_version(self._model_versions(model), idempotency_key, sha)
                if mv is None:
                    raise StorageError(f"MLflow at {self.tracking_uri} does not list the version just created")
            if TAG_MANIFEST in mv.tags:
                return self._manifest_of(mv, f"model {model!r} version {mv.version}")
            record = self._manifest_record(model, manifest, int(mv.version), idempotency_key)
            record["artifact_uri"] = f"{mv.source.rstrip('/')}/{ARTIFACT_NAME}"
            text = to_json(record).decode()
            if len(text) > MAX_MANIFEST_CHARS:
                raise RegistryError(
                    f"the manifest of {model!r} is {len(text)} characters, over MLflow's tag limit of "
                    f"{MAX_MANIFEST_CHARS}: the feature schema is too large for the MLflow backend"
                )
            # Setting this tag is the commit: before it, readers do not see the version.
            self._call("commit the manifest", client.set_model_version_tag, model, mv.version, TAG_MANIFEST, text)
        return record

    @staticmethod
    def _find_own_version(versions: list[Any], idempotency_key: str, sha: str) -> Any | None:
        """The version attempts with this key and sha256 agree on: the committed one, else the lowest-numbered."""
        own = [mv for mv in versions if mv.tags.get(TAG_KEY) == idempotency_key and mv.tags.get(TAG_SHA) == sha]
        return min(own, key=lambda mv: (TAG_MANIFEST not in mv.tags, int(mv.version)), default=None)

    def _create_version(self, model: str, sha: str, idempotency_key: str, outcome: str, *, model_exists: bool) -> Any:
        from mlflow.exceptions import MlflowException

        if not model_exists:
            try:
                self.client.create_registered_model(model, tags={"mlops.managed": "true"})
            except MlflowException as exc:
                if _error_code(exc) != "RESOURCE_ALREADY_EXISTS":
                    raise StorageError(f"MLflow at {self.tracking_uri} failed to create model {model!r}: {exc}") from exc
        runs = find_runs(self.client, model, sha)
        # The version is made from the candidate's training run when it was tracked, so MLflow links them.
        run = runs.get("train") or self._call("create a run", self.client.create_run, experiment_id(self.client, model),
                                              run_name=f"register {sha[:12]}",
                                              tags={"mlops.stage": "register", "mlops.candidate_sha256": sha})
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, ARTIFACT_NAME)
            with open(path, "wb") as fh:
                fh.write(super().read_artifact(model, sha))
            self._call("upload the model", self.client.log_artifact, run.info.run_id, path, ARTIFACT_PATH)
        if "train" not in runs:
            self.client.set_terminated(run.info.run_id, "FINISHED")
        tags = {TAG_KEY: idempotency_key, TAG_SHA: sha, "mlops.verdict_outcome": outcome}
        if "evaluate" in runs:
            tags["mlops.evaluate_run_id"] = runs["evaluate"].info.run_id
        return self._call("create a model version", self.client.create_model_version, model,
                          f"{run.info.artifact_uri.rstrip('/')}/{ARTIFACT_PATH}", run_id=run.info.run_id, tags=tags)

    # -- artifacts -------------------------------------------------------------------
    def read_artifact(self, model: str, sha256: str) -> bytes:
        """A registered version's bytes from MLflow; a candidate's (not yet registered) from the side store."""
        try:
            versions = self._model_versions(model)
        except ModelNotFound:
            versions = []
        for mv in versions:
            if mv.tags.get(TAG_SHA) == sha256 and TAG_MANIFEST in mv.tags:
                with tempfile.TemporaryDirectory() as tmp:
                    path = self._call(f"download {model} version {mv.version}", self.client.download_artifacts,
                                      mv.run_id, f"{ARTIFACT_PATH}/{ARTIFACT_NAME}", tmp)
                    with open(path, "rb") as fh:
                        return fh.read()
        return super().read_artifact(model, sha256)

    # -- aliases ---------------------------------------------------------------------
    def set_alias(self, model: str, alias: str, version: int, *, expected: int | None, by: str,
                  reason: str) -> dict[str, Any]:
        """CAS the alias record (a lost race raises :class:`AliasConflict` before MLflow is touched), then mirror it."""
        record = super().set_alias(model, alias, version, expected=expected, by=by, reason=reason)
        self._mirror(model, alias, int(version))
        return record

    def remove_alias(self, model: str, alias: str, *, expected: int) -> None:
        super().remove_alias(model, alias, expected=expected)
        self._mirror(model, alias, None)

    def _mirror(self, model: str, alias: str, version: int | None) -> None:
        from mlflow.exceptions import MlflowException

        try:
            if version is None:
                self.client.delete_registered_model_alias(model, alias)
            else:
                self.client.set_registered_model_alias(model, alias, str(version))
        except MlflowException as exc:
            if version is None and _error_code(exc) in {"RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"}:
                return
            raise StorageError(
                f"{model}@{alias} moved to {version} in {self.store.url(f'{model}/aliases/{alias}.json')}, but "
                f"MLflow's alias could not be updated ({exc}); move it again or call sync_aliases()"
            ) from exc

    def sync_aliases(self, model: str) -> dict[str, int]:
        """Set every MLflow alias of ``model`` to what our alias records say (repairs an interrupted mirror)."""
        found = self.aliases(model)
        for alias, version in found.items():
            self._mirror(model, alias, version)
        return found

