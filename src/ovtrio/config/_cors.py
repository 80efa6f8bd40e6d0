"""OVMS' CORS flags: ``--allowed_origins``, ``--allowed_methods``, ``--allowed_headers``,
``--allow_credentials``, parsed into a ``CorsConfig``.

As in OVMS, each list flag is one comma-separated string whose default is ``*``, and
``--allow_credentials`` defaults to false; none is a config.json key (OVMS' schema has none).
Spaces around items are dropped, and an empty value sends no header. Every item must be
an origin ``scheme://host[:port]``, ``null`` or ``*``; a method or header name is an HTTP token
or ``*``. A bare host such as ``example.com`` (OVMS takes it) is kept, and the server warns at
start that a browser's ``Origin``, which always has a scheme, never matches it.
"""

from __future__ import annotations

import re

from ._types import ConfigError, CorsConfig
from ._values import _show

_ORIGIN = re.compile(r"[a-z][a-z0-9+.-]*://[^\s/?#@,]+")
_BARE_HOST = re.compile(r"[^\s/?#@,:]+(:[0-9]+)?")
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # RFC 9110 token


def _items(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def _origins(text: str) -> tuple[str, ...]:
    origins = []
    for item in _items(text):
        origin = item.lower()
        if origin not in ("*", "null") and not (
            _ORIGIN.fullmatch(origin) or _BARE_HOST.fullmatch(origin)
        ):
            raise ConfigError(
                f"--allowed_origins: {_show(item)} is not an origin "
                '(expected scheme://host[:port] such as "https://example.com:8080", null or *)'
            )
        origins.append(origin)
    return tuple(dict.fromkeys(origins))


def _tokens(text: str, flag: str, what: str) -> tuple[str, ...]:
    tokens = _items(text)
    for token in tokens:
        if not _TOKEN.fullmatch(token):
            raise ConfigError(f"--{flag}: {_show(token)} is not {what} name or *")
    return tuple(dict.fromkeys(tokens))


def parse_cors(origins: str, methods: str, headers: str, credentials: bool) -> CorsConfig:
    """The four CORS flags' values as a ``CorsConfig``. Raises ConfigError."""
    return CorsConfig(
        allowed_origins=_origins(origins),
        allowed_methods=_tokens(methods, "allowed_methods", "an HTTP method"),
        allowed_headers=_tokens(headers, "allowed_headers", "a header"),
        allow_credentials=credentials,
    )
