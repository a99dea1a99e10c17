"""Prediction logs: a sample of served rows and their predictions, in the artifact store, for drift checks.

Layout (JSON lines, one line per served row)::

    <root>/predictions/<model>/date=YYYY-MM-DD/version=N/<YYYYmmddTHHMMSSffffffZ>-<worker>-<uuid>.jsonl

    {"ts": "2026-01-05T10:00:00.123456+00:00", "model_name": "taxi", "version": 3,
     "request_id": "…", "row": 0, "features": {"hour": 7, …}, "prediction": 1,
     "probabilities": {"0": 0.2, "1": 0.8}}

:class:`PredictionLogger` samples whole requests (``sample_rate`` in [0, 1]) and only
appends to an in-memory buffer on the request path; a background thread writes files
when ``flush_rows`` rows are waiting, every ``flush_seconds``, and at shutdown. A full
buffer drops rows and a store failure drops the batch: both are counted and logged,
neither ever fails a request. :func:`read_prediction_logs` reads them back as a frame, and
:func:`logged_models` finds the models that logged in a window; both list folders
(models, ``date=`` partitions) before files, so their cost follows the window, not the
history kept or the number of models.
"""

from __future__ import annotations

import fnmatch
import json
import logging
import os
import random
import socket
import threading
import time
import uuid
from collections import deque
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from mlops_airflow.records import json_scalar
from mlops_airflow.storage import open_store

if TYPE_CHECKING:
    import pandas as pd

    from mlops_airflow.serving.metrics import ServerMetrics
    from mlops_airflow.storage import ArtifactStore

log = logging.getLogger(__name__)

PREFIX = "predictions"
#: Columns of :func:`read_prediction_logs` besides the features (prefixed: a feature may be called "version").
META_COLUMNS = ["_ts", "_model_name", "_version", "_request_id", "_row", "_prediction"]


def model_prefix(model_name: str) -> str:
    return f"{PREFIX}/{model_name}"


def _worker_id() -> str:
    host = "".join(ch if ch.isalnum() or ch == "-" else "-" for ch in socket.gethostname())[:40]
    return f"{host}-{os.getpid()}"


class _Entry:
    """One sampled request, kept as the objects the request already built; serialised on the flush thread."""

    __slots__ = ("at", "model_name", "values", "predictions", "probabilities", "classes", "request_id", "version")

    def __init__(self, at: datetime, model_name: str, version: int, request_id: str, values: dict[str, list[Any]],
                 predictions: list[Any], probabilities: list[list[Any]] | None, classes: list[Any] | None) -> None:
        self.at, self.model_name, self.version, self.request_id = at, model_name, version, request_id
        self.values, self.predictions = values, predictions
        self.probabilities, self.classes = probabilities, classes

    def lines(self) -> list[str]:
        model_name = self.model_name
        names = list(self.values)
        ts = self.at.isoformat()
        out = []
        for index in range(len(self.predictions)):
            features = {name: self.values[name][index] for name in names}
            record: dict[str, Any] = {
                "ts": ts,
                "model_name": model_name,
                "version": self.version,
                "request_id": self.request_id,
                "row": index,
                "features": {str(key): json_scalar(value) for key, value in features.items()},
                "prediction": json_scalar(self.predictions[index]),
            }
            if self.probabilities is not None and self.classes is not None:
                record["probabilities"] = {
                    str(label): p for label, p in zip(self.classes, self.probabilities[index], strict=False)
                }
            out.append(json.dumps(record, default=str, allow_nan=False))
        return out


class PredictionLogger:
    """Samples requests into a buffer and writes them to ``store`` from a background thread.

    One logger serves every model of a server: each request is logged under its own model
    (``offer(model_name=...)``; ``model_name`` here is the default, for a single-model server).
    """

    def __init__(
        self,
        store: ArtifactStore,
        model_name: str | None = None,
        *,
        sample_rate: float,
        flush_rows: int = 1000,
        flush_seconds: float = 10.0,
        max_buffered_rows: int = 100_000,
        metrics: ServerMetrics | None = None,
        worker_id: str | None = None,
    ) -> None:
        if not 0.0 <= sample_rate <= 1.0:
            raise ValueError(f"sample_rate must be in [0, 1], got {sample_rate}")
        self.store = store
        self.model_name = model_name
        self.sample_rate = sample_rate
        self.flush_rows = flush_rows
        self.flush_seconds = flush_seconds
        self.max_buffered_rows = max_buffered_rows
        self.metrics = metrics
        self.worker_id = worker_id or _worker_id()
        self._buffer: deque[_Entry] = deque()
        self._rows = 0  # rows buffered; updated under _lock
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._failing_since: float | None = None

    # -- the request path: cheap, never raises ------------------------------------------
    def offer(self, *, version: int, request_id: str, values: dict[str, list[Any]] | None, predictions: list[Any],
              probabilities: list[list[Any]] | None = None, classes: list[Any] | None = None,
              model_name: str | None = None) -> bool:
        """Buffer one answered request if it is sampled; True if it was. Never blocks on storage.

        ``values`` are the request's checked feature values, column by column (``ParsedRows.values``).
        """
        model = model_name or self.model_name
        if values is None or model is None:
            return False
        if self.sample_rate <= 0.0 or (self.sample_rate < 1.0 and random.random() >= self.sample_rate):
            return False
        rows = len(predictions)
        wake = False
        with self._lock:
            if self._rows + rows > self.max_buffered_rows:
                full = True
            else:
                full = False
                self._buffer.append(
                    _Entry(datetime.now(UTC), model, version, request_id, values, predictions, probabilities, classes)
                )
                self._rows += rows
                wake = self._rows >= self.flush_rows
        if full:
            self._count("dropped", rows)
            return False
        if wake:
            self._wake.set()
        return True

    # -- the flush thread ------------------------------------------------------------------
    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="mlops-prediction-log", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Stop the thread after a last flush of what is buffered."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        self.flush()  # whatever arrived while the thread was finishing

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.flush_seconds)
            self._wake.clear()
            self.flush()

    def flush(self) -> int:
        """Write everything buffered now; the number of rows written."""
        with self._lock:
            entries = list(self._buffer)
            self._buffer.clear()
            self._rows = 0
        if not entries:
            return 0
        groups: dict[tuple[str, str, int], list[str]] = {}
        for entry in entries:
            try:
                lines = entry.lines()
            except (TypeError, ValueError) as exc:  # an unserialisable value must not cost the batch
                log.warning("prediction log: dropped request %s: %s", entry.request_id, exc)
                self._count("failed", len(entry.predictions))
                continue
            groups.setdefault((entry.model_name, entry.at.date().isoformat(), entry.version), []).extend(lines)
        written = 0
        for (model, day, version), lines in groups.items():
            stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
            key = (
                f"{model_prefix(model)}/date={day}/version={version}/"
                f"{stamp}-{self.worker_id}-{uuid.uuid4().hex[:12]}.jsonl"
            )
            try:
                self.store.write_bytes(key, ("\n".join(lines) + "\n").encode())
            except Exception as exc:  # storage may fail in any way; serving must not
                self._count("failed", len(lines))
                now = time.monotonic()
                # an outage fails every flush: say so once a minute, the counter has the rest
                if self._failing_since is None or now - self._failing_since >= 60:
                    self._failing_since = now
                    log.error("prediction log: cannot write %s rows to %s (dropped): %s: %s",
                              len(lines), self.store.url(key), type(exc).__name__, exc)
                continue
            if self._failing_since is not None:
                log.info("prediction log: writing to %s again", self.store.uri)
            self._failing_since = None
            written += len(lines)
            self._count("written", len(lines))
        return written

    def _count(self, outcome: str, rows: int) -> None:
        if self.metrics is not None:
            self.metrics.log_rows.labels(outcome).inc(rows)


# -- reading ---------------------------------------------------------------------------


def _as_datetime(value: datetime | date | str | None) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if not isinstance(value, datetime):
        value = datetime(value.year, value.month, value.day)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _partition_date(key: str) -> date | None:
    for part in key.split("/"):
        if part.startswith("date="):
            try:
                return date.fromisoformat(part[len("date="):])
            except ValueError:
                return None
    return None


def log_partitions(
    store: ArtifactStore,
    model: str,
    since: datetime | date | str | None = None,
    until: datetime | date | str | None = None,
) -> list[str]:
    """Prefixes of ``model``'s ``date=`` partitions that can hold rows logged in ``[since, until)``, oldest first.

    One listing of the model's partition folders, not of its files: the cost of finding a
    window does not grow with the logs kept outside it.
    """
    start, end = _as_datetime(since), _as_datetime(until)
    first_day = start.date() if start else None
    # a row at 00:00:00.5 of the day after `until` is excluded, but its file is in that day's partition
    last_day = (end - timedelta(microseconds=1)).date() if end else None
    partitions = []
    for name in store.list_dir(model_prefix(model))[1]:
        day = _partition_date(name)
        if day is None or (first_day and day < first_day) or (last_day and day > last_day):
            continue
        partitions.append(f"{model_prefix(model)}/{name}")
    return partitions


def logged_models(
    store: ArtifactStore,
    since: datetime | date | str | None = None,
    until: datetime | date | str | None = None,
    *,
    patterns: Sequence[str] = ("*",),
) -> list[str]:
    """The models whose names match one of ``patterns`` (shell-style) and that logged in ``[since, until)``, sorted.

    Lists the model folders and each matching model's ``date=`` folders, never the log
    files: a day with a partition counts (the partition may hold rows just outside the window).
    """
    names = [name for name in store.list_dir(PREFIX)[1]
             if any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns)]
    return [name for name in names if log_partitions(store, name, since, until)]


def read_prediction_logs(
    store_or_uri: ArtifactStore | str,
    model: str,
    since: datetime | date | str | None = None,
    until: datetime | date | str | None = None,
    *,
    version: int | None = None,
    s3_client: Any | None = None,
) -> pd.DataFrame:
    """The logged rows of ``model`` with ``since <= ts < until`` (naive times are UTC), oldest first.

    ``store_or_uri`` is the store the server logged to or its root URI (the registry root
    unless ``--log-uri`` was given). One row per served row: the feature columns under
    their own names, then ``_ts`` (UTC timestamps), ``_model_name``, ``_version``,
    ``_request_id``, ``_row``, ``_prediction`` and, for classifiers, ``_proba_<class>``
    per class. Only the date partitions that can hold matching rows are listed and read
    (:func:`log_partitions`), and within them only ``version``'s folder when it is given.
    """
    import pandas as pd

    store = open_store(store_or_uri, s3_client=s3_client) if isinstance(store_or_uri, str) else store_or_uri
    start, end = _as_datetime(since), _as_datetime(until)
    records: list[dict[str, Any]] = []
    for partition in log_partitions(store, model, start, end):
        for key in store.list(partition if version is None else f"{partition}/version={version}"):
            if not key.endswith(".jsonl"):
                continue
            for line in store.read_bytes(key).decode().splitlines():
                if not line.strip():
                    continue
                record = json.loads(line)
                ts = datetime.fromisoformat(record["ts"])
                if (start and ts < start) or (end and ts >= end):
                    continue
                flat: dict[str, Any] = dict(record.get("features") or {})
                flat.update({"_ts": ts, "_model_name": record["model_name"], "_version": record["version"],
                             "_request_id": record["request_id"], "_row": record["row"],
                             "_prediction": record.get("prediction")})
                for label, p in (record.get("probabilities") or {}).items():
                    flat[f"_proba_{label}"] = p
                records.append(flat)
    if not records:
        return pd.DataFrame(columns=META_COLUMNS)
    frame = pd.DataFrame.from_records(records)
    frame["_ts"] = pd.to_datetime(frame["_ts"], utc=True)
    features = [c for c in frame.columns if c not in META_COLUMNS and not c.startswith("_proba_")]
    probas = sorted(c for c in frame.columns if c.startswith("_proba_"))
    frame = frame[features + META_COLUMNS + probas]
    return frame.sort_values(["_ts", "_request_id", "_row"], kind="stable").reset_index(drop=True)
