"""Hand-written protobuf wire bytes for tests (what betterproto/protobuf would not produce)."""

from __future__ import annotations


def varint(n: int) -> bytes:
    """A base-128 varint; negative int32/int64 values as their ten-byte two's complement."""
    n &= (1 << 64) - 1
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def key(field: int, wire: int) -> bytes:
    return varint(field << 3 | wire)


def ld(field: int, payload: bytes) -> bytes:
    """A length-delimited field."""
    return key(field, 2) + varint(len(payload)) + payload
