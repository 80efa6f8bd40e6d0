"""OpenVINO runtime: compiling versions and running inferences."""

from __future__ import annotations

import functools

from ._openvino import CompiledModel as CompiledModel
from ._openvino import LoadError as LoadError
from ._openvino import compile_version as compile_version
from ._openvino import find_model_file as find_model_file

__all__ = ["CompiledModel", "LoadError", "compile_version", "find_model_file", "ov_core"]


@functools.cache
def ov_core() -> object:
    """The process-wide OpenVINO Core (one per process, as OpenVINO recommends)."""
    import openvino as ov

    return ov.Core()
