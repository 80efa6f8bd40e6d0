#!/usr/bin/env python3
"""REST JSON decoding: ovtrio's KServe codec against a straightforward path, in one run.

Usage: scripts/bench_json.py [--repeat 30] [--shape 1,3,224,224]

For an FP32 tensor (MobileNet's input by default) sent as JSON numbers the way tritonclient and
curl users send it (flat ``data``), and nested (``data`` as nested lists), times:

* naive: ``json.loads(body)`` + ``np.array(data, dtype=np.float32).reshape(shape)``;
* ovtrio: ``ovtrio.codecs.kserve_rest.decode_infer_request`` (the whole request, validated).

Prints the median milliseconds of each and the speed-up; the issue's target is 5x for the flat
form. The numbers are checked equal before anything is timed.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from ovtrio.codecs.kserve_rest import decode_infer_request


def median_ms(fn: Callable[[], Any], repeat: int) -> float:
    fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=30)
    ap.add_argument("--shape", default="1,3,224,224")
    args = ap.parse_args()
    shape = [int(d) for d in args.shape.split(",")]
    x = np.random.default_rng(0).random(shape, dtype=np.float32)
    target = 5.0
    print(f"FP32 {shape}, median of {args.repeat} runs")
    print(f"{'form':<8} {'bytes':>10} {'naive ms':>9} {'ovtrio ms':>10} {'speed-up':>9}")
    for form, data in (("flat", x.reshape(-1).tolist()), ("nested", x.tolist())):
        doc = {"inputs": [{"name": "x", "shape": shape, "datatype": "FP32", "data": data}]}
        body = json.dumps(doc).encode()  # what Python clients (tritonclient, requests) send

        def naive(body: bytes = body) -> np.ndarray[Any, Any]:
            got = json.loads(body)["inputs"][0]
            return np.array(got["data"], dtype=np.float32).reshape(got["shape"])

        def ovtrio(body: bytes = body) -> np.ndarray[Any, Any]:
            request = decode_infer_request(body, None, model_name="m", model_version=None)
            return request.inputs[0].data

        if not (np.array_equal(naive(), x) and np.array_equal(ovtrio(), x)):
            raise SystemExit(f"{form}: a decoder returned wrong numbers")
        slow, fast = median_ms(naive, args.repeat), median_ms(ovtrio, args.repeat)
        ratio = slow / fast
        verdict = ("PASS" if ratio >= target else "FAIL") if form == "flat" else ""
        print(f"{form:<8} {len(body):>10} {slow:>9.1f} {fast:>10.1f} {ratio:>8.1f}x {verdict}")


if __name__ == "__main__":
    main()
