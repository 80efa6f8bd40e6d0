"""API-key (bearer token) checks shared by the REST and gRPC transports."""

from __future__ import annotations

import hmac
from collections.abc import Sequence

from .errors import Unauthenticated

__all__ = ["bearer_ok", "require_bearer"]


def bearer_ok(header: str | bytes, keys: Sequence[bytes]) -> bool:
    """True if ``header`` is ``Bearer <key>`` for one of ``keys`` (constant-time compare)."""
    if isinstance(header, bytes):
        header = header.decode("latin-1")
    scheme, _, token = header.partition(" ")
    given = token.strip().encode()
    return scheme.lower() == "bearer" and any(hmac.compare_digest(given, k) for k in keys)


def require_bearer(header: str | bytes, keys: Sequence[bytes]) -> None:
    """Raise Unauthenticated (401) unless ``header`` carries one of ``keys`` (REST)."""
    if not bearer_ok(header, keys):
        raise Unauthenticated("Missing or invalid API key (Authorization: Bearer <key>)")
