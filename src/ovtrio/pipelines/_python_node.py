"""ovtrio's Python node: a callable named ``"module:function"`` with the custom node contract.

The function takes ``(inputs, params)``: ``{node input name: numpy array}`` and the node's
``params`` (strings), and returns ``{output name: numpy array}``. Its metadata, which pipeline
validation needs as it needs a C library's getInputsInfo/getOutputsInfo, is declared on the
function::

    def crop(inputs, params): ...
    crop.inputs = {"image": ("FP32", (1, 3, -1, -1))}
    crop.outputs = {"crops": ("FP32", (-1, 1, 3, 64, 64))}

Datatypes are KServe names (the C interface's set plus BOOL, UINT32, UINT64); -1 is a dynamic
dimension. The function runs in a worker thread like a C node (see ``_node``): it must be
thread-safe, and it should not keep the input arrays, which are read-only views of server memory.

Errors use the custom node codes: an import failure NODE_LIBRARY_LOAD_FAILED_OPEN, a missing
attribute NODE_LIBRARY_LOAD_FAILED_SYM, bad metadata NODE_LIBRARY_METADATA_FAILED, an exception
from the function NODE_LIBRARY_EXECUTION_FAILED, a result that is not a dict of arrays
NODE_LIBRARY_OUTPUTS_CORRUPTED.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from ..errors import OvtrioError
from ..tensors import DATATYPES
from ._meta import NodeMeta, TensorMeta, check_inputs
from ._node import Array, ThreadedNode, Work, library_error

__all__ = ["PythonNode", "load_python_node"]

_DATATYPES = frozenset(d.kserve for d in DATATYPES if d.kserve != "BYTES")


def load_python_node(
    spec: str, params: Mapping[str, str] | None = None, *, name: str = ""
) -> PythonNode:
    """Import ``"module:function"`` and read its declared metadata.

    Raises:
        NodeLibraryFailed: NODE_LIBRARY_LOAD_FAILED_OPEN (not ``module:function`` or the import
            failed), NODE_LIBRARY_LOAD_FAILED_SYM (no such function), NODE_LIBRARY_METADATA_FAILED
            (``inputs`` / ``outputs`` missing or malformed).
    """
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise library_error("NODE_LIBRARY_LOAD_FAILED_OPEN", f"{spec!r} is not 'module:function'")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        raise library_error("NODE_LIBRARY_LOAD_FAILED_OPEN", f"{module_name}: {exc!r}") from exc
    target: Any = module
    for part in attribute.split("."):
        target = getattr(target, part, None)
    if not callable(target):
        raise library_error("NODE_LIBRARY_LOAD_FAILED_SYM", f"{spec}: no such callable")
    meta = NodeMeta(
        _declared(spec, "inputs", getattr(target, "inputs", None)),
        _declared(spec, "outputs", getattr(target, "outputs", None)),
    )
    return PythonNode(spec, target, meta, dict(params or {}), name or spec)


def _declared(spec: str, which: str, value: object) -> dict[str, TensorMeta]:
    problem = f"{spec}.{which}: expected {{name: (datatype, shape)}}, got {value!r}"
    if not isinstance(value, Mapping) or not value:
        raise library_error("NODE_LIBRARY_METADATA_FAILED", problem)
    out: dict[str, TensorMeta] = {}
    for name, entry in value.items():
        try:
            datatype, shape = entry
            dims = tuple(int(d) for d in shape)
        except (TypeError, ValueError):
            raise library_error("NODE_LIBRARY_METADATA_FAILED", problem) from None
        if not isinstance(name, str) or datatype not in _DATATYPES or any(d < -1 for d in dims):
            raise library_error("NODE_LIBRARY_METADATA_FAILED", problem)
        out[name] = TensorMeta(datatype, dims)
    return out


class PythonNode(ThreadedNode):
    def __init__(
        self,
        spec: str,
        function: Callable[[dict[str, Array], dict[str, str]], object],
        meta: NodeMeta,
        params: dict[str, str],
        name: str,
    ) -> None:
        super().__init__(name)
        self.spec = spec
        self.params: Mapping[str, str] = params
        self._function = function
        self._meta = meta

    def __repr__(self) -> str:
        return f"PythonNode({self.spec!r})"

    def metadata(self) -> NodeMeta:
        return self._meta

    def _prepare(self, inputs: Mapping[str, Array]) -> Work:
        self._check_open()
        check_inputs(self.name, self._meta.inputs, inputs)
        arguments = {}
        for key, value in inputs.items():
            view = value.view()
            view.flags.writeable = False
            arguments[key] = view

        def work(abandoned: Callable[[], bool]) -> dict[str, Array]:
            try:
                result = self._function(arguments, dict(self.params))
            except OvtrioError:
                raise
            except Exception as exc:
                raise library_error(
                    "NODE_LIBRARY_EXECUTION_FAILED", f"node: {self.name} raised {exc!r}"
                ) from exc
            if abandoned():
                return {}
            return self._outputs(result)

        return work

    def _outputs(self, result: object) -> dict[str, Array]:
        if not isinstance(result, Mapping) or not result:
            raise library_error(
                "NODE_LIBRARY_OUTPUTS_CORRUPTED",
                f"node: {self.name} returned {type(result).__name__}",
            )
        out: dict[str, Array] = {}
        for key, value in result.items():
            if not isinstance(key, str):
                raise library_error(
                    "NODE_LIBRARY_OUTPUT_MISSING_NAME", f"node: {self.name} key {key!r}"
                )
            if not isinstance(value, np.ndarray) or value.dtype.kind in "OSUV":
                raise library_error(
                    "NODE_LIBRARY_INVALID_PRECISION",
                    f"node: {self.name} output {key}: {type(value).__name__}",
                )
            out[key] = value
        return out

    def _shutdown(self) -> None:
        pass
