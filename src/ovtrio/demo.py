"""The built-in demo model, built with OpenVINO's opset at first start (no downloads).

``demo``: input ``input_name`` FP32 ``[-1, 10]`` -> output ``output_name`` = 2 * x + 1, and
``argmax`` INT64 ``[-1]`` (the index of the largest value of each row). Batch dimension dynamic.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["ensure_demo_model"]


def ensure_demo_model(base_path: Path) -> Path:
    """Write ``<base_path>/1/model.xml`` (+ ``.bin``) unless a version folder already exists."""
    version_dir = base_path / "1"
    if (version_dir / "model.xml").exists():
        return base_path
    import numpy as np
    import openvino as ov
    import openvino.opset13 as ops

    x = ops.parameter(ov.PartialShape([-1, 10]), ov.Type.f32, name="input_name")
    y = ops.add(ops.multiply(x, ops.constant(np.float32(2))), ops.constant(np.float32(1)))
    top = ops.topk(
        x, ops.constant(np.int64(1)), axis=1, mode="max", sort="none", index_element_type="i64"
    )
    idx = ops.squeeze(top.output(1), ops.constant(np.array([1], np.int64)))
    y.output(0).get_tensor().set_names({"output_name"})
    idx.output(0).get_tensor().set_names({"argmax"})
    model = ov.Model([y.output(0), idx.output(0)], [x], "demo")
    version_dir.mkdir(parents=True, exist_ok=True)
    ov.save_model(model, str(version_dir / "model.xml"))
    return base_path
