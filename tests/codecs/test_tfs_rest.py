"""TF Serving REST predict codec: row / column JSON both ways."""

from __future__ import annotations

import base64
import json
from typing import Any

import numpy as np
import orjson
import pytest

from ovtrio.codecs.tfs_rest import decode_predict, encode_predict
from ovtrio.errors import (
    FailedPrecondition,
    InvalidArgument,
    JsonInvalid,
    OvtrioError,
    PayloadTooLarge,
)
from ovtrio.tensors import DATATYPES, InferResponse, Tensor, TensorSpec, datatype

Array = np.ndarray[Any, Any]

# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------


def spec(name: str, kserve: str, shape: tuple[int, ...] = (-1,)) -> TensorSpec:
    return TensorSpec(name, datatype(kserve), shape)


def arr(kserve: str, values: Any, shape: tuple[int, ...] | None = None) -> Array:
    row = datatype(kserve)
    if kserve == "BYTES":
        flat = list(values)
        out = np.empty(len(flat), dtype=object)
        out[:] = [v.encode() if isinstance(v, str) else v for v in flat]
    else:
        out = np.array(values, dtype=row.numpy).reshape(-1)
    return out.reshape(shape if shape is not None else (len(out),))


def assert_same(actual: Array, expected: Array) -> None:
    assert actual.shape == expected.shape
    if expected.dtype == np.dtype(object):
        assert actual.dtype == np.dtype(object)
        assert actual.tolist() == expected.tolist()
        assert all(type(e) is bytes for e in actual.reshape(-1).tolist())
    else:
        assert actual.dtype == expected.dtype
        assert np.ascontiguousarray(actual).tobytes() == np.ascontiguousarray(expected).tobytes()


def b64(data: bytes) -> dict[str, str]:
    return {"b64": base64.b64encode(data).decode()}


def body(doc: Any) -> bytes:
    return doc if isinstance(doc, bytes) else orjson.dumps(doc)


ONE = [spec("x", "FP32", (-1, 3))]
TWO = [spec("a", "INT32"), spec("b", "FP32")]
IMG = [spec("image", "UINT8", (-1, 224, 224, 3))]
STR = [spec("text", "BYTES")]

# ---------------------------------------------------------------------------------------------
# decode
# ---------------------------------------------------------------------------------------------

# (id, body, input specs, format, [(name, expected array)])
DECODE_CASES: list[tuple[str, Any, list[TensorSpec], str, list[tuple[str, Array]]]] = [
    # row format
    (
        "row unnamed",
        {"instances": [[1, 2, 3], [4, 5, 6]]},
        ONE,
        "row",
        [("x", arr("FP32", [1, 2, 3, 4, 5, 6], (2, 3)))],
    ),
    (
        "row unnamed scalars",
        {"instances": [1.5, 2.5]},
        ONE,
        "row",
        [("x", arr("FP32", [1.5, 2.5]))],
    ),
    (
        "row named single input",
        {"instances": [{"x": [1, 2, 3]}, {"x": [4, 5, 6]}]},
        ONE,
        "row",
        [("x", arr("FP32", [1, 2, 3, 4, 5, 6], (2, 3)))],
    ),
    (
        "row named multiple inputs",
        {"instances": [{"a": [1, 2], "b": 0.5}, {"b": 1.5, "a": [3, 4]}]},
        TWO,
        "row",
        [("a", arr("INT32", [1, 2, 3, 4], (2, 2))), ("b", arr("FP32", [0.5, 1.5]))],
    ),
    (
        "row unnamed b64",
        {"instances": [b64(b"\x89PNG"), b64(b"\xff\xd8")]},
        IMG,
        "row",
        [("image", arr("BYTES", [b"\x89PNG", b"\xff\xd8"]))],
    ),
    (
        "row named b64 (OVMS doc example)",
        {"instances": [{"image": {"b64": "YXdlc29tZSBpbWFnZSBieXRlcw=="}}]},
        IMG,
        "row",
        [("image", arr("BYTES", [b"awesome image bytes"]))],
    ),
    (
        "row named strings",
        {"instances": [{"text": "hello"}, {"text": "żółw"}]},
        STR,
        "row",
        [("text", arr("BYTES", ["hello", "żółw"]))],
    ),
    (
        "row 3-D per instance",
        {"instances": [[[1, 2], [3, 4]], [[5, 6], [7, 8]]]},
        [spec("x", "INT64", (-1, 2, 2))],
        "row",
        [("x", arr("INT64", range(1, 9), (2, 2, 2)))],
    ),
    # column format
    (
        "column unnamed list",
        {"inputs": [[1, 2, 3]]},
        ONE,
        "column",
        [("x", arr("FP32", [1, 2, 3], (1, 3)))],
    ),
    ("column unnamed scalar", {"inputs": 7}, ONE, "column", [("x", arr("FP32", [7], ()))]),
    (
        "column named",
        {"inputs": {"a": [[1, 2]], "b": [0.25, 0.5, 0.75]}},
        TWO,
        "column",
        [("a", arr("INT32", [1, 2], (1, 2))), ("b", arr("FP32", [0.25, 0.5, 0.75]))],
    ),
    (
        "column b64 object as the value",
        {"inputs": b64(b"jpeg")},
        IMG,
        "column",
        [("image", arr("BYTES", [b"jpeg"], ()))],
    ),
    (
        "column named b64 list (ovmsclient)",
        {"inputs": {"image": [b64(b"one"), b64(b"two")]}},
        IMG,
        "column",
        [("image", arr("BYTES", [b"one", b"two"]))],
    ),
    (
        "column nested strings",
        {"inputs": {"text": [["a", "b"], ["c", "d"]]}},
        STR,
        "column",
        [("text", arr("BYTES", ["a", "b", "c", "d"], (2, 2)))],
    ),
    (
        "column empty list",
        {"inputs": {"a": []}},
        TWO,
        "column",
        [("a", arr("INT32", [], (0,)))],
    ),
    (
        "column empty rows",
        {"inputs": [[], []]},
        ONE,
        "column",
        [("x", arr("FP32", [], (2, 0)))],
    ),
    # numbers are read in the model's precision
    (
        "INT8",
        {"inputs": [-128, 127]},
        [spec("x", "INT8")],
        "column",
        [("x", arr("INT8", [-128, 127]))],
    ),
    (
        "UINT8",
        {"inputs": [0, 255]},
        [spec("x", "UINT8")],
        "column",
        [("x", arr("UINT8", [0, 255]))],
    ),
    (
        "INT16",
        {"inputs": [-32768]},
        [spec("x", "INT16")],
        "column",
        [("x", arr("INT16", [-32768]))],
    ),
    (
        "UINT16",
        {"inputs": [65535]},
        [spec("x", "UINT16")],
        "column",
        [("x", arr("UINT16", [65535]))],
    ),
    (
        "UINT32",
        {"inputs": [0, 4294967295]},
        [spec("x", "UINT32")],
        "column",
        [("x", arr("UINT32", [0, 2**32 - 1]))],
    ),
    (
        "UINT64 beyond int64",
        {"inputs": [1, 18446744073709551615]},
        [spec("x", "UINT64")],
        "column",
        [("x", arr("UINT64", [1, 2**64 - 1]))],
    ),
    (
        "INT64 extremes",
        {"inputs": [-9223372036854775808, 9223372036854775807]},
        [spec("x", "INT64")],
        "column",
        [("x", arr("INT64", [-(2**63), 2**63 - 1]))],
    ),
    (
        "FP16",
        {"inputs": [0.5, -65504, 1]},
        [spec("x", "FP16")],
        "column",
        [("x", arr("FP16", [0.5, -65504, 1]))],
    ),
    (
        "FP64 precision kept",
        {"inputs": [0.1, 1e300]},
        [spec("x", "FP64")],
        "column",
        [("x", arr("FP64", [0.1, 1e300]))],
    ),
    (
        "ints for a float input",
        {"inputs": [1, 2]},
        [spec("x", "FP32")],
        "column",
        [("x", arr("FP32", [1, 2]))],
    ),
    (
        "BOOL true/false",
        {"inputs": [True, False]},
        [spec("x", "BOOL")],
        "column",
        [("x", arr("BOOL", [True, False]))],
    ),
    ("BOOL 0/1", {"inputs": [0, 1]}, [spec("x", "BOOL")], "column", [("x", arr("BOOL", [0, 1]))]),
    (
        "NaN and Infinity tokens",
        b'{"inputs": [NaN, Infinity, -Infinity, 1.5]}',
        [spec("x", "FP32")],
        "column",
        [("x", arr("FP32", [np.nan, np.inf, -np.inf, 1.5]))],
    ),
    (
        "strings for a numeric input (image bytes)",
        {"instances": [{"image": "raw"}]},
        IMG,
        "row",
        [("image", arr("BYTES", [b"raw"]))],
    ),
    (
        "unpadded b64",
        {"inputs": {"text": [{"b64": "YQ"}]}},
        STR,
        "column",
        [("text", arr("BYTES", [b"a"]))],
    ),
    (
        "signature_name serving_default",
        {"signature_name": "serving_default", "inputs": [[0, 0, 0]]},
        ONE,
        "column",
        [("x", arr("FP32", [0, 0, 0], (1, 3)))],
    ),
    (
        "signature_name empty",
        {"signature_name": "", "instances": [[0, 0, 0]]},
        ONE,
        "row",
        [("x", arr("FP32", [0, 0, 0], (1, 3)))],
    ),
    # inputs the model does not have pass through (OVMS: integers INT32, decimals FP32)
    (
        "unknown names",
        {"inputs": {"i": [1, 2], "f": [1.5], "big": [2**40], "u": [2**63], "t": [True]}},
        ONE,
        "column",
        [
            ("i", arr("INT32", [1, 2])),
            ("f", arr("FP32", [1.5])),
            ("big", arr("INT64", [2**40])),
            ("u", arr("UINT64", [2**63])),
            ("t", arr("BOOL", [True])),
        ],
    ),
]


@pytest.mark.parametrize(
    ("doc", "specs", "fmt", "expected"),
    [c[1:] for c in DECODE_CASES],
    ids=[c[0] for c in DECODE_CASES],
)
def test_decode(
    doc: Any, specs: list[TensorSpec], fmt: str, expected: list[tuple[str, Array]]
) -> None:
    req, got_fmt = decode_predict(body(doc), model_name="m", model_version=3, input_specs=specs)
    assert got_fmt == fmt
    assert (req.model_name, req.model_version, req.outputs) == ("m", 3, None)
    assert [t.name for t in req.inputs] == [name for name, _ in expected]
    for tensor, (_, array) in zip(req.inputs, expected, strict=True):
        row = datatype("BYTES") if array.dtype == object else tensor.datatype
        assert tensor.datatype is row
        assert tensor.datatype.numpy == array.dtype or array.dtype == object
        assert_same(tensor.data, array)


def test_decode_accepts_bytearray_and_memoryview() -> None:
    raw = b'{"inputs": [[1, 2, 3]]}'
    for data in (bytearray(raw), memoryview(raw)):
        req, _ = decode_predict(data, model_name="m", model_version=None, input_specs=ONE)
        assert req.inputs[0].data.shape == (1, 3)


PARSE_INSTANCE = "Could not parse instance content. Not valid ndarray detected"
PARSE_INPUT = "Could not parse input content. Not valid ndarray detected"

# (id, body, specs, exception, message substring)
ERROR_CASES: list[tuple[str, Any, list[TensorSpec], type[Exception], str]] = [
    ("not json", b"{inputs: 1}", ONE, JsonInvalid, "The file is not valid json - Error: "),
    ("empty body", b"", ONE, JsonInvalid, "The file is not valid json - Error: "),
    ("NaN but broken", b'{"inputs": [NaN,]}', ONE, JsonInvalid, "The file is not valid json"),
    ("array body", [1, 2], ONE, InvalidArgument, "Request body should be JSON object"),
    ("string body", "x", ONE, InvalidArgument, "Request body should be JSON object"),
    (
        "neither",
        {"data": [1]},
        ONE,
        InvalidArgument,
        "Invalid JSON structure. Could not detect row or column format",
    ),
    (
        "both",
        {"inputs": [1], "instances": [1]},
        ONE,
        InvalidArgument,
        "Invalid JSON structure. Could not detect row or column format",
    ),
    (
        "unknown signature",
        {"signature_name": "predict", "inputs": [1]},
        ONE,
        FailedPrecondition,
        'Serving signature key "predict" not found.',
    ),
    (
        "signature not a string",
        {"signature_name": 1, "inputs": [1]},
        ONE,
        InvalidArgument,
        "'signature_name' key must be a string value",
    ),
    (
        "instances not a list",
        {"instances": {"x": [1]}},
        ONE,
        InvalidArgument,
        "Invalid JSON structure. Nonamed instance is not an array.",
    ),
    (
        "instances empty",
        {"instances": []},
        ONE,
        InvalidArgument,
        "Invalid JSON structure. Missing instances in row format",
    ),
    (
        "rows name different inputs",
        {"instances": [{"a": 1, "b": 2}, {"a": 1}]},
        TWO,
        InvalidArgument,
        "Invalid JSON structure. Request inputs have different batch sizes - instance 1",
    ),
    (
        "named then plain instance",
        {"instances": [{"a": 1, "b": 2}, [1]]},
        TWO,
        InvalidArgument,
        "Invalid JSON structure. One of named instances is not a JSON object.",
    ),
    (
        "empty named instance",
        {"instances": [{}]},
        ONE,
        InvalidArgument,
        f"{PARSE_INSTANCE} - instance 0 is an empty object",
    ),
    (
        "plain rows for two inputs",
        {"instances": [[1], [2]]},
        TWO,
        InvalidArgument,
        "'instances' is a plain list, but the model has 2 inputs",
    ),
    (
        "plain column for two inputs",
        {"inputs": [1, 2]},
        TWO,
        InvalidArgument,
        "'inputs' is a plain value or list, but the model has 2 inputs",
    ),
    (
        "empty inputs object",
        {"inputs": {}},
        ONE,
        InvalidArgument,
        "Invalid JSON structure. Missing inputs in column format",
    ),
    (
        "ragged rows",
        {"instances": [[1, 2, 3], [4, 5]]},
        ONE,
        InvalidArgument,
        f"{PARSE_INSTANCE} - ragged nested lists; input name: x",
    ),
    (
        "ragged named rows",
        {"instances": [{"x": [1, 2]}, {"x": [1]}]},
        ONE,
        InvalidArgument,
        PARSE_INSTANCE,
    ),
    (
        "ragged column",
        {"inputs": {"x": [[1], [2, 3]]}},
        ONE,
        InvalidArgument,
        f"{PARSE_INPUT} - ragged nested lists; input name: x",
    ),
    (
        "ragged column depth",
        {"inputs": [[1, 2], 3]},
        ONE,
        InvalidArgument,
        PARSE_INPUT,
    ),
    (
        "ragged empty",
        {"inputs": [[], [1]]},
        ONE,
        InvalidArgument,
        PARSE_INPUT,
    ),
    (
        "ragged strings",
        {"inputs": [["a"], ["b", "c"]]},
        STR,
        InvalidArgument,
        f"{PARSE_INPUT} - ragged nested lists; input name: text",
    ),
    (
        "bad base64",
        {"instances": [{"image": {"b64": "not base64!"}}]},
        IMG,
        InvalidArgument,
        "Decode Base64 to string error - invalid base64 data; input name: image",
    ),
    (
        "bad base64 length",
        {"inputs": {"b64": "abcde"}},
        IMG,
        InvalidArgument,
        "Decode Base64 to string error",
    ),
    (
        "floats for an int input",
        {"inputs": [1, 2.5]},
        [spec("x", "INT32")],
        InvalidArgument,
        f"{PARSE_INPUT} - expected integers for datatype INT32; input name: x",
    ),
    (
        "integral float for an int input",
        {"inputs": [1.0]},
        [spec("x", "INT64")],
        InvalidArgument,
        "expected integers for datatype INT64",
    ),
    (
        "INT8 out of range",
        {"inputs": [1, 128]},
        [spec("x", "INT8")],
        InvalidArgument,
        f"{PARSE_INPUT} - value out of range for datatype INT8 [-128, 127]; input name: x",
    ),
    (
        "UINT8 negative",
        {"instances": [-1]},
        [spec("x", "UINT8")],
        InvalidArgument,
        f"{PARSE_INSTANCE} - value out of range for datatype UINT8 [0, 255]",
    ),
    (
        "UINT64 mixed with negative",
        {"inputs": [-1, 18446744073709551615]},
        [spec("x", "UINT64")],
        InvalidArgument,
        "value out of range for datatype UINT64",
    ),
    (
        "beyond 64 bits",
        {"inputs": {"z": [-1, 18446744073709551615]}},
        ONE,
        InvalidArgument,
        "integer out of 64-bit range; input name: z",
    ),
    (
        "FP32 overflow",
        {"inputs": [1e39]},
        [spec("x", "FP32")],
        InvalidArgument,
        "value out of range for datatype FP32",
    ),
    (
        "FP16 overflow",
        {"inputs": [70000]},
        [spec("x", "FP16")],
        InvalidArgument,
        "value out of range for datatype FP16",
    ),
    (
        "booleans for a float input",
        {"inputs": [True]},
        [spec("x", "FP32")],
        InvalidArgument,
        "expected numbers, found booleans, for datatype FP32",
    ),
    (
        "2 for BOOL",
        {"inputs": [0, 2]},
        [spec("x", "BOOL")],
        InvalidArgument,
        "expected true/false (or 0/1) for datatype BOOL",
    ),
    (
        "null",
        {"inputs": [1, None]},
        ONE,
        InvalidArgument,
        f"{PARSE_INPUT} - expected numbers, found null; input name: x",
    ),
    (
        "null scalar",
        {"inputs": None},
        ONE,
        InvalidArgument,
        "expected numbers, found null",
    ),
    (
        "numbers after strings",
        {"inputs": ["a", 1]},
        IMG,
        InvalidArgument,
        'expected only strings or {"b64": ...} objects, found a number',
    ),
    (
        "strings after numbers",
        {"inputs": [1, "a"]},
        ONE,
        InvalidArgument,
        "expected numbers, found a string",
    ),
    (
        "object leaf",
        {"inputs": [{"c": 1}]},
        ONE,
        InvalidArgument,
        "found an object",
    ),
    (
        "numbers for a string input",
        {"inputs": [1, 2]},
        STR,
        InvalidArgument,
        'expected strings or {"b64": ...} objects for a DT_STRING input; input name: text',
    ),
    (
        "too deep",
        {"inputs": [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]},
        ONE,
        InvalidArgument,
        "nested deeper than 32 levels",
    ),
]


@pytest.mark.parametrize(
    ("doc", "specs", "exc", "message"),
    [c[1:] for c in ERROR_CASES],
    ids=[c[0] for c in ERROR_CASES],
)
def test_decode_errors(
    doc: Any, specs: list[TensorSpec], exc: type[Exception], message: str
) -> None:
    with pytest.raises(exc) as info:
        decode_predict(body(doc), model_name="m", model_version=None, input_specs=specs)
    assert type(info.value) is exc
    assert message in str(info.value)


def test_decode_max_elements_before_allocation() -> None:
    doc = body({"inputs": [[0.5] * 4] * 3})
    with pytest.raises(PayloadTooLarge, match="at most 11 elements; Actual: 12 elements"):
        decode_predict(doc, model_name="m", model_version=None, input_specs=ONE, max_elements=11)
    req, _ = decode_predict(
        doc, model_name="m", model_version=None, input_specs=ONE, max_elements=12
    )
    assert req.inputs[0].data.shape == (3, 4)


def test_decode_json_error_message_is_orjsons() -> None:
    with pytest.raises(JsonInvalid) as info:
        decode_predict(b"[1,", model_name="m", model_version=None, input_specs=ONE)
    assert info.value.http_status == 412
    assert str(info.value).startswith("The file is not valid json - Error: ")


# ---------------------------------------------------------------------------------------------
# encode
# ---------------------------------------------------------------------------------------------


def response(*tensors: tuple[str, str, Any]) -> InferResponse:
    return InferResponse("m", 1, [Tensor(n, datatype(k), v) for n, k, v in tensors])


F32 = arr("FP32", [0.5, 1, 2, 3], (2, 2))
I64 = arr("INT64", [7, -8], (2, 1))

# (id, response, format, expected body)
ENCODE_CASES: list[tuple[str, InferResponse, str, bytes]] = [
    (
        "column one output",
        response(("y", "FP32", F32)),
        "column",
        b'{"outputs":[[0.5,1.0],[2.0,3.0]]}',
    ),
    (
        "column two outputs",
        response(("y", "FP32", F32), ("z", "INT64", I64)),
        "column",
        b'{"outputs":{"y":[[0.5,1.0],[2.0,3.0]],"z":[[7],[-8]]}}',
    ),
    (
        "row one output",
        response(("y", "FP32", F32)),
        "row",
        b'{"predictions":[[0.5,1.0],[2.0,3.0]]}',
    ),
    (
        "row two outputs",
        response(("y", "FP32", F32), ("z", "INT64", I64)),
        "row",
        b'{"predictions":[{"y":[0.5,1.0],"z":[7]},{"y":[2.0,3.0],"z":[-8]}]}',
    ),
    (
        "row two 1-D outputs",
        response(("p", "FP32", arr("FP32", [0.25, 0.75])), ("c", "INT32", arr("INT32", [1, 0]))),
        "row",
        b'{"predictions":[{"p":0.25,"c":1},{"p":0.75,"c":0}]}',
    ),
    (
        "column scalar",
        response(("s", "FP64", arr("FP64", [2.5], ()))),
        "column",
        b'{"outputs":2.5}',
    ),
    (
        "column NaN/Infinity",
        response(("y", "FP32", arr("FP32", [np.nan, 1, np.inf, -np.inf], (2, 2)))),
        "column",
        b'{"outputs":[[NaN,1.0],[Infinity,-Infinity]]}',
    ),
    (
        "row NaN, two outputs",
        response(("y", "FP64", arr("FP64", [np.nan, 1])), ("z", "FP32", arr("FP32", [0, -np.inf]))),
        "row",
        b'{"predictions":[{"y":NaN,"z":0.0},{"y":1.0,"z":-Infinity}]}',
    ),
    (
        "NaN scalar",
        response(("s", "FP16", arr("FP16", [np.nan], ()))),
        "column",
        b'{"outputs":NaN}',
    ),
    ("FP16", response(("h", "FP16", arr("FP16", [0.5, -2]))), "column", b'{"outputs":[0.5,-2.0]}'),
    (
        "integer extremes",
        response(
            ("u", "UINT64", arr("UINT64", [2**64 - 1])),
            ("i", "INT8", arr("INT8", [-128])),
            ("b", "BOOL", arr("BOOL", [True])),
        ),
        "column",
        b'{"outputs":{"u":[18446744073709551615],"i":[-128],"b":[true]}}',
    ),
    (
        "strings",
        response(("t", "BYTES", arr("BYTES", ["a", "żółw"], (1, 2)))),
        "column",
        '{"outputs":[["a","żółw"]]}'.encode(),
    ),
    (
        "_bytes suffix",
        response(("img_bytes", "BYTES", arr("BYTES", [b"ab"]))),
        "column",
        b'{"outputs":[{"b64":"YWI="}]}',
    ),
    (
        "invalid utf-8 goes b64",
        response(("t", "BYTES", arr("BYTES", [b"ok", b"\xff"]))),
        "row",
        b'{"predictions":["ok",{"b64":"/w=="}]}',
    ),
    (
        "row strings with numbers",
        response(("t", "BYTES", arr("BYTES", ["x", "y"])), ("s", "FP32", arr("FP32", [1, 2]))),
        "row",
        b'{"predictions":[{"t":"x","s":1.0},{"t":"y","s":2.0}]}',
    ),
    ("empty", response(("e", "FP32", arr("FP32", [], (0, 3)))), "column", b'{"outputs":[]}'),
]


@pytest.mark.parametrize(
    ("resp", "fmt", "expected"),
    [c[1:] for c in ENCODE_CASES],
    ids=[c[0] for c in ENCODE_CASES],
)
def test_encode(resp: InferResponse, fmt: Any, expected: bytes) -> None:
    out = encode_predict(resp, fmt)
    assert out == expected
    json.loads(out)  # the standard library (ovmsclient's parser) reads NaN / Infinity tokens


def test_encode_non_contiguous_big_endian() -> None:
    data = np.arange(6, dtype=">f4").reshape(2, 3)[:, ::2]
    assert encode_predict(response(("y", "FP32", data)), "column") == (
        b'{"outputs":[[0.0,2.0],[3.0,5.0]]}'
    )


@pytest.mark.parametrize(
    ("resp", "fmt", "exc", "message"),
    [
        (
            response(("a", "FP32", F32), ("b", "FP32", arr("FP32", [1, 2, 3]))),
            "row",
            InvalidArgument,
            "Tensor name: b has inconsistent batch size: 3 expecting: 2",
        ),
        (
            response(("s", "FP32", arr("FP32", [1], ()))),
            "row",
            InvalidArgument,
            "Tensor name: s has no shape information",
        ),
        (response(), "column", OvtrioError, "Cannot convert empty tensor map to JSON"),
        (
            response(("t", "BYTES", np.array([1], dtype=object))),
            "column",
            OvtrioError,
            "BYTES output t holds a int, not bytes",
        ),
    ],
    ids=["inconsistent batch", "row scalar", "no outputs", "not bytes"],
)
def test_encode_errors(resp: InferResponse, fmt: Any, exc: type[Exception], message: str) -> None:
    with pytest.raises(exc) as info:
        encode_predict(resp, fmt)
    assert type(info.value) is exc
    assert str(info.value) == message


# ---------------------------------------------------------------------------------------------
# round trip: what the server writes, read back as a request
# ---------------------------------------------------------------------------------------------

ROUND_TRIP: dict[str, Array] = {
    "BOOL": arr("BOOL", [True, False, True, True], (2, 2)),
    "UINT8": arr("UINT8", [0, 255, 1, 2], (2, 2)),
    "UINT16": arr("UINT16", [0, 65535, 1, 2], (2, 2)),
    "UINT32": arr("UINT32", [0, 2**32 - 1, 1, 2], (2, 2)),
    "UINT64": arr("UINT64", [0, 2**64 - 1, 1, 2], (2, 2)),
    "INT8": arr("INT8", [-128, 127, 0, -1], (2, 2)),
    "INT16": arr("INT16", [-32768, 32767, 0, -1], (2, 2)),
    "INT32": arr("INT32", [-(2**31), 2**31 - 1, 0, -1], (2, 2)),
    "INT64": arr("INT64", [-(2**63), 2**63 - 1, 0, -1], (2, 2)),
    "FP16": arr("FP16", [0.5, -65504, np.nan, -0.0], (2, 2)),
    "FP32": arr("FP32", [0.1, -3.4e38, np.inf, 1e-45], (2, 2)),
    "FP64": arr("FP64", [0.1, -1e308, -np.inf, 5e-324], (2, 2)),
    "BYTES": arr("BYTES", ["a", "", "żółw", "\x00"], (2, 2)),
}
assert set(ROUND_TRIP) == {d.kserve for d in DATATYPES}


@pytest.mark.parametrize("fmt", ["row", "column"])
@pytest.mark.parametrize("kserve", list(ROUND_TRIP))
def test_round_trip(kserve: str, fmt: Any) -> None:
    sample = ROUND_TRIP[kserve]
    out = encode_predict(response(("x", kserve, sample), ("y", kserve, sample)), fmt)
    key = "predictions" if fmt == "row" else "outputs"
    request = out.replace(key.encode(), b"instances" if fmt == "row" else b"inputs", 1)
    specs = [spec("x", kserve), spec("y", kserve)]
    req, got = decode_predict(request, model_name="m", model_version=None, input_specs=specs)
    assert got == fmt
    for tensor in req.inputs:
        assert tensor.datatype is datatype(kserve)
        assert_same(tensor.data, sample)


def test_round_trip_bytes_suffix_b64() -> None:
    sample = arr("BYTES", [b"\x00\xff", b"\x89PNG"])
    out = encode_predict(response(("img_bytes", "BYTES", sample)), "column")
    req, _ = decode_predict(
        out.replace(b"outputs", b"inputs"),
        model_name="m",
        model_version=None,
        input_specs=[spec("img_bytes", "BYTES")],
    )
    assert_same(req.inputs[0].data, sample)
