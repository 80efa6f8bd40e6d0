#!/usr/bin/env python3
"""Where a server's time goes, per thread and per layer, from a py-spy profile.

Record a running server under load, then classify every sample by the innermost frame that
belongs to a known layer (HTTP/2, grpclib, the event loop and sockets, codecs, data plane and
batcher, OpenVINO's Python API, ...):

    py-spy record -p PID -d 10 -r 500 --threads --nonblocking -f raw -o prof.txt
    python scripts/profile_layers.py prof.txt [--requests N]

With ``--requests`` (the requests the server answered while recording) it also prints the
microseconds per request of each layer, at the sampling rate given by ``--rate``. Samples of a
thread waiting in the kernel are not recorded (py-spy's default), so the figures are busy time.
"""

from __future__ import annotations

import argparse
from collections import Counter, defaultdict
from pathlib import Path

# (layer, substrings of a frame's "function (file:line)" text); the first match from the
# innermost frame outwards names the sample's layer
IDLE = (
    "trio/_core/_thread_cache.py:211",  # a cached trio worker thread waiting for work
    "concurrent/futures/thread.py:81",  # an executor thread waiting for work
    "threading.py",  # a thread waiting on a lock or condition
)
"""Innermost frames of a thread blocked without the GIL, which py-spy may report as busy."""

LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("epoll_wait (idle, or polling between batches)", ("get_events (trio/_core/_io_epoll",
                                                        "_epoll_wait (trio/_core/_io_epoll")),
    ("OpenVINO (Python API and native calls)", ("openvino/",)),
    ("HTTP/2 framing (h2, hpack, hyperframe)", ("h2/", "hpack/", "hyperframe/", "_patches/h")),
    ("grpclib", ("grpclib/", "_patches/grpclib")),
    ("HTTP/1.1 (h11, hypercorn, quart)", ("h11/", "hypercorn/", "quart", "rest/")),
    ("codecs", ("ovtrio/codecs/", "betterproto", "_proto/")),
    ("gRPC calls (grpc/_unary, RPC table)", ("ovtrio/grpc/_unary", "ovtrio/grpc/_bridge",
                                             "ovtrio/grpc/kserve", "ovtrio/grpc/tfs")),
    ("data plane, batcher, runtime", ("ovtrio/dataplane", "ovtrio/batching", "ovtrio/runtime/",
                                      "ovtrio/scheduler", "ovtrio/load", "ovtrio/repository/",
                                      "ovtrio/tensors", "ovtrio/metrics")),
    ("asyncio loop hosted on trio", ("ovtrio/grpc/_hosted", "asyncio/")),
    ("trio scheduler and sockets", ("trio/", "ovtrio/_inbox", "outcome/")),
    ("numpy", ("numpy/",)),
]  # fmt: skip


def layer_of(frames: list[str]) -> str:
    for frame in reversed(frames):
        for layer, keys in LAYERS:
            if any(k in frame for k in keys):
                return layer
    return "other"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("profile", type=Path, help="py-spy record -f raw output")
    ap.add_argument("--requests", type=int, default=0, help="requests answered meanwhile")
    ap.add_argument("--rate", type=float, default=500.0, help="py-spy's -r (samples/s)")
    args = ap.parse_args()
    by_thread: dict[str, Counter[str]] = defaultdict(Counter)
    for line in args.profile.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")
        if any(k in frames[-1] for k in IDLE):
            continue
        thread = frames[0].split(":")[-1].strip() or frames[0]
        by_thread[thread][layer_of(frames[1:])] += int(count)
    total = sum(sum(c.values()) for c in by_thread.values())
    for thread, layers in sorted(by_thread.items(), key=lambda kv: -sum(kv[1].values())):
        n = sum(layers.values())
        print(f"{thread}: {n} samples ({n / total:.0%})")
        for layer, k in layers.most_common():
            per = ""
            if args.requests:
                per = f"  {k / args.rate / args.requests * 1e6:7.1f} us/request"
            print(f"  {k / n:6.1%}  {layer}{per}")


if __name__ == "__main__":
    main()
