"""OVMS' single-model input preprocessing through OpenVINO's PrePostProcessor.

``apply_preprocess`` adds, to the model's only input and in OVMS' order, the color conversion
(``--color_format``), the precision conversion (``--precision``), the subtraction of
``--mean`` and the division by ``--scale``, so the compiled model takes what clients send:
``model((x - mean) / scale)``. Per-channel values need a ``C`` in the input's layout
(``--layout``, which the flags require, as in OVMS).
"""

from __future__ import annotations

import openvino as ov
from openvino.preprocess import ColorFormat, PrePostProcessor

from ..config import Preprocess

__all__ = ["apply_preprocess"]

_COLOR_FORMATS = {
    "RGB": ColorFormat.RGB,
    "BGR": ColorFormat.BGR,
    "GRAY": ColorFormat.GRAY,
    "NV12": ColorFormat.NV12_SINGLE_PLANE,
    "NV12_2": ColorFormat.NV12_TWO_PLANES,
    "I420": ColorFormat.I420_SINGLE_PLANE,
    "I420_3": ColorFormat.I420_THREE_PLANES,
}

_ELEMENT_TYPES = {
    "BF16": ov.Type.bf16,
    "FP64": ov.Type.f64,
    "FP32": ov.Type.f32,
    "FP16": ov.Type.f16,
    "INT64": ov.Type.i64,
    "INT32": ov.Type.i32,
    "INT16": ov.Type.i16,
    "INT8": ov.Type.i8,
    "INT4": ov.Type.i4,
    "UINT64": ov.Type.u64,
    "UINT32": ov.Type.u32,
    "UINT16": ov.Type.u16,
    "UINT8": ov.Type.u8,
    "UINT4": ov.Type.u4,
    "UINT1": ov.Type.u1,
}


def _values(value: float | tuple[float, ...]) -> float | list[float]:
    return list(value) if isinstance(value, tuple) else value


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    useful = [line for line in lines if not line.startswith(("Exception from", "Check "))]
    return (useful or lines or [type(exc).__name__])[0]


def apply_preprocess(model: ov.Model, options: Preprocess | None) -> ov.Model:
    """``model`` with ``options`` built into its input; ``model`` itself if ``options`` is None.

    Blocking (OpenVINO graph work): call it where the model is compiled.

    Raises:
        LoadError: the model has more than one input, or OpenVINO refuses a step (e.g. a
            per-channel ``--mean`` on a layout without ``C``); the message is one line.
    """
    if options is None:
        return model
    from . import LoadError  # the runtime package's error; its compile module imports this one

    if len(model.inputs) != 1:
        raise LoadError(
            "--mean, --scale, --color_format and --precision apply to a model with one input; "
            f"this one has {len(model.inputs)}"
        )
    try:
        ppp = PrePostProcessor(model)
        info = ppp.input()
        if options.color_format is not None:
            target, source = options.color_format
            info.tensor().set_color_format(_COLOR_FORMATS[source])
            info.preprocess().convert_color(_COLOR_FORMATS[target])
        if options.precision is not None:
            target, source = options.precision
            info.tensor().set_element_type(_ELEMENT_TYPES[target])
            info.preprocess().convert_element_type(_ELEMENT_TYPES[source])
        if options.mean is not None:
            info.preprocess().mean(_values(options.mean))
        if options.scale is not None:
            info.preprocess().scale(_values(options.scale))
        return ppp.build()
    except RuntimeError as exc:
        raise LoadError(f"preprocessing cannot be applied: {_first_line(exc)}") from exc
