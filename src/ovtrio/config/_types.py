"""The configuration's data: frozen dataclasses, the ``Dim`` notation and the metric names."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal, TypeAlias

if TYPE_CHECKING:
    from ..pipelines import LibraryConfig, PipelineConfig


class ConfigError(Exception):
    """A configuration problem; the message is one line naming the flag or key and the file."""


Dim: TypeAlias = tuple[int, int]
"""``(min, max)``: static ``n`` is ``(n, n)``, ``-1`` is ``(0, -1)``, ``a:b`` is ``(a, b)``."""

PluginValue: TypeAlias = str | int | float | bool
"""A value of an OpenVINO property in ``plugin_config``."""

BatchingMode: TypeAlias = Literal["auto", "on", "off"]

_MAX_DIM = 2**31 - 1  # OVMS parses dimensions with std::stoi
_MAX_NIREQ = 100_000  # OVMS refuses to load a model with a larger nireq
_MAX_PORT = 65535

_MODEL_SETTINGS = (
    "batch_size",
    "shape",
    "layout",
    "model_version_policy",
    "nireq",
    "target_device",
    "plugin_config",
)
"""OVMS' model settings that are both a single-model flag and a config.json key."""

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


def _format_dim(dim: Dim) -> str:
    lo, hi = dim
    if hi == -1:
        return "-1"
    return str(lo) if lo == hi else f"{lo}:{hi}"


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


COLOR_FORMATS: tuple[str, ...] = ("RGB", "BGR", "GRAY", "NV12", "NV12_2", "I420", "I420_3")
"""``--color_format`` names (OVMS'): NV12/I420 single plane, NV12_2 two planes, I420_3 three."""

PRECISIONS: tuple[str, ...] = (
    "BF16",
    "FP64",
    "FP32",
    "FP16",
    "INT64",
    "INT32",
    "INT16",
    "INT8",
    "INT4",
    "UINT64",
    "UINT32",
    "UINT16",
    "UINT8",
    "UINT4",
    "UINT1",
)
"""``--precision`` names (OVMS'), upper case; the flag takes any case."""


@dataclass(frozen=True, slots=True)
class Preprocess:
    """Single-model input preprocessing (``--mean``, ``--scale``, ``--color_format``,
    ``--precision``), applied to the model's only input, in OVMS' order: color conversion,
    precision conversion, then ``(x - mean) / scale``."""

    mean: float | tuple[float, ...] | None = None
    """Subtracted from every value, or one value per channel (the layout's ``C``)."""
    scale: float | tuple[float, ...] | None = None
    """Divides every value, or one value per channel."""
    color_format: tuple[str, str] | None = None
    """``(target, source)``: clients send ``source``, the model gets ``target``."""
    precision: tuple[str, str] | None = None
    """``(target, source)`` names from ``PRECISIONS``: clients send ``target``, converted to
    ``source`` before the model (OVMS' reading of ``target:source``)."""


@dataclass(frozen=True, slots=True)
class CorsConfig:
    """OVMS' CORS flags (``--allowed_origins``, ``--allowed_methods``, ``--allowed_headers``,
    ``--allow_credentials``) for the REST port. An empty tuple sends no such header; ``"*"``
    in a tuple allows any value."""

    allowed_origins: tuple[str, ...] = ("*",)
    """``*``, ``null`` or serialised origins (``scheme://host[:port]``, lower case)."""
    allowed_methods: tuple[str, ...] = ("*",)
    """HTTP methods, or ``*``."""
    allowed_headers: tuple[str, ...] = ("*",)
    """Request header names, or ``*``."""
    allow_credentials: bool = False
    """Send ``Access-Control-Allow-Credentials: true`` (cookies, HTTP authentication)."""

    @property
    def unmatchable_origins(self) -> tuple[str, ...]:
        """Listed origins without a scheme: no browser's ``Origin`` header matches them."""
        return tuple(o for o in self.allowed_origins if o not in ("*", "null") and "://" not in o)


@dataclass(frozen=True, slots=True)
class ModelConfig:
    """One served model, from a ``model_config_list`` entry or the single-model flags.

    Equality ignores ``source``, so hot reload can compare an entry that moved in the list.
    """

    name: str
    """Servable name (non-empty, no ``/``, no ``..``)."""
    base_path: Path | str
    """Absolute directory holding the numeric version directories, or a storage URL
    (``s3://``, ``gs://``, ``az://``; see ``ovtrio.repository._storage``) kept as text."""
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
    """Infer-request pool size; 0 = twice OpenVINO's OPTIMAL_NUMBER_OF_INFER_REQUESTS, at
    least 2 (OVMS takes it once): a second request per stream, already started, keeps the
    stream computing while a result crosses to trio."""
    target_device: str = "CPU"
    """OpenVINO device name (``CPU``, ``GPU``, ``AUTO``, ``HETERO:...``, ...)."""
    plugin_config: dict[str, PluginValue] = field(default_factory=dict, hash=False)
    """OpenVINO properties passed to ``compile_model``."""
    batching: BatchingConfig = BatchingConfig()
    """Dynamic batching, merged from the server-wide flags and the entry's ``dynamic_batching``."""
    allow_cache: bool = False
    """config.json ``allow_cache``: use the ``--cache_dir`` model cache even for ``auto``
    shapes and batch sizes (see ``model_cache``)."""
    preprocess: Preprocess | None = None
    """``--mean``/``--scale``/``--color_format``/``--precision`` (single-model mode only: OVMS'
    config.json schema has no such keys)."""
    version_labels: dict[str, int] = field(default_factory=dict, hash=False)
    """ovtrio's (and TF Serving's) ``version_labels``: label -> version, e.g. ``{"stable": 1}``."""
    source: str = field(default="", compare=False)
    """Origin, for messages: ``config.json: model_config_list[0]`` or ``command line``."""
    ignored_keys: tuple[str, ...] = field(default=(), compare=False)
    """OVMS keys the entry gives that have no effect in ovtrio (``IGNORED_MODEL_KEYS``); the
    registry logs a warning naming each when it takes the entry."""

    @property
    def model_cache(self) -> bool:
        """Whether compiling this model may use the ``--cache_dir`` model cache.

        As in OVMS, not when ``shape`` (of any input) or ``batch_size`` is ``auto``, unless
        ``allow_cache`` is set.
        """
        return self.allow_cache or not self.auto

    @property
    def auto(self) -> bool:
        """``batch_size`` or ``shape`` (of any input) is ``auto``; pipelines refuse such models."""
        shapes = self.shape.values() if isinstance(self.shape, dict) else (self.shape,)
        return self.batch_size == "auto" or any(s is not None and s.auto for s in shapes)


@dataclass(frozen=True, slots=True)
class TensorMapping:
    """A version folder's ``mapping_config.json``: the model's tensor name -> the name
    clients use, for inputs and for outputs."""

    inputs: dict[str, str] = field(default_factory=dict)
    outputs: dict[str, str] = field(default_factory=dict)


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
    pipelines: tuple[PipelineConfig, ...] = ()
    """``pipeline_config_list`` (a later duplicate name is skipped, as OVMS does)."""
    libraries: tuple[LibraryConfig, ...] = ()
    """``custom_node_library_config_list``."""


@dataclass(frozen=True, slots=True)
class ServerConfig:
    """Everything the server needs, built once from the command line (and config.json)."""

    port: int = 0
    """gRPC port; 0 = no gRPC server."""
    rest_port: int = 0
    """REST port; 0 = no REST server."""
    grpc_bind_address: tuple[str, ...] = ("0.0.0.0",)
    """Addresses the gRPC server binds to (IP addresses or hostnames), each on ``port``."""
    rest_bind_address: tuple[str, ...] = ("0.0.0.0",)
    """Addresses the REST server binds to, each on ``rest_port``."""
    config_path: Path | None = None
    """Absolute path of config.json; ``None`` in single-model and demo mode."""
    models: tuple[ModelConfig, ...] = ()
    """The models to serve at start-up."""
    pipelines: tuple[PipelineConfig, ...] = ()
    """config.json ``pipeline_config_list``."""
    libraries: tuple[LibraryConfig, ...] = ()
    """config.json ``custom_node_library_config_list``."""
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
    rest_workers: int = 1
    """Front-end processes serving the REST port; above 1 (either port) the server runs as
    one engine process and its front-ends (``ovtrio.workers``)."""
    grpc_workers: int = 1
    """Front-end processes serving the gRPC port (see ``rest_workers``)."""
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
    cpu_extension: Path | None = None
    """``--cpu_extension``: a library of custom OpenVINO operations, loaded before any model."""
    image_max_pixels: int = 64_000_000
    """Largest encoded image (width x height) accepted; larger ones are refused (413)."""
    cors: CorsConfig = CorsConfig()
    """CORS headers and preflight answers on the REST port (OVMS' defaults: any origin)."""
