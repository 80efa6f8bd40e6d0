"""config.json: the ``model_config_list`` and ``monitoring`` schema."""

from __future__ import annotations

import os
from pathlib import Path

from ._types import (
    _MAX_NIREQ,
    _MODEL_SETTINGS,
    BatchingConfig,
    ConfigError,
    ConfigFile,
    ModelConfig,
    MonitoringConfig,
    VersionPolicy,
)
from ._values import (
    _base_path,
    _batch_setting,
    _batching,
    _bool,
    _int,
    _json_at,
    _keys,
    _layout_setting,
    _metric_names,
    _model_name,
    _object,
    _plugin_config,
    _shape_setting,
    _show,
    _str,
    _version_policy,
)

_UNSUPPORTED_TOP_KEYS = (
    "mediapipe_config_list",
    "custom_loader_config_list",
)
_TOP_KEYS = (
    "model_config_list",
    "monitoring",
    "pipeline_config_list",
    "custom_node_library_config_list",
    *_UNSUPPORTED_TOP_KEYS,
)

_MODEL_KEYS = (
    "name",
    "base_path",
    *_MODEL_SETTINGS,
    "dynamic_batching",
    "version_labels",
    "allow_cache",
    # OVMS' stateful-model keys: validated, and ``stateful: true`` is refused
    "stateful",
    "idle_sequence_cleanup",
    "low_latency_transformation",
    "max_sequence_number",
)
IGNORED_MODEL_KEYS = {
    "idle_sequence_cleanup": "stateful models are not supported",
    "low_latency_transformation": "stateful models are not supported",
    "max_sequence_number": "stateful models are not supported",
}
"""OVMS model keys that are accepted (type-checked) but have no effect, with the reason; each
one given is logged as a warning (``ModelConfig.ignored_keys``)."""
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
    # imported here: the pipelines package imports this one (ConfigError)
    from ..pipelines import parse_libraries, parse_pipelines

    return ConfigFile(
        models=tuple(models),
        monitoring=monitoring,
        pipelines=parse_pipelines(
            top.get("pipeline_config_list", []), f"{path}: pipeline_config_list"
        ),
        libraries=parse_libraries(
            top.get("custom_node_library_config_list", []),
            f"{path}: custom_node_library_config_list",
            relative_to,
        ),
    )


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
        ignored_keys=tuple(key for key in IGNORED_MODEL_KEYS if key in obj),
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
