"""The compiled fast path answers bit for bit as the pipeline does, or not at all."""

from __future__ import annotations

import json
import logging
import re
import time
from functools import partial
from typing import Any

import numpy as np
import pandas as pd
import pytest
from testsupport import candidate_fields, run_queued

from mlops_airflow.data.schema import feature_schema
from mlops_airflow.serving import compiled
from mlops_airflow.serving.compiled import FastPipeline, compile_pipeline
from mlops_airflow.serving.loading import LoadedModel
from mlops_airflow.serving.predict import (
    MicroBatcher,
    json_values,
    predict_columns,
    predict_rows,
    predict_values,
    typed_columns,
)
from mlops_airflow.training import train_model

ZONES = [f"zone-{i:02d}" for i in range(70)]  # more than max_categories (50): the rarest are infrequent
PAYMENTS = ["card", "cash", "app", "voucher"]
TARGETS = ("tipped", "tier", "tip")


def training_data(n: int = 800, seed: int = 7) -> pd.DataFrame:
    """Every kind of column the default preprocessing meets, with NaNs, nulls and rare categories."""
    rng = np.random.default_rng(seed)
    zone_weights = np.linspace(3.0, 0.05, len(ZONES))
    frame = pd.DataFrame({
        "fare": np.where(rng.random(n) < 0.1, np.nan, rng.lognormal(2.0, 0.6, n)),
        "hour": rng.integers(0, 24, n),
        "passengers": pd.Series([None if rng.random() < 0.1 else int(rng.integers(1, 6)) for _ in range(n)],
                                dtype="Int64"),
        "airport": rng.random(n) < 0.3,
        "member": pd.Series([None if rng.random() < 0.1 else bool(rng.random() < 0.4) for _ in range(n)],
                            dtype="boolean"),
        "zone": pd.Series(rng.choice(ZONES, n, p=zone_weights / zone_weights.sum()), dtype="str"),
        "payment": pd.Series(rng.choice(PAYMENTS, n, p=[0.5, 0.3, 0.19, 0.01]), dtype="str"),
    })
    frame.loc[rng.random(n) < 0.05, "zone"] = None
    score = np.log(frame["fare"].fillna(10)) + (frame["payment"] == "card") - 0.05 * frame["hour"]
    frame["tipped"] = np.where(score + rng.normal(0, 0.5, n) > 1.5, "yes", "no")
    frame["tier"] = np.select([score < 1.2, score < 2.0], [0, 1], 2)
    frame["tip"] = 0.15 * frame["fare"].fillna(10) * (frame["payment"] == "card") + rng.normal(0, 0.2, n)
    return frame


def loaded_model(model: Any, frame: pd.DataFrame, target: str, task_type: str) -> LoadedModel:
    schema = feature_schema(frame.drop(columns=[t for t in TARGETS if t != target and t in frame]), target=target)
    manifest = {"model_name": "m", "version": 1, "sha256": "x", "task_type": task_type, "feature_schema": schema}
    return LoadedModel(model, manifest, "now")


def trained(estimator: str, target: str, **params: Any) -> LoadedModel:
    frame = training_data()
    result = train_model(frame, target=target, estimator=estimator, estimator_params=params or None,
                         drop_columns=[t for t in TARGETS if t != target])
    return loaded_model(result.model, frame, target, result.task_type)


def random_values(rng: np.random.Generator, rows: int, *, extreme: bool = False) -> dict[str, list[Any]]:
    """Checked request values: NaN-able and null-able, unseen categories, values far outside training."""
    def number(typical: float) -> float | None:
        draw = rng.random()
        if extreme:
            return float(rng.choice([-1e300, 1e300]))
        if draw < 0.1:
            return None
        if draw < 0.25:
            return float(rng.choice([-1.0, 1.0]) * 10.0 ** rng.integers(3, 16))
        return float(typical)

    def category(known: list[str]) -> str | None:
        draw = rng.random()
        return None if draw < 0.08 else ("unseen" if draw < 0.16 else "" if draw < 0.2 else str(rng.choice(known)))

    return {
        "fare": [number(rng.lognormal(2.0, 0.6)) for _ in range(rows)],
        "hour": [int(rng.integers(-(2**62), 2**62)) if rng.random() < 0.1 else int(rng.integers(0, 24))
                 for _ in range(rows)],
        "passengers": [None if rng.random() < 0.1 else int(rng.integers(-3, 9)) for _ in range(rows)],
        "airport": [bool(rng.random() < 0.5) for _ in range(rows)],
        "member": [None if rng.random() < 0.1 else bool(rng.random() < 0.5) for _ in range(rows)],
        "zone": [category(ZONES) for _ in range(rows)],
        "payment": [category(PAYMENTS) for _ in range(rows)],
    }


def bits(array: Any) -> tuple[Any, ...]:
    """An array to the bit: dtype, shape and bytes (the objects themselves for object arrays)."""
    array = np.asarray(array)
    values = array.tolist() if array.dtype == object else np.ascontiguousarray(array).tobytes()
    return array.dtype, array.shape, values


def assert_answers_as_the_model(loaded: LoadedModel, values: dict[str, list[Any]]) -> str:
    """The fast path's arrays are the model's own, bit for bit, and every entry point answers the same.

    The fast path is given the columns in both forms: the frame's own arrays, and text as objects.
    Returns "error" when the model itself refuses the rows (then the same error is the answer).
    """
    model, fast = loaded.model, loaded.fast
    assert fast is not None
    frame = loaded.request_checker.build_frame(values)
    columns = typed_columns(loaded, values)
    objects = loaded.request_checker.typed_columns(values, text_as_objects=True)
    # answered by the fast path, not handed back
    assert fast.accepts(columns) and fast.accepts(objects, text_as_objects=True)
    rows = model[:-1].transform(frame)
    for given in (columns, objects):  # values, dtype and memory layout
        assert compiled._identical(fast.transform(given), rows, layout=True)
    for probabilities in (True, False):
        wants = probabilities and loaded.is_classifier
        answers = [partial(predict_columns, loaded, columns), partial(predict_values, loaded, values),
                   partial(predict_rows, loaded, frame)]
        try:
            labels = model.predict(frame)
            proba = model.predict_proba(frame) if wants else None
        except ValueError as exc:  # e.g. a forest refuses 1e300 in float32: the answer is its error
            for answer in answers:
                with pytest.raises(type(exc), match=re.escape(str(exc))):
                    answer(probabilities=probabilities)
            return "error"
        for given in (columns, objects):
            got_labels, got_proba = fast.outputs(given, wants)
            assert bits(got_labels) == bits(labels)
            assert (got_proba is None) == (proba is None)
            if proba is not None:
                assert bits(got_proba) == bits(proba)
        expected = {"predictions": json_values(labels)}
        if proba is not None:
            expected |= {"probabilities": json_values(proba), "classes": loaded.classes}
        for answer in answers:
            assert answer(probabilities=probabilities) == expected
    return "answered"


CASES = [
    ("sklearn.linear_model.LogisticRegression", "tipped", {}, "logistic"),
    ("sklearn.linear_model.LogisticRegression", "tier", {}, "logistic"),
    ("sklearn.ensemble.HistGradientBoostingClassifier", "tier", {"max_iter": 30}, "estimator"),
    ("sklearn.ensemble.RandomForestClassifier", "tipped", {"n_estimators": 15}, "estimator"),
    ("sklearn.linear_model.Ridge", "tip", {}, "linear"),
    ("sklearn.linear_model.LinearRegression", "tip", {}, "linear"),
]


@pytest.mark.filterwarnings("ignore:overflow encountered in cast:RuntimeWarning")  # a forest's float32 on 1e300
@pytest.mark.parametrize(("estimator", "target", "params", "kind"), CASES,
                         ids=[f"{e.rsplit('.', 1)[1]}-{t}" for e, t, _, _ in CASES])
def test_trained_pipelines_answer_bit_for_bit_as_scikit_learn(estimator: str, target: str, params: dict[str, Any],
                                                               kind: str) -> None:
    loaded = trained(estimator, target, **params)
    loaded.warm()
    assert loaded.fast is not None and loaded.fast.kind == kind
    (columns,) = [columns for name, _, columns in loaded.model[0].transformers_ if name == "categorical"]
    infrequent = dict(zip(columns, loaded.model[0].named_transformers_["categorical"][-1].infrequent_categories_,
                          strict=True))
    assert infrequent["zone"] is not None  # unknown zones go to the infrequent column
    rng = np.random.default_rng(11)
    # 40 single rows, 10 of them with a fare of +-1e300, 10 requests of 8 rows, 2 batches of 150: 460 rows
    sizes = [(1, False)] * 30 + [(1, True)] * 10 + [(8, False)] * 10 + [(150, False)] * 2
    outcomes = [assert_answers_as_the_model(loaded, random_values(rng, rows, extreme=extreme))
                for rows, extreme in sizes]
    assert outcomes.count("answered") >= 40
    if estimator.endswith("RandomForestClassifier"):
        assert "error" in outcomes  # it refuses 1e300 (float32), and so do we


def test_the_fast_path_needs_no_pipeline_call(monkeypatch: pytest.MonkeyPatch) -> None:
    from sklearn.compose import ColumnTransformer

    loaded = trained("sklearn.linear_model.LogisticRegression", "tipped")
    loaded.warm()

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the pipeline was called")

    monkeypatch.setattr(ColumnTransformer, "transform", refuse)
    values = random_values(np.random.default_rng(1), 3)
    answer = predict_columns(loaded, typed_columns(loaded, values))
    assert len(answer["predictions"]) == 3 and answer["classes"] == ["no", "yes"]


def frame_for(rows: int = 300, seed: int = 3) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = np.where(rng.random(rows) < 0.1, np.nan, rng.normal(size=rows))
    zone = pd.Series(rng.choice([f"z{i}" for i in range(12)], rows), dtype="str")
    return pd.DataFrame({"x": x, "k": rng.integers(0, 9, rows), "zone": zone, "extra": rng.normal(size=rows),
                         "label": np.where(np.nan_to_num(x) + (zone == "z1") > 0.3, 1, 0)})


def fitted(preprocess: Any, estimator: Any | None = None, frame: pd.DataFrame | None = None) -> LoadedModel:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline

    frame = frame if frame is not None else frame_for()
    pipeline = Pipeline([("pre", preprocess), ("clf", estimator or LogisticRegression())])
    pipeline.fit(frame.drop(columns=["label"]), frame["label"])
    schema = feature_schema(frame, target="label")
    return LoadedModel(pipeline, {"model_name": "m", "version": 1, "sha256": "x", "task_type": "binary",
                                  "feature_schema": schema}, "now")


def shapes() -> dict[str, Any]:
    """ColumnTransformers of the tolerated shapes besides the default one."""
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    return {
        "only numeric": ColumnTransformer([("n", make_pipeline(SimpleImputer(), StandardScaler()), ["x", "k"])]),
        "only categorical": ColumnTransformer([("c", OneHotEncoder(handle_unknown="ignore"), ["zone"])],
                                              sparse_threshold=0.0),
        "bare steps": ColumnTransformer([("i", SimpleImputer(strategy="median"), ["x"]),
                                         ("s", StandardScaler(), ["k"]),
                                         ("c", OneHotEncoder(handle_unknown="ignore", sparse_output=False), ["zone"])],
                                        sparse_threshold=0.0),
        "ignore with infrequent": ColumnTransformer([
            ("n", SimpleImputer(), ["x"]),
            ("c", make_pipeline(SimpleImputer(strategy="most_frequent"),
                                OneHotEncoder(handle_unknown="ignore", max_categories=5)), ["zone"]),
        ], sparse_threshold=0.0),
        "scaler without centring, imputer after it": ColumnTransformer([
            ("n", make_pipeline(StandardScaler(with_mean=False), SimpleImputer(strategy="constant", fill_value=-1.0)),
             ["x", "k"]),
        ]),
        "no imputer: the model refuses NaN": ColumnTransformer([
            ("n", StandardScaler(), ["x", "k"]),
            ("c", OneHotEncoder(handle_unknown="ignore", sparse_output=False), ["zone"]),
        ]),
        "remainder dropped": ColumnTransformer([("c", OneHotEncoder(handle_unknown="infrequent_if_exist",
                                                                    min_frequency=30), ["zone"])],
                                               remainder="drop", sparse_threshold=0.0),
    }


def refusing_nan(preprocess: Any) -> LoadedModel:
    """Fitted without missing values, served with a schema that lets them through: the model refuses them."""
    frame = frame_for()
    frame["x"] = frame["x"].fillna(0.0)
    loaded = fitted(preprocess, frame=frame)
    for column in loaded.manifest["feature_schema"]["columns"]:
        column["nullable"] = True  # before anything reads the schema: the null probes fail in both paths
    return loaded


@pytest.mark.parametrize("shape", list(shapes()))
def test_tolerated_shapes_compile_and_answer_bit_for_bit(shape: str) -> None:
    loaded = refusing_nan(shapes()[shape]) if "refuses" in shape else fitted(shapes()[shape])
    assert loaded.fast is not None, shape
    rng = np.random.default_rng(5)
    for rows in (1, 1, 1, 7, 40):
        values = {
            "x": [None if rng.random() < 0.2 else float(rng.normal() * 10.0 ** rng.integers(0, 8)) for _ in range(rows)],
            "k": [int(rng.integers(-50, 50)) for _ in range(rows)],
            "zone": [None if rng.random() < 0.1 else str(rng.choice(["z0", "z1", "z5", "z11", "new"]))
                     for _ in range(rows)],
            "extra": [float(rng.normal()) for _ in range(rows)],
        }
        assert_answers_as_the_model(loaded, values)


def unsupported() -> dict[str, Any]:
    """Fitted models the fast path does not replicate, each with its training frame."""
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import MinMaxScaler, OneHotEncoder, StandardScaler

    def onehot(**params: Any) -> Any:
        return ColumnTransformer([("n", SimpleImputer(), ["x"]), ("c", OneHotEncoder(**params), ["zone"])],
                                 sparse_threshold=0.0)

    def factory() -> LoadedModel:
        frame = frame_for()
        path = "testsupport.trips_pipeline"  # PolynomialFeatures in the numeric branch
        result = train_model(frame, target="label", estimator="auto", pipeline_factory=path, factory_allowlist=[path])
        return loaded_model(result.model, frame, "label", result.task_type)

    def replaced() -> LoadedModel:
        loaded = fitted(onehot(handle_unknown="ignore"))
        final = loaded.model[-1]
        original = final.predict_proba
        final.predict_proba = lambda X: original(X)  # instrumentation: must be honoured
        return loaded

    def narrow() -> LoadedModel:
        frame = frame_for().astype({"x": "float32", "k": "float32", "extra": "float32"})
        return fitted(ColumnTransformer([("n", SimpleImputer(), ["x", "k"])]), frame=frame)

    return {
        "a factory's PolynomialFeatures": factory,
        "handle_unknown error": lambda: fitted(onehot(handle_unknown="error")),
        "drop first": lambda: fitted(onehot(drop="first")),
        "remainder passed through": lambda: fitted(
            ColumnTransformer([("n", SimpleImputer(), ["x"]), ("c", OneHotEncoder(), ["zone"])],
                              remainder="passthrough", sparse_threshold=0.0)),
        "another scaler": lambda: fitted(ColumnTransformer([("n", MinMaxScaler(), ["k"])])),
        "sparse output": lambda: fitted(ColumnTransformer([("c", OneHotEncoder(), ["zone"])], sparse_threshold=1.0)),
        "pandas output": lambda: fitted(ColumnTransformer([("n", StandardScaler(), ["k"])]).set_output(
            transform="pandas")),
        "an indicator": lambda: fitted(ColumnTransformer([("n", SimpleImputer(add_indicator=True), ["x"])])),
        "not a pipeline": lambda: LoadedModel(LogisticRegression().fit(np.eye(2), [0, 1]), {
            "model_name": "m", "version": 1, "sha256": "x", "feature_schema": {"columns": [{"name": "a"}]}}, "now"),
        "predict_proba replaced on the instance": replaced,
        "float32 columns": narrow,
    }


@pytest.mark.parametrize("case", list(unsupported()))
def test_other_shapes_compile_to_none_and_are_served_by_the_pipeline(case: str) -> None:
    loaded = unsupported()[case]()
    assert compile_pipeline(loaded.model, loaded.feature_schema) is None
    assert loaded.fast is None
    if case != "not a pipeline":
        frame = frame_for(10, seed=9).drop(columns=["label"])
        checked = loaded.request_checker.build_frame({name: frame[name].tolist() for name in frame.columns})
        answer = predict_rows(loaded, checked)
        assert answer["predictions"] == json_values(loaded.model.predict(checked))
        assert answer["probabilities"] == json_values(loaded.model.predict_proba(checked))


def test_a_fast_path_one_bit_off_is_refused_at_load_and_the_pipeline_serves(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    original_transform = FastPipeline.transform
    monkeypatch.setattr(FastPipeline, "transform", lambda self, columns: original_transform(self, columns) + 1e-12)
    loaded = trained("sklearn.linear_model.LogisticRegression", "tipped")
    with caplog.at_level(logging.INFO, logger="mlops_airflow.serving.compiled"):
        loaded.warm()
    assert loaded.fast is None
    assert "no fast path" in caplog.text and "transforms probe rows (one row) differently" in caplog.text
    monkeypatch.undo()

    original_outputs = compiled._logistic_outputs

    def one_ulp_off(estimator: Any, rows: Any, probabilities: bool) -> Any:
        labels, proba = original_outputs(estimator, rows, probabilities)
        if proba is not None:
            proba[-1, -1] = np.nextafter(proba[-1, -1], 2.0)
        return labels, proba

    monkeypatch.setattr(compiled, "_logistic_outputs", one_ulp_off)
    caplog.clear()
    loaded = trained("sklearn.linear_model.LogisticRegression", "tipped")
    with caplog.at_level(logging.INFO, logger="mlops_airflow.serving.compiled"):
        loaded.warm()
    assert loaded.fast is None
    assert "predicts probe rows (one row, with probabilities) differently" in caplog.text
    values = random_values(np.random.default_rng(2), 5)
    frame = loaded.request_checker.build_frame(values)
    answer = predict_columns(loaded, typed_columns(loaded, values))
    assert answer["probabilities"] == json_values(loaded.model.predict_proba(frame))


def test_the_ordinary_probes_are_checked_even_when_the_model_refuses_the_null_ones(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import dataclasses

    original = compiled._categorical

    def one_category_wrong(*args: Any) -> Any:
        branch = original(*args)
        lookup = dict(branch.lookups[0])
        last = max(lookup)  # never in the single ordinary row, which holds the first category
        lookup[last] = (lookup[last] + 1) % branch.width
        return dataclasses.replace(branch, lookups=(lookup,))

    monkeypatch.setattr(compiled, "_categorical", one_category_wrong)
    with caplog.at_level(logging.INFO, logger="mlops_airflow.serving.compiled"):
        loaded = refusing_nan(shapes()["no imputer: the model refuses NaN"])
        assert loaded.fast is None
    assert "transforms probe rows (ordinary values) differently" in caplog.text


def test_text_as_objects_is_verified_at_load_like_the_frames_arrays(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder

    from mlops_airflow.serving import requests

    frame = frame_for()
    frame.loc[::10, "zone"] = None  # nullable: a null is filled with the most frequent zone, not ignored
    preprocess = ColumnTransformer([
        ("n", SimpleImputer(), ["x"]),
        ("c", make_pipeline(SimpleImputer(strategy="most_frequent"), OneHotEncoder(handle_unknown="ignore")), ["zone"]),
    ], sparse_threshold=0.0)
    assert fitted(preprocess, frame=frame).fast is not None

    # a null left as None in the object form (the frame's string array holds NaN): one probe row differs
    monkeypatch.setattr(requests, "_string_objects", lambda values, dtype: np.array(values, dtype=object))
    with caplog.at_level(logging.INFO, logger="mlops_airflow.serving.compiled"):
        loaded = fitted(preprocess, frame=frame)
        assert loaded.fast is None
    assert "transforms probe rows (a batch, text as objects) differently" in caplog.text
    values = {"x": [0.5, None], "k": [3, 4], "zone": [None, "z1"], "extra": [0.0, 1.0]}
    checked = loaded.request_checker.build_frame(values)
    assert predict_values(loaded, values) == {"predictions": json_values(loaded.model.predict(checked)),
                                              "probabilities": json_values(loaded.model.predict_proba(checked)),
                                              "classes": [0, 1]}


def test_each_form_is_accepted_only_in_the_dtypes_verified_for_it(monkeypatch: pytest.MonkeyPatch) -> None:
    loaded = trained("sklearn.linear_model.LogisticRegression", "tipped")
    fast = loaded.fast
    assert fast is not None
    values = random_values(np.random.default_rng(4), 6)
    columns = typed_columns(loaded, values)
    objects = loaded.request_checker.typed_columns(values, text_as_objects=True)
    assert objects["zone"].dtype == object and columns["zone"].dtype != object
    assert not fast.accepts(objects) and not fast.accepts(columns, text_as_objects=True)
    # so a frame holding the same text in an object column (verified in no form) is the pipeline's
    frame = loaded.request_checker.build_frame(values).astype({"zone": object, "payment": object})
    monkeypatch.setattr(FastPipeline, "predict", lambda *args: pytest.fail("the fast path answered"))
    assert predict_rows(loaded, frame)["predictions"] == json_values(loaded.model.predict(frame))


@pytest.mark.parametrize("case", ["no fast path", "the fast path declines"])
def test_the_pipeline_gets_the_frame_it_always_got(case: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from mlops_airflow.serving import predict

    if case == "no fast path":
        loaded = unsupported()["a factory's PolynomialFeatures"]()
        values = {"x": [0.5, None], "k": [3, 4], "zone": [None, "z1"], "extra": [0.0, 1.0]}
    else:
        loaded = trained("sklearn.linear_model.LogisticRegression", "tipped")
        values = random_values(np.random.default_rng(3), 4)

        def declining(*args: Any) -> Any:
            raise compiled._Declined("for the test")

        monkeypatch.setattr(FastPipeline, "predict", declining)
    seen: list[pd.DataFrame] = []
    original = predict.pipeline_outputs

    def recording(model: Any, frame: pd.DataFrame, probabilities: bool) -> Any:
        seen.append(frame)
        return original(model, frame, probabilities)

    monkeypatch.setattr(predict, "pipeline_outputs", recording)
    answer = predict_values(loaded, values)
    (frame,) = seen
    expected = loaded.request_checker.build_frame(values)
    pd.testing.assert_frame_equal(frame, expected, check_exact=True)
    assert [type(frame[name].array) for name in frame] == [type(expected[name].array) for name in expected]
    assert answer["predictions"] == json_values(loaded.model.predict(expected))


def test_columns_of_unverified_dtypes_go_to_the_pipeline(monkeypatch: pytest.MonkeyPatch) -> None:
    loaded = trained("sklearn.linear_model.LogisticRegression", "tipped")
    fast = loaded.fast
    assert fast is not None
    values = random_values(np.random.default_rng(4), 6)
    frame = loaded.request_checker.build_frame(values).astype({"hour": "float32"})
    assert fast.columns_of(frame) is not None and not fast.accepts(fast.columns_of(frame) or {})
    assert fast.columns_of(frame.drop(columns=["zone"])) is None
    monkeypatch.setattr(FastPipeline, "predict", lambda *args: pytest.fail("the fast path answered"))
    answer = predict_rows(loaded, frame)
    assert answer["predictions"] == json_values(loaded.model.predict(frame))


@pytest.mark.filterwarnings("ignore:overflow encountered in divide:RuntimeWarning")  # deliberate, in both paths
def test_the_models_own_errors_are_the_answer() -> None:
    loaded = trained("sklearn.linear_model.LogisticRegression", "tipped")
    empty = loaded.request_checker.build_frame({name: [] for name in random_values(np.random.default_rng(0), 0)})
    with pytest.raises(ValueError, match="0 sample"):
        loaded.model.predict(empty)
    with pytest.raises(ValueError, match="0 sample"):
        predict_rows(loaded, empty)
    infinite = loaded.request_checker.build_frame({**random_values(np.random.default_rng(0), 1), "fare": [np.inf]})
    with pytest.raises(ValueError, match="infinity"):
        predict_rows(loaded, infinite)
    # a finite value the scaler turns into infinity: the imputer after it refuses it, and so do we
    scaled_first = fitted(shapes()["scaler without centring, imputer after it"])
    values = {"x": [1.797e308], "k": [3], "zone": ["z1"], "extra": [0.0]}
    assert scaled_first.fast is not None and scaled_first.fast.accepts(typed_columns(scaled_first, values))
    with pytest.raises(ValueError, match="infinity"):
        predict_columns(scaled_first, typed_columns(scaled_first, values))


def test_queued_requests_are_predicted_together_by_the_fast_path(monkeypatch: pytest.MonkeyPatch) -> None:
    loaded = trained("sklearn.linear_model.LogisticRegression", "tier")
    loaded.warm()
    calls: list[int] = []
    original = FastPipeline.predict

    def counting(self: FastPipeline, columns: Any, probabilities: bool) -> Any:
        calls.append(len(columns["fare"]))
        return original(self, columns, probabilities)

    monkeypatch.setattr(FastPipeline, "predict", counting)
    rng = np.random.default_rng(8)
    requests = [random_values(rng, rows) for rows in (1, 3, 1, 2)]
    bodies = [{"inputs": values} for values in requests]
    answers = run_queued(MicroBatcher(), loaded, bodies)
    assert calls == [7]
    merged = {name: sum((values[name] for values in requests), []) for name in requests[0]}
    frame = loaded.request_checker.build_frame(merged)
    labels, proba = loaded.model.predict(frame), loaded.model.predict_proba(frame)
    start = 0
    for values, answer in zip(requests, answers, strict=True):
        end = start + len(values["fare"])
        assert answer == {"predictions": json_values(labels[start:end]),
                          "probabilities": json_values(proba[start:end]), "classes": [0, 1, 2]}
        start = end


def register(registry: Any, name: str, loaded: LoadedModel, task_type: str, target: str) -> None:
    from mlops_airflow.persistence import dump_model
    from mlops_airflow.registry.registry import idempotency_key

    classes = [c.item() if hasattr(c, "item") else c for c in loaded.model.classes_]
    candidate = candidate_fields(feature_schema=loaded.feature_schema, task_type=task_type, target=target,
                                 classes=classes)
    record = registry.put_artifact(name, dump_model(loaded.model), candidate)
    registry.register(name, record, idempotency_key=idempotency_key("test", f"run-{name}", "register"))
    registry.set_alias(name, "champion", 1, expected=None, by="test", reason="test")


def test_the_server_answers_the_same_with_and_without_a_fast_path(registry: Any, eventually: Any) -> None:
    from fastapi.testclient import TestClient

    from mlops_airflow.serving.app import create_app

    compiled_model = trained("sklearn.linear_model.LogisticRegression", "tipped")
    factory_model = unsupported()["a factory's PolynomialFeatures"]()
    register(registry, "compiled", compiled_model, "binary", "tipped")
    register(registry, "factory", factory_model, "binary", "label")
    rows = {
        "compiled": [{"fare": 12.5, "hour": 7, "passengers": None, "airport": True, "member": None, "zone": "zone-03",
                      "payment": "card"},
                     {"fare": 1e9, "hour": 23, "passengers": 2, "airport": False, "member": True, "zone": "elsewhere",
                      "payment": "voucher"}],
        "factory": [{"x": 0.5, "k": 3, "zone": "z1", "extra": -1.0}, {"x": None, "k": 8, "zone": "z77", "extra": 2.5}],
    }
    for name, fast in (("compiled", True), ("factory", False)):
        with TestClient(create_app(registry, name, poll_interval=0.02)) as client:
            eventually(lambda c=client: c.get("/ready").status_code == 200)
            served = client.app.state.slot.current  # type: ignore[attr-defined]
            assert (served.fast is not None) == fast
            answer = client.post("/predict", content=json.dumps({"rows": rows[name]}),
                                 headers={"content-type": "application/json"})
        assert answer.status_code == 200, answer.text
        frame = served.request_checker.build_frame(
            {column: [row[column] for row in rows[name]] for column in rows[name][0]})
        body = answer.json()
        assert body["predictions"] == json_values(served.model.predict(frame))
        assert body["probabilities"] == json_values(served.model.predict_proba(frame))


def test_a_one_row_prediction_is_much_cheaper_on_the_fast_path() -> None:
    loaded = trained("sklearn.linear_model.LogisticRegression", "tipped")
    loaded.warm()
    values = random_values(np.random.default_rng(6), 1)

    def best(columns: Any, model: LoadedModel) -> float:
        times = []
        for _ in range(20):
            started = time.perf_counter()
            predict_columns(model, columns)
            times.append(time.perf_counter() - started)
        return min(times)

    normal = LoadedModel(loaded.model, loaded.manifest, loaded.loaded_at)
    object.__setattr__(normal, "fast", None)  # the cached property, as if nothing compiled
    # a wide margin: the measured ratio is ~50x, and the machine is shared
    assert best(typed_columns(loaded, values), loaded) * 5 < best(typed_columns(normal, values), normal)
