"""Every codec module imports without loading an event loop, a server framework or OpenVINO.

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

CODECS = sorted(f"ovtrio.codecs.{m.name}" for m in pkgutil.iter_modules(ovtrio.codecs.__path__))

_PROBE = """
import sys
import {module}
print(" ".join(name for name in {forbidden!r} if name in sys.modules))
"""


def test_every_codec_is_listed() -> None:
    assert "ovtrio.codecs.kserve_grpc" in CODECS
    assert "ovtrio.codecs._tensor_wire" in CODECS


@pytest.mark.parametrize("module", ["ovtrio.codecs", *CODECS])
def test_codec_imports_no_framework(module: str) -> None:
    probe = _PROBE.format(module=module, forbidden=FORBIDDEN)
    src = str(Path(ovtrio.__file__).parent.parent)  # the tree under test, not an installed one
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=False, env=env
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [], f"{module} loads {done.stdout.strip()}"
