"""Repeated header blocks decoded, and encoded, once per HPACK decoder (encoder).

**What.** ``Decoder.decode`` of a header block made only of indexed fields (every byte has the
high bit set: no literal, no table-size update, so decoding it cannot change the dynamic table)
returns the header list it decoded for the same bytes before, while the decoder's dynamic
table has not changed since (``HeaderTable.add`` and the ``maxsize`` setter count changes) and
its limits are the same. A decoder keeps at most ``_ENTRIES`` blocks. Likewise
``Encoder.encode`` returns the block it encoded for the same header list before, when that
encoding did not change the encoder's table and the table has not changed since (a unary
reply's headers and trailers are the same list on every call).

**Why (measured).** A gRPC client sends the same request headers on every call, and after the
first call its HPACK encoder sends them as indexes into the dynamic table (grpc-core sends
``:path``, ``content-type``, ``te`` and the rest as one byte each). hpack turns each index into
a ``HeaderTuple`` in Python every time: 13 % of the server thread's samples at 64 tiny gRPC
clients (py-spy, ``scripts/profile_layers.py``), ``HeaderTuple.__new__`` alone 7 %. Encoding
the reply's two header blocks is another 6 % of a call (cProfile of
``scripts/grpc_call_cost.py``).

**Upstream.** hpack has no memo of decoded blocks; a decoder that kept the decoded form of its
dynamic table's entries (tuples built once, at insertion) would make this unneeded.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable
from typing import Any

import hpack.hpack
import hpack.table

from ._pins import check_pin

__all__ = ["install"]

_ENTRIES = 32
"""Header blocks remembered per decoder (a connection's): a client sends few distinct ones."""

_originals: dict[str, Any] = {}
_changes: weakref.WeakKeyDictionary[hpack.table.HeaderTable, int] = weakref.WeakKeyDictionary()
"""Changes of each dynamic table so far (a remembered block is valid for one count)."""
_blocks: weakref.WeakKeyDictionary[hpack.hpack.Decoder, dict[Any, tuple[Any, ...]]] = (
    weakref.WeakKeyDictionary()
)
"""Each decoder's remembered blocks."""


def _add(self: hpack.table.HeaderTable, name: bytes, value: bytes) -> None:
    _changes[self] = _changes.get(self, 0) + 1
    _originals["add"](self, name, value)


def _set_maxsize(self: hpack.table.HeaderTable, newmax: int) -> None:
    _changes[self] = _changes.get(self, 0) + 1
    _originals["maxsize"].fset(self, newmax)


def _decode(
    self: hpack.hpack.Decoder, data: bytes, raw: bool = False
) -> Iterable[hpack.HeaderTuple]:
    if not data or min(data) < 0x80:  # a literal or a table update: the table may change
        return _originals["decode"](self, data, raw)  # type: ignore[no-any-return]
    key = (bytes(data), raw, _changes.get(self.header_table, 0), self.max_header_list_size)
    blocks = _blocks.get(self)
    if blocks is None:
        blocks = _blocks[self] = {}
    found = blocks.get(key)
    if found is not None:
        self._assert_valid_table_size()  # the allowed size may have shrunk since
        return list(found)
    headers = list(_originals["decode"](self, data, raw))
    if len(blocks) >= _ENTRIES:
        blocks.clear()
    blocks[key] = tuple(headers)
    return headers


_encoded: weakref.WeakKeyDictionary[hpack.hpack.Encoder, dict[Any, bytes]] = (
    weakref.WeakKeyDictionary()
)
"""Each encoder's remembered blocks."""


def _encode(self: hpack.hpack.Encoder, headers: Any, huffman: bool = True) -> bytes:
    table = self.header_table
    if table.resized or isinstance(headers, dict):
        return _originals["encode"](self, headers, huffman)  # type: ignore[no-any-return]
    headers = list(headers)
    before = _changes.get(table, 0)
    try:  # the tuple's type says whether a header may be indexed (NeverIndexedHeaderTuple)
        key: Any = (tuple((type(h), *h) for h in headers), huffman, before)
        found = _encoded.get(self, {}).get(key)
    except TypeError:  # unhashable values: not remembered
        return _originals["encode"](self, headers, huffman)  # type: ignore[no-any-return]
    if found is not None:
        return found
    block: bytes = _originals["encode"](self, headers, huffman)
    if _changes.get(table, 0) == before:  # all indexed: the same bytes while the table stays
        blocks = _encoded.setdefault(self, {})
        if len(blocks) >= _ENTRIES:
            blocks.clear()
        blocks[key] = block
    return block


def install() -> None:
    """Install the memo (idempotent)."""
    check_pin("hpack")
    if _originals:
        return
    table = hpack.table.HeaderTable
    _originals["decode"] = hpack.hpack.Decoder.decode
    _originals["encode"] = hpack.hpack.Encoder.encode
    hpack.hpack.Encoder.encode = _encode  # type: ignore[method-assign]
    _originals["add"] = table.add
    _originals["maxsize"] = table.__dict__["maxsize"]
    hpack.hpack.Decoder.decode = _decode  # type: ignore[method-assign]
    table.add = _add  # type: ignore[method-assign]
    table.maxsize = property(_originals["maxsize"].fget, _set_maxsize)  # type: ignore[method-assign,assignment]
