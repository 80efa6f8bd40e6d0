"""OVMS' single-model preprocessing flags: ``--mean``, ``--scale``, ``--color_format``,
``--precision``, parsed into a ``Preprocess``.

The syntax and messages follow OVMS: ``--mean`` / ``--scale`` take one number or a list in
``[]`` or ``()`` (one per channel), spaces allowed; ``--color_format`` and ``--precision`` take
``target:source``, in any case. Each flag needs ``--layout`` (OVMS refuses them without it), and
none is a config.json key (OVMS' schema has none of them).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from typing import TypeVar

from ._types import COLOR_FORMATS, PRECISIONS, ConfigError, Preprocess
from ._values import _show

_T = TypeVar("_T")
_FLOAT = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:E[+-]?[0-9]+)?")


def _float(token: str) -> float | None:
    if not _FLOAT.fullmatch(token):
        return None
    value = float(token)
    return value if math.isfinite(value) else None


def parse_mean_scale(text: str) -> float | tuple[float, ...]:
    """Parse a ``--mean`` / ``--scale`` value: ``"127.5"`` or ``"[123.675,116.28,103.53]"``
    (or in ``()``). Raises ConfigError."""
    compact = "".join(text.split()).upper()
    bracketed = len(compact) >= 2 and (compact[0], compact[-1]) in {("[", "]"), ("(", ")")}
    tokens = compact[1:-1].split(",") if bracketed else [compact]
    values = [_float(token) for token in tokens]
    if not compact or any(v is None for v in values):
        raise ConfigError(
            f"The provided float is in wrong format: {_show(text)} "
            '(a number, or one per channel like "[123.675,116.28,103.53]")'
        )
    floats = tuple(v for v in values if v is not None)
    return floats if bracketed else floats[0]


def _pair(text: str, names: tuple[str, ...], what: str, example: str) -> tuple[str, str]:
    target, colon, source = text.strip().upper().partition(":")
    if not colon or target not in names or source not in names:
        raise ConfigError(
            f"The provided {what} is in wrong format: {_show(text)} "
            f'(expected target:source, e.g. "{example}", each one of {", ".join(names)})'
        )
    return target, source


def parse_color_format(text: str) -> tuple[str, str]:
    """Parse a ``--color_format`` ``target:source`` such as ``"BGR:RGB"``: clients send
    ``source``, the model gets ``target``. Raises ConfigError."""
    return _pair(text, COLOR_FORMATS, "color format", "BGR:RGB")


def parse_precision(text: str) -> tuple[str, str]:
    """Parse a ``--precision`` ``target:source`` such as ``"UINT8:FP32"``: clients send
    ``target``, converted to ``source`` for the model. Raises ConfigError."""
    return _pair(text, PRECISIONS, "precision", "UINT8:FP32")


_FLAGS = ("mean", "scale", "color_format", "precision")


def _located_flag(flag: str, parse: Callable[[str], _T], text: str | None) -> _T | None:
    if text is None:
        return None
    try:
        return parse(text)
    except ConfigError as exc:
        raise ConfigError(f"--{flag}: couldn't parse {flag} parameter: {exc}") from None


def _scale(text: str) -> float | tuple[float, ...]:
    value = parse_mean_scale(text)
    if 0.0 in (value if isinstance(value, tuple) else (value,)):
        raise ConfigError(f"a scale value must not be zero, got {_show(text)}")
    return value


def _preprocess_flags(values: Mapping[str, str | None], layout: str | None) -> Preprocess | None:
    """The four flags as a ``Preprocess`` (``None`` if none is given).

    ``values`` maps each flag name without ``--`` to its text or ``None``; ``layout`` is the
    ``--layout`` text, which OVMS requires with any of them.
    """
    if all(values.get(flag) is None for flag in _FLAGS):
        return None
    for flag in _FLAGS:
        if values.get(flag) is not None and layout is None:
            raise ConfigError(f"--{flag} parameter requires --layout to be set")
    return Preprocess(
        mean=_located_flag("mean", parse_mean_scale, values.get("mean")),
        scale=_located_flag("scale", _scale, values.get("scale")),
        color_format=_located_flag("color_format", parse_color_format, values.get("color_format")),
        precision=_located_flag("precision", parse_precision, values.get("precision")),
    )
