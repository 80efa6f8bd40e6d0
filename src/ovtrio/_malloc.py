"""Giving memory back after large requests: one keeper task per server.

A request that moved a large tensor (``runtime._pool.LARGE_BYTES``) leaves memory behind that
nothing returns on its own: the stream's graph keeps intermediate memory sized for it until
``CompiledModel.release_memory``, reference cycles holding the request's arrays wait for the
cyclic collector (which an idle server never runs), and glibc keeps freed heap and arena pages
until ``malloc_trim``. ``note_large`` records a large request (a set insert: small requests
never call it); the keeper task, at most once per ``KEEP_EVERY_S`` and only after one, runs
the collector, the releases that were asked for and ``malloc_trim(0)``.

``tune`` (a front-end worker, at start) fixes glibc's two thresholds. By default they follow
the largest mapped block freed so far; a process without OpenVINO has freed none large, so
freeing a 600 KB request's buffers (1.2-1.8 MB with their copies) trims the heap's top and
the next request grows it again and faults the pages in anew: 22-137 page faults per request
over a worker tree, 1-3 with both thresholds fixed (either alone does not do it). The engine
and the single process do not call it: OpenVINO's frees have raised their thresholds already,
and fixing them there keeps 20-30 MiB more of model loading's memory resident.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import weakref
from collections.abc import Callable
from typing import Any, Protocol

import trio

__all__ = ["HEAP_BELOW", "KEEP_EVERY_S", "Releasable", "keep", "note_large", "trim", "tune"]

KEEP_EVERY_S = 1.0
"""The keeper runs at most this often, and this long after the large request it answers."""


class Releasable(Protocol):
    def release_memory(self) -> bool:
        """Give memory back; False when it cannot now (inferences running): asked again."""
        ...


_releases: weakref.WeakValueDictionary[int, Releasable] = weakref.WeakValueDictionary()
"""What to ask to release (an unloaded model is not kept alive for it)."""


class _Wake:
    event: trio.Event | None = None
    """The running keeper's wake-up (None when no keeper runs)."""


def note_large(owner: Releasable | None = None) -> None:
    """A large request ended (trio thread); ``owner``: asked to release its memory."""
    if owner is not None:
        _releases[id(owner)] = owner
    if _Wake.event is not None:
        _Wake.event.set()


def _load_libc() -> ctypes.CDLL | None:
    try:
        return ctypes.CDLL(ctypes.util.find_library("c"))
    except (OSError, TypeError):
        return None


_LIBC = _load_libc()
"""The C library, looked up once (``find_library`` runs ``ldconfig``)."""


def _libc_function(name: str, argtypes: list[Any]) -> Callable[..., int] | None:
    """The C library's function ``name`` taking ``argtypes`` and returning an int (glibc's
    malloc controls); None when the library or the function is missing."""
    if _LIBC is None:
        return None
    try:
        fn = getattr(_LIBC, name)
    except AttributeError:
        return None
    fn.argtypes = argtypes
    fn.restype = ctypes.c_int
    found: Callable[..., int] = fn
    return found


_malloc_trim = _libc_function("malloc_trim", [ctypes.c_size_t])
_mallopt = _libc_function("mallopt", [ctypes.c_int, ctypes.c_int])


HEAP_BELOW = 8 << 20
"""Blocks below this come from the heap, and up to twice this stays free at its top: a larger
block is mapped and unmapped on its own (glibc's M_MMAP_THRESHOLD; M_TRIM_THRESHOLD)."""

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3


def tune() -> None:
    """Fix glibc's thresholds (module doc); nothing on another C library."""
    if _mallopt is not None:
        _mallopt(_M_MMAP_THRESHOLD, HEAP_BELOW)
        _mallopt(_M_TRIM_THRESHOLD, 2 * HEAP_BELOW)


def trim() -> None:
    """glibc's ``malloc_trim(0)``: free pages of every arena back to the OS (ctypes releases
    the GIL for the call)."""
    if _malloc_trim is not None:
        _malloc_trim(0)


def _release() -> bool:
    """Ask every owner noted; True when one gave memory back."""
    released = False
    for key, owner in list(_releases.items()):
        if owner.release_memory():
            _releases.pop(key, None)
            released = True
    return released


async def keep(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
    """The keeper task (module doc); runs until cancelled. Owners busy at their turn are asked
    again every ``KEEP_EVERY_S``, and the arenas trimmed once more after they released."""
    _Wake.event = trio.Event()
    task_status.started()
    try:
        while True:
            await _Wake.event.wait()
            await trio.sleep(KEEP_EVERY_S)
            _Wake.event = trio.Event()
            gc.collect()  # cycles holding a request's arrays: 64-380 MiB kept without it
            _release()
            # glibc keeps freed pages in its arenas: 68 MiB after a 64 MiB gRPC request
            # without it (a fixed mmap threshold did as well; arena_max=2 did not)
            await trio.to_thread.run_sync(trim)
            while _releases and not _Wake.event.is_set():
                await trio.sleep(KEEP_EVERY_S)
                if _release():
                    await trio.to_thread.run_sync(trim)
    finally:
        _Wake.event = None
