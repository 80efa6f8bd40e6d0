"""``grpc._hosted.HostedLoop``: asyncio code (as grpclib writes it) run by a trio task.

Real asyncio futures, tasks, events, timeouts and sleeps, on trio's real clock."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import trio

from ovtrio.grpc._hosted import HostedLoop


async def run_on_loop(body: Callable[[HostedLoop], Awaitable[Any]]) -> Any:
    """Run the asyncio coroutine ``body(loop)`` as a task of a HostedLoop; its result."""
    async with trio.open_nursery() as nursery:
        loop = HostedLoop()  # type: ignore[abstract]
        await nursery.start(loop.run)
        done = trio.Event()
        box: dict[str, Any] = {}

        async def main() -> None:
            try:
                box["value"] = await body(loop)
            except BaseException as exc:
                box["error"] = exc
            finally:
                done.set()

        with loop.entered():
            loop.create_task(main())
        with trio.fail_after(10):
            await done.wait()
        nursery.cancel_scope.cancel()
    assert loop.is_closed()
    if "error" in box:
        raise box["error"]
    return box["value"]


def test_tasks_futures_and_callbacks_run_in_order() -> None:
    async def body(loop: HostedLoop) -> list[Any]:
        assert asyncio.get_running_loop() is loop
        seen: list[Any] = []
        loop.call_soon(seen.append, 1)
        loop.call_soon(seen.append, 2)
        handle = loop.call_soon(seen.append, "cancelled")
        handle.cancel()
        fut = loop.create_future()
        loop.call_soon(fut.set_result, 3)
        seen.append(await fut)
        seen.append(await asyncio.gather(*(asyncio.sleep(0, i) for i in (4, 5))))
        return seen

    assert trio.run(run_on_loop, body) == [1, 2, 3, [4, 5]]


def test_timers_sleep_and_timeouts_use_the_clock() -> None:
    async def body(loop: HostedLoop) -> list[str]:
        seen: list[str] = []
        later = loop.call_later(0.05, seen.append, "later")
        sooner = loop.call_later(0.01, seen.append, "sooner")
        dropped = loop.call_later(0.02, seen.append, "dropped")
        dropped.cancel()
        assert sooner.when() < later.when()
        start = loop.time()
        await asyncio.sleep(0.1)
        assert loop.time() - start >= 0.1
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.Event().wait(), 0.02)
        return seen

    assert trio.run(run_on_loop, body) == ["sooner", "later"]


def test_a_trio_task_wakes_an_asyncio_task() -> None:
    async def main() -> None:
        async with trio.open_nursery() as nursery:
            loop = HostedLoop()  # type: ignore[abstract]
            await nursery.start(loop.run)
            with loop.entered():
                event = asyncio.Event()
                woken = trio.Event()

                async def waiter() -> None:
                    await event.wait()
                    woken.set()  # same thread: an asyncio task may set a trio event

                loop.create_task(waiter())
            await trio.sleep(0.01)  # the loop sleeps: nothing is ready
            event.set()  # from trio's side, outside the loop's callbacks
            with trio.fail_after(5):
                await woken.wait()
            nursery.cancel_scope.cancel()

    trio.run(main)


def test_call_soon_threadsafe_from_another_thread() -> None:
    async def body(loop: HostedLoop) -> str:
        fut = loop.create_future()
        threading.Thread(target=loop.call_soon_threadsafe, args=(fut.set_result, "x")).start()
        return str(await fut)

    assert trio.run(run_on_loop, body) == "x"


def test_a_failing_callback_is_logged_and_the_loop_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def boom() -> None:
        raise ValueError("boom")

    async def body(loop: HostedLoop) -> str:
        loop.call_soon(boom)
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        return "alive"

    with caplog.at_level(logging.ERROR, logger="ovtrio.grpc._hosted"):
        assert trio.run(run_on_loop, body) == "alive"
    assert any("boom" in str(r.exc_info) for r in caplog.records)


def test_no_running_loop_outside() -> None:
    async def main() -> None:
        async with trio.open_nursery() as nursery:
            loop = HostedLoop()  # type: ignore[abstract]
            await nursery.start(loop.run)
            with pytest.raises(RuntimeError):
                asyncio.get_running_loop()  # trio's code sees no asyncio loop
            with loop.entered():
                assert asyncio.get_running_loop() is loop
            with pytest.raises(RuntimeError):
                asyncio.get_running_loop()
            nursery.cancel_scope.cancel()

    trio.run(main)
