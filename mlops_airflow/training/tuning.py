"""Hyperparameter search on the training split: successive halving by default, Optuna if installed.

The search space comes from a DAG's Params as JSON. Each parameter maps to a list of
values (a grid) or a distribution::

    {"C": {"type": "loguniform", "low": 0.01, "high": 10},
     "penalty": ["l2", null],
     "max_iter": {"type": "randint", "low": 100, "high": 500}}

Distribution types: ``loguniform`` and ``uniform`` (floats in [low, high]) and ``randint``
(integers in [low, high], both ends included). Cross-validation sees only the rows it is
given, the training split: the holdout the gate scores on is never part of the search.
The summary (candidates tried, best score and params, a top-k table) is plain JSON for
the candidate's record.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import math
from typing import TYPE_CHECKING, Any, Literal

from mlops_airflow.exceptions import ConfigError
from mlops_airflow.records import json_scalar

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

Method = Literal["halving_random", "halving_grid", "optuna"]
METHODS: tuple[str, ...] = ("halving_random", "halving_grid", "optuna")
DISTRIBUTIONS = ("loguniform", "uniform", "randint")
#: The ``tuning`` Param's options and their defaults.
DEFAULT_OPTIONS: dict[str, Any] = {
    "method": "halving_random",
    "cv": 3,
    "n_candidates": 20,
    "factor": 3,
    "scoring": None,  # None: chosen from the task (see DEFAULT_SCORING)
    "random_state": 0,  # fixed so that identical inputs give identical candidates
    "top_k": 5,
}
DEFAULT_SCORING = {"binary": "roc_auc", "multiclass": "f1_macro", "regression": "neg_root_mean_squared_error"}
OPTUNA_EXTRA = "mlops-airflow[optuna]"


def check_options(options: dict[str, Any] | None) -> dict[str, Any]:
    """The ``tuning`` options merged over the defaults; raises :class:`ConfigError` naming a bad field."""
    if options is None:
        options = {}
    if not isinstance(options, dict):
        raise ConfigError(f"tuning must be a mapping, got {type(options).__name__}")
    unknown = sorted(set(options) - set(DEFAULT_OPTIONS))
    if unknown:
        raise ConfigError(f"tuning.{unknown[0]}: unknown option (known: {', '.join(DEFAULT_OPTIONS)})")
    merged = {**DEFAULT_OPTIONS, **options}
    if merged["method"] not in METHODS:
        raise ConfigError(f"tuning.method={merged['method']!r} is not one of {', '.join(METHODS)}")
    if merged["method"] == "optuna" and importlib.util.find_spec("optuna") is None:
        raise ConfigError(f"tuning.method=optuna needs Optuna: install the optional extra, pip install '{OPTUNA_EXTRA}'")
    for name, low in (("cv", 2), ("top_k", 1), ("random_state", 0)):
        if not _is_int(merged[name]) or merged[name] < low:
            raise ConfigError(f"tuning.{name}={merged[name]!r}: expected an integer >= {low}")
    n = merged["n_candidates"]
    if not (n == "exhaust" or (_is_int(n) and n >= 1)):
        raise ConfigError(f"tuning.n_candidates={n!r}: expected an integer >= 1 or 'exhaust'")
    factor = merged["factor"]
    if not _is_number(factor) or factor <= 1:
        raise ConfigError(f"tuning.factor={factor!r}: expected a number > 1")
    if merged["scoring"] is not None:
        from sklearn.metrics import get_scorer

        try:
            get_scorer(merged["scoring"])
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"tuning.scoring={merged['scoring']!r}: not a scikit-learn scorer name") from exc
    return merged


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def parse_search_space(space: Any, *, method: str = "halving_random") -> dict[str, Any]:
    """``{param: list or scipy distribution}`` from the JSON space; raises naming ``search_space.<param>``."""
    if not isinstance(space, dict) or not space:
        raise ConfigError("search_space must be a non-empty mapping of parameter -> list of values or distribution")
    parsed: dict[str, Any] = {}
    for name, spec in space.items():
        field = f"search_space.{name}"
        if isinstance(spec, list):
            if not spec:
                raise ConfigError(f"{field}: the list of values is empty")
            bad = [v for v in spec if not isinstance(v, str | int | float | bool | type(None))]
            if bad:
                raise ConfigError(f"{field}: values must be strings, numbers, booleans or null, got {bad[0]!r}")
            parsed[name] = list(spec)
        elif isinstance(spec, dict):
            if method == "halving_grid":
                raise ConfigError(
                    f"{field}: a grid search needs a list of values, not a distribution (or use tuning.method=halving_random)"
                )
            parsed[name] = _distribution(spec, field)
        else:
            raise ConfigError(f"{field}: expected a list of values or a distribution such as "
                              '{"type": "loguniform", "low": 0.001, "high": 10}, '
                              f"got {type(spec).__name__}")
    return parsed


def _distribution(spec: dict[str, Any], field: str) -> Any:
    from scipy import stats

    kind = spec.get("type")
    if kind not in DISTRIBUTIONS:
        raise ConfigError(f"{field}.type={kind!r}: expected one of {', '.join(DISTRIBUTIONS)}")
    extra = sorted(set(spec) - {"type", "low", "high"})
    if extra:
        raise ConfigError(f"{field}.{extra[0]}: unknown key (a distribution has type, low and high)")
    low: Any = spec.get("low")
    high: Any = spec.get("high")
    for key, value in (("low", low), ("high", high)):
        if not _is_number(value):
            raise ConfigError(f"{field}.{key}={value!r}: expected a number")
    if kind == "randint" and not (_is_int(low) and _is_int(high)):
        raise ConfigError(f"{field}: randint needs integer low and high, got {low!r} and {high!r}")
    if not low < high:
        raise ConfigError(f"{field}: low ({low}) must be below high ({high})")
    if kind == "loguniform":
        if low <= 0:
            raise ConfigError(f"{field}.low={low}: loguniform needs low > 0")
        return stats.loguniform(low, high)
    if kind == "uniform":
        return stats.uniform(loc=low, scale=high - low)
    return stats.randint(low, high + 1)  # scipy's high is exclusive; ours is inclusive


def check_names(space: dict[str, Any], pipeline: Any, *, prefix: str, fixed: dict[str, Any] | None = None) -> None:
    """Every searched parameter exists on the pipeline (after ``prefix``) and is not also fixed."""
    known = pipeline.get_params(deep=True)
    for name in space:
        if prefix + name not in known:
            names = sorted(k.removeprefix(prefix) for k in known if k.startswith(prefix) and "__" not in k.removeprefix(prefix))
            raise ConfigError(f"search_space.{name}: not a parameter of the model (known: {', '.join(names)})")
        if name in (fixed or {}):
            raise ConfigError(f"search_space.{name}: also fixed in estimator_params; give it in one place")


def tune(
    pipeline: Any,
    X: pd.DataFrame,
    y: pd.Series,
    *,
    task: str,
    search_space: dict[str, Any],
    options: dict[str, Any] | None = None,
    prefix: str = "",
    fixed: dict[str, Any] | None = None,
) -> tuple[Any, dict[str, Any]]:
    """Search ``search_space`` by cross-validation on ``X``/``y``; returns the refitted best pipeline and a summary.

    ``prefix`` maps the space's names onto the pipeline's (``estimator__`` for the default
    preprocessing + estimator); the summary's params are given without it.
    """
    opts = check_options(options)
    space = parse_search_space(search_space, method=opts["method"])
    check_names(space, pipeline, prefix=prefix, fixed=fixed)
    scoring = opts["scoring"] or DEFAULT_SCORING[task]
    cv = _folds(task, opts)
    log.info("Tuning %d parameter(s) by %s, %d-fold CV on %d training rows, scoring %s",
             len(space), opts["method"], opts["cv"], len(X), scoring)
    try:
        if opts["method"] == "optuna":
            best, summary = _optuna_search(pipeline, X, y, search_space, prefix, opts, cv, scoring)
        else:
            best, summary = _halving_search(pipeline, X, y, space, prefix, opts, cv, scoring)
    except ValueError as exc:  # e.g. every candidate failed to fit: a broken space, not a transient error
        raise ConfigError(f"tuning failed: {exc}") from exc
    summary = {"method": opts["method"], "scoring": scoring, "cv": opts["cv"], "train_rows": len(X),
               "search_space": search_space, **summary}
    log.info("Best %s = %.4f with %s", scoring, summary["best_score"], summary["best_params"])
    return best, summary


def _folds(task: str, opts: dict[str, Any]) -> Any:
    from sklearn.model_selection import KFold, StratifiedKFold

    cls = KFold if task == "regression" else StratifiedKFold
    return cls(n_splits=opts["cv"], shuffle=True, random_state=opts["random_state"])


def _unprefixed(params: dict[str, Any], prefix: str) -> dict[str, Any]:
    return {key.removeprefix(prefix): json_scalar(value) for key, value in params.items()}


def _halving_search(
    pipeline: Any, X: Any, y: Any, space: dict[str, Any], prefix: str, opts: dict[str, Any], cv: Any, scoring: str
) -> tuple[Any, dict[str, Any]]:
    from sklearn.experimental import enable_halving_search_cv  # noqa: F401 - registers the classes below
    from sklearn.model_selection import HalvingGridSearchCV, HalvingRandomSearchCV

    prefixed = {prefix + name: values for name, values in space.items()}
    # "exhaust": the last round uses every training row, so the winner is judged on all of them.
    min_resources = "smallest" if opts["n_candidates"] == "exhaust" else "exhaust"
    common = {"cv": cv, "scoring": scoring, "factor": opts["factor"], "random_state": opts["random_state"],
              "min_resources": min_resources, "refit": True, "n_jobs": 1}
    if opts["method"] == "halving_grid":
        search = HalvingGridSearchCV(pipeline, prefixed, **common)
    else:
        search = HalvingRandomSearchCV(pipeline, prefixed, n_candidates=opts["n_candidates"], **common)
    search.fit(X, y)
    results = search.cv_results_

    def score(i: int) -> float:
        value = float(results["mean_test_score"][i])
        return value if math.isfinite(value) else -math.inf

    # Rank by how far a candidate got (the rounds with more rows), then by its score there;
    # each candidate is listed once, with the result of its last round.
    seen: set[str] = set()
    top = []
    for i in sorted(range(len(results["iter"])), key=lambda i: (-int(results["iter"][i]), -score(i))):
        params = _unprefixed(results["params"][i], prefix)
        key = json.dumps(params, sort_keys=True, default=str)
        if key in seen:
            continue
        seen.add(key)
        top.append({"params": params, "mean_score": json_scalar(results["mean_test_score"][i]),
                    "std_score": json_scalar(results["std_test_score"][i]), "resources": json_scalar(results["n_resources"][i])})
        if len(top) == opts["top_k"]:
            break
    return search.best_estimator_, {
        "n_candidates": int(search.n_candidates_[0]),
        "n_fits": int(sum(search.n_candidates_) * opts["cv"]),
        "n_iterations": int(search.n_iterations_),
        "resources": [int(r) for r in search.n_resources_],
        "best_params": _unprefixed(search.best_params_, prefix),
        "best_score": json_scalar(search.best_score_),
        "top": top,
    }


def _optuna_search(
    pipeline: Any, X: Any, y: Any, raw_space: dict[str, Any], prefix: str, opts: dict[str, Any], cv: Any, scoring: str
) -> tuple[Any, dict[str, Any]]:
    # Only reached when Optuna is installed (check_options refuses the method otherwise).
    import optuna
    from sklearn.base import clone
    from sklearn.model_selection import cross_val_score

    def suggest(trial: Any, name: str, spec: Any) -> Any:
        if isinstance(spec, list):
            return trial.suggest_categorical(name, spec)
        if spec["type"] == "randint":
            return trial.suggest_int(name, spec["low"], spec["high"])
        return trial.suggest_float(name, spec["low"], spec["high"], log=spec["type"] == "loguniform")

    def objective(trial: Any) -> float:
        params = {name: suggest(trial, name, spec) for name, spec in raw_space.items()}
        model = clone(pipeline).set_params(**{prefix + k: v for k, v in params.items()})
        scores = cross_val_score(model, X, y, cv=cv, scoring=scoring)
        trial.set_user_attr("std_score", float(scores.std()))
        return float(scores.mean())

    n_trials = opts["n_candidates"] if opts["n_candidates"] != "exhaust" else DEFAULT_OPTIONS["n_candidates"]
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=opts["random_state"]))
    study.optimize(objective, n_trials=n_trials)
    done = sorted((t for t in study.trials if t.value is not None), key=lambda t: t.value or 0.0, reverse=True)
    best = clone(pipeline).set_params(**{prefix + k: v for k, v in study.best_params.items()}).fit(X, y)
    return best, {
        "n_candidates": len(study.trials),
        "n_fits": len(study.trials) * opts["cv"],
        "n_iterations": 1,
        "resources": [len(X)],
        "best_params": _unprefixed(study.best_params, ""),
        "best_score": json_scalar(study.best_value),
        "top": [{"params": _unprefixed(t.params, ""), "mean_score": json_scalar(t.value),
                 "std_score": t.user_attrs.get("std_score"), "resources": len(X)} for t in done[: opts["top_k"]]],
    }
