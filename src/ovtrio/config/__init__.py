"""Server configuration: the OVMS command line and config.json, parsed once into frozen data.

``load(argv)`` is the entry point the CLI needs to serve; before it, ``management_command(argv)``
picks out OVMS' config-management commands (``--list_models``, ``--add_to_config``,
``--remove_from_config``), which ``run_management`` carries out. ``load_config_file`` re-parses
a config.json on its own so the hot-reload code can call it again later. Nothing here opens
sockets or touches models; the I/O is reading the files the flags name (config.json,
``--api_key_file``), checking that the TLS and extension files exist, and the management
commands' listing of a repository and rewriting of a config.json.

The data lives in ``_types``, the value parsers in ``_values``, the config.json schema in
``_json``, a version folder's ``mapping_config.json`` in ``_mapping``, the command line in
``_cli``, the preprocessing flags in ``_preprocess``, the CORS flags in ``_cors`` and the
management commands in ``_manage``.

Every problem is a ``ConfigError`` whose message is one line naming the flag or the key path
and the file, e.g. ``config.json: model_config_list[0].config: unknown key 'nireqs'``.

Shapes use OVMS' notation. A dimension is a ``Dim`` = ``(min, max)``: a static ``n`` is
``(n, n)``, ``-1`` is ``(0, -1)`` (unbounded) and a range ``1:8`` is ``(1, 8)``.
"""

from ._cli import load as load
from ._cli import management_command as management_command
from ._cors import parse_cors as parse_cors
from ._json import IGNORED_MODEL_KEYS as IGNORED_MODEL_KEYS
from ._json import load_config_file as load_config_file
from ._json import parse_config_json as parse_config_json
from ._manage import ManageCommand as ManageCommand
from ._manage import list_models as list_models
from ._manage import run_management as run_management
from ._mapping import MAPPING_FILE as MAPPING_FILE
from ._mapping import parse_mapping_config as parse_mapping_config
from ._preprocess import parse_color_format as parse_color_format
from ._preprocess import parse_mean_scale as parse_mean_scale
from ._preprocess import parse_precision as parse_precision
from ._types import COLOR_FORMATS as COLOR_FORMATS
from ._types import DEFAULT_METRICS as DEFAULT_METRICS
from ._types import METRIC_NAMES as METRIC_NAMES
from ._types import PRECISIONS as PRECISIONS
from ._types import BatchingConfig as BatchingConfig
from ._types import ConfigError as ConfigError
from ._types import ConfigFile as ConfigFile
from ._types import CorsConfig as CorsConfig
from ._types import Dim as Dim
from ._types import ModelConfig as ModelConfig
from ._types import MonitoringConfig as MonitoringConfig
from ._types import PluginValue as PluginValue
from ._types import Preprocess as Preprocess
from ._types import ServerConfig as ServerConfig
from ._types import ShapeSpec as ShapeSpec
from ._types import TensorMapping as TensorMapping
from ._types import VersionPolicy as VersionPolicy
from ._values import parse_batch_size as parse_batch_size
from ._values import parse_layout as parse_layout
from ._values import parse_shape as parse_shape
from ._values import parse_version_policy as parse_version_policy

__all__ = [
    "COLOR_FORMATS",
    "DEFAULT_METRICS",
    "IGNORED_MODEL_KEYS",
    "MAPPING_FILE",
    "METRIC_NAMES",
    "PRECISIONS",
    "BatchingConfig",
    "ConfigError",
    "ConfigFile",
    "CorsConfig",
    "Dim",
    "ManageCommand",
    "ModelConfig",
    "MonitoringConfig",
    "PluginValue",
    "Preprocess",
    "ServerConfig",
    "ShapeSpec",
    "TensorMapping",
    "VersionPolicy",
    "list_models",
    "load",
    "load_config_file",
    "management_command",
    "parse_batch_size",
    "parse_color_format",
    "parse_config_json",
    "parse_cors",
    "parse_layout",
    "parse_mapping_config",
    "parse_mean_scale",
    "parse_precision",
    "parse_shape",
    "parse_version_policy",
    "run_management",
]
