from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mlops_airflow.exceptions import ConfigError, DataError, EstimatorNotAllowed
from mlops_airflow.training import infer_task, resolve_estimator, train_model
from mlops_airflow.training.train import choose_estimator


def mixed_frame(n: int = 300, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    color = rng.choice(["red", "green", "blue"], n)
    return pd.DataFrame(
        {
            "x": x,
            "count": rng.integers(0, 10, n).astype(float),
            "color": color,
            "note": rng.choice(["free text a", "free text b", None], n),
            "label": np.where(x + (color == "red") > 0.3, "yes", "no"),
            "kind": np.select([x < -0.5, x < 0.5], ["a", "b"], "c"),
            "amount": 3 * x + rng.normal(0, 0.1, n),
        }
    )


@pytest.mark.parametrize(
    ("target", "estimator", "task"),
    [
        ("label", "sklearn.linear_model.LogisticRegression", "binary"),
        ("kind", "sklearn.ensemble.RandomForestClassifier", "multiclass"),
        ("amount", "sklearn.linear_model.Ridge", "regression"),
        ("label", "auto", "binary"),
        ("amount", "auto", "regression"),
    ],
)
def test_each_task_trains_on_text_and_categorical_columns(target: str, estimator: str, task: str) -> None:
    df = mixed_frame()
    others = [c for c in ("label", "kind", "amount") if c != target]
    result = train_model(df.drop(columns=others), target=target, estimator=estimator)
    assert result.task_type == task
    assert set(result.feature_columns) == {"x", "count", "color", "note"}
    unseen = df.drop(columns=[target, *others]).head(3).assign(color="purple")  # unknown category
    assert len(result.model.predict(unseen)) == 3


def test_estimator_outside_the_allowlist_is_refused_before_import() -> None:
    with pytest.raises(EstimatorNotAllowed, match="not on the allowlist"):
        resolve_estimator("os.system")
    with pytest.raises(EstimatorNotAllowed, match="did you mean sklearn.linear_model.LogisticRegression"):
        resolve_estimator("mylib.LogisticRegression")
    with pytest.raises(EstimatorNotAllowed, match="not on the allowlist"):
        resolve_estimator("sklearn.preprocessing.StandardScaler")  # a transformer, not a model


def test_allowlist_extension_must_still_be_a_model() -> None:
    with pytest.raises(EstimatorNotAllowed, match="neither a classifier nor a regressor"):
        resolve_estimator("sklearn.preprocessing.StandardScaler", extra=["sklearn.preprocessing.StandardScaler"])


def test_unknown_and_invalid_params_are_named() -> None:
    df = mixed_frame()[["x", "label"]]
    with pytest.raises(EstimatorNotAllowed, match=r"estimator_params.max_depthh: not a parameter"):
        train_model(df, target="label", estimator="sklearn.tree.DecisionTreeClassifier",
                    estimator_params={"max_depthh": 3})
    with pytest.raises(ConfigError, match="DecisionTreeClassifier"):
        train_model(df, target="label", estimator="sklearn.tree.DecisionTreeClassifier",
                    estimator_params={"max_depth": -4})


def test_target_problems_are_data_errors() -> None:
    from sklearn.linear_model import LinearRegression, LogisticRegression

    with pytest.raises(DataError, match="single class"):
        infer_task(pd.Series([1, 1, 1], name="t"), LogisticRegression())
    with pytest.raises(DataError, match="is a regressor"):
        infer_task(pd.Series(["a", "b"], name="t"), LinearRegression())
    with pytest.raises(DataError, match="target column 'nope'"):
        train_model(mixed_frame(), target="nope", estimator="auto")


def test_auto_reads_small_integer_targets_as_classes() -> None:
    assert choose_estimator("auto", pd.Series([0, 1, 2, 1])).endswith("Classifier")
    assert choose_estimator("", pd.Series(np.linspace(0, 1, 50))).endswith("Regressor")
    assert choose_estimator("sklearn.linear_model.Ridge", pd.Series([0, 1])) == "sklearn.linear_model.Ridge"


def test_meta_estimators_that_need_arguments_are_refused_cleanly() -> None:
    with pytest.raises(EstimatorNotAllowed, match="needs constructor arguments"):
        resolve_estimator("sklearn.ensemble.StackingClassifier")
