"""Every codec module imports without loading an event loop, a server framework, OpenVINO or
the data plane.

Each module is imported in a fresh interpreter, so nothing another test imported hides a
dependency.
"""

from __future__ import annotations

import os
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import ovtrio
import ovtrio.codecs

FORBIDDEN = ("trio", "grpclib", "hypercorn", "quart", "openvino", "uvloop", "h2")
ALLOWED_OVTRIO = ("ovtrio", "ovtrio._version", "ovtrio.errors", "ovtrio.tensors")
"""The ovtrio modules a codec may load besides ``ovtrio._proto`` and ``ovtrio.codecs``:
nothing of the data plane, the repository, the runtime or a transport."""

CODECS = sorted(f"ovtrio.codecs.{m.name}" for m in pkgutil.iter_modules(ovtrio.codecs.__path__))

_PROBE = """
import sys
import {module}
loaded = [name for name in {forbidden!r} if name in sys.modules]
loaded += sorted(
    name
    for name in sys.modules
    if name.startswith("ovtrio")
    and name not in {allowed!r}
    and not name.startswith(("ovtrio._proto", "ovtrio.codecs"))
)
print(" ".join(loaded))
"""


def test_every_codec_is_listed() -> None:
    assert "ovtrio.codecs.kserve_grpc" in CODECS
    assert "ovtrio.codecs._tensor_wire" in CODECS


@pytest.mark.parametrize("module", ["ovtrio.codecs", *CODECS])
def test_codec_imports_no_framework(module: str) -> None:
    probe = _PROBE.format(module=module, forbidden=FORBIDDEN, allowed=ALLOWED_OVTRIO)
    src = str(Path(ovtrio.__file__).parent.parent)  # the tree under test, not an installed one
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=False, env=env
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [], f"{module} loads {done.stdout.strip()}"
