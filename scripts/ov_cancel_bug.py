#!/usr/bin/env python3
"""Standalone reproduction of an OpenVINO CPU bug: InferRequest.cancel() leaves stale shapes.

Run: python scripts/ov_cancel_bug.py [--iterations N] [--streams S]

A dynamic-batch model (MatMul+ReLU chain) runs shape P to completion, then an inference of
shape B is started and cancelled part way, then shape P runs again, on another request. The
last answer should have P's rows; with OpenVINO 2026.4 on CPU it often has B's (the rows of
the cancelled inference, i.e. another caller's data in a server). The state lives in the
stream's graph: nodes whose shapes were updated for B but which were not executed still
remember P, so a later inference of exactly P skips their shape inference. Any inference of
another shape repairs it. ovtrio works around it in src/ovtrio/runtime/_cancel_workaround.py.
"""

from __future__ import annotations

import argparse
import random
import time

import numpy as np
import openvino as ov
import openvino.opset13 as ops


def chain(width: int = 256, depth: int = 12) -> ov.Model:
    rng = np.random.default_rng(0)
    x = ops.parameter(ov.PartialShape([-1, width]), ov.Type.f32, name="x")
    y: ov.Node = x
    for _ in range(depth):
        w = (rng.random((width, width)) * 0.01).astype(np.float32)
        y = ops.relu(ops.matmul(y, ops.constant(w), False, False))
    return ov.Model([y], [x], "chain")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--iterations", type=int, default=2000)
    ap.add_argument("--streams", type=int, default=1)
    args = ap.parse_args()
    compiled = ov.Core().compile_model(chain(), "CPU", {"NUM_STREAMS": args.streams})
    a, b = compiled.create_infer_request(), compiled.create_infer_request()
    print(f"OpenVINO {ov.get_version()}, NUM_STREAMS={compiled.get_property('NUM_STREAMS')}")
    stale = 0
    for _ in range(args.iterations):
        p, big = random.choice([1, 2, 3]), random.choice([8, 16, 32])
        b.infer({0: np.ones((p, 256), np.float32)})
        a.start_async({0: np.ones((big, 256), np.float32)})
        time.sleep(random.random() * 0.0005)
        a.cancel()
        try:
            a.wait()
        except RuntimeError:
            pass  # "Infer Request was canceled"
        b.infer({0: np.ones((p, 256), np.float32)})
        if b.get_output_tensor(0).shape[0] != p:
            stale += 1
    print(f"{stale} of {args.iterations} answers had the cancelled inference's shape")


if __name__ == "__main__":
    main()
