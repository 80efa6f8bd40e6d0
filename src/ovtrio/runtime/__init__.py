"""OpenVINO runtime: compiling versions and running inferences."""

from __future__ import annotations

import functools
from pathlib import Path

from ._openvino import CompiledModel as CompiledModel
from ._openvino import LoadError as LoadError
from ._openvino import compile_version as compile_version
from ._openvino import find_model_file as find_model_file

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
