"""What crosses between the engine and a front-end: frames, tensors in shared memory, errors.

A message is one frame on a Unix socket: a 4-byte little-endian length, then a pickle. The
pickle never holds a numeric tensor: ``Codec.dumps`` moves each numeric numpy array into a
shared arena and puts a descriptor (offset, dtype, shape) in its place; ``Codec.loads`` turns
the descriptor back into an array that views the arena (no copy). BYTES tensors (numpy object
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
from typing import Any

import numpy as np
import trio

from ..errors import OvtrioError
from ..tensors import Datatype, datatype

__all__ = [
    "ARENA_BYTES",
    "Arena",
    "Codec",
    "Framer",
    "SharedArena",
    "portable_error",
    "read_payloads",
    "write_frames",
]

ARENA_BYTES = 1 << 30
"""Size of each arena: address space only; pages exist once a tensor touches them."""

_ALIGN = 64
_HEADER = struct.Struct("<I")


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
    """The payloads of the frames ``stream`` brings, in batches, until it closes."""
    framer = Framer()
    while True:
        try:
            data = await stream.receive_some(1 << 16)
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
            await stream.send_all(b"".join(chunks))
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
    def __init__(
        self, file: io.BytesIO, arena: SharedArena | None, placed: list[int] | None
    ) -> None:
        super().__init__(file, protocol=pickle.HIGHEST_PROTOCOL)
        self._arena = arena
        self._placed = placed

    def persistent_id(self, obj: Any) -> Any:
        if isinstance(obj, Datatype):
            return ("dt", obj.kserve)
        if (
            self._arena is not None
            and type(obj) is np.ndarray
            and obj.dtype.kind in "biuf"
            and self._placed is not None
        ):
            offset = self._arena.put(obj)
            if offset is None:
                return None
            self._placed.append(offset)
            return ("shm", offset, obj.dtype.str, obj.shape)
        return None


class _Unpickler(pickle.Unpickler):
    def __init__(
        self,
        file: io.BytesIO,
        arena: SharedArena | None,
        on_view: Callable[[np.ndarray[Any, Any], int], None] | None,
    ) -> None:
        super().__init__(file)
        self._arena = arena
        self._on_view = on_view

    def persistent_load(self, pid: Any) -> Any:
        if pid[0] == "dt":
            return datatype(pid[1])
        _, offset, dtype, shape = pid
        assert self._arena is not None
        dt = np.dtype(dtype)
        count = 1
        for d in shape:
            count *= d
        flat = np.frombuffer(self._arena.map, dt, count, offset)
        if self._on_view is not None:
            self._on_view(flat, offset)
        return flat.reshape(shape)


class Codec:
    """Pickles messages with their numeric arrays placed in ``out`` (the arena this side
    allocates in) and unpickles with arrays viewing ``into`` (the arena the other side
    allocates in)."""

    __slots__ = ("into", "out")

    def __init__(self, out: SharedArena | None, into: SharedArena | None) -> None:
        self.out = out
        self.into = into

    def dumps(self, message: Any, placed: list[int] | None = None) -> bytes:
        """The frame of ``message``; the offsets of the arrays it placed go to ``placed``
        (None: arrays travel inside the pickle)."""
        buffer = io.BytesIO()
        buffer.write(b"\0\0\0\0")
        _Pickler(buffer, self.out, placed).dump(message)
        data = buffer.getbuffer()
        _HEADER.pack_into(data, 0, len(data) - 4)
        return bytes(data)

    def loads(
        self,
        payload: bytes,
        on_view: Callable[[np.ndarray[Any, Any], int], None] | None = None,
    ) -> Any:
        """The message of a frame's payload; ``on_view(array, offset)`` is told of each array
        that views the arena."""
        return _Unpickler(io.BytesIO(payload), self.into, on_view).load()


def portable_error(exc: BaseException) -> OvtrioError:
    """``exc`` as an error the other process can unpickle and a transport can answer."""
    if isinstance(exc, OvtrioError):
        try:
            pickle.loads(pickle.dumps(exc))
        except Exception:  # an error with arguments pickle cannot rebuild
            return OvtrioError(str(exc))
        return exc
    return OvtrioError(f"Internal server error: {exc!r}")
