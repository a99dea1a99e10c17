"""The server's prediction shortcut gives exactly what model.predict and model.predict_proba give."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
from testsupport import run_queued

from mlops_airflow.serving.loading import LoadedModel
from mlops_airflow.serving.predict import _predict_is_argmax_of_proba, predict_rows


def estimators() -> list[Any]:
    from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.svm import SVC

    return [
        HistGradientBoostingClassifier(max_iter=20, random_state=0),
        RandomForestClassifier(n_estimators=10, random_state=0),
        LogisticRegression(max_iter=500),
        SVC(probability=True, random_state=0),  # its predict is NOT the arg-max of its probabilities
    ]


@pytest.mark.parametrize("estimator", estimators(), ids=lambda e: type(e).__name__)
@pytest.mark.parametrize("labels", [["no", "yes"], [0, 1, 2]], ids=["binary-text", "multiclass-int"])
def test_same_answers_as_the_model_itself(estimator: Any, labels: list[Any], models: Any) -> None:
    frame = models.frame.drop(columns=["tipped"])
    y = np.array([labels[i % len(labels)] for i in range(len(frame))])
    y[(frame["hour"] > 12).to_numpy()] = labels[-1]
    pipeline = models.fit()
    pipeline.steps[-1] = ("clf", estimator)
    pipeline.fit(frame, y)
    loaded = LoadedModel(pipeline, {"model_name": "m", "version": 1, "sha256": "x", "task_type": "multiclass"}, "now")
    body = predict_rows(loaded, frame.fillna({"passengers": 2}))
    expected_rows = frame.fillna({"passengers": 2})
    assert body["predictions"] == pipeline.predict(expected_rows).tolist()
    assert np.array_equal(np.array(body["probabilities"]), pipeline.predict_proba(expected_rows))
    assert body["classes"] == list(pipeline.classes_)


def test_only_forests_and_histogram_boosting_take_labels_from_probabilities() -> None:
    X, y = np.arange(20.0).reshape(10, 2), np.array([0, 1] * 5)
    taken = {type(e).__name__: _predict_is_argmax_of_proba(e.fit(X, y)) for e in estimators()}
    assert taken == {"HistGradientBoostingClassifier": True, "RandomForestClassifier": True,
                     "LogisticRegression": False, "SVC": False}

    from sklearn.ensemble import RandomForestClassifier

    class Custom(RandomForestClassifier):
        def predict(self, X: Any) -> Any:  # an override must be honoured, not bypassed
            return super().predict(X)

    assert not _predict_is_argmax_of_proba(Custom(n_estimators=2).fit(X, y))


GOOD = {"hour": 7, "passengers": 2, "fare": 12.5, "payment_type": "card"}


def test_queued_requests_are_predicted_in_one_call_each_getting_its_own_rows(models: Any) -> None:
    from mlops_airflow.serving.predict import MicroBatcher

    pipeline = models.fit()
    calls: list[int] = []
    final = pipeline.steps[-1][1]
    original = final.predict_proba
    final.predict_proba = lambda X: calls.append(len(X)) or original(X)
    loaded = LoadedModel(pipeline, {"model_name": "m", "version": 1, "sha256": "x", "task_type": "binary",
                                    "feature_schema": _schema(models)}, "now")
    bodies = [{"row": {**GOOD, "hour": hour}} for hour in range(5)] + [{"rows": [{**GOOD, "hour": 20}, GOOD]}]
    answers = run_queued(MicroBatcher(), loaded, bodies)
    assert calls == [7]  # one call for the seven rows of six requests
    import pandas as pd

    for body, answer in zip(bodies, answers, strict=True):
        rows = pd.DataFrame(body.get("rows") or [body["row"]]).astype({"passengers": "Int64"})
        assert answer["predictions"] == pipeline.predict(rows).tolist()
        assert np.allclose(answer["probabilities"], original(pipeline[:-1].transform(rows)))


def test_labels_only_requests_get_no_probabilities_and_alone_cost_no_predict_proba(models: Any) -> None:
    from sklearn.linear_model import LogisticRegression

    from mlops_airflow.serving.predict import MicroBatcher

    pipeline = models.fit()
    final = pipeline.steps[-1][1]
    assert isinstance(final, LogisticRegression)  # its predict is not taken from its probabilities
    calls: list[str] = []
    original_proba, original_predict = final.predict_proba, final.predict
    final.predict_proba = lambda X: calls.append("proba") or original_proba(X)
    final.predict = lambda X: calls.append("predict") or original_predict(X)
    loaded = LoadedModel(pipeline, {"model_name": "m", "version": 1, "sha256": "x", "task_type": "binary",
                                    "feature_schema": _schema(models)}, "now")
    bodies = [{"row": {**GOOD, "hour": hour}} for hour in range(4)]
    labels_only = run_queued(MicroBatcher(), loaded, bodies, probabilities=[False] * 4)
    assert calls == ["predict"]  # one call for the batch, exactly model.predict
    mixed = run_queued(MicroBatcher(), loaded, bodies, probabilities=[False, True, False, True])
    for index, answer in enumerate(mixed):
        assert answer["predictions"] == labels_only[index]["predictions"]
        assert ("probabilities" in answer) == (index % 2 == 1)
        assert ("classes" in answer) == (index % 2 == 1)
    assert all(set(answer) == {"predictions"} for answer in labels_only)


def _schema(models: Any) -> dict[str, Any]:
    from mlops_airflow.data.schema import feature_schema

    return feature_schema(models.frame, target="tipped")


def test_a_request_the_model_rejects_fails_alone(models: Any) -> None:
    from sklearn.preprocessing import OneHotEncoder

    from mlops_airflow.serving.predict import MicroBatcher

    pipeline = models.fit()
    pipeline.set_params(pre__cat=OneHotEncoder(handle_unknown="error"))
    pipeline.fit(models.frame.drop(columns=["tipped"]), models.frame["tipped"])
    schema = _schema(models)
    schema["columns"][3]["observed"]["distinct"] = 999  # no "unseen category" warning path: let it through
    loaded = LoadedModel(pipeline, {"model_name": "m", "version": 1, "sha256": "x", "task_type": "binary",
                                    "feature_schema": schema}, "now")
    bodies = [{"row": GOOD}, {"row": {**GOOD, "payment_type": "voucher"}}, {"row": {**GOOD, "hour": 3}}]
    answers = run_queued(MicroBatcher(), loaded, bodies)
    assert isinstance(answers[1], ValueError) and "unknown categories" in str(answers[1])
    assert isinstance(answers[0], dict) and isinstance(answers[2], dict)
    assert len(answers[0]["predictions"]) == 1 and len(answers[2]["predictions"]) == 1


def test_versions_are_never_mixed_in_a_batch(models: Any) -> None:
    from mlops_airflow.serving.predict import MicroBatcher

    first, second = models.fit(C=1.0), models.fit(C=0.01)
    calls: list[str] = []
    loaded = []
    for name, pipeline in (("v1", first), ("v2", second)):
        final = pipeline.steps[-1][1]
        original = final.predict_proba
        final.predict_proba = lambda X, o=original, n=name: calls.append(n) or o(X)
        loaded.append(LoadedModel(pipeline, {"model_name": "m", "version": 1, "sha256": "x", "task_type": "binary",
                                             "feature_schema": _schema(models)}, "now"))
    import asyncio

    from mlops_airflow.serving.requests import parse_rows

    batcher = MicroBatcher()

    async def main() -> list[Any]:
        tasks = [asyncio.ensure_future(batcher.predict(model, parse_rows({"row": GOOD}, model.request_checker,
                                                                         frame=False)))
                 for model in (loaded[0], loaded[0], loaded[1], loaded[1], loaded[0])]
        await asyncio.sleep(0.05)
        batcher.start()
        try:
            return list(await asyncio.gather(*tasks))
        finally:
            batcher.stop()

    answers = asyncio.run(main())
    assert calls == ["v1", "v2", "v1"]
    assert all(isinstance(answer, dict) for answer in answers)


def test_a_big_request_is_predicted_whole_off_the_event_loop(models: Any, eventually: Any) -> None:
    import pandas as pd
    from fastapi.testclient import TestClient

    from mlops_airflow.serving.app import _INLINE_BODY_BYTES, create_app

    models.register()
    models.promote(1)
    rows = [{**GOOD, "hour": i % 24, "fare": 5.0 + i % 18} for i in range(1500)]
    body = json.dumps({"rows": rows}).encode()
    assert len(body) > _INLINE_BODY_BYTES
    with TestClient(create_app(models.registry, "taxi", poll_interval=0.02)) as client:
        eventually(lambda: client.get("/ready").status_code == 200)
        answer = client.post("/predict", content=body, headers={"content-type": "application/json"})
        model = client.app.state.slot.current.model  # type: ignore[attr-defined]
    assert answer.status_code == 200
    frame = pd.DataFrame(rows).astype({"passengers": "Int64"})
    assert answer.json()["predictions"] == model.predict(frame).tolist()
    assert np.allclose(answer.json()["probabilities"], model.predict_proba(frame))


@pytest.mark.timeout(60)
def test_a_failure_outside_predicting_reaches_every_request_of_its_batch_and_the_thread_lives_on(
    models: Any,
) -> None:
    import asyncio

    from mlops_airflow.exceptions import MlopsError
    from mlops_airflow.serving.predict import MicroBatcher
    from mlops_airflow.serving.requests import parse_rows

    loaded = LoadedModel(models.fit(), {"model_name": "m", "version": 1, "sha256": "x", "task_type": "binary",
                                        "feature_schema": _schema(models)}, "now")
    parsed = parse_rows({"row": GOOD}, loaded.request_checker, frame=False)
    broken = {k: v for k, v in (parsed.values or {}).items() if k != "hour"}  # merging the batch fails
    batcher = MicroBatcher()

    async def main() -> tuple[list[Any], Any]:
        bad = parse_rows({"row": GOOD}, loaded.request_checker, frame=False)
        bad.values = broken
        first = [asyncio.ensure_future(batcher.predict(loaded, p)) for p in (parsed, bad)]
        await asyncio.sleep(0.05)  # both queued: one batch
        batcher.start()
        try:
            answers = await asyncio.wait_for(asyncio.gather(*first), 10)
            later = await asyncio.wait_for(batcher.predict(loaded, parsed), 10)
            return answers, later
        finally:
            batcher.stop()

    answers, later = asyncio.run(main())
    assert all(isinstance(a, MlopsError) and "the prediction batch failed" in str(a) for a in answers)
    assert isinstance(later, dict) and len(later["predictions"]) == 1


def test_non_finite_values_are_answered_as_null_in_any_shape() -> None:
    from mlops_airflow.serving.predict import json_values

    assert json_values(np.array([1.5, np.nan, np.inf, -np.inf])) == [1.5, None, None, None]
    assert json_values(np.array([[0.25, np.nan], [0.5, 0.5]], dtype=np.float32)) == [[0.25, None], [0.5, 0.5]]
    assert json_values(np.array(["no", "yes"], dtype=object)) == ["no", "yes"]
    assert json_values(np.array([1, 2])) == [1, 2] and type(json_values(np.array([1]))[0]) is int
    assert json.dumps(json_values(np.array([[np.nan]])), allow_nan=False) == "[[null]]"


def test_requests_ready_together_share_one_call_on_the_loop(models: Any, monkeypatch: Any) -> None:
    """The loop batcher: concurrent requests for a fast-path model, one prediction call, each its own rows."""
    import asyncio

    import mlops_airflow.serving.predict as predict
    from mlops_airflow.serving.loading import load_manifest_model
    from mlops_airflow.serving.requests import parse_rows

    manifest = models.register()
    loaded = load_manifest_model(models.registry, manifest)
    loaded.warm()
    assert loaded.fast is not None
    calls: list[int] = []
    real = predict.predict_values

    def counted(loaded_: Any, values: dict[str, list[Any]], **kwargs: Any) -> Any:
        calls.append(len(next(iter(values.values()))))
        return real(loaded_, values, **kwargs)

    monkeypatch.setattr(predict, "predict_values", counted)
    rows = [{"hour": h, "passengers": 2, "fare": 10.0 + h, "payment_type": "card"} for h in range(5)]

    async def main() -> list[Any]:
        batcher = predict.LoopBatcher()
        parsed = [parse_rows({"row": row}, loaded.request_checker, frame=False) for row in rows]
        return await asyncio.gather(*(batcher.predict(loaded, p) for p in parsed))

    answers = asyncio.run(main())
    assert calls == [5]  # one call for the five requests
    expected = loaded.model.predict(loaded.request_checker.build_frame({k: [r[k] for r in rows] for k in rows[0]}))
    assert [a["predictions"][0] for a in answers] == expected.tolist()
