"""_patches.hypercorn.AppQueue behaves as the trio memory channel hypercorn made per request:
each scenario runs against both and compares what every step saw."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import trio
import trio.testing

from ovtrio._patches.hypercorn import AppQueue

MAX = 3


class _Channel:
    """trio's memory channel behind AppQueue's four calls."""

    def __init__(self, max_size: int) -> None:
        self.tx, self.rx = trio.open_memory_channel[Any](max_size)
        self.send, self.send_nowait = self.tx.send, self.tx.send_nowait
        self.receive, self.receive_nowait = self.rx.receive, self.rx.receive_nowait


def _nowait(call: Callable[[], Any]) -> Any:
    try:
        return ("got", call())
    except trio.WouldBlock:
        return "WouldBlock"


async def fill_then_overflow(q: Any, log: list[Any]) -> None:
    for i in range(MAX + 1):
        log.append(_nowait(lambda i=i: q.send_nowait(i)))
    for _ in range(MAX + 1):
        log.append(_nowait(q.receive_nowait))


async def receive_waits_for_a_send(q: Any, log: list[Any]) -> None:
    async with trio.open_nursery() as nursery:

        async def late() -> None:
            await trio.sleep(0.01)
            log.append("sending")
            q.send_nowait("x")

        nursery.start_soon(late)
        log.append(await q.receive())
        log.append(_nowait(q.receive_nowait))


async def send_waits_for_room(q: Any, log: list[Any]) -> None:
    for i in range(MAX):
        await q.send(i)
    async with trio.open_nursery() as nursery:

        async def blocked() -> None:
            await q.send("last")
            log.append("sent last")

        nursery.start_soon(blocked)
        await trio.sleep(0.01)
        log.append(("sent last before any receive", "sent last" in log))
        received = [await q.receive() for _ in range(MAX + 1)]
    log.append(("received", received))
    log.sort(key=repr)  # when the unblocked sender runs is the scheduler's choice


async def cancelled_receive_loses_nothing(q: Any, log: list[Any]) -> None:
    with trio.move_on_after(0.01) as scope:
        await q.receive()
    log.append(scope.cancelled_caught)
    q.send_nowait("after")
    log.append(await q.receive())


async def cancelled_send_is_not_queued(q: Any, log: list[Any]) -> None:
    for i in range(MAX):
        q.send_nowait(i)
    with trio.move_on_after(0.01) as scope:
        await q.send("never")
    log.append(scope.cancelled_caught)
    log.extend(_nowait(q.receive_nowait) for _ in range(MAX + 1))


async def cancelled_before_a_ready_receive(q: Any, log: list[Any]) -> None:
    """A call in a cancelled scope raises Cancelled and takes nothing, even when ready."""
    q.send_nowait("kept")
    with trio.CancelScope() as scope:
        scope.cancel()
        await q.receive()
    log.append(scope.cancelled_caught)
    with trio.CancelScope() as scope:
        scope.cancel()
        await q.send("dropped")
    log.append(scope.cancelled_caught)
    log.extend(_nowait(q.receive_nowait) for _ in range(2))


async def ready_calls_are_checkpoints(q: Any, log: list[Any]) -> None:
    """A send and a receive that need not wait still yield to the scheduler."""
    with trio.testing.assert_checkpoints():
        await q.send(1)
    with trio.testing.assert_checkpoints():
        log.append(await q.receive())


SCENARIOS: list[Callable[[Any, list[Any]], Awaitable[None]]] = [
    fill_then_overflow,
    receive_waits_for_a_send,
    send_waits_for_room,
    cancelled_receive_loses_nothing,
    cancelled_send_is_not_queued,
    cancelled_before_a_ready_receive,
    ready_calls_are_checkpoints,
]


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda f: f.__name__)
def test_app_queue_behaves_as_a_memory_channel(scenario: Any) -> None:
    logs = []
    for make in (AppQueue, _Channel):
        log: list[Any] = []
        trio.run(scenario, make(MAX), log, clock=trio.testing.MockClock(autojump_threshold=0))
        logs.append(log)
    assert logs[0] == logs[1]
    assert logs[0], "the scenario logged nothing"
