"""Large request bodies straight into one buffer: hypercorn's read loop and h11's reader state.

``TCPServer._read_data`` and ``H11Protocol._create_stream``: the body lane
    **What.** A request body declared (``content-length``) at least one read large goes into a
    buffer of its size (``BodyLane``): what h11 has already parsed is copied there, the rest
    is read from the socket into it (``recv_into``), and the app gets the whole body as one
    ``http.request`` message holding a memoryview of that buffer. h11 still checks the framing:
    its ``ContentLengthReader._remaining`` is set to 0 (the body is here), then it sees the end
    of the message or the client's EOF. The buffer is allocated untouched (``numpy.empty``):
    a client that declares a large body and sends little costs address space, not memory.
    TLS connections fill the buffer from h11's events only. Reads are 120 KiB, not 64 KiB
    (below glibc's 128 KiB mmap threshold, so a read's buffer is no mmap). Bodies above the
    config's ``max_body_bytes`` (``set_max_body_bytes``) take the usual path (the app
    answers 413).
    **Why (measured).** A 600 KB body took ten 64 KiB reads, each copied into h11's buffer,
    out of it, into ``bytes``, queued to the app (a task switch) and joined at the end; 256
    KiB reads gave MobileNet-style bodies +7 % req/s but small requests -5 % (an mmap per read).
    **Upstream.** h11 exposing a "read the body into this buffer" API (or the declared length
    left to read), and hypercorn a receive-into path for ASGI bodies.

``READERS[CLIENT, IDLE]``: request heads without a regular expression per line
    **What.** A plain request head (h11's request line; header lines that need no unfolding;
    at most one content-length, of digits; no transfer-encoding; one Host header, or none
    for HTTP/1.0) is matched with one regular expression over all its header lines (h11's
    own patterns for names and values), and its ``Request`` built with the checks
    ``Request.__init__`` would repeat already done. Any other head goes through h11's own
    reader, which accepts or refuses it as before (tests/test_http1_heads.py compares both
    on a table of heads).
    **Why (measured).** h11 matches a pattern per header line (with a fold check and a
    ``groupdict`` each), then walks the headers twice more in ``Request.__init__``: ~7 % of a
    tiny REST request (``scripts/rest_call_cost.py``, py-spy).
    **Upstream.** the same in h11's ``maybe_read_from_IDLE_client`` (one pass over the head's
    header block; the ``Request`` built from what the reader checked).
"""

from __future__ import annotations

import math
import re
from typing import Any

import h11
import h11._headers
import h11._readers
import h11._util
import hypercorn.trio.tcp_server
import numpy as np
import trio
from hypercorn.events import Closed, RawData
from hypercorn.protocol.events import Body, EndBody, Event
from hypercorn.protocol.h11 import H11Protocol
from hypercorn.protocol.http_stream import HTTPStream
from hypercorn.trio.tcp_server import TCPServer

from .._ready import receive_ready
from ._heads import plain_header_items
from ._pins import check_pin
from .hypercorn import IdleTimer

__all__ = ["BodyLane", "install", "set_max_body_bytes"]

_originals: dict[str, Any] = {}

RECV_BYTES = 120 << 10
"""One socket read of a REST connection."""
_LANE_FROM = RECV_BYTES
"""Bodies declared at least this large take the lane (smaller ones arrive in one read)."""
_MAX_BODY_ATTR = "ovtrio_max_body_bytes"
_DEFAULT_MAX_BODY = 1 << 30


def set_max_body_bytes(config: Any, max_body_bytes: int) -> None:
    """The largest body the lane takes on connections served with hypercorn ``config``."""
    setattr(config, _MAX_BODY_ATTR, max_body_bytes)


def install() -> None:
    """Install the body lane, the 120 KiB reads and the request-head reader (idempotent)."""
    check_pin("h11")
    check_pin("hypercorn")
    if _originals:
        return
    _originals["READERS[CLIENT, IDLE]"] = h11._readers.READERS[h11.CLIENT, h11.IDLE]
    h11._readers.READERS[h11.CLIENT, h11.IDLE] = read_request_head
    _originals["MAX_RECV"] = hypercorn.trio.tcp_server.MAX_RECV
    _originals["TCPServer._read_data"] = TCPServer._read_data
    _originals["H11Protocol._create_stream"] = H11Protocol._create_stream
    hypercorn.trio.tcp_server.MAX_RECV = RECV_BYTES
    TCPServer._read_data = _read_data  # type: ignore[method-assign]
    H11Protocol._create_stream = _create_stream  # type: ignore[method-assign]


_TOKEN = rb"[-!#$%&'*+.^_`|~0-9a-zA-Z]+"
_VALUE = rb"(?:[^\x00\s]+(?:[ \t]+[^\x00\s]+)*)?"
_FIELD = re.compile(rb"(" + _TOKEN + rb"):[ \t]*(" + _VALUE + rb")[ \t]*\n")
"""One header line as h11's ``header_field`` reads it (names and values its own patterns),
ended by the LF the lines are joined with."""
_FIELDS = re.compile(rb"(?:" + _TOKEN + rb":[ \t]*" + _VALUE + rb"[ \t]*\n)*")


def read_request_head(buf: Any) -> h11.Request | None:
    """h11's ``maybe_read_from_IDLE_client`` with plain heads read here (module doc)."""
    lines = buf.maybe_extract_lines()
    if lines is None:
        if buf.is_next_line_obviously_invalid_request_line():
            raise h11.LocalProtocolError("illegal request line")
        return None
    if not lines:
        raise h11.LocalProtocolError("no request line received")
    request = _plain_request(lines)
    if request is None:  # h11's own reading: it accepts, or raises the error it always has
        readers = h11._readers
        matches = h11._util.validate(
            readers.request_line_re, lines[0], "illegal request line: {!r}", lines[0]
        )
        headers = list(readers._decode_header_lines(lines[1:]))
        return h11.Request(headers=headers, _parsed=True, **matches)
    return request


def _plain_request(lines: list[bytearray]) -> h11.Request | None:
    """The ``Request`` h11 reads from a plain head (its request line, header lines that
    need no unfolding, at most one plain content-length, no transfer-encoding, the Host
    headers HTTP/1.1 asks for); None for any other head."""
    line = h11._readers.request_line_re.fullmatch(lines[0])
    if line is None:
        return None
    block = b"\n".join(lines[1:]) + b"\n" if len(lines) > 1 else b""
    if _FIELDS.fullmatch(block) is None:
        return None
    items = plain_header_items(_FIELD.findall(block))
    if items is None:
        return None
    hosts = sum(1 for _, lower, _ in items if lower == b"host")
    version = line["http_version"]
    if hosts > 1 or (hosts == 0 and version == b"1.1"):
        return None
    # what Request.__init__ sets once it has checked what is checked above
    request = object.__new__(h11.Request)
    object.__setattr__(request, "method", line["method"])
    object.__setattr__(request, "target", line["target"])
    object.__setattr__(request, "http_version", version)
    object.__setattr__(request, "headers", h11._headers.Headers(items))
    return request


async def _read_data(self: Any) -> None:
    """hypercorn's read loop, which also fills a ``BodyLane`` from the socket."""
    stream = self.stream
    timeout = self.config.read_timeout or math.inf
    plain = type(stream) is trio.SocketStream
    streak = 0
    try:
        while True:
            try:
                if plain:  # without trio's scheduling round trip when data is there
                    data, streak = await receive_ready(stream.socket, RECV_BYTES, streak, timeout)
                else:
                    with trio.fail_after(timeout):
                        data = await stream.receive_some(RECV_BYTES)
            except (trio.ClosedResourceError, trio.BrokenResourceError, trio.TooSlowError):
                break
            await self.protocol.handle(RawData(bytes(data)))
            if data == b"":
                break
            protocol = self.protocol.protocol
            lane = getattr(protocol, "_ovtrio_lane", None)
            if lane is None or not isinstance(stream, trio.SocketStream):
                continue
            connection = protocol.connection
            reader = connection._reader
            if len(connection._receive_buffer) or reader._remaining != lane.missing:
                continue  # h11 holds bytes of its own: leave the framing to it
            try:
                ended = not await lane.fill(stream.socket, timeout)
            except (OSError, trio.TooSlowError, trio.ClosedResourceError):
                break  # as receive_some's errors above (an early answer closed the socket)
            if ended:  # the client's EOF in the body: h11 answers it as without the lane
                await self.protocol.handle(RawData(b""))
                break
            reader._remaining = 0  # h11: the body is here, the end of the message next
            lane = None  # else held while the loop waits for the next request (a whole body)
            await protocol._handle_events()
        await self.protocol.handle(Closed())
    finally:  # the connection is over: its idle timer too
        idle = self.idle_task
        if isinstance(idle, IdleTimer):
            idle.close()


class BodyLane:
    """One request body read into a buffer of its declared size (module doc)."""

    __slots__ = ("filled", "view")

    def __init__(self, size: int) -> None:
        self.view = np.empty(size, np.uint8).data
        self.filled = 0

    @property
    def missing(self) -> int:
        return len(self.view) - self.filled

    def add(self, data: bytes | bytearray) -> None:
        end = self.filled + len(data)
        self.view[self.filled : end] = data
        self.filled = end

    async def fill(self, sock: trio.socket.SocketType, per_read_s: float) -> bool:
        """Read the rest from ``sock``; False at the client's EOF before the end.

        ``per_read_s`` bounds each wait for data, as hypercorn's read timeout does (a slow
        upload that keeps sending is not cut off): not a deadline on the whole call."""
        view = self.view
        while self.filled < len(view):
            with trio.fail_after(per_read_s):
                got = await sock.recv_into(view[self.filled :])
            if not got:
                return False
            self.filled += got
        return True


async def _create_stream(self: Any, request: h11.Request) -> None:
    """hypercorn's ``H11Protocol._create_stream``; a large declared body takes a lane."""
    await _originals["H11Protocol._create_stream"](self, request)
    self._ovtrio_lane = None
    stream = self.stream
    reader = getattr(self.connection, "_reader", None)
    max_body = getattr(self.config, _MAX_BODY_ATTR, _DEFAULT_MAX_BODY)
    if (
        not isinstance(stream, HTTPStream)
        or stream.app_put is None
        or type(reader) is not h11._readers.ContentLengthReader
        or not _LANE_FROM <= reader._remaining <= max_body
        or self.connection.they_are_waiting_for_100_continue
    ):
        return
    lane: BodyLane | None = BodyLane(reader._remaining)
    self._ovtrio_lane = lane
    handle = stream.handle

    async def lane_handle(event: Event) -> None:
        nonlocal lane
        if lane is not None and self._ovtrio_lane is lane:
            if isinstance(event, Body):
                lane.add(event.data)
                return
            # Let go of the buffer: a kept-alive connection holds its last stream (and this
            # handler) until its next request.
            view, lane, self._ovtrio_lane = lane.view, None, None
            if isinstance(event, EndBody):
                if not stream.closed:
                    body: Any = {"type": "http.request", "body": view, "more_body": False}
                    await stream.app_put(body)
                return
            # the stream closes first: the client left
        await handle(event)

    stream.handle = lane_handle  # type: ignore[method-assign]
