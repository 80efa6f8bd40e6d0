"""Cheaper frames for hyperframe (hyperframe 6.1.0).

``Frame.__repr__``, ``_raw_data_repr``
    **What.** A frame's repr is its type, stream id and flags only; ``_raw_data_repr``
    hex-encodes the first 10 bytes of a payload instead of all of it.
    **Why (measured).** h2 logs every received frame with an eager ``repr(frame)`` even when
    its logger discards the line, and the full repr hex-encodes the whole payload: for a
    600 KB tensor 1.2 MB of hex per request, about 5 % of the server's CPU (MobileNet over
    gRPC), ~3 % of the gRPC thread's samples on a tiny model.
    **Upstream.** h2 formatting the frame lazily (``logger.debug("%r", frame)`` or an
    ``isEnabledFor`` guard in ``H2Connection.receive_data``) makes this unneeded.

``Flags.__init__``
    **What.** The set of a frame type's valid flag names is built once per frame class, not
    once per frame.
    **Why (measured).** Every frame parsed or built makes a ``Flags``; its set comprehension
    was ~2 % of the gRPC thread's samples at 64 tiny-model clients (py-spy).
    **Upstream.** ``Flags`` taking the class's precomputed names (or a frozenset class
    attribute per frame type).
"""

from __future__ import annotations

import binascii
from typing import Any

import hyperframe.flags
import hyperframe.frame

from ._pins import check_pin

__all__ = ["install"]

_originals: dict[str, Any] = {}


def _short_data_repr(data: bytes | None) -> str:
    if not data:
        return "None"
    return "<hex:" + binascii.hexlify(data[:10]).decode("ascii") + "...>"


def _short_frame_repr(self: hyperframe.frame.Frame) -> str:
    return f"{type(self).__name__}(stream_id={self.stream_id}, flags={sorted(self.flags._flags)})"


_VALID_FLAGS: dict[int, tuple[Any, frozenset[str]]] = {}
"""id(a frame class's ``defined_flags``) -> (that list, its names)."""


def _flags_init(self: hyperframe.flags.Flags, defined_flags: Any) -> None:
    """hyperframe's ``Flags.__init__``, with the valid names computed once per list."""
    known = _VALID_FLAGS.get(id(defined_flags))
    if known is None or known[0] is not defined_flags:
        known = (defined_flags, frozenset(flag.name for flag in defined_flags))
        if len(_VALID_FLAGS) < 64:  # frame classes: a handful
            _VALID_FLAGS[id(defined_flags)] = known
    self._valid_flags = known[1]  # type: ignore[assignment]  # only read (add checks it)
    self._flags = set()


def install() -> None:
    """Install the short reprs (idempotent)."""
    check_pin("hyperframe")
    if _originals:
        return
    _originals["_raw_data_repr"] = hyperframe.frame._raw_data_repr
    _originals["Frame.__repr__"] = hyperframe.frame.Frame.__repr__
    _originals["Flags.__init__"] = hyperframe.flags.Flags.__init__
    hyperframe.frame._raw_data_repr = _short_data_repr
    hyperframe.frame.Frame.__repr__ = _short_frame_repr  # type: ignore[method-assign]
    hyperframe.flags.Flags.__init__ = _flags_init  # type: ignore[method-assign]
