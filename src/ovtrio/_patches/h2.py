"""Lanes for WINDOW_UPDATE and DATA frames in h2's receive path (h2 4.4.1, hyperframe 6.1.0).

``FrameLanes.receive_data``: WINDOW_UPDATE
    **What.** h2's ``H2Connection.receive_data``, except that a WINDOW_UPDATE frame next in
    the buffer is read from its 13 bytes in place, without a hyperframe ``Frame``, the
    frame-buffer iteration and the per-frame log line, when it is one of the two kinds a gRPC
    client sends after each answer: for the connection (the window grows, ``WindowUpdated``
    for stream 0, as h2 makes it) or for a stream the server has already closed (nothing
    happens, as in h2, where a forgotten stream costs a raised and caught
    ``StreamClosedError``). Every other frame, and any WINDOW_UPDATE that h2 would answer
    otherwise (an increment of 0 or with the reserved bit, an open or unknown stream, inside
    a header block), takes h2's own path; so do the connection's first bytes (the preface).
    **Why (measured).** gRPC core clients (tritonclient, grpcio, perf_analyzer) send both per
    answer. Instructions per call of ``scripts/grpc_call_cost.py`` (callgrind, fed 64 calls
    at a time): 971 k through h2's path, 914 k with the lane.
    **Upstream.** h2 parsing fixed-size control frames without building frame objects (or a
    cheaper ``FrameBuffer``/``_receive_frame`` per frame) makes this unneeded.

``FrameLanes.receive_data``: DATA
    **What.** A DATA frame (not padded, on a stream, outside a header block, within the
    frame size limit) is built here from its 9-byte header, and h2 receives it as it receives
    the frames it parses (``_receive_frame``: flow control, stream state, events, errors). A
    whole frame in the buffer is copied out once; one of at least ``LANE_FROM`` bytes whose
    body is still to come gets a buffer of its size (``DataLane``), filled from the reads
    that follow, or straight from the socket by the connection's read loop
    (``grpc._hosted``: ``recv_into``); the frame's data is then a view of that buffer, and
    the request message read from it stays a view (``TrioBuffer.read_view``).
    **Why (measured).** h2 copies a DATA frame's body three times (into its frame buffer, a
    slice of it, the frame's ``bytes``) and grpclib's buffer a fourth: for a 600 KB tensor
    (MobileNet-style over gRPC: one 602 KB DATA frame per request, read in 256 KiB pieces)
    ~15 % of the serving thread's CPU; and each small frame costs a frame-buffer iteration.
    **Upstream.** h2 receiving a DATA frame's body into a caller's buffer (or exposing the
    frame length still to come), and a zero-copy frame body in hyperframe.
"""

from __future__ import annotations

from typing import Any

import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.stream
import h2.utilities
import hyperframe.exceptions
import hyperframe.frame
import numpy as np

from ._pins import check_pin

__all__ = ["LANE_FROM", "DataLane", "FrameLanes", "install"]

LANE_FROM = 64 << 10
"""DATA frames at least this large whose body is still to come get a buffer of their size."""
_DATA = 0x00
_PADDED = 0x08
_WINDOW_UPDATE = 0x08
_FRAME_BYTES = 13
"""A WINDOW_UPDATE frame: a 9-byte header and a 4-byte increment."""
_RECV_WINDOW_UPDATE = h2.connection.ConnectionInputs.RECV_WINDOW_UPDATE
_CLOSED = h2.stream.StreamState.CLOSED


class DataLane:
    """A DATA frame's body, filled as it arrives (module doc)."""

    __slots__ = ("filled", "flags", "stream_id", "view")

    def __init__(self, stream_id: int, flags: int, size: int) -> None:
        self.stream_id = stream_id
        self.flags = flags
        self.view = np.empty(size, np.uint8).data  # pages exist once bytes arrive
        self.filled = 0

    @property
    def missing(self) -> memoryview:
        """The part of the buffer still to fill."""
        return self.view[self.filled :]

    def add(self, data: Any) -> memoryview:
        """Take what of ``data`` belongs to the frame; return the rest."""
        source = memoryview(data)
        take = min(len(source), len(self.view) - self.filled)
        self.view[self.filled : self.filled + take] = source[:take]
        self.filled += take
        return source[take:]


class FrameLanes(h2.connection.H2Connection):
    """A server-side ``H2Connection`` whose ``receive_data`` reads the gRPC clients'
    WINDOW_UPDATE frames without hyperframe and builds DATA frames without copying their
    bodies through h2's frame buffer (module doc)."""

    data_lane: DataLane | None = None
    """The DATA frame whose body is being filled; the read loop may fill ``missing`` itself,
    then call ``receive_data(b"")``."""

    def receive_data(self, data: Any) -> list[h2.events.Event]:
        buffer = self.incoming_buffer
        if buffer._preamble_len:  # the client preface: h2's path checks it
            return super().receive_data(data)
        events: list[h2.events.Event] = []
        try:
            lane = self.data_lane
            if lane is not None:
                data = lane.add(data)
                if lane.filled < len(lane.view):
                    return events
                self.data_lane = None
                laned = _data_frame(lane.stream_id, lane.flags, lane.view)
                events.extend(self._receive_frame(laned))
            buffer.add_data(data)
            buffer.max_frame_size = self.max_inbound_frame_size
            raw = buffer._data
            while True:
                if len(raw) >= 9 and not buffer._headers_buffer:
                    if (
                        raw[3] == _WINDOW_UPDATE
                        and len(raw) >= _FRAME_BYTES
                        and raw[2] == 4
                        and raw[1] == 0
                        and raw[0] == 0
                        and self._window_update(raw, events)
                    ):
                        continue
                    if raw[3] == _DATA and not raw[4] & _PADDED and self._data(raw, events):
                        if self.data_lane is not None:
                            break
                        continue
                frame = next(buffer, None)
                if frame is None:
                    break
                events.extend(self._receive_frame(frame))
        except hyperframe.exceptions.InvalidPaddingError as e:  # as h2's receive_data
            self._terminate_connection(h2.errors.ErrorCodes.PROTOCOL_ERROR)
            msg = "Received frame with invalid padding."
            raise h2.exceptions.ProtocolError(msg) from e
        except h2.exceptions.ProtocolError as e:
            self._terminate_connection(e.error_code)
            raise
        return events

    def _data(self, raw: bytearray, events: list[h2.events.Event]) -> bool:
        """Take the DATA frame at the start of ``raw`` (not padded, module doc): receive it
        if whole, else start its lane; False (nothing consumed) to leave it to h2."""
        length = int.from_bytes(raw[0:3], "big")
        stream_id = int.from_bytes(raw[5:9], "big") & 0x7FFFFFFF
        if not stream_id or length > self.max_inbound_frame_size:
            return False  # h2 refuses these
        end = 9 + length
        flags = raw[4]
        if len(raw) >= end:
            with memoryview(raw) as view:
                body = bytes(view[9:end])
            del raw[:end]
            events.extend(self._receive_frame(_data_frame(stream_id, flags, body)))
            return True
        if length < LANE_FROM:
            return False  # h2 waits for the rest in its buffer
        lane = DataLane(stream_id, flags, length)
        with memoryview(raw) as view:
            lane.add(view[9:])
        del raw[:]  # all of it was this frame's
        self.data_lane = lane
        return True

    def _window_update(self, raw: bytearray, events: list[h2.events.Event]) -> bool:
        """Handle the WINDOW_UPDATE frame at the start of ``raw`` as h2 would, consuming it;
        False (nothing consumed) when it is not one of the two kinds this lane takes."""
        increment = int.from_bytes(raw[9:13], "big")
        if not 0 < increment <= 0x7FFFFFFF:  # hyperframe refuses these (reserved bit too)
            return False
        stream_id = int.from_bytes(raw[5:9], "big") & 0x7FFFFFFF
        if stream_id:
            stream = self.streams.get(stream_id)
            if stream is None:
                # h2: a forgotten stream (odd: the client's, at most the highest it opened)
                # raises StreamClosedError, caught: no event. Any other: h2's path.
                if not stream_id & 1 or stream_id > self.highest_inbound_stream_id:
                    return False
            elif stream.state_machine.state is not _CLOSED:
                return False
        del raw[:_FRAME_BYTES]
        events.extend(self.state_machine.process_input(_RECV_WINDOW_UPDATE))
        if not stream_id:  # the connection's window grows; a closed stream's: nothing
            self.outbound_flow_control_window = h2.utilities.guard_increment_window(
                self.outbound_flow_control_window, increment
            )
            events.append(h2.events.WindowUpdated(stream_id=0, delta=increment))
        return True


def _data_frame(stream_id: int, flags: int, body: Any) -> hyperframe.frame.DataFrame:
    """The ``DataFrame`` hyperframe parses from an unpadded frame with this header and body."""
    frame = hyperframe.frame.DataFrame(stream_id)
    frame.parse_flags(flags)
    frame.data = body
    frame.body_len = len(body)
    return frame


def install() -> None:
    """Check the pins this module reads (it patches nothing: ``FrameLanes`` is used
    as a class by ``grpc._server``)."""
    check_pin("h2")
    check_pin("hyperframe")
