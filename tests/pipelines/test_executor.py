"""The executor on plans from test_graph's models, with numpy stand-ins for the models."""

from __future__ import annotations

import ctypes
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import trio
import trio.lowlevel

from ovtrio.errors import PipelineFailed, PipelineNoResults
from ovtrio.pipelines import (
    CustomNodeLibrary,
    NodeConfig,
    ThreadedNode,
    execute,
    load_python_node,
    validate,
)

from .test_custom_node import Counters, until
from .test_graph import (
    CHAIN,
    EXPAND,
    TWO_LEVELS,
    X,
    dl,
    lookup_model,
    parse,
    pipeline,
    plan_of,
    src,
)

Array = np.ndarray[Any, Any]


class Models:
    """tiny: +1; expand: 3 copies (+0, +10, +20); sum3: sum over dim 0. Records each call."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[int, ...]]] = []

    async def __call__(self, node: NodeConfig, inputs: Mapping[str, Array]) -> dict[str, Array]:
        x = inputs["input"]
        self.calls.append((node.name, x.shape))
        await trio.lowlevel.checkpoint()
        if node.model_name in ("tiny", "tiny2"):
            return {"output": x + 1}
        if node.model_name == "expand":
            return {"output": np.stack([x, x + 10, x + 20])}
        if node.model_name == "sum3":
            return {"output": x.sum(axis=0)}
        raise AssertionError(node.model_name)


def run(
    entry: dict[str, Any], inputs: dict[str, Array], **kw: Any
) -> tuple[dict[str, Array], Models]:
    models = Models()
    nodes = kw.get("nodes", {})
    if nodes:
        plan = validate(
            parse(entry),
            models=lookup_model,
            custom_nodes=lambda node: nodes[node.name].metadata(),
        )
    else:
        plan = plan_of(entry)

    async def main() -> dict[str, Array]:
        return await execute(
            plan,
            inputs,
            run_model=models,
            nodes=nodes,
            limiter=trio.CapacityLimiter(2),
        )

    return trio.run(main), models


def x(*shape: int) -> Array:
    return np.arange(np.prod(shape), dtype=np.float32).reshape(shape)


def test_chain() -> None:
    out, models = run(CHAIN, {"x": x(2, 16)})
    np.testing.assert_array_equal(out["y"], x(2, 16) + 2)
    assert [c[0] for c in models.calls] == ["t1", "t2"]


def test_fixed_demultiplexer_gathered_by_the_response() -> None:
    entry = pipeline([EXPAND, dl("t", "tiny", {"input": src("e", "e")})], {"y": src("t", "t")})
    out, models = run(entry, {"x": x(2, 16)})
    assert out["y"].shape == (3, 2, 16)
    for i in range(3):
        np.testing.assert_array_equal(out["y"][i], x(2, 16) + 10 * i + 1)
    assert sorted(models.calls)[1:] == [("t", (2, 16))] * 3


def test_gathered_by_a_node() -> None:
    entry = pipeline(
        [
            EXPAND,
            dl("t", "tiny", {"input": src("e", "e")}),
            dl("s", "sum3", {"input": src("t", "t")}, gather_from_node="e"),
        ],
        {"y": src("s", "s")},
    )
    out, _ = run(entry, {"x": x(1, 16)})
    np.testing.assert_array_equal(out["y"], 3 * x(1, 16) + 30 + 3)


def test_two_nested_levels_outermost_first() -> None:
    out, models = run(pipeline(TWO_LEVELS, {"y": src("t", "t")}), {"x": x(1, 16)})
    assert out["y"].shape == (3, 3, 1, 16)
    np.testing.assert_array_equal(out["y"][2, 1], x(1, 16) + 20 + 10 + 1)
    assert len(models.calls) == 1 + 3 + 9


def test_request_demultiplexed_dynamically_runs_every_shard_concurrently() -> None:
    entry = pipeline([dl("t", "tiny", {"input": X})], {"y": src("t", "t")}, demultiply_count=-1)
    out, models = run(entry, {"x": x(5, 1, 16)})
    np.testing.assert_array_equal(out["y"], x(5, 1, 16) + 1)
    assert models.calls == [("t", (1, 16))] * 5


def test_request_demultiplexer_errors() -> None:
    entry = pipeline([dl("t", "tiny", {"input": X})], {"y": src("t", "t")}, demultiply_count=-1)
    with pytest.raises(PipelineNoResults):
        run(entry, {"x": x(0, 1, 16)})
    with pytest.raises(PipelineFailed, match="Wrong number of dimensions"):
        run(entry, {"x": x(4, 16)})
    fixed = pipeline([dl("t", "tiny", {"input": X})], {"y": src("t", "t")}, demultiply_count=3)
    with pytest.raises(PipelineFailed, match="Should match demultiply count"):
        run(fixed, {"x": x(2, 1, 16)})


def test_a_failing_node_fails_the_request_and_cancels_the_rest() -> None:
    node = load_python_node("tests.pipelines.pynodes:fails", {}, name="f")
    entry = pipeline(
        [
            {
                "name": "f",
                "type": "python",
                "callable": "tests.pipelines.pynodes:fails",
                "inputs": [{"in": src("t", "t")}],
                "outputs": [{"data_item": "out", "alias": "out"}],
            },
            dl("t", "tiny2", {"input": X}),
        ],
        {"y": src("f", "out")},
    )
    nodes: dict[str, ThreadedNode] = {"f": node}
    with pytest.raises(Exception, match="Custom node failed during execution"):
        run(entry, {"x": x(1, 16)}, nodes=nodes)


class Blocked:
    """A model whose inference never ends (queued behind others); counts its cancellations."""

    def __init__(self) -> None:
        self.cancelled = 0

    async def __call__(self, node: NodeConfig, inputs: Mapping[str, Array]) -> dict[str, Array]:
        try:
            await trio.sleep_forever()
        except trio.Cancelled:
            self.cancelled += 1
            raise
        raise AssertionError("unreachable")


def test_cancel_stops_every_branch(node_libs: dict[str, Path], tmp_path: Path) -> None:
    """A custom node inside its library and a model node waiting for its model, in two
    branches: cancelling the request cancels the model work and abandons the custom node's
    call, whose outputs go back to the library unread. Counters, not timing."""
    private = tmp_path / "libgate_private.so"  # its own gate, closed whatever ran before
    shutil.copy(node_libs["gate"], private)
    counters = Counters(private)
    gate = counters.dll
    gate.entered.restype = ctypes.c_long
    node = CustomNodeLibrary(private).initialize({"add_value": "1"}, name="g")
    entry = pipeline(
        [
            {
                "name": "g",
                "type": "custom",
                "library_name": "gate",
                "inputs": [{"in": X}],
                "outputs": [{"data_item": "out", "alias": "out"}],
            },
            dl("t", "tiny", {"input": X}),
        ],
        {"y": src("g", "out"), "z": src("t", "t")},
    )
    plan = validate(parse(entry), models=lookup_model, custom_nodes=lambda _: node.metadata())
    blocked = Blocked()

    async def main() -> None:
        limiter = trio.CapacityLimiter(2)
        with trio.CancelScope() as scope:
            async with trio.open_nursery() as nursery:

                async def request() -> None:
                    await execute(
                        plan, {"x": x(1, 16)}, run_model=blocked, nodes={"g": node}, limiter=limiter
                    )

                nursery.start_soon(request)
                await until(lambda: gate.entered() == 1)
                scope.cancel()
        assert blocked.cancelled == 1
        assert node.statistics().running == 1  # the C call cannot be interrupted ...
        gate.open_gate()
        await until(lambda: node.statistics().running == 0)
        assert node.statistics().abandoned == 1  # ... its result is dropped
        node.close()

    trio.run(main)
    assert counters.live_buffers == 0
