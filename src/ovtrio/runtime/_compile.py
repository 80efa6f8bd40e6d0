"""Reading, reshaping and compiling a model version (blocking: run it in a worker thread)."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

import openvino as ov

from ..config import MAPPING_FILE, Dim, ModelConfig, ShapeSpec, TensorMapping
from ..tensors import TensorSpec, datatype_of_ov
from ._preprocess import apply_preprocess

__all__ = ["LoadError", "compile_version", "find_model_file", "first_line"]

log = logging.getLogger(__name__)

_T = TypeVar("_T")

_MODEL_SUFFIXES = (".xml", ".onnx", ".pdmodel", ".tflite", ".pb")


class LoadError(Exception):
    """A version could not be loaded; the message goes into the version's status."""


def find_model_file(version_dir: Path) -> Path:
    """The model file in a version folder, in OVMS' search order (IR, ONNX, Paddle, TFLite, TF)."""
    for suffix in _MODEL_SUFFIXES:
        found = sorted(p for p in version_dir.iterdir() if p.suffix == suffix and p.is_file())
        if found:
            return found[0]
    if (version_dir / "saved_model.pb").exists():
        return version_dir
    raise LoadError(f"no model file (.xml/.onnx/.pdmodel/.tflite/.pb) in {version_dir}")


def _dimension(dim: Dim) -> ov.Dimension:
    lo, hi = dim
    if lo == hi and lo >= 0:
        return ov.Dimension(lo)
    if hi < 0 and lo <= 0:
        return ov.Dimension()
    return ov.Dimension(lo, hi)


def _batch_index(layout: ov.Layout, rank: int) -> int | None:
    if layout.has_name("N"):
        idx = int(ov.layout_helpers.batch_idx(layout))
        return idx % rank if rank > 0 else None
    if layout.empty:
        return 0 if rank > 0 else None
    return None


def _apply_layout(model: ov.Model, layout: str | dict[str, str] | None) -> None:
    if not layout:
        return
    names = [p.get_any_name() for p in model.inputs]
    per_input = layout if isinstance(layout, dict) else dict.fromkeys(names, layout)
    out_names = {p.get_any_name() for p in model.outputs}
    ppp = ov.preprocess.PrePostProcessor(model)
    for name, spec in per_input.items():
        target, _, source = spec.partition(":")
        if name in names:
            info = ppp.input(name)
            if source:
                info.tensor().set_layout(ov.Layout(target))
                info.model().set_layout(ov.Layout(source))
            else:
                info.model().set_layout(ov.Layout(target))
        elif name in out_names:
            oinfo = ppp.output(name)
            if source:
                oinfo.tensor().set_layout(ov.Layout(target))
                oinfo.model().set_layout(ov.Layout(source))
            else:
                oinfo.model().set_layout(ov.Layout(target))
        else:
            raise LoadError(f"layout names {name!r}, which is neither an input nor an output")
    ppp.build()


def _reshape(model: ov.Model, cfg: ModelConfig) -> None:
    shapes: dict[str, ov.PartialShape] = {}
    spec = cfg.shape
    if spec is not None:
        per_input: dict[str, ShapeSpec] = (
            spec if isinstance(spec, dict) else {p.get_any_name(): spec for p in model.inputs}
        )
        known = {p.get_any_name() for p in model.inputs}
        for name, s in per_input.items():
            if name not in known:
                raise LoadError(f"shape names {name!r}, which is not an input of the model")
            rank = model.input(name).get_partial_shape().rank
            if s.auto:
                n = rank.get_length() if rank.is_static else 0
                shapes[name] = (
                    ov.PartialShape([ov.Dimension()] * n) if n else ov.PartialShape.dynamic()
                )
            else:
                shapes[name] = ov.PartialShape([_dimension(d) for d in s.dims])
        if cfg.batch_size is not None:
            log.warning("%s: both shape and batch_size are set; batch_size is ignored", cfg.name)
    elif cfg.batch_size is not None or cfg.batching.mode == "on":
        # batch_size reshapes the batch dimension; dynamic batching "on" makes a static batch
        # dimension dynamic so that requests can be coalesced.
        if cfg.batch_size is None or cfg.batch_size == "auto":
            dim = ov.Dimension()
        else:
            dim = _dimension(cfg.batch_size)
        for port in model.inputs:
            ps = port.get_partial_shape()
            if ps.rank.is_dynamic or ps.rank.get_length() == 0:
                continue
            idx = _batch_index(port.get_node().get_layout(), ps.rank.get_length())
            if idx is None:
                continue
            ps = ov.PartialShape(ps)
            ps[idx] = dim
            shapes[port.get_any_name()] = ps
    if shapes:
        try:
            model.reshape(shapes)
        except RuntimeError as exc:
            raise LoadError(f"reshape failed: {first_line(exc)}") from exc


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    for line in text.splitlines():
        if line.strip() and not line.startswith("Exception from"):
            return line.strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _public_names(ports: Sequence[Any], aliases: Mapping[str, str], side: str) -> dict[str, str]:
    """Each port's name -> the name clients use (``mapping_config.json``'s alias, or its own).

    A key may be any of a tensor's names (OpenVINO tensors can have several). Raises LoadError
    when a key names no tensor of ``side`` ("input" or "output"), when two keys name the same
    tensor, or when two tensors would share a name.
    """
    own = [p.get_any_name() for p in ports]
    if not aliases:
        return {name: name for name in own}
    tensor_of = {name: p.get_any_name() for p in ports for name in p.get_names()}
    renamed: dict[str, str] = {}
    for key, alias in aliases.items():
        tensor = tensor_of.get(key)
        if tensor is None:
            raise LoadError(
                f"{MAPPING_FILE}: {key!r} is not an {side} of the model "
                f"({side}s: {', '.join(map(repr, own))})"
            )
        if tensor in renamed:
            raise LoadError(f"{MAPPING_FILE}: {side} {tensor!r} is renamed twice")
        renamed[tensor] = alias
    public: dict[str, str] = {}
    named: dict[str, str] = {}
    for name in own:
        alias = renamed.get(name, name)
        if alias in named:
            raise LoadError(
                f"{MAPPING_FILE}: {side}s {named[alias]!r} and {name!r} would both be "
                f"named {alias!r}"
            )
        public[name] = alias
        named[alias] = name
    return public


def _own_key(name: str, key: str, sides: Sequence[Mapping[str, str]]) -> str:
    """A ``shape``/``layout`` key (a public name) as the model's tensor name. A key that is
    a renamed tensor's own name is refused, as in OVMS; other unknown keys pass through (the
    reshape and the layout report them)."""
    for public in sides:
        own = {alias: own for own, alias in public.items()}.get(name)
        if own is not None:
            return own
    for public in sides:
        alias = public.get(name, name)
        if alias != name:
            raise LoadError(
                f"{key} names {name!r}, which {MAPPING_FILE} renames to {alias!r}: "
                "use the mapped name"
            )
    return name


def _own_keys(
    setting: _T | dict[str, _T] | None, key: str, sides: Sequence[Mapping[str, str]]
) -> _T | dict[str, _T] | None:
    if not isinstance(setting, dict):
        return setting
    return {_own_key(name, key, sides): value for name, value in setting.items()}


def _with_own_names(
    cfg: ModelConfig, inputs: Mapping[str, str], outputs: Mapping[str, str]
) -> ModelConfig:
    """``cfg`` with the per-tensor keys of ``shape`` (inputs) and ``layout`` (inputs, then
    outputs), which use the public names, turned into the model's tensor names."""
    return replace(
        cfg,
        shape=_own_keys(cfg.shape, "shape", (inputs,)),
        layout=_own_keys(cfg.layout, "layout", (inputs, outputs)),
    )


def _spec(port: Any, layout: ov.Layout | None, name: str) -> TensorSpec:
    type_name = port.get_element_type().get_type_name()
    row = datatype_of_ov(type_name)
    if row is None:
        raise LoadError(f"tensor {port.get_any_name()!r} has unsupported element type {type_name}")
    ps = port.get_partial_shape()
    if ps.rank.is_dynamic:
        raise LoadError(
            f"tensor {port.get_any_name()!r} has a dynamic rank, which is not supported"
        )
    shape: list[int] = []
    ranges: list[tuple[int, int]] = []
    for d in ps:
        if d.is_static:
            shape.append(d.get_length())
            ranges.append((d.get_length(), d.get_length()))
        else:
            shape.append(-1)
            ranges.append((d.get_min_length(), d.get_max_length()))
    text = "" if layout is None or layout.empty else layout.to_string().strip("[]").replace(",", "")
    return TensorSpec(name, row, tuple(shape), tuple(ranges), text)


def compile_version(
    core: ov.Core, cfg: ModelConfig, version_dir: Path, mapping: TensorMapping | None = None
) -> tuple[
    ov.CompiledModel, tuple[TensorSpec, ...], tuple[TensorSpec, ...], tuple[int | None, ...]
]:
    """Read, reshape and compile one version. Blocking: run it in a worker thread.

    ``mapping`` (the version folder's ``mapping_config.json``) renames tensors: the specs
    carry the names clients use, and the per-tensor keys of ``cfg.shape`` and ``cfg.layout``
    are those names. The runtime addresses tensors by port index, so the names cost nothing
    per request.

    Returns the compiled model, input specs, output specs and each input's batch index.
    Raises LoadError with a one-line reason.
    """
    path = find_model_file(version_dir)
    try:
        model = core.read_model(str(path))
    except RuntimeError as exc:
        raise LoadError(f"cannot read {path.name}: {first_line(exc)}") from exc
    mapping = mapping or TensorMapping()
    in_names = _public_names(model.inputs, mapping.inputs, "input")
    out_names = _public_names(model.outputs, mapping.outputs, "output")
    if mapping.inputs or mapping.outputs:
        cfg = _with_own_names(cfg, in_names, out_names)
    try:
        _apply_layout(model, cfg.layout)
    except RuntimeError as exc:
        raise LoadError(f"layout {cfg.layout!r} cannot be applied: {first_line(exc)}") from exc
    model = apply_preprocess(model, cfg.preprocess)
    _reshape(model, cfg)
    props: dict[str, Any] = dict(cfg.plugin_config)
    if "NUM_STREAMS" not in props and "PERFORMANCE_HINT" not in props:
        props["PERFORMANCE_HINT"] = "LATENCY"
    if not cfg.model_cache:
        props.setdefault("CACHE_DIR", "")  # an empty CACHE_DIR turns the core's cache off
    try:
        compiled = core.compile_model(model, cfg.target_device, props)
    except RuntimeError as exc:
        raise LoadError(f"compile on {cfg.target_device} failed: {first_line(exc)}") from exc
    inputs = []
    batch_idx: list[int | None] = []
    for port, param in zip(compiled.inputs, model.get_parameters(), strict=True):
        layout = param.get_layout()
        own = port.get_any_name()
        spec = _spec(port, layout, in_names.get(own, own))
        inputs.append(spec)
        batch_idx.append(_batch_index(layout, len(spec.shape)))
    outputs = tuple(
        _spec(port, None, out_names.get(port.get_any_name(), port.get_any_name()))
        for port in compiled.outputs
    )
    return compiled, tuple(inputs), outputs, tuple(batch_idx)
