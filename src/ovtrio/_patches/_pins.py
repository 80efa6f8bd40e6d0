"""The exact versions the patches are written against."""

from __future__ import annotations

from collections.abc import Mapping
from importlib.metadata import version

__all__ = ["PINS", "PinError", "check_pin"]

PINS: Mapping[str, str] = {
    "grpclib": "0.4.9",
    "h11": "0.16.0",
    "h2": "4.4.1",
    "hpack": "4.2.0",
    "hypercorn": "0.18.0",
    "hyperframe": "6.1.0",
}
"""Library (distribution name) -> the one version its patches fit."""


class PinError(Exception):
    """An installed library is not the version ovtrio's patches are written against."""


def check_pin(library: str, pins: Mapping[str, str] = PINS) -> None:
    """Raise ``PinError`` unless the installed ``library`` is exactly ``pins[library]``."""
    pinned = pins[library]
    installed = version(library)
    if installed != pinned:
        raise PinError(
            f"{library} {installed} is installed, but ovtrio patches its internals and "
            f"needs exactly {library}=={pinned}"
        )
