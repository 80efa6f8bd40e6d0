"""Tensor metadata as pipelines see it, and the checks made against it.

``TensorMeta`` is what a model version, a custom node library or a Python node declares for one
tensor: a KServe datatype name and a shape with -1 for a dynamic dimension (and, for models,
optional ranges). Validation compares the metadata of connected tensors (``overlap``,
``intersect``); at run time ``check_inputs`` compares the arrays going into a node with it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, TypeAlias

import numpy as np

from ..errors import InvalidArgument
from ..tensors import TensorSpec, datatype_of_array

__all__ = [
    "INVALID",
    "Array",
    "NodeMeta",
    "TensorMeta",
    "check_inputs",
    "intersect",
    "overlap",
    "shape_text",
]

Array: TypeAlias = np.ndarray[Any, Any]

INVALID: Final = "INVALID"
"""The datatype of a pipeline tensor nothing describes (a request input sent straight back)."""


@dataclass(frozen=True, slots=True)
class TensorMeta:
    """A tensor's metadata: KServe datatype name and shape with -1 for a dynamic dimension."""

    datatype: str
    shape: tuple[int, ...]
    ranges: tuple[tuple[int, int], ...] = ()
    """Per dimension (min, max), max -1 for unbounded; empty when ``shape`` says it all."""

    @classmethod
    def of(cls, spec: TensorSpec) -> TensorMeta:
        """A model input or output as the runtime reports it."""
        return cls(spec.datatype.kserve, spec.shape, spec.ranges)

    def intervals(self) -> tuple[tuple[int, int], ...]:
        """Per dimension (min, max), max -1 for unbounded."""
        if self.ranges:
            return self.ranges
        return tuple((0, -1) if d < 0 else (d, d) for d in self.shape)

    def with_leading(self, count: int) -> TensorMeta:
        """Gathered: ``count`` shards (-1: dynamic) stacked in front."""
        ranges = (((0, -1) if count < 0 else (count, count)), *self.ranges) if self.ranges else ()
        return TensorMeta(self.datatype, (count, *self.shape), ranges)

    def shard(self) -> TensorMeta:
        """Demultiplexed: one shard's metadata (dimension 0 dropped)."""
        return TensorMeta(self.datatype, self.shape[1:], self.ranges[1:])


@dataclass(frozen=True, slots=True)
class NodeMeta:
    """What a model version or an initialized custom node declares."""

    inputs: Mapping[str, TensorMeta]
    outputs: Mapping[str, TensorMeta]
    dynamic_parameters: bool = False
    """The model uses ``batch_size`` or ``shape`` ``auto``, which pipelines forbid."""


def shape_text(shape: tuple[int, ...]) -> str:
    """OVMS' way of printing a shape in messages: ``(-1,16)``."""
    return "(" + ",".join(str(d) for d in shape) + ")"


def overlap(a: tuple[int, int], b: tuple[int, int]) -> tuple[int, int] | None:
    """The intersection of two (min, max) intervals (max -1: unbounded); None if empty."""
    low = max(a[0], b[0])
    highs = [h for h in (a[1], b[1]) if h >= 0]
    high = min(highs) if highs else -1
    if high >= 0 and low > high:
        return None
    return low, high


def intersect(a: TensorMeta, b: TensorMeta) -> TensorMeta | None:
    """Metadata satisfying both ``a`` and ``b``; None if they cannot agree."""
    if a.datatype != b.datatype or len(a.shape) != len(b.shape):
        return None
    dims: list[tuple[int, int]] = []
    for x, y in zip(a.intervals(), b.intervals(), strict=True):
        both = overlap(x, y)
        if both is None:
            return None
        dims.append(both)
    shape = tuple(lo if lo == hi else -1 for lo, hi in dims)
    bounded = any(not (lo == hi or (lo == 0 and hi == -1)) for lo, hi in dims)
    return TensorMeta(a.datatype, shape, tuple(dims) if bounded else ())


def check_inputs(
    node: str, declared: Mapping[str, TensorMeta], inputs: Mapping[str, Array]
) -> None:
    """OVMS' check of the tensors going into a node against its declared inputs.

    Datatypes are compared by KServe name; a declared ``-1`` or a range
    accepts any size in it.

    Raises:
        InvalidArgument: with OVMS' message for the first problem found.
    """
    if len(inputs) != len(declared):
        raise InvalidArgument(
            f"Invalid number of inputs - Node: {node} Expected: {len(declared)}; "
            f"Actual: {len(inputs)}"
        )
    for name, meta in declared.items():
        if name not in inputs:
            raise InvalidArgument(f"Missing input with specific name - Node: {node} input: {name}")
        array = inputs[name]
        where = f"Node: {node} input: {name}"
        actual = datatype_of_array(array).kserve
        if meta.datatype != actual:
            raise InvalidArgument(
                f"Invalid input precision - {where} Invalid precision - "
                f"Expected: {meta.datatype}; Actual: {actual}"
            )
        if len(meta.shape) != array.ndim:
            raise InvalidArgument(
                f"Invalid number of shape dimensions - {where} "
                "Invalid number of shape dimensions - "
                f"Expected: {shape_text(meta.shape)}; Actual: {shape_text(array.shape)}"
            )
        for (low, high), size in zip(meta.intervals(), array.shape, strict=True):
            if size < low or (high >= 0 and size > high):
                raise InvalidArgument(
                    f"Invalid input shape - {where} Invalid shape - "
                    f"Expected: {shape_text(meta.shape)}; Actual: {shape_text(array.shape)}"
                )
