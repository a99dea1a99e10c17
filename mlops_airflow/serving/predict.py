"""Predicting on checked rows: what the server answers, computed once per batch of requests.

``predict_rows`` gives exactly what ``model.predict`` (and ``model.predict_proba`` for a
classifier) give, without doing the same work twice. :class:`MicroBatcher` gathers the
requests that arrive while the model is busy and predicts them with one call: for a
scikit-learn pipeline the fixed cost of a call (pandas column selection, input checks in
every step) dwarfs the per-row cost, so under concurrent load one call for eight rows
costs about what one call for one row does. Nothing waits to fill a batch: an idle
server predicts each request as it comes; a batch is whatever queued up meanwhile.

Most of that fixed cost goes where a model has a verified fast path (``LoadedModel.fast``,
:mod:`mlops_airflow.serving.compiled`): the server's checked columns go to it without a
DataFrame being built, and it answers bit for bit as the pipeline would, or hands the rows
back to the pipeline.
"""

from __future__ import annotations

import logging
import queue
import threading
from typing import TYPE_CHECKING, Any

from mlops_airflow.exceptions import MlopsError

if TYPE_CHECKING:
    import asyncio

    from mlops_airflow.serving.loading import LoadedModel
    from mlops_airflow.serving.requests import ParsedRows

log = logging.getLogger(__name__)

#: Requests are batched up to this many rows; a bigger request is predicted on its own.
DEFAULT_BATCH_ROWS = 256


def json_values(values: Any) -> list[Any]:
    """A numpy array as (nested) lists of JSON values: JSON has no NaN or Infinity, so those are null."""
    import numpy as np

    if values.dtype.kind != "f" or bool(np.isfinite(values).all()):
        return values.tolist()  # type: ignore[no-any-return]
    answer = values.astype(object)
    answer[~np.isfinite(values)] = None
    return answer.tolist()  # type: ignore[no-any-return]


def _final_step(model: Any) -> tuple[list[Any], Any]:
    """A scikit-learn Pipeline's transforms and final estimator; ``([], model)`` for anything else."""
    steps = getattr(model, "steps", None)
    if type(model).__name__ != "Pipeline" or not isinstance(steps, list) or len(steps) < 2:
        return [], model
    return [step for _, step in steps[:-1] if step is not None and step != "passthrough"], steps[-1][1]


def _predict_is_argmax_of_proba(estimator: Any) -> bool:
    """Whether ``estimator.predict(X)`` is, by its own code, ``classes_[argmax(predict_proba(X))]``."""
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.ensemble._forest import ForestClassifier

    predict = getattr(type(estimator), "predict", None)
    if predict is HistGradientBoostingClassifier.predict:
        return True
    return predict is ForestClassifier.predict and getattr(estimator, "n_outputs_", 0) == 1


def _wants_probabilities(loaded: LoadedModel, probabilities: bool) -> bool:
    return probabilities and loaded.gives_probabilities


def prediction_body(predictions: Any, proba: Any | None, classes: list[Any] | None) -> dict[str, Any]:
    """What :func:`predict_rows` answers for these arrays: labels or values, and probabilities when computed."""
    if proba is None:
        return {"predictions": json_values(predictions)}
    return {"predictions": json_values(predictions), "probabilities": json_values(proba), "classes": classes}


def transformed(model: Any, frame: Any) -> tuple[Any, Any]:
    """The rows a Pipeline's final step gets for ``frame``, and that step; ``(frame, model)`` for anything else."""
    transforms, final = _final_step(model)
    rows = frame
    for transform in transforms:
        rows = transform.transform(rows)
    return rows, final


def final_outputs(final: Any, rows: Any, probabilities: bool) -> tuple[Any, Any | None]:
    """``final.predict(rows)`` and, with ``probabilities``, ``final.predict_proba(rows)``, as numpy arrays.

    For estimators whose ``predict`` is itself the arg-max of ``predict_proba`` (forests,
    histogram boosting) the labels are taken from the probabilities instead of computing them twice.
    """
    import numpy as np

    if not probabilities:
        return np.asarray(final.predict(rows)), None
    proba = np.asarray(final.predict_proba(rows))
    if _predict_is_argmax_of_proba(final):
        return final.classes_.take(np.argmax(proba, axis=1), axis=0), proba
    return np.asarray(final.predict(rows)), proba


def pipeline_outputs(model: Any, frame: Any, probabilities: bool) -> tuple[Any, Any | None]:
    """``model.predict(frame)`` and, with ``probabilities``, ``model.predict_proba(frame)``: the normal path.

    For a Pipeline the transforms run once for both answers (``Pipeline.predict`` is those
    transforms then the final step's ``predict``, and the same holds for ``predict_proba``).
    """
    import numpy as np

    if not probabilities:
        return np.asarray(model.predict(frame)), None
    rows, final = transformed(model, frame)
    return final_outputs(final, rows, probabilities=True)


def predict_rows(loaded: LoadedModel, frame: Any, *, probabilities: bool = True) -> dict[str, Any]:
    """Predictions (and, for a classifier, probabilities) exactly as ``model.predict`` / ``predict_proba`` give.

    With ``probabilities=False`` it is exactly ``model.predict``. A model with a verified fast
    path (:mod:`mlops_airflow.serving.compiled`) is answered by it, bit for bit the same.
    """
    wants = _wants_probabilities(loaded, probabilities)
    fast = loaded.fast
    if fast is not None:
        answer = _fast_answer(loaded, fast.columns_of(frame), wants)
        if answer is not None:
            return answer
    return prediction_body(*pipeline_outputs(loaded.model, frame, wants), loaded.classes)


def predict_columns(loaded: LoadedModel, columns: dict[str, Any], *, probabilities: bool = True) -> dict[str, Any]:
    """:func:`predict_rows` on the frame ``columns`` make, building that frame only if the fast path cannot answer.

    ``columns`` hold checked rows as the model's frame would hold them, one array per schema
    column (:func:`typed_columns`).
    """
    wants = _wants_probabilities(loaded, probabilities)
    answer = _fast_answer(loaded, columns, wants)
    if answer is not None:
        return answer
    frame = loaded.request_checker.frame_from(columns)
    return prediction_body(*pipeline_outputs(loaded.model, frame, wants), loaded.classes)


def predict_values(loaded: LoadedModel, values: dict[str, list[Any]], *, probabilities: bool = True) -> dict[str, Any]:
    """:func:`predict_rows` on the frame of checked values (one request's, or several concatenated).

    The fast path gets them with text as numpy objects (the form it was also verified on), not
    in pandas arrays: on a request or two, building those costs more than the prediction.
    """
    wants = _wants_probabilities(loaded, probabilities)
    if loaded.fast is not None:
        columns = loaded.request_checker.typed_columns(values, text_as_objects=True)
        answer = _fast_answer(loaded, columns, wants, text_as_objects=True)
        if answer is not None:
            return answer
    frame = loaded.request_checker.build_frame(values)
    return prediction_body(*pipeline_outputs(loaded.model, frame, wants), loaded.classes)


def typed_columns(loaded: LoadedModel, values: dict[str, list[Any]]) -> dict[str, Any]:
    """Checked values (one request's, or several concatenated) typed as ``build_frame`` types them, without the frame."""
    return loaded.request_checker.typed_columns(values)


def _fast_answer(loaded: LoadedModel, columns: dict[str, Any] | None, probabilities: bool, *,
                 text_as_objects: bool = False) -> dict[str, Any] | None:
    """The fast path's answer, or None: no fast path, columns it was not verified on, or a failure."""
    fast = loaded.fast
    if fast is None or columns is None or not fast.accepts(columns, text_as_objects=text_as_objects):
        return None
    try:
        return fast.predict(columns, probabilities)
    except Exception:  # it never decides an error: the normal path answers, or raises what the model raises
        log.debug("predict: the fast path of %s version %s declined these rows", loaded.model_name, loaded.version,
                  exc_info=True)
        return None


class _Job:
    __slots__ = ("loaded", "parsed", "probabilities", "future", "loop")

    def __init__(self, loaded: LoadedModel, parsed: ParsedRows, probabilities: bool, future: asyncio.Future[Any],
                 loop: asyncio.AbstractEventLoop) -> None:
        self.loaded, self.parsed, self.probabilities = loaded, parsed, probabilities
        self.future, self.loop = future, loop


def _settle(future: asyncio.Future[Any], result: Any) -> None:
    if not future.done():  # a client that went away cancelled its future
        future.set_result(result)


class MicroBatcher:
    """One thread that predicts queued requests, several at a time when several are waiting.

    :meth:`predict` returns the request's own part of the answer (the dict
    :func:`predict_rows` gives), or the exception predicting it raised: a batch that fails
    is predicted again request by request, so that only the request at fault gets the error.
    Requests for different model versions (during a swap) are never mixed in one batch.
    Anything else that fails while a batch is handled is given, as an :class:`MlopsError`,
    to each request of that batch (the server answers 500 ``internal``), and the thread
    goes on with the next batch.
    """

    def __init__(self, max_rows: int = DEFAULT_BATCH_ROWS) -> None:
        self.max_rows = max_rows
        self._queue: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="mlops-predict", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Answer what is queued, then stop."""
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout)
            self._thread = None

    async def predict(self, loaded: LoadedModel, parsed: ParsedRows, *, probabilities: bool = True) -> Any:
        import asyncio

        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._queue.put(_Job(loaded, parsed, probabilities, future, loop))
        return await future

    def _run(self) -> None:
        carried: _Job | None = None
        while True:
            job = carried if carried is not None else self._queue.get()
            carried = None
            if job is None:
                return
            batch, rows = [job], job.parsed.rows
            while rows < self.max_rows:
                try:
                    following = self._queue.get_nowait()
                except queue.Empty:
                    break
                if following is None or following.loaded is not job.loaded or rows + following.parsed.rows > self.max_rows:
                    carried = following  # the next batch starts with it (or it is the stop signal)
                    if following is None:
                        self._queue.put(None)  # stop after this batch
                        carried = None
                    break
                batch.append(following)
                rows += following.parsed.rows
            try:
                results = predict_batch(batch)
            except Exception as exc:  # this thread answers every request: it must outlive any surprise
                log.exception("predict: a batch of %d requests failed", len(batch))
                # Not the ValueError itself: that would read as "the model rejected the rows" (422).
                failure = MlopsError(f"the prediction batch failed: {type(exc).__name__}: {exc}")
                results = [failure] * len(batch)
            for item, result in zip(batch, results, strict=True):
                try:
                    item.loop.call_soon_threadsafe(_settle, item.future, result)
                except RuntimeError:  # the request's event loop has closed: nobody is waiting
                    log.debug("predict: an answer arrived after its event loop closed")

def predict_batch(batch: list[_Job]) -> list[Any]:
    """Each request's own part of one prediction for the batch (all for one model); a failing batch request by request."""
    if len(batch) == 1:
        return [_predict_one(batch[0])]
    loaded = batch[0].loaded
    names = list(batch[0].parsed.values or {})
    merged: dict[str, list[Any]] = {name: [] for name in names}
    for item in batch:
        for name in names:
            merged[name].extend((item.parsed.values or {})[name])
    try:
        body = predict_values(loaded, merged, probabilities=any(item.probabilities for item in batch))
    except Exception:  # which request is at fault? predict them one by one
        return [_predict_one(item) for item in batch]
    results, start = [], 0
    for item in batch:
        end = start + item.parsed.rows
        part = {"predictions": body["predictions"][start:end]}
        if "probabilities" in body and item.probabilities:
            part["probabilities"] = body["probabilities"][start:end]
            part["classes"] = body["classes"]
        results.append(part)
        start = end
    return results


class LoopBatcher:
    """Requests for one model that become ready in the same turn of the event loop, predicted together, on the loop.

    For models with a fast path (``LoadedModel.fast``) a one-row request costs ~0.1 ms to parse and
    predict, less than the hop to :class:`MicroBatcher`'s thread and back, and with requests spread over many models such
    hops also wait on the GIL's switch interval. So these are predicted on the event loop: the
    first request for a model schedules a flush at the end of the current turn, and the requests
    for that model parsed meanwhile join it (a batch of at most ``max_rows`` rows a call).
    """

    def __init__(self, max_rows: int = DEFAULT_BATCH_ROWS) -> None:
        self.max_rows = max_rows
        self._pending: dict[int, list[_Job]] = {}

    async def predict(self, loaded: LoadedModel, parsed: ParsedRows, *, probabilities: bool = True) -> Any:
        import asyncio

        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        key = id(loaded)  # the very model object: a swapped version never shares a batch
        jobs = self._pending.get(key)
        if jobs is None:
            jobs = self._pending[key] = []
            loop.call_soon(self._flush, key)
        jobs.append(_Job(loaded, parsed, probabilities, future, loop))
        return await future

    def _flush(self, key: int) -> None:
        jobs = self._pending.pop(key)
        batch: list[_Job] = []
        rows = 0
        for job in [*jobs, None]:
            if batch and (job is None or rows + job.parsed.rows > self.max_rows):
                try:
                    results = predict_batch(batch)
                except Exception as exc:  # a callback of the loop: it must not raise
                    log.exception("predict: a batch of %d requests failed", len(batch))
                    results = [MlopsError(f"the prediction batch failed: {type(exc).__name__}: {exc}")] * len(batch)
                for item, result in zip(batch, results, strict=True):
                    _settle(item.future, result)
                batch, rows = [], 0
            if job is not None:
                batch.append(job)
                rows += job.parsed.rows


def _predict_one(job: _Job) -> Any:
    return predict_parsed(job.loaded, job.parsed, probabilities=job.probabilities)


def predict_parsed(loaded: LoadedModel, parsed: ParsedRows, *, probabilities: bool = True) -> Any:
    """:func:`predict_rows` on one checked request; the exception instead if it raises."""
    try:
        if parsed.columns is not None:  # typed by the whole-column checks
            return predict_columns(loaded, parsed.columns, probabilities=probabilities)
        return predict_values(loaded, parsed.values or {}, probabilities=probabilities)
    except Exception as exc:  # handed to the request, which turns it into its answer
        return exc
