"""The command line: OVMS' flags and ovtrio's own, parsed into a ``ServerConfig``."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, NoReturn

from .._version import __version__
from ._cors import parse_cors
from ._json import load_config_file
from ._manage import ManageCommand, _command_from_args
from ._preprocess import _FLAGS as _PREPROCESS_FLAGS
from ._preprocess import _preprocess_flags
from ._types import (
    _MAX_NIREQ,
    _MAX_PORT,
    _MODEL_SETTINGS,
    DEFAULT_METRICS,
    BatchingConfig,
    ConfigError,
    ConfigFile,
    ModelConfig,
    MonitoringConfig,
    ServerConfig,
    VersionPolicy,
)
from ._values import (
    _abs_path,
    _base_path,
    _batch_setting,
    _int,
    _json_at,
    _layout_setting,
    _metric_names,
    _model_name,
    _plugin_config,
    _shape_setting,
    _str,
    _version_policy,
    parse_bind_addresses,
)

_SINGLE_MODEL_FLAGS = ("model_name", "model_path", *_MODEL_SETTINGS, *_PREPROCESS_FLAGS)
_IGNORED_FLAGS = (
    "grpc_max_threads",
    "grpc_memory_quota",
    "grpc_channel_arguments",
    "sequence_cleaner_poll_wait_minutes",
    "custom_node_resources_cleaner_interval_seconds",
)
_IGNORED_WHEN_SERVING = ("model_repository_path",)
"""Flags that serve the config-management commands (and OVMS' ``--pull``) and have no effect
on a server."""
_REFUSED_FLAGS = {
    "stateful": "stateful models are not supported",
    "idle_sequence_cleanup": "stateful models are not supported",
    "low_latency_transformation": "stateful models are not supported",
    "max_sequence_number": "stateful models are not supported",
}
_MAX_WORKERS = 1024
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
    _add_server_flags(parser.add_argument_group("server"))
    _add_model_flags(parser.add_argument_group("models"))
    _add_batching_flags(
        parser.add_argument_group('dynamic batching (ovtrio; per model: "dynamic_batching")')
    )
    _add_cors_flags(
        parser.add_argument_group(
            "CORS (REST; each list is comma-separated, * = any, empty = none)"
        )
    )
    _add_security_flags(parser.add_argument_group("security and limits (ovtrio)"))
    _add_image_flags(
        parser.add_argument_group("encoded images (JPEG/PNG as BYTES / DT_STRING, 4-D inputs)")
    )
    _add_management_flags(
        parser.add_argument_group(
            "config management (list a model repository or edit config.json, then exit)"
        )
    )
    _add_ignored_flags(
        parser.add_argument_group("OVMS flags accepted and ignored (a warning is logged)")
    )
    g = parser.add_argument_group("OVMS flags ovtrio refuses")
    for name, reason in _REFUSED_FLAGS.items():
        _add(g, name, reason, doc="", nargs="?", const="", metavar="X")
    return parser


def _add_server_flags(g: argparse._ArgumentGroup) -> None:
    _add(g, "port", "gRPC port; 0 = no gRPC server", int, 0)
    _add(g, "rest_port", "REST port; 0 = no REST server", int, 0)
    _add(g, "grpc_bind_address", "gRPC server address(es), comma-separated", str, "0.0.0.0")
    _add(g, "rest_bind_address", "REST server address(es), comma-separated", str, "0.0.0.0")
    _add(g, "grpc_max_message_bytes", "largest gRPC message received", int, 1 << 30)
    _add(g, "rest_max_body_bytes", "largest REST request body", int, 1 << 30)
    _add(g, "graceful_timeout_s", "on SIGINT/SIGTERM, seconds requests may still run", float, 30.0)
    _add(
        g,
        "rest_workers",
        "processes serving the REST port (>1: front-ends around one engine)",
        int,
        1,
    )
    _add(
        g,
        "grpc_workers",
        "processes serving the gRPC port (>1: front-ends around one engine)",
        int,
        1,
    )
    _add(g, "file_system_poll_wait_seconds", "model/config poll period; 0 = off", int, 1)
    _add(g, "cache_dir", "OpenVINO model cache directory")
    _add(g, "cpu_extension", "library of custom OpenVINO operations to load at start")
    _add(
        g,
        "log_level",
        "log level; DEBUG: a line per request, load detail; TRACE: libraries' debug too",
        str.upper,
        "INFO",
        doc="INFO",
        choices=_LOG_LEVELS,
    )
    _add(g, "log_path", "log file instead of stderr")
    _add(g, "metrics_enable", "serve /metrics on the REST port", _bool_flag, doc="false")
    _add(g, "metrics_list", "comma-separated metric names", doc="the default set")


def _add_model_flags(g: argparse._ArgumentGroup) -> None:
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
    _add(g, "mean", 'subtracted from the input: "127.5" or per channel "[123.675,116.28,103.53]"')
    _add(g, "scale", 'divides the input after --mean: "255" or per channel "[58.4,57.1,57.4]"')
    _add(g, "color_format", 'target:source, e.g. "BGR:RGB": clients send RGB, the model gets BGR')
    _add(g, "precision", 'target:source, e.g. "UINT8:FP32": clients send UINT8, the model FP32')


def _add_batching_flags(g: argparse._ArgumentGroup) -> None:
    modes = ("auto", "on", "off")
    _add(g, "dynamic_batching", "auto = on if the batch dim is dynamic", str, "auto", choices=modes)
    _add(g, "max_batch_size", "largest batch sent to OpenVINO", int, 16)
    _add(g, "max_batch_delay_us", "batch wait for more requests; 0 = none", int, 0)
    _add(g, "max_queue_size", "waiting requests per model version; more are rejected", int, 256)


def _add_cors_flags(g: argparse._ArgumentGroup) -> None:
    _add(g, "allowed_origins", "origins (scheme://host[:port]) that may call the API", str, "*")
    _add(g, "allowed_methods", "methods allowed in cross-origin requests", str, "*")
    _add(g, "allowed_headers", "request headers allowed in cross-origin requests", str, "*")
    _add(g, "allow_credentials", "allow cookies and HTTP authentication", _bool_flag, False)


def _add_security_flags(g: argparse._ArgumentGroup) -> None:
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


def _add_image_flags(g: argparse._ArgumentGroup) -> None:
    _add(
        g,
        "image_color_order",
        "channel order of decoded images",
        str,
        "BGR",
        choices=("BGR", "RGB"),
    )
    _add(g, "image_max_pixels", "largest image (width x height) accepted", int, 64_000_000)


def _add_management_flags(g: argparse._ArgumentGroup) -> None:
    for name, text in (
        ("list_models", "print the models found under --model_repository_path"),
        ("add_to_config", "add --model_name (and its model flags) to --config_path's models"),
        ("remove_from_config", "remove --model_name from --config_path's models"),
    ):
        g.add_argument(f"--{name}", action="store_true", help=f"{text} (default: false)")
    _add(
        g,
        "model_repository_path",
        "repository the commands above list, or add <repository>/<model_name> from",
        doc="$OVMS_MODEL_REPOSITORY_PATH",
    )


def _add_ignored_flags(g: argparse._ArgumentGroup) -> None:
    for name in _IGNORED_FLAGS:
        kind: Callable[[str], object] = str if name.endswith("_arguments") else int
        _add(g, name, "ignored", kind, doc="")


def load(argv: Sequence[str]) -> ServerConfig:
    """Build the server configuration from command-line arguments (without the program name).

    In ``--config_path`` mode this also reads config.json. ``--help`` and ``--version`` print
    and raise ``SystemExit(0)``.

    Raises:
        ConfigError: any bad or contradictory flag, or a bad config file.
    """
    ns = _build_parser().parse_args(list(argv))
    if _command_from_args(ns) is not None:
        raise ConfigError("config-management flags are handled by management_command()")
    ignored = _ignored_flags(ns)
    port, rest_port = _ports(ns)
    batching = BatchingConfig(
        mode=ns.dynamic_batching,
        max_batch_size=_int(ns.max_batch_size, "--max_batch_size", minimum=1),
        max_delay_us=_int(ns.max_batch_delay_us, "--max_batch_delay_us"),
        max_queue_size=_int(ns.max_queue_size, "--max_queue_size", minimum=1),
    )
    graceful_timeout_s: float = ns.graceful_timeout_s
    if not (math.isfinite(graceful_timeout_s) and graceful_timeout_s >= 0):
        raise ConfigError(f"--graceful_timeout_s: expected a number >= 0, got {graceful_timeout_s}")
    metrics = _metrics_flags(ns, rest_port)
    config_path, config_file = _models(ns, batching)
    if metrics is None:
        metrics = _metrics_from_file(config_file.monitoring, config_path, rest_port)
    if metrics[0] and not metrics[1]:
        metrics = (True, DEFAULT_METRICS)
    if (ns.ssl_certificate is None) != (ns.ssl_key is None):
        raise ConfigError("--ssl_certificate and --ssl_key go together")
    if ns.ssl_ca is not None and ns.ssl_certificate is None:
        raise ConfigError("--ssl_ca (client certificates) requires --ssl_certificate and --ssl_key")
    return _server_config(
        ns,
        ServerConfig(
            port=port,
            rest_port=rest_port,
            config_path=config_path,
            models=config_file.models,
            pipelines=config_file.pipelines,
            libraries=config_file.libraries,
            batching=batching,
            graceful_timeout_s=graceful_timeout_s,
            metrics_enable=metrics[0],
            metrics_list=metrics[1] if metrics[0] else (),
            demo=bool(ns.demo),
            ignored_flags=ignored,
        ),
    )


def management_command(argv: Sequence[str]) -> ManageCommand | None:
    """The config-management command (``--list_models``, ``--add_to_config``,
    ``--remove_from_config``) that ``argv`` asks for; ``None`` if it asks to serve models.

    Raises:
        ConfigError: a bad flag, or one of OVMS' rules for these commands broken.
    """
    return _command_from_args(_build_parser().parse_args(list(argv)))


def _ignored_flags(ns: argparse.Namespace) -> tuple[str, ...]:
    """Refuse the flags ovtrio refuses; return the ignored ones given."""
    for name, reason in _REFUSED_FLAGS.items():
        if getattr(ns, name) is not None:
            raise ConfigError(f"--{name}: {reason}")
    given = (*_IGNORED_FLAGS, *_IGNORED_WHEN_SERVING)
    return tuple(name for name in given if getattr(ns, name) is not None)


def _ports(ns: argparse.Namespace) -> tuple[int, int]:
    port = _int(ns.port, "--port", maximum=_MAX_PORT)
    rest_port = _int(ns.rest_port, "--rest_port", maximum=_MAX_PORT)
    if port == 0 and rest_port == 0:
        raise ConfigError("set --port (gRPC), --rest_port (REST) or both; both are 0")
    if port == rest_port:
        raise ConfigError(f"--port and --rest_port cannot have the same value ({port})")
    return port, rest_port


def _metrics_flags(ns: argparse.Namespace, rest_port: int) -> tuple[bool, tuple[str, ...]] | None:
    """``--metrics_enable`` and ``--metrics_list`` as (enable, names); ``None`` if neither given."""
    if ns.metrics_enable is None and ns.metrics_list is None:
        return None
    enable = bool(ns.metrics_enable)
    names: tuple[str, ...] = ()
    if ns.metrics_list is not None:
        if not enable:
            raise ConfigError("--metrics_list requires --metrics_enable")
        names = _metric_names(
            [name.strip() for name in ns.metrics_list.split(",")], "--metrics_list"
        )
    if enable and rest_port == 0:
        raise ConfigError("--metrics_enable requires --rest_port (metrics are served over REST)")
    return enable, names


def _metrics_from_file(
    monitoring: MonitoringConfig | None, config_path: Path | None, rest_port: int
) -> tuple[bool, tuple[str, ...]]:
    """config.json ``monitoring.metrics`` as (enable, names), used when no metrics flag is given."""
    if monitoring is None or not monitoring.enable:
        return False, ()
    if rest_port == 0:
        raise ConfigError(
            f"{config_path}: monitoring.metrics.enable requires --rest_port "
            "(metrics are served over REST)"
        )
    return True, monitoring.metrics_list


def _models(ns: argparse.Namespace, batching: BatchingConfig) -> tuple[Path | None, ConfigFile]:
    """The models to serve from config.json, ``--demo`` or the single-model flags.

    Returns the absolute config.json path (``None`` without one) and the file's content (for
    the flags: their one model).
    """
    if ns.config_path is not None:
        return _config_file_models(ns, batching)
    if ns.demo:
        if ns.model_name is not None:
            raise ConfigError("--model_name cannot be used with --demo (the demo model is 'demo')")
        demo = _cli_model(ns, "demo", ns.model_path or _DEMO_PATH, batching)
        if isinstance(demo.base_path, str):
            raise ConfigError("--demo needs a local --model_path (the demo model is written there)")
        return None, ConfigFile((demo,))
    if ns.model_name is not None and ns.model_path is not None:
        return None, ConfigFile((_cli_model(ns, ns.model_name, ns.model_path, batching),))
    if ns.model_name is not None:
        raise ConfigError("--model_name requires --model_path")
    if ns.model_path is not None:
        raise ConfigError("--model_path requires --model_name")
    raise ConfigError(
        "no model to serve: use --config_path, --model_name with --model_path, or --demo"
    )


def _config_file_models(
    ns: argparse.Namespace, batching: BatchingConfig
) -> tuple[Path, ConfigFile]:
    if ns.demo:
        raise ConfigError("--demo cannot be used with --config_path")
    given = [f"--{name}" for name in _SINGLE_MODEL_FLAGS if getattr(ns, name) is not None]
    if given:
        raise ConfigError(
            f"{given[0]} cannot be used with --config_path "
            "(model parameters on the command line are exclusive with the config file)"
        )
    config_path = _abs_path(_str(ns.config_path, "--config_path"), None)
    return config_path, load_config_file(config_path, batching)


def _server_config(ns: argparse.Namespace, resolved: ServerConfig) -> ServerConfig:
    """``resolved`` completed with the flags that each map to one field."""
    return replace(
        resolved,
        grpc_bind_address=_bind_addresses(ns.grpc_bind_address, "--grpc_bind_address"),
        rest_bind_address=_bind_addresses(ns.rest_bind_address, "--rest_bind_address"),
        log_level=ns.log_level,
        log_path=_abs_path(ns.log_path, None) if ns.log_path else None,
        grpc_max_message_bytes=_int(
            ns.grpc_max_message_bytes, "--grpc_max_message_bytes", minimum=1
        ),
        rest_max_body_bytes=_int(ns.rest_max_body_bytes, "--rest_max_body_bytes", minimum=1),
        rest_workers=_int(ns.rest_workers, "--rest_workers", minimum=1, maximum=_MAX_WORKERS),
        grpc_workers=_int(ns.grpc_workers, "--grpc_workers", minimum=1, maximum=_MAX_WORKERS),
        file_system_poll_wait_seconds=_int(
            ns.file_system_poll_wait_seconds, "--file_system_poll_wait_seconds"
        ),
        cache_dir=_abs_path(ns.cache_dir, None) if ns.cache_dir else None,
        cpu_extension=_cpu_extension(ns.cpu_extension),
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
        cors=parse_cors(
            ns.allowed_origins, ns.allowed_methods, ns.allowed_headers, ns.allow_credentials
        ),
    )


def _bind_addresses(value: str, flag: str) -> tuple[str, ...]:
    try:
        return parse_bind_addresses(value)
    except ConfigError as exc:
        raise ConfigError(f"{flag}: {exc}") from None


def _existing_file(value: str | None, flag: str) -> Path | None:
    if value is None:
        return None
    path = _abs_path(value, None)
    if not path.is_file():
        raise ConfigError(f"{flag}: no such file: {path}")
    return path


def _cpu_extension(value: str | None) -> Path | None:
    if value is None:
        return None
    path = _abs_path(_str(value, "--cpu_extension"), None)
    if not path.exists():
        raise ConfigError(
            "File path provided as an --cpu_extension parameter does not exist in the "
            f"filesystem: {path}"
        )
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
        preprocess=_preprocess_flags(
            {flag: getattr(ns, flag) for flag in _PREPROCESS_FLAGS}, ns.layout
        ),
        source="command line",
    )
