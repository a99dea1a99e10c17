"""An exact fast path for the pipelines we train: scikit-learn's answers, computed with plain numpy.

One call of our default pipeline costs about as much for one row as for eight: nearly all of
it is the ColumnTransformer's per-call work (pandas column selection, scikit-learn's input
checks in every step), not arithmetic. A server with many models seldom gets two requests for
one model at once, so it pays that cost per request. :func:`compile_pipeline` reads a fitted
pipeline of the shape :func:`~mlops_airflow.training.preprocessing.default_preprocessor`
builds and redoes its transform in numpy: the same operations, in the same order, on the same
dtypes and memory layout, so that the answers are bit-identical, not merely close. Linear final
estimators are computed in numpy too; any other final estimator gets one call on the
transformed rows instead of a pipeline call.

Exact by construction, and checked: :func:`verified_fast_path` (``LoadedModel.warm``) compares
the fast path with the normal one on probe rows made from the feature schema and the fitted
categories, and a fast path that differs in a single bit on any of them is not used. A verified
fast path then answers only for columns of the dtypes it was checked on; other columns, and
any failure, go to the normal path, which answers or raises as it always did.

What compiles (anything else gives None, and the normal path serves the model):

- a Pipeline of one ColumnTransformer and a final estimator (``None``/``"passthrough"`` steps aside);
- the ColumnTransformer: dense output, no transformer weights, no pandas output, columns named,
  ``remainder="drop"``, and branches of two kinds, in any number and order:

  - numeric: SimpleImputer and/or StandardScaler (bare or in a Pipeline) on numeric columns;
  - categorical: OneHotEncoder (bare or after a SimpleImputer) on text columns, ``drop=None``,
    ``handle_unknown`` ``"ignore"`` or ``"infrequent_if_exist"``, with or without infrequent categories;

- computed in numpy: LogisticRegression (binary and multinomial), LinearRegression, Ridge;
  any other final estimator is called on the transformed rows.
"""

from __future__ import annotations

import itertools
import logging
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from mlops_airflow.serving.predict import (
    _final_step,
    final_outputs,
    prediction_body,
    transformed,
)

if TYPE_CHECKING:
    from collections.abc import Mapping

    import numpy as np

    from mlops_airflow.serving.loading import LoadedModel

log = logging.getLogger(__name__)

#: Methods we replicate from an estimator's class: one replaced on an instance is not the class's code.
_REPLICATED = ("transform", "predict", "predict_proba", "decision_function")

#: Text dtypes a categorical column may have in the server's frame (pandas and numpy give objects for them).
_TEXT_DTYPES = ("str", "string", "object", "category")

#: Numeric dtypes not compiled: scikit-learn keeps an all-float32 block in float32 (their nullable kin are
#: turned into float64, but are declined with them rather than told apart).
_NARROW_FLOATS = ("float16", "float32", "Float32")


class NotCompilable(Exception):
    """Why a model has no fast path: a reason, not a failure (the normal path serves the model)."""


class _Declined(Exception):
    """Rows the fast path leaves to the normal path (scikit-learn's own error is the answer there)."""


@dataclass(frozen=True)
class _NumericBranch:
    """SimpleImputer / StandardScaler steps on numeric columns, in their pipeline's order."""

    names: tuple[str, ...]
    #: ("impute", per-column fill values, None) or ("scale", mean or None, scale or None)
    steps: tuple[tuple[str, Any, Any], ...]

    @property
    def width(self) -> int:
        return len(self.names)

    def apply(self, columns: Mapping[str, Any], block: np.ndarray) -> None:
        """Write the branch's output for these columns into ``block`` (its part of the output rows)."""
        import numpy as np

        for index, name in enumerate(self.names):
            column = columns[name]
            # as scikit-learn converts it: numpy's own cast on assignment (what astype(float64) does), and
            # pandas' missing values (NA) as NaN
            block[:, index] = column if isinstance(column, np.ndarray) else column.to_numpy(dtype=np.float64, na_value=np.nan)
        for kind, first, second in self.steps:
            finite = _all_finite(block)
            # each step checks its input (ensure_all_finite="allow-nan"): let it say so
            if not finite and np.isinf(block).any():
                raise _Declined("infinity")
            if kind == "impute" and not finite:  # NaN to fill
                missing = np.isnan(block)
                for position in np.flatnonzero(missing.any(axis=0)).tolist():
                    block[missing[:, position], position] = first[position]
            elif kind == "scale":  # StandardScaler.transform: X -= mean_; X /= scale_, in place
                if first is not None:
                    block -= first
                if second is not None:
                    block /= second


@dataclass(frozen=True)
class _CategoricalBranch:
    """A OneHotEncoder, after a constant or most-frequent SimpleImputer or none, on text columns."""

    names: tuple[str, ...]
    #: The imputer's fill value per column, or None without an imputer.
    fills: tuple[Any, ...] | None
    #: Per column: category -> output column (NaN categories aside), in the block's numbering.
    lookups: tuple[dict[Any, int], ...]
    #: Per column: the output column of a NaN value when NaN is a fitted category, else None.
    nan_columns: tuple[int | None, ...]
    #: Per column: the output column of an unknown value (the infrequent one), or None (all zeros).
    unknown_columns: tuple[int | None, ...]
    width: int

    def apply(self, columns: Mapping[str, Any], block: np.ndarray) -> None:
        """Set the ones of these rows in ``block`` (zeros: the branch's part of the output rows)."""
        import numpy as np

        rows: list[int] = []
        hot: list[int] = []
        for index, name in enumerate(self.names):
            fill = self.fills[index] if self.fills is not None else None  # never None itself (_imputer_fill)
            lookup, nan_column, unknown = self.lookups[index], self.nan_columns[index], self.unknown_columns[index]
            for row, value in enumerate(np.asarray(columns[name], dtype=object).tolist()):
                # SimpleImputer's own test on object arrays, x != x (numpy compares objects without an
                # identity shortcut, as Python's != does): NaN is missing, None is not
                if fill is not None and value != value:
                    value = fill
                column = lookup.get(value)
                if column is None:  # unknown, unless NaN is a fitted category (NaN as _check_unknown tells it)
                    column = nan_column if nan_column is not None and _is_nan(value) else unknown
                if column is not None:
                    rows.append(row)
                    hot.append(column)
        if len(hot) > 16:
            block[rows, hot] = 1.0
        else:  # a fancy-index write costs ~4 µs, a dozen scalar ones less: this is most requests
            for row, column in zip(rows, hot, strict=True):
                block[row, column] = 1.0


class FastPipeline:
    """A compiled pipeline: :meth:`predict` answers as ``predict_rows`` does for the model, bit for bit."""

    def __init__(self, branches: list[_NumericBranch | _CategoricalBranch], final: Any,
                 kind: Literal["logistic", "linear", "estimator"], classes: list[Any] | None) -> None:
        import numpy as np

        self.branches = branches
        self.final = final
        self.kind = kind
        self.classes = classes
        #: The input columns, in the order the branches read them.
        self.names = tuple(name for branch in branches for name in branch.names)
        #: Per column, the dtypes it was verified on (set by :func:`verified_fast_path`), in the columns
        #: ``typed_columns`` gives (the frame's own arrays) and in those it gives with text as objects.
        self.input_dtypes: dict[str, tuple[Any, ...]] = {}
        self.object_text_dtypes: dict[str, tuple[Any, ...]] = {}
        #: Each branch's columns in the output rows, and their number.
        edges = [0, *itertools.accumulate(branch.width for branch in branches)]
        self.parts = [slice(start, stop) for start, stop in itertools.pairwise(edges)]
        self.width = edges[-1]
        # The memory order of the ColumnTransformer's np.hstack of the branches' blocks, which decides how
        # BLAS sums later on: numeric blocks are Fortran-ordered (scikit-learn gets np.asarray of a DataFrame,
        # its blocks transposed), one-hot ones C-ordered, and numpy's rule for mixing them is its own: ask it.
        stacked = np.hstack([np.empty((2, branch.width), order="F" if isinstance(branch, _NumericBranch) else "C")
                             for branch in branches])
        self.order: Literal["C", "F"] = "F" if stacked.flags.f_contiguous else "C"

    def accepts(self, columns: Mapping[str, Any], *, text_as_objects: bool = False) -> bool:
        """Whether every input column is there with a dtype the fast path was verified on, in that form."""
        verified = self.object_text_dtypes if text_as_objects else self.input_dtypes
        for name in self.names:
            dtype = getattr(columns.get(name), "dtype", None)
            if dtype is None:
                return False
            for seen in verified.get(name, ()):
                if dtype is seen or dtype == seen:  # identity first: the checks' dtypes are shared, pandas' == is slow
                    break
            else:
                return False
        return True

    def columns_of(self, frame: Any) -> dict[str, Any] | None:
        """A DataFrame's input columns as the server's checks type them; None if it is not one or lacks a column."""
        if type(frame).__name__ != "DataFrame" or not all(name in frame.columns for name in self.names):
            return None
        columns = {}
        for name in self.names:
            column = frame[name].array
            # pandas wraps a numpy column; the checks hand on the numpy array itself (same values, same dtype)
            columns[name] = column.to_numpy() if type(column).__name__ == "NumpyExtensionArray" else column
        return columns

    def transform(self, columns: Mapping[str, Any]) -> np.ndarray:
        """What the pipeline's ColumnTransformer gives for the frame of these columns: values, dtype and layout."""
        import numpy as np

        n_rows = len(columns[self.names[0]])
        if n_rows == 0:
            raise _Declined("no rows")  # scikit-learn refuses empty input: let it say so
        # one block written in place, not each branch's block stacked: the same values and layout
        rows = np.zeros((n_rows, self.width), dtype=np.float64, order=self.order)
        for branch, part in zip(self.branches, self.parts, strict=True):
            branch.apply(columns, rows[:, part])
        return rows

    def outputs(self, columns: Mapping[str, Any], probabilities: bool) -> tuple[Any, Any | None]:
        """The arrays ``pipeline_outputs`` gives: predictions, and probabilities when asked for."""
        rows = self.transform(columns)
        if self.kind != "estimator" and not _all_finite(rows):
            raise _Declined("NaN or infinity")  # the linear models' validate_data refuses both: let them say so
        if self.kind == "logistic":
            return _logistic_outputs(self.final, rows, probabilities)
        if self.kind == "linear":
            return _linear_predictions(self.final, rows), None
        return final_outputs(self.final, rows, probabilities)

    def predict(self, columns: Mapping[str, Any], probabilities: bool) -> dict[str, Any]:
        """Exactly what ``predict_rows`` answers (``probabilities``: whether it would compute them)."""
        return prediction_body(*self.outputs(columns, probabilities), self.classes)


def _all_finite(block: np.ndarray) -> bool:
    """``np.isfinite(block).all()``; on the few values of a request or two, in Python: numpy's reduction costs ~2 µs."""
    import numpy as np

    if block.size <= 64:
        return all(map(math.isfinite, block.ravel().tolist()))
    return bool(np.isfinite(block).all())


def _is_nan(value: Any) -> bool:
    from sklearn.utils._missing import is_scalar_nan

    return bool(is_scalar_nan(value))


def _logistic_outputs(estimator: Any, rows: np.ndarray, probabilities: bool) -> tuple[Any, Any | None]:
    """LogisticRegression's predict and predict_proba, as scikit-learn 1.9 computes them.

    ``LinearClassifierMixin.decision_function`` (``safe_sparse_dot`` is ``a @ b`` for dense
    arrays), its ``predict`` (``scores > 0`` or the arg-max), and ``predict_proba``: the expit of
    the binary scores stacked as ``[1 - p, p]``, or the softmax of the multinomial ones.
    """
    import numpy as np

    coef_t = estimator.coef_.T if estimator.coef_.ndim == 2 else estimator.coef_
    scores = rows @ coef_t + estimator.intercept_
    if scores.ndim > 1 and scores.shape[1] == 1:
        scores = scores.reshape(-1)
    indices = (scores > 0).astype(np.intp) if scores.ndim == 1 else np.argmax(scores, axis=1)
    predictions = estimator.classes_.take(indices, axis=0)
    if not probabilities:
        return predictions, None
    if scores.ndim == 1:
        from scipy.special import expit

        proba = expit(scores, out=scores)
        stacked = np.empty((len(proba), 2))  # np.stack's C-ordered result, without its per-call checks
        np.subtract(1, proba, out=stacked[:, 0])
        stacked[:, 1] = proba
        return predictions, stacked
    from sklearn.utils.extmath import softmax

    return predictions, softmax(scores, copy=False)


def _linear_predictions(estimator: Any, rows: np.ndarray) -> Any:
    """``LinearModel._decision_function``, which LinearRegression's and Ridge's predict return."""
    coef = estimator.coef_
    if coef.ndim == 1:
        return rows @ coef + estimator.intercept_
    return rows @ coef.T + estimator.intercept_


# -- compiling ---------------------------------------------------------------------------------


def compile_pipeline(model: Any, feature_schema: dict[str, Any], *,
                     classes: list[Any] | None = None) -> FastPipeline | None:
    """The fast path for ``model``, or None if its shape is not one this module replicates.

    ``classes`` is what answers list as classes (``LoadedModel.classes``; the model's
    ``classes_`` by default). The result is not verified yet: see :func:`verified_fast_path`.
    """
    try:
        return _compile(model, feature_schema, classes)
    except NotCompilable as exc:
        log.debug("no fast path: %s", exc)
        return None


def _compile(model: Any, schema: dict[str, Any], classes: list[Any] | None) -> FastPipeline:
    transforms, final = _final_step(model)
    if not transforms:
        raise NotCompilable(f"{type(model).__name__} is not a Pipeline of preprocessing and an estimator")
    _replicable(model)
    if len(transforms) != 1 or type(transforms[0]).__name__ != "ColumnTransformer":
        shown = ", ".join(type(step).__name__ for step in transforms)
        raise NotCompilable(f"the steps before the estimator are {shown}, not one ColumnTransformer")
    kinds = {column["name"]: column for column in schema.get("columns", [])}
    if not kinds:
        raise NotCompilable("no feature schema")
    branches = _branches(transforms[0], kinds)
    _replicable(final)
    if classes is None and hasattr(model, "classes_"):
        classes = list(model.classes_.tolist())
    return FastPipeline(branches, final, _final_kind(final), classes)


def _replicable(estimator: Any) -> None:
    """Refuse an estimator whose methods were replaced on the instance: the normal path honours that."""
    replaced = [name for name in _REPLICATED if name in vars(estimator)]
    if replaced:
        raise NotCompilable(f"{type(estimator).__name__} has {', '.join(replaced)} replaced on the instance")


def _default_output(estimator: Any) -> None:
    configured = getattr(estimator, "_sklearn_output_config", {}).get("transform", "default")
    if configured != "default":
        raise NotCompilable(f"{type(estimator).__name__} is set to {configured} output")


def _branches(transformer: Any, kinds: dict[str, dict[str, Any]]) -> list[_NumericBranch | _CategoricalBranch]:
    import sklearn

    if sklearn.get_config().get("transform_output", "default") != "default":
        raise NotCompilable("scikit-learn is set to non-default transform output")
    _replicable(transformer)
    _default_output(transformer)
    if getattr(transformer, "sparse_output_", True):
        raise NotCompilable("the ColumnTransformer's output is sparse")
    if transformer.transformer_weights:
        raise NotCompilable("the ColumnTransformer weighs its transformers")
    branches: list[_NumericBranch | _CategoricalBranch] = []
    for name, step, columns in transformer.transformers_:
        if isinstance(step, str) and step == "drop":
            continue
        if not isinstance(columns, list) or not all(isinstance(column, str) for column in columns):
            raise NotCompilable(f"transformer {name!r} selects its columns by other means than a list of names")
        if not columns:
            continue  # ColumnTransformer skips an empty selection
        if isinstance(step, str):  # "passthrough", including a remainder passed through
            raise NotCompilable(f"transformer {name!r} is {step!r}")
        steps = list(step.steps) if type(step).__name__ == "Pipeline" else [(name, step)]
        estimators = [estimator for _, estimator in steps if estimator is not None and estimator != "passthrough"]
        for estimator in estimators:
            _replicable(estimator)
            _default_output(estimator)
        names = tuple(columns)
        missing = [column for column in names if column not in kinds]
        if missing:
            raise NotCompilable(f"transformer {name!r} reads columns the schema lacks: {missing}")
        if estimators and type(estimators[-1]).__name__ == "OneHotEncoder":
            branches.append(_categorical(name, estimators, names, kinds))
        else:
            branches.append(_numeric(name, estimators, names, kinds))
    if not branches:
        raise NotCompilable("the ColumnTransformer has no transformers")
    return branches


def _numeric(name: str, estimators: list[Any], names: tuple[str, ...],
             kinds: dict[str, dict[str, Any]]) -> _NumericBranch:
    import numpy as np

    for column in names:
        kind, dtype = kinds[column].get("kind"), str(kinds[column].get("dtype", ""))
        if kind != "numeric" or dtype in _NARROW_FLOATS:
            raise NotCompilable(f"transformer {name!r} reads column {column!r} of dtype {dtype} ({kind})")
    if not estimators:
        raise NotCompilable(f"transformer {name!r} has no steps")
    steps: list[tuple[str, Any, Any]] = []
    for estimator in estimators:
        kind = type(estimator).__name__
        if kind == "SimpleImputer":
            fill = _imputer_fill(name, estimator, np.dtype(np.float64))
            steps.append(("impute", fill, None))
        elif kind == "StandardScaler":
            mean = estimator.mean_.astype(np.float64) if estimator.with_mean else None
            scale = estimator.scale_.astype(np.float64) if estimator.with_std else None
            steps.append(("scale", mean, scale))
        else:
            raise NotCompilable(f"transformer {name!r} has a {kind} step")
    return _NumericBranch(names, tuple(steps))


def _imputer_fill(name: str, imputer: Any, dtype: np.dtype) -> Any:
    """The values a SimpleImputer writes into missing cells, as it casts them (``statistics_`` in the fit dtype)."""
    from sklearn.utils._missing import is_scalar_nan

    if not is_scalar_nan(imputer.missing_values) or imputer.add_indicator:
        raise NotCompilable(f"transformer {name!r} imputes other values than NaN or adds indicators")
    fitted = getattr(imputer, "_fill_dtype", None)  # what transform casts statistics_ to
    if fitted != dtype:
        raise NotCompilable(f"transformer {name!r}'s SimpleImputer was fitted on {fitted} data")
    fill = imputer.statistics_.astype(dtype, copy=False)
    # a column without any value in training is dropped by the imputer: not replicated
    if any(value is None or is_scalar_nan(value) for value in fill.tolist()):
        raise NotCompilable(f"transformer {name!r}'s SimpleImputer has no value for some column")
    return fill


def _categorical(name: str, estimators: list[Any], names: tuple[str, ...],
                 kinds: dict[str, dict[str, Any]]) -> _CategoricalBranch:
    import numpy as np
    from sklearn.utils._missing import is_scalar_nan

    for column in names:
        kind, dtype = kinds[column].get("kind"), str(kinds[column].get("dtype", ""))
        if kind != "categorical" or dtype not in _TEXT_DTYPES:
            raise NotCompilable(f"transformer {name!r} one-hot encodes column {column!r} of dtype {dtype} ({kind})")
    *before, encoder = estimators
    fills = None
    if before:
        if len(before) > 1 or type(before[0]).__name__ != "SimpleImputer":
            raise NotCompilable(f"transformer {name!r} has {[type(step).__name__ for step in before]} before its encoder")
        fills = tuple(_imputer_fill(name, before[0], np.dtype(object)).tolist())
    if encoder.drop is not None or getattr(encoder, "_drop_idx_after_grouping", None) is not None:
        raise NotCompilable(f"transformer {name!r}'s OneHotEncoder drops categories")
    if encoder.handle_unknown not in ("ignore", "infrequent_if_exist"):
        raise NotCompilable(f"transformer {name!r}'s OneHotEncoder has handle_unknown={encoder.handle_unknown!r}")
    if np.dtype(encoder.dtype) != np.float64:
        raise NotCompilable(f"transformer {name!r}'s OneHotEncoder outputs {np.dtype(encoder.dtype)}")
    # The attributes OneHotEncoder.transform itself reads (_map_infrequent_categories, feature_indices).
    infrequent = encoder._infrequent_indices if encoder._infrequent_enabled else [None] * len(names)
    mappings = encoder._default_to_infrequent_mappings if encoder._infrequent_enabled else [None] * len(names)
    lookups: list[dict[Any, int]] = []
    nan_columns: list[int | None] = []
    unknown_columns: list[int | None] = []
    offset = 0
    for categories, infrequent_indices, mapping, width in zip(
        encoder.categories_, infrequent, mappings, encoder._n_features_outs, strict=True
    ):
        if categories.dtype != object:
            raise NotCompilable(f"transformer {name!r}'s OneHotEncoder has {categories.dtype} categories")
        if mapping is not None and len(mapping) != len(categories):
            raise NotCompilable(f"transformer {name!r}'s OneHotEncoder sets missing values apart")
        output = [offset + int(mapping[index] if mapping is not None else index) for index in range(len(categories))]
        lookup: dict[Any, int] = {}
        nan_column = None
        for category, position in zip(categories.tolist(), output, strict=True):
            if is_scalar_nan(category):
                nan_column = position
            else:
                lookup[category] = position
        # an unknown value is encoded as infrequent_indices[0] and kept only under "infrequent_if_exist"
        infrequent_kept = infrequent_indices is not None and encoder.handle_unknown == "infrequent_if_exist"
        lookups.append(lookup)
        nan_columns.append(nan_column)
        unknown_columns.append(output[int(infrequent_indices[0])] if infrequent_kept else None)
        offset += int(width)
    return _CategoricalBranch(names, fills, tuple(lookups), tuple(nan_columns), tuple(unknown_columns), offset)


def _final_kind(estimator: Any) -> Literal["logistic", "linear", "estimator"]:
    """How the final step is computed: in numpy when its methods are the scikit-learn code replicated here."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.linear_model._base import LinearClassifierMixin, LinearModel, MultiOutputLinearModel

    def method(name: str) -> Any:
        return getattr(type(estimator), name, None)

    coef = getattr(estimator, "coef_", None)
    if not isinstance(coef, np.ndarray) or coef.dtype != np.float64:
        return "estimator"  # sparse (sparsify()) or other-precision coefficients: let it compute
    if (method("predict_proba") is LogisticRegression.predict_proba
            and method("decision_function") is LinearClassifierMixin.decision_function
            and method("predict") is LinearClassifierMixin.predict
            and coef.ndim == 2 and coef.shape[0] == (1 if len(estimator.classes_) <= 2 else len(estimator.classes_))):
        return "logistic"
    if (method("predict") in (LinearModel.predict, MultiOutputLinearModel.predict, Ridge.predict)
            and method("_decision_function") is LinearModel._decision_function):
        return "linear"
    return "estimator"


# -- verifying ---------------------------------------------------------------------------------


def verified_fast_path(loaded: LoadedModel) -> FastPipeline | None:
    """The fast path for ``loaded`` if it compiles and agrees bit for bit with the normal path on probe rows.

    The probes are frames built as the server builds them: one row of ordinary values, and a
    batch holding every probe value of every column: the schema's observed range, far beyond
    it, zero, each category fitted or observed, the empty string, an unseen category, a row
    with a null in each nullable column, and extremes (+-1e300, the smallest float, the ends
    of integer dtypes). If the model itself fails on that batch, its ordinary values, the null
    row and the extremes are tried apart. The pipeline must answer the ordinary rows; on each
    frame, both paths fail (the fast path then leaves those rows to the normal one, which fails
    the same way), or the transformed rows (values, dtype and memory layout), the predictions
    with and without probabilities, and the probabilities are identical. Both forms the server
    hands the fast path are checked so: the frame's own arrays, and text as objects
    (``SchemaChecker.typed_columns``). Otherwise None, and the reason is logged at INFO.
    """
    import numpy as np

    what = f"{loaded.model_name} version {loaded.version}"
    try:
        fast = _compile(loaded.model, loaded.feature_schema, loaded.classes)
        with np.errstate(all="ignore"):  # overflow on extreme probes is expected, in both paths; thread-local
            fast.input_dtypes, fast.object_text_dtypes = _verify(fast, loaded)
    except NotCompilable as exc:
        log.info("%s: no fast path, served by its pipeline: %s", what, exc)
        return None
    except Exception as exc:  # an optimisation must never stop a model from loading
        log.info("%s: no fast path, served by its pipeline: checking it failed: %s: %s",
                 what, type(exc).__name__, exc)
        return None
    log.debug("%s: fast path verified", what)
    return fast


def _verify(fast: FastPipeline, loaded: LoadedModel) -> tuple[dict[str, tuple[Any, ...]], ...]:
    """The dtypes each column was verified on, per form; raises NotCompilable at the first difference."""
    from mlops_airflow.serving.predict import _wants_probabilities

    ordinary, nulls, extreme = _probe_values(fast, loaded.request_checker)
    modes = sorted({False, _wants_probabilities(loaded, True)})
    seen: list[dict[str, list[Any]]] = [{name: [] for name in fast.names} for _ in range(2)]
    everything = {name: _rows(ordinary)[name] + nulls[name] + _rows(extreme)[name] for name in ordinary}
    # (label, rows, whether the pipeline must answer them: the ordinary ones hold what is verified)
    pending = [("one row", {name: values[:1] for name, values in ordinary.items()}, True),
               ("a batch", everything, False)]
    while pending:
        label, values, ordinary_only = pending.pop(0)
        forms = _compare(fast, loaded, label, values, modes)
        if forms is None:  # both paths fail
            if ordinary_only:
                raise NotCompilable(f"the pipeline fails on ordinary probe rows ({label})")
            if label == "a batch":  # nulls or extremes the model refuses: the rest must still agree
                pending += [("ordinary values", _rows(ordinary), True), ("nulls", nulls, False),
                            ("extreme values", _rows(extreme), False)]
            continue
        for columns, dtypes in zip(forms, seen, strict=True):
            for name in fast.names:
                if not any(columns[name].dtype == dtype for dtype in dtypes[name]):
                    dtypes[name].append(columns[name].dtype)
    return tuple({name: tuple(found) for name, found in dtypes.items()} for dtypes in seen)


def _compare(fast: FastPipeline, loaded: LoadedModel, label: str, values: dict[str, list[Any]],
             modes: list[bool]) -> list[dict[str, Any]] | None:
    """The probe's columns in each form if both paths give the same arrays; None if both fail; else NotCompilable."""
    frame = loaded.request_checker.build_frame(values)
    forms = [loaded.request_checker.typed_columns(values, text_as_objects=objects) for objects in (False, True)]
    try:
        # pipeline_outputs is transformed + final_outputs, and Pipeline.predict (the labels-only
        # answer) is the final step's predict of the same transform: one transform serves both
        rows, final = transformed(loaded.model, frame)
        expected = {mode: final_outputs(final, rows, mode) for mode in modes}
    except Exception:  # the server answers these rows with the model's error
        expected = None
    for columns, shown in zip(forms, (label, f"{label}, text as objects"), strict=True):
        try:
            got = {mode: fast.outputs(columns, mode) for mode in modes}
            fast_rows = fast.transform(columns)
        except Exception as exc:
            if expected is None:
                continue  # at serving the fast path leaves these rows to the normal one, which fails the same way
            raise NotCompilable(f"the fast path fails on probe rows ({shown}): {type(exc).__name__}: {exc}") from exc
        if expected is None:
            raise NotCompilable(f"the pipeline fails on probe rows ({shown}) that the fast path answers")
        if final is not fast.final or not _identical(fast_rows, rows, layout=True):
            raise NotCompilable(f"the fast path transforms probe rows ({shown}) differently")
        for mode, (predictions, proba) in expected.items():
            if not _identical(got[mode][0], predictions) or not _identical(got[mode][1], proba):
                answer = "with probabilities" if mode else "labels only"
                raise NotCompilable(f"the fast path predicts probe rows ({shown}, {answer}) differently")
    return forms if expected is not None else None


def _rows(probes: dict[str, list[Any]]) -> dict[str, list[Any]]:
    """Probe values as rows: as many as the longest list, every value of every column in at least one."""
    count = max(len(values) for values in probes.values())
    return {name: [values[row % len(values)] for row in range(count)] for name, values in probes.items()}


def _identical(got: Any, expected: Any, *, layout: bool = False) -> bool:
    """The same array to the bit: dtype, shape, every value's bytes (or objects), and with ``layout`` its memory order."""
    import numpy as np

    if got is None or expected is None:
        return got is None and expected is None
    got, expected = np.asarray(got), np.asarray(expected)
    if got.dtype != expected.dtype or got.shape != expected.shape:
        return False
    if layout and (got.flags.c_contiguous, got.flags.f_contiguous) != (
            expected.flags.c_contiguous, expected.flags.f_contiguous):
        return False
    if got.dtype == object:
        return all(type(a) is type(b) and a == b for a, b in zip(got.ravel().tolist(), expected.ravel().tolist(),
                                                                 strict=True))
    return bool(np.ascontiguousarray(got).tobytes() == np.ascontiguousarray(expected).tobytes())


def _probe_values(fast: FastPipeline, checker: Any) -> tuple[dict[str, list[Any]], ...]:
    """Per schema column, as the request checks pass values on: ordinary values, a null row, extremes.

    The first ordinary value is a plain one. The null row has a null in each nullable column
    and the first ordinary value elsewhere; so do the extremes of columns that have none.
    """
    categories: dict[str, list[Any]] = {}
    for branch in fast.branches:
        if isinstance(branch, _CategoricalBranch):
            for name, lookup in zip(branch.names, branch.lookups, strict=True):
                categories[name] = [value for value in lookup if isinstance(value, str)]
    ordinary, nulls, extreme = {}, {}, {}
    for column in checker.columns:
        far: list[Any] = []
        if column.family == "bool":
            values: list[Any] = [False, True]
        elif column.family in ("integer", "float"):
            values, far = _numbers(column)
        elif column.family == "text":
            known = sorted({*categories.get(column.name, []), *(column.seen_categories or ()),
                            *(value for value in column.allowed or [] if isinstance(value, str))})
            values = [*known, "", "an unseen category \u2603"]
        else:  # date/times never reach a compiled pipeline, but the frame needs the column
            values = ["2026-01-01T00:00:00"]
        ordinary[column.name] = values
        nulls[column.name] = [None] if column.nullable else values[:1]
        extreme[column.name] = far or values[:1]
    return ordinary, nulls, extreme


def _numbers(column: Any) -> tuple[list[Any], list[Any]]:
    """Ordinary (the range seen and far beyond) and extreme values of a numeric column, of its type and dtype."""
    low = column.seen_low if column.seen_low is not None else column.low
    high = column.seen_high if column.seen_high is not None else column.high
    low, high = float(low if low is not None else 0.0), float(high if high is not None else 1.0)
    span = max(high - low, 1.0)
    values = [(low + high) / 2, low, high, 0.0, 0.1, low - 1e3 * span, high + 1e3 * span, -1e15, 1e15]
    if column.family == "float":
        return values, [-1e300, 1e300, 5e-324, -5e-324]
    smallest, largest = column.int_range
    return list(dict.fromkeys(min(max(round(value), smallest), largest) for value in values)), [smallest, largest]
