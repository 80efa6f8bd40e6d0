"""What crosses between the engine and a front-end: frames, tensors in shared memory, errors.

A message is one frame on a Unix socket: a 4-byte little-endian length, then a pickle of
builtins. The pickle holds no numeric tensor larger than ``INLINE_BYTES``: ``Codec.pack``
copies each larger numeric numpy array into a shared arena and puts a descriptor (offset,
dtype, shape) in its place; ``Codec.unpack`` turns the descriptor back into an array that views
the arena (no copy). A small one travels as its bytes, dtype and shape. The
inference messages are packed into tuples of builtins (``pack_request``, ``pack_response``):
pickle handles those in C, without a call into Python per object. BYTES tensors (numpy object
arrays of strings, encoded images) and arrays that do not fit in the arena's free space travel
inside the pickle.

Each front-end has two arenas, both ``memfd_create`` files that the engine creates before it
starts the front-end and passes to it by file descriptor: the request arena (the front-end
allocates in it, and frees a request's inputs when the engine's answer arrives) and the
response arena (the engine allocates in it, and frees a response's outputs when the front-end
says it has released them). A memfd has no name in ``/dev/shm`` or anywhere else: its memory
is freed when the last process mapping it exits, whichever process that is and however it
ends (``kill -9`` included), so nothing can be left behind.

Datatypes travel by their KServe name and come back as the one ``Datatype`` of the table
(``tensors.datatype``): the data plane compares datatypes by identity.
"""

from __future__ import annotations

import bisect
import io
import mmap
import os
import pickle
import struct
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import trio

from .._ready import receive_ready, send_ready
from ..errors import OvtrioError
from ..tensors import (
    Datatype,
    InferRequest,
    InferResponse,
    RequestedOutput,
    Tensor,
    TensorSpec,
    datatype,
)

__all__ = [
    "ARENA_BYTES",
    "Arena",
    "Codec",
    "Framer",
    "SharedArena",
    "VersionRef",
    "pack_request",
    "pack_response",
    "portable_error",
    "read_payloads",
    "unpack_request",
    "unpack_response",
    "write_frames",
]

ARENA_BYTES = 1 << 30
"""Size of each arena: address space only; pages exist once a tensor touches them."""

_ALIGN = 64
_HEADER = struct.Struct("<I")


@dataclass(frozen=True, slots=True)
class VersionRef:
    """What a front-end reads of the version ``version_for_infer`` chose: its number, its
    input specs (the transports decode with them) and where encoded images go (the front-end
    decodes them, so image decoding spreads over the front-ends)."""

    version: int
    inputs: tuple[TensorSpec, ...]
    images: dict[str, tuple[TensorSpec, bool]] = field(default_factory=dict)
    """``dataplane.image_targets`` of the version."""


class Framer:
    """Splits a byte stream into frames' payloads."""

    __slots__ = ("_buffer",)

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[bytes]:
        """Add received bytes; return the payloads now complete."""
        buffer = self._buffer
        buffer += data
        out: list[bytes] = []
        start = 0
        while len(buffer) - start >= 4:
            (length,) = _HEADER.unpack_from(buffer, start)
            end = start + 4 + length
            if end > len(buffer):
                break
            out.append(bytes(buffer[start + 4 : end]))
            start = end
        if start:
            del buffer[:start]
        return out


async def read_payloads(stream: trio.SocketStream) -> AsyncIterator[list[bytes]]:
    """The payloads of the frames ``stream`` brings, in batches, until it closes (read
    without a scheduling round trip when bytes are waiting: ``_ready``)."""
    framer = Framer()
    sock = stream.socket
    streak = 0
    while True:
        try:
            data, streak = await receive_ready(sock, 1 << 16, streak)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return
        if not data:
            return
        yield framer.feed(data)


async def write_frames(stream: trio.SocketStream, outbox: trio.MemoryReceiveChannel[bytes]) -> None:
    """Send the frames put in ``outbox``, all those waiting in one write, until ``stream``
    breaks."""
    async for first in outbox:
        chunks = [first]
        while True:
            try:
                chunks.append(outbox.receive_nowait())
            except trio.WouldBlock:
                break
        try:
            await send_ready(stream.socket, chunks[0] if len(chunks) == 1 else b"".join(chunks))
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return


class Arena:
    """First-fit allocator of byte ranges in a fixed span, with neighbours merged on free."""

    __slots__ = ("_free_sizes", "_free_starts", "_used", "size")

    def __init__(self, size: int) -> None:
        self.size = size
        self._free_starts: list[int] = [0]
        self._free_sizes: list[int] = [size]
        self._used: dict[int, int] = {}

    def alloc(self, nbytes: int) -> int | None:
        """The offset of ``nbytes`` free bytes, or None if no free range is large enough."""
        need = max(_ALIGN, (nbytes + _ALIGN - 1) // _ALIGN * _ALIGN)
        for i, free in enumerate(self._free_sizes):
            if free >= need:
                start = self._free_starts[i]
                if free == need:
                    del self._free_starts[i], self._free_sizes[i]
                else:
                    self._free_starts[i] = start + need
                    self._free_sizes[i] = free - need
                self._used[start] = need
                return start
        return None

    def free(self, offset: int) -> None:
        size = self._used.pop(offset)
        starts, sizes = self._free_starts, self._free_sizes
        i = bisect.bisect_left(starts, offset)
        if i < len(starts) and offset + size == starts[i]:  # merge with the next free range
            size += sizes[i]
            del starts[i], sizes[i]
        if i > 0 and starts[i - 1] + sizes[i - 1] == offset:  # merge with the previous one
            sizes[i - 1] += size
        else:
            starts.insert(i, offset)
            sizes.insert(i, size)


class SharedArena:
    """An arena's memory: a memfd mapped shared, and its allocator."""

    __slots__ = ("arena", "fd", "map")

    def __init__(self, fd: int, size: int) -> None:
        self.fd = fd
        self.map = mmap.mmap(fd, size, flags=mmap.MAP_SHARED)
        self.arena = Arena(size)

    @classmethod
    def create(cls, name: str, size: int = ARENA_BYTES) -> SharedArena:
        """A new arena; its descriptor is inheritable, for the front-end the engine starts."""
        fd = os.memfd_create(name, 0)
        os.ftruncate(fd, size)
        os.set_inheritable(fd, True)
        return cls(fd, size)

    def put(self, array: np.ndarray[Any, Any]) -> int | None:
        """Copy ``array`` into a new allocation; its offset, or None if it does not fit."""
        offset = self.arena.alloc(array.nbytes)
        if offset is None:
            return None
        if array.nbytes:
            target = np.frombuffer(self.map, array.dtype, array.size, offset)
            np.copyto(target.reshape(array.shape), array, casting="no")
        return offset

    def close_fd(self) -> None:
        """Close the descriptor (the mapping stays)."""
        os.close(self.fd)


class _Pickler(pickle.Pickler):
    """Pickles a ``Datatype`` as its KServe name (control-plane answers hold them)."""

    def persistent_id(self, obj: Any) -> Any:
        if isinstance(obj, Datatype):
            return obj.kserve
        return None


class _Unpickler(pickle.Unpickler):
    def persistent_load(self, pid: Any) -> Any:
        return datatype(pid)


_PLAIN, _TYPED = b"P", b"T"

_Packed = tuple[str, str, Any]
"""A tensor on the wire: name, KServe datatype, and either ``(offset, dtype, shape)`` in the
sender's arena, ``(dtype, shape, bytes)`` for a small one, or the array itself."""

INLINE_BYTES = 4096
"""Numeric tensors up to this size travel inside the message: a copy of a few KiB costs less
than an allocation in the arena, the finalizer that frees it and the release message."""


class Codec:
    """Frames messages. ``dumps`` pickles builtins only: an ``InferRequest`` or
    ``InferResponse`` is packed first (``pack``), each numeric array copied into ``out`` (the
    arena this side allocates in); ``loads`` unpacks with arrays viewing ``into`` (the arena
    the other side allocates in). ``dumps_typed`` pickles anything, datatypes by name."""

    __slots__ = ("into", "out")

    def __init__(self, out: SharedArena | None, into: SharedArena | None) -> None:
        self.out = out
        self.into = into

    def dumps(self, message: Any) -> bytes:
        """The frame of ``message`` (builtins, errors and packed tensors)."""
        payload = pickle.dumps(message, pickle.HIGHEST_PROTOCOL)
        return _HEADER.pack(len(payload) + 1) + _PLAIN + payload

    def dumps_typed(self, message: Any) -> bytes:
        """The frame of ``message``, which may hold datatypes (metadata, specs, config)."""
        buffer = io.BytesIO()
        buffer.write(b"\0\0\0\0" + _TYPED)
        _Pickler(buffer, pickle.HIGHEST_PROTOCOL).dump(message)
        data = buffer.getbuffer()
        _HEADER.pack_into(data, 0, len(data) - 4)
        return bytes(data)

    def loads(self, payload: bytes) -> Any:
        """The message of a frame's payload."""
        if payload[:1] == _PLAIN:
            return pickle.loads(memoryview(payload)[1:])
        return _Unpickler(io.BytesIO(memoryview(payload)[1:])).load()

    def pack(self, tensors: list[Tensor], placed: list[int]) -> list[_Packed]:
        """``tensors`` for ``dumps``: small numeric arrays as bytes, larger ones copied into
        ``out`` (their offsets appended to ``placed``), the others (BYTES, or too large for
        the free space) as they are."""
        out: list[_Packed] = []
        for t in tensors:
            a = t.data
            where: Any = a
            if a.dtype.kind in "biuf":
                if a.nbytes <= INLINE_BYTES:
                    where = (a.dtype.str, a.shape, a.tobytes())
                elif self.out is not None:
                    offset = self.out.put(a)
                    if offset is not None:
                        placed.append(offset)
                        where = (offset, a.dtype.str, a.shape)
            out.append((t.name, t.datatype.kserve, where))
        return out

    def unpack(
        self,
        packed: list[_Packed],
        on_view: Callable[[np.ndarray[Any, Any], int], None] | None = None,
    ) -> list[Tensor]:
        """The tensors of ``pack``, arrays placed in the arena viewing ``into``;
        ``on_view(array, offset)`` is told of each such array."""
        tensors = []
        for name, kserve, where in packed:
            if type(where) is tuple and type(where[2]) is bytes:  # a small one, inline
                dtype, shape, data = where
                where = np.frombuffer(data, np.dtype(dtype)).reshape(shape)
            elif type(where) is tuple:
                offset, dtype, shape = where
                assert self.into is not None
                count = 1
                for d in shape:
                    count *= d
                flat = np.frombuffer(self.into.map, np.dtype(dtype), count, offset)
                if on_view is not None:
                    on_view(flat, offset)
                where = flat.reshape(shape)
            tensors.append(Tensor(name, datatype(kserve), where))
        return tensors


def pack_request(codec: Codec, r: InferRequest, placed: list[int]) -> tuple[Any, ...]:
    outputs = None if r.outputs is None else [(o.name, o.parameters) for o in r.outputs]
    return (
        r.model_name,
        r.model_version,
        codec.pack(r.inputs, placed),
        outputs,
        r.id,
        r.parameters,
    )


def unpack_request(codec: Codec, packed: tuple[Any, ...]) -> InferRequest:
    name, version, inputs, outputs, request_id, parameters = packed
    return InferRequest(
        name,
        version,
        codec.unpack(inputs),
        None if outputs is None else [RequestedOutput(n, p) for n, p in outputs],
        request_id,
        parameters,
    )


def pack_response(codec: Codec, r: InferResponse) -> tuple[Any, ...]:
    return (r.model_name, r.model_version, codec.pack(r.outputs, []), r.id, r.parameters)


def unpack_response(
    codec: Codec,
    packed: tuple[Any, ...],
    on_view: Callable[[np.ndarray[Any, Any], int], None],
) -> InferResponse:
    name, version, outputs, response_id, parameters = packed
    return InferResponse(name, version, codec.unpack(outputs, on_view), response_id, parameters)


def portable_error(exc: BaseException) -> OvtrioError:
    """``exc`` as an error the other process can unpickle and a transport can answer."""
    if isinstance(exc, OvtrioError):
        try:
            pickle.loads(pickle.dumps(exc))
        except Exception:  # an error with arguments pickle cannot rebuild
            return OvtrioError(str(exc))
        return exc
    return OvtrioError(f"Internal server error: {exc!r}")
