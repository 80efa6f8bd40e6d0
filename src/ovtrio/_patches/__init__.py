"""Patches of third-party internals, installed on purpose by the server at start.

Importing ovtrio changes nothing in hypercorn, h11, grpclib, h2, hpack or hyperframe: ``install()``
does, once, from ``server.serve`` before anything listens. Each module here patches one
library and says, per patch, what it fixes, the measured reason and the upstream change that
would make it unneeded. The patches read private attributes of exact versions, so every
patched library is pinned (``PINS``, equal to the pins in pyproject.toml: tests/test_patches.py
checks it) and ``install()`` refuses to run on another version.
"""

from __future__ import annotations

from ._pins import PINS, PinError, check_pin

__all__ = ["PINS", "PinError", "check_pin", "install"]


def install() -> None:
    """Check every pin, then install every patch (idempotent).

    Raises ``PinError`` (nothing installed) when an installed version differs from its pin.
    """
    for library in PINS:
        check_pin(library)
    from . import (
        grpclib,
        h2,
        h11,
        hpack,
        hypercorn,
        hyperframe,
    )  # each imports the library it patches

    hypercorn.install()
    h11.install()
    grpclib.install()
    hyperframe.install()
    hpack.install()
    h2.install()
