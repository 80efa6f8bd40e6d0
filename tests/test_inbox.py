"""TrioInbox: every call from other threads runs once, in order, with fewer wake-ups."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest
import trio

from ovtrio._inbox import TrioInbox


def test_every_call_runs_once_in_order_from_many_threads() -> None:
    threads, calls = 4, 5000
    seen: dict[int, list[int]] = {t: [] for t in range(threads)}
    wakeups = 0

    async def main() -> None:
        nonlocal wakeups
        token = trio.lowlevel.current_trio_token()

        class CountingToken:
            def run_sync_soon(self, fn: Callable[[], object]) -> None:
                nonlocal wakeups
                wakeups += 1
                token.run_sync_soon(fn)

        inbox = TrioInbox(CountingToken())  # type: ignore[arg-type]
        done = trio.Event()
        finished = 0

        def one_finished() -> None:
            nonlocal finished
            finished += 1
            if finished == threads:
                done.set()

        def produce(t: int) -> None:
            for i in range(calls):
                inbox.run_sync_soon(seen[t].append, i)
            inbox.run_sync_soon(one_finished)

        workers = [threading.Thread(target=produce, args=(t,)) for t in range(threads)]
        for w in workers:
            w.start()
        with trio.fail_after(60):
            await done.wait()
        for w in workers:
            w.join()

    trio.run(main)
    assert all(seen[t] == list(range(calls)) for t in range(threads))
    assert 0 < wakeups < threads * calls  # bursts shared a wake-up


def test_after_the_run_calls_are_refused() -> None:
    async def main() -> TrioInbox:
        return TrioInbox(trio.lowlevel.current_trio_token())

    inbox = trio.run(main)
    with pytest.raises(trio.RunFinishedError):
        inbox.run_sync_soon(print, "never")
    with pytest.raises(trio.RunFinishedError):  # not stuck believing a drain is scheduled
        inbox.run_sync_soon(print, "never")
