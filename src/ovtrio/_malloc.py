"""Giving memory back after large requests: one keeper task per server.

A request that moved a large tensor (``runtime._pool.LARGE_BYTES``) leaves memory behind that
nothing returns on its own: the stream's graph keeps intermediate memory sized for it until
``CompiledModel.release_memory``, reference cycles holding the request's arrays wait for the
cyclic collector (which an idle server never runs), and glibc keeps freed heap and arena pages
until ``malloc_trim``. ``note_large`` records a large request (a set insert: small requests
never call it); the keeper task, at most once per ``KEEP_EVERY_S`` and only after one, runs
the collector, the releases that were asked for and ``malloc_trim(0)``.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import logging
from collections.abc import Callable
from typing import Protocol

import trio

__all__ = ["KEEP_EVERY_S", "Releasable", "keep", "note_large", "trim"]

log = logging.getLogger(__name__)

KEEP_EVERY_S = 1.0
"""The keeper runs at most this often, and this long after the large request it answers."""


class Releasable(Protocol):
    def release_memory(self) -> bool:
        """Give memory back; False when it cannot now (inferences running): asked again."""
        ...


_releases: dict[int, Releasable] = {}
_wake: list[trio.Event] = []
"""The running keeper's wake-up (empty when no keeper runs)."""


def note_large(owner: Releasable | None = None) -> None:
    """A large request ended (trio thread); ``owner``: asked to release its memory."""
    if owner is not None:
        _releases[id(owner)] = owner
    if _wake:
        _wake[0].set()


def _load_trim() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        fn = libc.malloc_trim
    except (OSError, AttributeError, TypeError):
        return None  # not glibc: nothing to trim
    fn.argtypes = [ctypes.c_size_t]
    fn.restype = ctypes.c_int
    trim_fn: Callable[[int], int] = fn
    return trim_fn


_malloc_trim = _load_trim()


def trim() -> None:
    """glibc's ``malloc_trim(0)``: free pages of every arena back to the OS (ctypes releases
    the GIL for the call; a few ms after a 64 MiB request)."""
    if _malloc_trim is not None:
        _malloc_trim(0)


async def keep(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
    """The keeper task (module doc); runs until cancelled."""
    wake = trio.Event()
    _wake[:] = [wake]
    task_status.started()
    try:
        while True:
            await wake.wait()
            await trio.sleep(KEEP_EVERY_S)
            wake = trio.Event()
            _wake[:] = [wake]
            gc.collect()
            for key, owner in list(_releases.items()):
                if owner.release_memory():
                    del _releases[key]
            await trio.to_thread.run_sync(trim)
            if _releases:
                wake.set()
    finally:
        _wake.clear()
