"""_patches.h2.WindowUpdateLane answers every WINDOW_UPDATE as h2 does.

Each case feeds the same bytes to h2's own server connection and to the lane, and compares
what each returns or raises, what each would send, the windows and the streams' states.
"""

from __future__ import annotations

from typing import Any

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import hyperframe.frame
import pytest

from ovtrio._patches.h2 import WindowUpdateLane

_HEADERS = [
    (":method", "POST"),
    (":scheme", "http"),
    (":path", "/inference.GRPCInferenceService/ModelInfer"),
    (":authority", "x"),
    ("content-type", "application/grpc"),
]


def _config(client: bool) -> h2.config.H2Configuration:
    return h2.config.H2Configuration(client_side=client, header_encoding="ascii")


def _window_update(stream_id: int, increment: int, *, raw_bits: int = 0) -> bytes:
    """A WINDOW_UPDATE frame; ``raw_bits`` are or-ed into the increment (the reserved bit)."""
    frame = hyperframe.frame.WindowUpdateFrame(stream_id)
    frame.window_increment = increment or 1
    data = bytearray(frame.serialize())
    value = (increment | raw_bits).to_bytes(4, "big")
    data[9:13] = value
    return bytes(data)


def _start() -> tuple[bytes, h2.connection.H2Connection]:
    """A client's preface, stream 1 ended by both sides (closed), stream 3 open."""
    client = h2.connection.H2Connection(_config(True))
    client.initiate_connection()
    client.send_headers(1, _HEADERS, end_stream=True)
    client.send_headers(3, _HEADERS)
    return client.data_to_send(), client


def _pair() -> list[h2.connection.H2Connection]:
    preface, _ = _start()
    servers = [h2.connection.H2Connection(_config(False)), WindowUpdateLane(_config(False))]
    for server in servers:
        server.initiate_connection()
        server.receive_data(preface)
        server.send_headers(1, [(":status", "200")], end_stream=True)
        server.data_to_send()
    return servers


def _state(server: h2.connection.H2Connection) -> dict[str, Any]:
    return {
        "window": server.outbound_flow_control_window,
        "state": server.state_machine.state,
        "streams": {
            sid: (s.state_machine.state, s.outbound_flow_control_window)
            for sid, s in server.streams.items()
        },
        "sent": server.data_to_send(),
    }


def _feed(server: h2.connection.H2Connection, chunks: list[bytes]) -> list[Any]:
    out: list[Any] = []
    for chunk in chunks:
        try:
            events = server.receive_data(chunk)
        except Exception as exc:  # the error is part of the answer compared
            out.append(("raised", type(exc).__name__, str(exc)))
            break
        out.append([(type(e).__name__, sorted(vars(e).items())) for e in events])
    return out


def _headers_without_end(stream_id: int) -> bytes:
    frame = hyperframe.frame.HeadersFrame(stream_id)
    frame.data = b"\x82"  # :method GET, indexed
    return bytes(frame.serialize())  # no END_HEADERS: a header block goes on


CASES: dict[str, tuple[list[bytes], int]] = {
    # name: (the chunks fed after the start, how many WINDOW_UPDATEs the lane reads itself)
    "connection window grows": ([_window_update(0, 1000)], 1),
    "closed stream, still held": ([_window_update(1, 1000)], 1),
    "closed stream, forgotten": ([b"forget 1", _window_update(1, 1000)], 1),
    "open stream": ([_window_update(3, 1000)], 0),
    "idle stream": ([_window_update(5, 1000)], 0),
    "even stream never opened": ([_window_update(2, 1000)], 0),
    "zero increment, connection": ([_window_update(0, 0)], 0),
    "zero increment, closed stream": ([_window_update(1, 0)], 0),
    "reserved bit set": ([_window_update(0, 77, raw_bits=1 << 31)], 0),
    "connection window overflows": ([_window_update(0, 2**31 - 1)], 1),
    "inside a header block": ([_headers_without_end(7) + _window_update(0, 10)], 0),
    "several in one read, with a call": (
        [_window_update(1, 5) + _window_update(0, 5) + _window_update(3, 9)],
        2,
    ),
    "split across reads": (
        [
            _window_update(0, 300)[:7],
            _window_update(0, 300)[7:] + _window_update(1, 4)[:12],
            _window_update(1, 4)[12:],
        ],
        2,
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_the_lane_answers_as_h2(name: str) -> None:
    chunks, _ = CASES[name]
    answers, states = [], []
    for server in _pair():
        fed = []
        for chunk in chunks:
            if chunk == b"forget 1":
                server.streams.pop(1)
            else:
                fed.append(chunk)
        answers.append(_feed(server, fed))
        states.append(_state(server))
    assert answers[1] == answers[0]
    assert states[1] == states[0]


@pytest.mark.parametrize("name", list(CASES))
def test_the_lane_takes_what_it_should(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The lane reads the frames meant for it and leaves every other one to h2."""
    chunks, laned = CASES[name]
    taken: list[bool] = []
    original = WindowUpdateLane._window_update

    def counting(self: WindowUpdateLane, raw: bytearray, events: list[Any]) -> bool:
        size = len(raw)
        try:
            taken.append(original(self, raw, events))
        except h2.exceptions.ProtocolError:
            taken.append(len(raw) < size)  # consumed, then refused as h2 refuses it
            raise
        return taken[-1]

    server = _pair()[1]
    monkeypatch.setattr(WindowUpdateLane, "_window_update", counting)
    for chunk in chunks:
        if chunk == b"forget 1":
            server.streams.pop(1)
            continue
        try:
            server.receive_data(chunk)
        except h2.exceptions.ProtocolError:
            break
    assert taken.count(True) == laned, taken


def test_a_window_grown_by_the_lane_lets_a_blocked_reply_go() -> None:
    """The connection's window, grown by the lane, is what h2 sends against."""
    server = _pair()[1]
    server.send_headers(3, [(":status", "200")])
    while server.local_flow_control_window(3):
        server.send_data(3, b"x" * min(16384, server.local_flow_control_window(3)))
    assert server.local_flow_control_window(3) == 0
    events = server.receive_data(_window_update(0, 10) + _window_update(3, 10))
    assert [type(e) for e in events] == [h2.events.WindowUpdated, h2.events.WindowUpdated]
    assert server.local_flow_control_window(3) == 10
