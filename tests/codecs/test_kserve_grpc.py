"""KServe gRPC codec: decode tables through the wire classes tritonclient ships (protobuf)."""

from __future__ import annotations

import struct
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tritonclient.grpc import service_pb2

from ovtrio.codecs import kserve_grpc
from ovtrio.codecs.kserve_grpc import InferRequestReader
from ovtrio.errors import InvalidArgument, PayloadTooLarge
from ovtrio.tensors import InferResponse, Tensor, datatype
from tests.models import OV_TYPES
from tests.strategies import infer_parameter

VARINT_CASES = [
    ("INT32", "int_contents", [0, 1, -1, 2**31 - 1, -(2**31)]),
    ("INT8", "int_contents", [-128, 127, 0]),
    ("INT64", "int64_contents", [0, -(2**63), 2**63 - 1, 300]),
    ("UINT32", "uint_contents", [0, 2**32 - 1, 128]),
    ("UINT64", "uint64_contents", [0, 2**64 - 1, 2**63 + 5]),
    ("BOOL", "bool_contents", [True, False, True]),
    ("FP32", "fp32_contents", [0.5, -1.25, 3e38]),
    ("FP64", "fp64_contents", [0.1, -1e300]),
    ("BYTES", "bytes_contents", [b"", b"\x00\xff", b"abc"]),
]


def _request(dt: str, field: str, values: list, shape: list[int] | None = None) -> bytes:
    req = service_pb2.ModelInferRequest(model_name="m", model_version="3", id="x")
    t = req.inputs.add(name="in", datatype=dt, shape=shape or [len(values)])
    getattr(t.contents, field).extend(values)
    req.outputs.add(name="out")
    req.parameters["flag"].bool_param = True
    return req.SerializeToString()


@pytest.mark.parametrize(("dt", "field", "values"), VARINT_CASES, ids=[c[0] for c in VARINT_CASES])
def test_typed_contents_decode(dt: str, field: str, values: list) -> None:
    msg = InferRequestReader.FromString(_request(dt, field, values))
    req = kserve_grpc.decode_infer_request(msg)
    assert (req.model_name, req.model_version, req.id) == ("m", 3, "x")
    assert req.parameters == {"flag": True}
    assert [o.name for o in req.outputs or []] == ["out"]
    arr = req.inputs[0].data
    expected = np.array(values, dtype=datatype(dt).numpy)
    assert arr.dtype == expected.dtype
    np.testing.assert_array_equal(arr, expected)


def test_raw_contents_and_bytes_prefixes() -> None:
    req = service_pb2.ModelInferRequest(model_name="m")
    req.inputs.add(name="a", datatype="FP16", shape=[2])
    req.inputs.add(name="s", datatype="BYTES", shape=[2])
    req.raw_input_contents.append(np.array([1.5, -2], "<f2").tobytes())
    req.raw_input_contents.append(struct.pack("<I", 2) + b"hi" + struct.pack("<I", 0))
    out = kserve_grpc.decode_infer_request(InferRequestReader.FromString(req.SerializeToString()))
    np.testing.assert_array_equal(out.inputs[0].data, np.array([1.5, -2], np.float16))
    assert list(out.inputs[1].data) == [b"hi", b""]


ERRORS = [
    ("count", "FP32", "fp32_contents", [1.0], [2], "Expected: 2 values; Actual: 1"),
    ("range", "INT8", "int_contents", [300], [1], "out of range"),
    ("fp16 typed", "FP16", "int_contents", [1], [1], "raw_input_contents"),
    ("wrong field", "FP32", "int_contents", [1], [1], "expects fp32_contents"),
    ("negative dim", "FP32", "fp32_contents", [1.0], [-1], "negative"),
]


@pytest.mark.parametrize(
    ("dt", "field", "values", "shape", "msg"), [e[1:] for e in ERRORS], ids=[e[0] for e in ERRORS]
)
def test_decode_errors(dt: str, field: str, values: list, shape: list[int], msg: str) -> None:
    with pytest.raises(InvalidArgument, match=msg):
        kserve_grpc.decode_infer_request(
            InferRequestReader.FromString(_request(dt, field, values, shape))
        )


def test_unpacked_scalars_fall_back_to_typed_parse() -> None:
    def key(f: int, wt: int) -> bytes:
        return bytes([(f << 3) | wt])

    def ld(f: int, b: bytes) -> bytes:
        return key(f, 2) + bytes([len(b)]) + b

    contents = b"".join(key(6, 5) + struct.pack("<f", x) for x in [1.5, 2.5])
    tensor = (
        ld(1, b"b") + ld(2, b"FP32") + key(3, 0) + b"\x01" + key(3, 0) + b"\x02" + ld(5, contents)
    )
    wire = ld(1, b"dummy") + ld(5, tensor)
    assert list(
        service_pb2.ModelInferRequest.FromString(wire).inputs[0].contents.fp32_contents
    ) == [1.5, 2.5]
    req = kserve_grpc.decode_infer_request(InferRequestReader.FromString(wire))
    np.testing.assert_array_equal(req.inputs[0].data, [[1.5, 2.5]])


def test_encode_response_always_raw() -> None:
    resp = InferResponse(
        "m",
        2,
        [
            Tensor("a", datatype("FP32"), np.ones((1, 2), np.float32)),
            Tensor("s", datatype("BYTES"), np.array([b"xy"], dtype=object)),
        ],
        id="r",
    )
    msg = service_pb2.ModelInferResponse.FromString(bytes(kserve_grpc.encode_infer_response(resp)))
    assert (msg.model_name, msg.model_version, msg.id) == ("m", "2", "r")
    assert [o.name for o in msg.outputs] == ["a", "s"]
    assert list(msg.outputs[0].shape) == [1, 2]
    assert msg.raw_output_contents[0] == np.ones(2, "<f4").tobytes()
    assert msg.raw_output_contents[1] == struct.pack("<I", 2) + b"xy"


RESPONSE_CASES = [
    (name, shape) for name in sorted(OV_TYPES) for shape in ((2, 3), (0, 4), (1,), (300, 1))
]


@pytest.mark.parametrize(
    ("dt", "shape"), RESPONSE_CASES, ids=[f"{d}-{s}" for d, s in RESPONSE_CASES]
)
def test_encode_response_matches_protobuf(dt: str, shape: tuple[int, ...]) -> None:
    """The hand-written encoder writes what protobuf itself writes, byte for byte."""
    row = datatype(dt)
    count = int(np.prod(shape))
    if dt == "BYTES":
        data = np.array([b"v%d" % i for i in range(count)], dtype=object).reshape(shape)
        raw = b"".join(struct.pack("<I", len(x)) + x for x in data.reshape(-1))
    else:
        data = (np.arange(count) % 7).astype(row.numpy).reshape(shape)
        raw = data.astype(row.numpy.newbyteorder("<")).tobytes()
    for version, rid in ((1, ""), (2**40, "req-\u00e9")):
        resp = InferResponse("m\u00f6del", version, [Tensor("out", row, data)], id=rid)
        ref = service_pb2.ModelInferResponse(
            model_name="m\u00f6del", model_version=str(version), id=rid
        )
        ref.outputs.add(name="out", datatype=dt, shape=list(shape))
        ref.raw_output_contents.append(raw)
        assert bytes(kserve_grpc.encode_infer_response(resp)) == ref.SerializeToString()


def test_encode_response_negative_dims_and_many_outputs() -> None:
    outputs = [Tensor(f"o{i}", datatype("FP32"), np.zeros((1, i), np.float32)) for i in range(3)]
    msg = service_pb2.ModelInferResponse.FromString(
        bytes(kserve_grpc.encode_infer_response(InferResponse("m", 1, outputs)))
    )
    assert [list(o.shape) for o in msg.outputs] == [[1, 0], [1, 1], [1, 2]]
    assert [len(r) for r in msg.raw_output_contents] == [0, 4, 8]
    assert kserve_grpc._varint(-1) == b"\xff" * 9 + b"\x01"  # int64 -1, as protobuf writes it


@pytest.mark.parametrize(("text", "expected"), [("", None), ("0", 0), ("12", 12)])
def test_parse_version(text: str, expected: int | None) -> None:
    assert kserve_grpc.parse_version(text) == expected


@pytest.mark.parametrize("text", ["latest", "-1", "1.0", "١"])
def test_parse_version_invalid(text: str) -> None:
    with pytest.raises(InvalidArgument, match="invalid model version format"):
        kserve_grpc.parse_version(text)


# --- the hand-written request parser against betterproto2 --------------------------------------

_DATATYPES = sorted(OV_TYPES)
_dims = st.lists(st.integers(min_value=-3, max_value=5) | st.just(2**62), max_size=4)


@st.composite
def _requests(draw: st.DrawFn) -> bytes:
    req = service_pb2.ModelInferRequest(
        model_name=draw(st.text(max_size=8)),
        model_version=draw(st.sampled_from(["", "1", "07", "x"])),
        id=draw(st.text(max_size=4)),
    )
    for i in range(draw(st.integers(0, 3))):
        t = req.inputs.add(
            name=draw(st.sampled_from([f"in{i}", "in0", ""])),
            datatype=draw(st.sampled_from([*_DATATYPES, "FP99", ""])),
            shape=draw(_dims),
        )
        if draw(st.integers(0, 9)) == 0:
            t.contents.fp32_contents.extend([1.0, 2.0])
        if draw(st.integers(0, 9)) == 0:
            t.parameters["p"].int64_param = 3
    for _ in range(draw(st.integers(0, 3))):
        req.raw_input_contents.append(draw(st.binary(max_size=24)))
    for name in draw(st.lists(st.sampled_from(["out", "o2", ""]), max_size=2)):
        req.outputs.add(name=name)
    for key in draw(st.lists(st.sampled_from(["q", "r", "", "ü"]), max_size=3)):
        req.parameters[key].CopyFrom(infer_parameter(draw, allow_nan=False))
    wire = req.SerializeToString()
    cut = draw(st.sampled_from(["whole", "truncate", "flip"]))
    if cut == "truncate" and wire:
        wire = wire[: draw(st.integers(0, len(wire) - 1))]
    elif cut == "flip" and wire:
        at = draw(st.integers(0, len(wire) - 1))
        wire = wire[:at] + bytes([wire[at] ^ draw(st.integers(1, 255))]) + wire[at + 1 :]
    return wire


def _outcome(msg: object) -> object:
    try:
        req = kserve_grpc.decode_infer_request(msg, max_elements=1000)  # type: ignore[arg-type]
    except (InvalidArgument, PayloadTooLarge) as exc:
        return ("error", type(exc).__name__, str(exc))
    return (
        req.model_name,
        req.model_version,
        req.id,
        req.parameters,
        None if req.outputs is None else [(o.name, o.parameters) for o in req.outputs],
        [
            (
                t.name,
                t.datatype.kserve,
                t.data.shape,
                t.data.tolist() if t.data.dtype == object else t.data.tobytes(),
            )
            for t in req.inputs
        ],
    )


@settings(max_examples=600, deadline=None)
@given(_requests())
def test_fast_parse_reads_what_betterproto_reads(wire: bytes) -> None:
    """Every message the hand-written parser accepts decodes exactly as through betterproto2;
    it hands every other one (parameters, contents, damaged bytes) to betterproto2."""
    fast = kserve_grpc.parse_infer_request(wire)
    if fast is None:
        return
    slow = InferRequestReader.parse_betterproto(wire)
    assert _outcome(fast) == _outcome(slow)

    # also where decoding stops earlier (no inputs, a bad datatype): the parameters as read
    # (values compared by repr: a NaN double parameter reads alike but is not equal to itself)
    def read(parameters: Any) -> list[tuple[str, str]]:
        return sorted(
            (k, repr(v)) for k, v in kserve_grpc.parameters_to_dict(dict(parameters)).items()
        )

    assert read(fast.parameters) == read(slow.parameters)


def test_fast_parse_takes_the_common_request_and_leaves_the_rest() -> None:
    plain = _request("FP32", "fp32_contents", [])
    req = service_pb2.ModelInferRequest(model_name="m", raw_input_contents=[b"\0" * 8])
    req.inputs.add(name="x", datatype="FP32", shape=[1, 2])
    req.outputs.add(name="y")
    fast = kserve_grpc.parse_infer_request(req.SerializeToString())
    assert fast is not None
    assert (fast.inputs[0].shape, fast.outputs[0].name) == ([1, 2], "y")
    assert kserve_grpc.parse_infer_request(plain) is None  # contents: betterproto2's job
    # what perf_analyzer and Triton's C++ client send: one request-level parameter
    req.parameters["triton_enable_empty_final_response"].bool_param = True
    req.parameters["n"].int64_param = -2
    fast = kserve_grpc.parse_infer_request(req.SerializeToString())
    assert fast is not None
    assert kserve_grpc.decode_infer_request(fast).parameters == {
        "triton_enable_empty_final_response": True,
        "n": -2,
    }
    assert isinstance(fast.raw_input_contents[0], memoryview)  # no copy of the tensor
    assert kserve_grpc.parse_infer_request(b"\x0a\x02\xff\xfe") is None  # invalid UTF-8
    assert kserve_grpc.parse_infer_request(b"\x0a\x05ab") is None  # truncated


def test_fast_parse_leaves_overlong_varints_to_betterproto() -> None:
    # shape [2**64 + 1] as a ten-byte varint (bits beyond 64): not the fast parser's to judge
    dim = b"\x81" + b"\x80" * 8 + b"\x02"
    tensor = b"\x0a\x01x\x12\x04FP32\x1a" + bytes([len(dim)]) + dim
    wire = b"\x2a" + bytes([len(tensor)]) + tensor
    assert kserve_grpc.parse_infer_request(wire) is None
    ok = b"\x2a\x0d\x0a\x01x\x12\x04FP32\x1a\x02\x02\x03"  # shape [2, 3]
    parsed = kserve_grpc.parse_infer_request(ok)
    assert parsed is not None and parsed.inputs[0].shape == [2, 3]
