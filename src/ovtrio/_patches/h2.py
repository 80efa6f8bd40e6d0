"""A lane for WINDOW_UPDATE frames in h2's receive path (h2 4.4.1, hyperframe 6.1.0).

``WindowUpdateLane.receive_data``
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

from ._pins import check_pin

__all__ = ["WindowUpdateLane", "install"]

_WINDOW_UPDATE = 0x08
_FRAME_BYTES = 13
"""A WINDOW_UPDATE frame: a 9-byte header and a 4-byte increment."""
_RECV_WINDOW_UPDATE = h2.connection.ConnectionInputs.RECV_WINDOW_UPDATE
_CLOSED = h2.stream.StreamState.CLOSED


class WindowUpdateLane(h2.connection.H2Connection):
    """A server-side ``H2Connection`` whose ``receive_data`` reads the gRPC clients'
    WINDOW_UPDATE frames without hyperframe (module doc)."""

    def receive_data(self, data: Any) -> list[h2.events.Event]:
        buffer = self.incoming_buffer
        if buffer._preamble_len:  # the client preface: h2's path checks it
            return super().receive_data(data)
        events: list[h2.events.Event] = []
        buffer.add_data(data)
        buffer.max_frame_size = self.max_inbound_frame_size
        raw = buffer._data
        try:
            while True:
                if (
                    len(raw) >= _FRAME_BYTES
                    and raw[3] == _WINDOW_UPDATE
                    and raw[2] == 4
                    and raw[1] == 0
                    and raw[0] == 0
                    and not buffer._headers_buffer
                    and self._window_update(raw, events)
                ):
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


def install() -> None:
    """Check the pins this module reads (it patches nothing: ``WindowUpdateLane`` is used
    as a class by ``grpc._server``)."""
    check_pin("h2")
    check_pin("hyperframe")
