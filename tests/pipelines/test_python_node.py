"""ovtrio's Python nodes: "module:function" with declared metadata and the custom node contract."""

from __future__ import annotations

import numpy as np
import pytest
import trio

from ovtrio.errors import InvalidArgument, NodeLibraryFailed
from ovtrio.pipelines import NodeMeta, TensorMeta, load_python_node

from . import pynodes

MODULE = "tests.pipelines.pynodes"


def test_metadata_and_execute() -> None:
    with load_python_node(f"{MODULE}:add", {"add_value": "2"}, name="n") as node:
        assert node.metadata() == NodeMeta(
            {"in": TensorMeta("FP32", (-1, -1))}, {"out": TensorMeta("FP32", (-1, -1))}
        )
        x = np.ones((2, 3), np.float32)
        np.testing.assert_array_equal(node.execute_sync({"in": x})["out"], x + 2)
        assert node.statistics().executions == 1


def test_inputs_are_checked_and_read_only() -> None:
    with (
        load_python_node(f"{MODULE}:add", name="n") as node,
        pytest.raises(InvalidArgument) as info,
    ):
        node.execute_sync({"in": np.ones((2, 3), np.int64)})
    assert info.value.message.startswith("Invalid input precision - Node: n input: in")
    node = load_python_node(f"{MODULE}:writes_its_input")
    with node, pytest.raises(NodeLibraryFailed) as failed:
        node.execute_sync({"in": np.ones((1, 1), np.float32)})
    assert failed.value.code == "NODE_LIBRARY_EXECUTION_FAILED"


@pytest.mark.parametrize(
    ("spec", "code"),
    [
        ("no_colon", "NODE_LIBRARY_LOAD_FAILED_OPEN"),
        ("tests.pipelines.does_not_exist:f", "NODE_LIBRARY_LOAD_FAILED_OPEN"),
        (f"{MODULE}:missing", "NODE_LIBRARY_LOAD_FAILED_SYM"),
        (f"{MODULE}:Array", "NODE_LIBRARY_METADATA_FAILED"),  # callable, but declares nothing
        (f"{MODULE}:undeclared", "NODE_LIBRARY_METADATA_FAILED"),
        (f"{MODULE}:bad_metadata", "NODE_LIBRARY_METADATA_FAILED"),
    ],
)
def test_load_errors(spec: str, code: str) -> None:
    with pytest.raises(NodeLibraryFailed) as info:
        load_python_node(spec)
    assert info.value.code == code


@pytest.mark.parametrize(
    ("function", "code", "message"),
    [
        (
            "fails",
            "NODE_LIBRARY_EXECUTION_FAILED",
            "Custom node failed during execution - node: n raised ValueError('no')",
        ),
        (
            "returns_list",
            "NODE_LIBRARY_OUTPUTS_CORRUPTED",
            "Custom node library has returned corrupted outputs handle",
        ),
    ],
)
def test_execution_errors(function: str, code: str, message: str) -> None:
    with (
        load_python_node(f"{MODULE}:{function}", name="n") as node,
        pytest.raises(NodeLibraryFailed) as info,
    ):
        node.execute_sync({"in": np.ones((1, 1), np.float32)})
    assert info.value.code == code
    assert info.value.message.startswith(message)


def test_cancelled_execute_drops_its_result() -> None:
    results: list[object] = []

    async def main() -> None:
        node = load_python_node(f"{MODULE}:gated")
        with trio.CancelScope() as scope:
            async with trio.open_nursery() as nursery:

                async def call() -> None:
                    x = np.ones((1, 1), np.float32)
                    results.append(await node.execute({"in": x}, limiter=trio.CapacityLimiter(1)))

                nursery.start_soon(call)
                await trio.to_thread.run_sync(pynodes.entered.acquire)
                scope.cancel()
        assert node.statistics().running == 1
        pynodes.gate.set()
        while node.statistics().running:  # noqa: ASYNC110 - a worker thread moves it
            await trio.sleep(0.001)
        stats = node.statistics()
        assert (stats.executions, stats.abandoned) == (1, 1)
        node.close()

    trio.run(main)
    assert results == []
