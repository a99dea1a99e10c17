"""Experiment tracking: training and evaluation logged as MLflow runs, when a tracking server is configured.

The pipeline stages call :func:`tracker_for` and report to whatever it returns; with no
tracking configured that is :class:`NoTracker`, which does nothing. Tracking is on when
the registry itself is MLflow-backed (``mlflow+http://...``) or the setting
``MLOPS_AIRFLOW_MLFLOW_TRACKING_URI`` names a server (see :mod:`mlops_airflow.settings`).

Per model, one MLflow experiment ``mlops-airflow/<model>`` holds:

- a **train** run per candidate: params (estimator, its params, target, split), metrics
  (fit time, rows), the dataset as an input whose digest is our data fingerprint, the
  candidate record and the validation report as artifacts;
- an **evaluate** run per verdict: the candidate's (and champion's, baseline's) holdout
  metrics, the verdict JSON as an artifact and its outcome as tags, the gate report (HTML);
- links: each run is tagged with the candidate's sha256; a registered version is tagged
  on both runs, and an MLflow-backed registry creates the model version from the train run.

A tracking failure is logged as a warning and never fails the stage: the registry, not
the tracker, is the record of what was trained and promoted.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import pandas as pd

    from mlops_airflow.registry import ModelRegistry

log = logging.getLogger(__name__)

TAG_STAGE = "mlops.stage"
TAG_MODEL = "mlops.model_name"
TAG_SHA = "mlops.candidate_sha256"
TAG_FINGERPRINT = "mlops.data_fingerprint"
TAG_VERSION = "mlops.registered_version"
TAG_OUTCOME = "mlops.verdict_outcome"
#: MLflow caps a dataset digest at 36 characters; the full fingerprint goes in a tag beside it.
DIGEST_LENGTH = 32


class Tracker(Protocol):
    """What the pipeline stages report; each method returns the record it was given."""

    def training(self, registry: ModelRegistry, candidate: dict[str, Any], frame: pd.DataFrame) -> dict[str, Any]: ...

    def evaluation(self, registry: ModelRegistry, verdict: dict[str, Any]) -> dict[str, Any]: ...

    def registered(self, registry: ModelRegistry, manifest: dict[str, Any]) -> dict[str, Any]: ...


class NoTracker:
    """No tracking configured: every report is dropped."""

    def training(self, registry: ModelRegistry, candidate: dict[str, Any], frame: pd.DataFrame) -> dict[str, Any]:
        return candidate

    def evaluation(self, registry: ModelRegistry, verdict: dict[str, Any]) -> dict[str, Any]:
        return verdict

    def registered(self, registry: ModelRegistry, manifest: dict[str, Any]) -> dict[str, Any]:
        return manifest


def tracker_for(registry: ModelRegistry) -> Tracker:
    """The tracker for stages working on ``registry``: its own (MLflow registry), the setting's, or none."""
    own = getattr(registry, "tracker", None)
    if own is not None:
        return own  # type: ignore[no-any-return]
    from mlops_airflow.settings import mlflow_tracking_uri

    uri = mlflow_tracking_uri()
    return MlflowTracker(uri) if uri else NoTracker()


def mlflow_client(tracking_uri: str) -> Any:
    """An ``MlflowClient`` whose tracking and registry both live at ``tracking_uri``."""
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)


def experiment_id(client: Any, model_name: str) -> str:
    """The id of the experiment ``mlops-airflow/<model>``, created on first use."""
    from mlflow.exceptions import MlflowException

    name = f"mlops-airflow/{model_name}"
    found = client.get_experiment_by_name(name)
    if found is not None:
        return str(found.experiment_id)
    try:
        return str(client.create_experiment(name))
    except MlflowException:  # created by a concurrent run between our two requests
        found = client.get_experiment_by_name(name)
        if found is None:
            raise
        return str(found.experiment_id)


def find_runs(client: Any, model_name: str, sha256: str) -> dict[str, Any]:
    """The newest tracked run of each stage (``train``, ``evaluate``, ...) for the candidate ``sha256``."""
    experiment = client.get_experiment_by_name(f"mlops-airflow/{model_name}")
    if experiment is None:
        return {}
    runs = client.search_runs(
        [experiment.experiment_id],
        filter_string=f"tags.`{TAG_SHA}` = '{sha256}'",
        order_by=["attributes.start_time DESC"],
        max_results=100,
    )
    newest: dict[str, Any] = {}
    for run in runs:
        newest.setdefault(run.data.tags.get(TAG_STAGE, ""), run)
    return newest


def find_run(client: Any, model_name: str, sha256: str, stage: str) -> str | None:
    """The id of the newest run of ``stage`` for the candidate ``sha256``, if one was tracked."""
    run = find_runs(client, model_name, sha256).get(stage)
    return str(run.info.run_id) if run else None


def _flat(prefix: str, value: Any) -> dict[str, Any]:
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            out.update(_flat(f"{prefix}.{key}" if prefix else str(key), item))
        return out
    return {prefix: value}


def _numbers(values: dict[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in values.items() if isinstance(v, int | float) and not isinstance(v, bool)}


class MlflowTracker:
    """Logs stages as MLflow runs at ``tracking_uri`` (the client is injectable for tests)."""

    def __init__(self, tracking_uri: str, client: Any | None = None) -> None:
        self.tracking_uri = tracking_uri
        self._client = client

    @property
    def client(self) -> Any:
        # NB: built lazily so that constructing a tracker costs no mlflow import and no I/O.
        if self._client is None:
            self._client = mlflow_client(self.tracking_uri)
        return self._client

    def _run(self, model_name: str, sha256: str, stage: str, tags: dict[str, str]) -> str:
        run = self.client.create_run(
            experiment_id(self.client, model_name),
            run_name=f"{stage} {sha256[:12]}",
            tags={TAG_STAGE: stage, TAG_MODEL: model_name, TAG_SHA: sha256, **tags},
        )
        return str(run.info.run_id)

    def _log(self, run_id: str, *, params: dict[str, Any], metrics: dict[str, float], tags: dict[str, Any]) -> None:
        import time

        from mlflow.entities import Metric, Param, RunTag

        now = int(time.time() * 1000)
        self.client.log_batch(
            run_id,
            metrics=[Metric(k, v, now, 0) for k, v in metrics.items()],
            params=[Param(k, json.dumps(v) if isinstance(v, list | dict) else str(v)) for k, v in params.items()],
            tags=[RunTag(k, str(v)) for k, v in tags.items()],
        )

    def _log_json(self, run_id: str, name: str, record: dict[str, Any]) -> None:
        self._log_bytes(run_id, name, json.dumps(record, indent=2, sort_keys=True, default=str).encode())

    def _log_bytes(self, run_id: str, name: str, data: bytes, folder: str | None = None) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, name)
            with open(path, "wb") as fh:
                fh.write(data)
            self.client.log_artifact(run_id, path, folder)

    def _log_stored(self, registry: ModelRegistry, run_id: str, uri: str | None, name: str) -> None:
        """Copy a report from the registry's store into the run (skipped if it is not in that store)."""
        key = registry.store.key_of(uri)
        if key and registry.store.exists(key):
            self._log_bytes(run_id, name, registry.store.read_bytes(key), "reports")

    def _guarded(self, what: str, fn: Any, *args: Any) -> None:
        try:
            fn(*args)
        except Exception as exc:  # a tracking outage must not fail training: the registry is the record
            log.warning("MLflow tracking at %s failed while logging %s: %s: %s",
                        self.tracking_uri, what, type(exc).__name__, exc)

    # -- stages ----------------------------------------------------------------------
    def training(self, registry: ModelRegistry, candidate: dict[str, Any], frame: pd.DataFrame) -> dict[str, Any]:
        self._guarded("training", self._training, registry, candidate, frame)
        return candidate

    def _training(self, registry: ModelRegistry, candidate: dict[str, Any], frame: pd.DataFrame) -> None:
        data = candidate["data"]
        run_id = self._run(candidate["model_name"], candidate["sha256"], "train",
                           {TAG_FINGERPRINT: data["fingerprint"]})
        split = candidate.get("split", {})
        params = {
            "estimator": candidate.get("estimator"),
            "target": candidate.get("target"),
            "task_type": candidate.get("task_type"),
            "row_key": split.get("row_key"),
            "holdout_fraction": split.get("fraction"),
            "pipeline_factory": candidate.get("pipeline_factory"),
            **_flat("estimator_params", candidate.get("estimator_params") or {}),
        }
        metrics = _numbers({"fit_seconds": candidate.get("fit_seconds"), "rows": data.get("rows"),
                            "train_rows": split.get("train_rows"), "holdout_rows": split.get("holdout_rows")})
        self._log(run_id, params={k: v for k, v in params.items() if v is not None}, metrics=metrics,
                  tags={"mlops.data_uri": data.get("uri")})
        self._log_dataset(run_id, candidate, frame)
        self._log_json(run_id, "candidate.json", candidate)
        self._log_stored(registry, run_id, data.get("validation_report_uri"), "validation.html")
        self.client.set_terminated(run_id, "FINISHED")

    def _log_dataset(self, run_id: str, candidate: dict[str, Any], frame: pd.DataFrame) -> None:
        from mlflow.data.pandas_dataset import from_pandas
        from mlflow.entities import DatasetInput, InputTag

        data = candidate["data"]
        fingerprint = str(data["fingerprint"])
        digest = fingerprint.rsplit(":", 1)[-1][:DIGEST_LENGTH]
        name = f"{candidate['model_name']}-training-data"
        try:
            dataset = from_pandas(frame, source=data.get("uri"), targets=candidate.get("target"),
                                              name=name, digest=digest)
        except Exception:  # noqa: BLE001 - a source MLflow cannot resolve (e.g. sql://) still logs the data
            dataset = from_pandas(frame, targets=candidate.get("target"), name=name, digest=digest)
        tags = [InputTag("mlflow.data.context", "training"), InputTag(TAG_FINGERPRINT, fingerprint)]
        self.client.log_inputs(run_id, datasets=[DatasetInput(dataset._to_mlflow_entity(), tags=tags)])

    def evaluation(self, registry: ModelRegistry, verdict: dict[str, Any]) -> dict[str, Any]:
        self._guarded("evaluation", self._evaluation, registry, verdict)
        return verdict

    def _evaluation(self, registry: ModelRegistry, verdict: dict[str, Any]) -> None:
        sha = verdict["candidate_sha256"]
        champion = verdict.get("champion") or {}
        train_run = find_run(self.client, verdict["model_name"], sha, "train")
        run_id = self._run(verdict["model_name"], sha, "evaluate", {
            TAG_OUTCOME: str(verdict.get("outcome")),
            "mlops.blessed": str(bool(verdict.get("blessed"))).lower(),
            "mlops.verdict_id": str(verdict.get("verdict_id")),
            "mlops.champion_version": str(champion.get("version")),
            **({"mlops.train_run_id": train_run} if train_run else {}),
        })
        metrics: dict[str, float] = {}
        for side, values in (verdict.get("metrics") or {}).items():
            named = {(k if side == "candidate" else f"{side}.{k}"): v for k, v in (values or {}).items()}
            metrics.update(_numbers(named))
        params = {"gate_source": verdict.get("gate_source"), "gate_hash": verdict.get("gate_hash"),
                  "primary_metric": verdict.get("primary_metric"), "on_fail": verdict.get("on_fail"),
                  "holdout_rows": verdict.get("holdout_rows")}
        self._log(run_id, params={k: v for k, v in params.items() if v is not None}, metrics=metrics,
                  tags={"mlops.verdict_reason": str(verdict.get("reason", ""))[:5000]})
        self._log_json(run_id, "verdict.json", verdict)
        self._log_stored(registry, run_id, verdict.get("report_uri"), "gate.html")
        self.client.set_terminated(run_id, "FINISHED")

    def registered(self, registry: ModelRegistry, manifest: dict[str, Any]) -> dict[str, Any]:
        self._guarded("registration", self._registered, manifest)
        return manifest

    def _registered(self, manifest: dict[str, Any]) -> None:
        runs = find_runs(self.client, manifest["model_name"], manifest["sha256"])
        for stage in ("train", "evaluate"):
            if stage in runs:
                self.client.set_tag(runs[stage].info.run_id, TAG_VERSION, str(manifest["version"]))
