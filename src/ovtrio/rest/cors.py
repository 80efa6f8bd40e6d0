"""CORS for every REST answer: an ASGI middleware in front of the fast path and Quart.

As OVMS: ``OPTIONS`` on any path is answered here, 200 with an empty body, without
authentication (a browser's preflight carries no credentials), and every answer (success,
4xx/5xx, the binary extension's) carries ``Access-Control-Allow-Origin``, ``-Methods``,
``-Headers`` from the flags, and ``-Credentials: true`` with ``--allow_credentials``.

Where OVMS copies each flag into its header verbatim, ovtrio makes the value one a browser
accepts: a list of origins answers only a listed ``Origin``, echoed with ``Vary: Origin`` (a
header holding several origins is refused by browsers), and other origins get no
``Access-Control-Allow-Origin``; ``*`` with credentials echoes the request's ``Origin``
(browsers refuse ``*`` with credentials); a preflight under ``*`` methods or headers is
answered with what it asks for (``*`` does not cover ``Authorization``, nor anything when
credentials are sent). ``Access-Control-Expose-Headers: inference-header-content-length``
lets a page read the binary extension's answers.

The headers are built once; per request the middleware looks at ``Origin`` only when the
answer depends on it.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

from ..config import CorsConfig
from .fast import App, Receive, Scope, Send

__all__ = ["Cors"]

Header = tuple[bytes, bytes]

_ALLOW_ORIGIN = b"access-control-allow-origin"
_ALLOW_METHODS = b"access-control-allow-methods"
_ALLOW_HEADERS = b"access-control-allow-headers"
_REQUEST_METHOD = b"access-control-request-method"
_REQUEST_HEADERS = b"access-control-request-headers"
_VARY_ORIGIN = (b"vary", b"Origin")
_EXPOSE = (b"access-control-expose-headers", b"inference-header-content-length")
_PREFLIGHT = [(b"content-type", b"application/json"), (b"content-length", b"0")]
"""OVMS' preflight answer: 200, an empty body, its usual content type."""


def _list(values: tuple[str, ...]) -> bytes | None:
    return ",".join(values).encode() if values else None


class Cors:
    """ASGI middleware: CORS headers on ``app``'s answers, and the answer to ``OPTIONS``."""

    def __init__(self, app: App, config: CorsConfig) -> None:
        self.app = app
        self._any_origin = "*" in config.allowed_origins
        self._origins = frozenset(o.encode() for o in config.allowed_origins)
        self._echo = bool(config.allowed_origins) and (
            config.allow_credentials or not self._any_origin
        )
        """Whether ``Access-Control-Allow-Origin`` depends on the request's ``Origin``."""
        self._star: list[Header] = [(_ALLOW_ORIGIN, b"*")] if self._any_origin else []
        credentials = [(b"access-control-allow-credentials", b"true")]
        self._credentials: list[Header] = credentials if config.allow_credentials else []
        self._methods = _list(config.allowed_methods)
        self._any_method = "*" in config.allowed_methods
        self._headers = _list(config.allowed_headers)
        self._any_header = "*" in config.allowed_headers
        self._rest: list[Header] = [*self._credentials, _EXPOSE]
        if self._methods is not None:
            self._rest.append((_ALLOW_METHODS, self._methods))
        if self._headers is not None:
            self._rest.append((_ALLOW_HEADERS, self._headers))
        self._static = [*self._star, *self._rest]
        """The headers of every answer when they do not depend on ``Origin``."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["method"] == "OPTIONS":
            await _drain(receive)
            headers = [*_PREFLIGHT, *self._origin(scope), *self._credentials, *self._asked(scope)]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            return
        extra = [*self._origin(scope), *self._rest] if self._echo else self._static

        async def send_with_cors(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message["headers"], *extra]
            await send(message)

        await self.app(scope, receive, send_with_cors)

    def _origin(self, scope: Scope) -> list[Header]:
        """``Access-Control-Allow-Origin`` (if the origin is allowed) and ``Vary``."""
        if not self._echo:
            return self._star
        origin = _header(scope, b"origin")
        if origin is None:  # not a browser: "*" if any origin is allowed
            return [*self._star, _VARY_ORIGIN]
        if self._any_origin or origin.lower() in self._origins:
            return [(_ALLOW_ORIGIN, origin), _VARY_ORIGIN]
        return [_VARY_ORIGIN]

    def _asked(self, scope: Scope) -> list[Header]:
        """A preflight's ``Access-Control-Allow-Methods`` and ``-Headers``: under ``*``, what
        the preflight asks for."""
        headers = []
        for name, value, anything, asked in (
            (_ALLOW_METHODS, self._methods, self._any_method, _REQUEST_METHOD),
            (_ALLOW_HEADERS, self._headers, self._any_header, _REQUEST_HEADERS),
        ):
            if anything:
                value = _header(scope, asked) or value
            if value is not None:
                headers.append((name, value))
        return headers


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope["headers"]:
        if key.lower() == name:
            return bytes(value)
    return None


async def _drain(receive: Receive) -> None:
    """Read and drop a request body, so the connection stays usable after the answer."""
    while True:
        message = await receive()
        if message["type"] != "http.request" or not message.get("more_body", False):
            return
