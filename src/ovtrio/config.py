"""Server configuration: the OVMS command line and config.json, parsed once into frozen data.

``load(argv)`` is the only entry point the CLI needs. ``load_config_file`` re-parses a
config.json on its own so the hot-reload code can call it again later. Nothing here opens
sockets or touches models; the only I/O is reading the config file.

Every problem is a ``ConfigError`` whose message is one line naming the flag or the key path
and the file, e.g. ``config.json: model_config_list[0].config: unknown key 'nireqs'``.

Shapes use OVMS' notation. A dimension is a ``Dim`` = ``(min, max)``: a static ``n`` is
``(n, n)``, ``-1`` is ``(0, -1)`` (unbounded) and a range ``1:8`` is ``(1, 8)``.
"""

from __future__ import annotations

import argparse
import difflib
import json
import math
import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, NoReturn, TypeAlias, TypeVar

from ._version import __version__

__all__ = [
    "DEFAULT_METRICS",
    "METRIC_NAMES",
    "BatchingConfig",
    "ConfigError",
    "ConfigFile",
    "Dim",
    "ModelConfig",
    "MonitoringConfig",
    "PluginValue",
    "ServerConfig",
    "ShapeSpec",
    "VersionPolicy",
    "load",
    "load_config_file",
    "parse_batch_size",
    "parse_config_json",
    "parse_layout",
    "parse_shape",
    "parse_version_policy",
]


class ConfigError(Exception):
    """A configuration problem; the message is one line naming the flag or key and the file."""


Dim: TypeAlias = tuple[int, int]
"""``(min, max)``: static ``n`` is ``(n, n)``, ``-1`` is ``(0, -1)``, ``a:b`` is ``(a, b)``."""

PluginValue: TypeAlias = str | int | float | bool
"""A value of an OpenVINO property in ``plugin_config``."""

BatchingMode: TypeAlias = Literal["auto", "on", "off"]
_T = TypeVar("_T")
_A = TypeVar("_A")

_MAX_DIM = 2**31 - 1  # OVMS parses dimensions with std::stoi
_MAX_NIREQ = 100_000  # OVMS refuses to load a model with a larger nireq
_MAX_PORT = 65535

DEFAULT_METRICS: tuple[str, ...] = (
    "ovms_streams",
    "ovms_current_requests",
    "ovms_current_graphs",
    "ovms_requests_success",
    "ovms_requests_fail",
    "ovms_requests_accepted",
    "ovms_requests_rejected",
    "ovms_responses",
    "ovms_request_time_us",
    "ovms_inference_time_us",
    "ovms_wait_for_infer_req_time_us",
)
"""Metric families enabled by ``--metrics_enable`` alone (OVMS' default set)."""

METRIC_NAMES: frozenset[str] = frozenset(
    (
        *DEFAULT_METRICS,
        "ovms_infer_req_queue_size",
        "ovms_infer_req_active",
        "ovms_graph_error",
        "ovms_graph_processing_time_us",
        "ovms_graph_request_latency_us",
    )
)
"""Every name ``--metrics_list`` / ``monitoring.metrics.metrics_list`` accepts."""


# --------------------------------------------------------------------------------------------
# Data


@dataclass(frozen=True, slots=True)
class ShapeSpec:
    """A ``shape`` setting: ``auto`` or explicit dimensions."""

    auto: bool
    """``True`` for ``"auto"`` (reshape to each request's shape; ``dims`` is empty)."""
    dims: tuple[Dim, ...] = ()
    """One ``(min, max)`` per dimension."""

    def __str__(self) -> str:
        if self.auto:
            return "auto"
        return "(" + ",".join(_format_dim(d) for d in self.dims) + ")"


@dataclass(frozen=True, slots=True)
class VersionPolicy:
    """Which of the version directories found under ``base_path`` are served."""

    kind: Literal["all", "latest", "specific"]
    """``all`` versions, the ``latest`` N, or ``specific`` listed versions."""
    num_versions: int = 1
    """For ``latest``: how many of the highest versions."""
    versions: tuple[int, ...] = ()
    """For ``specific``: the versions to serve (sorted, unique)."""

    def select(self, available: Iterable[int]) -> list[int]:
        """Return the versions of ``available`` this policy serves, ascending."""
        found = sorted(set(available))
        if self.kind == "all":
            return found
        if self.kind == "latest":
            return found[-self.num_versions :]
        wanted = set(self.versions)
        return [v for v in found if v in wanted]

    def __str__(self) -> str:
        if self.kind == "all":
            return '{"all": {}}'
        if self.kind == "latest":
            return f'{{"latest": {{"num_versions": {self.num_versions}}}}}'
        return f'{{"specific": {{"versions": {list(self.versions)}}}}}'


@dataclass(frozen=True, slots=True)
class BatchingConfig:
    """ovtrio's server-side dynamic batching of concurrent requests (not an OVMS feature)."""

    mode: BatchingMode = "auto"
    """``on``, ``off``, or ``auto``: on when the model's batch dimension is dynamic."""
    max_batch_size: int = 16
    """Largest batch (sum of the requests' batch dimensions) sent to OpenVINO at once."""
    max_delay_us: int = 0
    """How long a batch waits for more requests; 0 = take only what is already queued."""
    max_queue_size: int = 256
    """Requests waiting per model version; requests beyond are rejected (RESOURCE_EXHAUSTED)."""


@dataclass(frozen=True, slots=True)
class ModelConfig:
    """One served model, from a ``model_config_list`` entry or the single-model flags.

    Equality ignores ``source``, so hot reload can compare an entry that moved in the list.
    """

    name: str
    """Servable name (non-empty, no ``/``, no ``..``)."""
    base_path: Path
    """Absolute directory holding the numeric version directories."""
    batch_size: Dim | Literal["auto"] | None = None
    """Batch dimension to reshape to at load; ``None`` keeps the model's own."""
    shape: ShapeSpec | dict[str, ShapeSpec] | None = field(default=None, hash=False)
    """Shape for every input, or per input name; ``None`` keeps the model's own.
    If ``shape`` and ``batch_size`` are both set, the runtime ignores ``batch_size`` (OVMS)."""
    layout: str | dict[str, str] | None = field(default=None, hash=False)
    """Normalised (upper case, no spaces) ``target:source`` or ``layout``, or per tensor name."""
    version_policy: VersionPolicy = VersionPolicy("latest")
    """Which versions to serve; default latest 1."""
    nireq: int = 0
    """Infer-request pool size; 0 = OpenVINO's OPTIMAL_NUMBER_OF_INFER_REQUESTS."""
    target_device: str = "CPU"
    """OpenVINO device name (``CPU``, ``GPU``, ``AUTO``, ``HETERO:...``, ...)."""
    plugin_config: dict[str, PluginValue] = field(default_factory=dict, hash=False)
    """OpenVINO properties passed to ``compile_model``."""
    batching: BatchingConfig = BatchingConfig()
    """Dynamic batching, merged from the server-wide flags and the entry's ``dynamic_batching``."""
    allow_cache: bool = False
    """config.json ``allow_cache``: use the model cache even for ``auto`` shapes."""
    version_labels: dict[str, int] = field(default_factory=dict, hash=False)
    """ovtrio's (and TF Serving's) ``version_labels``: label -> version, e.g. ``{"stable": 1}``."""
    source: str = field(default="", compare=False)
    """Origin, for messages: ``config.json: model_config_list[0]`` or ``command line``."""


@dataclass(frozen=True, slots=True)
class MonitoringConfig:
    """config.json ``monitoring.metrics``."""

    enable: bool = False
    """``monitoring.metrics.enable``."""
    metrics_list: tuple[str, ...] = ()
    """``monitoring.metrics.metrics_list`` as written (empty = the default set)."""


@dataclass(frozen=True, slots=True)
class ConfigFile:
    """The parsed content of a config.json."""

    models: tuple[ModelConfig, ...]
    """``model_config_list``, in file order."""
    monitoring: MonitoringConfig | None = None
    """``monitoring``, if the file has that key."""


@dataclass(frozen=True, slots=True)
class ServerConfig:
    """Everything the server needs, built once from the command line (and config.json)."""

    port: int = 0
    """gRPC port; 0 = no gRPC server."""
    rest_port: int = 0
    """REST port; 0 = no REST server."""
    grpc_bind_address: str = "0.0.0.0"
    """Address the gRPC server binds to."""
    rest_bind_address: str = "0.0.0.0"
    """Address the REST server binds to."""
    config_path: Path | None = None
    """Absolute path of config.json; ``None`` in single-model and demo mode."""
    models: tuple[ModelConfig, ...] = ()
    """The models to serve at start-up."""
    log_level: str = "INFO"
    """``TRACE``, ``DEBUG``, ``INFO``, ``WARNING`` or ``ERROR``."""
    log_path: Path | None = None
    """Log file; ``None`` = stderr."""
    batching: BatchingConfig = BatchingConfig()
    """Server-wide dynamic batching defaults (each model may override them)."""
    grpc_max_message_bytes: int = 1 << 30
    """Largest gRPC message received."""
    rest_max_body_bytes: int = 1 << 30
    """Largest REST request body."""
    graceful_timeout_s: float = 30.0
    """On SIGINT/SIGTERM, how long in-flight requests may take before they are cancelled."""
    file_system_poll_wait_seconds: int = 1
    """Period of the model-directory and config-file poll; 0 disables polling."""
    metrics_enable: bool = False
    """Serve ``/metrics`` on the REST port (from the flag or config.json ``monitoring``)."""
    metrics_list: tuple[str, ...] = ()
    """Metric families to expose when enabled (resolved: ``DEFAULT_METRICS`` if none named)."""
    cache_dir: Path | None = None
    """OpenVINO model cache directory; ``None``: the runtime decides (OVMS: /opt/cache if any)."""
    demo: bool = False
    """``--demo``: serve the built-in model ``demo`` (the runtime builds it if absent)."""
    ignored_flags: tuple[str, ...] = ()
    """OVMS flags given that ovtrio parses but does not implement, without ``--``."""
    ssl_certificate: Path | None = None
    """PEM certificate: both ports serve TLS."""
    ssl_key: Path | None = None
    """PEM private key of ``ssl_certificate``."""
    ssl_ca: Path | None = None
    """CA bundle: clients must present a certificate it signed (mTLS)."""
    api_keys: tuple[str, ...] = field(default=(), repr=False)
    """Accepted bearer tokens; empty = no authentication."""
    max_tensor_elements: int = 1 << 31
    """Largest element count one input may declare (checked before anything is allocated)."""
    max_connections: int = 4096
    """Open connections per port (REST and gRPC each); 0 = no limit."""
    grpc_max_concurrent_streams: int = 100
    """Calls one gRPC connection may have open at once (HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS)."""
    rest_max_header_bytes: int = 64 * 1024
    """Largest REST request head."""
    rest_max_json_depth: int = 1024
    """Deepest nesting of arrays/objects in a REST JSON body."""
    rest_read_timeout_s: float = 60.0
    """A REST connection silent for this long is closed (slow clients)."""
    rest_idle_timeout_s: float = 15.0
    """An idle keep-alive REST connection is closed after this."""
    image_color_order: Literal["BGR", "RGB"] = "BGR"
    """Channel order of decoded JPEG/PNG inputs (OVMS: BGR)."""
    image_max_pixels: int = 64_000_000
    """Largest encoded image (width x height) accepted; larger ones are refused (413)."""


# --------------------------------------------------------------------------------------------
# Value parsers (public; they raise ConfigError with a message that has no location)


def _show(value: object) -> str:
    """``value`` as JSON, shortened to keep messages on one readable line."""
    try:
        text = json.dumps(value)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _format_dim(dim: Dim) -> str:
    lo, hi = dim
    if hi == -1:
        return "-1"
    return str(lo) if lo == hi else f"{lo}:{hi}"


_DIGITS = re.compile(r"[0-9]+")


def _positive(token: str, what: str) -> int:
    if not _DIGITS.fullmatch(token) or len(token) > 10 or not 1 <= int(token) <= _MAX_DIM:
        raise ConfigError(
            f"{what}: a dimension is an integer >= 1, -1 or a range min:max, got {_show(token)}"
        )
    return int(token)


def _parse_dim(token: str, what: str) -> Dim:
    if token == "-1":
        return (0, -1)
    if ":" in token:
        parts = token.split(":")
        if len(parts) != 2:
            raise ConfigError(f"{what}: a range has one ':', got {_show(token)}")
        lo, hi = (_positive(p, what) for p in parts)
        if lo >= hi:
            raise ConfigError(
                f"{what}: range maximum must be higher than minimum, got {_show(token)}"
            )
        return (lo, hi)
    n = _positive(token, what)
    return (n, n)


def parse_shape(text: str) -> ShapeSpec:
    """Parse a ``shape``: ``"auto"`` or dimensions in ``()`` or ``[]``.

    Examples: ``"(1,3,224,224)"``, ``"[1,3,224,224]"``, ``"(-1,3,-1,-1)"``, ``"(1:8,3,224,224)"``.
    Spaces are allowed anywhere. Raises ConfigError.
    """
    compact = "".join(text.split())
    if compact.lower() == "auto":
        return ShapeSpec(auto=True)
    if len(compact) < 3 or (compact[0], compact[-1]) not in {("(", ")"), ("[", "]")}:
        raise ConfigError(
            f'invalid shape {_show(text)}: expected "auto" or dimensions like "(1,3,224,224)"'
        )
    dims = tuple(
        _parse_dim(token, f"invalid shape {_show(text)}") for token in compact[1:-1].split(",")
    )
    return ShapeSpec(auto=False, dims=dims)


def parse_batch_size(value: int | str) -> Dim | Literal["auto"] | None:
    """Parse a ``batch_size``: int >= 0, or a string ``"16"``, ``"1:8"``, ``"-1"``, ``"auto"``.

    ``0`` / ``"0"`` mean not set and give ``None``. Raises ConfigError.
    """
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ConfigError(f"invalid batch size {_show(value)}: expected an integer or a string")
    if isinstance(value, int):
        if not 0 <= value <= _MAX_DIM:
            raise ConfigError(f"invalid batch size {value}: expected an integer >= 0")
        return None if value == 0 else (value, value)
    compact = "".join(value.split())
    if compact.lower() == "auto":
        return "auto"
    if compact == "0":
        return None
    return _parse_dim(compact, f"invalid batch size {_show(value)}")


_LAYOUT_SIDE = re.compile(r"(?:[NCHWD?]|\.\.\.)+")
_LAYOUT_TOKEN = re.compile(r"[NCHWD?]|\.\.\.")


def _check_layout_side(side: str, text: str) -> None:
    if not _LAYOUT_SIDE.fullmatch(side):
        raise ConfigError(
            f"invalid layout {_show(text)}: use the letters N C H W D ? and '...', "
            'optionally as target:source, e.g. "NHWC:NCHW"'
        )
    tokens = _LAYOUT_TOKEN.findall(side)
    for token in set(tokens):
        if token != "?" and tokens.count(token) > 1:
            raise ConfigError(f"invalid layout {_show(text)}: {token!r} appears more than once")


def parse_layout(text: str) -> str:
    """Validate a ``layout`` such as ``"NHWC:NCHW"``, ``"CN"``, ``"N..."``.

    Returns it upper case without spaces. Raises ConfigError.
    """
    compact = "".join(text.split()).upper()
    sides = compact.split(":")
    if len(sides) > 2:
        raise ConfigError(f"invalid layout {_show(text)}: at most one ':' (target:source)")
    for side in sides:
        _check_layout_side(side, text)
    return compact


def parse_version_policy(value: object) -> VersionPolicy:
    """Parse a ``model_version_policy``.

    ``value`` is ``{"all": {}}``, ``{"latest": {"num_versions": N}}`` or
    ``{"specific": {"versions": [...]}}``, decoded or as JSON text (as on the command line).
    Raises ConfigError.
    """
    return _version_policy(value, "model version policy")


# --------------------------------------------------------------------------------------------
# Typed accessors for decoded JSON; ``where`` is the location named in the message


def _int(value: object, where: str, *, minimum: int = 0, maximum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{where}: expected an integer >= {minimum}, got {_show(value)}")
    if value < minimum or (maximum is not None and value > maximum):
        bound = f">= {minimum}" if maximum is None else f"in {minimum}..{maximum}"
        raise ConfigError(f"{where}: expected an integer {bound}, got {value}")
    return value


def _bool(value: object, where: str) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{where}: expected true or false, got {_show(value)}")
    return value


def _str(value: object, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{where}: expected a non-empty string, got {_show(value)}")
    return value


def _object(value: object, where: str) -> dict[str, object]:
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: expected an object, got {_show(value)}")
    return value


def _keys(
    obj: Mapping[str, object],
    where: str,
    *,
    allowed: Iterable[str],
    required: Iterable[str] = (),
) -> None:
    allowed = tuple(allowed)
    for key in obj:
        if key not in allowed:
            hint = difflib.get_close_matches(key, allowed, n=1)
            did_you_mean = f" (did you mean {hint[0]!r}?)" if hint else ""
            raise ConfigError(f"{where}: unknown key {key!r}{did_you_mean}")
    for key in required:
        if key not in obj:
            raise ConfigError(f"{where}: missing required key {key!r}")


def _located(where: str, parse: Callable[[_A], _T], arg: _A) -> _T:
    """Run a public parser; prefix its ConfigError with ``where``."""
    try:
        return parse(arg)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None


class _DuplicateKeyError(ValueError):
    pass


def _no_duplicates(pairs: list[tuple[str, object]]) -> dict[str, object]:
    out: dict[str, object] = {}
    for key, value in pairs:
        if key in out:
            raise _DuplicateKeyError(f"duplicate key {key!r}")
        out[key] = value
    return out


def _reject_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not valid JSON")


def _decode_json_text(text: str) -> object:
    try:
        return json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_reject_constant)
    except ValueError as exc:  # JSONDecodeError and ours
        raise ConfigError(f"invalid JSON: {exc}") from None


def _json_at(text: str, where: str) -> object:
    return _located(where, _decode_json_text, text)


def _version_policy(value: object, where: str) -> VersionPolicy:
    if isinstance(value, str):
        value = _json_at(value, where)
    obj = _object(value, where)
    if len(obj) != 1:
        raise ConfigError(
            f'{where}: expected exactly one of "all", "latest", "specific", got {_show(value)}'
        )
    ((kind, body),) = obj.items()
    if kind == "all":
        _keys(_object(body, f"{where}.all"), f"{where}.all", allowed=())
        return VersionPolicy("all")
    if kind == "latest":
        latest = _object(body, f"{where}.latest")
        _keys(latest, f"{where}.latest", allowed=("num_versions",))
        n = 1
        if "num_versions" in latest:
            n = _int(latest["num_versions"], f"{where}.latest.num_versions", minimum=1)
        return VersionPolicy("latest", num_versions=n)
    if kind == "specific":
        specific = _object(body, f"{where}.specific")
        _keys(specific, f"{where}.specific", allowed=("versions",), required=("versions",))
        raw = specific["versions"]
        if not isinstance(raw, list) or not raw:
            raise ConfigError(
                f"{where}.specific.versions: expected a non-empty list of integers >= 1, "
                f"got {_show(raw)}"
            )
        versions = [
            _int(v, f"{where}.specific.versions[{i}]", minimum=1) for i, v in enumerate(raw)
        ]
        return VersionPolicy("specific", versions=tuple(sorted(set(versions))))
    raise ConfigError(f"{where}: unknown policy {kind!r} (expected all, latest or specific)")


def _shape_setting(value: object, where: str) -> ShapeSpec | dict[str, ShapeSpec] | None:
    if isinstance(value, str):
        return _located(where, parse_shape, value)
    if isinstance(value, dict):
        shapes: dict[str, ShapeSpec] = {}
        for name, spec in value.items():
            text = _str(spec, f"{where}.{name}")
            shapes[name] = _located(f"{where}.{name}", parse_shape, text)
        return shapes or None
    raise ConfigError(f"{where}: expected a string or an object of strings, got {_show(value)}")


def _layout_setting(value: object, where: str) -> str | dict[str, str] | None:
    if isinstance(value, str):
        return _located(where, parse_layout, value)
    if isinstance(value, dict):
        layouts: dict[str, str] = {}
        for name, spec in value.items():
            text = _str(spec, f"{where}.{name}")
            layouts[name] = _located(f"{where}.{name}", parse_layout, text)
        return layouts or None
    raise ConfigError(f"{where}: expected a string or an object of strings, got {_show(value)}")


def _batch_setting(value: object, where: str) -> Dim | Literal["auto"] | None:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ConfigError(f"{where}: expected an integer >= 0 or a string, got {_show(value)}")
    return _located(where, parse_batch_size, value)


def _plugin_config(value: object, where: str) -> dict[str, PluginValue]:
    out: dict[str, PluginValue] = {}
    for key, item in _object(value, where).items():
        if not key:
            raise ConfigError(f"{where}: empty property name")
        if isinstance(item, float) and not math.isfinite(item):
            raise ConfigError(f"{where}.{key}: expected a finite number, got {item}")
        if not isinstance(item, str | int | float | bool):
            raise ConfigError(
                f"{where}.{key}: expected a string, number or boolean, got {_show(item)}"
            )
        out[key] = item
    return out


def _model_name(value: object, where: str) -> str:
    name = _str(value, where)
    if "/" in name or ".." in name:
        raise ConfigError(f"{where}: model name must not contain '/' or '..', got {_show(name)}")
    return name


_CLOUD_PREFIXES = ("gs://", "s3://", "azure://", "azfs://", "http://", "https://")


def _abs_path(text: str, relative_to: Path | None) -> Path:
    path = Path(os.path.expanduser(text))
    if not path.is_absolute() and relative_to is not None:
        path = relative_to / path
    return Path(os.path.abspath(path))


def _base_path(value: object, where: str, relative_to: Path | None) -> Path:
    text = _str(value, where)
    if text.lower().startswith(_CLOUD_PREFIXES):
        raise ConfigError(f"{where}: cloud storage paths are not supported yet, got {_show(text)}")
    return _abs_path(text, relative_to)


_BATCHING_KEYS = ("mode", "max_batch_size", "max_delay_us", "max_queue_size")


def _batching(value: object, where: str, defaults: BatchingConfig) -> BatchingConfig:
    if isinstance(value, bool):
        return replace(defaults, mode="on" if value else "off")
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: expected true, false or an object, got {_show(value)}")
    obj: dict[str, object] = value
    _keys(obj, where, allowed=_BATCHING_KEYS)
    out = defaults
    if "mode" in obj:
        out = replace(out, mode=_batching_mode(obj["mode"], f"{where}.mode"))
    if "max_batch_size" in obj:
        out = replace(
            out, max_batch_size=_int(obj["max_batch_size"], f"{where}.max_batch_size", minimum=1)
        )
    if "max_delay_us" in obj:
        out = replace(out, max_delay_us=_int(obj["max_delay_us"], f"{where}.max_delay_us"))
    if "max_queue_size" in obj:
        out = replace(
            out, max_queue_size=_int(obj["max_queue_size"], f"{where}.max_queue_size", minimum=1)
        )
    return out


def _batching_mode(value: object, where: str) -> BatchingMode:
    if value == "auto" or value == "on" or value == "off":
        return value
    raise ConfigError(f'{where}: expected "auto", "on" or "off", got {_show(value)}')


def _metric_names(names: Sequence[object], where: str) -> tuple[str, ...]:
    out: list[str] = []
    for i, name in enumerate(names):
        if not isinstance(name, str) or name not in METRIC_NAMES:
            known = ", ".join(sorted(METRIC_NAMES))
            raise ConfigError(f"{where}[{i}]: unknown metric {_show(name)} (known: {known})")
        if name not in out:
            out.append(name)
    return tuple(out)


# --------------------------------------------------------------------------------------------
# config.json

_UNSUPPORTED_TOP_KEYS = (
    "pipeline_config_list",
    "custom_node_library_config_list",
    "mediapipe_config_list",
    "custom_loader_config_list",
)
_TOP_KEYS = ("model_config_list", "monitoring", *_UNSUPPORTED_TOP_KEYS)

_MODEL_KEYS = (
    "name",
    "base_path",
    "batch_size",
    "shape",
    "layout",
    "model_version_policy",
    "nireq",
    "target_device",
    "plugin_config",
    "dynamic_batching",
    "version_labels",
    # OVMS keys accepted but not used
    "allow_cache",
    "stateful",
    "idle_sequence_cleanup",
    "low_latency_transformation",
    "max_sequence_number",
)
# OVMS model keys that name features ovtrio does not have.
_UNSUPPORTED_MODEL_KEYS = {
    "custom_loader_options": "custom model loaders are not supported yet",
    "graph_path": "MediaPipe graphs are not supported yet",
    "subconfig": "MediaPipe graphs are not supported yet",
}


def load_config_file(path: Path, defaults: BatchingConfig) -> ConfigFile:
    """Read and parse a config.json.

    Args:
        path: the file; relative ``base_path`` values resolve against its directory, and
            messages name it as given.
        defaults: the server-wide batching settings each model's ``dynamic_batching`` overrides.

    Raises:
        ConfigError: the file cannot be read, is not valid JSON, or breaks the schema.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the config file: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: cannot read the config file: {exc}") from None
    return parse_config_json(text, path, defaults)


def parse_config_json(text: str, path: Path, defaults: BatchingConfig) -> ConfigFile:
    """Parse config.json content read from ``path``; see ``load_config_file``."""
    data = _json_at(text, str(path))
    top = _object(data, str(path))
    _keys(top, str(path), allowed=_TOP_KEYS, required=("model_config_list",))
    for key in _UNSUPPORTED_TOP_KEYS:
        if top.get(key):
            raise ConfigError(f"{path}: {key} is not supported yet")

    entries = top["model_config_list"]
    if not isinstance(entries, list):
        raise ConfigError(f"{path}: model_config_list: expected a list, got {_show(entries)}")
    relative_to = Path(os.path.abspath(path)).parent
    models: list[ModelConfig] = []
    first_seen: dict[str, int] = {}
    for i, entry in enumerate(entries):
        where = f"{path}: model_config_list[{i}]"
        obj = _object(entry, where)
        _keys(obj, where, allowed=("config",), required=("config",))
        model = _model_entry(obj["config"], f"{where}.config", where, relative_to, defaults)
        if model.name in first_seen:
            raise ConfigError(
                f"{where}.config.name: duplicate model name {model.name!r} "
                f"(also in model_config_list[{first_seen[model.name]}])"
            )
        first_seen[model.name] = i
        models.append(model)

    monitoring = None
    if "monitoring" in top:
        monitoring = _monitoring(top["monitoring"], f"{path}: monitoring")
    return ConfigFile(models=tuple(models), monitoring=monitoring)


def _model_entry(
    value: object, where: str, source: str, relative_to: Path, defaults: BatchingConfig
) -> ModelConfig:
    obj = _object(value, where)
    for key, reason in _UNSUPPORTED_MODEL_KEYS.items():
        if key in obj:
            raise ConfigError(f"{where}.{key}: {reason}")
    _keys(obj, where, allowed=_MODEL_KEYS, required=("name", "base_path"))
    if "stateful" in obj and _bool(obj["stateful"], f"{where}.stateful"):
        raise ConfigError(f"{where}.stateful: stateful models are not supported")
    for key in ("idle_sequence_cleanup", "low_latency_transformation"):
        if key in obj:
            _bool(obj[key], f"{where}.{key}")
    if "max_sequence_number" in obj:
        _int(obj["max_sequence_number"], f"{where}.max_sequence_number")

    def at(key: str) -> str:
        return f"{where}.{key}"

    return ModelConfig(
        name=_model_name(obj["name"], at("name")),
        base_path=_base_path(obj["base_path"], at("base_path"), relative_to),
        batch_size=_batch_setting(obj["batch_size"], at("batch_size"))
        if "batch_size" in obj
        else None,
        shape=_shape_setting(obj["shape"], at("shape")) if "shape" in obj else None,
        layout=_layout_setting(obj["layout"], at("layout")) if "layout" in obj else None,
        version_policy=_version_policy(obj["model_version_policy"], at("model_version_policy"))
        if "model_version_policy" in obj
        else VersionPolicy("latest"),
        nireq=_int(obj["nireq"], at("nireq"), maximum=_MAX_NIREQ) if "nireq" in obj else 0,
        target_device=_str(obj["target_device"], at("target_device"))
        if "target_device" in obj
        else "CPU",
        plugin_config=_plugin_config(obj["plugin_config"], at("plugin_config"))
        if "plugin_config" in obj
        else {},
        batching=_batching(obj["dynamic_batching"], at("dynamic_batching"), defaults)
        if "dynamic_batching" in obj
        else defaults,
        allow_cache=_bool(obj["allow_cache"], at("allow_cache")) if "allow_cache" in obj else False,
        version_labels=_version_labels(obj["version_labels"], at("version_labels"))
        if "version_labels" in obj
        else {},
        source=source,
    )


def _version_labels(value: object, where: str) -> dict[str, int]:
    obj = _object(value, where)
    labels: dict[str, int] = {}
    for label, version in obj.items():
        if not label or not label.replace("-", "").replace("_", "").isalnum():
            raise ConfigError(f"{where}: invalid label {label!r} (letters, digits, - and _)")
        labels[label] = _int(version, f"{where}.{label}", minimum=1)
    return labels


def _monitoring(value: object, where: str) -> MonitoringConfig:
    obj = _object(value, where)
    _keys(obj, where, allowed=("metrics",))
    if "metrics" not in obj:
        return MonitoringConfig()
    where = f"{where}.metrics"
    metrics = _object(obj["metrics"], where)
    _keys(metrics, where, allowed=("enable", "metrics_list"))
    enable = _bool(metrics.get("enable", False), f"{where}.enable")
    names = metrics.get("metrics_list", [])
    if not isinstance(names, list):
        raise ConfigError(f"{where}.metrics_list: expected a list of strings, got {_show(names)}")
    return MonitoringConfig(
        enable=enable, metrics_list=_metric_names(names, f"{where}.metrics_list")
    )


# --------------------------------------------------------------------------------------------
# Command line

_SINGLE_MODEL_FLAGS = (
    "model_name",
    "model_path",
    "batch_size",
    "shape",
    "layout",
    "model_version_policy",
    "nireq",
    "target_device",
    "plugin_config",
)
_IGNORED_FLAGS = (
    "grpc_workers",
    "rest_workers",
    "grpc_max_threads",
    "grpc_memory_quota",
    "grpc_channel_arguments",
    "sequence_cleaner_poll_wait_minutes",
    "custom_node_resources_cleaner_interval_seconds",
    "cpu_extension",
    "allowed_origins",
    "allowed_methods",
    "allowed_headers",
    "allow_credentials",
)
_REFUSED_FLAGS = {
    "mean": "input preprocessing is not supported",
    "scale": "input preprocessing is not supported",
    "color_format": "input preprocessing is not supported",
    "precision": "input preprocessing is not supported",
    "stateful": "stateful models are not supported",
    "idle_sequence_cleanup": "stateful models are not supported",
    "low_latency_transformation": "stateful models are not supported",
    "max_sequence_number": "stateful models are not supported",
}
_LOG_LEVELS = ("TRACE", "DEBUG", "INFO", "WARNING", "ERROR")
_DEMO_PATH = "~/.cache/ovtrio/demo"


class _Parser(argparse.ArgumentParser):
    """argparse that raises ConfigError instead of printing usage and exiting with 2."""

    def error(self, message: str) -> NoReturn:
        raise ConfigError(message)


def _bool_flag(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in {"true", "1", "yes", "on"}:
        return True
    if lowered in {"false", "0", "no", "off"}:
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _add(
    group: argparse._ArgumentGroup,
    name: str,
    text: str,
    kind: Callable[[str], object] = str,
    default: object = None,
    *,
    doc: str | None = None,
    **kwargs: Any,
) -> None:
    """Add ``--name``; its help is one line ending in ``(default: doc)`` unless ``doc`` is ""."""
    if doc is None:
        doc = "unset" if default is None else str(default).lower()
    help_text = f"{text} (default: {doc})" if doc else text
    if kind is _bool_flag:
        kwargs |= {"nargs": "?", "const": True, "metavar": "BOOL"}
    elif "choices" not in kwargs and "metavar" not in kwargs:
        is_path = name.endswith(("_path", "_dir"))
        metavars: dict[object, str] = {int: "N", float: "S"}
        kwargs["metavar"] = metavars.get(kind, "PATH" if is_path else "TEXT")
    group.add_argument(f"--{name}", type=kind, default=default, help=help_text, **kwargs)


def _build_parser() -> _Parser:
    parser = _Parser(
        prog="ovtrio",
        description="OpenVINO model server on trio: KServe v2 and TensorFlow Serving APIs "
        "over gRPC and REST. Flags and config.json follow OpenVINO Model Server.",
        allow_abbrev=False,
    )
    version = f"ovtrio {__version__}"
    parser.add_argument("--version", action="version", version=version, help="print the version")

    g = parser.add_argument_group("server")
    _add(g, "port", "gRPC port; 0 = no gRPC server", int, 0)
    _add(g, "rest_port", "REST port; 0 = no REST server", int, 0)
    _add(g, "grpc_bind_address", "address the gRPC server binds to", str, "0.0.0.0")
    _add(g, "rest_bind_address", "address the REST server binds to", str, "0.0.0.0")
    _add(g, "grpc_max_message_bytes", "largest gRPC message received", int, 1 << 30)
    _add(g, "rest_max_body_bytes", "largest REST request body", int, 1 << 30)
    _add(g, "graceful_timeout_s", "on SIGINT/SIGTERM, seconds requests may still run", float, 30.0)
    _add(g, "file_system_poll_wait_seconds", "model/config poll period; 0 = off", int, 1)
    _add(g, "cache_dir", "OpenVINO model cache directory")
    _add(g, "log_level", "log level", str.upper, "INFO", doc="INFO", choices=_LOG_LEVELS)
    _add(g, "log_path", "log file instead of stderr")
    _add(g, "metrics_enable", "serve /metrics on the REST port", _bool_flag, doc="false")
    _add(g, "metrics_list", "comma-separated metric names", doc="the default set")

    g = parser.add_argument_group("models")
    _add(g, "config_path", "config.json listing the models (exclusive with model flags)")
    demo_help = f"serve the model 'demo' from --model_path or {_DEMO_PATH} (default: false)"
    g.add_argument("--demo", action="store_true", help=demo_help)
    _add(g, "model_name", "single-model mode: the model's name (needs --model_path)")
    _add(g, "model_path", "single-model mode: directory holding version directories")
    _add(g, "batch_size", 'N, "1:8", "-1" or "auto"', doc="the model's", metavar="B")
    _add(g, "shape", '"auto", "(1,3,-1,-1)", "(1:8,3)", or JSON per input', doc="the model's")
    _add(g, "layout", '"NHWC:NCHW", "CN", "N...", or JSON per tensor', doc="the model's")
    _add(
        g,
        "model_version_policy",
        'e.g. \'{"latest": {"num_versions": 2}}\'',
        doc="latest 1",
        metavar="JSON",
    )
    _add(g, "nireq", "infer-request pool size; 0 = twice OpenVINO's optimal", int, doc="0")
    _add(g, "target_device", "CPU, GPU, NPU, AUTO, HETERO:..., MULTI:...", doc="CPU")
    _add(
        g,
        "plugin_config",
        'OpenVINO properties, e.g. \'{"NUM_STREAMS": "1"}\'',
        doc="{}",
        metavar="JSON",
    )

    g = parser.add_argument_group('dynamic batching (ovtrio; per model: "dynamic_batching")')
    modes = ("auto", "on", "off")
    _add(g, "dynamic_batching", "auto = on if the batch dim is dynamic", str, "auto", choices=modes)
    _add(g, "max_batch_size", "largest batch sent to OpenVINO", int, 16)
    _add(g, "max_batch_delay_us", "batch wait for more requests; 0 = none", int, 0)
    _add(g, "max_queue_size", "waiting requests per model version; more are rejected", int, 256)

    g = parser.add_argument_group("security and limits (ovtrio)")
    _add(g, "ssl_certificate", "PEM certificate (chain): serve both ports over TLS")
    _add(g, "ssl_key", "PEM private key of --ssl_certificate")
    _add(g, "ssl_ca", "PEM CA bundle: require client certificates signed by it (mTLS)")
    _add(
        g,
        "api_key_file",
        "file of API keys, one per line: require 'Authorization: Bearer <key>' (REST header, "
        "gRPC metadata); health endpoints stay open",
    )
    _add(g, "max_tensor_elements", "largest element count one input may declare", int, 1 << 31)
    _add(
        g,
        "max_connections",
        "open connections per port; more are closed at once; 0 = no limit",
        int,
        4096,
    )
    _add(
        g,
        "grpc_max_concurrent_streams",
        "calls one gRPC connection may have open at once (HTTP/2 MAX_CONCURRENT_STREAMS); "
        "clients queue the rest",
        int,
        100,
    )
    _add(g, "rest_max_header_bytes", "largest REST request head", int, 64 * 1024)
    _add(
        g,
        "rest_max_json_depth",
        "deepest nesting of arrays/objects in a REST JSON body (at most 1024, the parsers' own)",
        int,
        1024,
    )
    _add(g, "rest_read_timeout_s", "close a silent REST connection after this", float, 60.0)
    _add(g, "rest_idle_timeout_s", "close an idle keep-alive REST connection", float, 15.0)

    g = parser.add_argument_group("encoded images (JPEG/PNG as BYTES / DT_STRING, 4-D inputs)")
    _add(
        g,
        "image_color_order",
        "channel order of decoded images",
        str,
        "BGR",
        choices=("BGR", "RGB"),
    )
    _add(g, "image_max_pixels", "largest image (width x height) accepted", int, 64_000_000)

    g = parser.add_argument_group("OVMS flags accepted and ignored (a warning is logged)")
    for name in _IGNORED_FLAGS:
        kind: Callable[[str], object] = str
        if name == "allow_credentials":
            kind = _bool_flag
        elif not name.endswith(("_arguments", "_extension", "_origins", "_methods", "_headers")):
            kind = int
        _add(g, name, "ignored", kind, doc="")

    g = parser.add_argument_group("OVMS flags ovtrio refuses")
    for name, reason in _REFUSED_FLAGS.items():
        _add(g, name, reason, doc="", nargs="?", const="", metavar="X")
    return parser


def load(argv: Sequence[str]) -> ServerConfig:
    """Build the server configuration from command-line arguments (without the program name).

    In ``--config_path`` mode this also reads config.json. ``--help`` and ``--version`` print
    and raise ``SystemExit(0)``.

    Raises:
        ConfigError: any bad or contradictory flag, or a bad config file.
    """
    ns = _build_parser().parse_args(list(argv))

    for name, reason in _REFUSED_FLAGS.items():
        if getattr(ns, name) is not None:
            raise ConfigError(f"--{name}: {reason}")
    ignored = tuple(name for name in _IGNORED_FLAGS if getattr(ns, name) is not None)

    port = _int(ns.port, "--port", maximum=_MAX_PORT)
    rest_port = _int(ns.rest_port, "--rest_port", maximum=_MAX_PORT)
    if port == 0 and rest_port == 0:
        raise ConfigError("set --port (gRPC), --rest_port (REST) or both; both are 0")
    if port == rest_port:
        raise ConfigError(f"--port and --rest_port cannot have the same value ({port})")

    batching = BatchingConfig(
        mode=ns.dynamic_batching,
        max_batch_size=_int(ns.max_batch_size, "--max_batch_size", minimum=1),
        max_delay_us=_int(ns.max_batch_delay_us, "--max_batch_delay_us"),
        max_queue_size=_int(ns.max_queue_size, "--max_queue_size", minimum=1),
    )
    graceful_timeout_s: float = ns.graceful_timeout_s
    if not (math.isfinite(graceful_timeout_s) and graceful_timeout_s >= 0):
        raise ConfigError(f"--graceful_timeout_s: expected a number >= 0, got {graceful_timeout_s}")

    cli_metrics = ns.metrics_enable is not None or ns.metrics_list is not None
    metrics_enable = bool(ns.metrics_enable)
    metrics_names: tuple[str, ...] = ()
    if ns.metrics_list is not None:
        if not metrics_enable:
            raise ConfigError("--metrics_list requires --metrics_enable")
        names = [name.strip() for name in ns.metrics_list.split(",")]
        metrics_names = _metric_names(names, "--metrics_list")
    if metrics_enable and rest_port == 0:
        raise ConfigError("--metrics_enable requires --rest_port (metrics are served over REST)")

    config_path: Path | None = None
    models: tuple[ModelConfig, ...]
    given = [f"--{name}" for name in _SINGLE_MODEL_FLAGS if getattr(ns, name) is not None]
    if ns.config_path is not None:
        if ns.demo:
            raise ConfigError("--demo cannot be used with --config_path")
        if given:
            raise ConfigError(
                f"{given[0]} cannot be used with --config_path "
                "(model parameters on the command line are exclusive with the config file)"
            )
        config_path = _abs_path(_str(ns.config_path, "--config_path"), None)
        config_file = load_config_file(config_path, batching)
        models = config_file.models
        monitoring = config_file.monitoring
        if not cli_metrics and monitoring is not None and monitoring.enable:
            if rest_port == 0:
                raise ConfigError(
                    f"{config_path}: monitoring.metrics.enable requires --rest_port "
                    "(metrics are served over REST)"
                )
            metrics_enable = True
            metrics_names = monitoring.metrics_list
    elif ns.demo:
        if ns.model_name is not None:
            raise ConfigError("--model_name cannot be used with --demo (the demo model is 'demo')")
        models = (_cli_model(ns, "demo", ns.model_path or _DEMO_PATH, batching),)
    elif ns.model_name is not None and ns.model_path is not None:
        models = (_cli_model(ns, ns.model_name, ns.model_path, batching),)
    elif ns.model_name is not None:
        raise ConfigError("--model_name requires --model_path")
    elif ns.model_path is not None:
        raise ConfigError("--model_path requires --model_name")
    else:
        raise ConfigError(
            "no model to serve: use --config_path, --model_name with --model_path, or --demo"
        )

    if metrics_enable and not metrics_names:
        metrics_names = DEFAULT_METRICS
    if (ns.ssl_certificate is None) != (ns.ssl_key is None):
        raise ConfigError("--ssl_certificate and --ssl_key go together")
    if ns.ssl_ca is not None and ns.ssl_certificate is None:
        raise ConfigError("--ssl_ca (client certificates) requires --ssl_certificate and --ssl_key")
    return ServerConfig(
        port=port,
        rest_port=rest_port,
        grpc_bind_address=_str(ns.grpc_bind_address, "--grpc_bind_address"),
        rest_bind_address=_str(ns.rest_bind_address, "--rest_bind_address"),
        config_path=config_path,
        models=models,
        log_level=ns.log_level,
        log_path=_abs_path(ns.log_path, None) if ns.log_path else None,
        batching=batching,
        grpc_max_message_bytes=_int(
            ns.grpc_max_message_bytes, "--grpc_max_message_bytes", minimum=1
        ),
        rest_max_body_bytes=_int(ns.rest_max_body_bytes, "--rest_max_body_bytes", minimum=1),
        graceful_timeout_s=graceful_timeout_s,
        file_system_poll_wait_seconds=_int(
            ns.file_system_poll_wait_seconds, "--file_system_poll_wait_seconds"
        ),
        metrics_enable=metrics_enable,
        metrics_list=metrics_names if metrics_enable else (),
        cache_dir=_abs_path(ns.cache_dir, None) if ns.cache_dir else None,
        demo=bool(ns.demo),
        ignored_flags=ignored,
        ssl_certificate=_existing_file(ns.ssl_certificate, "--ssl_certificate"),
        ssl_key=_existing_file(ns.ssl_key, "--ssl_key"),
        ssl_ca=_existing_file(ns.ssl_ca, "--ssl_ca"),
        api_keys=_api_keys(ns.api_key_file),
        max_tensor_elements=_int(ns.max_tensor_elements, "--max_tensor_elements", minimum=1),
        max_connections=_int(ns.max_connections, "--max_connections"),
        grpc_max_concurrent_streams=_int(
            ns.grpc_max_concurrent_streams,
            "--grpc_max_concurrent_streams",
            minimum=1,
            maximum=2**31 - 1,
        ),
        rest_max_header_bytes=_int(
            ns.rest_max_header_bytes, "--rest_max_header_bytes", minimum=1024
        ),
        rest_max_json_depth=_int(
            ns.rest_max_json_depth, "--rest_max_json_depth", minimum=2, maximum=1024
        ),
        rest_read_timeout_s=_positive_seconds(ns.rest_read_timeout_s, "--rest_read_timeout_s"),
        rest_idle_timeout_s=_positive_seconds(ns.rest_idle_timeout_s, "--rest_idle_timeout_s"),
        image_color_order=ns.image_color_order,
        image_max_pixels=_int(ns.image_max_pixels, "--image_max_pixels", minimum=1),
    )


def _existing_file(value: str | None, flag: str) -> Path | None:
    if value is None:
        return None
    path = _abs_path(value, None)
    if not path.is_file():
        raise ConfigError(f"{flag}: no such file: {path}")
    return path


def _positive_seconds(value: float, flag: str) -> float:
    if not (math.isfinite(value) and value > 0):
        raise ConfigError(f"{flag}: expected a number > 0, got {value}")
    return value


def _api_keys(value: str | None) -> tuple[str, ...]:
    if value is None:
        return ()
    path = _existing_file(value, "--api_key_file")
    assert path is not None
    try:
        keys = tuple(k.strip() for k in path.read_text(encoding="utf-8").splitlines() if k.strip())
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"--api_key_file: cannot read {path}: {exc}") from None
    if not keys:
        raise ConfigError(f"--api_key_file: {path} holds no key")
    return keys


def _maybe_json(text: str, where: str) -> object:
    """The single-model ``--shape`` / ``--layout`` take a string or a JSON object per tensor."""
    return _json_at(text, where) if text.lstrip().startswith("{") else text


def _cli_model(
    ns: argparse.Namespace, name: str, path: str, batching: BatchingConfig
) -> ModelConfig:
    return ModelConfig(
        name=_model_name(name, "--model_name"),
        base_path=_base_path(path, "--model_path", None),
        batch_size=_batch_setting(ns.batch_size, "--batch_size")
        if ns.batch_size is not None
        else None,
        shape=_shape_setting(_maybe_json(ns.shape, "--shape"), "--shape")
        if ns.shape is not None
        else None,
        layout=_layout_setting(_maybe_json(ns.layout, "--layout"), "--layout")
        if ns.layout is not None
        else None,
        version_policy=_version_policy(ns.model_version_policy, "--model_version_policy")
        if ns.model_version_policy is not None
        else VersionPolicy("latest"),
        nireq=_int(ns.nireq, "--nireq", maximum=_MAX_NIREQ) if ns.nireq is not None else 0,
        target_device=_str(ns.target_device, "--target_device")
        if ns.target_device is not None
        else "CPU",
        plugin_config=_plugin_config(
            _json_at(ns.plugin_config, "--plugin_config"), "--plugin_config"
        )
        if ns.plugin_config is not None
        else {},
        batching=batching,
        source="command line",
    )
