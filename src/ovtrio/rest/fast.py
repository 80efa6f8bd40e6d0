"""A thin ASGI path for the hot REST route, in front of the Quart application.

``/v2/models/{name}[/versions/{n}]/infer`` (POST; other methods 406 as OVMS) is served here
without Quart's request and response objects, routing and context machinery; everything else
goes to the Quart app unchanged. Behaviour is the Quart app's: the same codec and data plane,
errors as ``{"error": ...}`` with the class's status and ``Connection: close`` after a POST
error, the body limit (413), the bearer-token check (``auth.require_bearer``), and a client that
disconnects cancels its inference (the body is read first, then the inference runs in a cancel
scope that hypercorn's ``http.disconnect`` cancels: ``_patches.hypercorn.DisconnectHook``).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import trio

from ..auth import require_bearer
from ..codecs import kserve_rest
from ..dataplane import DataPlane
from ..errors import (
    InvalidArgument,
    OvtrioError,
    PayloadTooLarge,
    Unauthenticated,
    UnsupportedMethod,
)
from ._server import DISCONNECT_HOOK, DisconnectHook

__all__ = ["FastPath"]

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]

# werkzeug's default converter takes any characters but "/"; <int:...> takes ASCII digits
_INFER = re.compile(r"/v2/models/([^/]+)(?:/versions/([0-9]+))?/infer")
_HEADER = b"inference-header-content-length"
_JSON = [(b"content-type", b"application/json")]


class FastPath:
    """ASGI app: the hot routes here, the rest to ``app`` (the Quart application)."""

    def __init__(
        self, app: App, dp: DataPlane, *, max_body_bytes: int, api_keys: tuple[str, ...] = ()
    ) -> None:
        self.app = app
        self.dp = dp
        self.max_body = max_body_bytes
        self.keys = [k.encode() for k in api_keys]
        self.active = 0
        """HTTP requests being handled (any route)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        self.active += 1
        try:
            path, method = scope["path"], scope["method"]
            match = _INFER.fullmatch(path)
            if match is None:
                await self.app(scope, receive, send)
            elif method == "POST":
                await self._infer(match, scope, receive, send)
            else:
                await _drain(receive, self.max_body)
                await _error(send, UnsupportedMethod("Unsupported method"), post=False)
        finally:
            self.active -= 1

    async def _infer(
        self, match: re.Match[str], scope: Scope, receive: Receive, send: Send
    ) -> None:
        try:
            if self.keys:
                try:
                    require_bearer(_header(scope, b"authorization") or b"", self.keys)
                except Unauthenticated:
                    await _drain(receive, self.max_body)
                    raise
            # Without hypercorn's hook (another ASGI server) a disconnect is not noticed.
            hook = scope.get("extensions", {}).get(DISCONNECT_HOOK) or DisconnectHook()
            body = await _read_body(scope, receive, self.max_body, hook)
            if body is None:
                return  # the client left before its body arrived
            raw_length = _header(scope, _HEADER)
            header_length: int | None = None
            if raw_length is not None:
                try:
                    header_length = int(raw_length)
                except ValueError:
                    raise InvalidArgument(
                        f"{kserve_rest.HEADER_LENGTH} header is not an integer:"
                        f" {raw_length.decode('latin-1')!r}"
                    ) from None
            name, version = match.group(1), match.group(2)
            req = kserve_rest.decode_infer_request(
                body,
                header_length,
                model_name=name,
                model_version=(int(version) or None) if version else None,
                max_elements=self.dp.max_tensor_elements,
                max_depth=self.dp.max_json_depth,
            )
            if hook.fired:
                return  # the client left: nothing to answer
            with trio.CancelScope() as cancel:
                hook.scope = cancel
                try:
                    resp = await self.dp.infer(req, api="KServe", interface="REST")
                finally:
                    hook.scope = None
            if cancel.cancelled_caught:
                return
            payload, json_length = kserve_rest.encode_infer_response(resp, req)
        except OvtrioError as exc:
            await _error(send, exc, post=True)
            return
        except Exception:
            log.exception("unexpected error serving POST %s", scope["path"])
            await _error(send, OvtrioError("Internal server error"), post=True)
            return
        if json_length is None:
            await _respond(send, 200, payload, _JSON)
        else:
            await _respond(
                send,
                200,
                payload,
                [
                    (b"content-type", b"application/octet-stream"),
                    (_HEADER, str(json_length).encode()),
                ],
            )


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope["headers"]:
        if key.lower() == name:
            return bytes(value)
    return None


async def _read_body(
    scope: Scope, receive: Receive, limit: int, hook: DisconnectHook
) -> bytes | bytearray | memoryview | None:
    """The whole body; None when the client disconnects first. A large body comes in one
    message, as a memoryview (``_patches.h11.BodyLane``). Messages hypercorn has already
    queued are taken without a scheduling round trip (``DisconnectHook.take``)."""
    declared = _header(scope, b"content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"Request body exceeds the limit of {limit} bytes")
    chunks: list[bytes | bytearray | memoryview] = []
    size = 0
    while True:
        message = hook.take() or await receive()
        if message["type"] == "http.disconnect":
            return None
        chunk = message.get("body", b"")
        if chunk:
            size += len(chunk)
            if size > limit:
                raise PayloadTooLarge(f"Request body exceeds the limit of {limit} bytes")
            chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def _drain(receive: Receive, limit: int) -> None:
    size = 0
    while size <= limit:
        message = await receive()
        if message["type"] != "http.request":
            return
        size += len(message.get("body", b""))
        if not message.get("more_body", False):
            return


async def _respond(
    send: Send, status: int, body: bytes | bytearray | memoryview, headers: list[Any]
) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [*headers, (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": bytes(body), "more_body": False})


async def _error(send: Send, exc: OvtrioError, *, post: bool) -> None:
    headers = list(_JSON)
    if post:
        headers.append((b"connection", b"close"))
    await _respond(send, exc.http_status, kserve_rest.encode_error(exc.message), headers)
