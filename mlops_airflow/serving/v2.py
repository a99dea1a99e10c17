"""The Open Inference Protocol (KServe V2) over REST: tensors in, our checked rows out, tensors back.

A pure codec the server calls: no web framework here. :func:`parse_infer` turns an
inference request into the columnar rows ``/predict`` checks, with the same schema checks
and the same wording (``hour=77 is outside [0, 23]``, row numbers as ``data[3].hour``,
which in a V2 request is element 3 of the ``hour`` tensor); :func:`infer_response` turns
a prediction into output tensors named as MLServer's scikit-learn runtime names them:
``predict`` (labels or values, ``[N]``) and ``predict_proba`` (FP64, ``[N, C]``).

Requests may carry:

* one tensor per feature column, named after it, shape ``[N]`` or ``[N, 1]``, data flat or
  nested (MLServer's pandas codec, and what :func:`model_metadata` announces);
* one ``[N, F]`` matrix of all F features in schema order (MLServer's numpy codec), when
  every feature is numeric;
* Triton's binary tensor data extension (``tritonclient.http`` sends it by default): the
  ``Inference-Header-Content-Length`` header gives the JSON's length, inputs with
  ``parameters.binary_data_size`` take their little-endian bytes in order from what follows.

Protocol errors raise :class:`V2Error` (the app answers ``error_body(str(exc))`` with its
``status``); values the schema forbids end up in ``InferRequest.parsed.errors`` (422).
"""

from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass
from itertools import chain
from typing import TYPE_CHECKING, Any

import msgspec

from mlops_airflow.serving import requests as _checks
from mlops_airflow.serving.requests import ParsedRows, SchemaChecker, parse_rows, show

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["V2_DATATYPES", "InferRequest", "V2Error", "error_body", "infer_response", "model_metadata",
           "parse_infer", "server_metadata"]

#: The V2 datatype announced for each of our column families (``requests._dtype_family``). Requests
#: may send any integer or floating-point datatype for an ``integer`` or ``float`` column (the
#: column's own checks decide what fits), BOOL for ``bool``, BYTES (UTF-8) for text and date/times.
V2_DATATYPES: dict[str, str] = {"integer": "INT64", "float": "FP64", "bool": "BOOL", "text": "BYTES",
                                "datetime": "BYTES"}

#: numpy's little-endian dtype for each fixed-size datatype (BF16 is the top half of an FP32).
_BINARY = {"BOOL": "u1", "UINT8": "u1", "UINT16": "<u2", "UINT32": "<u4", "UINT64": "<u8", "INT8": "i1",
           "INT16": "<i2", "INT32": "<i4", "INT64": "<i8", "FP16": "<f2", "FP32": "<f4", "FP64": "<f8",
           "BF16": "<u2"}
_NUMBERS = frozenset(_BINARY) - {"BOOL"}
_FLOATS = frozenset({"FP16", "FP32", "FP64", "BF16"})
#: The datatypes a column of each family takes.
_ACCEPTED = {"integer": _NUMBERS, "float": _NUMBERS, "bool": frozenset({"BOOL"}), "text": frozenset({"BYTES"}),
             "datetime": frozenset({"BYTES"})}
#: The JSON values a tensor's "data" may hold, by datatype (null too: a missing value the column judges).
_JSON_TYPES: dict[str, frozenset[type]] = {
    **{name: frozenset({int}) for name in _NUMBERS - _FLOATS},
    **{name: frozenset({int, float}) for name in _FLOATS},
    "BOOL": frozenset({bool}), "BYTES": frozenset({str}),
}
OUTPUTS = ("predict", "predict_proba")
#: Inputs beyond one per feature are reported as unknown columns, up to this many; more are refused unread.
_MAX_UNKNOWN_INPUTS = 20
#: A BYTES element's length prefix.
_LENGTH = struct.Struct("<I")


class V2Error(Exception):
    """A request the protocol refuses; ``status`` is 400 (malformed), 413 (over a limit) or 415 (an encoding)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class InferRequest:
    """One parsed inference request: its checked rows and what the answer must hold."""

    #: The request's "id", echoed in the response.
    id: str | None
    #: The rows as ``parse_rows(..., frame=False)`` checked them, or why they are refused (``.errors``).
    parsed: ParsedRows
    #: The outputs asked for, in order; empty means all the model has.
    outputs: tuple[str, ...]
    #: The outputs to return as binary tensor data.
    binary_outputs: frozenset[str]
    #: Whether the answer needs ``predict_proba`` (asked for, or all outputs asked).
    probabilities: bool


# The request envelope, checked by msgspec while it parses (its messages name the field:
# "Expected `array`, got `str` - at `$.inputs[0].shape`"). Unknown fields are ignored.
class _Tensor(msgspec.Struct):
    name: str
    shape: list[int]
    datatype: str
    parameters: dict[str, Any] | None = None
    data: Any = None


class _Output(msgspec.Struct):
    name: str
    parameters: dict[str, Any] | None = None


class _Request(msgspec.Struct):
    inputs: list[_Tensor]
    id: str | None = None
    parameters: dict[str, Any] | None = None
    outputs: list[_Output] | None = None


_DECODER = msgspec.json.Decoder(_Request)


def parse_infer(raw: bytes, checker: SchemaChecker, *, max_rows: int, header_length: int | None = None,
                content_encoding: str | None = None) -> InferRequest:
    """Parse an inference request body and check its rows against ``checker``'s schema.

    ``header_length`` is the ``Inference-Header-Content-Length`` header (None: the whole
    body is JSON). Raises :class:`V2Error` for what the protocol refuses; what the schema
    refuses is in ``.parsed.errors``, worded as ``/predict`` words it. Work is linear in the
    body: shapes are checked against ``max_rows`` × features before any data is read.
    """
    if content_encoding and content_encoding.strip().lower() != "identity":
        # decompressing would let a small body grow without bound before any limit sees it
        raise V2Error(f"Content-Encoding {show(content_encoding)} is not supported: send the body uncompressed", 415)
    header, binary = raw, memoryview(b"")
    if header_length is not None:
        if not 0 < header_length <= len(raw):
            raise V2Error(f"Inference-Header-Content-Length is {header_length}, but the body has {len(raw)} bytes")
        header, binary = raw[:header_length], memoryview(raw)[header_length:]
    request = _decode(header)
    families = {column.name: column.family for column in checker.columns}
    tensors = request.inputs
    if not tensors:
        raise V2Error('"inputs" is empty: send one tensor per feature column')
    if len(tensors) > len(families) + _MAX_UNKNOWN_INPUTS:
        raise V2Error(f"the request has {len(tensors)} inputs, the model has {len(families)} features", 413)
    outputs, binary_outputs = _requested_outputs(request)
    chunks = _binary_chunks(tensors, binary, header_length is not None)
    if len(tensors) == 1 and tensors[0].name not in families and len(tensors[0].shape) == 2:  # a matrix
        columns = _matrix(tensors[0], chunks[0], checker, max_rows)
    else:
        columns = _columns(tensors, chunks, families, max_rows)
    return InferRequest(request.id, _checked(columns, checker, max_rows), outputs, binary_outputs,
                        not outputs or "predict_proba" in outputs)


def _checked(columns: dict[str, list[Any]], checker: SchemaChecker, max_rows: int) -> ParsedRows:
    """``parse_rows`` on the columns: its result exactly, without turning columns into rows when it need not."""
    rows = len(next(iter(columns.values())))
    if columns.keys() == checker.known and rows >= _checks._VECTOR_ROWS:
        # parse_rows' own first step for a big columnar body: every column checked whole at once
        typed = _checks._fast_columns(checker.columns, columns)
        if typed is not None:
            values = {column.name: columns[column.name] for column in checker.columns}
            return ParsedRows(None, values=values, rows=rows, columns=typed)
    # Split form rather than {"inputs": {column: [...]}}: parse_rows then numbers rows "data[3].hour",
    # where "inputs[3]" would read as the fourth tensor of a V2 request.
    payload = {"columns": list(columns), "data": [list(row) for row in zip(*columns.values(), strict=True)]}
    return parse_rows(payload, checker, max_rows=max_rows, frame=False)


def _decode(header: bytes) -> _Request:
    try:
        with _checks.gc_paused():
            return _DECODER.decode(header)
    except RecursionError:
        raise V2Error("the request JSON is nested too deeply") from None
    except msgspec.DecodeError as exc:  # malformed JSON, or valid JSON of the wrong shape
        nan = b"NaN" in header or b"Infinity" in header
        hint = " (NaN and Infinity are not JSON: send null for a missing value)" if nan else ""
        raise V2Error(f"not a valid inference request: {exc}{hint}") from None


def _bad(tensor: _Tensor, problem: str) -> V2Error:
    return V2Error(f"input {show(tensor.name)}: {problem}")


def _binary_chunks(tensors: list[_Tensor], binary: memoryview, has_header: bool) -> list[memoryview | None]:
    """Each input's binary data (None: its data is in the JSON); the sizes must add up to what follows the JSON."""
    chunks: list[memoryview | None] = []
    offset = 0
    for tensor in tensors:
        if tensor.datatype not in _JSON_TYPES:
            raise _bad(tensor, f"unknown datatype {show(tensor.datatype)}; the protocol's are " + ", ".join(_JSON_TYPES))
        parameters = tensor.parameters or {}
        size = parameters.get("binary_data_size")
        if "shared_memory_region" in parameters:
            raise _bad(tensor, "shared memory is not supported by this server")
        if size is None and tensor.data is None:
            raise _bad(tensor, 'no "data" and no binary_data_size')
        if size is None:
            chunks.append(None)
            continue
        if type(size) is not int or size < 0:
            raise _bad(tensor, f"binary_data_size must be a whole number of bytes, got {show(size)}")
        if tensor.data is not None:
            raise _bad(tensor, '"data" and a binary_data_size both given: send one of them')
        if not has_header:
            raise _bad(tensor, "binary_data_size given, but no Inference-Header-Content-Length says where the JSON ends")
        chunks.append(binary[offset:offset + size])
        offset += size
    if offset != len(binary):
        raise V2Error(f"{len(binary)} bytes follow the JSON header, but the inputs' binary_data_size add up to {offset}")
    return chunks


def _columns(tensors: list[_Tensor], chunks: list[memoryview | None], families: dict[str, str],
             max_rows: int) -> dict[str, list[Any]]:
    """One tensor per column: ``{name: values}``, every tensor's datatype fitting its column's family."""
    columns: dict[str, list[Any]] = {}
    first = tensors[0]
    for tensor, chunk in zip(tensors, chunks, strict=True):
        if tensor.name in columns:
            raise _bad(tensor, "sent more than once")
        if len(tensor.shape) not in (1, 2) or tensor.shape[1:] not in ([], [1]):
            raise _bad(tensor, f"shape {show(tensor.shape)}: a feature column is [N] or [N, 1]")
        _check_rows(tensor, max_rows)
        if tensor.shape[0] != first.shape[0]:
            raise V2Error(f"the inputs disagree on the number of rows: {show(first.name)} has {first.shape[0]}, "
                          f"{show(tensor.name)} has {tensor.shape[0]}")
        family = families.get(tensor.name)
        if family is not None and tensor.datatype not in _ACCEPTED[family]:
            send = "an INT, UINT or FP datatype" if family in ("integer", "float") else " or ".join(_ACCEPTED[family])
            raise _bad(tensor, f"datatype {tensor.datatype} does not fit a column of {family} values: send {send}")
        columns[tensor.name] = _values(tensor, chunk)
    return columns


def _matrix(tensor: _Tensor, chunk: memoryview | None, checker: SchemaChecker, max_rows: int) -> dict[str, list[Any]]:
    """A single ``[N, F]`` input: column j of the matrix is the schema's j-th feature."""
    names = [column.name for column in checker.columns]
    if tensor.shape[1] != len(names):
        listed = ", ".join(names[:10]) + (", …" if len(names) > 10 else "")
        raise _bad(tensor, f"shape {show(tensor.shape)}, but the model has {len(names)} features ({listed}): "
                           f"a matrix input is [N, {len(names)}], one input per column otherwise")
    other = [column.name for column in checker.columns if column.family not in ("integer", "float")]
    if other:
        raise _bad(tensor, f"a matrix input fits only models whose features are all numeric, and "
                           f"{', '.join(other[:10])} is not: send one input per feature column")
    _check_rows(tensor, max_rows)
    if tensor.datatype not in _NUMBERS:
        raise _bad(tensor, f"a matrix input holds numbers, not {tensor.datatype}")
    flat = _values(tensor, chunk)
    width = len(names)
    return {name: flat[index::width] for index, name in enumerate(names)}  # row-major: a column is every width-th


def _check_rows(tensor: _Tensor, max_rows: int) -> None:
    # With the width fixed (1, or the features), this bounds every tensor's size before any data is read.
    if tensor.shape[0] > max_rows:
        raise V2Error(f"too many rows: {tensor.shape[0]} > the limit of {max_rows} per request", 413)
    if min(tensor.shape) < 0:
        raise _bad(tensor, f"shape {show(tensor.shape)}: dimensions must be 0 or more")


def _values(tensor: _Tensor, chunk: memoryview | None) -> list[Any]:
    """The tensor's elements as Python values, row-major; a missing value (null, a binary NaN) is None."""
    count = math.prod(tensor.shape)
    if chunk is not None:
        return _binary_values(tensor, chunk, count)
    data, shape = tensor.data, tensor.shape
    if not isinstance(data, list):
        raise _bad(tensor, f'"data" must be a list, got {show(data)}')
    if len(shape) == 2 and data and type(data[0]) is list:  # nested one level, as the shape says: never deeper
        if len(data) != shape[0] or not set(map(type, data)) <= {list} or not set(map(len, data)) <= {shape[1]}:
            raise _bad(tensor, f'"data" does not fit shape {show(tensor.shape)}: expected {shape[0]} lists of '
                               f"{shape[1]} values (or {count} values, flat)")
        data = list(chain.from_iterable(data))
    elif len(data) != count:
        raise _bad(tensor, f'"data" holds {len(data)} values, shape {show(tensor.shape)} needs {count}')
    unexpected = set(map(type, data)) - _JSON_TYPES[tensor.datatype] - {type(None)}
    if unexpected:
        index, value = next((i, v) for i, v in enumerate(data) if type(v) in unexpected)
        what = "a list: data is nested deeper than its shape" if type(value) is list else f"not {tensor.datatype}"
        raise _bad(tensor, f"element {index} is {show(value)}, {what}")
    return data


def _binary_values(tensor: _Tensor, chunk: memoryview, count: int) -> list[Any]:
    if tensor.datatype == "BYTES":
        return _bytes_elements(tensor, chunk, count)
    import numpy as np

    dtype = np.dtype(_BINARY[tensor.datatype])
    if len(chunk) != count * dtype.itemsize:
        raise _bad(tensor, f"binary_data_size is {len(chunk)}, but shape {show(tensor.shape)} of {tensor.datatype} "
                           f"takes {count * dtype.itemsize} bytes")
    array = np.frombuffer(chunk, dtype=dtype)
    if tensor.datatype == "BOOL":
        if count and int(array.max()) > 1:
            raise _bad(tensor, "a BOOL is one byte, 0 or 1")
        return array.astype(bool).tolist()  # type: ignore[no-any-return]
    if tensor.datatype == "BF16":
        array = (array.astype("<u4") << 16).view("<f4")
    values: list[Any] = array.tolist()
    if tensor.datatype in _FLOATS:
        for index in np.flatnonzero(np.isnan(array)).tolist():
            values[index] = None  # missing: the column says whether it may be
    return values


def _bytes_elements(tensor: _Tensor, chunk: memoryview, count: int) -> list[str]:
    """BYTES elements: each a 4-byte little-endian length, then that many bytes of UTF-8."""
    data, values, offset, index = bytes(chunk), [], 0, 0
    size, length_at = len(data), _LENGTH.unpack_from
    try:
        for index in range(count):
            if offset + 4 > size:
                raise _bad(tensor, f"the binary data ends before element {index} of {count}")
            start, offset = offset + 4, offset + 4 + length_at(data, offset)[0]
            if offset > size:
                raise _bad(tensor, f"element {index} claims {offset - start} bytes, {size - start} are left")
            values.append(data[start:offset].decode())
    except UnicodeDecodeError:
        raise _bad(tensor, f"element {index} is not UTF-8 text") from None
    if offset != size:
        raise _bad(tensor, f"{size - offset} bytes are left after its {count} elements")
    return values


def _requested_outputs(request: _Request) -> tuple[tuple[str, ...], frozenset[str]]:
    """The outputs asked for, and which of them go back as binary data (the output's flag beats the request's)."""
    by_default = (request.parameters or {}).get("binary_data_output", False)
    if type(by_default) is not bool:
        raise V2Error(f"parameters.binary_data_output must be true or false, got {show(by_default)}")
    names: list[str] = []
    binary = set()
    for output in request.outputs or []:
        if output.name not in OUTPUTS:
            raise V2Error(f'output {show(output.name)} does not exist: the outputs are "predict" and '
                          '"predict_proba" (classifiers)')
        if output.name in names:
            raise V2Error(f"output {show(output.name)} is requested more than once")
        parameters = output.parameters or {}
        for unsupported in {"classification", "shared_memory_region"} & parameters.keys():
            raise V2Error(f"output {show(output.name)}: the {unsupported} parameter is not supported")
        flag = parameters.get("binary_data", by_default)
        if type(flag) is not bool:
            raise V2Error(f"output {show(output.name)}: binary_data must be true or false, got {show(flag)}")
        names.append(output.name)
        if flag:
            binary.add(output.name)
    if not names and by_default:
        binary.update(OUTPUTS)
    return tuple(names), frozenset(binary)


def infer_response(model_name: str, version: int, request: InferRequest, result: dict[str, Any],
                   classes: list[Any] | None) -> tuple[bytes, list[tuple[bytes, bytes]]]:
    """The response body for ``result`` (what ``predict_rows`` gave) and the headers it needs.

    Binary outputs follow the JSON; then the headers hold ``Inference-Header-Content-Length``
    and ``Content-Type: application/octet-stream``, else they are empty (the body is JSON).
    Raises :class:`V2Error` (400) if ``predict_proba`` was asked of a model that has none.
    """
    labels = result.get("classes") or classes
    names = request.outputs or (OUTPUTS if "probabilities" in result else ("predict",))
    outputs, buffers = [], []
    for name in names:
        if name == "predict_proba" and "probabilities" not in result:
            raise V2Error(f'output "predict_proba" does not exist for {model_name}: it is not a classifier')
        rows = result["predictions" if name == "predict" else "probabilities"]
        shape = [len(rows)]
        values = rows
        if rows and type(rows[0]) is list:  # probabilities, or a multi-output regressor's predictions: [N, K]
            shape.append(len(rows[0]))
            values = list(chain.from_iterable(rows))
        datatype = "FP64" if name == "predict_proba" else _datatype_of(values)
        tensor: dict[str, Any] = {"name": name, "datatype": datatype, "shape": shape}
        parameters: dict[str, Any] = {}
        if name == "predict_proba" and labels is not None:
            parameters["classes"] = _json(labels).decode()  # a parameter is a string: the column order, as JSON
        if name in request.binary_outputs:
            buffers.append(_binary_output(values, datatype))
            parameters["binary_data_size"] = len(buffers[-1])
        else:
            tensor["data"] = values if datatype != "BYTES" else [v if v is None else str(v) for v in values]
        if parameters:
            tensor["parameters"] = parameters
        outputs.append(tensor)
    body: dict[str, Any] = {"model_name": model_name, "model_version": str(version)}
    if request.id is not None:
        body["id"] = request.id
    body["outputs"] = outputs
    header = _json(body)
    if not buffers:
        return header, []
    return header + b"".join(buffers), [(b"inference-header-content-length", str(len(header)).encode()),
                                        (b"content-type", b"application/octet-stream")]


def _datatype_of(values: Sequence[Any]) -> str:
    """The V2 datatype that holds ``values`` exactly (a null is NaN in FP64; labels of mixed types are text)."""
    types = set(map(type, values))
    if types == {bool}:
        return "BOOL"
    numbers = types - {type(None)}
    if types == {int}:
        low, high = min(values), max(values)
        if -(2**63) <= low and high < 2**63:
            return "INT64"
        if low >= 0 and high < 2**64:
            return "UINT64"
    elif numbers <= {int, float}:
        return "FP64"
    return "BYTES"


def _binary_output(values: list[Any], datatype: str) -> bytes:
    if datatype == "BYTES":
        encoded = [b"" if value is None else str(value).encode("utf-8", "surrogatepass") for value in values]
        return b"".join(struct.pack("<I", len(item)) + item for item in encoded)
    import numpy as np

    code = {"BOOL": "u1", "INT64": "<i8", "UINT64": "<u8", "FP64": "<f8"}[datatype]
    if datatype == "FP64":
        values = [math.nan if value is None else value for value in values]
    return np.asarray(values, dtype=code).tobytes()


def model_metadata(model_name: str, versions: list[int], feature_schema: dict[str, Any], task_type: str | None,
                   classes: list[Any] | None) -> dict[str, Any]:
    """The model metadata response: one ``[-1]`` input per feature column, and the outputs the model gives."""
    from mlops_airflow.serving.loading import CLASSIFIER_TASKS

    inputs = [{"name": column["name"], "datatype": V2_DATATYPES[_checks._dtype_family(column)], "shape": [-1]}
              for column in feature_schema.get("columns", [])]
    outputs: list[dict[str, Any]] = [
        {"name": "predict", "datatype": _datatype_of(classes) if classes else "FP64", "shape": [-1]}
    ]
    if classes or task_type in CLASSIFIER_TASKS:
        proba: dict[str, Any] = {"name": "predict_proba", "datatype": "FP64", "shape": [-1, len(classes or []) or -1]}
        if classes:
            proba["parameters"] = {"classes": _json(classes).decode()}
        outputs.append(proba)
    return {"name": model_name, "versions": [str(version) for version in versions], "platform": "sklearn_skops",
            "inputs": inputs, "outputs": outputs}


def server_metadata() -> dict[str, Any]:
    """The server metadata response; ``binary_tensor_data`` is Triton's name for the extension we take."""
    from mlops_airflow import __version__

    return {"name": "mlops-airflow", "version": __version__, "extensions": ["binary_tensor_data"]}


def error_body(message: str) -> bytes:
    """The protocol's error response: ``{"error": message}``."""
    return _json({"error": message})


def _json(body: Any) -> bytes:
    try:
        return msgspec.json.encode(body)  # a null stands for NaN: predictions come through json_values
    except (UnicodeEncodeError, TypeError, msgspec.EncodeError):
        # a lone surrogate (json.loads accepts them) echoed in a message: json.dumps escapes it
        return json.dumps(body, default=str).encode()
