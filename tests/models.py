"""Models the tests build with OpenVINO's opset (no downloads)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import openvino as ov
import openvino.opset13 as ops

OV_TYPES = {
    "BOOL": ov.Type.boolean,
    "UINT8": ov.Type.u8,
    "UINT16": ov.Type.u16,
    "UINT32": ov.Type.u32,
    "UINT64": ov.Type.u64,
    "INT8": ov.Type.i8,
    "INT16": ov.Type.i16,
    "INT32": ov.Type.i32,
    "INT64": ov.Type.i64,
    "FP16": ov.Type.f16,
    "FP32": ov.Type.f32,
    "FP64": ov.Type.f64,
    "BYTES": ov.Type.string,
}


def _save(model: ov.Model, base: Path, version: int = 1) -> Path:
    vdir = base / str(version)
    vdir.mkdir(parents=True, exist_ok=True)
    ov.save_model(model, str(vdir / "model.xml"), compress_to_fp16=False)
    return base


def _named(node: ov.Node, name: str) -> ov.Output:
    out = node.output(0)
    out.get_tensor().set_names({name})
    return out


def add_model(
    base: Path,
    version: int = 1,
    addend: float = 1.0,
    shape=(-1, 10),
    in_name: str = "b",
    out_name: str = "a",
) -> Path:
    """OVMS' classic dummy: a = b + addend, FP32."""
    x = ops.parameter(ov.PartialShape(list(shape)), ov.Type.f32, name=in_name)
    y = _named(ops.add(x, ops.constant(np.float32(addend))), out_name)
    return _save(ov.Model([y], [x], "dummy"), base, version)


def identity_model(base: Path, kserve_type: str, shape=(-1, 3)) -> Path:
    """out = in, for any datatype (BYTES as an OpenVINO string tensor)."""
    typ = OV_TYPES[kserve_type]
    x = ops.parameter(ov.PartialShape(list(shape)), typ, name="in")
    if kserve_type == "BYTES":
        reshaped = _named(ops.reshape(x, ops.shape_of(x), False), "out")
        model = ov.Model([reshaped], [x], "identity")
    else:
        model = ov.Model([_named(ops.convert(x, typ), "out")], [x], "identity")
    return _save(model, base)


def multi_model(base: Path) -> Path:
    """Two inputs, two outputs: sum = x + y, diff = x - y (FP32 [-1, 4])."""
    x = ops.parameter(ov.PartialShape([-1, 4]), ov.Type.f32, name="x")
    y = ops.parameter(ov.PartialShape([-1, 4]), ov.Type.f32, name="y")
    s = _named(ops.add(x, y), "sum")
    d = _named(ops.subtract(x, y), "diff")
    return _save(ov.Model([s, d], [x, y], "multi"), base)


def slow_model(base: Path, channels: int = 64, hw: int = 256, layers: int = 24) -> Path:
    """y = x (FP32 [-1, channels]) after about half a second of convolutions per sample.

    The input is broadcast to [N, channels, hw, hw], run through ``layers`` 3x3 convolutions,
    reduced, multiplied by 0 and added to x, so the answer is exact and the work is real.
    """
    x = ops.parameter(ov.PartialShape([-1, channels]), ov.Type.f32, name="x")
    r = ops.unsqueeze(x, ops.constant(np.array([2, 3], np.int64)))
    n = ops.gather(
        ops.shape_of(x), ops.constant(np.array([0], np.int64)), ops.constant(np.int64(0))
    )
    h: ov.Node = ops.broadcast(
        r, ops.concat([n, ops.constant(np.array([channels, hw, hw], np.int64))], 0)
    )
    rng = np.random.default_rng(0)
    w = ops.constant((rng.standard_normal((channels, channels, 3, 3)) * 0.05).astype(np.float32))
    for _ in range(layers):
        h = ops.relu(ops.convolution(h, w, [1, 1], [1, 1], [1, 1], [1, 1]))
    m = ops.reduce_mean(h, ops.constant(np.array([2, 3], np.int64)), False)
    y = _named(ops.add(x, ops.multiply(m, ops.constant(np.float32(0)))), "y")
    return _save(ov.Model([y], [x], "slow"), base)


def broken_version(base: Path, version: int) -> Path:
    vdir = base / str(version)
    vdir.mkdir(parents=True, exist_ok=True)
    (vdir / "model.xml").write_text("<net>this is not a model</net>")
    (vdir / "model.bin").write_bytes(b"")
    return base


def matmul_chain(width: int = 256, depth: int = 12, seed: int = 0) -> ov.Model:
    """x (FP32 [-1, width]) through ``depth`` MatMul+ReLU layers: a dynamic-batch model long
    enough (~0.1 ms per layer and row here) for a cancel to land in the middle of it."""
    rng = np.random.default_rng(seed)
    x = ops.parameter(ov.PartialShape([-1, width]), ov.Type.f32, name="x")
    y: ov.Node = x
    for _ in range(depth):
        w = (rng.random((width, width)) * 0.01).astype(np.float32)
        y = ops.relu(ops.matmul(y, ops.constant(w), False, False))
    return ov.Model([_named(y, "y")], [x], "chain")


def text_model(base: Path, width: int = -1, in_name: str = "text") -> Path:
    """OVMS-style text model: ``in_name`` (UINT8 [-1, width]) holds one zero-padded string per
    row.

    Outputs: ``lengths`` (INT32 [-1], the non-zero bytes of each row), ``rows`` (the rows as
    UINT8) and ``echo_string`` (the rows again; the ``_string`` suffix sends them back as
    strings).
    """
    x = ops.parameter(ov.PartialShape([-1, width]), ov.Type.u8, name=in_name)
    nonzero = ops.convert(ops.not_equal(x, ops.constant(np.uint8(0))), ov.Type.i32)
    lengths = _named(ops.reduce_sum(nonzero, ops.constant(np.int64(1)), False), "lengths")
    rows = _named(ops.convert(x, ov.Type.u8), "rows")
    echo = _named(ops.bitwise_or(x, ops.constant(np.uint8(0))), "echo_string")
    return _save(ov.Model([lengths, rows, echo], [x], "text"), base)
