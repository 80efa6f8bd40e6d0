"""TensorFlow Serving REST predict codec: row (``instances``) and column (``inputs``) JSON.

Request: exactly one of ``"instances"`` (row format: a list with one entry per example, either
plain values for a single-input model or objects naming every input) and ``"inputs"`` (column
format: one value for a single-input model, or an object of name -> value). Values are scalars
or rectangular nested lists; JSON numbers are read in the model input's precision (as OVMS
does); strings and ``{"b64": "..."}`` objects make BYTES tensors. NaN / Infinity tokens are
accepted, as TF Serving does.

Response: the request's format decides. Row: ``{"predictions": [...]}``, one entry per example
(plain values for one output, objects for several; every output must share dimension 0).
Column: ``{"outputs": value}`` for one output, ``{"outputs": {name: value}}`` for several.
BYTES outputs are UTF-8 strings, or ``{"b64": ...}`` when the output's name ends in ``_bytes``
or the bytes are not valid UTF-8. Non-finite floats are written as ``NaN`` / ``Infinity`` /
``-Infinity`` (TF Serving's tokens).

Pure functions: no I/O.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from collections.abc import Sequence
from typing import Any, Final, Literal

import numpy as np
import orjson

from ..errors import MSG_NOT_AN_OBJECT as _NOT_AN_OBJECT
from ..errors import MSG_PARSE_INPUT as _PARSE_INPUT
from ..errors import InvalidArgument, OvtrioError
from ..tensors import Datatype, InferRequest, InferResponse, Tensor, TensorSpec, datatype
from ._json import PARSER_DEPTH, check_depth, not_json
from ._tensor_wire import MAX_ELEMENTS, bytes_elements, element_count
from .tfs_tensor import check_signature_name

__all__ = ["Format", "decode_predict", "encode_predict"]

Format = Literal["row", "column"]

# OVMS messages (src/status.cpp); details follow as "<base> - <details>".
_UNKNOWN_ORDER: Final = "Invalid JSON structure. Could not detect row or column format"
_INSTANCES_NOT_AN_ARRAY: Final = "Invalid JSON structure. Nonamed instance is not an array."
_NAMED_INSTANCE_NOT_AN_OBJECT: Final = (
    "Invalid JSON structure. One of named instances is not a JSON object."
)
_NO_INSTANCES: Final = "Invalid JSON structure. Missing instances in row format"
_NO_INPUTS: Final = "Invalid JSON structure. Missing inputs in column format"
_PARSE_INSTANCE: Final = "Could not parse instance content. Not valid ndarray detected"
_BATCH_DIFFER: Final = "Invalid JSON structure. Request inputs have different batch sizes"
_BASE64: Final = "Decode Base64 to string error"

_MAX_RANK: Final = 32  # numpy 1.x's limit (2.x allows 64)
_NUMPY_JSON: Final = orjson.OPT_SERIALIZE_NUMPY
_FP32: Final = datatype("FP32")
_BYTES: Final = datatype("BYTES")
_BOOL: Final = datatype("BOOL")
_INFERRED_INTS: Final = tuple(datatype(n) for n in ("INT32", "INT64", "UINT64"))


# ---------------------------------------------------------------------------------------------
# Request
# ---------------------------------------------------------------------------------------------


def decode_predict(
    body: bytes | bytearray | memoryview,
    *,
    model_name: str,
    model_version: int | None,
    input_specs: Sequence[TensorSpec],
    max_elements: int = MAX_ELEMENTS,
    max_depth: int = PARSER_DEPTH,
) -> tuple[InferRequest, Format]:
    """Decode a TFS REST predict body; returns the request and its format (for the response).

    ``input_specs`` give each input's datatype (numbers are read in it) and, for unnamed
    forms, the one input's name. Inputs the model does not have are passed through (numbers
    as INT32/FP32, like OVMS) for the data plane to report. ``max_elements`` bounds every
    input's element count (PayloadTooLarge), checked before any array is built; ``max_depth``
    bounds the JSON's nesting.
    """
    doc = _parse(body, max_depth)
    if not isinstance(doc, dict):
        raise InvalidArgument(_NOT_AN_OBJECT)
    signature = doc.get("signature_name", "")
    if not isinstance(signature, str):
        raise InvalidArgument("Invalid JSON structure. 'signature_name' key must be a string value")
    check_signature_name(signature)

    has_instances, has_inputs = "instances" in doc, "inputs" in doc
    if has_instances == has_inputs:
        raise InvalidArgument(_UNKNOWN_ORDER)
    specs = {s.name: s.datatype for s in input_specs}
    fmt: Format
    if has_instances:
        fmt = "row"
        tensors = _decode_rows(doc["instances"], specs, input_specs, max_elements)
    else:
        fmt = "column"
        tensors = _decode_columns(doc["inputs"], specs, input_specs, max_elements)
    request = InferRequest(model_name=model_name, model_version=model_version, inputs=tensors)
    return request, fmt


def _parse(body: bytes | bytearray | memoryview, max_depth: int) -> Any:
    check_depth(body, max_depth)
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raw = bytes(body)
        if b"NaN" in raw or b"Infinity" in raw:
            # TF Serving parses NaN / Infinity / -Infinity (rapidjson kParseNanAndInfFlag);
            # orjson does not, the standard library does.
            try:
                return json.loads(raw)
            except (ValueError, RecursionError):
                pass
        raise not_json(exc, max_depth) from None


def _is_b64(value: Any) -> bool:
    return isinstance(value, dict) and len(value) == 1 and isinstance(value.get("b64"), str)


def _is_named(value: Any) -> bool:
    return isinstance(value, dict) and not _is_b64(value)


def _only_input(input_specs: Sequence[TensorSpec], plain: str, wanted: str) -> str:
    if len(input_specs) != 1:
        raise InvalidArgument(
            f"Invalid JSON structure. {plain}, but the model has {len(input_specs)} inputs;"
            f" send {wanted} naming each input"
        )
    return input_specs[0].name


def _decode_rows(
    instances: Any,
    specs: dict[str, Datatype],
    input_specs: Sequence[TensorSpec],
    max_elements: int,
) -> list[Tensor]:
    if not isinstance(instances, list):
        raise InvalidArgument(f"{_INSTANCES_NOT_AN_ARRAY} - 'instances' must be a list")
    if not instances:
        raise InvalidArgument(_NO_INSTANCES)
    if not _is_named(instances[0]):
        name = _only_input(input_specs, "'instances' is a plain list", "a list of objects")
        return [_to_tensor(instances, name, specs.get(name), _PARSE_INSTANCE, max_elements)]
    names = list(instances[0])
    if not names:
        raise InvalidArgument(f"{_PARSE_INSTANCE} - instance 0 is an empty object")
    keys = set(names)
    for index, instance in enumerate(instances):
        if not _is_named(instance):
            raise InvalidArgument(
                f"{_NAMED_INSTANCE_NOT_AN_OBJECT} - instance {index} is not an object"
            )
        if instance.keys() != keys:
            raise InvalidArgument(
                f"{_BATCH_DIFFER} - instance {index} names inputs {sorted(instance)},"
                f" instance 0 names {sorted(keys)}"
            )
    return [
        _to_tensor(
            [instance[name] for instance in instances],
            name,
            specs.get(name),
            _PARSE_INSTANCE,
            max_elements,
        )
        for name in names
    ]


def _decode_columns(
    inputs: Any,
    specs: dict[str, Datatype],
    input_specs: Sequence[TensorSpec],
    max_elements: int,
) -> list[Tensor]:
    if not _is_named(inputs):
        name = _only_input(input_specs, "'inputs' is a plain value or list", "an object")
        return [_to_tensor(inputs, name, specs.get(name), _PARSE_INPUT, max_elements)]
    if not inputs:
        raise InvalidArgument(_NO_INPUTS)
    return [
        _to_tensor(value, name, specs.get(name), _PARSE_INPUT, max_elements)
        for name, value in inputs.items()
    ]


def _to_tensor(value: Any, name: str, dt: Datatype | None, base: str, max_elements: int) -> Tensor:
    """One JSON value (scalar or rectangular nested lists) as a tensor of ``dt`` (the model's
    datatype for this input; None if the model has no such input)."""
    shape: list[int] = []
    leaf = value
    while isinstance(leaf, list):
        if len(shape) == _MAX_RANK:
            raise InvalidArgument(
                f"{base} - lists nested deeper than {_MAX_RANK} levels; input name: {name}"
            )
        shape.append(len(leaf))
        if not leaf:
            break
        leaf = leaf[0]
    count = element_count(shape, name, max_elements)
    if count == 0:
        _leaves(value, shape, base, name)  # still rectangular?
        row = dt or _FP32
        return Tensor(name, row, np.empty(shape, dtype=row.numpy))
    if isinstance(leaf, (str, dict)):
        # strings / b64: BYTES, whatever the model's datatype (binary image inputs)
        strings = _bytes_array(_leaves(value, shape, base, name), base, name)
        return Tensor(name, _BYTES, strings.reshape(shape))
    if dt is not None and dt.kserve == "BYTES":
        raise InvalidArgument(
            f'{base} - expected strings or {{"b64": ...}} objects for a DT_STRING input'
            f"; input name: {name}"
        )
    try:
        probe: np.ndarray[Any, Any] = np.asarray(value)
    except (ValueError, TypeError, OverflowError, RecursionError):
        raise InvalidArgument(f"{base} - ragged nested lists; input name: {name}") from None
    if probe.shape != tuple(shape):
        raise InvalidArgument(f"{base} - ragged nested lists; input name: {name}")
    row, array = _numbers(probe, value, shape, dt, base, name)
    return Tensor(name, row, array.reshape(shape))


def _leaves(value: Any, shape: list[int], base: str, name: str) -> list[Any]:
    """The leaves of ``value`` in row-major order, checking it is ``shape`` exactly."""
    level: list[Any] = [value]
    for dim in shape:
        nxt: list[Any] = []
        for item in level:
            if not isinstance(item, list) or len(item) != dim:
                raise InvalidArgument(f"{base} - ragged nested lists; input name: {name}")
            nxt.extend(item)
        level = nxt
    for item in level:
        if isinstance(item, list):
            raise InvalidArgument(f"{base} - ragged nested lists; input name: {name}")
    return level


def _bytes_array(leaves: list[Any], base: str, name: str) -> np.ndarray[Any, Any]:
    out = np.empty(len(leaves), dtype=object)
    for i, leaf in enumerate(leaves):
        if isinstance(leaf, str):
            try:
                out[i] = leaf.encode("utf-8")
            except UnicodeEncodeError:
                raise InvalidArgument(
                    f"{base} - string is not valid Unicode; input name: {name}"
                ) from None
        elif _is_b64(leaf):
            out[i] = _b64decode(leaf["b64"], name)
        else:
            raise InvalidArgument(
                f'{base} - expected only strings or {{"b64": ...}} objects, found'
                f" {_json_type(leaf)}; input name: {name}"
            )
    return out


def _b64decode(text: str, name: str) -> bytes:
    try:
        data = text.encode("ascii")
        return base64.b64decode(data + b"=" * (-len(data) % 4), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        raise InvalidArgument(f"{_BASE64} - invalid base64 data; input name: {name}") from None


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, str):
        return "a string"
    return type(value).__name__


def _numbers(
    probe: np.ndarray[Any, Any],
    value: Any,
    shape: list[int],
    dt: Datatype | None,
    base: str,
    name: str,
) -> tuple[Datatype, np.ndarray[Any, Any]]:
    kind = probe.dtype.kind
    if kind not in "biuf" or (kind == "f" and (dt is None or dt.numpy.kind in "iu")):
        # Mixed leaves (numbers and strings / null / objects), integers beyond 64 bits, or
        # floats for an integer input (maybe [1, 2**64 - 1], which numpy reads as floats).
        leaves = _leaves(value, shape, base, name)
        if not (kind == "f" and dt is None and any(type(v) is float for v in leaves)):
            return _python_numbers(leaves, dt, base, name)
        dt = _FP32  # decimals for an input the model does not have
    if dt is None:
        dt = _infer(probe)
    target = dt.numpy
    if dt.kserve == "BOOL":
        if kind == "b":
            return dt, probe
        if kind in "iu" and int(probe.min()) >= 0 and int(probe.max()) <= 1:
            flags: np.ndarray[Any, Any] = probe != 0
            return dt, flags
        raise InvalidArgument(
            f"{base} - expected true/false (or 0/1) for datatype BOOL; input name: {name}"
        )
    if kind == "b":
        raise InvalidArgument(
            f"{base} - expected numbers, found booleans, for datatype {dt.kserve}"
            f"; input name: {name}"
        )
    if target.kind == "f":
        with np.errstate(over="ignore", invalid="ignore"):
            array = probe.astype(target)
        finite = np.isfinite(array)
        if not finite.all() and (kind != "f" or bool((np.isfinite(probe) & ~finite).any())):
            raise InvalidArgument(
                f"{base} - value out of range for datatype {dt.kserve}; input name: {name}"
            )
        return dt, array
    info = np.iinfo(target)
    if int(probe.min()) < info.min or int(probe.max()) > info.max:
        raise InvalidArgument(
            f"{base} - value out of range for datatype {dt.kserve} [{info.min}, {info.max}]"
            f"; input name: {name}"
        )
    return dt, probe.astype(target)


def _infer(probe: np.ndarray[Any, Any]) -> Datatype:
    """Datatype of an input the model does not have (OVMS: integers INT32, decimals FP32)."""
    kind = probe.dtype.kind
    if kind == "b":
        return _BOOL
    if kind == "f":
        return _FP32
    low, high = int(probe.min()), int(probe.max())
    return next((r for r in _INFERRED_INTS if _fits(r, low, high)), _INFERRED_INTS[-1])


def _fits(row: Datatype, low: int, high: int) -> bool:
    info = np.iinfo(row.numpy)
    return info.min <= low and high <= info.max


def _python_numbers(
    leaves: list[Any], dt: Datatype | None, base: str, name: str
) -> tuple[Datatype, np.ndarray[Any, Any]]:
    """The slow path over Python leaves (rare: mixed or unusual content)."""
    _require_integers(leaves, dt, base, name)
    low, high = min(leaves), max(leaves)
    if dt is None:
        dt = _inferred_int(low, high, base, name)
    if dt.kserve == "BOOL":
        return dt, _python_bools(leaves, low, high, base, name)
    if dt.numpy.kind == "f":
        return dt, _python_floats(leaves, dt, base, name)
    info = np.iinfo(dt.numpy)
    if low < info.min or high > info.max:
        raise InvalidArgument(
            f"{base} - value out of range for datatype {dt.kserve} [{info.min}, {info.max}]"
            f"; input name: {name}"
        )
    return dt, np.asarray(leaves, dtype=object).astype(dt.numpy)


def _require_integers(leaves: list[Any], dt: Datatype | None, base: str, name: str) -> None:
    """Leaves that are not all Python ints are refused: numpy already read every list of plain
    numbers, so what reaches here mixes in other JSON values or floats meant as integers."""
    if all(type(v) is int for v in leaves):
        return
    numbers = all(type(v) in (int, float) for v in leaves)
    if dt is not None and dt.numpy.kind in "iu" and numbers:
        raise InvalidArgument(
            f"{base} - expected integers for datatype {dt.kserve}; input name: {name}"
        )
    odd = next((v for v in leaves if type(v) not in (int, float)), leaves[0] if leaves else None)
    raise InvalidArgument(f"{base} - expected numbers, found {_json_type(odd)}; input name: {name}")


def _inferred_int(low: int, high: int, base: str, name: str) -> Datatype:
    """The first integer datatype TF Serving infers that holds ``[low, high]``."""
    for row in _INFERRED_INTS:
        if _fits(row, low, high):
            return row
    raise InvalidArgument(f"{base} - integer out of 64-bit range; input name: {name}")


def _python_bools(
    leaves: list[int], low: int, high: int, base: str, name: str
) -> np.ndarray[Any, Any]:
    if low < 0 or high > 1:
        raise InvalidArgument(
            f"{base} - expected true/false (or 0/1) for datatype BOOL; input name: {name}"
        )
    flags: np.ndarray[Any, Any] = np.asarray(leaves, dtype=np.int64) != 0
    return flags


def _python_floats(leaves: list[int], dt: Datatype, base: str, name: str) -> np.ndarray[Any, Any]:
    try:
        wide = np.asarray([float(v) for v in leaves], dtype=np.float64)
    except OverflowError:
        wide = np.asarray([math.inf])  # beyond float64: out of range for every float type
    with np.errstate(over="ignore"):
        array = wide.astype(dt.numpy)
    if not np.isfinite(array).all():
        raise InvalidArgument(
            f"{base} - value out of range for datatype {dt.kserve}; input name: {name}"
        )
    return array


# ---------------------------------------------------------------------------------------------
# Response
# ---------------------------------------------------------------------------------------------


def encode_predict(resp: InferResponse, fmt: Format) -> bytes:
    """Encode a response in the request's format (see the module docstring)."""
    outputs = resp.outputs
    if not outputs:
        raise OvtrioError("Cannot convert empty tensor map to JSON")
    doc: dict[str, Any]
    if fmt == "column":
        if len(outputs) == 1:
            doc = {"outputs": _tensor_json(outputs[0])}
        else:
            doc = {"outputs": {t.name: _tensor_json(t) for t in outputs}}
    elif fmt == "row":
        batch = _batch_size(outputs)
        if len(outputs) == 1:
            doc = {"predictions": _tensor_json(outputs[0])}
        else:
            columns = [_examples_json(t) for t in outputs]
            doc = {
                "predictions": [
                    {t.name: column[k] for t, column in zip(outputs, columns, strict=True)}
                    for k in range(batch)
                ]
            }
    else:
        raise ValueError(f"unknown TFS REST format: {fmt!r}")
    return orjson.dumps(doc, option=_NUMPY_JSON)


def _batch_size(outputs: list[Tensor]) -> int:
    batch = -1
    for t in outputs:
        if t.data.ndim == 0:
            raise InvalidArgument(f"Tensor name: {t.name} has no shape information")
        size = int(t.data.shape[0])
        if batch >= 0 and size != batch:
            raise InvalidArgument(
                f"Tensor name: {t.name} has inconsistent batch size: {size} expecting: {batch}"
            )
        batch = size
    return batch


def _numeric(t: Tensor) -> np.ndarray[Any, Any]:
    # native little-endian, C-contiguous: what orjson serialises without a Python list
    # (np.ascontiguousarray would turn a 0-d array into a 1-d one)
    array: np.ndarray[Any, Any] = np.asarray(t.data, dtype=t.datatype.numpy)
    return array if array.flags.c_contiguous else np.ascontiguousarray(array)


def _tensor_json(t: Tensor) -> Any:
    """The whole tensor as a JSON-serialisable value (nested lists, or a scalar)."""
    if t.datatype.kserve == "BYTES":
        return _bytes_json(t)
    return _array_json(_numeric(t))


def _examples_json(t: Tensor) -> list[Any]:
    """The tensor split along dimension 0, one JSON-serialisable value per example."""
    if t.datatype.kserve == "BYTES":
        nested: list[Any] = _bytes_json(t)
        return nested
    array = _numeric(t)
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        return [_array_json(array[k]) for k in range(array.shape[0])]
    return list(array)


def _array_json(array: np.ndarray[Any, Any]) -> Any:
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        return _nonfinite_fragment(array)
    return array if array.ndim else array[()]  # orjson serialises numpy scalars, not 0-d arrays


_NON_FINITE: Final = (b"NaN", b"Infinity", b"-Infinity")


def _nonfinite_fragment(array: np.ndarray[Any, Any]) -> orjson.Fragment:
    """orjson writes non-finite floats as ``null`` (the only ``null`` a float array can yield):
    put TF Serving's tokens in their place, in row-major order."""
    text = orjson.dumps(array if array.ndim else array[()], option=_NUMPY_JSON)
    flat = array.reshape(-1)
    bad = flat[~np.isfinite(flat)]
    codes = np.where(np.isnan(bad), 0, np.where(bad > 0, 1, 2)).tolist()
    parts = text.split(b"null")
    if len(parts) != len(codes) + 1:  # pragma: no cover - orjson changed its output
        raise OvtrioError("Could not serialise non-finite floats")
    pieces = [parts[0]]
    for code, part in zip(codes, parts[1:], strict=True):
        pieces.append(_NON_FINITE[code])
        pieces.append(part)
    return orjson.Fragment(b"".join(pieces))


def _bytes_json(t: Tensor) -> Any:
    always_b64 = t.name.endswith("_bytes")
    flat = bytes_elements(t.data, t.name)
    out = np.empty(len(flat), dtype=object)
    for i, data in enumerate(flat):
        if not always_b64:
            try:
                out[i] = data.decode("utf-8")
                continue
            except UnicodeDecodeError:
                pass
        out[i] = {"b64": base64.b64encode(data).decode("ascii")}
    return out.reshape(t.data.shape).tolist()
