"""The server's Prometheus metrics (``GET /metrics``); the names are a contract other tools read.

    mlops_requests_total{endpoint,status}                 counter
    mlops_request_errors_total{kind}                      counter: validation, auth, too_large, not_ready,
                                                          model (the model refused the rows), internal
    mlops_request_latency_seconds{endpoint}               histogram
    mlops_model_info{model_name,alias,version,sha256}     gauge, 1 for the model loaded
    mlops_predictions_total{model_version,label}          counter (classifiers)
    mlops_prediction_value{model_version}                 histogram (regressors)
    mlops_observed_range_warnings_total{field}            counter: values outside what training saw
    mlops_model_swaps_total, mlops_model_refusals_total   counters
    mlops_prediction_log_rows_total{outcome}              counter: written, dropped, failed

Per model (every mode; ``model`` is the model's name for the first ``max_model_labels``
models that answer, ``__other__`` for the rest, so a server with thousands of models keeps
a bounded number of series):

    mlops_model_requests_total{model,outcome}             counter: ok, validation, model, internal, not_ready,
                                                          not_found
    mlops_model_request_latency_seconds{model}            histogram
    mlops_model_predictions_total{model,label}            counter (classifiers; at most 20 labels a model)
    mlops_model_prediction_value{model}                   histogram (regressors)
    mlops_models_loaded, mlops_model_memory_bytes         gauges: models in memory, their estimated size
    mlops_model_loads_total{outcome}                      counter: loaded, refused, failed
    mlops_model_evictions_total                           counter: models unloaded to stay within the budget
    mlops_model_load_seconds                              histogram

The version-labelled ``mlops_predictions_total`` and ``mlops_prediction_value`` describe the
one model of a single-model server; a server of many models leaves them out.

With several uvicorn workers each worker is its own process: prometheus_client's
multiprocess mode (``PROMETHEUS_MULTIPROC_DIR``, set by ``serve`` before the workers
start) sums counters and histograms over the workers, and ``mlops_model_info`` shows a
version as 1 while any live worker serves it.
"""

from __future__ import annotations

import os
from collections import Counter as Tally
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from mlops_airflow.serving.paths import model_route

if TYPE_CHECKING:
    from mlops_airflow.serving.loading import LoadedModel

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

#: Endpoints named in labels; anything else is "other" so a scanner cannot blow up the label set.
#: Routes with a model in their path are named by their template (``/models/{name}/predict``).
ENDPOINTS = frozenset({"/predict", "/health", "/ready", "/metadata", "/metrics", "/models",
                       "/v2", "/v2/health/live", "/v2/health/ready"})
#: Per-model series beyond this many models are counted under :data:`OTHER_MODEL`.
DEFAULT_MAX_MODEL_LABELS = 100
OTHER_MODEL = "__other__"
#: Distinct predicted labels counted per model; more (a text target) go under :data:`OTHER_LABEL`.
MAX_LABELS_PER_MODEL = 20
OTHER_LABEL = "__other__"
_LOAD_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
#: A regressor's output may be on any scale: decades either side of zero. (With buckets below zero
#: prometheus_client exposes no _sum, as OpenMetrics asks; _count and the buckets remain.)
_VALUE_BUCKETS = tuple(sorted({sign * 10.0**power for sign in (-1, 1) for power in range(-2, 7)} | {0.0}))


def multiprocess_dir() -> str | None:
    return os.environ.get(MULTIPROC_ENV) or None


class ServerMetrics:
    """The metrics of one server app, in a registry of their own (several apps may share a process in tests)."""

    def __init__(self, *, max_model_labels: int = DEFAULT_MAX_MODEL_LABELS, per_version: bool = True) -> None:
        #: Whether the version-labelled prediction metrics are kept (one model served).
        self.per_version = per_version
        self.max_model_labels = max_model_labels
        self._model_labels: set[str] = set()
        self._class_labels: dict[str, set[str]] = {}
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter("mlops_requests", "HTTP requests answered", ["endpoint", "status"], registry=r)
        self.errors = Counter("mlops_request_errors", "Requests refused or failed, by kind", ["kind"], registry=r)
        self.latency = Histogram(
            "mlops_request_latency_seconds", "Time to answer a request", ["endpoint"], buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.model_info = Gauge(
            "mlops_model_info", "1 for the model version being served", ["model_name", "alias", "version", "sha256"],
            multiprocess_mode="livemax", registry=r,
        )
        self.predictions = Counter(
            "mlops_predictions", "Predicted labels (classifiers)", ["model_version", "label"], registry=r
        )
        self.prediction_value = Histogram(
            "mlops_prediction_value", "Predicted values (regressors)", ["model_version"], buckets=_VALUE_BUCKETS,
            registry=r,
        )
        self.observed_warnings = Counter(
            "mlops_observed_range_warnings", "Accepted values outside what training observed", ["field"], registry=r
        )
        self.swaps = Counter("mlops_model_swaps", "Times a model version took over serving (first load included)",
                             registry=r)
        self.refusals = Counter("mlops_model_refusals", "Model versions refused at load", registry=r)
        self.log_rows = Counter("mlops_prediction_log_rows", "Prediction log rows, by outcome", ["outcome"], registry=r)
        self.model_requests = Counter("mlops_model_requests", "Requests per model, by outcome", ["model", "outcome"],
                                      registry=r)
        self.model_latency = Histogram("mlops_model_request_latency_seconds", "Time to answer a model's request",
                                       ["model"], buckets=_LATENCY_BUCKETS, registry=r)
        self.model_predictions = Counter("mlops_model_predictions", "Predicted labels per model (classifiers)",
                                         ["model", "label"], registry=r)
        self.model_prediction_value = Histogram("mlops_model_prediction_value", "Predicted values per model (regressors)",
                                                ["model"], buckets=_VALUE_BUCKETS, registry=r)
        self.models_loaded = Gauge("mlops_models_loaded", "Models loaded in memory", multiprocess_mode="livesum",
                                   registry=r)
        self.model_memory = Gauge("mlops_model_memory_bytes", "Estimated memory held by the loaded models",
                                  multiprocess_mode="livesum", registry=r)
        self.model_loads = Counter("mlops_model_loads", "Model loads, by outcome", ["outcome"], registry=r)
        self.model_evictions = Counter("mlops_model_evictions", "Models unloaded to stay within the budget", registry=r)
        self.model_load_seconds = Histogram("mlops_model_load_seconds", "Time to read, verify and load a model",
                                            buckets=_LOAD_BUCKETS, registry=r)

    # -- recording -----------------------------------------------------------------
    def request(self, path: str, status: int, seconds: float) -> None:
        endpoint = path if path in ENDPOINTS else "other"
        if endpoint == "other" and (route := model_route(path)) is not None:
            endpoint = route.template
        self.requests.labels(endpoint, str(status)).inc()
        self.latency.labels(endpoint).observe(seconds)

    def error(self, kind: str) -> None:
        self.errors.labels(kind).inc()

    def model_label(self, model: str) -> str:
        """``model`` as a label value: itself for the first ``max_model_labels`` models, else :data:`OTHER_MODEL`."""
        if model in self._model_labels:
            return model
        if len(self._model_labels) < self.max_model_labels:
            self._model_labels.add(model)
            return model
        return OTHER_MODEL

    def model_request(self, model: str, outcome: str, seconds: float) -> None:
        """One answered request for ``model`` (``outcome``: ok, validation, model, internal, not_ready, not_found)."""
        label = self.model_label(model)
        self.model_requests.labels(label, outcome).inc()
        self.model_latency.labels(label).observe(seconds)

    def swapped(self, old: LoadedModel | None, new: LoadedModel, alias: str) -> None:
        if old is not None:
            self.model_info.labels(old.model_name, alias, str(old.version), old.sha256).set(0)
        self.model_info.labels(new.model_name, alias, str(new.version), new.sha256).set(1)
        self.swaps.inc()

    def unloaded(self, old: LoadedModel, alias: str) -> None:
        """``old`` left memory (evicted): its info series goes (to 0 where series cannot be removed)."""
        labels = (old.model_name, alias, str(old.version), old.sha256)
        if multiprocess_dir() is None:
            try:
                self.model_info.remove(*labels)
            except KeyError:
                pass
        else:  # the multiprocess files keep every series; 0 says "not served here"
            self.model_info.labels(*labels).set(0)
        self.model_evictions.inc()

    def memory(self, models: int, nbytes: int) -> None:
        self.models_loaded.set(models)
        self.model_memory.set(nbytes)

    def loaded(self, outcome: str, seconds: float | None = None) -> None:
        self.model_loads.labels(outcome).inc()
        if seconds is not None:
            self.model_load_seconds.observe(seconds)

    def refused(self) -> None:
        self.refusals.inc()

    def warned(self, fields: dict[str, int]) -> None:
        for name, count in fields.items():
            self.observed_warnings.labels(name).inc(count)

    def predicted(self, loaded: LoadedModel, predictions: list[Any]) -> None:
        version = str(loaded.version)
        model = self.model_label(loaded.model_name)
        if loaded.is_classifier:
            counts: Tally[str] = Tally()
            for label, count in Tally(predictions).items():  # counted as they are (C speed), named as text
                counts[str(label)] += count
            seen = self._class_labels.setdefault(model, set())
            for label, count in counts.items():
                if self.per_version:
                    self.predictions.labels(version, label).inc(count)
                if label not in seen and len(seen) >= MAX_LABELS_PER_MODEL:
                    label = OTHER_LABEL
                seen.add(label)
                self.model_predictions.labels(model, label).inc(count)
            return
        histograms = [self.model_prediction_value.labels(model)]
        if self.per_version:
            histograms.append(self.prediction_value.labels(version))
        for value in predictions:
            if value is not None:  # a non-finite prediction is answered as null
                for histogram in histograms:
                    histogram.observe(value)

    # -- exposition ----------------------------------------------------------------
    def render(self) -> tuple[bytes, str]:
        """The text exposition and its content type: over all workers in multiprocess mode."""
        path = multiprocess_dir()
        if path is None:
            return generate_latest(self.registry), CONTENT_TYPE_LATEST
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=path)
        return generate_latest(registry), CONTENT_TYPE_LATEST


def worker_exited(pid: int) -> None:
    """Drop a dead worker's live gauges (multiprocess mode), so it stops reporting a model it no longer serves."""
    if multiprocess_dir() is not None:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)
