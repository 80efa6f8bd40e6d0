"""Benchmark models, built with OpenVINO's opset (no downloads).

* ``tiny``: FP32 [-1, 4] -> MatMul 4x4 -> Add: all overhead, no compute.
* ``mobilenet``: a MobileNet-v1-style net, FP32 [-1, 3, 224, 224], depthwise-separable blocks.
* ``resnet``: a ResNet-50-style net, FP32 [-1, 3, 224, 224], bottleneck blocks 3-4-6-3.

Weights are random (seeded): the point is the amount and the shape of the work.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import openvino as ov
import openvino.opset13 as ops

RNG = np.random.default_rng(0)


def _w(*shape: int) -> ov.Node:
    fan_in = int(np.prod(shape[1:]))
    return ops.constant((RNG.standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(np.float32))


def _conv(x: ov.Node, cin: int, cout: int, k: int, stride: int = 1, groups: int = 1) -> ov.Node:
    pad = k // 2
    if groups == 1:
        y = ops.convolution(x, _w(cout, cin, k, k), [stride] * 2, [pad] * 2, [pad] * 2, [1, 1])
    else:
        w = _w(groups, cout // groups, cin // groups, k, k)
        y = ops.group_convolution(x, w, [stride] * 2, [pad] * 2, [pad] * 2, [1, 1])
    bias = ops.constant(np.zeros((1, cout, 1, 1), np.float32))
    return ops.add(y, bias)


def _head(x: ov.Node, cin: int, classes: int = 1000) -> ov.Output:
    pooled = ops.reduce_mean(x, ops.constant(np.array([2, 3], np.int64)), False)
    logits = ops.matmul(pooled, _w(classes, cin), False, True)
    out = ops.softmax(logits, 1).output(0)
    out.get_tensor().set_names({"probabilities"})
    return out


def tiny() -> ov.Model:
    x = ops.parameter(ov.PartialShape([-1, 4]), ov.Type.f32, name="x")
    y = ops.add(ops.matmul(x, _w(4, 4), False, False), ops.constant(np.ones(4, np.float32)))
    y.output(0).get_tensor().set_names({"y"})
    return ov.Model([y.output(0)], [x], "tiny")


def mobilenet() -> ov.Model:
    x = ops.parameter(ov.PartialShape([-1, 3, 224, 224]), ov.Type.f32, name="input")
    h = ops.relu(_conv(x, 3, 32, 3, 2))
    cfg = (
        [(32, 64, 1), (64, 128, 2), (128, 128, 1), (128, 256, 2), (256, 256, 1), (256, 512, 2)]
        + [(512, 512, 1)] * 5
        + [(512, 1024, 2), (1024, 1024, 1)]
    )
    for cin, cout, stride in cfg:
        h = ops.relu(_conv(h, cin, cin, 3, stride, groups=cin))
        h = ops.relu(_conv(h, cin, cout, 1))
    return ov.Model([_head(h, 1024)], [x], "mobilenet")


def resnet() -> ov.Model:
    x = ops.parameter(ov.PartialShape([-1, 3, 224, 224]), ov.Type.f32, name="input")
    h = ops.relu(_conv(x, 3, 64, 7, 2))
    h = ops.max_pool(h, [2, 2], [1, 1], [1, 1], [1, 1], [3, 3]).output(0)
    cin = 64
    for stage, (blocks, width) in enumerate(((3, 64), (4, 128), (6, 256), (3, 512))):
        for b in range(blocks):
            stride = 2 if b == 0 and stage > 0 else 1
            cout = width * 4
            y = ops.relu(_conv(h, cin, width, 1))
            y = ops.relu(_conv(y, width, width, 3, stride))
            y = _conv(y, width, cout, 1)
            short = _conv(h, cin, cout, 1, stride) if (stride != 1 or cin != cout) else h
            h = ops.relu(ops.add(y, short))
            cin = cout
    return ov.Model([_head(h, 2048)], [x], "resnet")


BUILDERS = {"tiny": tiny, "mobilenet": mobilenet, "resnet": resnet}


def input_shape(name: str) -> list[int]:
    return [1, 4] if name == "tiny" else [1, 3, 224, 224]


def ensure(root: Path, name: str) -> Path:
    """Build ``root/<name>/1/model.xml`` unless it exists; return the model's base path."""
    base = root / name
    xml = base / "1" / "model.xml"
    if not xml.exists():
        xml.parent.mkdir(parents=True, exist_ok=True)
        ov.save_model(BUILDERS[name](), str(xml))
    return base
