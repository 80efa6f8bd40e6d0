"""KServe v2 REST inference codec, including Triton's binary tensor extension.

Request body: a JSON header, then (when the ``Inference-Header-Content-Length`` header gives the
JSON's length) the blobs of the inputs that carry binary data, back to back, in input order.
Numeric blobs are little-endian, row-major, unpadded (BOOL one byte per element); a BYTES blob is
``<uint32 LE length><bytes>`` per element and ``binary_data_size`` counts those prefixes.

Response body: a JSON header, then the blobs of the outputs returned in binary form, in output
order; the transport sends ``Inference-Header-Content-Length: <json length>`` with it.

Pure functions: no I/O. Binary tensors are decoded with ``np.frombuffer`` over the request body
(zero copy; such arrays may be read-only and unaligned, and keep the body alive).

JSON: headers under ``LARGE_JSON`` bytes are parsed with orjson. Larger ones (tensors sent as
JSON numbers) are parsed with simdjson, which hands a flat numeric ``data`` array to numpy as
one buffer of doubles or 64-bit integers without a Python object per number (about 5x faster
than orjson + ``np.asarray`` for a 1x3x224x224 FP32 tensor). A ``data`` array is taken that way
only when the header cannot hold a nested one (its count of ``[`` equals the arrays found
outside ``data`` plus one per ``data``) and simdjson can read every element as the wanted kind;
anything else goes through the same Python path as small bodies, so both give the same answers
and errors.
"""

from __future__ import annotations

from typing import Any, Final, Literal

import numpy as np
import orjson
import simdjson

from ..errors import MSG_CONTENT_SIZE as _CONTENT_SIZE
from ..errors import MSG_NOT_AN_OBJECT as _NOT_AN_OBJECT
from ..errors import MSG_PARSE_INPUT as _PARSE_INPUT
from ..errors import MSG_VALUE_COUNT as _VALUE_COUNT
from ..errors import InvalidArgument
from ..tensors import Datatype, InferRequest, InferResponse, RequestedOutput, Tensor, datatype
from ._json import PARSER_DEPTH, check_depth, not_json
from ._tensor_wire import (
    MAX_ELEMENTS,
    bytes_elements,
    decode_fixed,
    decode_prefixed,
    decode_prefixed_or_whole,
    element_count,
    encode_raw,
)

__all__ = [
    "HEADER_LENGTH",
    "decode_infer_request",
    "encode_error",
    "encode_infer_response",
]

HEADER_LENGTH: Final = "Inference-Header-Content-Length"
"""The HTTP header giving the JSON header's length when binary data follows it."""

# OVMS messages (src/status.cpp); details follow as "<base> - <details>".
_HEADER_INVALID: Final = "Inference-Header-Content-Length header is invalid and couldn't be parsed"
_HEADER_EXCEEDED: Final = "Inference-Header-Content-Length header exceeds actual payload length"
_NO_INPUTS: Final = "Invalid JSON structure, missing inputs"
_INPUT_NOT_AN_OBJECT: Final = "Invalid JSON structure. One of inputs is not a JSON object."
_PARSE_OUTPUT: Final = "Could not parse output content."
_PARSE_PARAMETERS: Final = "Could not parse request parameters"
_UNSUPPORTED_PRECISION: Final = "Could not parse input content. Unsupported data precision detected"
_SIZE_INVALID: Final = "binary_data_size parameter is invalid and cannot be parsed"
_BUFFER_EXCEEDED: Final = (
    "Received buffer size is smaller than binary_data_size parameter indicates"
)
_BOTH_DATA: Final = "Request contains values both in binary data and in content value"

_MAX_RANK: Final = 32  # numpy 1.x's limit (2.x allows 64)
_NUMPY_JSON: Final = orjson.OPT_SERIALIZE_NUMPY
LARGE_JSON: Final = 1 << 16
"""JSON headers of at least this many bytes are parsed with simdjson (module doc)."""


# ---------------------------------------------------------------------------------------------
# Request
# ---------------------------------------------------------------------------------------------


def decode_infer_request(
    body: bytes | bytearray | memoryview,
    header_length: int | str | None,
    *,
    model_name: str,
    model_version: int | None,
    max_elements: int = MAX_ELEMENTS,
    max_depth: int = PARSER_DEPTH,
) -> InferRequest:
    """Decode a KServe v2 REST infer request body.

    ``header_length`` is the ``Inference-Header-Content-Length`` header (its raw string or an
    int), None when absent: then the whole body is JSON and no input can be binary.
    ``max_elements`` bounds every input's element count; it is checked before anything is
    allocated for the input (PayloadTooLarge). ``max_depth`` bounds the JSON's nesting.
    """
    view = memoryview(body).cast("B") if isinstance(body, memoryview) else memoryview(body)
    json_end = _json_length(header_length, len(view))
    doc = _load_json(view[:json_end], max_depth)
    if not isinstance(doc, dict):
        raise InvalidArgument(_NOT_AN_OBJECT)

    request_id = doc.get("id", "")
    if not isinstance(request_id, str):
        raise InvalidArgument(f"{_PARSE_PARAMETERS} - 'id' must be a string")
    parameters = _parameters(doc.get("parameters"), "request")
    if type(parameters.get("binary_data_output", False)) is not bool:
        raise InvalidArgument(f"{_PARSE_PARAMETERS} - 'binary_data_output' must be true or false")
    outputs = _requested_outputs(doc.get("outputs"))

    raw_inputs = doc.get("inputs")
    if not isinstance(raw_inputs, list) or not raw_inputs:
        raise InvalidArgument(f"{_NO_INPUTS} - 'inputs' must be a non-empty array")
    reader = _BlobReader(view[json_end:], header_length is not None)
    only_input = len(raw_inputs) == 1
    inputs: list[Tensor] = []
    seen: set[str] = set()
    for index, raw in enumerate(raw_inputs):
        tensor = _decode_input(raw, index, reader, only_input, max_elements)
        if tensor.name in seen:
            raise InvalidArgument(f"{_PARSE_INPUT} - duplicate input name: {tensor.name}")
        seen.add(tensor.name)
        inputs.append(tensor)
    reader.finish()
    return InferRequest(
        model_name=model_name,
        model_version=model_version,
        inputs=inputs,
        outputs=outputs,
        id=request_id,
        parameters=parameters,
    )


def _load_json(view: memoryview, max_depth: int) -> Any:
    """The JSON header as Python objects; in a large one, flat ``data`` arrays of inputs stay
    simdjson arrays wrapped in ``_Numbers`` (module doc)."""
    check_depth(view, max_depth)
    top: Any = None
    if len(view) >= LARGE_JSON:
        try:
            top = simdjson.Parser().parse(view)
        except (ValueError, RuntimeError):
            pass  # orjson decides (and words the error): e.g. it reads integers > 64 bits
    if top is None:
        try:
            return orjson.loads(view)
        except orjson.JSONDecodeError as exc:
            raise not_json(exc, max_depth) from None
    if not isinstance(top, simdjson.Object):
        return _plain(top)
    doc: dict[str, Any] = {}
    arrays: list[simdjson.Array] = []
    for key in top:
        value = top[key]
        if key == "inputs" and isinstance(value, simdjson.Array):
            doc[key] = [_input_header(value[i], arrays) for i in range(len(value))]
        else:
            doc[key] = _plain(value)
    if arrays:
        outside = _count_lists(doc)
        brackets = int(np.count_nonzero(np.frombuffer(view, np.uint8) == 0x5B))
        flat = brackets == outside + len(arrays)
        for raw in doc.get("inputs", ()):
            if isinstance(raw, dict) and isinstance(raw.get("data"), simdjson.Array):
                raw["data"] = _Numbers(raw["data"]) if flat else raw["data"].as_list()
    return doc


def _input_header(value: Any, arrays: list[simdjson.Array]) -> Any:
    if not isinstance(value, simdjson.Object):
        return _plain(value)
    raw: dict[str, Any] = {}
    for key in value:
        item = value[key]
        if key == "data" and isinstance(item, simdjson.Array):
            arrays.append(item)
            raw[key] = item
        else:
            raw[key] = _plain(item)
    return raw


def _plain(value: Any) -> Any:
    if isinstance(value, simdjson.Object):
        return value.as_dict()
    if isinstance(value, simdjson.Array):
        return value.as_list()
    return value


def _count_lists(value: Any) -> int:
    """Arrays in a decoded JSON value (``data`` arrays still held by simdjson not counted)."""
    if isinstance(value, list):
        return 1 + sum(_count_lists(v) for v in value)
    if isinstance(value, dict):
        return sum(_count_lists(v) for v in value.values())
    return 0


class _Numbers:
    """A flat JSON array of a large header, read by simdjson straight into numpy."""

    __slots__ = ("array",)

    def __init__(self, array: simdjson.Array) -> None:
        self.array = array

    def read(self, row: Datatype) -> np.ndarray[Any, Any] | None:
        """The numbers as float64 (float datatypes) or int64 / uint64 (integer ones); None
        when an element is not of that kind (then the Python path decides)."""
        kind = row.numpy.kind
        if kind not in "fiu":
            return None
        code: Literal["d", "i", "u"] = "d" if kind == "f" else "i"
        try:
            buffer = self.array.as_buffer(of_type=code)
        except (TypeError, ValueError):
            if kind != "u":
                return None
            try:  # UINT64 beyond int64's range
                code, buffer = "u", self.array.as_buffer(of_type="u")
            except (TypeError, ValueError):
                return None
        return np.frombuffer(buffer, dtype={"d": np.float64, "i": np.int64, "u": np.uint64}[code])


def _json_length(header_length: int | str | None, body_length: int) -> int:
    if header_length is None:
        return body_length
    if isinstance(header_length, str):
        text = header_length.strip()
        if not (text.isascii() and text.isdigit()):
            raise InvalidArgument(f"{_HEADER_INVALID} - {header_length!r}")
        length = int(text)
    elif type(header_length) is int:
        length = header_length
    else:
        raise InvalidArgument(f"{_HEADER_INVALID} - {header_length!r}")
    if length < 0:
        raise InvalidArgument(f"{_HEADER_INVALID} - {header_length!r}")
    if length > body_length:
        raise InvalidArgument(
            f"{_HEADER_EXCEEDED} - Expected: at most {body_length}; Actual: {length}"
        )
    if length == 0:
        raise InvalidArgument(
            f"{_HEADER_INVALID} - {HEADER_LENGTH}: 0 (Triton's raw binary request, a body holding"
            " one tensor and no JSON) is not supported; send a JSON inference header"
        )
    return length


def _parameters(raw: Any, where: str) -> dict[str, Any]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise InvalidArgument(
            f"{_PARSE_PARAMETERS} - 'parameters' of the {where} must be an object"
        )
    return raw


def _requested_outputs(raw: Any) -> list[RequestedOutput] | None:
    if raw is None:
        return None
    if not isinstance(raw, list):
        raise InvalidArgument(f"{_PARSE_OUTPUT} - 'outputs' must be an array")
    outputs: list[RequestedOutput] = []
    seen: set[str] = set()
    for item in raw:
        name = item.get("name") if isinstance(item, dict) else None
        if not isinstance(name, str):
            raise InvalidArgument(f"{_PARSE_OUTPUT} - each output must be an object with a 'name'")
        if name in seen:
            raise InvalidArgument(f"{_PARSE_OUTPUT} - duplicate output name: {name}")
        seen.add(name)
        parameters = _parameters(item.get("parameters"), f"output {name}")
        if type(parameters.get("binary_data", False)) is not bool:
            raise InvalidArgument(
                f"{_PARSE_OUTPUT} - 'binary_data' must be true or false; output name: {name}"
            )
        outputs.append(RequestedOutput(name, parameters))
    return outputs or None


class _BlobReader:
    """Hands out the binary section of the body, input after input."""

    __slots__ = ("_header_given", "_offset", "_view")

    def __init__(self, view: memoryview, header_given: bool) -> None:
        self._view = view
        self._header_given = header_given
        self._offset = 0

    @property
    def header_given(self) -> bool:
        return self._header_given

    def remaining(self) -> int:
        return len(self._view) - self._offset

    def take(self, size: int, name: str) -> memoryview:
        left = self.remaining()
        if size > left:
            hint = "" if self._header_given else f" (no {HEADER_LENGTH} header was sent)"
            raise InvalidArgument(
                f"{_BUFFER_EXCEEDED} - Expected: {size} bytes; Actual: {left} bytes left"
                f"{hint}; input name: {name}"
            )
        start = self._offset
        self._offset += size
        return self._view[start : self._offset]

    def finish(self) -> None:
        left = self.remaining()
        if left:
            raise InvalidArgument(
                f"{_CONTENT_SIZE} - {left} bytes follow the last input's binary data"
                " (the binary_data_size parameters do not cover the request body)"
            )


def _decode_input(
    raw: Any, index: int, reader: _BlobReader, only_input: bool, max_elements: int
) -> Tensor:
    """One entry of ``inputs``: its header read and checked, then its data from ``data``, from
    the binary section (``binary_data_size``, or the size the shape implies)."""
    name, row, shape = _input_header_fields(raw, index)
    count = element_count(shape, name, max_elements)
    parameters = _parameters(raw.get("parameters"), f"input {name}")
    if "data" in raw:
        if "binary_data_size" in parameters:
            raise InvalidArgument(f"{_BOTH_DATA} - input name: {name}")
        return Tensor(name, row, _decode_json_data(raw["data"], row, shape, count, name))
    if "binary_data_size" in parameters:
        array = _sized_binary(parameters["binary_data_size"], reader, row, count, name)
    else:
        array = _unsized_binary(reader, row, count, name, only_input)
    return Tensor(name, row, array.reshape(shape))


def _input_header_fields(raw: Any, index: int) -> tuple[str, Datatype, tuple[int, ...]]:
    """An input's name, datatype row and shape, each checked."""
    if not isinstance(raw, dict):
        raise InvalidArgument(_INPUT_NOT_AN_OBJECT)
    name = raw.get("name")
    if not isinstance(name, str):
        raise InvalidArgument(f"{_PARSE_INPUT} - input {index} has no 'name' string")
    datatype_name = raw.get("datatype")
    if not isinstance(datatype_name, str):
        raise InvalidArgument(f"{_PARSE_INPUT} - 'datatype' must be a string; input name: {name}")
    try:
        row = datatype(datatype_name)
    except InvalidArgument:
        raise InvalidArgument(
            f"{_UNSUPPORTED_PRECISION} - datatype {datatype_name!r}; input name: {name}"
        ) from None
    shape = raw.get("shape")
    if (
        not isinstance(shape, list)
        or len(shape) > _MAX_RANK
        or not all(type(d) is int and d >= 0 for d in shape)
    ):
        raise InvalidArgument(
            f"{_PARSE_INPUT} - 'shape' must be an array of at most {_MAX_RANK} non-negative"
            f" integers; input name: {name}"
        )
    return name, row, tuple(shape)


def _sized_binary(
    size: Any, reader: _BlobReader, row: Datatype, count: int, name: str
) -> np.ndarray[Any, Any]:
    """The input's blob of ``binary_data_size`` bytes, as a flat array."""
    total, sizes = _binary_data_size(size, name)
    chunk = reader.take(total, name)
    if row.kserve != "BYTES":
        return decode_fixed(chunk, row, count, name)
    if sizes is not None:
        return _split_bytes(chunk, sizes, count, name)
    return decode_prefixed(chunk, count, name, "binary_data_size")


def _unsized_binary(
    reader: _BlobReader, row: Datatype, count: int, name: str, only_input: bool
) -> np.ndarray[Any, Any]:
    """OVMS: ``binary_data_size`` may be omitted when the size follows from the shape, or when
    the only input is BYTES (it then owns the rest of the body)."""
    if not reader.header_given:
        raise InvalidArgument(
            f"{_PARSE_INPUT} - the input has neither 'data' nor 'parameters.binary_data_size'"
            f"; input name: {name}"
        )
    if row.kserve != "BYTES":
        return decode_fixed(reader.take(count * row.itemsize, name), row, count, name)
    if not only_input:
        raise InvalidArgument(
            f"{_SIZE_INVALID} - a BYTES input needs binary_data_size unless it is the only input"
            f"; input name: {name}"
        )
    chunk = reader.take(reader.remaining(), name)
    return decode_prefixed_or_whole(chunk, count, name, "the request body")


def _binary_data_size(value: Any, name: str) -> tuple[int, list[int] | None]:
    """The blob size, and the per-element sizes when given as ``"370,480"`` (no prefixes)."""
    if type(value) is int and value >= 0:
        return value, None
    if isinstance(value, str):
        sizes: list[int] = []
        for part in value.split(","):
            text = part.strip()
            if not (text.isascii() and text.isdigit()):
                break
            sizes.append(int(text))
        else:
            return sum(sizes), sizes
    raise InvalidArgument(
        f"{_SIZE_INVALID} - expected a non-negative integer (or a string of comma-separated"
        f" sizes), got {_as_json(value)}; input name: {name}"
    )


def _as_json(value: Any) -> str:
    """A request's value as the client wrote it (JSON), shortened for an error message."""
    try:
        text = orjson.dumps(value).decode()
    except TypeError:
        text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _split_bytes(
    chunk: memoryview, sizes: list[int], count: int, name: str
) -> np.ndarray[Any, Any]:
    if len(sizes) != count:
        raise InvalidArgument(
            f"{_VALUE_COUNT} - Expected: {count} values; Actual: {len(sizes)} values"
            f" (sizes in binary_data_size); input name: {name}"
        )
    array = np.empty(count, dtype=object)
    offset = 0
    for i, length in enumerate(sizes):
        array[i] = bytes(chunk[offset : offset + length])
        offset += length
    return array


def _decode_json_data(
    data: Any, row: Datatype, shape: tuple[int, ...], count: int, name: str
) -> np.ndarray[Any, Any]:
    if isinstance(data, _Numbers):
        numbers = data.read(row)
        if numbers is not None:
            return _check_numbers(numbers, None, row, shape, count, name)
        data = data.array.as_list()
    if not isinstance(data, list):
        raise InvalidArgument(f"{_PARSE_INPUT} - 'data' must be an array; input name: {name}")
    if row.kserve == "BYTES":
        return _json_bytes(data, count, name).reshape(shape)
    try:
        probe: np.ndarray[Any, Any] = np.asarray(data)
    except (ValueError, TypeError, OverflowError, RecursionError):
        raise InvalidArgument(
            f"{_PARSE_INPUT} - 'data' is ragged or holds values that are not numbers"
            f"; input name: {name}"
        ) from None
    return _check_numbers(probe, data, row, shape, count, name)


def _check_numbers(
    probe: np.ndarray[Any, Any],
    data: list[Any] | None,
    row: Datatype,
    shape: tuple[int, ...],
    count: int,
    name: str,
) -> np.ndarray[Any, Any]:
    """``probe`` (numpy's reading of ``data``, the JSON list when there is one) as the
    datatype's array, checked."""
    if probe.size != count:
        raise InvalidArgument(
            f"{_VALUE_COUNT} - Expected: {count} values; Actual: {probe.size} values"
            f"; input name: {name}"
        )
    target = row.numpy
    if count == 0:
        return np.zeros(shape, dtype=target)
    kind = probe.dtype.kind
    if row.kserve == "BOOL":
        if kind == "b":
            return probe.reshape(shape)
        if kind in "iu" and int(probe.min()) >= 0 and int(probe.max()) <= 1:
            flags: np.ndarray[Any, Any] = probe != 0
            return flags.reshape(shape)
        raise InvalidArgument(
            f"{_PARSE_INPUT} - expected true/false (or 0/1) for datatype BOOL; input name: {name}"
        )
    if target.kind == "f":
        if kind not in "iuf":
            raise InvalidArgument(
                f"{_PARSE_INPUT} - expected numbers for datatype {row.kserve}; input name: {name}"
            )
        with np.errstate(over="ignore"):
            array = probe.astype(target, copy=False)
        if target.itemsize < 8 and not np.isfinite(array).all():
            raise InvalidArgument(
                f"{_PARSE_INPUT} - value out of range for datatype {row.kserve}; input name: {name}"
            )
        return array.reshape(shape)
    if kind in "iu":
        low, high = int(probe.min()), int(probe.max())
    elif kind in "fO" and data is not None:
        # numpy promotes e.g. [0, 2**64 - 1] to float64: look at the Python objects instead
        # (rare: only lists mixing such integers, or lists that hold non-integers anyway).
        values = np.asarray(data, dtype=object).reshape(-1).tolist()
        if not all(type(value) is int for value in values):
            raise InvalidArgument(
                f"{_PARSE_INPUT} - expected integers for datatype {row.kserve}; input name: {name}"
            )
        low, high = min(values), max(values)
        probe = np.asarray(values, dtype=object)
    else:
        raise InvalidArgument(
            f"{_PARSE_INPUT} - expected integers for datatype {row.kserve}; input name: {name}"
        )
    info = np.iinfo(target)
    if low < info.min or high > info.max:
        raise InvalidArgument(
            f"{_PARSE_INPUT} - value out of range for datatype {row.kserve}"
            f" [{info.min}, {info.max}]; input name: {name}"
        )
    return probe.astype(target, copy=False).reshape(shape)


def _json_bytes(data: list[Any], count: int, name: str) -> np.ndarray[Any, Any]:
    flat = data
    while flat and isinstance(flat[0], list):  # nested: peel one level, checking it is regular
        width = len(flat[0])
        level: list[Any] = []
        for item in flat:
            if not isinstance(item, list) or len(item) != width:
                raise InvalidArgument(f"{_PARSE_INPUT} - 'data' is ragged; input name: {name}")
            level.extend(item)
        flat = level
    if len(flat) != count:
        raise InvalidArgument(
            f"{_VALUE_COUNT} - Expected: {count} values; Actual: {len(flat)} values"
            f"; input name: {name}"
        )
    array = np.empty(count, dtype=object)
    for i, item in enumerate(flat):
        if not isinstance(item, str):
            raise InvalidArgument(
                f"{_PARSE_INPUT} - expected strings for datatype BYTES; input name: {name}"
            )
        try:
            array[i] = item.encode("utf-8")
        except UnicodeEncodeError:
            raise InvalidArgument(
                f"{_PARSE_INPUT} - string is not valid Unicode; input name: {name}"
            ) from None
    return array


# ---------------------------------------------------------------------------------------------
# Response
# ---------------------------------------------------------------------------------------------


def encode_infer_response(
    response: InferResponse, request: InferRequest
) -> tuple[bytes, int | None]:
    """Encode a response as KServe v2 REST: (body, JSON header length or None).

    An output goes binary when its requested output says ``binary_data: true``, or when it has no
    such flag and the request says ``binary_data_output: true`` (Triton's rule). The length is
    None when no output is binary; otherwise the transport sends it as ``HEADER_LENGTH``.
    """
    default = request.parameters.get("binary_data_output") is True
    flags: dict[str, bool] = {}
    for requested in request.outputs or ():
        flag = requested.parameters.get("binary_data")
        if isinstance(flag, bool):
            flags[requested.name] = flag

    entries: list[dict[str, Any]] = []
    blobs: list[bytes | memoryview] = []
    for tensor in response.outputs:
        entry: dict[str, Any] = {
            "name": tensor.name,
            "datatype": tensor.datatype.kserve,
            "shape": list(tensor.shape),
        }
        if flags.get(tensor.name, default):
            blob = encode_raw(tensor)
            entry["parameters"] = {"binary_data_size": blob.nbytes}
            blobs.append(blob)
        else:
            entry["data"] = _json_data(tensor)
        entries.append(entry)

    doc: dict[str, Any] = {
        "model_name": response.model_name,
        "model_version": str(response.model_version),
    }
    response_id = response.id or request.id
    if response_id:
        doc["id"] = response_id
    if response.parameters:
        doc["parameters"] = response.parameters
    doc["outputs"] = entries
    header = orjson.dumps(doc, option=_NUMPY_JSON)
    if not blobs:
        return header, None
    return b"".join([header, *blobs]), len(header)


def encode_error(message: str) -> bytes:
    """The body of every REST error: ``{"error": message}``."""
    return orjson.dumps({"error": message})


def _json_data(tensor: Tensor) -> Any:
    if tensor.datatype.kserve == "BYTES":
        try:
            return [element.decode("utf-8") for element in bytes_elements(tensor.data, tensor.name)]
        except UnicodeDecodeError:
            raise InvalidArgument(
                f"Output {tensor.name} holds BYTES that are not valid UTF-8 and cannot be sent"
                " as JSON; request it as binary (output parameter binary_data: true, or request"
                " parameter binary_data_output: true)"
            ) from None
    # Flat, native little-endian, C-contiguous: what orjson serialises without a Python list.
    return np.ascontiguousarray(tensor.data, dtype=tensor.datatype.numpy).reshape(-1)
