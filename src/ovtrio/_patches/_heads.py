"""The header items h11 keeps for a head whose names and values are already known valid
(h11 0.16.0; shared by ``_patches.h11``'s request heads and ``_patches.hypercorn``'s answer
heads, which build h11's events from them)."""

from __future__ import annotations

from collections.abc import Iterable

import h11._headers

__all__ = ["plain_header_items"]


def plain_header_items(
    headers: Iterable[tuple[bytes, bytes]],
) -> list[tuple[bytes, bytes, bytes]] | None:
    """h11's ``Headers`` items (name, lower-case name, value) of ``headers``, when its
    ``normalize_and_validate`` would keep them as they are: at most one content-length, of
    digits, no transfer-encoding. None otherwise: h11 then reads them itself."""
    items = []
    length = None
    for name, value in headers:
        lower = name.lower()
        if lower == b"content-length":
            if (
                length is not None
                or not value.isdigit()
                or len(value) > h11._headers.CONTENT_LENGTH_MAX_DIGITS
            ):
                return None
            length = value
        elif lower == b"transfer-encoding":
            return None
        items.append((name, lower, value))
    return items
