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


class Answers:
    """Submits requests from tasks and keeps what each got (outputs or the exception)."""

    def __init__(self, scheduler: Batcher | DirectScheduler) -> None:
        self.scheduler = scheduler
        self.got: dict[str, Any] = {}
        self.scopes: dict[str, trio.CancelScope] = {}

    async def call(self, key: str, x: np.ndarray[Any, Any]) -> None:
        with trio.CancelScope() as scope:
            self.scopes[key] = scope
            try:
                self.got[key] = (await self.scheduler.submit([x]))[0]
            except (InferenceFailed, ResourceExhausted) as exc:
                self.got[key] = exc
        if scope.cancelled_caught:
            self.got[key] = "cancelled"


def test_warm_up_allows_powers_of_two_up_to_max_batch() -> None:
    async def main() -> None:
        b = await batcher(FakeRuntime(), max_batch_size=6)
        assert b.allowed == (1, 2, 4)
        assert b.max_batch == 6
        assert b.max_running == 1

    run(main)


def test_batches_form_up_to_the_largest_allowed_size() -> None:
    """One request holds the only infer request; the nine that arrive meanwhile run as
    batches of 4, 4 and 1, and each caller gets its own rows back."""

    async def main() -> None:
        fake = FakeRuntime()
        b = await batcher(fake)
        answers = Answers(b)
        async with trio.open_nursery() as nursery:
            await nursery.start(b.run)
            async with trio.open_nursery() as clients:
                clients.start_soon(answers.call, "first", rows(100))
                await trio.sleep(INFER_S / 10)
                for i in range(9):
                    clients.start_soon(answers.call, str(i), rows(i))
            nursery.cancel_scope.cancel()
        assert fake.sizes == [1, 4, 4, 1]
        np.testing.assert_array_equal(answers.got["first"], rows(101))
        for i in range(9):
            np.testing.assert_array_equal(answers.got[str(i)], rows(i + 1))

    run(main)


def test_requests_with_other_shapes_are_not_batched_together() -> None:
    async def main() -> None:
        fake = FakeRuntime()
        b = await batcher(fake)
        answers = Answers(b)
        async with trio.open_nursery() as nursery:
            await nursery.start(b.run)
            async with trio.open_nursery() as clients:
                clients.start_soon(answers.call, "first", rows(100))
                await trio.sleep(INFER_S / 10)
                for i in range(4):
                    clients.start_soon(answers.call, str(i), rows(i, width=WIDTH + i % 2))
            nursery.cancel_scope.cancel()
        assert fake.sizes == [1, 2, 2]
        for i in range(4):
            np.testing.assert_array_equal(answers.got[str(i)], rows(i + 1, width=WIDTH + i % 2))

    run(main)


def test_linger_waits_for_more_requests_until_its_deadline() -> None:
    """``max_delay_us`` 2 ms: a request arriving 1 ms after the first joins its batch, which
    starts at the deadline; a lone later request waits its own 2 ms."""

    async def main() -> None:
        fake = FakeRuntime()
        b = await batcher(fake, max_delay_us=2000)
        answers = Answers(b)
        t0 = trio.current_time()
        async with trio.open_nursery() as nursery:
            await nursery.start(b.run)
            async with trio.open_nursery() as clients:
                clients.start_soon(answers.call, "a", rows(1))
                await trio.sleep(0.001)
                clients.start_soon(answers.call, "b", rows(2))
                await trio.sleep(0.020)
                clients.start_soon(answers.call, "c", rows(3))
            nursery.cancel_scope.cancel()
        started = [(round((t - t0) * 1e3, 6), n) for t, n in fake.started]
        assert started == [(2.0, 2), (23.0, 1)]
        np.testing.assert_array_equal(answers.got["b"], rows(3))

    run(main)


def test_linger_ends_as_soon_as_the_largest_batch_is_queued() -> None:
    async def main() -> None:
        fake = FakeRuntime()
        b = await batcher(fake, max_delay_us=50_000)
        answers = Answers(b)
        t0 = trio.current_time()
        async with trio.open_nursery() as nursery:
            await nursery.start(b.run)
            async with trio.open_nursery() as clients:
                for i in range(3):
                    clients.start_soon(answers.call, str(i), rows(i))
                await trio.sleep(0.001)
                clients.start_soon(answers.call, "3", rows(3))
            nursery.cancel_scope.cancel()
        assert [(round((t - t0) * 1e3, 6), n) for t, n in fake.started] == [(1.0, 4)]

    run(main)


def test_a_full_queue_refuses_at_once() -> None:
    async def main() -> None:
        fake = FakeRuntime()
        b = await batcher(fake, max_queue_size=2)
        answers = Answers(b)
        async with trio.open_nursery() as nursery:
            await nursery.start(b.run)
            async with trio.open_nursery() as clients:
                clients.start_soon(answers.call, "running", rows(0))
                await trio.sleep(INFER_S / 10)
                clients.start_soon(answers.call, "q1", rows(1))
                clients.start_soon(answers.call, "q2", rows(2))
                await trio.sleep(INFER_S / 100)
                t = trio.current_time()
                with pytest.raises(ResourceExhausted, match="queue of 2 requests is full"):
                    await b.submit([rows(3)])
                assert trio.current_time() == t
                assert b.queue_length == 2
            nursery.cancel_scope.cancel()
        np.testing.assert_array_equal(answers.got["q2"], rows(3))
        assert b.statistics().rejected == b.rejected == 1

    run(main)


def test_a_caller_cancelled_while_queued_leaves_the_queue_and_is_never_computed() -> None:
    async def main() -> None:
        fake = FakeRuntime()
        b = await batcher(fake, max_queue_size=2)
        answers = Answers(b)
        async with trio.open_nursery() as nursery:
            await nursery.start(b.run)
            async with trio.open_nursery() as clients:
                clients.start_soon(answers.call, "running", rows(0))
                await trio.sleep(INFER_S / 10)
                clients.start_soon(answers.call, "gone", rows(-5))
                clients.start_soon(answers.call, "stays", rows(2))
                await trio.sleep(INFER_S / 10)
                assert b.queue_length == 2
                answers.scopes["gone"].cancel()
                await trio.sleep(INFER_S / 100)
                assert b.queue_length == 1
                # the place it held is free again
                clients.start_soon(answers.call, "another", rows(3))
            nursery.cancel_scope.cancel()
        assert answers.got["gone"] == "cancelled"
        np.testing.assert_array_equal(answers.got["another"], rows(4))
        assert fake.sizes == [1, 2]
        stats = b.statistics()
        assert (stats.cancelled_queued, stats.cancelled_running, stats.rejected) == (1, 0, 0)

    run(main)


def test_a_batch_whose_callers_all_left_is_cancelled() -> None:
    async def main() -> None:
        fake = FakeRuntime()
        b = await batcher(fake)
        answers = Answers(b)
        async with trio.open_nursery() as nursery:
            await nursery.start(b.run)
            async with trio.open_nursery() as clients:
                clients.start_soon(answers.call, "running", rows(0))
                await trio.sleep(INFER_S / 10)
                clients.start_soon(answers.call, "a", rows(1))
                clients.start_soon(answers.call, "b", rows(2))
                await trio.sleep(INFER_S * 1.5)  # the batch of a and b runs
                assert b.statistics().running == (2,)
                answers.scopes["a"].cancel()
                await trio.sleep(INFER_S / 100)
                assert fake.cancelled == 0  # b still waits for it
                answers.scopes["b"].cancel()
            nursery.cancel_scope.cancel()
        assert fake.sizes == [1, 2]
        assert fake.cancelled == 1
        stats = b.statistics()
        assert (stats.cancelled_queued, stats.cancelled_running) == (0, 2)
        assert stats.batches == 1  # the cancelled batch does not count
        assert stats.running == ()

    run(main)


def test_a_failing_inference_fails_only_its_batch() -> None:
    async def main() -> None:
        fake = FakeRuntime()
        b = await batcher(fake)
        answers = Answers(b)
        async with trio.open_nursery() as nursery:
            await nursery.start(b.run)
            async with trio.open_nursery() as clients:
                clients.start_soon(answers.call, "first", rows(100))
                await trio.sleep(INFER_S / 10)
                clients.start_soon(answers.call, "bad", rows(-1, width=5))
                clients.start_soon(answers.call, "bad's neighbour", rows(7, width=5))
                clients.start_soon(answers.call, "good", rows(1))
                clients.start_soon(answers.call, "good too", rows(2))
            # the batcher keeps serving
            np.testing.assert_array_equal((await b.submit([rows(5)]))[0], rows(6))
            nursery.cancel_scope.cancel()
        assert fake.sizes == [1, 2, 2, 1]
        for key in ("bad", "bad's neighbour"):
            assert isinstance(answers.got[key], InferenceFailed), answers.got[key]
        np.testing.assert_array_equal(answers.got["good"], rows(2))
        np.testing.assert_array_equal(answers.got["good too"], rows(3))

    run(main)


def test_statistics_count_batches_requests_and_sizes() -> None:
    async def main() -> None:
        fake = FakeRuntime(nireq=2, optimal=2)
        b = await batcher(fake, max_batch_size=8)
        answers = Answers(b)
        async with trio.open_nursery() as nursery:
            await nursery.start(b.run)
            async with trio.open_nursery() as clients:
                clients.start_soon(answers.call, "one", rows(0))
                clients.start_soon(answers.call, "two", rows(0, n=2))
                await trio.sleep(INFER_S / 10)
                assert fake.running == 2
                for i in range(5):
                    clients.start_soon(answers.call, str(i), rows(i))
                await trio.sleep(INFER_S / 100)
                assert b.statistics().queue_length == 5
            nursery.cancel_scope.cancel()
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

    run(main)


def test_unequal_batch_sizes_are_named_for_a_batcher_only() -> None:
    async def main() -> None:
        fake = FakeRuntime()
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
