"""The tuning step: search spaces from JSON, successive halving on the training rows only, a JSON summary."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pandas as pd
import pytest

from mlops_airflow.exceptions import ConfigError
from mlops_airflow.training import train_model
from mlops_airflow.training.tuning import OPTUNA_EXTRA, check_options, parse_search_space


def frame(n: int = 400, seed: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    color = rng.choice(["red", "green", "blue"], n)
    return pd.DataFrame({"x": x, "noise": rng.normal(size=n), "color": color,
                         "label": np.where(x + (color == "red") + rng.normal(0, 0.5, n) > 0.3, 1, 0),
                         "amount": 2 * x + rng.normal(0, 0.3, n)})


def test_distributions_come_from_json_with_inclusive_integer_bounds() -> None:
    space = parse_search_space({"C": {"type": "loguniform", "low": 0.01, "high": 10}, "depth": {"type": "randint", "low": 2, "high": 4},
                                "alpha": {"type": "uniform", "low": 0.5, "high": 1.5}, "penalty": ["l2", None]})
    assert space["penalty"] == ["l2", None]
    assert space["C"].support() == pytest.approx((0.01, 10))
    assert space["depth"].support() == (2, 4)  # scipy's randint excludes high: ours includes it
    assert space["alpha"].support() == pytest.approx((0.5, 1.5))


@pytest.mark.parametrize(
    ("space", "options", "message"),
    [
        ({"C": []}, None, "search_space.C: the list of values is empty"),
        ({"C": 3}, None, "search_space.C: expected a list of values or a distribution"),
        ({"C": [{"nested": 1}]}, None, "search_space.C: values must be strings, numbers"),
        ({"C": {"type": "normal", "low": 0, "high": 1}}, None, "search_space.C.type='normal': expected one of"),
        ({"C": {"type": "loguniform", "low": 0, "high": 1}}, None, "search_space.C.low=0: loguniform needs low > 0"),
        ({"C": {"type": "uniform", "low": 2, "high": 1}}, None, "search_space.C: low (2) must be below high (1)"),
        ({"C": {"type": "uniform", "low": "a", "high": 1}}, None, "search_space.C.low='a': expected a number"),
        ({"C": {"type": "randint", "low": 1.5, "high": 3}}, None, "search_space.C: randint needs integer low and high"),
        ({"C": {"type": "uniform", "low": 0, "high": 1, "step": 2}}, None, "search_space.C.step: unknown key"),
        ({"C": {"type": "uniform", "low": 0, "high": 1}}, {"method": "halving_grid"}, "search_space.C: a grid search needs a list"),
        ({"Cx": [1.0]}, None, "search_space.Cx: not a parameter of the model (known: C, "),
        ({"C": [1.0]}, {"method": "bayes"}, "tuning.method='bayes' is not one of"),
        ({"C": [1.0]}, {"cv": 1}, "tuning.cv=1: expected an integer >= 2"),
        ({"C": [1.0]}, {"n_candidates": 0}, "tuning.n_candidates=0"),
        ({"C": [1.0]}, {"factor": 1}, "tuning.factor=1: expected a number > 1"),
        ({"C": [1.0]}, {"scoring": "goodness"}, "tuning.scoring='goodness': not a scikit-learn scorer name"),
        ({"C": [1.0]}, {"folds": 3}, "tuning.folds: unknown option"),
    ],
)
def test_a_bad_search_space_or_option_is_refused_naming_the_field(space: dict, options: dict | None, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        train_model(frame(), target="label", estimator="sklearn.linear_model.LogisticRegression",
                    search_space=space, tuning=options)
    assert message in str(err.value)


def test_an_empty_space_is_no_space() -> None:
    # train_model reads an empty search_space as "no tuning"; the parser itself refuses one.
    with pytest.raises(ConfigError, match="search_space must be a non-empty mapping"):
        parse_search_space({})


def test_a_parameter_both_fixed_and_searched_is_refused() -> None:
    with pytest.raises(ConfigError, match="search_space.C: also fixed in estimator_params"):
        train_model(frame(), target="label", estimator="sklearn.linear_model.LogisticRegression",
                    estimator_params={"C": 1.0}, search_space={"C": [0.1, 1.0]})


def test_tuning_options_without_a_space_are_refused() -> None:
    with pytest.raises(ConfigError, match="search_space is empty"):
        train_model(frame(), target="label", estimator="auto", tuning={"cv": 5})


def test_optuna_without_the_extra_says_which_extra_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    # as on a deployment without the extra (the test environment has it installed)
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "optuna" else real(name, *a))
    with pytest.raises(ConfigError) as err:
        check_options({"method": "optuna"})
    assert OPTUNA_EXTRA in str(err.value) and "tuning.method=optuna" in str(err.value)


def test_halving_random_search_tunes_on_the_given_rows_and_summarises_as_json() -> None:
    df = frame()
    result = train_model(df, target="label", estimator="sklearn.linear_model.LogisticRegression",
                         estimator_params={"max_iter": 300},
                         search_space={"C": {"type": "loguniform", "low": 0.001, "high": 100}},
                         tuning={"n_candidates": 9, "top_k": 3})
    summary = result.tuning
    assert summary is not None
    json.dumps(summary)  # stored in the candidate record as it is
    assert summary["method"] == "halving_random" and summary["scoring"] == "roc_auc"
    assert summary["n_candidates"] == 9 and summary["train_rows"] == len(df)
    assert summary["resources"][-1] <= len(df) and summary["n_iterations"] == len(summary["resources"])
    best = summary["best_params"]["C"]
    assert 0.001 <= best <= 100 and result.estimator_params == {"max_iter": 300, "C": best}
    assert result.model.named_steps["estimator"].C == best  # the returned model is the refitted winner
    top = summary["top"]
    assert len(top) == 3 and top[0]["params"] == {"C": best}
    assert summary["best_score"] == pytest.approx(top[0]["mean_score"])
    # Ranked by the round a candidate reached (more rows), then by its score in that round.
    assert [row["resources"] for row in top] == sorted((row["resources"] for row in top), reverse=True)
    assert len({json.dumps(row["params"]) for row in top}) == 3


def test_the_same_inputs_give_the_same_search() -> None:
    args = {"target": "label", "estimator": "sklearn.ensemble.RandomForestClassifier",
            "search_space": {"max_depth": {"type": "randint", "low": 2, "high": 8}, "n_estimators": [10, 20]},
            "tuning": {"n_candidates": 4}}
    first, second = train_model(frame(), **args), train_model(frame(), **args)  # type: ignore[arg-type]
    assert first.tuning == second.tuning


def test_grid_search_for_a_regressor_uses_a_regression_score() -> None:
    result = train_model(frame(), target="amount", estimator="sklearn.linear_model.Ridge",
                         search_space={"alpha": [0.01, 1.0, 100.0]}, tuning={"method": "halving_grid", "cv": 4})
    summary = result.tuning
    assert summary is not None and summary["scoring"] == "neg_root_mean_squared_error"
    assert summary["n_candidates"] == 3 and summary["cv"] == 4
    assert summary["best_params"]["alpha"] in (0.01, 1.0, 100.0)


def test_optuna_search_finds_params_and_summarises_on_the_training_rows() -> None:
    pytest.importorskip("optuna", reason="the optuna extra is not installed")
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from mlops_airflow.training.tuning import tune

    rng = np.random.default_rng(0)
    X = pd.DataFrame({"a": rng.normal(size=300), "b": rng.normal(size=300)})
    y = pd.Series((X["a"] + 0.3 * rng.normal(size=300) > 0).astype(int))
    pipeline = make_pipeline(StandardScaler(), LogisticRegression())
    best, summary = tune(pipeline, X, y, task="binary", prefix="logisticregression__",
                         search_space={"C": {"type": "loguniform", "low": 0.001, "high": 100}},
                         options={"method": "optuna", "n_candidates": 6, "cv": 3})
    assert summary["method"] == "optuna" and summary["n_candidates"] == 6 and summary["train_rows"] == 300
    assert 0.001 <= summary["best_params"]["C"] <= 100
    assert best.get_params()["logisticregression__C"] == summary["best_params"]["C"]
    assert summary["top"][0]["mean_score"] == summary["best_score"] > 0.8
    json.dumps(summary)
