"""Hypothesis strategies shared by the codec tests and the fuzz tests."""

from __future__ import annotations

from hypothesis import strategies as st
from tritonclient.grpc import service_pb2


def infer_parameter(draw: st.DrawFn, *, allow_nan: bool = True) -> service_pb2.InferParameter:
    """A KServe InferParameter with one field of its oneof set (any kind), or none set.

    ``allow_nan=False`` for tests that compare decoded values for equality."""
    kind = draw(st.sampled_from(["bool", "int64", "string", "double", "uint64", "unset"]))
    param = service_pb2.InferParameter()
    if kind == "bool":
        param.bool_param = draw(st.booleans())
    elif kind == "int64":
        param.int64_param = draw(st.integers(-(2**63), 2**63 - 1))
    elif kind == "string":
        param.string_param = draw(st.text(max_size=8))
    elif kind == "double":
        param.double_param = draw(st.floats(allow_nan=allow_nan))
    elif kind == "uint64":
        param.uint64_param = draw(st.integers(0, 2**64 - 1))
    return param
