"""OpenVINO runtime: compiling versions and running inferences. The only package that
imports OpenVINO.

``_compile``: read, reshape and compile a version (``compile_version``, blocking).
``_pool``: ``CompiledModel``, the compiled version and its pool of infer requests.
``_cancel_workaround``: cancelling dynamic-shape inferences around an OpenVINO 2026.4 bug.
"""

from __future__ import annotations

import functools
from pathlib import Path

from ._compile import LoadError as LoadError
from ._compile import compile_version as compile_version
from ._compile import find_model_file as find_model_file
from ._pool import CompiledModel as CompiledModel

__all__ = [
    "CompiledModel",
    "LoadError",
    "compile_version",
    "find_model_file",
    "load_cpu_extension",
    "ov_core",
]


@functools.cache
def ov_core() -> object:
    """The process-wide OpenVINO Core (one per process, as OpenVINO recommends)."""
    import openvino as ov

    return ov.Core()


def load_cpu_extension(path: Path) -> None:
    """Load ``--cpu_extension``'s library of custom operations into ``ov_core()``.

    Raises:
        LoadError: OpenVINO cannot load it; the message is one line naming the path.
    """
    try:
        ov_core().add_extension(str(path))  # type: ignore[attr-defined]
    except RuntimeError as exc:
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        reason = next((line for line in lines if not line.startswith("Exception from")), "")
        raise LoadError(f"--cpu_extension: cannot load {path}: {reason}") from exc
