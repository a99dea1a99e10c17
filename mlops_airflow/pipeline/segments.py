"""Many models in one run: one per segment (server, store, region), thousands at a time.

:func:`plan_segments` validates the whole table once (one Great Expectations suite), cuts
it by a segment column, checks each segment's rows and classes, and writes the segments
in batches into the artifact store; a DAG maps one task over the batches (so a map of
3,000 segments is ~50 task instances, far below Airflow's ``max_map_length``).
:func:`train_segment_batch` trains, gates, registers and promotes each segment of one
batch in-process, with the same stage functions a continuous-training run uses, trying an
ordered **cascade of architectures** per segment until one passes its gate; every segment
keeps its own model name, verdict, registry entry and failure (one bad segment never stops
another). :func:`summarise_segments` records what happened to each.

Rows that fail the validation spec are traced to their segments: those segments are left
out, named with the reason, and the rest of the table is validated again before anything
trains, so no unvalidated row reaches a model.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import math
import re
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import TYPE_CHECKING, Any, Literal

from mlops_airflow.data.loading import load_dataset, rows_digest
from mlops_airflow.data.snapshot import snapshot_key, write_snapshot
from mlops_airflow.exceptions import (
    ArtifactNotFound,
    ConfigError,
    DataError,
    DataValidationError,
    ModelNotFound,
)
from mlops_airflow.registry import ModelRegistry
from mlops_airflow.registry.registry import check_name

if TYPE_CHECKING:
    from collections.abc import Iterator

    import pandas as pd


log = logging.getLogger(__name__)

Outcome = Literal["promoted", "kept", "failed"]
DEFAULT_MIN_ROWS = 50
#: Without ``segments_per_task``, segments are spread over about this many mapped tasks.
DEFAULT_TASKS = 50
#: A segment's target needs at least two values, and each class at least this many rows.
MIN_CLASS_ROWS = 5
#: The cascade when none is given: a linear model first (fast, robust on few rows), then boosting.
DEFAULT_ARCHITECTURES = (
    {"estimator": "sklearn.linear_model.LogisticRegression", "estimator_params": {"max_iter": 500}},
    {"estimator": "sklearn.ensemble.HistGradientBoostingClassifier"},
)
#: Promoted segments whose serving is confirmed at once (the server loads them on its own threads).
_CONFIRM_THREADS = 8


def segment_slug(value: Any) -> str:
    """A segment value as it may appear in a model name and a file name."""
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", str(value)).strip("_.-")
    return slug or "blank"


def check_architectures(architectures: Any) -> list[dict[str, Any]]:
    """The cascade as a list of ``{"estimator", "estimator_params"}`` / ``{"pipeline_factory"}`` entries.

    Raises :class:`ConfigError` naming the entry and field. Allowlists are checked when
    each is trained (the same check a continuous-training run makes).
    """
    if architectures is None or architectures == [] or architectures == "":
        architectures = [dict(entry) for entry in DEFAULT_ARCHITECTURES]
    if isinstance(architectures, str):
        try:
            architectures = json.loads(architectures)
        except ValueError as exc:
            raise ConfigError(f"architectures: not a JSON list: {exc}") from exc
    if not isinstance(architectures, list):
        raise ConfigError(f"architectures must be a list of objects, got {type(architectures).__name__}")
    checked = []
    for index, entry in enumerate(architectures):
        where = f"architectures[{index}]"
        if isinstance(entry, str):
            entry = {"estimator": entry}
        if not isinstance(entry, dict):
            raise ConfigError(f"{where} must be an object or an estimator path, got {entry!r}")
        unknown = sorted(set(entry) - {"estimator", "estimator_params", "pipeline_factory", "name"})
        if unknown:
            raise ConfigError(f"{where}: unknown field {unknown[0]!r} (use estimator, estimator_params, "
                              "pipeline_factory, name)")
        if bool(entry.get("estimator")) == bool(entry.get("pipeline_factory")):
            raise ConfigError(f"{where}: give exactly one of estimator and pipeline_factory")
        if not isinstance(entry.get("estimator_params") or {}, dict):
            raise ConfigError(f"{where}.estimator_params must be an object")
        name = entry.get("name") or str(entry.get("estimator") or entry.get("pipeline_factory")).rsplit(".", 1)[-1]
        checked.append({**entry, "name": str(name)})
    return checked


def plan_segments(
    registry: ModelRegistry,
    *,
    data_uri: str,
    segment_column: str,
    model_prefix: str,
    target: str,
    validation: str | dict[str, Any] | None = None,
    spec_base_dir: str | None = None,
    min_rows: int = DEFAULT_MIN_ROWS,
    segments_per_task: int | None = None,
    only: list[str] | None = None,
    redact_samples: bool = False,
    s3_client: Any | None = None,
) -> dict[str, Any]:
    """Validate the table once, split it by ``segment_column`` and write it in batches; returns the plan.

    The plan: ``batches`` (``[{"batch", "segments", "data_uri", "rows", "label"}]``, one
    mapped task each), ``skipped`` (``{segment: {"model_name", "rows", "stage", "reason"}}``
    for segments left out: too few rows or classes, rows failing validation),
    ``report_uri`` and ``validation`` (the counts). ``only`` keeps just those segments
    (their slugs): what a retraining of some models asks for. Raises
    :class:`DataValidationError` when the table fails checks no segment can be blamed for.
    """
    from mlops_airflow.validation import load_validation_spec, render_report, validate_dataset
    from mlops_airflow.validation.checks import failing_rows

    check_name(f"{model_prefix}x", "model_prefix")
    spec = load_validation_spec(validation, base_dir=spec_base_dir)
    dataset = load_dataset(data_uri, s3_client=s3_client)
    frame = dataset.frame
    if segment_column not in frame.columns:
        raise DataError(f"segment_column {segment_column!r} is not in the data (columns: {', '.join(map(str, frame.columns))})")
    if segment_column == target:
        raise ConfigError("segment_column and target must be different columns")
    slugs = _slugs(frame[segment_column])
    _check_slugs(frame[segment_column], slugs)
    frame = frame[slugs.notna()]  # rows without a segment belong to none
    slugs = slugs[slugs.notna()]
    if only:
        keep = slugs.isin({segment_slug(value) for value in only})
        frame, slugs = frame[keep], slugs[keep]
    skipped: dict[str, dict[str, Any]] = {}
    rows_of = slugs.value_counts()

    def skip(slug: str, stage: str, reason: str) -> None:
        skipped[slug] = {"model_name": f"{model_prefix}{slug}", "rows": int(rows_of.get(slug, 0)), "stage": stage,
                         "reason": reason}

    outcome = validate_dataset(frame, target=target, spec=spec, source_format=dataset.format,
                               redact_samples=redact_samples)
    if not outcome.success and spec is not None:
        # Trace failing rows to their segments, leave those out, and validate what is left.
        blamed: dict[str, list[str]] = {}
        for column, (mask, what) in failing_rows(frame, spec, target=target).items():
            for slug in sorted(set(slugs[mask])):
                blamed.setdefault(slug, []).append(f"{column}: {what}")  # counts only: no data value
        for slug, problems in blamed.items():
            skip(slug, "validate", "rows fail the validation spec: " + "; ".join(problems))
        if blamed:
            keep = ~slugs.isin(set(blamed))
            frame, slugs = frame[keep], slugs[keep]
            log.warning("%d segments fail validation and are left out; validating the other %d again",
                        len(blamed), slugs.nunique())
            outcome = validate_dataset(frame, target=target, spec=spec, source_format=dataset.format,
                                       redact_samples=redact_samples)
    base = hashlib.sha256(f"{dataset.fingerprint}|{segment_column}|{sorted(only or [])}".encode()).hexdigest()[:24]
    prefix = f"_segments/{base}"
    report_uri = registry.store.url(f"{prefix}/validation.html")
    registry.store.write_bytes(f"{prefix}/validation.html",
                               render_report(outcome.summary, title=f"Validation of {data_uri}").encode())
    if not outcome.success:
        raise DataValidationError(outcome.failure_message(report_uri), summary=outcome.summary)
    typed = outcome.frame if outcome.frame is not None else frame
    declared = _declared(spec)

    import numpy as np

    # One pass over the table for every segment's rows and classes (not one scan per segment).
    positions = typed.groupby(slugs.to_numpy(), sort=True).indices
    labels = typed[target].to_numpy()
    categorical = _looks_categorical(typed[target])
    good: list[str] = []
    for slug, where in positions.items():
        if slug in skipped:
            continue
        if len(where) < min_rows:
            skip(slug, "plan", f"{len(where)} rows, fewer than min_rows={min_rows}")
            continue
        values, counts = np.unique(labels[where], return_counts=True)
        if len(values) < 2:
            skip(slug, "plan", f"the target {target!r} has one value only ({values[0]!r}): nothing to learn")
        elif categorical and counts.min() < MIN_CLASS_ROWS:
            skip(slug, "plan", f"class {values[counts.argmin()]!r} of {target!r} has {int(counts.min())} rows, "
                               f"fewer than {MIN_CLASS_ROWS}")
        else:
            good.append(slug)
    if not good and not skipped:
        raise DataError(f"segment_column {segment_column!r} has no values: nothing to train")

    size = segments_per_task or max(1, math.ceil(len(good) / DEFAULT_TASKS))
    batches = []
    typed = typed.assign(**{_SLUG: slugs})
    meta = {"source_uri": data_uri, "files": dataset.files, "fingerprint": dataset.fingerprint,
            "segment_column": segment_column, "target": target, "declared": declared, "report_uri": report_uri,
            "spec_hash": _spec_hash(spec)}
    for number, start in enumerate(range(0, len(good), size)):
        members = good[start:start + size]
        part = typed.take(np.concatenate([positions[slug] for slug in members]))
        key = f"{prefix}/batch-{number:05d}"
        buffer = io.BytesIO()
        part.to_parquet(buffer, index=False)
        registry.store.write_bytes(f"{key}.parquet", buffer.getvalue())
        registry.write_record(f"{key}.json", meta)
        label = members[0] if len(members) == 1 else f"{members[0]} … {members[-1]} ({len(members)})"
        batches.append({"batch": number, "segments": members, "data_uri": registry.store.url(f"{key}.json"),
                        "rows": len(part), "label": label})
    return {"batches": batches, "skipped": skipped, "report_uri": report_uri,
            "validation": outcome.summary["statistics"], "segments": len(good) + len(skipped)}


_SLUG = "__mlops_segment__"


def _slugs(values: pd.Series) -> pd.Series:
    """Each row's segment slug (None where the value is missing), computed once per distinct value."""
    import numpy as np
    import pandas as pd

    codes, uniques = pd.factorize(values)
    names = np.array([segment_slug(value) for value in uniques] + [None], dtype=object)
    return pd.Series(names[codes], index=values.index)  # code -1 (missing) takes the trailing None


def _check_slugs(values: pd.Series, slugs: pd.Series) -> None:
    pairs = (values.astype(str).to_frame("value").assign(slug=slugs).dropna().drop_duplicates())
    clashes = pairs[pairs.duplicated("slug", keep=False)]
    if len(clashes):
        first = clashes.groupby("slug")["value"].apply(list).iloc[0]
        raise DataError(f"segment values {first[0]!r} and {first[1]!r} both map to the model name suffix "
                        f"{segment_slug(first[0])!r}")


def _looks_categorical(series: pd.Series) -> bool:
    from mlops_airflow.training.train import looks_like_labels

    return looks_like_labels(series)


def _declared(spec: dict[str, Any] | None) -> dict[str, Any]:
    from mlops_airflow.validation import declared_constraints

    return declared_constraints(spec)


def _spec_hash(spec: dict[str, Any] | None) -> str:
    return hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()


def train_segment_batch(
    registry: ModelRegistry,
    *,
    batch: dict[str, Any],
    model_prefix: str,
    target: str,
    architectures: list[dict[str, Any]],
    row_key: str | None = None,
    gate: str | dict[str, Any] | None = None,
    gate_base_dir: str | None = None,
    target_factory: Any | None = None,
    by: str = "mlops-airflow",
    lineage: dict[str, Any] | None = None,
    idempotency_prefix: str,
    progress: Any | None = None,
    workers: int = 1,
) -> list[dict[str, Any]]:
    """Train, gate, register and promote every segment of ``batch``; one outcome per segment, in batch order.

    For each segment: its rows are written as its own validated snapshot (the model's
    lineage points at them), then each architecture of the cascade is trained and gated in
    turn until one is blessed; that one is registered (idempotently: a retried task finds
    its versions) and promoted. Serving is confirmed for every promoted segment on a few
    threads while the next segments train; one that does not come up is rolled back.
    ``target_factory()`` gives a serving target per segment (None: alias only). Any error
    stays with its segment. ``workers > 1`` trains that many segments at once in forked
    worker processes (a registry on local disk only: see :func:`_worker_pool`).
    """
    from mlops_airflow.evaluation.gate import load_gate_spec

    meta, frame = _read_batch(registry, batch["data_uri"])
    spec, source = load_gate_spec(gate, base_dir=gate_base_dir)
    started, total = time.monotonic(), len(batch["segments"])
    groups = dict(iter(frame.groupby(_SLUG, sort=False)))
    jobs = []
    for slug in batch["segments"]:
        part = groups.get(slug)
        jobs.append(_SegmentJob(slug=slug, model_name=f"{model_prefix}{slug}", meta=meta, target=target,
                                architectures=architectures, row_key=row_key, gate=(spec, source), by=by,
                                lineage=_segment_lineage(lineage, slug),
                                idempotency_key=f"{idempotency_prefix}/{slug}",
                                part=None if part is None else part.drop(columns=[_SLUG, meta["segment_column"]])))
    outcomes: dict[str, dict[str, Any]] = {}
    pool = _worker_pool(registry, workers, len(jobs))
    with _Confirmations(registry, target_factory, by=by) as confirmations:
        results = pool.map(partial(train_one_segment, registry), jobs) if pool is not None \
            else map(partial(train_one_segment, registry), jobs)
        for done, (outcome, promoted) in enumerate(results, start=1):
            outcomes[outcome["segment"]] = outcome
            if outcome["outcome"] == "failed":
                log.warning("segment %s failed at %s: %s", outcome["segment"], outcome.get("stage"), outcome["reason"])
            if promoted is not None:  # the server loads it while the next segments train
                confirmations.submit(outcome, promoted)
            if progress is not None:
                progress(done, total, time.monotonic() - started)
    return [outcomes[job.slug] for job in jobs]


@dataclass(frozen=True)
class _SegmentJob:
    """What one segment needs to be trained: picklable, for a worker process."""

    slug: str
    model_name: str
    meta: dict[str, Any]
    target: str
    architectures: list[dict[str, Any]]
    row_key: str | None
    gate: tuple[dict[str, Any], str]
    by: str
    lineage: dict[str, Any]
    idempotency_key: str
    part: Any


def train_one_segment(registry: ModelRegistry, job: _SegmentJob) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """One segment through the cascade, its failure caught: (its outcome, what was promoted or None)."""
    from mlops_airflow.persistence import reuse_loaded_models

    outcome: dict[str, Any] = {"segment": job.slug, "model_name": job.model_name}
    try:
        check_name(job.model_name, "model_prefix + segment")
        if job.part is None:
            raise DataError(f"segment {job.slug!r} is not in its batch's data")
        part = job.part.reset_index(drop=True)
        outcome["rows"] = len(part)
        with reuse_loaded_models():  # the gate and the deploy stage load the same candidate
            found, promoted = _one_segment(
                registry, model_name=job.model_name, part=part, meta=job.meta, target=job.target,
                architectures=job.architectures, row_key=job.row_key, gate=job.gate, by=job.by,
                lineage=job.lineage, idempotency_key=job.idempotency_key)
        outcome.update(found)
        return outcome, promoted
    except Exception as exc:  # one segment's failure, whatever it is, stays with that segment
        outcome.update(outcome="failed", stage=getattr(exc, "stage", None), reason=f"{type(exc).__name__}: {exc}")
        if getattr(exc, "attempts", None):
            outcome["attempts"] = exc.attempts  # type: ignore[attr-defined]
        return outcome, None


def _worker_pool(registry: ModelRegistry, workers: int, jobs: int) -> _OrderedPool | None:
    """Worker processes for ``workers > 1`` (kept for the next batch of this process), or None: train here.

    Workers are forked from a fresh *forkserver* process that has already imported pandas,
    scikit-learn and this module: a worker starts in milliseconds, and inherits neither
    the task's threads and sockets (Airflow's log channel) nor a used OpenMP runtime, which
    a plain fork of the task would. The server starts once per process (a few seconds), and
    the pool is kept for the batches that follow in it. A worker logs nothing (its outcome
    says what happened) and never touches Airflow. Only for a registry on local disk: an S3
    client holds credentials and connections of the task; on S3 deployments parallelism
    comes from running batches on several Airflow workers.
    """
    from mlops_airflow.storage.local import LocalStore

    global _POOL
    if workers <= 1 or jobs <= 1:
        return None
    if not isinstance(registry.store, LocalStore):
        log.info("workers=%d needs a registry on local disk; training one segment at a time", workers)
        return None
    if _POOL is None or _POOL.workers != workers:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(["mlops_airflow.pipeline.segments", "mlops_airflow.pipeline.deploy",
                                        "sklearn.pipeline", "sklearn.linear_model", "sklearn.ensemble"])
        if _POOL is not None:
            _POOL.executor.shutdown()
        else:
            import atexit

            atexit.register(_shutdown_pool)  # before the interpreter tears down what the pool's thread uses
        _POOL = _OrderedPool(ProcessPoolExecutor(workers, mp_context=context, initializer=_quiet_worker), workers)
    return _POOL


def _shutdown_pool() -> None:
    if _POOL is not None:
        _POOL.executor.shutdown(wait=True, cancel_futures=True)


class _OrderedPool:
    """A process pool whose ``map`` yields each result as a worker finishes it; a dead worker fails its segments."""

    def __init__(self, executor: Any, workers: int) -> None:
        self.executor, self.workers = executor, workers

    def map(self, function: Any, items: list[Any]) -> Iterator[tuple[dict[str, Any], dict[str, Any] | None]]:
        from concurrent.futures import as_completed
        from concurrent.futures.process import BrokenProcessPool

        global _POOL
        futures = {self.executor.submit(function, item): item for item in items}
        for future in as_completed(futures):
            try:
                yield future.result()
            except BrokenProcessPool as exc:  # a worker died (killed, out of memory): its segments fail
                _POOL = None  # a broken pool takes no more work: the next batch makes a new one
                job = futures[future]
                yield ({"segment": job.slug, "model_name": job.model_name, "outcome": "failed", "stage": None,
                        "reason": f"the worker process training it died: {exc}"}, None)


_POOL: _OrderedPool | None = None


def _quiet_worker() -> None:
    """A worker's set-up: no logging, no warnings, one native thread (the workers are the parallelism)."""
    import logging as logging_
    import warnings

    from threadpoolctl import threadpool_limits

    from mlops_airflow.persistence import skops_io

    logging_.disable(logging_.CRITICAL)
    warnings.simplefilter("ignore")
    threadpool_limits(1)
    skops_io()


def _segment_lineage(lineage: dict[str, Any] | None, slug: str) -> dict[str, Any]:
    """The batch's lineage for one segment: its name, and a retrain trigger that retrains it alone."""
    found = {**(lineage or {}), "segment": slug}
    trigger = found.get("trigger")
    if isinstance(trigger, dict) and isinstance(trigger.get("conf"), dict):
        found["trigger"] = {**trigger, "conf": {**trigger["conf"], "segments": [slug]}}
    return found


class _Confirmations:
    """Serving confirmed for promoted segments on a few threads, while the batch goes on; all awaited at exit.

    A segment the target does not serve is rolled back by :func:`confirm_served` and its
    outcome becomes ``failed`` at the ``deploy`` stage.
    """

    def __init__(self, registry: ModelRegistry, target_factory: Any | None, *, by: str) -> None:
        self.registry, self.target_factory, self.by = registry, target_factory, by
        self.pool = ThreadPoolExecutor(_CONFIRM_THREADS, thread_name_prefix="mlops-confirm") if target_factory else None
        self.pending: list[Any] = []

    def __enter__(self) -> _Confirmations:
        return self

    def submit(self, outcome: dict[str, Any], promoted: dict[str, Any]) -> None:
        if self.pool is None:
            outcome["served"] = False
            return
        self.pending.append(self.pool.submit(self._confirm, outcome, promoted))

    def _confirm(self, outcome: dict[str, Any], promoted: dict[str, Any]) -> None:
        from mlops_airflow.pipeline.deploy import confirm_served

        assert self.target_factory is not None
        target = self.target_factory()
        try:
            outcome["served"] = confirm_served(self.registry, promoted, target=target, by=self.by).get("served", False)
        except Exception as exc:  # rolled back by confirm_served; the segment failed at deploy
            outcome.update(outcome="failed", stage="deploy", reason=f"{type(exc).__name__}: {exc}")
        finally:
            close = getattr(target, "close", None)
            if close is not None:
                close()

    def __exit__(self, *exc_info: object) -> None:
        for future in self.pending:
            future.result()
        if self.pool is not None:
            self.pool.shutdown()


def _read_batch(registry: ModelRegistry, uri: str) -> tuple[dict[str, Any], pd.DataFrame]:
    import pandas as pd

    key = registry.store.key_of(uri) or uri
    try:
        meta = json.loads(registry.store.read_bytes(key))
        frame = pd.read_parquet(io.BytesIO(registry.store.read_bytes(key.removesuffix(".json") + ".parquet")))
    except ArtifactNotFound as exc:
        raise DataError(f"the segment batch {uri} is gone: run the plan again") from exc
    return meta, frame


def _staged(stage: str, exc: BaseException) -> BaseException:
    """``exc``, marked with the stage it stopped the segment at (for the summary)."""
    exc.stage = stage  # type: ignore[attr-defined]
    return exc


def _one_segment(
    registry: ModelRegistry,
    *,
    model_name: str,
    part: pd.DataFrame,
    meta: dict[str, Any],
    target: str,
    architectures: list[dict[str, Any]],
    row_key: str | None,
    gate: tuple[dict[str, Any], str],
    by: str,
    lineage: dict[str, Any],
    idempotency_key: str,
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """One segment through the cascade: (its outcome, what was promoted or None)."""
    from mlops_airflow.pipeline.deploy import promote
    from mlops_airflow.pipeline.evaluate import run_evaluation
    from mlops_airflow.pipeline.register import run_registration
    from mlops_airflow.pipeline.train import run_training

    fingerprint = "sha256:" + rows_digest(part)
    key = snapshot_key(model_name, fingerprint, meta["spec_hash"])
    sidecar = write_snapshot(registry.store, key, part, {
        "source_uri": meta["source_uri"], "files": meta["files"], "fingerprint": fingerprint, "rows": len(part),
        "target": target, "declared": meta["declared"], "report_uri": meta["report_uri"],
        "segment_column": meta["segment_column"], "table_fingerprint": meta["fingerprint"]})
    attempts: list[dict[str, Any]] = []
    verdict = None
    failure: BaseException | None = None
    for architecture in architectures:
        # An architecture that errors (a fit that fails, a model the loader refuses) is an attempt
        # like one its gate rejects: the cascade goes on to the next.
        try:
            candidate = run_training(registry, model_name=model_name, dataset_uri=sidecar["uri"], target=target,
                                     estimator=architecture.get("estimator"),
                                     estimator_params=architecture.get("estimator_params") or {},
                                     pipeline_factory=architecture.get("pipeline_factory"), row_key=row_key,
                                     lineage={**lineage, "architecture": architecture["name"]})
        except Exception as exc:
            failure = _staged("train", exc)
            attempts.append(_failed_attempt(architecture["name"], "train", exc))
            continue
        try:
            verdict = run_evaluation(registry, model_name=model_name, candidate_sha256=candidate["sha256"],
                                     gate=gate[0], gate_source=gate[1])
        except Exception as exc:
            failure = _staged("evaluate", exc)
            attempts.append(_failed_attempt(architecture["name"], "evaluate", exc))
            verdict = None
            continue
        attempts.append(_attempt(architecture["name"], verdict))
        if attempts[-1]["blessed"]:
            break
    if verdict is None or not attempts[-1].get("blessed"):
        if verdict is None and failure is not None and len(attempts) == sum(1 for a in attempts if a["outcome"] == "error"):
            failure.attempts = attempts  # type: ignore[attr-defined]
            raise failure  # every architecture errored: the segment failed, at the last one's stage
        why = "; ".join(f"{a['architecture']}: {a['reason']}" for a in attempts)
        return {"outcome": "kept", "champion_version": ((verdict or {}).get("champion") or {}).get("version"),
                "architecture": None, "attempts": attempts, "reason": f"no architecture passed its gate ({why})"}, None
    last = attempts[-1]
    try:
        manifest = run_registration(registry, model_name=model_name, candidate_sha256=verdict["candidate_sha256"],
                                    verdict_uri=verdict["verdict_uri"], idempotency_key=idempotency_key,
                                    lineage=lineage)
    except Exception as exc:
        raise _staged("register", exc) from None
    try:
        promoted = promote(registry, model_name=model_name, version=manifest["version"],
                           verdict_uri=verdict["verdict_uri"], by=by)
    except Exception as exc:
        raise _staged("deploy", exc) from None
    outcome = {"architecture": last["architecture"], "attempts": attempts, "version": manifest["version"],
               "verdict_uri": verdict["verdict_uri"], "report_uri": verdict.get("report_uri")}
    if not promoted["promoted"]:
        return {**outcome, "outcome": "kept", "reason": promoted["reason"]}, None
    return {**outcome, "outcome": "promoted", "previous_version": promoted["previous_version"],
            "reason": last["reason"]}, promoted


def _failed_attempt(architecture: str, stage: str, exc: BaseException) -> dict[str, Any]:
    return {"architecture": architecture, "outcome": "error", "blessed": False, "stage": stage,
            "reason": f"{stage} failed: {type(exc).__name__}: {exc}"}


def _attempt(architecture: str, verdict: dict[str, Any]) -> dict[str, Any]:
    """One architecture's try: the gate's outcome, why, and the evidence on the primary metric."""
    metric = verdict.get("primary_metric")
    value = (verdict.get("metrics") or {}).get("candidate", {}).get(metric)
    reason = verdict.get("reason")
    if verdict["blessed"] and verdict.get("requires_approval"):
        # a batch has nobody to ask: a verdict that wants a person does not pass here
        reason = f"{reason} (the gate asks for a person's approval, which a batch of segments does not wait for)"
    return {"architecture": architecture, "outcome": verdict["outcome"],
            "blessed": bool(verdict["blessed"]) and not verdict.get("requires_approval"),
            "reason": reason, "metric": metric, "value": value, "verdict_uri": verdict.get("verdict_uri")}


def summarise_segments(
    registry: ModelRegistry,
    *,
    dag_id: str,
    run_id: str,
    outcomes: dict[str, dict[str, Any]],
) -> dict[str, Any]:
    """The run's per-segment record, stored under ``_segments/runs/``; returns it."""
    by: dict[str, list[str]] = {"promoted": [], "kept": [], "failed": []}
    for segment, outcome in sorted(outcomes.items()):
        by[outcome["outcome"]].append(segment)
    architectures: dict[str, int] = {}
    for outcome in outcomes.values():
        if outcome["outcome"] == "promoted" and outcome.get("architecture"):
            architectures[outcome["architecture"]] = architectures.get(outcome["architecture"], 0) + 1
    record = {"format_version": 1, "dag_id": dag_id, "run_id": run_id,
              "recorded_at": datetime.now(UTC).isoformat(timespec="seconds"), **by,
              "architectures": architectures, "segments": outcomes}
    registry.write_record(_run_key(dag_id, run_id), record)
    return record


def _run_key(dag_id: str, run_id: str) -> str:
    return f"_segments/runs/{re.sub(r'[^A-Za-z0-9_.-]', '_', f'{dag_id}__{run_id}')}.json"


def read_segments_run(registry: ModelRegistry, dag_id: str, run_id: str) -> dict[str, Any]:
    """The per-segment record :func:`summarise_segments` stored for a run."""
    try:
        return json.loads(registry.store.read_bytes(_run_key(dag_id, run_id)))
    except ArtifactNotFound as exc:
        raise ModelNotFound(f"no per-segment record for run {run_id} of {dag_id}") from exc


def format_segments(record: dict[str, Any], limit: int = 200) -> str:
    """The summary as the task log shows it: counts, the winning architectures, one line per segment (up to ``limit``)."""
    lines = [f"{len(record['promoted'])} promoted, {len(record['kept'])} kept, {len(record['failed'])} failed"]
    if record.get("architectures"):
        lines.append("promoted by architecture: " + ", ".join(f"{name} {count}" for name, count
                                                                in sorted(record["architectures"].items())))
    # failures first: they are what a reader looks for
    order = sorted(record["segments"].items(), key=lambda item: (item[1]["outcome"] != "failed", item[0]))
    for segment, outcome in order[:limit]:
        where = f"[{outcome['stage']}] " if outcome["outcome"] == "failed" and outcome.get("stage") else ""
        won = f"{outcome['architecture']}: " if outcome.get("architecture") else ""
        lines.append(f"  {segment:<24} {outcome['outcome'].upper():<9} {where}{won}{outcome.get('reason') or ''}")
    if len(order) > limit:
        lines.append(f"  ... and {len(order) - limit} more (the run record has them all)")
    return "\n".join(lines)
