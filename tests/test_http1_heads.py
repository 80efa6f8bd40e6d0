"""The HTTP/1.1 heads ovtrio builds and reads without h11's regular expressions are h11's:
``_patches.hypercorn._checked_response`` builds the answer's head h11 would build, or refuses
what h11 refuses (the same bytes on the wire for every header list); ``_patches.h11``'s
request-head reader gives the event h11's reader gives, or the same error."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

import h11
import pytest
from h11._readers import maybe_read_from_IDLE_client
from h11._receivebuffer import ReceiveBuffer

from ovtrio._patches.h11 import _plain_request, read_request_head
from ovtrio._patches.hypercorn import _checked_response

_BASE = [(b"content-type", b"application/json"), (b"content-length", b"12")]

CASES: dict[str, list[Any]] = {
    "plain": _BASE,
    "mixed-case name": [(b"Content-Type", b"text/plain"), (b"content-length", b"0")],
    "inner spaces and tabs": [*_BASE, (b"x-a", b"a b\tc")],
    "empty value": [*_BASE, (b"x-empty", b"")],
    "obs-text and controls h11 lets through": [*_BASE, (b"x-bin", b"\x80\xff\x01\x7f")],
    "every token byte": [*_BASE, (b"!#$%&'*+-.^_`|~09azAZ", b"1")],
    "carriage return": [*_BASE, (b"x-a", b"a\r\nx-injected: 1")],
    "line feed": [*_BASE, (b"x-a", b"a\nb")],
    "NUL": [*_BASE, (b"x-a", b"a\x00b")],
    "vertical tab": [*_BASE, (b"x-a", b"a\x0bb")],
    "form feed": [*_BASE, (b"x-a", b"a\x0cb")],
    "leading space": [*_BASE, (b"x-a", b" a")],
    "trailing tab": [*_BASE, (b"x-a", b"a\t")],
    "space in a name": [*_BASE, (b"x a", b"1")],
    "colon in a name": [*_BASE, (b"x:a", b"1")],
    "empty name": [*_BASE, (b"", b"1")],
    "str header": [*_BASE, ("x-str", "text")],
    "conflicting lengths": [*_BASE, (b"content-length", b"13")],
    "bad length": [(b"content-length", b"1x")],
    "equal lengths twice": [*_BASE, (b"Content-Length", b"12")],
    "a length list": [(b"content-length", b"12, 12")],
    "chunked": [(b"transfer-encoding", b"chunked")],
    "gzip transfer coding": [(b"transfer-encoding", b"gzip")],
    "no headers": [],
}


def _wire(make: Any) -> Any:
    """What an h11 server connection writes for the head ``make()`` builds, or the error."""
    conn = h11.Connection(h11.SERVER)
    conn.receive_data(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    conn.next_event()
    try:
        response = make()
    except h11.LocalProtocolError as exc:
        return ("refused", str(exc))
    return (list(response.headers.raw_items()), conn.send(response))


@pytest.mark.parametrize("name", list(CASES))
def test_the_head_is_h11_s(name: str) -> None:
    headers = CASES[name]
    ours = _wire(lambda: _checked_response(list(headers), 200))
    h11s = _wire(lambda: h11.Response(headers=list(headers), status_code=200))
    assert ours == h11s


@pytest.mark.parametrize("status", [200, 204, 404, 999, 1000, 199, HTTPStatus.OK])
def test_the_status_line_is_h11_s(status: int) -> None:
    ours = _wire(lambda: _checked_response(list(_BASE), status))
    h11s = _wire(lambda: h11.Response(headers=list(_BASE), status_code=status))
    assert ours == h11s


_POST = b"POST /v2/models/tiny/infer HTTP/1.1\r\nHost: 127.0.0.1:8000\r\nContent-Length: 16\r\n"

REQUESTS: dict[str, bytes] = {
    "tritonclient's": _POST + b"Accept-Encoding: identity\r\nInference-Header-Content-Length: 9"
    b"\r\nUser-Agent: Python-urllib3\r\nContent-Type: application/octet-stream\r\n\r\n",
    "curl's GET": b"GET /v2/health/ready HTTP/1.1\r\nHost: x\r\nUser-Agent: curl/8\r\nAccept: */*"
    b"\r\n\r\n",
    "bare LF line ends": b"GET / HTTP/1.1\nHost: x\nX-A: 1\n\n",
    "HTTP/1.0 without a host": b"GET / HTTP/1.0\r\n\r\n",
    "no host": b"GET / HTTP/1.1\r\nX-A: 1\r\n\r\n",
    "two hosts": b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
    "spaces and tabs around a value": _POST + b"X-A: \t a b\t c \t\r\n\r\n",
    "empty values": _POST + b"X-A:\r\nX-B:   \r\n\r\n",
    "obs-text and controls h11 lets through": _POST + b"X-A: \x80\xff\x01\x7f\r\n\r\n",
    "every token byte in a name": _POST + b"!#$%&'*+-.^_`|~09azAZ: 1\r\n\r\n",
    "a colon in a value": _POST + b"X-A: a:b\r\n\r\n",
    "mixed-case names": b"GET / HTTP/1.1\r\nhOsT: x\r\nCONTENT-length: 0\r\n\r\n",
    "obsolete folding": _POST + b"X-A: a\r\n  b\r\n\tc\r\n\r\n",
    "folding at the start": b"GET / HTTP/1.1\r\n x: 1\r\nHost: x\r\n\r\n",
    "CR inside a value": _POST + b"X-A: a\rb\r\n\r\n",
    "NUL in a value": _POST + b"X-A: a\x00b\r\n\r\n",
    "VT in a value": _POST + b"X-A: a\x0bb\r\n\r\n",
    "FF in a value": _POST + b"X-A: a\x0cb\r\n\r\n",
    "space before the colon": _POST + b"X-A : 1\r\n\r\n",
    "no colon": _POST + b"X-A 1\r\n\r\n",
    "empty name": _POST + b": 1\r\n\r\n",
    "a non-token name": _POST + b"X(A): 1\r\n\r\n",
    "conflicting lengths": _POST + b"Content-Length: 17\r\n\r\n",
    "equal lengths twice": _POST + b"Content-Length: 16\r\n\r\n",
    "bad length": b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1x\r\n\r\n",
    "chunked": b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n",
    "gzip transfer coding": b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n",
    "tab in the request line": b"GET\t/ HTTP/1.1\r\nHost: x\r\n\r\n",
    "two spaces in the request line": b"GET  / HTTP/1.1\r\nHost: x\r\n\r\n",
    "a space in the target": b"GET /a b HTTP/1.1\r\nHost: x\r\n\r\n",
    "a non-ASCII target": b"GET /\xc3\xa9 HTTP/1.1\r\nHost: x\r\n\r\n",
    "lower-case version": b"GET / http/1.1\r\nHost: x\r\n\r\n",
    "version 2": b"GET / HTTP/2\r\nHost: x\r\n\r\n",
    "version 1.10": b"GET / HTTP/1.10\r\nHost: x\r\n\r\n",
    "a non-token method": b"G(T / HTTP/1.1\r\nHost: x\r\n\r\n",
    "no request line": b"\r\nGET / HTTP/1.1\r\n\r\n",
    "half a head": b"GET / HTTP/1.1\r\nHost: x\r\n",
    "garbage": b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
}


def _read(reader: Any, data: bytes) -> Any:
    """What ``reader`` makes of ``data``: the event's parts (with their types) or the error."""
    buf = ReceiveBuffer()
    buf += data
    try:
        event = reader(buf)
    except h11.LocalProtocolError as exc:
        return ("refused", type(exc), str(exc), exc.error_status_hint)
    if event is None:
        return None
    parts = (event.method, event.target, event.http_version, *event.headers.raw_items())
    return (parts, [type(p) for p in parts], list(event.headers), bytes(buf), event)


@pytest.mark.parametrize("name", list(REQUESTS))
def test_the_request_head_is_read_as_h11_reads_it(name: str) -> None:
    data = REQUESTS[name]
    assert _read(read_request_head, data) == _read(maybe_read_from_IDLE_client, data)


PLAIN = {
    "tritonclient's", "curl's GET", "bare LF line ends", "HTTP/1.0 without a host",
    "spaces and tabs around a value", "empty values", "obs-text and controls h11 lets through",
    "every token byte in a name", "a colon in a value", "mixed-case names",
}  # fmt: skip
"""The heads read without h11's reader (the rest go through it)."""


def test_plain_heads_are_read_without_h11_s_reader() -> None:
    split = set()
    for name, data in REQUESTS.items():
        buf = ReceiveBuffer()
        buf += data
        lines = buf.maybe_extract_lines()
        if lines and _plain_request(lines) is not None:
            split.add(name)
    assert split == PLAIN


def test_h11_connections_read_request_heads_with_it() -> None:
    """Once installed, an h11 server connection reads its requests with it."""
    from ovtrio import _patches

    _patches.install()
    assert h11._readers.READERS[h11.CLIENT, h11.IDLE] is read_request_head
    conn = h11.Connection(h11.SERVER)
    conn.receive_data(REQUESTS["tritonclient's"] + b"x" * 16)
    request = conn.next_event()
    assert isinstance(request, h11.Request)
    assert request.target == b"/v2/models/tiny/infer"
    assert dict(request.headers)[b"inference-header-content-length"] == b"9"
    assert isinstance(conn.next_event(), h11.Data)
