"""Pipeline factories: allowlisted before import, checked after the call, configured by their step names."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlops_airflow.exceptions import ConfigError, EstimatorNotAllowed
from mlops_airflow.training import train_model

FACTORY = "testsupport.trips_pipeline"


def frame(n: int = 300) -> pd.DataFrame:
    rng = np.random.default_rng(3)
    x = rng.normal(size=n)
    zone = rng.choice(["airport", "downtown"], n)
    return pd.DataFrame({"x": x, "y": rng.normal(size=n), "zone": zone,
                         "label": np.where(x + (zone == "airport") > 0.4, 1, 0)})


def test_a_factory_pipeline_trains_with_its_own_steps_and_params() -> None:
    result = train_model(frame(), target="label", estimator="auto", pipeline_factory=FACTORY,
                         factory_allowlist=[FACTORY], estimator_params={"clf__C": 0.5})
    assert result.pipeline_factory == FACTORY
    assert result.estimator == "sklearn.linear_model.LogisticRegression"  # the final step, for the records
    assert result.task_type == "binary" and result.classes == [0, 1]
    assert list(result.model.named_steps) == ["features", "clf"] and result.model.named_steps["clf"].C == 0.5
    assert result.estimator_params == {"clf__C": 0.5}
    assert result.model.predict(frame().drop(columns="label")).shape == (300,)


def test_a_factory_pipeline_is_tuned_by_its_step_names() -> None:
    result = train_model(frame(), target="label", estimator="auto", pipeline_factory=FACTORY, factory_allowlist=[FACTORY],
                         search_space={"clf__C": [0.1, 1.0]}, tuning={"method": "halving_grid"})
    assert result.tuning is not None and set(result.tuning["best_params"]) == {"clf__C"}
    with pytest.raises(ConfigError, match=r"search_space.C: not a parameter of the model \(known: clf, "):
        train_model(frame(), target="label", estimator="auto", pipeline_factory=FACTORY, factory_allowlist=[FACTORY],
                    search_space={"C": [0.1, 1.0]})


def test_a_factory_not_on_the_allowlist_is_refused_before_its_module_is_imported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    marker = tmp_path / "imported"
    (tmp_path / "sneaky_factories.py").write_text(f"open({str(marker)!r}, 'w').close()\ndef make(**kw): ...\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(EstimatorNotAllowed) as err:
        train_model(frame(), target="label", estimator="auto", pipeline_factory="sneaky_factories.make",
                    factory_allowlist=[FACTORY])
    assert "pipeline_factory 'sneaky_factories.make' is not on the allowlist" in str(err.value)
    assert "pipeline_factory_allowlist" in str(err.value)
    assert not marker.exists() and "sneaky_factories" not in sys.modules


def bad_return(**_: object) -> object:
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression()


def ends_in_a_transformer(**_: object) -> object:
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    return make_pipeline(OneHotEncoder(), StandardScaler())


def raises(**_: object) -> object:
    raise KeyError("hour")


@pytest.mark.parametrize(
    ("path", "params", "estimator", "message"),
    [
        (f"{__name__}.bad_return", None, "auto", "returned LogisticRegression, not a scikit-learn Pipeline"),
        (f"{__name__}.ends_in_a_transformer", None, "auto", "the last step (StandardScaler) is neither a classifier"),
        (f"{__name__}.raises", None, "auto", "failed: KeyError: 'hour'"),
        (f"{__name__}.missing", None, "auto", "is allowlisted but cannot be imported"),
        (FACTORY, {"clf__nope": 1}, "auto", "estimator_params.clf__nope: not a parameter of Pipeline"),
        (FACTORY, None, "sklearn.svm.SVC", "give either estimator ('sklearn.svm.SVC') or pipeline_factory"),
    ],
)
def test_a_broken_factory_is_a_clear_error(path: str, params: dict | None, estimator: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        train_model(frame(), target="label", estimator=estimator, pipeline_factory=path, factory_allowlist=[path],
                    estimator_params=params)
    assert message in str(err.value)


def test_the_allowlist_comes_from_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    from mlops_airflow.settings import pipeline_factory_allowlist

    monkeypatch.setenv("MLOPS_AIRFLOW_PIPELINE_FACTORY_ALLOWLIST", f" {FACTORY}, pkg.other ")
    assert pipeline_factory_allowlist() == [FACTORY, "pkg.other"]
    monkeypatch.delenv("MLOPS_AIRFLOW_PIPELINE_FACTORY_ALLOWLIST")
    assert pipeline_factory_allowlist() == []
