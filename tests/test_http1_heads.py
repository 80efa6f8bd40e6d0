"""_patches.hypercorn._checked_response builds the answer's head h11 would build, or refuses
what h11 refuses: the same bytes on the wire for every header list."""

from __future__ import annotations

from typing import Any

import h11
import pytest

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
