"""TensorFlow Serving gRPC messages <-> InferRequest / InferResponse, and TFS metadata. No I/O.

``TensorProto`` decoding accepts every encoding a TensorFlow client may send (OVMS accepts only
some): ``tensor_content`` (raw little-endian bytes, row-major) for every numeric type including
DT_HALF, and the typed ``*_val`` fields, where a list shorter than the element count repeats its
last value (TensorFlow's rule). Responses always carry numeric outputs in ``tensor_content`` and
strings in ``string_val`` (what OVMS sends; ``tf.make_ndarray`` and ovmsclient read both).

The model metadata and status builders here are shared by the gRPC and REST transports: the
REST forms are the protobuf JSON that OVMS prints (camelCase metadata, as ovmsclient parses).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from typing import Any, Final, Protocol

import numpy as np

from .._proto import tensorflow as tf_pb
from .._proto.google.protobuf import Any as AnyProto
from .._proto.tensorflow import error as tf_error
from .._proto.tensorflow import serving as tfs_pb
from ..errors import MSG_CONTENT_SIZE as _CONTENT_SIZE
from ..errors import (
    MSG_INVALID_SHAPE,
    MSG_TOO_LARGE,
    FailedPrecondition,
    InvalidArgument,
    PayloadTooLarge,
)
from ..errors import MSG_VALUE_COUNT as _VALUE_COUNT
from ..tensors import (
    DATATYPES,
    Datatype,
    InferRequest,
    InferResponse,
    RequestedOutput,
    Tensor,
    TensorSpec,
)
from ._tensor_wire import MAX_ELEMENTS, bytes_elements, decode_fixed, element_count
from ._wire import check_wire_types

__all__ = [
    "DEFAULT_SIGNATURE",
    "MAX_REPEAT_BYTES",
    "PREDICT_METHOD",
    "SIGNATURE_DEF_MAP_TYPE_URL",
    "VersionStatus",
    "array_to_tensor",
    "check_signature_name",
    "datatype_of_tfs",
    "decode_predict_request",
    "dtype_name",
    "encode_predict_response",
    "model_metadata_json",
    "model_metadata_proto",
    "model_status_json",
    "model_status_proto",
    "signature_def_map",
    "tensor_to_array",
]

DEFAULT_SIGNATURE: Final = "serving_default"
PREDICT_METHOD: Final = "tensorflow/serving/predict"
SIGNATURE_DEF_MAP_TYPE_URL: Final = "type.googleapis.com/tensorflow.serving.SignatureDefMap"

# OVMS messages (src/status.cpp); details follow as "<base> - <details>".
_PRECISION: Final = "Invalid input precision"

_BY_TFS: Final = {d.tfs: d for d in DATATYPES}

MAX_REPEAT_BYTES: Final = 1 << 30
"""Largest tensor TensorFlow's repeat-the-last-value rule may build (the default gRPC message
limit): a few bytes of request must not make the server allocate gigabytes."""

# dtype the list of Python numbers is first read into (wide enough to range-check narrow types)
_VAL_WIDE: Final[dict[str, np.dtype[Any]]] = {
    "int_val": np.dtype("<i8"),
    "half_val": np.dtype("<i8"),
    "uint32_val": np.dtype("<u4"),
    "uint64_val": np.dtype("<u8"),
    "int64_val": np.dtype("<i8"),
    "float_val": np.dtype("<f4"),
    "double_val": np.dtype("<f8"),
    "bool_val": np.dtype("?"),
}
_OTHER_VAL_FIELDS: Final = (
    "float_val",
    "double_val",
    "int_val",
    "int64_val",
    "bool_val",
    "half_val",
    "uint32_val",
    "uint64_val",
    "string_val",
    "scomplex_val",
    "dcomplex_val",
)


# ---------------------------------------------------------------------------------------------
# Datatypes
# ---------------------------------------------------------------------------------------------


def dtype_name(dt: Datatype) -> str:
    """TensorFlow's name of a datatype (``DT_FLOAT``), as metadata JSON prints it."""
    return tf_pb.DataType(dt.tfs).name or f"DT_{dt.tfs}"


def _enum_name(value: int) -> str:
    try:
        name = tf_pb.DataType(value).name
    except ValueError:
        name = None
    return name if name and not name.startswith("~") else f"DataType({value})"


def datatype_of_tfs(dtype: int, name: str) -> Datatype:
    """The table row for a TensorFlow ``DataType`` enum value; unsupported ones are the client's
    mistake (DT_BFLOAT16, complex, quantized, resource, ...)."""
    row = _BY_TFS.get(int(dtype))
    if row is None:
        raise InvalidArgument(
            f"{_PRECISION} - {_enum_name(int(dtype))} is not supported; input name: {name}"
        )
    return row


# ---------------------------------------------------------------------------------------------
# TensorProto <-> ndarray
# ---------------------------------------------------------------------------------------------


def _shape_of(t: tf_pb.TensorProto, name: str) -> list[int]:
    shape_proto = t.tensor_shape
    if shape_proto is None:
        return []  # TensorFlow: no shape is a scalar
    if shape_proto.unknown_rank:
        raise InvalidArgument(
            f"{MSG_INVALID_SHAPE} - unknown_rank is not allowed; input name: {name}"
        )
    return [int(d.size) for d in shape_proto.dim]


def tensor_to_array(
    t: tf_pb.TensorProto,
    name: str,
    max_elements: int = MAX_ELEMENTS,
    max_repeat_bytes: int = MAX_REPEAT_BYTES,
) -> tuple[Datatype, np.ndarray[Any, Any]]:
    """Decode one TensorProto (an input named ``name``) into its datatype and array.

    Numeric arrays from ``tensor_content`` are zero-copy views of the message's bytes
    (read-only). The element count is checked against ``max_elements`` before anything is
    allocated (PayloadTooLarge), and so is the size of a tensor that fewer typed values than
    elements would fill by repeating the last value, against ``max_repeat_bytes`` (8 bytes per
    DT_STRING element).
    """
    dt = datatype_of_tfs(t.dtype, name)
    shape = _shape_of(t, name)
    count = element_count(shape, name, max_elements)
    content = t.tensor_content
    if content:  # TensorFlow: tensor_content, when set, wins over the typed fields
        if dt.kserve == "BYTES":
            raise InvalidArgument(
                f"{_CONTENT_SIZE} - DT_STRING values must be sent in string_val, not"
                f" tensor_content; input name: {name}"
            )
        return dt, decode_fixed(content, dt, count, name).reshape(shape)

    field = dt.tfs_val
    values = getattr(t, field)
    n = len(values)
    if n == count:
        return dt, _typed_values(dt, field, values, name).reshape(shape)
    if n == 0:
        if count == 0:
            return dt, np.empty(shape, dtype=dt.numpy)
        raise InvalidArgument(_empty_message(t, dt, field, count, name))
    if n > count:
        raise InvalidArgument(
            f"{_VALUE_COUNT} - Expected: {count}; Actual: {n} (in {field}); input name: {name}"
        )
    # Fewer values than elements: TensorFlow repeats the last one.
    size = count * (dt.itemsize or 8)
    if size > max_repeat_bytes:
        raise PayloadTooLarge(
            f"{MSG_TOO_LARGE} - {n} values in {field} would be repeated to fill {count}"
            f" elements ({size} bytes); at most {max_repeat_bytes} bytes are built that way"
            f"; input name: {name}"
        )
    head = _typed_values(dt, field, values, name)
    out = np.empty(count, dtype=dt.numpy)
    out[:n] = head
    out[n:] = head[-1]
    return dt, out.reshape(shape)


def _empty_message(t: tf_pb.TensorProto, dt: Datatype, field: str, count: int, name: str) -> str:
    others = [f for f in _OTHER_VAL_FIELDS if f != field and len(getattr(t, f))]
    hint = (
        f" ({dtype_name(dt)} values belong in tensor_content or {field}, but {others[0]} is set)"
        if others
        else " (neither tensor_content nor " + field + " holds values)"
    )
    return (
        f"{_CONTENT_SIZE} - Expected: {count * dt.itemsize} bytes; Actual: 0 bytes{hint}"
        f"; input name: {name}"
        if dt.itemsize
        else f"{_VALUE_COUNT} - Expected: {count}; Actual: 0{hint}; input name: {name}"
    )


def _typed_values(dt: Datatype, field: str, values: Any, name: str) -> np.ndarray[Any, Any]:
    """A typed ``*_val`` list (Python numbers / bytes, as betterproto2 gives them) as a flat
    array of ``dt``, converted in one numpy call."""
    if field == "string_val":
        out = np.empty(len(values), dtype=object)
        out[:] = [bytes(v) for v in values]
        return out
    try:
        wide: np.ndarray[Any, Any] = np.asarray(values, dtype=_VAL_WIDE[field])
    except (OverflowError, ValueError, TypeError):
        raise InvalidArgument(
            f"{_VALUE_COUNT} - a value in {field} does not fit {dtype_name(dt)}; input name: {name}"
        ) from None
    if field == "half_val":
        # int32 per element holding the IEEE fp16 bit pattern in its low 16 bits
        bits: np.ndarray[Any, Any] = (wide & 0xFFFF).astype("<u2")
        return bits.view("<f2")
    if wide.dtype != dt.numpy and dt.numpy.kind in "iu":  # int_val for a narrower type
        info = np.iinfo(dt.numpy)
        if wide.size and (int(wide.min()) < info.min or int(wide.max()) > info.max):
            raise InvalidArgument(
                f"{_VALUE_COUNT} - value out of range for {dtype_name(dt)}"
                f" [{info.min}, {info.max}] in {field}; input name: {name}"
            )
    return wide.astype(dt.numpy, copy=False)


def _shape_proto(shape: Iterable[int]) -> tf_pb.TensorShapeProto:
    return tf_pb.TensorShapeProto(dim=[tf_pb.TensorShapeProtoDim(size=int(d)) for d in shape])


def array_to_tensor(dt: Datatype, array: np.ndarray[Any, Any], name: str = "") -> tf_pb.TensorProto:
    """Encode output ``name`` as a TensorProto: numeric in ``tensor_content`` (little-endian,
    C order), BYTES in ``string_val`` (elements as :mod:`._tensor_wire` says)."""
    shape = _shape_proto(array.shape)
    dtype = tf_pb.DataType(dt.tfs)
    if dt.kserve == "BYTES":
        return tf_pb.TensorProto(
            dtype=dtype, tensor_shape=shape, string_val=bytes_elements(array, name)
        )
    content = np.ascontiguousarray(array, dtype=dt.numpy).tobytes()
    return tf_pb.TensorProto(dtype=dtype, tensor_shape=shape, tensor_content=content)


# ---------------------------------------------------------------------------------------------
# Predict
# ---------------------------------------------------------------------------------------------


def check_signature_name(signature_name: str) -> None:
    """Only the default signature exists (as TF Serving names it, or left empty)."""
    if signature_name not in ("", DEFAULT_SIGNATURE):
        raise FailedPrecondition(f'Serving signature key "{signature_name}" not found.')


def decode_predict_request(
    req: tfs_pb.PredictRequest,
    *,
    max_elements: int = MAX_ELEMENTS,
    max_repeat_bytes: int = MAX_REPEAT_BYTES,
) -> InferRequest:
    """Decode a TFS PredictRequest.

    ``model_spec.version`` absent or 0 means the default version (None). A ``version_label`` is
    left in ``parameters["version_label"]`` for the caller to resolve. ``output_filter`` becomes
    the requested outputs (None: every output).
    """
    check_wire_types(req)
    spec = req.model_spec
    if spec is None:
        raise InvalidArgument("model_spec missing in request")
    check_signature_name(spec.signature_name)
    parameters: dict[str, Any] = {}
    if spec.version_label:
        parameters["version_label"] = spec.version_label
    version = spec.version or None

    inputs = [
        Tensor(name, *tensor_to_array(proto, name, max_elements, max_repeat_bytes))
        for name, proto in req.inputs.items()
    ]
    outputs: list[RequestedOutput] | None = None
    if req.output_filter:
        seen: set[str] = set()
        outputs = []
        for out_name in req.output_filter:
            if out_name in seen:
                raise InvalidArgument(f"duplicate output tensor alias: {out_name}")
            seen.add(out_name)
            outputs.append(RequestedOutput(out_name))
    return InferRequest(
        model_name=spec.name,
        model_version=version,
        inputs=inputs,
        outputs=outputs,
        parameters=parameters,
    )


def encode_predict_response(resp: InferResponse) -> tfs_pb.PredictResponse:
    """Outputs as TensorProtos keyed by name; model_spec names the model, the version that
    answered and the signature (as TF Serving fills it)."""
    return tfs_pb.PredictResponse(
        model_spec=tfs_pb.ModelSpec(
            name=resp.model_name,
            version=resp.model_version,
            signature_name=DEFAULT_SIGNATURE,
        ),
        outputs={t.name: array_to_tensor(t.datatype, t.data, t.name) for t in resp.outputs},
    )


# ---------------------------------------------------------------------------------------------
# Metadata
# ---------------------------------------------------------------------------------------------


def _tensor_info(spec: TensorSpec) -> tf_pb.TensorInfo:
    return tf_pb.TensorInfo(
        name=spec.name,
        dtype=tf_pb.DataType(spec.datatype.tfs),
        tensor_shape=_shape_proto(spec.shape),
    )


def signature_def_map(
    inputs: Sequence[TensorSpec], outputs: Sequence[TensorSpec]
) -> tfs_pb.SignatureDefMap:
    """The one signature, ``serving_default``, of a model."""
    return tfs_pb.SignatureDefMap(
        signature_def={
            DEFAULT_SIGNATURE: tf_pb.SignatureDef(
                inputs={s.name: _tensor_info(s) for s in inputs},
                outputs={s.name: _tensor_info(s) for s in outputs},
                method_name=PREDICT_METHOD,
            )
        }
    )


def model_metadata_proto(
    name: str, version: int, inputs: Sequence[TensorSpec], outputs: Sequence[TensorSpec]
) -> tfs_pb.GetModelMetadataResponse:
    """GetModelMetadataResponse: ``metadata["signature_def"]`` is an Any packing a
    SignatureDefMap. Dynamic dimensions are -1."""
    return tfs_pb.GetModelMetadataResponse(
        model_spec=tfs_pb.ModelSpec(name=name, version=version),
        metadata={"signature_def": AnyProto.pack(signature_def_map(inputs, outputs))},
    )


def _tensor_info_json(spec: TensorSpec) -> dict[str, Any]:
    return {
        "dtype": dtype_name(spec.datatype),
        "tensorShape": {
            "dim": [{"size": str(int(d)), "name": ""} for d in spec.shape],
            "unknownRank": False,
        },
        "name": spec.name,
    }


def model_metadata_json(
    name: str, version: int, inputs: Sequence[TensorSpec], outputs: Sequence[TensorSpec]
) -> dict[str, Any]:
    """The REST metadata document in the protobuf-JSON form OVMS prints (camelCase, int64 as
    strings, Any with ``@type``), which ovmsclient parses."""
    return {
        "modelSpec": {"name": name, "signatureName": "", "version": str(int(version))},
        "metadata": {
            "signature_def": {
                "@type": SIGNATURE_DEF_MAP_TYPE_URL,
                "signatureDef": {
                    DEFAULT_SIGNATURE: {
                        "inputs": {s.name: _tensor_info_json(s) for s in inputs},
                        "outputs": {s.name: _tensor_info_json(s) for s in outputs},
                        "methodName": PREDICT_METHOD,
                    }
                },
            }
        },
    }


# ---------------------------------------------------------------------------------------------
# Status
# ---------------------------------------------------------------------------------------------


class VersionStatus(Protocol):
    """What the status builders read from a model version (duck-typed)."""

    @property
    def version(self) -> int: ...

    @property
    def state(self) -> enum.IntEnum:
        """START=10, LOADING=20, AVAILABLE=30, UNLOADING=40, END=50 (TF Serving's numbers)."""
        ...

    @property
    def error_code(self) -> str:
        """A ``tensorflow.error.Code`` name: OK, UNKNOWN, FAILED_PRECONDITION, ..."""
        ...

    @property
    def error_message(self) -> str: ...


def _error_code(name: str) -> tf_error.Code:
    try:
        return tf_error.Code[name]
    except KeyError:
        return tf_error.Code.UNKNOWN


def model_status_json(statuses: Iterable[VersionStatus]) -> dict[str, Any]:
    """``{"model_version_status": [...]}`` in TF Serving's REST form (snake_case, version as a
    string, state and error code by name)."""
    return {
        "model_version_status": [
            {
                "version": str(int(s.version)),
                "state": s.state.name,
                "status": {"error_code": s.error_code, "error_message": s.error_message},
            }
            for s in statuses
        ]
    }


def model_status_proto(
    name: str, statuses: Iterable[VersionStatus]
) -> tfs_pb.GetModelStatusResponse:
    """GetModelStatusResponse for the versions of model ``name`` (the message does not name the
    model; the argument is for symmetry with the metadata builder)."""
    del name
    return tfs_pb.GetModelStatusResponse(
        model_version_status=[
            tfs_pb.ModelVersionStatus(
                version=int(s.version),
                state=tfs_pb.ModelVersionStatusState(int(s.state)),
                status=tfs_pb.StatusProto(
                    error_code=_error_code(s.error_code), error_message=s.error_message
                ),
            )
            for s in statuses
        ]
    )
