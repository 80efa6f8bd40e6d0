"""The test custom node libraries in c/, compiled once per session with gcc."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

C_DIR = Path(__file__).parent / "c"
LIBRARIES = ("add_const", "demux", "broken", "gate", "no_release")


@pytest.fixture(scope="session")
def node_libs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """{name: path of the built .so} for every library in LIBRARIES."""
    gcc = shutil.which("gcc")
    if gcc is None:
        pytest.fail("gcc is needed to build the test custom node libraries")
    out = tmp_path_factory.mktemp("custom_nodes")
    built: dict[str, Path] = {}
    for name in LIBRARIES:
        target = out / f"lib{name}.so"
        cmd = [gcc, "-std=c11", "-Wall", "-Wextra", "-Werror", "-O1", "-shared", "-fPIC"]
        subprocess.run([*cmd, "-o", str(target), str(C_DIR / f"{name}.c")], check=True)
        built[name] = target
    return built
