"""``_malloc.tune``: a request's large buffers reuse heap pages instead of faulting new ones.

Each case runs in a fresh interpreter (as a front-end worker starts: no OpenVINO, glibc's
thresholds untouched, none of its tuning variables set) and counts the minor page faults of 50
rounds of what a 602 KB gRPC request allocates (a 442 KB and a 160 KB DATA frame, copies of
both, their join) while small objects made meanwhile stay alive above them in the heap.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parent.parent / "src"

ROUNDS = 50

_CHILD = f"""
import resource, sys
sys.path.insert(0, {str(SRC)!r})
from ovtrio import _malloc
if sys.argv[1] == "tune":
    _malloc.tune()
kept = []
def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
before = faults()
for _ in range({ROUNDS}):
    first, second = bytearray(442_000), bytearray(160_000)
    message = bytes(first) + bytes(second)
    kept.append([bytes(100) for _ in range(50)])
    del first, second, message
print(faults() - before)
"""

pytestmark = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's malloc")


def _faults(mode: str) -> int:
    env = {
        k: v for k, v in os.environ.items() if k != "GLIBC_TUNABLES" and not k.startswith("MALLOC_")
    }
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, mode], capture_output=True, text=True, check=True, env=env
    )
    return int(done.stdout)


def test_tuned_buffers_reuse_pages() -> None:
    # one round touches 1.8 MB: ~440 pages if they were new each time
    assert _faults("tune") < ROUNDS * 30


def test_tune_is_what_saves_them() -> None:
    assert _faults("tune") * 5 < _faults("default")
