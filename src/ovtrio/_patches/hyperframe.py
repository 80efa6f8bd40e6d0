"""Cheap frame reprs for hyperframe.

**What.** ``Frame.__repr__`` prints the frame type, stream id and flags only, and
``_raw_data_repr`` hex-encodes the first 10 bytes of a payload instead of all of it.

**Why (measured).** h2 logs every received frame with an eager ``repr(frame)`` even when its
logger discards the line, and the full repr hex-encodes the whole payload: for a 600 KB tensor
1.2 MB of hex per request, about 5 % of the server's CPU (MobileNet over gRPC), ~3 % of the gRPC
thread's samples on a tiny model.

**Upstream.** h2 formatting the frame lazily (``logger.debug("%r", frame)`` or an
``isEnabledFor`` guard in ``H2Connection.receive_data``) makes this unneeded.
"""

from __future__ import annotations

import binascii
from typing import Any

import hyperframe.frame

from ._pins import check_pin

__all__ = ["install"]

_originals: dict[str, Any] = {}


def _short_data_repr(data: bytes | None) -> str:
    if not data:
        return "None"
    return "<hex:" + binascii.hexlify(data[:10]).decode("ascii") + "...>"


def _short_frame_repr(self: hyperframe.frame.Frame) -> str:
    return f"{type(self).__name__}(stream_id={self.stream_id}, flags={sorted(self.flags)})"


def install() -> None:
    """Install the short reprs (idempotent)."""
    check_pin("hyperframe")
    if _originals:
        return
    _originals["_raw_data_repr"] = hyperframe.frame._raw_data_repr
    _originals["Frame.__repr__"] = hyperframe.frame.Frame.__repr__
    hyperframe.frame._raw_data_repr = _short_data_repr
    hyperframe.frame.Frame.__repr__ = _short_frame_repr  # type: ignore[method-assign]
