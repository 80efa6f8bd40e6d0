"""The infer-request pool: its default size, and how many inferences the batcher keeps running.

Real models on OpenVINO's CPU plugin with two streams (OPTIMAL_NUMBER_OF_INFER_REQUESTS = 2):
a slow one (tens of milliseconds per inference) and a tiny one (tens of microseconds, far below
batching.PIPELINE_FROM_S). The assertions count inferences running at once, never time.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import trio

from ovtrio import batching
from ovtrio.batching import Batcher
from ovtrio.config import BatchingConfig, ModelConfig
from ovtrio.load import Load
from ovtrio.runtime import CompiledModel, _pool, compile_version, ov_core
from tests import models

CHANNELS = 16
TWO_STREAMS = {"NUM_STREAMS": 2, "INFERENCE_PRECISION_HINT": "f32"}


@pytest.fixture(scope="module")
def slow(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("pool") / "slow"
    models.slow_model(base, channels=CHANNELS, hw=96, layers=12)
    return base


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("pool") / "tiny"
    models.add_model(base, shape=(-1, 4))
    return base


def compiled(base: Path, nireq: int) -> CompiledModel:
    cfg = ModelConfig(name="slow", base_path=base, plugin_config=TWO_STREAMS, nireq=nireq)
    return CompiledModel(*compile_version(ov_core(), cfg, base / "1"), nireq)


@pytest.mark.parametrize(
    ("nireq", "pool", "optimal"),
    [(0, 4, 2), (3, 3, 2), (1, 1, 1), (6, 6, 2)],
)
def test_pool_size(slow: Path, nireq: int, pool: int, optimal: int) -> None:
    cm = compiled(slow, nireq)
    assert int(cm.compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS")) == 2
    assert (cm.nireq, cm.optimal) == (pool, optimal)
    cm.close()


async def _peak_running(
    cm: CompiledModel, batcher: Batcher, callers: int, width: int, plus: float
) -> int:
    """Submit ``callers`` requests at once; the most inferences running at once meanwhile
    (counted around the real ``CompiledModel.infer``). Also checks every answer: the input
    plus ``plus``."""
    running = peak = 0
    infer = cm.infer

    async def counted(*args: Any, **kwargs: Any) -> Any:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        try:
            return await infer(*args, **kwargs)
        finally:
            running -= 1

    cm.infer = counted  # type: ignore[method-assign]
    answers: dict[int, Any] = {}

    async def call(i: int) -> None:
        answers[i] = (await batcher.submit([np.full((1, width), float(i), np.float32)]))[0]

    async with trio.open_nursery() as nursery:
        await nursery.start(batcher.run)
        async with trio.open_nursery() as clients:
            for i in range(callers):
                clients.start_soon(call, i)
        nursery.cancel_scope.cancel()
    for i in range(callers):
        np.testing.assert_array_equal(answers[i], np.full((1, width), i + plus, np.float32))
    return peak


@pytest.mark.parametrize(("max_batch", "allowed"), [(1, (1,)), (4, (1, 2, 4))])
def test_slow_model_keeps_the_whole_pool_running(
    slow: Path, max_batch: int, allowed: tuple[int, ...]
) -> None:
    """One inference queued behind each running one, batched or not."""
    cm = compiled(slow, 0)
    batcher = Batcher("slow:1", cm, BatchingConfig(mode="on", max_batch_size=max_batch))
    trio.run(batcher.warm_up)
    assert batcher.allowed == allowed
    assert batcher.max_running == cm.nireq == 4
    assert trio.run(_peak_running, cm, batcher, 8, CHANNELS, 0.0) == 4
    cm.close()


def test_fast_batched_model_keeps_the_optimal_number_running(
    tiny: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # "fast" is the warm-up's timing against PIPELINE_FROM_S: a bound no machine misses makes
    # the test about the choice, not about how busy the machine is
    monkeypatch.setattr(batching, "PIPELINE_FROM_S", 60.0)
    cm = compiled(tiny, 0)
    batcher = Batcher("tiny:1", cm, BatchingConfig(mode="on", max_batch_size=4))
    trio.run(batcher.warm_up)
    assert batcher.allowed == (1, 2, 4)
    assert batcher.max_running == cm.optimal == 2
    assert trio.run(_peak_running, cm, batcher, 24, 4, 1.0) == 2
    statistics = batcher.statistics()
    assert statistics.requests == 24
    assert statistics.batches < 24  # the requests waiting meanwhile were batched
    cm.close()


@pytest.mark.parametrize("private", [True, False], ids=["private-infer", "public-infer"])
def test_the_sole_request_of_a_fast_model_runs_inline(
    tiny: Path, private: bool, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Past ``INLINE_AFTER`` inferences, a request the load counts as the only one runs
    synchronously, through OpenVINO's private infer on the release it was checked against
    and through the public one otherwise; a task that serves no request never does."""
    caplog.set_level("INFO", logger=_pool.__name__)
    if not private:
        monkeypatch.setattr(_pool, "_PRIVATE_INFER_CHECKED", "1999.1")
    _pool._sync_infer.cache_clear()
    try:
        cm = compiled(tiny, 2)
    finally:
        _pool._sync_infer.cache_clear()
    assert ("public InferRequest.infer" in caplog.text) is not private
    # "fast" is judged from recent inference times against INLINE_BELOW_NS: a bound no
    # machine misses makes the test about the decision, not about how busy the machine is
    monkeypatch.setattr(_pool, "INLINE_BELOW_NS", 60 * 10**9)
    cm.load = Load()
    x = np.arange(8, dtype=np.float32).reshape(2, 4)

    async def main() -> None:
        for _ in range(_pool.INLINE_AFTER):
            (y,) = await cm.infer([x])  # not a request: never inline
        assert cm.inlined == 0
        assert cm.load is not None
        with cm.load.serving():
            for _ in range(10):
                (y,) = await cm.infer([x])
                np.testing.assert_array_equal(y, x + 1)

    trio.run(main)
    assert cm.inlined == 10
    cm.close()
