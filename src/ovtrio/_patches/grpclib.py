"""grpclib's protocol (grpclib 0.4.9) serving unary calls from trio tasks.

ovtrio keeps grpclib's HTTP/2 protocol (``H2Protocol``, ``EventsProcessor``, its streams and
flow control) and replaces its request handler: ``grpc._unary`` runs each call as a trio task
instead of an asyncio task running ``grpclib.server.request_handler``. The functions here are
that handler's access to grpclib's stream; they read and write its private attributes, so they
live here, with grpclib pinned. Nothing in grpclib is replaced (``install`` only checks the pin).

``CallConnection``, ``CallStream``, ``TrioBuffer``, ``CallEventsProcessor``
    **What.** A call's stream (made by the connection's ``create_stream``) whose receive
    buffer a trio task reads: grpclib's ``EventsProcessor`` adds the DATA it receives
    (``add``, ``eof``) as to its own ``Buffer``, and a read acknowledges (flow control) what
    arrived, as grpclib's does; the stream's asyncio events are made only if used, and a
    connection-level WINDOW_UPDATE wakes only the streams that made one (grpclib's processor
    walks every stream of the connection for each: gRPC core clients send one per call).
    **Why (measured).** grpclib's buffer is an ``asyncio.Queue`` read by an asyncio task; a
    call served by one trio task, with no asyncio task, future or second trio task per call
    and no ``Wrapper``/``DeadlineWrapper``, costs the server less CPU per tiny request (the
    A/B is in the commit that made the switch).
    **Upstream.** A server handler API in grpclib that is not bound to asyncio tasks (none
    planned); until then this stands in for ``grpclib.server.Handler`` and ``request_handler``.

``receive_message``
    **What.** The request message read with the declared length checked against a limit
    before the body is read (RESOURCE_EXHAUSTED); a compressed message (gzip, deflate) is
    decompressed with the same limit on its decompressed size, never more than the limit (plus
    one byte) inflated into memory (RESOURCE_EXHAUSTED).
    **Why.** grpclib has no message-size limit (it reads whatever length a message declares,
    up to 4 GiB) and no compression: tritonclient's ``compression_algorithm="gzip"`` and
    grpcio's ``compression=`` calls must get their answer; a few compressed kilobytes can
    inflate to gigabytes.
    **Upstream.** A max-receive-message-size option and message compression in grpclib.

``send_reply``, ``send_status``
    **What.** A unary reply that fits the stream's window and one frame goes out with its
    initial headers (announcing ``grpc-accept-encoding``, as gRPC C++ servers do) and OK
    trailers in one pass through h2 and one write; a larger one goes through grpclib's own
    sends (``send_large_reply``, an asyncio coroutine: they wait for flow-control windows).
    An error is a trailers-only reply when no headers were sent (one HEADERS frame with
    ``content-type`` beside ``:status 200``, ``grpc-status`` and ``grpc-message``, gRPC's
    PROTOCOL-HTTP2.md "Trailers-Only"), trailers otherwise; a stream the client has not
    finished is then reset (NO_ERROR), as grpclib does. Replies are not compressed (gRPC
    C++ servers, OVMS among them, do not unless configured to).
    **Why.** Without content-type in a trailers-only reply, grpc-go and grpc-java report
    UNKNOWN ("malformed header: missing HTTP content-type") instead of the status sent;
    grpclib's three separate sends of a reply each wait for the connection, build metadata
    and hand h2's output to the transport.
    **Upstream.** grpclib's ``_abort`` adding ``content-type`` when the HTTP status is 200;
    a unary send that writes headers, message and trailers at once.
"""

from __future__ import annotations

import asyncio
import functools
import struct
import time
import weakref
import zlib
from collections import deque
from typing import Any

import grpclib.protocol
import h2.errors
import h2.exceptions
import trio
from grpclib.const import Status
from grpclib.exceptions import GRPCError
from grpclib.metadata import encode_grpc_message
from h2.events import WindowUpdated

from ._pins import check_pin

__all__ = [
    "ACCEPT_ENCODING",
    "CONTENT_TYPE",
    "CallConnection",
    "CallEventsProcessor",
    "CallStream",
    "TrioBuffer",
    "install",
    "receive_message",
    "send_large_reply",
    "send_reply",
    "send_status",
]

_WBITS = {"gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}
"""Message encodings decompressed -> zlib's ``wbits`` (gRPC's deflate is zlib's format)."""
ACCEPT_ENCODING = "identity,deflate,gzip"
"""The encodings a request may use, announced in ``grpc-accept-encoding``."""
CONTENT_TYPE = "application/grpc+proto"
"""The replies' content-type (grpclib's, for its protobuf codec)."""
_OK_TRAILERS = (("grpc-status", "0"),)
_INLINE_BYTES = 1 << 20
"""Compressed messages above this size are decompressed off trio's thread."""


def install() -> None:
    """Nothing of grpclib is replaced; its internals used here are those of the pinned version."""
    check_pin("grpclib")


class TrioBuffer:
    """A stream's received DATA, read by one trio task (module doc)."""

    __slots__ = ("_ack", "_chunks", "_eof", "_size", "_unacked", "_waiter")

    def __init__(self, ack: Any) -> None:
        self._ack = ack
        self._chunks: deque[memoryview] = deque()
        self._size = 0
        self._unacked = 0
        """Flow-controlled bytes received and not yet acknowledged (WINDOW_UPDATE)."""
        self._eof = False
        self._waiter: trio.lowlevel.Task | None = None

    # -- grpclib's EventsProcessor and release_stream call these -------------------------------

    def add(self, data: bytes, ack_size: int) -> None:
        self._chunks.append(memoryview(data))
        self._size += len(data)
        self._unacked += ack_size
        self._wake()

    def eof(self) -> None:
        self._eof = True
        self._wake()

    def unacked_size(self) -> int:
        return self._unacked

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            trio.lowlevel.reschedule(waiter)

    # -- the call's trio task -----------------------------------------------------------------

    async def read(self, size: int) -> bytes:
        """``size`` bytes, or fewer if the client ended the stream first. What arrived is
        acknowledged while the read waits, as grpclib's buffer does, so a message larger
        than the stream's window keeps coming."""
        return bytes(await self.read_view(size))

    async def read_view(self, size: int) -> bytes | memoryview:
        """``read``, but what lies in one received chunk comes as a view of it (no copy)."""
        while True:
            if self._unacked:
                self._ack(self._unacked)
                self._unacked = 0
            if self._size >= size or self._eof:
                break
            self._waiter = trio.lowlevel.current_task()

            def abort(_raise: Any) -> trio.lowlevel.Abort:
                self._waiter = None
                return trio.lowlevel.Abort.SUCCEEDED

            await trio.lowlevel.wait_task_rescheduled(abort)
        want = min(size, self._size)
        chunks = self._chunks
        parts: list[memoryview] = []
        got = 0
        while got < want:
            data = chunks[0]
            take = min(len(data), want - got)
            if take == len(data):
                chunks.popleft()
                parts.append(data)
            else:
                parts.append(data[:take])
                chunks[0] = data[take:]
            got += take
        self._size -= got
        if len(parts) == 1:
            return parts[0]
        return b"".join(parts)


class CallStream(grpclib.protocol.Stream):
    """grpclib's stream of a call served by a trio task: its buffer is a ``TrioBuffer``, and
    the asyncio events that only grpclib's own sends (or a client) wait on are made on first
    use; grpclib's ``Stream.__init__`` and ``init_stream`` less its asyncio queue."""

    def __init__(self, connection: grpclib.protocol.Connection, stream_id: int) -> None:
        self.connection = connection
        self._h2_connection = connection._connection
        self._transport = connection._transport
        self.wrapper = None
        self.id = stream_id
        self.buffer: TrioBuffer = TrioBuffer(functools.partial(_ack, connection, stream_id))  # type: ignore[assignment]
        connection.streams_started += 1
        self.created = connection.last_stream_created = time.monotonic()
        self.headers = None
        self.trailers = None

    @functools.cached_property
    def window_updated(self) -> asyncio.Event:  # type: ignore[override]
        connection = self.connection
        assert isinstance(connection, CallConnection)
        connection.window_waiters.add(self)
        return asyncio.Event()

    @functools.cached_property
    def headers_received(self) -> asyncio.Event:  # type: ignore[override]
        return asyncio.Event()

    @functools.cached_property
    def trailers_received(self) -> asyncio.Event:  # type: ignore[override]
        return asyncio.Event()


def _ack(connection: grpclib.protocol.Connection, stream_id: int, size: int) -> None:
    """grpclib's ``Connection.ack``, unless the connection is closing (grpclib's close drops
    its transport; a call's task may read what arrived in the same batch as the close)."""
    if not connection.is_closing():
        connection.ack(stream_id, size)


class CallConnection(grpclib.protocol.Connection):
    """grpclib's connection whose streams are ``CallStream``s."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.window_waiters: weakref.WeakSet[CallStream] = weakref.WeakSet()
        """The streams that made their ``window_updated`` event (grpclib's sends wait on it)."""

    def create_stream(
        self, *, stream_id: int | None = None, wrapper: Any = None
    ) -> grpclib.protocol.Stream:
        assert stream_id is not None  # a server's stream: made from the call's headers
        return CallStream(self, stream_id)


class CallEventsProcessor(grpclib.protocol.EventsProcessor):
    """grpclib's events processor; a connection's WINDOW_UPDATE wakes only the streams that
    made a ``window_updated`` event (grpclib's walked every stream of the connection, ~2 % of
    the thread's samples at 64 calls on one connection: clients send one per call)."""

    def process_window_updated(self, event: WindowUpdated) -> None:
        connection = self.connection
        if event.stream_id == 0 and isinstance(connection, CallConnection):
            for stream in list(connection.window_waiters):
                stream.window_updated.set()
            return
        super().process_window_updated(event)


def _decompress(data: bytes | memoryview, encoding: str, max_bytes: int) -> bytes:
    """``data`` inflated, refused once it inflates beyond ``max_bytes``."""
    inflater = zlib.decompressobj(_WBITS[encoding])
    try:
        out = inflater.decompress(data, max_bytes + 1)
    except zlib.error as exc:
        raise GRPCError(
            Status.INVALID_ARGUMENT, f"Cannot decompress the request message ({encoding}): {exc}"
        ) from None
    if len(out) > max_bytes:
        raise GRPCError(
            Status.RESOURCE_EXHAUSTED,
            f"Request message decompressed exceeds the limit of {max_bytes} bytes "
            "(--grpc_max_message_bytes)",
        )
    if not inflater.eof:
        raise GRPCError(
            Status.INVALID_ARGUMENT,
            f"Cannot decompress the request message ({encoding}): truncated",
        )
    return out


async def receive_message(
    stream: CallStream, encoding: str, max_bytes: int, *, view: bool = False
) -> bytes | memoryview:
    """The request message's bytes, read only if its declared length is within ``max_bytes``;
    decompressed (``encoding``: the request's ``grpc-encoding``) within the same limit.
    ``view``: an uncompressed message that arrived in one piece comes as a view of it."""
    buffer = stream.buffer
    meta = await buffer.read(5)
    if len(meta) < 5:
        raise GRPCError(Status.INVALID_ARGUMENT, "Empty request: no message was sent")
    compressed, length = meta[0], struct.unpack(">I", meta[1:5])[0]
    if length > max_bytes:
        raise GRPCError(
            Status.RESOURCE_EXHAUSTED,
            f"Request message of {length} bytes exceeds the limit of {max_bytes} bytes "
            "(--grpc_max_message_bytes)",
        )
    if compressed and encoding not in _WBITS:
        raise GRPCError(
            Status.INVALID_ARGUMENT,
            "A compressed message needs a grpc-encoding header (gzip or deflate)",
        )
    data = await (buffer.read_view(length) if view else buffer.read(length))
    if len(data) != length:
        raise GRPCError(Status.INVALID_ARGUMENT, "Truncated request message")
    connection = stream.connection
    connection.messages_received += 1
    connection.last_message_received = time.monotonic()
    if not compressed:
        return data
    if length <= _INLINE_BYTES:
        return _decompress(data, encoding, max_bytes)
    return await trio.to_thread.run_sync(_decompress, data, encoding, max_bytes)


def send_reply(stream: grpclib.protocol.Stream, body: bytes) -> bytes | None:
    """Send ``body`` as the call's reply message with OK trailers in one write, if it fits
    the stream's window and one frame and the connection takes writes now; else return the
    framed message for ``send_large_reply``. Raises ``StreamClosedError`` if the stream is
    gone (reset meanwhile)."""
    h2_conn = stream._h2_connection
    stream_id = stream.id
    assert stream_id is not None  # set when the request's headers arrived
    if not stream.closable:  # reset meanwhile, or the connection closed (GOAWAY, lost)
        raise h2.exceptions.StreamClosedError(stream_id)
    data = b"\0" + len(body).to_bytes(4, "big") + body
    connection = stream.connection
    window = h2_conn.local_flow_control_window(stream_id)
    if not connection.write_ready.is_set() or len(data) > min(
        window, h2_conn.max_outbound_frame_size
    ):
        return data
    h2_conn.send_headers(stream_id, _reply_headers())
    h2_conn.send_data(stream_id, data)
    h2_conn.send_headers(stream_id, _OK_TRAILERS, end_stream=True)
    stream._transport.write(h2_conn.data_to_send())
    _count_sent(stream, len(data))
    return None


def _reply_headers() -> list[tuple[str, str]]:
    return [
        (":status", "200"),
        ("content-type", CONTENT_TYPE),
        ("grpc-accept-encoding", ACCEPT_ENCODING),
    ]


def _count_sent(stream: grpclib.protocol.Stream, size: int) -> None:
    """grpclib's bookkeeping of a message sent in one write (its counters, keepalive)."""
    stream.data_sent += size
    connection = stream.connection
    connection.data_sent += size
    connection.data_send_process()
    _count_message(connection)


def _count_message(connection: grpclib.protocol.Connection) -> None:
    connection.messages_sent += 1
    connection.last_message_sent = time.monotonic()


async def send_large_reply(stream: grpclib.protocol.Stream, data: bytes) -> None:
    """grpclib's sends of headers, the framed message ``data`` and OK trailers, which wait
    for the connection and for flow-control windows (an asyncio coroutine)."""
    await stream.send_headers(_reply_headers())
    await stream.send_data(data)
    await stream.send_headers(list(_OK_TRAILERS), end_stream=True)
    _count_message(stream.connection)  # send_data counted the bytes


def send_status(
    stream: grpclib.protocol.Stream,
    status: Status | None,
    message: str | None = None,
    extra: tuple[tuple[str, str], ...] = (),
    http_status: int = 200,
) -> None:
    """Answer the call with ``status`` (not OK; None: an HTTP error alone): trailers-only if
    no headers were sent, trailers otherwise; then reset the stream if the client has not
    finished it. Does nothing if the stream or its connection is closed."""
    if not stream.closable:
        return
    h2_conn = stream._h2_connection
    stream_id = stream.id
    assert stream_id is not None  # set when the request's headers arrived
    h2_stream = h2_conn.streams[stream_id]
    headers: list[tuple[str, str]] = []
    if not h2_stream.state_machine.headers_sent:
        headers.append((":status", str(http_status)))
        if http_status == 200:
            headers.append(("content-type", CONTENT_TYPE))
    if status is not None:
        headers.append(("grpc-status", str(status.value)))
    if message is not None:
        headers.append(("grpc-message", encode_grpc_message(message)))
    headers.extend(extra)
    try:
        h2_conn.send_headers(stream_id, headers, end_stream=True)
        if not h2_stream.closed:
            h2_conn.reset_stream(stream_id, error_code=h2.errors.ErrorCodes.NO_ERROR)
    except h2.exceptions.ProtocolError:  # closed meanwhile, or our end already sent: no answer
        pass
    stream._transport.write(h2_conn.data_to_send())
    stream.connection.headers_send_process()
