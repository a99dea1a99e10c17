"""A generated corpus of hostile request bodies: each gets its status, a message naming the field or
limit, and an answer within a time bound, from a real app with the default limits.

The bound is ``2 s + 25 x`` what ``json.loads`` takes on the same body, measured just before: it
follows the machine's load, and a body's cost must stay linear in its size. The quadratic checks
of old took 30 s for 40,000 names; the corpus sends up to a million.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pytest
from fastapi.testclient import TestClient

from mlops_airflow.serving.app import create_app
from mlops_airflow.serving.config import DEFAULT_MAX_BODY_BYTES

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

GOOD = {"hour": 7, "passengers": 2, "fare": 12.5, "payment_type": "card"}
#: Just under the default body limit, so that every body is read and parsed.
FULL = DEFAULT_MAX_BODY_BYTES - 4096
PREDICT, INFER = "/predict", "/v2/models/taxi/infer"
TOO_MANY = "more than the limit of 2048 per request (the model takes 4)"


@dataclass
class Hostile:
    """One body of the corpus and what the server must answer."""

    build: Callable[[], bytes]
    status: int
    #: Fragments the answer's message must hold (the field or limit it names).
    says: tuple[str, ...]
    path: str = PREDICT
    headers: dict[str, str] = field(default_factory=dict)


def fill(head: bytes, item: Callable[[int], bytes] | bytes, tail: bytes, size: int = FULL) -> bytes:
    """``head item(0),item(1),... tail`` with as many items as fit in ``size`` bytes (``item``: one repeated)."""
    if isinstance(item, bytes):
        return head + b",".join([item] * ((size - len(head) - len(tail)) // (len(item) + 1))) + tail
    parts, used, index = [], len(head) + len(tail), 0
    while True:
        piece = item(index)
        if used + len(piece) + 1 > size:
            break
        parts.append(piece)
        used += len(piece) + 1
        index += 1
    return head + b",".join(parts) + tail


def names(count: int, prefix: str = "c") -> list[str]:
    return [f"{prefix}{i}" for i in range(count)]


def tensor(name: str, shape: list[int], datatype: str = "INT64", data: Any = (1,), **extra: Any) -> dict[str, Any]:
    return {"name": name, "shape": shape, "datatype": datatype, "data": list(data), **extra}


def dumps(body: Any) -> bytes:
    return json.dumps(body).encode()


def nested(depth: int, inner: bytes = b"1") -> bytes:
    return b"[" * depth + inner + b"]" * depth


CORPUS: dict[str, Hostile] = {
    # -- many column names, in every shape -------------------------------------------------
    "split-10k-names": Hostile(lambda: dumps({"columns": names(10_000), "data": [[1] * 10_000]}), 422,
                               ('"columns" names 10000', TOO_MANY)),
    "split-1m-names": Hostile(lambda: fill(b'{"data":[[1]],"columns":[', lambda i: b'"c%d"' % i, b"]}"), 422,
                              ('too many columns: "columns" names', TOO_MANY)),
    "split-duplicate-names": Hostile(lambda: fill(b'{"data":[[1]],"columns":[', b'"hour"', b"]}"), 422,
                                     ('"columns" names', TOO_MANY)),
    "split-duplicates-under-the-limit": Hostile(
        lambda: dumps({"columns": ["hour"] * 2000, "data": [[1] * 2000] * 500}), 422,
        ('column "hour" is given more than once in "columns"',)),
    "split-unknown-names-many-rows": Hostile(
        lambda: dumps({"columns": [*GOOD, *names(2044)], "data": [[*GOOD.values(), *[0] * 2044]] * 1200}), 422,
        ('unknown column "c0"', "more errors")),
    "dataframe-split-1m-names": Hostile(
        lambda: fill(b'{"dataframe_split":{"data":[[1]],"columns":[', lambda i: b'"c%d"' % i, b"]}}"), 422,
        ('"columns" names', TOO_MANY)),
    "inputs-1m-columns": Hostile(lambda: fill(b'{"inputs":{', lambda i: b'"c%d":[1]' % i, b"}}"), 422,
                                 ('"inputs" names', TOO_MANY)),
    "one-row-1m-names": Hostile(lambda: fill(b'{"row":{', lambda i: b'"c%d":1' % i, b"}}"), 422,
                                ("the row names", TOO_MANY)),
    "records-second-row-over-the-limit": Hostile(
        lambda: dumps({"rows": [GOOD, dict.fromkeys(names(3000), 1)]}), 422, ("rows[1] names 3000", TOO_MANY)),
    "records-1000-distinct-names-a-row": Hostile(
        lambda: fill(b'{"rows":[', lambda j: dumps(dict.fromkeys(names(1000, f"u{j}_"), 1)), b"]}"), 422,
        ('missing column "fare" (in all', 'rows[0]: unknown column "u0_0"', "more errors")),
    "instances-2048-names-each": Hostile(
        lambda: fill(b'{"instances":[', dumps(dict.fromkeys(names(2048), 1)), b"]}"), 422,
        ('unknown column "c0" (in all', "more errors")),
    "huge-column-name": Hostile(lambda: dumps({"row": {**GOOD, "x" * (FULL - 200): 1}}), 422,
                                ('unknown column "xxxx', "…")),
    # -- nesting, sizes, types ----------------------------------------------------------------
    "deep-arrays-unclosed": Hostile(lambda: b"[" * FULL, 422, ("not valid JSON", "nested too deeply")),
    "deep-arrays-in-a-value": Hostile(lambda: b'{"row":{"hour":' + nested(FULL // 2 - 20) + b"}}", 422,
                                      ("not valid JSON", "nested too deeply")),
    "deep-objects": Hostile(lambda: b'{"a":' * (FULL // 5), 422, ("not valid JSON", "nested too deeply")),
    "huge-string-value": Hostile(lambda: dumps({"row": {**GOOD, "payment_type": "q" * (FULL - 200)}}), 422,
                                 ('payment_type="qqq', "is not one of [app, card, cash]")),
    "huge-integer": Hostile(lambda: b'{"row":{"hour":' + b"9" * (FULL - 100) + b"}}", 422, ("not valid JSON",)),
    "big-integer-small-body": Hostile(lambda: b'{"row":{"hour":' + b"9" * 100 + b', "passengers": 2, '
                                      b'"fare": 1.5, "payment_type": "card"}}', 422, ("hour: 9999", "64-bit integer")),
    "150k-rows": Hostile(lambda: fill(b'{"rows":[', dumps(GOOD), b"]}"), 422,
                         ("too many rows", "the limit of 10000 per request")),
    "split-1m-rows": Hostile(lambda: fill(b'{"columns":["hour"],"data":[', b"[1]", b"]}"), 422,
                             ("too many rows", "the limit of 10000 per request")),
    "10k-rows-all-wrong-types": Hostile(
        lambda: dumps({"rows": [{"hour": "x", "passengers": [1], "fare": {}, "payment_type": 5}] * 10_000}), 422,
        ('rows[0].hour: expected number, got "x"', "more errors")),
    "a-top-level-list": Hostile(lambda: fill(b"[", b"1", b"]"), 422, ('body must be a JSON object with "rows"',)),
    "junk-keys-beside-the-rows": Hostile(
        lambda: fill(b'{"rows":[' + dumps(GOOD) + b"],", lambda i: b'"k%d":1' % i, b"}"), 200, ()),
    "two-shapes-at-once": Hostile(lambda: dumps({"rows": [GOOD], "columns": ["hour"], "data": [[1]]}), 422,
                                  ("send only one of them",)),
    # -- NaN / Infinity, encodings, content types ------------------------------------------------
    "nan-and-infinity-small": Hostile(lambda: b'{"row":{"hour":NaN,"passengers":2,"fare":Infinity,"payment_type":"card"}}',
                                      422, ("hour: null is not allowed", "fare: expected a finite number")),
    "nan-at-the-end-of-10-mib": Hostile(
        lambda: fill(b'{"rows":[', lambda i: dumps(dict.fromkeys(names(1000, f"u{i}_"), 1)), b',{"hour":NaN}]}'),
        422, ("not valid JSON", "NaN and Infinity are not JSON", "must be standard JSON")),
    "not-utf-8": Hostile(lambda: b'{"row":{"payment_type":"\xff\xfe"}}', 422, ("not valid JSON",)),
    "not-utf-8-10-mib": Hostile(lambda: fill(b'{"columns":[', lambda i: b'"\xff%d"' % i, b'],"data":[[1]]}'), 422,
                                ("not valid JSON",)),
    "empty": Hostile(lambda: b"", 422, ("not valid JSON",)),
    "10-mib-of-spaces": Hostile(lambda: b" " * FULL, 422, ("not valid JSON",)),
    "form-encoded": Hostile(lambda: b"hour=7&fare=1", 422, ("not valid JSON",),
                            headers={"content-type": "application/x-www-form-urlencoded"}),
    "json-sent-as-text": Hostile(lambda: dumps({"row": GOOD}), 200, (), headers={"content-type": "text/plain"}),
    "over-the-body-limit": Hostile(lambda: b" " * (DEFAULT_MAX_BODY_BYTES + 1), 413,
                                   (f"larger than the limit of {DEFAULT_MAX_BODY_BYTES} bytes",)),
    # -- Open Inference Protocol tensors ------------------------------------------------------
    "v2-1m-tensors": Hostile(lambda: fill(b'{"inputs":[', lambda i: dumps(tensor(f"c{i}", [1])), b"]}"), 413,
                             ("inputs, the model has 4 features",), INFER),
    "v2-shape-says-a-trillion-rows": Hostile(lambda: dumps({"inputs": [tensor("hour", [10**12])]}), 413,
                                             ("too many rows", "limit of 10000"), INFER),
    "v2-shape-bigger-than-the-data": Hostile(lambda: dumps({"inputs": [tensor("hour", [10_000])]}), 400,
                                             ('"data" holds 1 values, shape [10000] needs 10000',), INFER),
    "v2-data-bigger-than-the-shape": Hostile(
        lambda: fill(b'{"inputs":[{"name":"hour","shape":[1],"datatype":"INT64","data":[', b"1", b"]}]}"),
        400, ("input \"hour\"", "shape [1] needs 1"), INFER),
    "v2-column-shape-with-a-huge-width": Hostile(lambda: dumps({"inputs": [tensor("hour", [1, 10**9])]}), 400,
                                                 ("a feature column is [N] or [N, 1]",), INFER),
    "v2-matrix-lying-about-its-width": Hostile(lambda: dumps({"inputs": [tensor("x", [1, 10**12], "FP64")]}), 400,
                                               ("but the model has 4 features",), INFER),
    "v2-negative-shape": Hostile(lambda: dumps({"inputs": [tensor("hour", [-5])]}), 400,
                                 ("dimensions must be 0 or more",), INFER),
    "v2-datatype-lies-about-the-data": Hostile(
        lambda: dumps({"inputs": [tensor("hour", [900_000], "INT64", ["x"] * 900_000)]}), 413,
        ("too many rows",), INFER),
    "v2-strings-in-an-int-tensor": Hostile(lambda: dumps({"inputs": [tensor("hour", [3], "INT64", [1, 2, "x"])]}),
                                           400, ('element 2 is "x", not INT64',), INFER),
    "v2-datatype-wrong-for-the-column": Hostile(lambda: dumps({"inputs": [tensor("hour", [1], "BYTES", ["a"])]}),
                                                400, ("datatype BYTES does not fit a column of integer values",), INFER),
    "v2-unknown-datatype": Hostile(lambda: dumps({"inputs": [tensor("hour", [1], "INT128")]}), 400,
                                   ("unknown datatype",), INFER),
    "v2-binary-size-lies": Hostile(
        lambda: dumps({"inputs": [{"name": "hour", "shape": [1], "datatype": "INT64",
                                   "parameters": {"binary_data_size": 10**12}}]}) + b"\x00" * 8, 400,
        ("bytes follow the JSON header",), INFER,
        headers={"inference-header-content-length": str(len(dumps({"inputs": [{
            "name": "hour", "shape": [1], "datatype": "INT64", "parameters": {"binary_data_size": 10**12}}]})))}),
    "v2-header-length-lies": Hostile(lambda: dumps({"inputs": []}), 400, ("Inference-Header-Content-Length",),
                                     INFER, headers={"inference-header-content-length": str(10**12)}),
    "v2-deep-data": Hostile(lambda: b'{"inputs":[{"name":"hour","shape":[1],"datatype":"INT64","data":'
                            + nested(FULL // 2 - 100) + b"}]}", 400, ("nested too deeply",), INFER),
    "v2-nan": Hostile(lambda: dumps({"inputs": [tensor("fare", [1], "FP64", [float("nan")])]}), 400,
                      ("NaN and Infinity are not JSON",), INFER),
    "v2-gzip": Hostile(lambda: b"\x1f\x8b" + b"\x00" * 100, 415, ("not supported",), INFER,
                       headers={"content-encoding": "gzip"}),
    "v2-many-outputs": Hostile(lambda: dumps({"inputs": [tensor(n, [1], "BYTES" if n == "payment_type" else "FP64",
                                                                [v]) for n, v in GOOD.items()],
                                              "outputs": [{"name": "predict"}] * 400_000}), 400,
                               ('output "predict" is requested more than once',), INFER),
    "v2-not-json": Hostile(lambda: b"\xff" * FULL, 400, ("not a valid inference request",), INFER),
}


@pytest.fixture(scope="module")
def client(module_models: Any) -> Iterator[TestClient]:
    import testsupport

    module_models.register()
    module_models.promote(1)
    with TestClient(create_app(module_models.registry, "taxi", poll_interval=0.05)) as test_client:
        testsupport.eventually(lambda: test_client.get("/ready").status_code == 200, timeout=60)
        yield test_client


def message_of(answer: Any) -> str:
    """Every message of an answer in one string: ``detail`` (ours, errors and all) or ``error`` (V2)."""
    body = answer.json()
    said = body.get("detail", body.get("error"))
    return "\n".join(said["errors"]) if isinstance(said, dict) else str(said)


def reference_seconds(raw: bytes) -> float:
    """What the standard library takes to decode ``raw`` (or to give up on it), on this machine, now."""
    started = time.perf_counter()
    try:
        json.loads(raw)
    except (ValueError, RecursionError):
        pass
    return time.perf_counter() - started


@pytest.mark.parametrize("kind", list(CORPUS))
def test_a_hostile_body_is_answered_in_linear_time_with_a_message_naming_the_limit(client: TestClient,
                                                                                  kind: str) -> None:
    hostile = CORPUS[kind]
    raw = hostile.build()
    assert len(raw) <= DEFAULT_MAX_BODY_BYTES or hostile.status == 413
    bound = 2.0 + 25 * reference_seconds(raw)
    started = time.perf_counter()
    answer = client.post(hostile.path, content=raw, headers={"content-type": "application/json", **hostile.headers})
    elapsed = time.perf_counter() - started
    assert answer.status_code == hostile.status, answer.text[:500]
    message = message_of(answer) if hostile.status != 200 else ""
    for fragment in hostile.says:
        assert fragment in message, message[:1000]
    assert len(answer.content) < 100_000  # a body's megabytes are never echoed back
    assert elapsed < bound, f"{kind}: {elapsed:.2f} s for {len(raw)} bytes (bound {bound:.2f} s)"


def test_a_model_wider_than_the_limit_still_takes_its_own_columns() -> None:
    from mlops_airflow.serving.requests import SchemaChecker, parse_rows

    wide = SchemaChecker({"columns": [{"name": f"f{i}", "kind": "numeric", "dtype": "float64"} for i in range(3000)]})
    row = {f"f{i}": 1.0 for i in range(3000)}
    assert parse_rows({"row": row}, wide, frame=False).ok
    refused = parse_rows({"row": {**row, "extra": 1.0}}, wide, frame=False, max_columns=100)
    assert refused.errors == ["too many columns: the row names 3001, more than the limit of 3000 per request "
                              "(the model takes 3000)"]


def test_the_limit_on_columns_is_a_server_setting(models: Any, eventually: Any) -> None:
    models.register()
    models.promote(1)
    with TestClient(create_app(models.registry, "taxi", poll_interval=0.05, max_columns=4)) as client:
        eventually(lambda: client.get("/ready").status_code == 200)
        assert client.post("/predict", json={"row": GOOD}).status_code == 200
        refused = client.post("/predict", json={"row": {**GOOD, "extra": 1}})
        assert refused.status_code == 422
        assert refused.json()["detail"]["errors"] == [
            "too many columns: the row names 5, more than the limit of 4 per request (the model takes 4)"]
