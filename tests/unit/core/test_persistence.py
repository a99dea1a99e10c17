from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd
import pytest

from mlops_airflow.exceptions import UnsafeModelError
from mlops_airflow.persistence import check_version_skew, dump_model, load_model, runtime_versions
from mlops_airflow.training import train_model


@pytest.mark.parametrize(
    "estimator",
    [
        "sklearn.ensemble.HistGradientBoostingClassifier",
        "sklearn.ensemble.RandomForestClassifier",
        "sklearn.tree.DecisionTreeClassifier",
        "sklearn.linear_model.LogisticRegression",
    ],
)
def test_sklearn_models_round_trip_with_the_explicit_allowlist(estimator: str) -> None:
    rng = np.random.default_rng(0)
    df = pd.DataFrame({"x": rng.normal(size=200), "c": rng.choice(["a", "b"], 200)})
    df["y"] = (df["x"] > 0).astype(int)
    model = train_model(df, target="y", estimator=estimator).model
    data = dump_model(model)
    loaded = load_model(data, expected_sha256=hashlib.sha256(data).hexdigest(), recorded_versions=runtime_versions())
    assert (loaded.predict(df) == model.predict(df)).all()


def test_checksum_mismatch_refuses_before_reading() -> None:
    data = dump_model({"a": 1})
    with pytest.raises(UnsafeModelError, match="checksum mismatch"):
        load_model(data + b"tampered", expected_sha256=hashlib.sha256(data).hexdigest())


def test_types_outside_the_allowlist_are_refused() -> None:
    import collections

    data = dump_model(collections.Counter(a=1))  # skops does not trust Counter, and neither do we
    with pytest.raises(UnsafeModelError, match="collections.Counter"):
        load_model(data, expected_sha256=hashlib.sha256(data).hexdigest())


def test_garbage_is_not_a_model() -> None:
    data = b"not a zip at all"
    with pytest.raises(UnsafeModelError, match="not a readable skops archive"):
        load_model(data, expected_sha256=hashlib.sha256(data).hexdigest())


def test_version_skew_refuses_or_warns_by_policy() -> None:
    recorded = {**runtime_versions(), "scikit-learn": "0.1.0"}
    with pytest.raises(UnsafeModelError, match="scikit-learn 0.1.0"):
        check_version_skew(recorded, "refuse")
    with pytest.warns(UserWarning, match="version skew"):
        assert check_version_skew(recorded, "warn")
    assert check_version_skew(runtime_versions(), "refuse") == []


def double(values: np.ndarray) -> np.ndarray:
    """A team's own feature function: not a scikit-learn type, so not trusted unless listed."""
    return values * 2


def test_own_types_load_only_when_listed_in_the_trusted_types_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer

    x = np.arange(40, dtype=float).reshape(-1, 1)
    y = (x[:, 0] > 20).astype(int)
    model = make_pipeline(FunctionTransformer(double), LogisticRegression()).fit(x, y)
    data = dump_model(model)
    sha = hashlib.sha256(data).hexdigest()
    monkeypatch.delenv("MLOPS_AIRFLOW_TRUSTED_TYPES", raising=False)
    with pytest.raises(UnsafeModelError, match=rf"{__name__}\.double .*MLOPS_AIRFLOW_TRUSTED_TYPES"):
        load_model(data, expected_sha256=sha)
    monkeypatch.setenv("MLOPS_AIRFLOW_TRUSTED_TYPES", f"some.other_func, {__name__}.double")
    assert (load_model(data, expected_sha256=sha).predict(x) == model.predict(x)).all()


def test_skops_imports_quietly_in_an_airflow_process_and_names_types_as_skops_would() -> None:
    """In a task (Airflow loaded) skops' import-time type naming reads namespaces: no warnings, same names.

    The original whichmodule getattr()s every loaded module, which trips Airflow's deprecation
    shims (~1,160 warning lines per task); the replacement must find the same module for every
    ufunc skops names, and skops must still refuse what it refused.
    """
    import subprocess
    import sys

    script = r"""
import json, sys, warnings
import airflow.sdk  # the modules a task has loaded
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    from mlops_airflow.persistence import _whichmodule, skops_io
    skops_io()
import numpy as np, scipy.special
import skops.io._utils as utils
ufuncs = {name: obj for module in (np, scipy.special) for name in dir(module)
          if isinstance(obj := getattr(module, name), np.ufunc)}
def original(obj, name):  # skops' own search, as it is in skops 0.16
    if getattr(obj, "__module__", None) is not None:
        return obj.__module__
    for module_name, module in sys.modules.copy().items():
        if module_name in ("__main__", "__mp_main__") or module is None:
            continue
        try:
            if getattr(module, name, None) is obj:
                return module_name
        except Exception:
            continue
    return "__main__"
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    differ = [name for name, obj in ufuncs.items()
              if _whichmodule(obj, obj.__name__) != original(obj, obj.__name__)]
print(json.dumps({"patched": utils.whichmodule is _whichmodule, "warnings": len(caught),
                  "ufuncs": len(ufuncs), "differ": differ}))
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    import json

    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found["patched"] and found["warnings"] == 0
    assert found["ufuncs"] > 200 and found["differ"] == []


def test_equal_models_give_equal_bytes_that_skops_reads_back() -> None:
    from mlops_airflow.persistence import canonical_skops, skops_io

    rng = np.random.default_rng(1)
    df = pd.DataFrame({"x": rng.normal(size=100), "c": rng.choice(["a", "b", "c"], 100)})
    df["y"] = (df["x"] > 0).astype(int)
    first = train_model(df, target="y", estimator="sklearn.linear_model.LogisticRegression").model
    second = train_model(df, target="y", estimator="sklearn.linear_model.LogisticRegression").model
    data = dump_model(first)
    assert dump_model(second) == data  # a retried training stores the same candidate
    assert canonical_skops(skops_io().dumps(first)) == data  # the same archive skops' own dumps gives, made canonical
    assert (skops_io().loads(data, trusted=skops_io().get_untrusted_types(data=data)).predict(df) == first.predict(df)).all()
