"""Value parsers and typed accessors for decoded JSON.

The public parsers (``parse_shape``, ...) raise ConfigError with a message that has no
location; the private accessors take ``where``, the location their message names.
"""

from __future__ import annotations

import difflib
import ipaddress
import json
import math
import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Literal, NoReturn, TypeVar

from ._types import (
    _MAX_DIM,
    METRIC_NAMES,
    BatchingConfig,
    BatchingMode,
    ConfigError,
    Dim,
    PluginValue,
    ShapeSpec,
    VersionPolicy,
)

_T = TypeVar("_T")
_A = TypeVar("_A")


def _show(value: object) -> str:
    """``value`` as JSON, shortened to keep messages on one readable line."""
    try:
        text = json.dumps(value)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


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


_HOSTNAME = re.compile(
    r"(([A-Za-z0-9]|[A-Za-z0-9][A-Za-z0-9-]*[A-Za-z0-9])\.)*"
    r"([A-Za-z0-9]|[A-Za-z0-9][A-Za-z0-9-]*[A-Za-z0-9])"
)


def parse_bind_addresses(text: str) -> tuple[str, ...]:
    """``--grpc_bind_address`` / ``--rest_bind_address``: one address or a comma-separated
    list, each an IPv4 or IPv6 address or a hostname (OVMS' rule), duplicates refused."""
    addresses: list[str] = []
    for part in text.split(","):
        address = part.strip()
        if address.startswith("[") and address.endswith("]"):
            address = address[1:-1]
        if not _is_host(address):
            raise ConfigError(
                f"invalid format {_show(part)}: a hostname or an IP address expected"
                " (several: comma-separated)"
            )
        if address in addresses:
            raise ConfigError(f"address {address} is given twice")
        addresses.append(address)
    return tuple(addresses)


def _is_host(address: str) -> bool:
    if not address or len(address) > 255:
        return False
    try:
        ipaddress.ip_address(address)
    except ValueError:
        # all digits and dots but not an IPv4 address ("192.0.2"): refused, as OVMS does
        return not re.fullmatch(r"[0-9.]+", address) and bool(_HOSTNAME.fullmatch(address))
    return True


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
    return _per_tensor(value, where, parse_shape)


def _layout_setting(value: object, where: str) -> str | dict[str, str] | None:
    return _per_tensor(value, where, parse_layout)


def _per_tensor(value: object, where: str, parse: Callable[[str], _T]) -> _T | dict[str, _T] | None:
    """One setting for every tensor (a string) or one per tensor name (an object of strings)."""
    if isinstance(value, str):
        return _located(where, parse, value)
    if isinstance(value, dict):
        settings: dict[str, _T] = {}
        for name, spec in value.items():
            text = _str(spec, f"{where}.{name}")
            settings[name] = _located(f"{where}.{name}", parse, text)
        return settings or None
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


_WEB_PREFIXES = ("http://", "https://")


def _abs_path(text: str, relative_to: Path | None) -> Path:
    path = Path(os.path.expanduser(text))
    if not path.is_absolute() and relative_to is not None:
        path = relative_to / path
    return Path(os.path.abspath(path))


def _base_path(value: object, where: str, relative_to: Path | None) -> Path | str:
    """A local folder (absolute ``Path``) or a storage URL kept as written (``str``).

    ``Path`` would collapse ``s3://b`` to ``s3:/b``, and a URL is never relative to the config
    file, so a remote base path stays text; the storage layer checks it here so that a bad URL
    (or ``azfs://``) is refused before anything starts.
    """
    text = _str(value, where)
    if text.lower().startswith(_WEB_PREFIXES):
        raise ConfigError(
            f"{where}: base_path must be a local folder or an s3://, gs:// or az:// URL, "
            f"got {_show(text)}"
        )
    if "://" in text:
        # Imported here: the storage layer pulls in the repository, which imports this package.
        from ..repository._storage import StorageError, is_remote, parse_url

        if is_remote(text):
            try:
                parse_url(text)
            except StorageError as exc:
                raise ConfigError(f"{where}: {exc.reason}") from None
            return text
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
