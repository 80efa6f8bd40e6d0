"""OVMS custom node libraries (``.so`` files built against ``custom_node_interface.h``) via ctypes.

A ``CustomNodeLibrary`` is one opened library with its six functions. ``library.initialize(params)``
gives a ``CustomNode``: the library's internal manager made for one node's params, with the
node's input/output metadata and its ``execute``. The layout of the three structs, the precision
enum and the memory contract follow OVMS' header exactly:

- every buffer the library hands over (metadata arrays and their ``dims``; the outputs array and
  each output's ``data`` and ``dims``) goes back to the library's ``release`` with the same
  internal manager, once, after its contents were copied into numpy arrays;
- on a non-zero return code nothing is touched (the library cleans up after itself);
- params are C strings owned here and alive as long as the node.

``CustomNode.execute`` runs the library in a worker thread under a ``trio.CapacityLimiter``.
Cancellation: the awaiting task returns at once; the thread cannot be interrupted, so the call
runs to its end, and then its outputs are released without being copied (the execution counts
as abandoned in ``statistics()``). ``close()`` deinitializes the internal manager as soon as no
call is running any more, so an abandoned call still finds it alive.
"""

from __future__ import annotations

import _ctypes
import ctypes
import enum
import math
import os
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np

from ..errors import NodeLibraryFailed
from ._graph import CUSTOM, PYTHON, NodeConfig
from ._meta import NodeMeta, TensorMeta, check_inputs
from ._node import Array, ThreadedNode, Work, library_error
from ._python_node import load_python_node

__all__ = [
    "CustomNode",
    "CustomNodeLibrary",
    "NodeTensorInfo",
    "Precision",
    "initialize_node",
]


class Precision(enum.IntEnum):
    """``CustomNodeTensorPrecision``: a plain C enum (4 bytes)."""

    UNSPECIFIED = 0
    FP32 = 1
    FP16 = 2
    U8 = 3
    I8 = 4
    I16 = 5
    U16 = 6
    I32 = 7
    FP64 = 8
    I64 = 9


# Precision -> (little-endian numpy dtype, KServe datatype name).
_DTYPES: Final[dict[Precision, tuple[np.dtype[Any], str]]] = {
    Precision.FP32: (np.dtype("<f4"), "FP32"),
    Precision.FP16: (np.dtype("<f2"), "FP16"),
    Precision.U8: (np.dtype("<u1"), "UINT8"),
    Precision.I8: (np.dtype("<i1"), "INT8"),
    Precision.I16: (np.dtype("<i2"), "INT16"),
    Precision.U16: (np.dtype("<u2"), "UINT16"),
    Precision.I32: (np.dtype("<i4"), "INT32"),
    Precision.FP64: (np.dtype("<f8"), "FP64"),
    Precision.I64: (np.dtype("<i8"), "INT64"),
}
_BY_DTYPE: Final = {dtype: precision for precision, (dtype, _) in _DTYPES.items()}


class _Tensor(ctypes.Structure):
    # struct CustomNodeTensor: 48 bytes on x86-64
    _fields_ = [
        ("name", ctypes.c_char_p),
        ("data", ctypes.c_void_p),
        ("dataBytes", ctypes.c_uint64),
        ("dims", ctypes.c_void_p),
        ("dimsCount", ctypes.c_uint64),
        ("precision", ctypes.c_int),
    ]


class _TensorInfo(ctypes.Structure):
    # struct CustomNodeTensorInfo: 32 bytes on x86-64
    _fields_ = [
        ("name", ctypes.c_char_p),
        ("dims", ctypes.c_void_p),
        ("dimsCount", ctypes.c_uint64),
        ("precision", ctypes.c_int),
    ]


class _Param(ctypes.Structure):
    # struct CustomNodeParam: 16 bytes on x86-64
    _fields_ = [("key", ctypes.c_char_p), ("value", ctypes.c_char_p)]


_P = ctypes.c_void_p
_INT = ctypes.c_int
_PARAMS = ctypes.POINTER(_Param)
_SIGNATURES: Final[dict[str, list[Any]]] = {
    "initialize": [ctypes.POINTER(_P), _PARAMS, _INT],
    "deinitialize": [_P],
    "execute": [
        ctypes.POINTER(_Tensor),
        _INT,
        ctypes.POINTER(ctypes.POINTER(_Tensor)),
        ctypes.POINTER(_INT),
        _PARAMS,
        _INT,
        _P,
    ],
    "getInputsInfo": [
        ctypes.POINTER(ctypes.POINTER(_TensorInfo)),
        ctypes.POINTER(_INT),
        _PARAMS,
        _INT,
        _P,
    ],
    "getOutputsInfo": [
        ctypes.POINTER(ctypes.POINTER(_TensorInfo)),
        ctypes.POINTER(_INT),
        _PARAMS,
        _INT,
        _P,
    ],
    "release": [_P, _P],
}


@dataclass(frozen=True, slots=True)
class NodeTensorInfo:
    """One entry of getInputsInfo/getOutputsInfo. A dimension the library reports as 0 is -1."""

    name: str
    precision: Precision
    shape: tuple[int, ...]

    @property
    def datatype(self) -> str:
        """KServe datatype name; ``"INVALID"`` for UNSPECIFIED or an unknown enum value."""
        row = _DTYPES.get(self.precision)
        return row[1] if row else "INVALID"


class CustomNodeLibrary:
    """One opened ``.so`` with its six functions. Opening it is blocking I/O (``dlopen``).

    A library stays loaded while the server runs (``dlclose`` under a possibly running thread
    is not safe; dropping the object only drops the reference). ``close`` unloads it at server
    shutdown, once every node initialized from it has been deinitialized.

    Raises:
        NodeLibraryFailed: NODE_LIBRARY_LOAD_FAILED_OPEN if the file cannot be opened,
            NODE_LIBRARY_LOAD_FAILED_SYM if one of the six functions is not exported.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        try:
            self._dll = ctypes.CDLL(str(self.path), mode=os.RTLD_LAZY | os.RTLD_LOCAL)
        except OSError as exc:
            raise library_error("NODE_LIBRARY_LOAD_FAILED_OPEN", f"{self.path}: {exc}") from None
        self._fn: dict[str, Callable[..., int]] = {}
        for symbol, argtypes in _SIGNATURES.items():
            try:
                fn = getattr(self._dll, symbol)
            except AttributeError:
                raise library_error(
                    "NODE_LIBRARY_LOAD_FAILED_SYM", f"{self.path}: {symbol}"
                ) from None
            fn.argtypes = argtypes
            fn.restype = ctypes.c_int
            self._fn[symbol] = fn
        self._lock = threading.Lock()
        self._live = 0
        self._closed = False

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> bool:
        """Unload the library (``dlclose``) unless a node initialized from it is still live.
        Returns whether it is unloaded; no node can be initialized from it afterwards."""
        with self._lock:
            if self._closed:
                return True
            if self._live:
                return False
            self._closed = True
            self._fn = {}
        _ctypes.dlclose(self._dll._handle)
        return True

    def _node_started(self) -> None:
        with self._lock:
            if self._closed:
                raise RuntimeError(f"custom node library {str(self.path)!r} is closed")
            self._live += 1

    def _node_ended(self) -> None:
        with self._lock:
            self._live -= 1

    def __repr__(self) -> str:
        return f"CustomNodeLibrary({str(self.path)!r})"

    def initialize(self, params: Mapping[str, str] | None = None, *, name: str = "") -> CustomNode:
        """Call ``initialize`` with ``params`` and a fresh NULL handle; blocking.

        ``name`` is the pipeline node's, for messages.

        Raises:
            NodeLibraryFailed: NODE_LIBRARY_INITIALIZE_FAILED on a non-zero return code.
        """
        return CustomNode(self, dict(params or {}), name or self.path.stem)


class CustomNode(ThreadedNode):
    """A library initialized with one node's params; owns the internal manager until closed."""

    def __init__(self, library: CustomNodeLibrary, params: dict[str, str], name: str) -> None:
        super().__init__(name)
        self.library = library
        self.params: Mapping[str, str] = params
        self._fn = library._fn
        # The C strings must outlive every call: the array keeps its bytes objects alive.
        self._params: Any = None
        if params:
            array = (_Param * len(params))()
            for slot, (key, value) in zip(array, params.items(), strict=True):
                slot.key = key.encode()
                slot.value = value.encode()
            self._params = array
        self._params_count = len(params)
        handle = _P()
        library._node_started()
        try:
            rc = self._fn["initialize"](ctypes.byref(handle), self._params, self._params_count)
        except BaseException:
            library._node_ended()
            raise
        if rc != 0:
            library._node_ended()
            raise library_error("NODE_LIBRARY_INITIALIZE_FAILED", f"{library.path}: returned {rc}")
        self._manager = handle
        self._inputs: dict[str, NodeTensorInfo] | None = None
        self._outputs: dict[str, NodeTensorInfo] | None = None
        self._meta: NodeMeta | None = None

    # -- metadata ---------------------------------------------------------------------------

    def inputs_info(self) -> dict[str, NodeTensorInfo]:
        """getInputsInfo, copied and released; cached (the params never change). Blocking.

        Raises:
            NodeLibraryFailed: NODE_LIBRARY_METADATA_FAILED (non-zero return),
                NODE_LIBRARY_OUTPUTS_CORRUPTED (NULL array), _COUNT (count <= 0).
        """
        if self._inputs is None:
            self._inputs = self._info("getInputsInfo")
        return self._inputs

    def outputs_info(self) -> dict[str, NodeTensorInfo]:
        """getOutputsInfo; see ``inputs_info``."""
        if self._outputs is None:
            self._outputs = self._info("getOutputsInfo")
        return self._outputs

    def metadata(self) -> NodeMeta:
        """Both metadata calls as a pipeline validates them (datatypes as KServe names)."""
        if self._meta is None:

            def meta(info: Mapping[str, NodeTensorInfo]) -> dict[str, TensorMeta]:
                return {name: TensorMeta(t.datatype, t.shape) for name, t in info.items()}

            self._meta = NodeMeta(meta(self.inputs_info()), meta(self.outputs_info()))
        return self._meta

    def _info(self, symbol: str) -> dict[str, NodeTensorInfo]:
        self._check_open()
        info = ctypes.POINTER(_TensorInfo)()
        count = _INT()
        rc = self._fn[symbol](
            ctypes.byref(info), ctypes.byref(count), self._params, self._params_count, self._manager
        )
        if rc != 0:
            raise library_error("NODE_LIBRARY_METADATA_FAILED", f"{symbol} returned {rc}")
        if not info:
            raise library_error("NODE_LIBRARY_OUTPUTS_CORRUPTED", symbol)
        out: dict[str, NodeTensorInfo] = {}
        try:
            if count.value <= 0:
                raise library_error(
                    "NODE_LIBRARY_OUTPUTS_CORRUPTED_COUNT", f"{symbol}: {count.value}"
                )
            for i in range(count.value):
                entry = info[i]
                if entry.name is None:
                    continue  # OVMS skips such an entry and does not release its dims
                try:
                    dims = _read_dims(entry.dims, entry.dimsCount)
                finally:
                    if entry.dims:
                        self._release(entry.dims)
                name = entry.name.decode()
                out[name] = NodeTensorInfo(name, _precision(entry.precision), _dynamic(dims))
        finally:
            self._release(ctypes.cast(info, _P).value)
        return out

    # -- execution --------------------------------------------------------------------------

    def _prepare(self, inputs: Mapping[str, Array]) -> Work:
        """Check the inputs against getInputsInfo and lay them out as C tensors.

        The library then sees one tensor per input, named by its node input; the work checks
        and copies the outputs and hands every buffer back to ``release``. Errors raised by the
        work: NodeLibraryFailed NODE_LIBRARY_EXECUTION_FAILED on a non-zero return code, or
        one of OVMS' output checks (corrupted handle or count, missing name, unspecified
        precision, content size != product(dims) x element size).
        """
        self._check_open()
        check_inputs(self.name, self.metadata().inputs, inputs)
        keep: list[object] = []  # arrays, dims and names the C tensors point into
        tensors = (_Tensor * max(len(inputs), 1))()
        for slot, (name, value) in zip(tensors, inputs.items(), strict=False):
            precision = _BY_DTYPE[value.dtype.newbyteorder("<")]
            array = np.ascontiguousarray(value, dtype=_DTYPES[precision][0])
            dims = (ctypes.c_uint64 * max(array.ndim, 1))(*array.shape)
            encoded = name.encode()
            keep += (array, dims, encoded)
            slot.name = encoded
            slot.data = array.ctypes.data
            slot.dataBytes = array.nbytes
            slot.dims = ctypes.addressof(dims)
            slot.dimsCount = array.ndim
            slot.precision = precision
        count = len(inputs)

        def work(abandoned: Callable[[], bool]) -> dict[str, Array]:
            outputs = ctypes.POINTER(_Tensor)()
            outputs_count = _INT()
            rc = self._fn["execute"](
                tensors,
                count,
                ctypes.byref(outputs),
                ctypes.byref(outputs_count),
                self._params,
                self._params_count,
                self._manager,
            )
            del keep[:]
            if rc != 0:
                raise library_error(
                    "NODE_LIBRARY_EXECUTION_FAILED", f"node: {self.name} returned {rc}"
                )
            return _collect(self, outputs, outputs_count.value, copy=not abandoned())

        return work

    def _shutdown(self) -> None:
        try:
            self._fn["deinitialize"](self._manager)  # OVMS ignores its result
        finally:
            self.library._node_ended()

    def _release(self, address: int | None) -> None:
        self._fn["release"](address, self._manager)


def _collect(node: CustomNode, outputs: Any, count: int, *, copy: bool) -> dict[str, Array]:
    """Check and copy each output, releasing every buffer; the first problem is raised after."""
    if not outputs:
        raise library_error("NODE_LIBRARY_OUTPUTS_CORRUPTED")
    result: dict[str, Array] = {}
    problem: NodeLibraryFailed | None = None
    try:
        if count <= 0:
            raise library_error("NODE_LIBRARY_OUTPUTS_CORRUPTED_COUNT", str(count))
        for i in range(count):
            tensor = outputs[i]
            try:
                if copy and problem is None:
                    name, array = _output(tensor)
                    result[name] = array
            except NodeLibraryFailed as exc:
                problem = exc
            finally:
                if tensor.dims:
                    node._release(tensor.dims)
                if tensor.data:
                    node._release(tensor.data)
    finally:
        node._release(ctypes.cast(outputs, _P).value)
    if problem is not None:
        raise problem
    return result


def _output(tensor: _Tensor) -> tuple[str, Array]:
    if tensor.name is None:
        raise library_error("NODE_LIBRARY_OUTPUT_MISSING_NAME")
    name: str = tensor.name.decode()
    row = _DTYPES.get(_precision(tensor.precision))
    if row is None:
        raise library_error("NODE_LIBRARY_INVALID_PRECISION", name)
    if tensor.dimsCount and not tensor.dims:
        raise library_error("NODE_LIBRARY_INVALID_SHAPE", name)
    shape = _read_dims(tensor.dims, tensor.dimsCount)
    dtype = row[0]
    expected = math.prod(shape) * dtype.itemsize
    if not tensor.data or tensor.dataBytes != expected:
        raise library_error(
            "NODE_LIBRARY_INVALID_CONTENT_SIZE",
            f"{name}: {tensor.dataBytes} bytes for shape {list(shape)} of {row[1]}",
        )
    array: Array = np.empty(shape, dtype)
    ctypes.memmove(array.ctypes.data, tensor.data, expected)
    return name, array


def _read_dims(address: int | None, count: int) -> tuple[int, ...]:
    if not count or not address:
        return ()
    return tuple((ctypes.c_uint64 * count).from_address(address))


def _dynamic(dims: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(-1 if d == 0 else d for d in dims)


def _precision(value: int) -> Precision:
    try:
        return Precision(value)
    except ValueError:
        return Precision.UNSPECIFIED


def initialize_node(
    node: NodeConfig, libraries: Mapping[str, CustomNodeLibrary]
) -> ThreadedNode | None:
    """The node instance a custom or Python node config asks for, initialized with its params.

    Returns None when a custom node names a library that is not loaded (validation then reports
    PIPELINE_DEFINITION_INVALID_NODE_LIBRARY). Blocking (initialize, import).

    Raises:
        NodeLibraryFailed: initialize failed, or the Python callable cannot be loaded.
        ValueError: ``node`` is a DL model node.
    """
    if node.kind == CUSTOM:
        library = libraries.get(node.library_name or "")
        return None if library is None else library.initialize(node.params, name=node.name)
    if node.kind == PYTHON and node.callable is not None:
        return load_python_node(node.callable, node.params, name=node.name)
    raise ValueError(f"node {node.name!r} is a {node.kind!r} node")
