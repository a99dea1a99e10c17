"""The Open Inference Protocol (V2) codec: tensors to checked rows, predictions to tensors, errors named.

Conformance is checked against a client nobody here wrote: tritonclient's own request
encoder and response decoder (no server involved).
"""

from __future__ import annotations

import json
import struct
import subprocess
import sys
import time
from typing import Any

import numpy as np
import pytest
import tritonclient.http as triton

from mlops_airflow.serving import v2
from mlops_airflow.serving.requests import SchemaChecker, _dtype_family, parse_rows
from mlops_airflow.serving.v2 import (
    V2Error,
    error_body,
    infer_response,
    model_metadata,
    parse_infer,
    server_metadata,
)

SCHEMA: dict[str, Any] = {
    "format_version": 1,
    "target": {"name": "tip", "dtype": "float64"},
    "columns": [
        {"name": "hour", "kind": "numeric", "dtype": "int64", "nullable": False, "declared": {"min": 0, "max": 23}},
        {"name": "distance", "kind": "numeric", "dtype": "float64", "nullable": True},
        {"name": "payment", "kind": "categorical", "dtype": "object", "nullable": False,
         "declared": {"allowed": ["card", "cash"]}},
    ],
}
NUMERIC: dict[str, Any] = {**SCHEMA, "columns": SCHEMA["columns"][:2]}
CHECKER = SchemaChecker(SCHEMA)
NUMERIC_CHECKER = SchemaChecker(NUMERIC)


def tensor(name: str, datatype: str, data: Any, shape: list[int] | None = None, **parameters: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"name": name, "datatype": datatype, "shape": shape or [len(data)]}
    if data is not None:
        body["data"] = data
    if parameters:
        body["parameters"] = parameters
    return body


def good_inputs() -> list[dict[str, Any]]:
    return [tensor("hour", "INT64", [7, 23]), tensor("distance", "FP64", [1.5, None]),
            tensor("payment", "BYTES", ["card", "cash"])]


def raw(**body: Any) -> bytes:
    return json.dumps(body).encode()


def parse(body: bytes, checker: SchemaChecker = CHECKER, **options: Any) -> v2.InferRequest:
    return parse_infer(body, checker, max_rows=options.pop("max_rows", 100), **options)


GOOD_VALUES = {"hour": [7, 23], "distance": [1.5, None], "payment": ["card", "cash"]}


# -- inputs ----------------------------------------------------------------------------------


def test_one_tensor_per_column_flat_becomes_the_checked_rows() -> None:
    request = parse(raw(inputs=good_inputs()))
    assert request.parsed.ok and request.parsed.errors == []
    assert request.parsed.values == GOOD_VALUES
    assert request.parsed.rows == 2


def test_columns_shaped_n_by_1_with_nested_or_flat_data_give_the_same_rows() -> None:
    nested = [tensor("hour", "INT32", [[7], [23]], [2, 1]), tensor("distance", "FP32", [[1.5], [None]], [2, 1]),
              tensor("payment", "BYTES", [["card"], ["cash"]], [2, 1])]
    flat = [tensor("hour", "INT32", [7, 23], [2, 1]), tensor("distance", "FP32", [1.5, None], [2, 1]),
            tensor("payment", "BYTES", ["card", "cash"], [2, 1])]
    assert parse(raw(inputs=nested)).parsed.values == GOOD_VALUES
    assert parse(raw(inputs=flat)).parsed.values == GOOD_VALUES


def test_inputs_in_another_order_than_the_schema_are_matched_by_name() -> None:
    assert parse(raw(inputs=good_inputs()[::-1])).parsed.values == GOOD_VALUES


@pytest.mark.parametrize("data", [[[7, 1.5], [23, 2.0]], [7, 1.5, 23, 2.0]], ids=["nested", "flat"])
def test_a_single_matrix_input_is_split_into_the_schema_columns_in_order(data: list[Any]) -> None:
    request = parse(raw(inputs=[tensor("input-0", "FP64", data, [2, 2])]), NUMERIC_CHECKER)
    assert request.parsed.errors == []
    # an integral float is an integer for an integer column, as on /predict
    assert request.parsed.values == {"hour": [7, 23], "distance": [1.5, 2.0]}


def test_a_matrix_input_needs_all_features_numeric() -> None:
    body = raw(inputs=[tensor("input-0", "FP64", [1, 2, 3], [1, 3])])
    with pytest.raises(V2Error, match="all numeric, and payment is not: send one input per feature column") as caught:
        parse(body)
    assert caught.value.status == 400


def test_a_matrix_input_must_have_one_column_per_feature() -> None:
    with pytest.raises(V2Error, match=r'"m": shape \[1, 3\], but the model has 2 features \(hour, distance\)'):
        parse(raw(inputs=[tensor("m", "FP64", [1, 2, 3], [1, 3])]), NUMERIC_CHECKER)


def test_a_matrix_input_holds_numbers() -> None:
    with pytest.raises(V2Error, match='"m": a matrix input holds numbers, not BYTES'):
        parse(raw(inputs=[tensor("m", "BYTES", ["a", "b"], [1, 2])]), NUMERIC_CHECKER)


def binary_body(header: dict[str, Any], *chunks: bytes) -> tuple[bytes, int]:
    text = json.dumps(header).encode()
    return text + b"".join(chunks), len(text)


def bytes_tensor(*items: bytes) -> bytes:
    return b"".join(struct.pack("<I", len(item)) + item for item in items)


def test_binary_inputs_are_read_in_order_after_the_json_header() -> None:
    hours = np.array([7, 23], dtype="<i8").tobytes()
    distances = np.array([1.5, np.nan], dtype="<f4").tobytes()  # NaN: missing, and distance is nullable
    payments = bytes_tensor(b"card", b"cash")
    header = {"inputs": [tensor("hour", "INT64", None, [2], binary_data_size=16),
                         tensor("distance", "FP32", None, [2, 1], binary_data_size=8),
                         tensor("payment", "BYTES", None, [2], binary_data_size=len(payments))]}
    body, length = binary_body(header, hours, distances, payments)
    request = parse(body, header_length=length)
    assert request.parsed.values == GOOD_VALUES


def test_binary_bool_fp16_and_bf16_decode_exactly() -> None:
    schema = {"columns": [{"name": "flag", "kind": "numeric", "dtype": "bool", "nullable": False},
                          {"name": "x", "kind": "numeric", "dtype": "float64", "nullable": False},
                          {"name": "y", "kind": "numeric", "dtype": "float32", "nullable": False}]}
    bf16 = (np.array([2.5, -1.0], dtype="<f4").view("<u4") >> 16).astype("<u2").tobytes()
    header = {"inputs": [tensor("flag", "BOOL", None, [2], binary_data_size=2),
                         tensor("x", "FP16", None, [2], binary_data_size=4),
                         tensor("y", "BF16", None, [2], binary_data_size=4)]}
    body, length = binary_body(header, b"\x01\x00", np.array([0.5, 3.0], dtype="<f2").tobytes(), bf16)
    request = parse(body, SchemaChecker(schema), header_length=length)
    assert request.parsed.values == {"flag": [True, False], "x": [0.5, 3.0], "y": [2.5, -1.0]}


def test_a_binary_nan_in_a_column_that_is_not_nullable_is_refused_as_a_null() -> None:
    header = {"inputs": [tensor("hour", "FP64", None, [1], binary_data_size=8), tensor("distance", "FP64", [1.0]),
                         tensor("payment", "BYTES", ["card"])]}
    body, length = binary_body(header, struct.pack("<d", float("nan")))
    assert parse(body, header_length=length).parsed.errors == ["hour: null is not allowed"]


def _columns_of(n: int) -> dict[str, list[Any]]:
    return {"hour": [i % 24 for i in range(n)], "distance": [i / 4 if i % 5 else None for i in range(n)],
            "payment": [("card", "cash")[i % 2] for i in range(n)]}


@pytest.mark.parametrize("bad", [None, 77], ids=["clean", "with-an-error"])
def test_a_big_request_is_checked_exactly_as_parse_rows_checks_it(bad: int | None) -> None:
    columns = _columns_of(40)  # past the row count where whole columns are checked at once
    if bad is not None:
        columns["hour"][33] = bad
    inputs = [tensor(name, {"hour": "INT64", "distance": "FP64", "payment": "BYTES"}[name], values)
              for name, values in columns.items()]
    ours = parse(raw(inputs=inputs)).parsed
    theirs = parse_rows({"columns": list(columns), "data": [list(row) for row in zip(*columns.values(), strict=True)]},
                        CHECKER, max_rows=100, frame=False)
    assert (ours.errors, ours.values, ours.rows) == (theirs.errors, theirs.values, theirs.rows)
    assert ours.errors == ([] if bad is None else ["data[33].hour=77 is outside [0, 23]"])
    if bad is None:
        assert ours.columns is not None and theirs.columns is not None
        assert CHECKER.frame_of(ours).equals(CHECKER.frame_of(theirs))


# -- schema errors: worded as /predict words them --------------------------------------------


def test_schema_errors_are_worded_exactly_as_predict_words_them() -> None:
    inputs = [tensor("hour", "INT64", [77]), tensor("distance", "FP64", [None]), tensor("payment", "BYTES", ["bitcoin"])]
    errors = parse(raw(inputs=inputs)).parsed.errors
    assert errors == ["hour=77 is outside [0, 23]", 'payment="bitcoin" is not one of [card, cash]']
    assert errors == parse_rows({"rows": [{"hour": 77, "distance": None, "payment": "bitcoin"}]}, CHECKER).errors


def test_row_numbers_in_errors_are_the_tensors_element_indexes() -> None:
    inputs = good_inputs()
    inputs[0]["data"] = [7, 77]
    assert parse(raw(inputs=inputs)).parsed.errors == ["data[1].hour=77 is outside [0, 23]"]


def test_missing_and_unknown_columns_are_named_as_predict_names_them() -> None:
    inputs = [tensor("hour", "INT64", [7]), tensor("distance", "FP64", [1.0]), tensor("tip", "FP64", [1.0])]
    assert parse(raw(inputs=inputs)).parsed.errors == [
        'missing column "payment"', 'unknown column "tip" (it is the target the model predicts)']


def test_nulls_in_json_data_are_missing_values_the_column_judges() -> None:
    inputs = good_inputs()
    inputs[0]["data"] = [None, 3]
    assert parse(raw(inputs=inputs)).parsed.errors == ["data[0].hour: null is not allowed"]


# -- protocol errors -------------------------------------------------------------------------


def _inputs_with(index: int, **changes: Any) -> bytes:
    inputs = good_inputs()
    inputs[index].update(changes)
    return raw(inputs=inputs)


PROTOCOL_ERRORS = [
    ("not-json", b"{inputs: 1", 400, "not a valid inference request: JSON is malformed"),
    ("nan", b'{"inputs": [{"name": "hour", "shape": [1], "datatype": "FP64", "data": [NaN]}]}', 400,
     "NaN and Infinity are not JSON: send null for a missing value"),
    ("no-inputs", raw(outputs=[]), 400, "missing required field `inputs`"),
    ("inputs-not-a-list", raw(inputs={"hour": [1]}), 400, "Expected `array`, got `object` - at `$.inputs`"),
    ("empty-inputs", raw(inputs=[]), 400, '"inputs" is empty'),
    ("shape-not-ints", _inputs_with(0, shape=["2"]), 400, "at `$.inputs[0].shape[0]`"),
    ("no-data", _inputs_with(0, data=None), 400, 'input "hour": no "data" and no binary_data_size'),
    ("data-not-a-list", _inputs_with(0, data=7), 400, 'input "hour": "data" must be a list, got 7'),
    ("count-mismatch", _inputs_with(0, data=[7, 8, 9]), 400, 'input "hour": "data" holds 3 values, shape [2] needs 2'),
    ("nested-mismatch", _inputs_with(0, shape=[2, 1], data=[[7], [8, 9]]), 400,
     'does not fit shape [2, 1]: expected 2 lists of 1 values (or 2 values, flat)'),
    ("deeper-than-shape", _inputs_with(0, data=[[7], [8]]), 400,
     'input "hour": element 0 is [7], a list: data is nested deeper than its shape'),
    ("element-type", _inputs_with(0, data=[7, "eight"]), 400, 'input "hour": element 1 is "eight", not INT64'),
    ("float-in-int", _inputs_with(0, data=[7, 8.5]), 400, 'element 1 is 8.5, not INT64'),
    ("bool-not-int", _inputs_with(0, data=[True, 8]), 400, 'element 0 is true, not INT64'),
    ("unknown-datatype", _inputs_with(0, datatype="INT128"), 400, 'input "hour": unknown datatype "INT128"'),
    ("datatype-vs-column", _inputs_with(2, datatype="INT64", data=[1, 2]), 400,
     'input "payment": datatype INT64 does not fit a column of text values: send BYTES'),
    ("bytes-for-number", _inputs_with(0, datatype="BYTES", data=["7", "8"]), 400,
     'input "hour": datatype BYTES does not fit a column of integer values: send an INT, UINT or FP datatype'),
    ("negative-dim", _inputs_with(0, shape=[-1]), 400, "dimensions must be 0 or more"),
    ("three-dims", _inputs_with(0, shape=[2, 1, 1]), 400, 'input "hour": shape [2, 1, 1]: a feature column is [N] or [N, 1]'),
    ("column-two-wide", _inputs_with(0, shape=[1, 2]), 400, "a feature column is [N] or [N, 1]"),
    ("rows-disagree", _inputs_with(2, shape=[1], data=["card"]), 400,
     'the inputs disagree on the number of rows: "hour" has 2, "payment" has 1'),
    ("duplicate-input", raw(inputs=[*good_inputs(), tensor("hour", "INT64", [1, 2])]), 400,
     'input "hour": sent more than once'),
    ("shared-memory", _inputs_with(0, parameters={"shared_memory_region": "r"}), 400, "shared memory is not supported"),
    ("binary-without-header", _inputs_with(0, data=None, parameters={"binary_data_size": 16}), 400,
     "binary_data_size given, but no Inference-Header-Content-Length says where the JSON ends"),
    ("binary-and-data", _inputs_with(0, parameters={"binary_data_size": 16}), 400, '"data" and a binary_data_size both given: send one of them'),
    ("bad-binary-size", _inputs_with(0, data=None, parameters={"binary_data_size": -1}), 400,
     "binary_data_size must be a whole number of bytes, got -1"),
    ("unknown-output", raw(inputs=good_inputs(), outputs=[{"name": "scores"}]), 400,
     'output "scores" does not exist: the outputs are "predict" and "predict_proba"'),
    ("duplicate-output", raw(inputs=good_inputs(), outputs=[{"name": "predict"}, {"name": "predict"}]), 400,
     'output "predict" is requested more than once'),
    ("classification", raw(inputs=good_inputs(), outputs=[{"name": "predict", "parameters": {"classification": 2}}]),
     400, "the classification parameter is not supported"),
    ("binary-flag-type", raw(inputs=good_inputs(), outputs=[{"name": "predict", "parameters": {"binary_data": 1}}]),
     400, 'output "predict": binary_data must be true or false, got 1'),
    ("binary-output-type", raw(inputs=good_inputs(), parameters={"binary_data_output": "yes"}), 400,
     'parameters.binary_data_output must be true or false, got "yes"'),
    ("too-many-rows", _inputs_with(0, shape=[101]), 413, "too many rows: 101 > the limit of 100 per request"),
    ("many-inputs", raw(inputs=[tensor(f"c{i}", "FP64", [1.0]) for i in range(30)]), 413,
     "the request has 30 inputs, the model has 3 features"),
    ("deep-json", b'{"inputs": [{"name": "hour", "shape": [1], "datatype": "INT64", "data": ' + b"[" * 5000
     + b"]" * 5000 + b"}]}", 400, "nested too deeply"),
]


@pytest.mark.parametrize(("body", "status", "message"), [case[1:] for case in PROTOCOL_ERRORS],
                         ids=[case[0] for case in PROTOCOL_ERRORS])
def test_protocol_errors_name_the_field_and_the_reason(body: bytes, status: int, message: str) -> None:
    with pytest.raises(V2Error) as caught:
        parse(body)
    assert message in str(caught.value)
    assert caught.value.status == status


def _binary_error(header_inputs: list[dict[str, Any]], *chunks: bytes, length_delta: int = 0) -> V2Error:
    body, length = binary_body({"inputs": header_inputs}, *chunks)
    with pytest.raises(V2Error) as caught:
        parse(body, header_length=length + length_delta)
    return caught.value


def test_binary_sizes_must_add_up_to_what_follows_the_header() -> None:
    hours = tensor("hour", "INT64", None, [2], binary_data_size=16)
    error = _binary_error([hours, *good_inputs()[1:]], b"\x00" * 20)
    assert "20 bytes follow the JSON header, but the inputs' binary_data_size add up to 16" in str(error)


def test_a_binary_size_must_match_the_shape_and_datatype() -> None:
    error = _binary_error([tensor("hour", "INT64", None, [2], binary_data_size=12), *good_inputs()[1:]], b"\x00" * 12)
    assert 'input "hour": binary_data_size is 12, but shape [2] of INT64 takes 16 bytes' in str(error)


def test_binary_bytes_elements_are_length_prefixed_utf8() -> None:
    def payment(data: bytes) -> V2Error:
        return _binary_error([*good_inputs()[:2], tensor("payment", "BYTES", None, [2], binary_data_size=len(data))],
                             data)

    assert "the binary data ends before element 1 of 2" in str(payment(bytes_tensor(b"card")))
    assert "element 1 claims 99 bytes, 2 are left" in str(payment(bytes_tensor(b"card") + struct.pack("<I", 99) + b"ca"))
    assert "element 1 is not UTF-8 text" in str(payment(bytes_tensor(b"card", b"\xff\xfe")))
    assert "3 bytes are left after its 2 elements" in str(payment(bytes_tensor(b"card", b"cash") + b"xyz"))


def test_a_binary_bool_is_one_byte_zero_or_one() -> None:
    schema = SchemaChecker({"columns": [{"name": "flag", "kind": "numeric", "dtype": "bool", "nullable": False}]})
    body, length = binary_body({"inputs": [tensor("flag", "BOOL", None, [2], binary_data_size=2)]}, b"\x01\x02")
    with pytest.raises(V2Error, match="a BOOL is one byte, 0 or 1"):
        parse(body, schema, header_length=length)


def test_a_header_length_beyond_the_body_is_refused() -> None:
    body = raw(inputs=good_inputs())
    with pytest.raises(V2Error, match=f"Inference-Header-Content-Length is {len(body) + 1}, but the body has"):
        parse(body, header_length=len(body) + 1)


def test_compressed_bodies_are_refused_as_an_unsupported_encoding() -> None:
    with pytest.raises(V2Error, match='Content-Encoding "gzip" is not supported') as caught:
        parse(raw(inputs=good_inputs()), content_encoding="gzip")
    assert caught.value.status == 415
    assert parse(raw(inputs=good_inputs()), content_encoding="identity").parsed.ok


def test_hostile_bodies_cost_little() -> None:
    # a shape promising 10**15 values is refused from the shape alone, before any data is read
    started = time.perf_counter()
    with pytest.raises(V2Error):
        parse(raw(inputs=[tensor("hour", "INT64", [1], [10**15])]), max_rows=10**9)
    with pytest.raises(V2Error, match="too many rows: 1000000000000 > the limit of 1000000000"):
        parse(raw(inputs=[tensor("m", "FP64", [1], [10**12, 2])]), NUMERIC_CHECKER, max_rows=10**9)
    # 200k one-value lists where the shape says one flat list of 200k: refused in one pass
    with pytest.raises(V2Error, match="nested deeper than its shape"):
        parse(raw(inputs=[tensor("hour", "INT64", [[1]] * 200_000, [200_000])]), max_rows=10**6)
    assert time.perf_counter() - started < 2.0


# -- outputs ---------------------------------------------------------------------------------

REGRESSION = {"predictions": [1.25, 3.5]}
CLASSIFICATION = {"predictions": ["no", "yes"], "probabilities": [[0.75, 0.25], [0.125, 0.875]], "classes": ["no", "yes"]}


def respond(result: dict[str, Any], **body: Any) -> tuple[dict[str, Any], list[tuple[bytes, bytes]]]:
    request = parse(raw(inputs=good_inputs(), **body))
    data, headers = infer_response("tips", 3, request, result, result.get("classes"))
    return json.loads(data), headers


def test_the_request_id_is_echoed_and_left_out_when_there_is_none() -> None:
    answer, headers = respond(REGRESSION, id="req-42")
    assert answer["id"] == "req-42" and headers == []
    assert (answer["model_name"], answer["model_version"]) == ("tips", "3")
    assert "id" not in respond(REGRESSION)[0]


def test_a_regressor_answers_predict_as_fp64() -> None:
    answer, _ = respond(REGRESSION)
    assert answer["outputs"] == [{"name": "predict", "datatype": "FP64", "shape": [2], "data": [1.25, 3.5]}]


def test_predict_proba_asked_of_a_regressor_is_a_protocol_error() -> None:
    with pytest.raises(V2Error, match='output "predict_proba" does not exist for tips: it is not a classifier'):
        respond(REGRESSION, outputs=[{"name": "predict_proba"}])


def test_a_classifier_answers_labels_and_row_major_probabilities_with_their_classes() -> None:
    answer, _ = respond(CLASSIFICATION)
    assert answer["outputs"] == [
        {"name": "predict", "datatype": "BYTES", "shape": [2], "data": ["no", "yes"]},
        {"name": "predict_proba", "datatype": "FP64", "shape": [2, 2], "data": [0.75, 0.25, 0.125, 0.875],
         "parameters": {"classes": '["no","yes"]'}},
    ]


@pytest.mark.parametrize(("asked", "probabilities"), [(["predict"], False), (["predict_proba"], True)])
def test_only_the_requested_outputs_are_answered(asked: list[str], probabilities: bool) -> None:
    request = parse(raw(inputs=good_inputs(), outputs=[{"name": name} for name in asked]))
    assert request.outputs == tuple(asked) and request.probabilities is probabilities
    answer, _ = respond(CLASSIFICATION, outputs=[{"name": name} for name in asked])
    assert [output["name"] for output in answer["outputs"]] == asked


def test_all_outputs_asked_means_probabilities_are_needed() -> None:
    request = parse(raw(inputs=good_inputs()))
    assert request.outputs == () and request.probabilities is True and request.binary_outputs == frozenset()


@pytest.mark.parametrize(("predictions", "datatype"), [
    ([1, 0], "INT64"), ([True, False], "BOOL"), ([1.5, None], "FP64"), ([2**63, 1], "UINT64"), ([1, "a"], "BYTES"),
])
def test_the_predict_datatype_follows_the_values(predictions: list[Any], datatype: str) -> None:
    answer, _ = respond({"predictions": predictions})
    assert answer["outputs"][0]["datatype"] == datatype


def test_binary_outputs_follow_the_json_with_their_sizes() -> None:
    body = raw(inputs=good_inputs(), outputs=[{"name": "predict", "parameters": {"binary_data": True}},
                                              {"name": "predict_proba"}])
    request = parse(body)
    assert request.binary_outputs == frozenset({"predict"})
    data, headers = infer_response("tips", 3, request, CLASSIFICATION, ["no", "yes"])
    length = int(dict(headers)[b"inference-header-content-length"])
    assert dict(headers)[b"content-type"] == b"application/octet-stream"
    header = json.loads(data[:length])
    assert header["outputs"][0] == {"name": "predict", "datatype": "BYTES", "shape": [2],
                                    "parameters": {"binary_data_size": 13}}
    assert header["outputs"][1]["data"] == [0.75, 0.25, 0.125, 0.875]  # asked without binary_data: JSON
    assert data[length:] == bytes_tensor(b"no", b"yes")


def test_binary_data_output_on_the_request_applies_unless_an_output_says_otherwise() -> None:
    body = raw(inputs=good_inputs(), parameters={"binary_data_output": True},
               outputs=[{"name": "predict"}, {"name": "predict_proba", "parameters": {"binary_data": False}}])
    assert parse(body).binary_outputs == frozenset({"predict"})
    everything = raw(inputs=good_inputs(), parameters={"binary_data_output": True})
    assert parse(everything).binary_outputs == frozenset({"predict", "predict_proba"})


# -- tritonclient: an encoder and decoder nobody here wrote ----------------------------------

def triton_inputs(binary: bool) -> list[Any]:
    hour = triton.InferInput("hour", [3], "INT64").set_data_from_numpy(np.array([7, 23, 0]), binary_data=binary)
    distance = triton.InferInput("distance", [3, 1], "FP32")
    distance.set_data_from_numpy(np.array([[1.5], [2.0], [0.25]], dtype=np.float32), binary_data=binary)
    payment = triton.InferInput("payment", [3], "BYTES")
    payment.set_data_from_numpy(np.array(["card", "cash", "card"], dtype=object), binary_data=binary)
    return [hour, distance, payment]


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_requests_tritonclient_encodes_are_accepted(binary: bool) -> None:
    outputs = [triton.InferRequestedOutput("predict", binary_data=binary)]
    body, length = triton.InferenceServerClient.generate_request_body(triton_inputs(binary), outputs=outputs,
                                                                       request_id="t-1")
    assert (length is not None) is binary  # binary data came after a JSON header, as the extension says
    request = parse(body, header_length=length)
    assert request.parsed.values == {"hour": [7, 23, 0], "distance": [1.5, 2.0, 0.25], "payment": ["card", "cash", "card"]}
    assert (request.id, request.outputs, request.probabilities) == ("t-1", ("predict",), False)
    assert request.binary_outputs == (frozenset({"predict"}) if binary else frozenset())


def test_a_tritonclient_matrix_with_a_nan_is_a_missing_value_where_nullable() -> None:
    matrix = triton.InferInput("input-0", [2, 2], "FP32")
    matrix.set_data_from_numpy(np.array([[7, 1.5], [23, np.nan]], dtype=np.float32))
    body, length = triton.InferenceServerClient.generate_request_body([matrix])
    request = parse(body, NUMERIC_CHECKER, header_length=length)
    assert request.parsed.values == {"hour": [7, 23], "distance": [1.5, None]}
    # no outputs named: tritonclient asks for all of them in binary
    assert request.binary_outputs == frozenset({"predict", "predict_proba"}) and request.probabilities


def _fitted(kind: str) -> Any:
    from sklearn.compose import make_column_transformer
    from sklearn.linear_model import LinearRegression, LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder

    from mlops_airflow.serving.loading import LoadedModel

    rows = parse_rows({"inputs": {"hour": [1, 5, 9, 13, 17, 21], "distance": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0],
                                  "payment": ["card", "cash"] * 3}}, CHECKER)
    encode = make_column_transformer((OneHotEncoder(), ["payment"]), remainder="passthrough")
    if kind == "classifier":
        model = make_pipeline(encode, LogisticRegression()).fit(rows.frame, ["no", "no", "no", "yes", "yes", "yes"])
    else:
        model = make_pipeline(encode, LinearRegression()).fit(rows.frame, [1.0, 2.0, 3.0, 4.0, 5.0, 6.5])
    task = "binary" if kind == "classifier" else "regression"
    return LoadedModel(model, {"model_name": "tips", "version": 3, "task_type": task, "feature_schema": SCHEMA}, "now")


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
@pytest.mark.parametrize("kind", ["classifier", "regressor"])
def test_tritonclient_reads_our_answers_as_the_model_predicted_them(kind: str, binary: bool) -> None:
    from mlops_airflow.serving.predict import predict_rows

    loaded = _fitted(kind)
    names = ["predict", "predict_proba"] if kind == "classifier" else ["predict"]
    outputs = [triton.InferRequestedOutput(name, binary_data=binary) for name in names]
    body, length = triton.InferenceServerClient.generate_request_body(triton_inputs(binary), outputs=outputs,
                                                                       request_id="t-2")
    request = parse(body, header_length=length)
    frame = CHECKER.frame_of(request.parsed)
    result = predict_rows(loaded, frame, probabilities=request.probabilities)
    data, headers = infer_response("tips", loaded.version, request, result, loaded.classes)
    header_length = dict(headers).get(b"inference-header-content-length")
    answer = triton.InferenceServerClient.parse_response_body(
        data, header_length=int(header_length) if header_length is not None else None)
    assert answer.get_response()["id"] == "t-2" and answer.get_response()["model_version"] == "3"
    assert (header_length is not None) is binary
    assert answer.as_numpy("predict").tolist() == [
        value.encode() if binary and kind == "classifier" else value  # binary BYTES decode as bytes
        for value in loaded.model.predict(frame).tolist()]
    if kind == "classifier":
        assert np.array_equal(answer.as_numpy("predict_proba"), loaded.model.predict_proba(frame))
    else:
        assert answer.as_numpy("predict_proba") is None


# -- metadata and errors ---------------------------------------------------------------------


def test_model_metadata_lists_one_input_per_column_and_the_outputs_the_model_gives() -> None:
    metadata = model_metadata("tips", [3], SCHEMA, "binary", ["no", "yes"])
    assert metadata == {
        "name": "tips", "versions": ["3"], "platform": "sklearn_skops",
        "inputs": [{"name": "hour", "datatype": "INT64", "shape": [-1]},
                   {"name": "distance", "datatype": "FP64", "shape": [-1]},
                   {"name": "payment", "datatype": "BYTES", "shape": [-1]}],
        "outputs": [{"name": "predict", "datatype": "BYTES", "shape": [-1]},
                    {"name": "predict_proba", "datatype": "FP64", "shape": [-1, 2],
                     "parameters": {"classes": '["no","yes"]'}}],
    }
    regressor = model_metadata("tips", [3, 4], SCHEMA, "regression", None)
    assert regressor["versions"] == ["3", "4"]
    assert regressor["outputs"] == [{"name": "predict", "datatype": "FP64", "shape": [-1]}]


def test_every_column_family_has_a_datatype_its_columns_accept() -> None:
    columns = [{"kind": "numeric", "dtype": "int32"}, {"kind": "numeric", "dtype": "float32"},
               {"kind": "numeric", "dtype": "bool"}, {"kind": "categorical", "dtype": "str"},
               {"kind": "categorical", "dtype": "datetime64[ns]"}]
    assert {_dtype_family(column) for column in columns} == set(v2.V2_DATATYPES)
    for family, datatype in v2.V2_DATATYPES.items():
        assert datatype in v2._ACCEPTED[family]


def test_server_metadata_names_the_package_version_and_the_binary_extension() -> None:
    from mlops_airflow import __version__

    assert server_metadata() == {"name": "mlops-airflow", "version": __version__, "extensions": ["binary_tensor_data"]}


def test_error_body_is_the_protocols_error_object() -> None:
    assert json.loads(error_body('hour=77 is outside [0, 23]; payment="x"')) == {
        "error": 'hour=77 is outside [0, 23]; payment="x"'}


def test_the_module_imports_without_numpy_pandas_or_a_web_framework() -> None:
    code = ("import sys, mlops_airflow.serving.v2; "
            "print(sorted(m for m in ('numpy', 'pandas', 'sklearn', 'fastapi', 'starlette') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
