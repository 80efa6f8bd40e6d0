"""``pipeline_config_list`` and ``custom_node_library_config_list`` entries as frozen data.

The schema is OVMS' (``DAG_DEFINITIONS`` in its schema.cpp): every object rejects unknown keys,
naming the key; ``type`` is exactly ``"DL model"`` or ``"custom"``; a custom node needs
``library_name`` and no ``model_name``, a DL model node the reverse; ``params`` values are
strings; ``demultiply_count`` is -1..10000 with 0 read as -1. ovtrio adds a third node type,
``"python"``, which needs ``callable`` (``"module:function"``) and takes ``params`` like a
custom node. A schema violation is a
``ConfigError`` (the whole file is invalid). Everything that depends on models and libraries
(missing model, unknown data item, cycles, ...) is ``_plan.validate``'s, and fails only that
pipeline.
"""

from __future__ import annotations

import difflib
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Literal, NoReturn

from ..config import ConfigError

__all__ = [
    "CUSTOM",
    "DL_MODEL",
    "PYTHON",
    "REQUEST",
    "RESPONSE",
    "LibraryConfig",
    "NodeConfig",
    "NodeKind",
    "NodeOutput",
    "PipelineConfig",
    "Source",
    "parse_libraries",
    "parse_pipelines",
]

log = logging.getLogger(__name__)

NodeKind = Literal["DL model", "custom", "python"]
DL_MODEL: Final = "DL model"
CUSTOM: Final = "custom"
PYTHON: Final = "python"
"""ovtrio's extension: a Python callable (``"callable": "module:function"``) as a node."""
REQUEST: Final = "request"
"""The implicit entry node: exposes each pipeline input under its own name."""
RESPONSE: Final = "response"
"""The implicit exit node: its inputs are the pipeline's ``outputs``."""

MAX_DEMULTIPLY_COUNT: Final = 10000


@dataclass(frozen=True, slots=True)
class Source:
    """``{"node_name": node, "data_item": alias}``: an alias that ``node`` exposes."""

    node: str
    alias: str


@dataclass(frozen=True, slots=True)
class NodeOutput:
    """``{"data_item": D, "alias": A}``: model/library output D, reachable as A."""

    data_item: str
    alias: str


@dataclass(frozen=True, slots=True)
class NodeConfig:
    name: str
    kind: NodeKind
    model_name: str | None = None
    """DL model nodes only: a name from ``model_config_list``."""
    library_name: str | None = None
    """Custom nodes only: a name from ``custom_node_library_config_list``."""
    callable: str | None = None
    """Python nodes only: ``"module:function"``."""
    version: int | None = None
    """A pinned model version; None follows the model's default version at every run."""
    inputs: tuple[tuple[str, Source], ...] = ()
    """(node input name, where it comes from), in config order; duplicates kept for validation."""
    outputs: tuple[NodeOutput, ...] = ()
    params: Mapping[str, str] = field(default_factory=dict)
    demultiply_count: int | None = None
    """None: not a demultiplexer; -1: dynamic; n: fixed."""
    gather_from_node: str | None = None

    @property
    def aliases(self) -> dict[str, str]:
        """alias -> data item; repeating an alias keeps the last, as OVMS does."""
        return {out.alias: out.data_item for out in self.outputs}


@dataclass(frozen=True, slots=True)
class PipelineConfig:
    name: str
    inputs: tuple[str, ...]
    nodes: tuple[NodeConfig, ...]
    outputs: tuple[tuple[str, Source], ...]
    """(response tensor name, where it comes from), in config order."""
    demultiply_count: int | None = None
    """Demultiplexes the request itself (``request`` becomes a demultiplexer)."""


@dataclass(frozen=True, slots=True)
class LibraryConfig:
    name: str
    base_path: str
    """As written in config.json."""
    path: Path
    """``base_path`` joined to the config file's directory when relative."""

    @property
    def path_refused(self) -> bool:
        """OVMS refuses a base_path containing ``..`` (PATH_INVALID): the library is not loaded."""
        return ".." in self.base_path


# -- schema ------------------------------------------------------------------------------------


def _fail(where: str, problem: str) -> NoReturn:
    raise ConfigError(f"{where}: {problem}")


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _array(value: object, where: str) -> list[object]:
    if not isinstance(value, list):
        _fail(where, f"expected an array, got {_show(value)}")
    return value


class _Obj:
    """A JSON object read strictly: unknown keys are named, types are checked per key."""

    def __init__(
        self, value: object, where: str, *, allowed: Sequence[str], required: Sequence[str]
    ):
        if not isinstance(value, dict):
            _fail(where, f"expected an object, got {_show(value)}")
        for key in value:
            if key not in allowed:
                close = difflib.get_close_matches(key, allowed, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                _fail(where, f"unknown key {key!r}{hint}")
        for key in required:
            if key not in value:
                _fail(where, f"missing required key {key!r}")
        self.data: dict[str, object] = value
        self.where = where

    def at(self, key: str) -> str:
        return f"{self.where}.{key}"

    def string(self, key: str) -> str:
        value = self.data[key]
        if not isinstance(value, str):
            _fail(self.at(key), f"expected a string, got {_show(value)}")
        return value

    def opt_string(self, key: str) -> str | None:
        return self.string(key) if key in self.data else None

    def array(self, key: str) -> list[object]:
        return _array(self.data[key], self.at(key))

    def demultiply_count(self) -> int | None:
        if "demultiply_count" not in self.data:
            return None
        value = self.data["demultiply_count"]
        if type(value) is not int or not -1 <= value <= MAX_DEMULTIPLY_COUNT:
            _fail(
                self.at("demultiply_count"),
                f"expected an integer from -1 to {MAX_DEMULTIPLY_COUNT}, got {_show(value)}",
            )
        if value == 0:
            log.warning("%s: demultiply_count 0 is deprecated; read as -1", self.where)
            return -1
        return value


def _source(value: object, where: str) -> Source:
    obj = _Obj(
        value, where, allowed=("node_name", "data_item"), required=("node_name", "data_item")
    )
    return Source(obj.string("node_name"), obj.string("data_item"))


def _one_key(value: object, where: str) -> tuple[str, Source]:
    """``{"<name>": {"node_name": ..., "data_item": ...}}``."""
    if not isinstance(value, dict) or len(value) != 1:
        _fail(where, f"expected an object with one key, got {_show(value)}")
    ((name, source),) = value.items()
    return name, _source(source, f"{where}.{name}")


_NODE_KEYS: Final = (
    "name",
    "type",
    "model_name",
    "library_name",
    "callable",
    "version",
    "inputs",
    "outputs",
    "params",
    "demultiply_count",
    "gather_from_node",
)


_KIND_KEYS: Final[dict[str, str]] = {
    DL_MODEL: "model_name",
    CUSTOM: "library_name",
    PYTHON: "callable",
}
"""Per node type, the key it needs; the other types' keys are forbidden."""


def _node(value: object, where: str) -> NodeConfig:
    obj = _Obj(value, where, allowed=_NODE_KEYS, required=("name", "type", "inputs", "outputs"))
    kind = obj.string("type")
    needed = _KIND_KEYS.get(kind)
    if needed is None:
        _fail(obj.at("type"), f'expected "DL model", "custom" or "python", got {_show(kind)}')
    if needed not in obj.data:
        _fail(where, f"a {kind!r} node needs {needed!r}")
    for forbidden in _KIND_KEYS.values():
        if forbidden != needed and forbidden in obj.data:
            _fail(where, f"a {kind!r} node cannot have {forbidden!r}")
    version = obj.data.get("version")
    if version is not None and (type(version) is not int or version < 1):
        _fail(obj.at("version"), f"expected an integer >= 1, got {_show(version)}")
    params = obj.data.get("params", {})
    if not isinstance(params, dict):
        _fail(obj.at("params"), f"expected an object, got {_show(params)}")
    for key, param in params.items():
        if not isinstance(param, str):
            _fail(f"{obj.at('params')}.{key}", f"expected a string, got {_show(param)}")
    outputs = []
    for i, entry in enumerate(obj.array("outputs")):
        out = _Obj(
            entry,
            f"{obj.at('outputs')}[{i}]",
            allowed=("data_item", "alias"),
            required=("data_item", "alias"),
        )
        outputs.append(NodeOutput(out.string("data_item"), out.string("alias")))
    return NodeConfig(
        name=obj.string("name"),
        kind=DL_MODEL if kind == DL_MODEL else CUSTOM if kind == CUSTOM else PYTHON,
        model_name=obj.opt_string("model_name"),
        library_name=obj.opt_string("library_name"),
        callable=obj.opt_string("callable"),
        version=version,
        inputs=tuple(
            _one_key(entry, f"{obj.at('inputs')}[{i}]")
            for i, entry in enumerate(obj.array("inputs"))
        ),
        outputs=tuple(outputs),
        params=dict(params),
        demultiply_count=obj.demultiply_count(),
        gather_from_node=obj.opt_string("gather_from_node"),
    )


def _pipeline(value: object, where: str) -> PipelineConfig:
    obj = _Obj(
        value,
        where,
        allowed=("name", "inputs", "nodes", "outputs", "demultiply_count"),
        required=("name", "inputs", "nodes", "outputs"),
    )
    inputs: list[str] = []
    for i, name in enumerate(obj.array("inputs")):
        if not isinstance(name, str):
            _fail(f"{obj.at('inputs')}[{i}]", f"expected a string, got {_show(name)}")
        if name in inputs:
            log.warning("%s.inputs: %r is listed twice", where, name)
        inputs.append(name)
    return PipelineConfig(
        name=obj.string("name"),
        inputs=tuple(inputs),
        nodes=tuple(_node(n, f"{obj.at('nodes')}[{i}]") for i, n in enumerate(obj.array("nodes"))),
        outputs=tuple(
            _one_key(entry, f"{obj.at('outputs')}[{i}]")
            for i, entry in enumerate(obj.array("outputs"))
        ),
        demultiply_count=obj.demultiply_count(),
    )


def parse_pipelines(value: object, where: str) -> tuple[PipelineConfig, ...]:
    """A ``pipeline_config_list``; a later pipeline with an earlier one's name is skipped.

    ``where`` prefixes every message, e.g. ``"config.json: pipeline_config_list"``.

    Raises:
        ConfigError: the schema is violated.
    """
    pipelines: dict[str, PipelineConfig] = {}
    for i, entry in enumerate(_array(value, where)):
        pipeline = _pipeline(entry, f"{where}[{i}]")
        if pipeline.name in pipelines:
            log.warning(
                "%s[%d]: pipeline %r is defined twice; the first is used", where, i, pipeline.name
            )
            continue
        pipelines[pipeline.name] = pipeline
    return tuple(pipelines.values())


def parse_libraries(value: object, where: str, relative_to: Path) -> tuple[LibraryConfig, ...]:
    """A ``custom_node_library_config_list``; relative paths are joined to ``relative_to``.

    A later entry with an earlier one's name replaces it (OVMS keeps the libraries in a map).

    Raises:
        ConfigError: the schema is violated.
    """
    libraries: dict[str, LibraryConfig] = {}
    for i, entry in enumerate(_array(value, where)):
        obj = _Obj(
            entry, f"{where}[{i}]", allowed=("name", "base_path"), required=("name", "base_path")
        )
        base_path = obj.string("base_path")
        path = Path(os.path.join(relative_to, base_path))
        libraries[obj.string("name")] = LibraryConfig(obj.string("name"), base_path, path)
    return tuple(libraries.values())
