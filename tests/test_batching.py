"""The batcher and the direct scheduler against a fake runtime, on trio's virtual clock.

``FakeRuntime`` implements ``scheduler.Runtime``: an inference takes ``INFER_S`` of virtual
time, answers its input plus one, and fails when an input holds -1. Its input has a dynamic
batch axis and a dynamic second dimension, so the batcher's warm-up allows every power of
two up to ``max_batch_size`` without timing anything. No OpenVINO, no real sleeps.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import numpy as np
import pytest
import trio
import trio.testing

from ovtrio.batching import Batcher
from ovtrio.config import BatchingConfig
from ovtrio.errors import InferenceFailed, ResourceExhausted
from ovtrio.scheduler import DirectScheduler, Runtime
from ovtrio.tensors import TensorSpec, datatype_of_ov

INFER_S = 0.010
WIDTH = 3


class FakeRuntime:
    def __init__(self, nireq: int = 1, optimal: int = 1) -> None:
        row = datatype_of_ov("f32")
        assert row is not None
        dynamic = ((0, -1), (0, -1))
        self.inputs = (TensorSpec("x", row, (-1, -1), dynamic, ""),)
        self.outputs = (TensorSpec("y", row, (-1, -1), dynamic, ""),)
        self.batch_index: tuple[int | None, ...] = (0,)
        self.nireq = nireq
        self.optimal = optimal
        self.waiting = 0
        self.started: list[tuple[float, int]] = []
        """(virtual time, rows) of every inference started."""
        self.running = 0
        self.peak = 0
        self.cancelled = 0

    async def infer(
        self, arrays: Sequence[np.ndarray[Any, Any]], expect_rows: int | None = None
    ) -> list[np.ndarray[Any, Any]]:
        (x,) = arrays
        assert expect_rows == x.shape[0]
        self.started.append((trio.current_time(), x.shape[0]))
        self.running += 1
        self.peak = max(self.peak, self.running)
        try:
            await trio.sleep(INFER_S)
        except trio.Cancelled:
            self.cancelled += 1
            raise
        finally:
            self.running -= 1
        if (x == -1).any():
            raise InferenceFailed("Internal inference error - the fake failed")
        return [x + 1]

    @property
    def sizes(self) -> list[int]:
        return [rows for _, rows in self.started]


def _runtime_protocol(fake: FakeRuntime) -> Runtime:
    return fake  # mypy checks that the fake implements the protocol


def run(test: Callable[[], Awaitable[None]]) -> None:
    trio.run(test, clock=trio.testing.MockClock(autojump_threshold=0))


def rows(value: float, n: int = 1, width: int = WIDTH) -> np.ndarray[Any, Any]:
    return np.full((n, width), value, np.float32)


async def batcher(runtime: FakeRuntime, **settings: Any) -> Batcher:
    cfg = BatchingConfig(mode="on", **{"max_batch_size": 4, **settings})
    b = Batcher.for_model("m", 1, _runtime_protocol(runtime), cfg)
    assert b is not None
    await b.warm_up()
    return b


class Clients:
    """Submits requests from tasks and keeps what each got (outputs or the exception)."""

    def __init__(self, scheduler: Batcher | DirectScheduler, nursery: trio.Nursery) -> None:
        self.scheduler = scheduler
        self.nursery = nursery
        self.got: dict[str, Any] = {}
        self.scopes: dict[str, trio.CancelScope] = {}

    def send(self, key: str, x: np.ndarray[Any, Any]) -> None:
        self.nursery.start_soon(self.call, key, x)

    async def call(self, key: str, x: np.ndarray[Any, Any]) -> None:
        with trio.CancelScope() as scope:
            self.scopes[key] = scope
            try:
                self.got[key] = (await self.scheduler.submit([x]))[0]
            except (InferenceFailed, ResourceExhausted) as exc:
                self.got[key] = exc
        if scope.cancelled_caught:
            self.got[key] = "cancelled"


Script = Callable[[Batcher, Clients], Awaitable[None]]


def scenario(fake: FakeRuntime, script: Script, **settings: Any) -> tuple[Batcher, Clients]:
    """Run ``script`` on the virtual clock with a warmed-up batcher serving ``fake`` (its
    task running) and clients whose requests all end before the batcher stops."""
    done: list[tuple[Batcher, Clients]] = []

    async def main() -> None:
        b = await batcher(fake, **settings)
        async with trio.open_nursery() as nursery:
            await nursery.start(b.run)
            async with trio.open_nursery() as requests:
                clients = Clients(b, requests)
                await script(b, clients)
            nursery.cancel_scope.cancel()
        done.append((b, clients))

    run(main)
    return done[0]


def test_warm_up_allows_powers_of_two_up_to_max_batch() -> None:
    async def main() -> None:
        b = await batcher(FakeRuntime(), max_batch_size=6)
        assert b.allowed == (1, 2, 4)
        assert b.max_batch == 6
        assert b.max_running == 1

    run(main)


async def _one_running_then(clients: Clients, *later: tuple[str, np.ndarray[Any, Any]]) -> None:
    """A request that takes the only infer request, then ``later`` requests, which queue."""
    clients.send("first", rows(100))
    await trio.sleep(INFER_S / 10)
    for key, x in later:
        clients.send(key, x)


def test_batches_form_up_to_the_largest_allowed_size() -> None:
    """One request holds the only infer request; the nine that arrive meanwhile run as
    batches of 4, 4 and 1, and each caller gets its own rows back."""
    fake = FakeRuntime()

    async def script(b: Batcher, clients: Clients) -> None:
        await _one_running_then(clients, *((str(i), rows(i)) for i in range(9)))

    _, clients = scenario(fake, script)
    assert fake.sizes == [1, 4, 4, 1]
    np.testing.assert_array_equal(clients.got["first"], rows(101))
    for i in range(9):
        np.testing.assert_array_equal(clients.got[str(i)], rows(i + 1))


def test_requests_with_other_shapes_are_not_batched_together() -> None:
    fake = FakeRuntime()
    shaped = [(str(i), rows(i, width=WIDTH + i % 2)) for i in range(4)]

    async def script(b: Batcher, clients: Clients) -> None:
        await _one_running_then(clients, *shaped)

    _, clients = scenario(fake, script)
    assert fake.sizes == [1, 2, 2]
    for key, x in shaped:
        np.testing.assert_array_equal(clients.got[key], x + 1)


def test_linger_waits_for_more_requests_until_its_deadline() -> None:
    """``max_delay_us`` 2 ms: a request arriving 1 ms after the first joins its batch, which
    starts at the deadline; a lone later request waits its own 2 ms."""
    fake = FakeRuntime()
    t0: list[float] = []

    async def script(b: Batcher, clients: Clients) -> None:
        t0.append(trio.current_time())
        clients.send("a", rows(1))
        await trio.sleep(0.001)
        clients.send("b", rows(2))
        await trio.sleep(0.020)
        clients.send("c", rows(3))

    _, clients = scenario(fake, script, max_delay_us=2000)
    assert [(round((t - t0[0]) * 1e3, 6), n) for t, n in fake.started] == [(2.0, 2), (23.0, 1)]
    np.testing.assert_array_equal(clients.got["b"], rows(3))


def test_linger_ends_as_soon_as_the_largest_batch_is_queued() -> None:
    fake = FakeRuntime()
    t0: list[float] = []

    async def script(b: Batcher, clients: Clients) -> None:
        t0.append(trio.current_time())
        for i in range(3):
            clients.send(str(i), rows(i))
        await trio.sleep(0.001)
        clients.send("3", rows(3))

    scenario(fake, script, max_delay_us=50_000)
    assert [(round((t - t0[0]) * 1e3, 6), n) for t, n in fake.started] == [(1.0, 4)]


def test_a_full_queue_refuses_at_once() -> None:
    fake = FakeRuntime()

    async def script(b: Batcher, clients: Clients) -> None:
        await _one_running_then(clients, ("q1", rows(1)), ("q2", rows(2)))
        await trio.sleep(INFER_S / 100)
        t = trio.current_time()
        with pytest.raises(ResourceExhausted, match="queue of 2 requests is full"):
            await b.submit([rows(3)])
        assert trio.current_time() == t
        assert b.queue_length == 2

    b, clients = scenario(fake, script, max_queue_size=2)
    np.testing.assert_array_equal(clients.got["q2"], rows(3))
    assert b.statistics().rejected == b.rejected == 1


def test_a_caller_cancelled_while_queued_leaves_the_queue_and_is_never_computed() -> None:
    fake = FakeRuntime()

    async def script(b: Batcher, clients: Clients) -> None:
        await _one_running_then(clients, ("gone", rows(-5)), ("stays", rows(2)))
        await trio.sleep(INFER_S / 10)
        assert b.queue_length == 2
        clients.scopes["gone"].cancel()
        await trio.sleep(INFER_S / 100)
        assert b.queue_length == 1
        clients.send("another", rows(3))  # the place it held is free again

    b, clients = scenario(fake, script, max_queue_size=2)
    assert clients.got["gone"] == "cancelled"
    np.testing.assert_array_equal(clients.got["another"], rows(4))
    assert fake.sizes == [1, 2]
    stats = b.statistics()
    assert (stats.cancelled_queued, stats.cancelled_running, stats.rejected) == (1, 0, 0)


def test_a_batch_whose_callers_all_left_is_cancelled() -> None:
    fake = FakeRuntime()

    async def script(b: Batcher, clients: Clients) -> None:
        await _one_running_then(clients, ("a", rows(1)), ("b", rows(2)))
        await trio.sleep(INFER_S * 1.5)  # the batch of a and b runs
        assert b.statistics().running == (2,)
        clients.scopes["a"].cancel()
        await trio.sleep(INFER_S / 100)
        assert fake.cancelled == 0  # b still waits for it
        clients.scopes["b"].cancel()

    b, _ = scenario(fake, script)
    assert fake.sizes == [1, 2]
    assert fake.cancelled == 1
    stats = b.statistics()
    assert (stats.cancelled_queued, stats.cancelled_running) == (0, 2)
    assert stats.batches == 1  # the cancelled batch does not count
    assert stats.running == ()


def test_a_failing_inference_fails_only_its_batch() -> None:
    fake = FakeRuntime()

    async def script(b: Batcher, clients: Clients) -> None:
        await _one_running_then(
            clients,
            ("bad", rows(-1, width=5)),
            ("bad's neighbour", rows(7, width=5)),
            ("good", rows(1)),
            ("good too", rows(2)),
        )
        await trio.sleep(INFER_S * 4)  # every batch ran
        # the batcher keeps serving
        np.testing.assert_array_equal((await b.submit([rows(5)]))[0], rows(6))

    _, clients = scenario(fake, script)
    assert fake.sizes == [1, 2, 2, 1]
    for key in ("bad", "bad's neighbour"):
        assert isinstance(clients.got[key], InferenceFailed), clients.got[key]
    np.testing.assert_array_equal(clients.got["good"], rows(2))
    np.testing.assert_array_equal(clients.got["good too"], rows(3))


def test_statistics_count_batches_requests_and_sizes() -> None:
    fake = FakeRuntime(nireq=2, optimal=2)

    async def script(b: Batcher, clients: Clients) -> None:
        clients.send("one", rows(0))
        clients.send("two", rows(0, n=2))
        await trio.sleep(INFER_S / 10)
        assert fake.running == 2
        for i in range(5):
            clients.send(str(i), rows(i))
        await trio.sleep(INFER_S / 100)
        assert b.statistics().queue_length == 5

    b, _ = scenario(fake, script, max_batch_size=8)
    stats = b.statistics()
    assert sorted(fake.sizes[:2]) == [1, 2]  # the two that found a free infer request
    assert fake.sizes[2:] == [4, 1]
    assert fake.peak == 2
    assert stats.batches == 4
    assert stats.requests == 7
    assert stats.batch_size_histogram == {1: 2, 2: 1, 4: 1}
    assert stats.allowed_batch_sizes == (1, 2, 4, 8)
    assert stats.queue_length == 0
    assert stats.max_queue_size == 256
    assert (stats.cancelled_queued, stats.cancelled_running, stats.rejected) == (0, 0, 0)


def test_unequal_batch_sizes_are_named_for_a_batcher_only() -> None:
    fake = FakeRuntime()

    async def main() -> None:
        b = await batcher(fake)
        assert b.unequal_batch_sizes([rows(0, n=2)]) is None
        direct = DirectScheduler("m", fake, 4, check_rows=True)
        assert direct.unequal_batch_sizes([rows(0, n=2), rows(0, n=3)]) is None

    run(main)


def test_direct_scheduler_checks_rows_and_refuses_when_its_queue_is_full() -> None:
    async def main() -> None:
        fake = FakeRuntime()
        direct = DirectScheduler("m", fake, 1, check_rows=True)
        np.testing.assert_array_equal((await direct.submit([rows(1, n=3)]))[0], rows(2, n=3))
        fake.waiting = 1
        assert direct.queue_length == 1
        with pytest.raises(ResourceExhausted, match="Model m is overloaded"):
            await direct.submit([rows(1)])
        assert direct.rejected == 1
        assert direct.statistics() is None

    run(main)


def test_a_batched_request_is_freed_without_the_garbage_collector() -> None:
    """Once answered, nothing of a request stays in a reference cycle: its arrays are freed
    by reference counting (an idle server never runs the cycle collector)."""
    import gc
    import weakref

    freed: list[bool] = []

    async def script(_b: Batcher, clients: Clients) -> None:
        x, y = rows(1.0), rows(2.0)
        refs = [weakref.ref(x), weakref.ref(y)]
        clients.send("a", x)
        clients.send("b", y)
        del x, y
        await trio.sleep(1)
        clients.got.clear()  # the answers are views of the batch's output, not of the inputs
        freed.extend(r() is None for r in refs)

    gc.disable()
    try:
        fake = FakeRuntime(nireq=1)
        scenario(fake, script, max_delay_us=1000)
    finally:
        gc.enable()
    assert fake.sizes[-1] == 2  # the two ran as one batch
    assert freed == [True, True]
