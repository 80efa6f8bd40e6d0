"""Wire-format checks for the vendored protos (protos/) and the betterproto2 code generated
from them (src/ovtrio/_proto/, by scripts/gen-protos).

Generated modules (relative imports inside, one module per proto package):
    ovtrio._proto.inference        KServe v2 + Triton extensions (+ model_config)
    ovtrio._proto.inference_raw    decode-only shadow of ModelInferRequest
    ovtrio._proto.tensorflow.serving   TFS API (PredictRequest, ModelSpec, ...)
    ovtrio._proto.tensorflow       TensorProto, DataType, SignatureDef, ...
    ovtrio._proto.tensorflow.error Code (used by StatusProto)
    ovtrio._proto.google.protobuf  Any (with .pack/.unpack), wrappers, ...

The generated tree holds messages only (no grpclib service classes), so codecs import it
without grpclib; the gRPC routes are ovtrio's own tables (grpc/kserve.py, grpc/tfs.py), checked
below against the upstream service descriptors.
"""

from __future__ import annotations

import pathlib
import struct
import subprocess
import sys
from typing import Any

import numpy as np
import pytest
from google.protobuf import descriptor_pb2, descriptor_pool
from google.protobuf.descriptor import FieldDescriptor

import ovtrio._proto.google.protobuf as wkt
import ovtrio._proto.inference as pb
import ovtrio._proto.inference_raw as raw_pb
import ovtrio._proto.tensorflow as tf_pb
import ovtrio._proto.tensorflow.serving as tfs_pb
from ovtrio._proto.message_pool import default_message_pool
from ovtrio.codecs.kserve_grpc import EncodedResponse, InferRequestReader
from ovtrio.grpc.kserve import rpc_table as kserve_rpc_table
from ovtrio.grpc.tfs import rpc_table as tfs_rpc_table

ROOT = pathlib.Path(__file__).resolve().parents[1]
PROTOS = ROOT / "protos"

# InferTensorContents fields the shadow declares `bytes` (packed blobs on the wire).
RAW_BYTES_FIELDS = {
    "bool_contents",
    "int_contents",
    "int64_contents",
    "uint_contents",
    "uint64_contents",
    "fp32_contents",
    "fp64_contents",
}

_FD = FieldDescriptor
_BP_TYPE = {
    _FD.TYPE_DOUBLE: "double",
    _FD.TYPE_FLOAT: "float",
    _FD.TYPE_INT64: "int64",
    _FD.TYPE_UINT64: "uint64",
    _FD.TYPE_INT32: "int32",
    _FD.TYPE_FIXED64: "fixed64",
    _FD.TYPE_FIXED32: "fixed32",
    _FD.TYPE_BOOL: "bool",
    _FD.TYPE_STRING: "string",
    _FD.TYPE_BYTES: "bytes",
    _FD.TYPE_UINT32: "uint32",
    _FD.TYPE_ENUM: "enum",
    _FD.TYPE_SFIXED32: "sfixed32",
    _FD.TYPE_SFIXED64: "sfixed64",
    _FD.TYPE_SINT32: "sint32",
    _FD.TYPE_SINT64: "sint64",
    _FD.TYPE_MESSAGE: "message",
}
_PREFIX = "type.googleapis.com/"


def generated_messages(package: str) -> dict[str, type]:
    """Full proto name -> betterproto2 class, for every generated message of `package`."""
    out = {}
    for url, cls in default_message_pool.url_to_type.items():
        name = url.removeprefix(_PREFIX)
        # "tensorflow.serving.X" is not in package "tensorflow": message names are CamelCase
        if name.startswith(package + ".") and name[len(package) + 1 :][:1].isupper():
            out[name] = cls
    return out


def _repeated(f: FieldDescriptor) -> bool:
    # protobuf 7 dropped FieldDescriptor.label; older ones lack is_repeated
    rep = getattr(f, "is_repeated", None)
    return bool(rep) if rep is not None else f.label == _FD.LABEL_REPEATED


def _type_name(cls: type) -> str:
    return default_message_pool.type_to_url[cls].removeprefix(_PREFIX)


# Vendored from a newer upstream than some reference packages ship (ovmsclient 2023.1,
# older tensorflow-serving-api): fields we have that such a reference may lack, and fields
# upstream has since removed (reserved) that such a reference still has.
TFS_NEWER_FIELDS = {
    "tensorflow.TensorProto": {18},  # float8_val
    "tensorflow.serving.PredictRequest": {5, 6, 7},
    "tensorflow.serving.LoggingConfig": {3},
    "tensorflow.serving.SamplingConfig": {2, 3},
    "tensorflow.serving.ReloadConfigRequest": {2},
    "tensorflow.serving.ReloadConfigResponse": {2},
}
TFS_REMOVED_FIELDS = {"tensorflow.serving.FileSystemStoragePathSourceConfig": {1, 2}}


def compare_generated(
    ours: dict[str, type], lookup, rename=lambda n: n, raw=False, newer=None, removed=None
) -> int:
    """Assert every generated message that exists in the reference matches it on the wire.

    lookup(full_name) -> reference Descriptor or None; rename maps our full name to the
    reference's. newer/removed: {message: {field numbers}} tolerated as extra/missing.
    Returns how many messages were compared.
    """
    newer = newer or {}
    removed = removed or {}
    compared = 0
    problems: list[str] = []
    for full, cls in sorted(ours.items()):
        ref = lookup(rename(full))
        if ref is None:
            continue
        compared += 1
        meta = cls._betterproto
        by_number = {m.number: (n, m) for n, m in meta.meta_by_field_name.items()}
        for rf in ref.fields:
            where = f"{full}.{rf.name}={rf.number}"
            if rf.number not in by_number:
                if rf.number not in removed.get(full, ()):
                    problems.append(f"{where}: missing")
                continue
            name, m = by_number[rf.number]
            if name.rstrip("_") != rf.name:
                problems.append(f"{where}: named {name}")
            if raw and full.endswith("InferTensorContents") and rf.name in RAW_BYTES_FIELDS:
                if (m.proto_type, bool(m.repeated)) != ("bytes", False):
                    problems.append(f"{where}: shadow must be singular bytes")
                continue
            is_map = rf.message_type is not None and rf.message_type.GetOptions().map_entry
            if is_map:
                if m.proto_type != "map":
                    problems.append(f"{where}: expected map, got {m.proto_type}")
                    continue
                kf = rf.message_type.fields_by_name["key"]
                vf = rf.message_type.fields_by_name["value"]
                if (m.map_meta[0].proto_type, m.map_meta[1].proto_type) != (
                    _BP_TYPE[kf.type],
                    _BP_TYPE[vf.type],
                ):
                    problems.append(f"{where}: map types differ")
                if vf.message_type is not None:
                    vcls = meta.cls_by_field[f"{name}.value"]
                    if rename(_type_name(vcls)) != vf.message_type.full_name:
                        problems.append(f"{where}: map value type {_type_name(vcls)}")
                continue
            if m.proto_type != _BP_TYPE[rf.type]:
                problems.append(f"{where}: type {m.proto_type} != {_BP_TYPE[rf.type]}")
                continue
            if bool(m.repeated) != _repeated(rf):
                problems.append(f"{where}: repeated mismatch")
            oneof = rf.containing_oneof
            real_oneof = oneof is not None and not (
                len(oneof.fields) == 1 and oneof.name == "_" + rf.name
            )
            if (m.group or None) != (oneof.name if real_oneof else None):
                problems.append(f"{where}: oneof {m.group} != {oneof and oneof.name}")
            if rf.type == _FD.TYPE_MESSAGE:
                target = m.unwrap() if m.unwrap else meta.cls_by_field[name]
                if rename(_type_name(target)) != rf.message_type.full_name:
                    problems.append(f"{where}: message type {_type_name(target)}")
            if rf.type == _FD.TYPE_ENUM:
                ours_vals = {int(v) for v in meta.cls_by_field[name]}
                ref_vals = {v.number for v in rf.enum_type.values}
                if not ref_vals <= ours_vals:
                    problems.append(f"{where}: enum values missing {ref_vals - ours_vals}")
        extra = set(by_number) - {f.number for f in ref.fields} - newer.get(full, set())
        if extra:
            problems.append(f"{full}: fields not in reference: {sorted(extra)}")
    assert not problems, "\n".join(problems)
    return compared


def _pool_lookup(pool):
    def lookup(name):
        try:
            return pool.FindMessageTypeByName(name)
        except KeyError:
            return None

    return lookup


# ------------------------------------------------------------------ KServe / Triton
def test_kserve_matches_tritonclient():
    from tritonclient.grpc import model_config_pb2, service_pb2  # noqa: F401

    pool = descriptor_pool.Default()
    lookup = _pool_lookup(pool)
    ours = generated_messages("inference")
    n = compare_generated(ours, lookup)
    for must in (
        "ModelInferRequest",
        "InferParameter",
        "ModelStatistics",
        "ModelConfig",
        "ModelDynamicBatching",
        "ModelInstanceGroup",
        "RepositoryIndexResponse",
    ):
        assert lookup(f"inference.{must}") is not None
        assert f"inference.{must}" in ours
    assert n >= 60
    _check_rpc_table(pool, "inference.GRPCInferenceService", kserve_rpc_table(_NO_DATAPLANE))


# the hand-written readers and writers of the hot path, by the message they read or write
_HAND_WRITTEN = {InferRequestReader: pb.ModelInferRequest, EncodedResponse: pb.ModelInferResponse}
_NO_DATAPLANE: Any = None  # the tables only close over the data plane; nothing is called here


def _check_rpc_table(
    pool: Any, service: str, table: dict[str, Any], rename: Any = lambda n: n
) -> None:
    """Every route ovtrio serves for one service exists upstream, with the upstream types."""
    svc = pool.FindServiceByName(rename(service))
    routes = {r for r in table if r.startswith(f"/{service}/")}
    assert routes, service
    assert routes <= {f"/{service}/{m.name}" for m in svc.methods}
    for route in routes:
        method = svc.methods_by_name[route.rsplit("/", 1)[1]]
        spec = table[route]
        request_type = _HAND_WRITTEN.get(spec.request_type, spec.request_type)
        reply_type = _HAND_WRITTEN.get(spec.reply_type, spec.reply_type)
        assert rename(_type_name(request_type)) == method.input_type.full_name
        assert rename(_type_name(reply_type)) == method.output_type.full_name


def test_inference_raw_matches_tritonclient():
    from tritonclient.grpc import service_pb2  # noqa: F401

    ours = generated_messages("inference_raw")
    assert set(ours) == {
        "inference_raw.InferParameter",
        "inference_raw.InferTensorContents",
        "inference_raw.ModelInferRequest",
        "inference_raw.ModelInferRequest.InferInputTensor",
        "inference_raw.ModelInferRequest.InferRequestedOutputTensor",
    }
    n = compare_generated(
        ours,
        _pool_lookup(descriptor_pool.Default()),
        rename=lambda s: "inference." + s.removeprefix("inference_raw."),
        raw=True,
    )
    assert n == 5


# ------------------------------------------------------------------ TensorFlow Serving
def _tfs_reference():
    """(lookup, rename) from TFS descriptors shipped in an installed package, if any."""
    try:  # upstream tensorflow-serving-api (pulls in tensorflow for tensorflow/core)
        from tensorflow_serving.apis import (  # noqa: F401
            get_model_metadata_pb2,
            model_management_pb2,
            model_service_pb2,
            predict_pb2,
            prediction_service_pb2,
        )

        return _pool_lookup(descriptor_pool.Default()), lambda n: n
    except Exception:
        pass
    try:  # ovmsclient ships the same protos with package `tensorflow` renamed `ovmsclient`
        from ovmsclient.tfs_compat.protos.tensorflow_serving.apis import (  # noqa: F401
            get_model_metadata_pb2,
            model_service_pb2,
            predict_pb2,
            prediction_service_pb2,
        )

        def rename(n: str) -> str:
            return "ovmsclient" + n[len("tensorflow") :] if n.startswith("tensorflow.") else n

        return _pool_lookup(descriptor_pool.Default()), rename
    except Exception:
        return None


def test_tfs_matches_reference_descriptors():
    ref = _tfs_reference()
    if ref is None:
        pytest.skip(
            "no reference TFS descriptors importable: neither tensorflow-serving-api (needs "
            "tensorflow) nor ovmsclient is installed in this environment"
        )
    lookup, rename = ref
    n = 0
    for pkg in ("tensorflow.serving", "tensorflow"):
        n += compare_generated(
            generated_messages(pkg),
            lookup,
            rename,
            newer=TFS_NEWER_FIELDS,
            removed=TFS_REMOVED_FIELDS,
        )
    assert lookup(rename("tensorflow.serving.PredictRequest")) is not None
    assert n >= 30
    table = tfs_rpc_table(_NO_DATAPLANE)
    for service in ("tensorflow.serving.PredictionService", "tensorflow.serving.ModelService"):
        _check_rpc_table(descriptor_pool.Default(), service, table, rename)


def _compile_descriptor_set(tmp_path) -> descriptor_pb2.FileDescriptorSet:
    grpc_tools = pytest.importorskip("grpc_tools", reason="grpcio-tools (dev extra) not installed")
    include = pathlib.Path(grpc_tools.__file__).parent / "_proto"
    files = sorted(str(p.relative_to(PROTOS)) for p in PROTOS.rglob("*.proto"))
    out = tmp_path / "set.pb"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            f"-I{PROTOS}",
            f"-I{include}",
            "--include_imports",
            f"--descriptor_set_out={out}",
            *files,
        ],
        check=True,
    )
    return descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes())


def test_protos_compile_to_tritonclient_descriptor(tmp_path):
    """Stricter than the generated-code check: names, labels and type names per field."""
    from tritonclient.grpc import service_pb2  # noqa: F401

    fds = _compile_descriptor_set(tmp_path)
    pool = descriptor_pool.DescriptorPool()
    for f in fds.file:
        pool.Add(f)
    ref = descriptor_pool.Default()

    def fields(d):
        out = {}
        for f in d.fields:
            oneof = f.containing_oneof
            real = oneof is not None and not (len(oneof.fields) == 1 and oneof.name == "_" + f.name)
            tname = f.message_type or f.enum_type
            out[f.number] = (
                f.name,
                f.type,
                _repeated(f),
                getattr(f, "is_packed", None),
                tname and tname.full_name,
                oneof.name if real else None,
            )
        return out

    def walk(d):
        yield d
        for n in d.nested_types:
            yield from walk(n)

    checked = 0
    for fproto in fds.file:
        if fproto.package != "inference":
            continue
        fd = pool.FindFileByName(fproto.name)
        for top in fd.message_types_by_name.values():
            for d in walk(top):
                theirs = fields(ref.FindMessageTypeByName(d.full_name))
                assert fields(d) == theirs, d.full_name
                checked += 1
        for e in fd.enum_types_by_name.values():
            r = ref.FindEnumTypeByName(e.full_name)
            assert {v.name: v.number for v in e.values} == {v.name: v.number for v in r.values}
    assert checked >= 60


# ------------------------------------------------------------------ round trip
FP32 = [0.0, -1.5, 3.25, 1e-30, float("inf"), 65504.0]
INT32 = [0, 1, -1, 2**31 - 1, -(2**31)]
INT64 = [0, -1, 2**63 - 1, -(2**63)]
UINT64 = [0, 1, 2**63 + 5, 2**64 - 1]
BOOLS = [True, False, True]
BYTES = [b"", b"abc", bytes(range(256))]


def _triton_request():
    from tritonclient.grpc import service_pb2 as tpb

    req = tpb.ModelInferRequest(model_name="m", model_version="2", id="req-1")
    req.parameters["flag"].bool_param = True
    req.parameters["off"].bool_param = False
    req.parameters["count"].int64_param = -(2**40)
    req.parameters["text"].string_param = "hello"
    specs = [
        ("f", "FP32", [len(FP32)], "fp32_contents", FP32),
        ("i", "INT32", [len(INT32)], "int_contents", INT32),
        ("l", "INT64", [len(INT64)], "int64_contents", INT64),
        ("u", "UINT64", [len(UINT64)], "uint64_contents", UINT64),
        ("b", "BOOL", [len(BOOLS)], "bool_contents", BOOLS),
        ("s", "BYTES", [len(BYTES)], "bytes_contents", BYTES),
    ]
    for name, dt, shape, field, values in specs:
        t = req.inputs.add(name=name, datatype=dt, shape=shape)
        getattr(t.contents, field).extend(values)
    t = req.inputs.add(name="raw0", datatype="UINT8", shape=[0])
    t = req.inputs.add(name="raw1", datatype="FP32", shape=[2])
    t.parameters["binary_data_size"].int64_param = 8
    req.raw_input_contents.extend([b"", np.asarray([1.0, 2.0], "<f4").tobytes()])
    out = req.outputs.add(name="y")
    out.parameters["classification"].int64_param = 3
    return req


def _varints(buf: bytes) -> list[int]:
    vals, shift, cur = [], 0, 0
    for byte in buf:
        cur |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            vals.append(cur)
            cur, shift = 0, 0
    assert shift == 0
    return vals


def test_round_trip_model_infer_request():
    from tritonclient.grpc import service_pb2 as tpb

    req = _triton_request()
    wire = req.SerializeToString()

    ours = pb.ModelInferRequest.parse(wire)
    assert ours.model_name == "m"
    assert ours.id == "req-1"
    assert ours.parameters["flag"].bool_param is True
    assert ours.parameters["off"].bool_param is False
    assert ours.parameters["count"].int64_param == -(2**40)
    assert ours.parameters["text"].string_param == "hello"
    by_name = {t.name: t for t in ours.inputs}
    assert by_name["f"].contents.fp32_contents == pytest.approx(FP32)
    assert by_name["i"].contents.int_contents == INT32
    assert by_name["l"].contents.int64_contents == INT64
    assert by_name["u"].contents.uint64_contents == UINT64
    assert by_name["b"].contents.bool_contents == BOOLS
    assert by_name["s"].contents.bytes_contents == BYTES
    assert ours.raw_input_contents == [b"", np.asarray([1.0, 2.0], "<f4").tobytes()]
    assert ours.outputs[0].parameters["classification"].int64_param == 3

    back = tpb.ModelInferRequest.FromString(bytes(ours))
    assert back == req

    raw = raw_pb.ModelInferRequest.parse(wire)
    rb = {t.name: t for t in raw.inputs}
    assert rb["f"].contents.fp32_contents == np.asarray(FP32, "<f4").tobytes()
    assert np.array_equal(
        np.frombuffer(rb["f"].contents.fp32_contents, "<f4"), np.asarray(FP32, np.float32)
    )
    assert _varints(rb["b"].contents.bool_contents) == [1, 0, 1]
    assert _varints(rb["u"].contents.uint64_contents) == UINT64
    assert [
        v - (1 << 64) if v >= 1 << 63 else v for v in _varints(rb["l"].contents.int64_contents)
    ] == INT64
    # negative int32 are sign-extended 10-byte varints: truncate to 32 bits
    assert [
        (v & 0xFFFFFFFF) - (1 << 32) if v & 0x80000000 else v & 0xFFFFFFFF
        for v in _varints(rb["i"].contents.int_contents)
    ] == INT32
    assert rb["s"].contents.bytes_contents == BYTES
    assert raw.raw_input_contents == ours.raw_input_contents
    assert raw.parameters["off"].bool_param is False
    assert raw.parameters["count"].int64_param == -(2**40)
    assert rb["raw1"].parameters["binary_data_size"].int64_param == 8


def test_round_trip_model_infer_response():
    from tritonclient.grpc import service_pb2 as tpb

    resp = pb.ModelInferResponse(
        model_name="m",
        model_version="1",
        outputs=[
            pb.ModelInferResponseInferOutputTensor(
                name="y",
                datatype="FP32",
                shape=[1, 2],
                contents=pb.InferTensorContents(fp32_contents=[0.5, -2.0]),
            ),
            pb.ModelInferResponseInferOutputTensor(name="z", datatype="UINT8", shape=[0]),
        ],
        raw_output_contents=[b"", b"\x01"],
        parameters={"p": pb.InferParameter(uint64_param=2**64 - 1)},
    )
    theirs = tpb.ModelInferResponse.FromString(bytes(resp))
    assert list(theirs.outputs[0].contents.fp32_contents) == [0.5, -2.0]
    assert list(theirs.raw_output_contents) == [b"", b"\x01"]
    assert theirs.parameters["p"].uint64_param == 2**64 - 1
    assert pb.ModelInferResponse.parse(theirs.SerializeToString()) == resp


def test_tfs_any_and_wrappers():
    spec = tfs_pb.ModelSpec(name="m", version=3)  # Int64Value is unwrapped to int | None
    assert tfs_pb.ModelSpec.parse(bytes(spec)).version == 3
    assert tfs_pb.ModelSpec.parse(bytes(tfs_pb.ModelSpec(name="m"))).version is None
    sig = tfs_pb.SignatureDefMap(
        signature_def={
            "serving_default": tf_pb.SignatureDef(
                method_name="tensorflow/serving/predict",
                inputs={
                    "x": tf_pb.TensorInfo(
                        name="x",
                        dtype=tf_pb.DataType.DT_FLOAT,
                        tensor_shape=tf_pb.TensorShapeProto(
                            dim=[
                                tf_pb.TensorShapeProtoDim(size=-1),
                                tf_pb.TensorShapeProtoDim(size=3),
                            ]
                        ),
                    )
                },
            )
        }
    )
    packed = wkt.Any.pack(sig)
    assert packed.type_url == "type.googleapis.com/tensorflow.serving.SignatureDefMap"
    resp = tfs_pb.GetModelMetadataResponse(
        model_spec=tfs_pb.ModelSpec(name="m", version=1),
        metadata={"signature_def": packed},
    )
    again = tfs_pb.GetModelMetadataResponse.parse(bytes(resp))
    assert again.metadata["signature_def"].unpack() == sig


def test_tensor_proto_layout():
    # TensorProto fields used by the TFS codec, checked on the wire against hand-made bytes
    t = tf_pb.TensorProto(
        dtype=tf_pb.DataType.DT_FLOAT, tensor_content=b"\x00" * 4, float_val=[1.0]
    )
    wire = bytes(t)
    assert wire == (b"\x08\x01" + b"\x22\x04" + b"\x00" * 4 + b"\x2a\x04" + struct.pack("<f", 1.0))
