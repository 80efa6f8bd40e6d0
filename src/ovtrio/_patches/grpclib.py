"""Fixes for grpclib's server (grpclib 0.4.9): deadlines, streams, replies, compression, limits.

``DeadlineWrapper.start``
    **What.** A deadline already past marks the call cancelled before raising, so grpclib
    answers DEADLINE_EXCEEDED instead of logging "Timeout occurred" with a traceback and
    answering UNKNOWN; the remaining time is read once (no race).
    **Why (measured).** Deadlines of a few milliseconds under a soak answered UNKNOWN.
    **Upstream.** ``DeadlineWrapper.start`` setting ``self.cancelled = True`` before it raises.

``Handler.accept``
    **What.** A stream is released from its request task's done-callback too (once), not only
    from the handler's ``finally``.
    **Why (measured).** A call cancelled (RST_STREAM, an expired deadline) before its task
    first runs never enters that ``finally``; its stream stays in the connection's table,
    which every connection-level WINDOW_UPDATE walks (a soak fell from 466 to 269 req/s in 14
    minutes).
    **Upstream.** grpclib releasing the stream in a done-callback of the request task.

``_abort`` (grpclib.server)
    **What.** A reply grpclib answers before any handler runs with a gRPC status (an unknown
    method: UNIMPLEMENTED) is a proper trailers-only reply: one HEADERS frame, END_STREAM,
    with ``content-type: application/grpc`` beside ``:status 200``, ``grpc-status`` and
    ``grpc-message`` (gRPC's PROTOCOL-HTTP2.md, "Trailers-Only").
    **Why.** Without content-type, grpc-go and grpc-java report UNKNOWN ("malformed header:
    missing HTTP content-type") instead of the status sent.
    **Upstream.** grpclib's ``_abort`` adding ``content-type`` when the HTTP status is 200.

``request_handler`` (grpclib.server)
    **What.** Before grpclib's own, the request headers are checked, as a gRPC C++ server
    checks them while parsing them, before routing: a malformed ``grpc-timeout`` (more than
    8 digits too, as grpc-go) is INVALID_ARGUMENT, a client's mistake (gRPC C++ and grpc-go:
    INTERNAL; grpclib: UNKNOWN); a ``grpc-encoding`` other than identity, deflate and gzip
    is UNIMPLEMENTED with ``grpc-accept-encoding`` naming those three (the spec's answer).
    Both are trailers-only replies as above. The headers are kept on the stream
    (``headers``) for ``receive_message``, which reads ``grpc-encoding`` from them.
    **Why.** grpclib has no compression: tritonclient's ``compression_algorithm="gzip"`` and
    grpcio's ``compression=`` calls must get their answer.
    **Upstream.** grpclib decoding ``grpc-encoding`` (``Stream.recv_message``) and answering
    a malformed ``grpc-timeout`` with INVALID_ARGUMENT.

``receive_message``, ``send_reply``
    **What.** grpclib's message read, with the declared length checked against a limit
    before the body is read (RESOURCE_EXHAUSTED); a compressed message (gzip, deflate) is
    decompressed with the same limit on its decompressed size, never more than the limit
    (plus one byte) inflated into memory (RESOURCE_EXHAUSTED). A reply's initial headers
    announce ``grpc-accept-encoding``, as gRPC C++ servers' do; replies are not compressed,
    as gRPC C++ servers (OVMS) do not unless configured to. A unary reply that fits the
    stream's window and one frame is sent with its trailers (``grpc-status: 0``) in one pass
    through h2 and one write, with grpclib's bookkeeping (message counts, trailers sent)
    done as its ``send_message`` and ``send_trailing_metadata`` do; grpclib's send events are
    not dispatched (ovtrio listens to none).
    **Why.** grpclib has no message-size limit: it reads whatever length a message declares
    (up to 4 GiB); ``--grpc_max_message_bytes`` refuses before reading. A compressed message
    of a few kilobytes can inflate to gigabytes. The three separate sends of a reply each wait
    for the connection, build metadata and hand h2's output to the transport.
    **Upstream.** a max-receive-message-size option in ``grpclib.server.Server``; message
    compression in grpclib; a unary send that writes headers, message and trailers at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import struct
import time
import zlib
from collections.abc import Callable, Iterator
from typing import Any

import grpclib.server
import grpclib.utils
import h2.exceptions
from grpclib.const import Status
from grpclib.exceptions import GRPCError
from grpclib.metadata import encode_grpc_message

from ._pins import check_pin

__all__ = ["ACCEPT_ENCODING", "install", "receive_message", "send_reply"]

log = logging.getLogger(__name__)

_originals: dict[str, Any] = {}

_WBITS = {"gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}
"""Message encodings decompressed -> zlib's ``wbits`` (gRPC's deflate is zlib's format)."""
ACCEPT_ENCODING = "identity,deflate,gzip"
"""The encodings a request may use, announced in ``grpc-accept-encoding``."""
_TIMEOUT = re.compile(r"[0-9]{1,8}[HMSmun]")
"""A well-formed ``grpc-timeout``: at most 8 digits and a unit (PROTOCOL-HTTP2.md)."""
_OK_TRAILERS = (("grpc-status", "0"),)
"""The trailers of a reply sent with ``send_reply``'s single write."""
_INLINE_BYTES = 1 << 20
"""Compressed messages above this size are decompressed off the event loop's thread."""


@contextlib.contextmanager
def _deadline_start_marked(self: Any, deadline: Any) -> Iterator[None]:
    """grpclib's ``DeadlineWrapper.start``; a past deadline marks the call cancelled first."""
    timeout = deadline.time_remaining()
    if not timeout:
        self.cancelled = True
        raise TimeoutError("Deadline exceeded")

    def expire() -> None:
        self.cancel(TimeoutError("Deadline exceeded"))

    timer = asyncio.get_running_loop().call_later(timeout, expire)
    try:
        yield
    finally:
        timer.cancel()


def _accept_releasing(self: Any, stream: Any, headers: Any, release_stream: Any) -> None:
    """grpclib's ``Handler.accept``; the stream is released when its task is done, once."""
    released = False

    def release_once() -> None:
        nonlocal released
        if not released:
            released = True
            release_stream()

    _originals["Handler.accept"](self, stream, headers, release_once)
    task = self._tasks.get(stream)
    if task is not None:
        task.add_done_callback(lambda _task: release_once())


async def _abort_trailers_only(
    h2_stream: Any,
    h2_status: int,
    grpc_status: Status | None = None,
    grpc_message: str | None = None,
    extra: tuple[tuple[str, str], ...] = (),
) -> None:
    """grpclib's ``_abort``; a gRPC status (HTTP 200) goes out as a trailers-only reply."""
    headers = [(":status", str(h2_status))]
    if h2_status == 200:
        headers.append(("content-type", "application/grpc"))
    if grpc_status is not None:
        headers.append(("grpc-status", str(grpc_status.value)))
    if grpc_message is not None:
        headers.append(("grpc-message", encode_grpc_message(grpc_message)))
    headers.extend(extra)
    await h2_stream.send_headers(headers, end_stream=True)
    if h2_stream.closable:
        h2_stream.reset_nowait()


def _header_refusal(
    headers: list[tuple[str, str]],
) -> tuple[Status, str, tuple[tuple[str, str], ...]] | None:
    """Why the request headers are refused before any handler runs (module doc), or None."""
    for key, value in headers:
        if key == "grpc-timeout" and not _TIMEOUT.fullmatch(value):
            return Status.INVALID_ARGUMENT, f"Malformed grpc-timeout header: {value[:40]!r}", ()
        if key == "grpc-encoding" and value != "identity" and value not in _WBITS:
            return (
                Status.UNIMPLEMENTED,
                f"Message encoding {value[:40]!r} is not supported "
                f"(grpc-accept-encoding: {ACCEPT_ENCODING})",
                (("grpc-accept-encoding", ACCEPT_ENCODING),),
            )
    return None


async def _request_handler_checked(
    mapping: Any,
    stream: Any,
    headers: list[tuple[str, str]],
    codec: Any,
    status_details_codec: Any,
    dispatch: Any,
    release_stream: Callable[[], Any],
) -> None:
    """grpclib's ``request_handler``, after ``_header_refusal``; keeps the headers."""
    refusal = _header_refusal(headers)
    if refusal is None:
        stream.headers = headers
        await _originals["request_handler"](
            mapping, stream, headers, codec, status_details_codec, dispatch, release_stream
        )
        return
    status, message, extra = refusal
    try:
        await _abort_trailers_only(stream, 200, status, message, extra)
    except Exception as exc:  # the client is gone (stream or connection closed)
        log.debug("cannot answer %s: %r", status.name, exc)
    finally:
        release_stream()


def install() -> None:
    """Install the fixes (idempotent)."""
    check_pin("grpclib")
    if _originals:
        return
    _originals["DeadlineWrapper.start"] = grpclib.utils.DeadlineWrapper.start
    _originals["Handler.accept"] = grpclib.server.Handler.accept
    _originals["request_handler"] = grpclib.server.request_handler
    _originals["_abort"] = grpclib.server._abort
    grpclib.utils.DeadlineWrapper.start = _deadline_start_marked  # type: ignore[method-assign]
    grpclib.server.Handler.accept = _accept_releasing  # type: ignore[method-assign]
    grpclib.server.request_handler = _request_handler_checked  # type: ignore[assignment]
    grpclib.server._abort = _abort_trailers_only


def _decompress(data: bytes, encoding: str, max_bytes: int) -> bytes:
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


async def receive_message(stream: grpclib.server.Stream[Any, Any], max_bytes: int) -> bytes:
    """The request message's bytes, read only if its declared length is within ``max_bytes``;
    decompressed (``grpc-encoding``) within the same limit."""
    raw = stream._stream
    meta = await raw.recv_data(5)
    if len(meta) < 5:
        raise GRPCError(Status.INVALID_ARGUMENT, "Empty request: no message was sent")
    compressed, length = meta[0], struct.unpack(">I", meta[1:5])[0]
    if length > max_bytes:
        raise GRPCError(
            Status.RESOURCE_EXHAUSTED,
            f"Request message of {length} bytes exceeds the limit of {max_bytes} bytes "
            "(--grpc_max_message_bytes)",
        )
    encoding = "identity"
    if compressed:
        encoding = next((v for k, v in raw.headers or () if k == "grpc-encoding"), encoding)
        if encoding not in _WBITS:
            raise GRPCError(
                Status.INVALID_ARGUMENT,
                "A compressed message needs a grpc-encoding header (gzip or deflate)",
            )
    data: bytes = await raw.recv_data(length)
    if len(data) != length:
        raise GRPCError(Status.INVALID_ARGUMENT, "Truncated request message")
    raw.connection.messages_received += 1
    raw.connection.last_message_received = time.monotonic()
    if not compressed:
        return data
    if length <= _INLINE_BYTES:
        return _decompress(data, encoding, max_bytes)
    return await asyncio.to_thread(_decompress, data, encoding, max_bytes)


async def send_reply(stream: grpclib.server.Stream[Any, Any], reply: Any) -> None:
    """``reply`` after initial headers that announce ``grpc-accept-encoding``; a reply that
    fits the stream's flow-control window and one frame goes out with its OK trailers in one
    write (module doc)."""
    raw = stream._stream
    connection = raw.connection
    h2_conn = raw._h2_connection
    stream_id = raw.id
    assert stream_id is not None  # set when the request's headers arrived
    headers = [
        (":status", "200"),
        ("content-type", stream._content_type),
        ("grpc-accept-encoding", ACCEPT_ENCODING),
    ]
    body = stream._codec.encode(reply, stream._send_type)
    data = b"\0" + len(body).to_bytes(4, "big") + body
    await connection.write_ready.wait()
    if stream_id not in h2_conn.streams:  # as grpclib's send_headers: reset meanwhile
        raise h2.exceptions.StreamClosedError(stream_id)
    window = h2_conn.local_flow_control_window(stream_id)
    one_write = len(data) <= min(window, h2_conn.max_outbound_frame_size)
    if one_write:
        h2_conn.send_headers(stream_id, headers)
        h2_conn.send_data(stream_id, data)
        h2_conn.send_headers(stream_id, _OK_TRAILERS, end_stream=True)
        raw._transport.write(h2_conn.data_to_send())
        raw.data_sent += len(data)
        connection.data_sent += len(data)
        connection.data_send_process()
    else:  # grpclib's sends: they wait for the window; grpclib sends the trailers
        await raw.send_headers(headers)
        stream._send_initial_metadata_done = True
        await raw.send_data(data)
    stream._send_initial_metadata_done = True
    stream._send_message_done = True
    stream._messages_sent += 1
    connection.messages_sent += 1
    connection.last_message_sent = time.monotonic()
    stream._send_trailing_metadata_done = one_write
