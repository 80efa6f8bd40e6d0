"""_patches.h2.FrameLanes answers every WINDOW_UPDATE and DATA frame as h2 does.

Each case feeds the same bytes to h2's own server connection and to the lanes, and compares
what each returns or raises (a DATA frame's data by content: the lanes may hand a view), what
each would send, the windows and the streams' states.
"""

from __future__ import annotations

import itertools
from typing import Any

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings
import hyperframe.frame
import pytest

from ovtrio._patches.h2 import LANE_FROM, DataLane, FrameLanes

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
    servers = [h2.connection.H2Connection(_config(False)), FrameLanes(_config(False))]
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


def _counting(lane: Any, taken: list[bool]) -> Any:
    """``lane`` (a ``FrameLanes`` method taking the frame at the start of the buffer),
    noting in ``taken`` whether it took each frame it was offered."""

    def counting(self: FrameLanes, raw: bytearray, events: list[Any]) -> bool:
        size = len(raw)
        try:
            taken.append(lane(self, raw, events))
        except h2.exceptions.ProtocolError:
            taken.append(len(raw) < size)  # taken, then refused as h2 refuses it
            raise
        return taken[-1]

    return counting


@pytest.mark.parametrize("name", list(CASES))
def test_the_lane_takes_what_it_should(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The lane reads the frames meant for it and leaves every other one to h2."""
    chunks, laned = CASES[name]
    taken: list[bool] = []
    server = _pair()[1]
    monkeypatch.setattr(FrameLanes, "_window_update", _counting(FrameLanes._window_update, taken))
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


def _data(stream_id: int, body: bytes, *, end: bool = False, pad: int = 0, size: int = -1) -> bytes:
    """A DATA frame (``size``: the length its header declares, if not the body's)."""
    frame = hyperframe.frame.DataFrame(stream_id or 1)
    frame.data = body
    if end:
        frame.flags.add("END_STREAM")
    if pad:
        frame.flags.add("PADDED")
        frame.pad_length = pad
    raw = bytearray(frame.serialize())
    raw[5:9] = stream_id.to_bytes(4, "big")
    if size >= 0:
        raw[0:3] = size.to_bytes(3, "big")
    return bytes(raw)


def _open_pair(window: int = 1 << 20) -> list[h2.connection.H2Connection]:
    """``_pair`` with the servers' windows and frame size raised, as ovtrio's server does."""
    servers = _pair()
    for server in servers:
        server.update_settings(
            {
                h2.settings.SettingCodes.MAX_FRAME_SIZE: 1 << 20,
                h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: window,
            }
        )
        server.increment_flow_control_window(window)
        server.data_to_send()
        server.receive_data(hyperframe.frame.SettingsFrame(0, flags=["ACK"]).serialize())
        assert server.max_inbound_frame_size == 1 << 20
        assert server.streams[3].inbound_flow_control_window == window
    return servers


_BIG = bytes(range(256)) * (3 * LANE_FROM // 256)  # beyond LANE_FROM: a lane when split


def _pieces(data: bytes, *cuts: int) -> list[bytes]:
    edges = [0, *cuts, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(edges)]


DATA_CASES: dict[str, list[bytes]] = {
    "a small frame": [_data(3, b"abc")],
    "a small frame ending the stream": [_data(3, b"abc", end=True)],
    "an empty frame ending the stream": [_data(3, b"", end=True)],
    "two frames and a WINDOW_UPDATE in one read": [
        _data(3, b"a") + _window_update(0, 9) + _data(3, b"bc", end=True)
    ],
    "a padded frame (h2's path)": [_data(3, b"abc", pad=4)],
    "stream 0": [_data(0, b"abc")],
    "a closed stream": [_data(1, b"abc")],
    "an idle stream": [_data(5, b"abc")],
    "a frame beyond the frame size": [_data(3, b"x" * 10, size=(1 << 20) + 1)],
    "inside a header block": [_headers_without_end(7) + _data(3, b"abc")],
    "a large frame in one read": [_data(3, _BIG, end=True)],
    "a large frame in three reads": _pieces(_data(3, _BIG, end=True), 100_000, 150_000),
    "a large frame, its header alone first": _pieces(_data(3, _BIG), 9, 70_000),
    "a large frame with the next frames behind it": _pieces(
        _data(3, _BIG) + _window_update(0, 5) + _data(3, b"z", end=True), 50_000
    ),
    "two large frames back to back": _pieces(
        _data(3, _BIG) + _data(3, _BIG, end=True), 50_000, len(_BIG) + 20, len(_BIG) + 90_000
    ),
    "a large frame on a closed stream": _pieces(_data(1, _BIG), 50_000),
    "a frame beyond the stream's window": _pieces(_data(3, _BIG + _BIG), 50_000),
}


@pytest.mark.parametrize("name", list(DATA_CASES))
def test_data_frames_are_received_as_h2_receives_them(name: str) -> None:
    chunks = DATA_CASES[name]
    window = len(_BIG) + 1000 if name == "a frame beyond the stream's window" else 1 << 20
    answers, states = [], []
    for server in _open_pair(window):
        answers.append(_feed(server, chunks))
        states.append(_state(server))
    assert answers[1] == answers[0]
    assert states[1] == states[0]


def test_a_lane_is_filled_by_its_reader_then_received() -> None:
    """The read loop may fill the lane's buffer itself, then feed nothing to finish it."""
    frame = _data(3, _BIG, end=True)
    h2s, lanes = _open_pair()
    expected = _feed(h2s, [frame])
    assert isinstance(lanes, FrameLanes)
    assert lanes.receive_data(frame[:1000]) == []
    lane = lanes.data_lane
    assert lane is not None
    rest = memoryview(frame)[1000:]
    lane.missing[: len(rest)] = rest
    lane.filled += len(rest)
    got = _feed(lanes, [b""])
    assert got == expected
    assert lanes.data_lane is None
    data = [e for e in lanes.receive_data(b"")]
    assert data == []


LANES = {  # name: (DATA frames the lanes build themselves, of which through a DataLane)
    "a small frame": (1, 0),
    "a small frame ending the stream": (1, 0),
    "an empty frame ending the stream": (1, 0),
    "two frames and a WINDOW_UPDATE in one read": (2, 0),
    "a padded frame (h2's path)": (0, 0),
    "stream 0": (0, 0),
    "a closed stream": (1, 0),
    "an idle stream": (1, 0),
    "a frame beyond the frame size": (0, 0),
    "inside a header block": (0, 0),
    "a large frame in one read": (1, 0),
    "a large frame in three reads": (1, 1),
    "a large frame, its header alone first": (1, 1),
    "a large frame with the next frames behind it": (2, 1),
    "two large frames back to back": (2, 2),
    "a large frame on a closed stream": (1, 1),
    "a frame beyond the stream's window": (1, 1),
}


@pytest.mark.parametrize("name", list(DATA_CASES))
def test_the_data_lane_takes_what_it_should(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    built: list[bool] = []
    laned: list[Any] = []
    lane_init = DataLane.__init__

    def counting_lanes(self: DataLane, *args: Any) -> None:
        laned.append(args)
        lane_init(self, *args)

    server = _open_pair()[1]
    monkeypatch.setattr(FrameLanes, "_data", _counting(FrameLanes._data, built))
    monkeypatch.setattr(DataLane, "__init__", counting_lanes)
    _feed(server, DATA_CASES[name])
    assert (built.count(True), len(laned)) == LANES[name]
