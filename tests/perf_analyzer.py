"""Where Triton's perf_analyzer is and how to start it: shared by tests/e2e/test_triton_tools.py
and scripts/bench (no pytest here). Set up as scripts/BENCH.md says."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

__all__ = ["find"]


def find() -> tuple[str | None, dict[str, str], str]:
    """(binary, environment to run it in, "") or (None, {}, why it cannot run)."""
    binary = shutil.which("perf_analyzer") or str(Path(sys.executable).parent / "perf_analyzer")
    if not os.path.exists(binary):
        return None, {}, "perf_analyzer is not installed (it ships inside tritonclient==2.41.0)"
    env = dict(os.environ)
    try:
        import nvidia.cuda_runtime  # type: ignore[import-not-found]  # libcudart; no GPU used

        lib = Path(next(iter(nvidia.cuda_runtime.__path__))) / "lib"
        env["LD_LIBRARY_PATH"] = f"{lib}:{env.get('LD_LIBRARY_PATH', '')}"
    except ImportError:
        pass
    probe = subprocess.run(["ldd", binary], capture_output=True, text=True, env=env)
    missing = [line.split()[0] for line in probe.stdout.splitlines() if "not found" in line]
    if missing:
        return (
            None,
            {},
            f"perf_analyzer cannot start, missing libraries: {', '.join(missing)} "
            "(Debian libb64-0d; PyPI nvidia-cuda-runtime-cu12)",
        )
    return binary, env, ""
