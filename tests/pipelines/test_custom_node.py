"""Custom node libraries through the OVMS C interface, with libraries built from c/ by gcc.

Every library counts the buffers it hands out and gets back (c/testnode.h), so each test can
prove the memory contract with counters: everything allocated was released, with the right
internal manager.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import trio

from ovtrio.errors import InvalidArgument, NodeLibraryFailed
from ovtrio.pipelines import (
    CustomNodeLibrary,
    NodeConfig,
    NodeMeta,
    NodeTensorInfo,
    Precision,
    TensorMeta,
    ThreadedNode,
    initialize_node,
    parse_pipelines,
    validate,
)


class Counters:
    """The library's own view of its buffers and internal managers."""

    def __init__(self, path: Path) -> None:
        self.dll = ctypes.CDLL(str(path))  # the same handle the loader got: shared globals
        for name in (
            "live_buffers",
            "total_allocations",
            "live_managers",
            "wrong_manager_releases",
        ):
            getattr(self.dll, name).restype = ctypes.c_long

    @property
    def live_buffers(self) -> int:
        return int(self.dll.live_buffers())

    @property
    def allocations(self) -> int:
        return int(self.dll.total_allocations())

    @property
    def live_managers(self) -> int:
        return int(self.dll.live_managers())

    @property
    def wrong_manager_releases(self) -> int:
        return int(self.dll.wrong_manager_releases())


@pytest.fixture
def library(
    node_libs: dict[str, Path], request: pytest.FixtureRequest
) -> Iterator[CustomNodeLibrary]:
    """The library named by the test's ``lib`` parameter; checks nothing leaked afterwards."""
    path = node_libs[request.param]
    counters = Counters(path)
    managers = counters.live_managers
    yield CustomNodeLibrary(path)
    assert counters.live_buffers == 0
    assert counters.wrong_manager_releases == 0
    assert counters.live_managers == managers


async def until(predicate: Callable[[], bool]) -> None:
    """Wait for a counter that a worker thread or the C library moves (they set no trio Event)."""
    while not predicate():  # noqa: ASYNC110
        await trio.sleep(0.001)


def lib(name: str) -> pytest.MarkDecorator:
    return pytest.mark.parametrize("library", [name], indirect=True)


@lib("add_const")
def test_metadata_reports_dynamic_dims_as_minus_one(library: CustomNodeLibrary) -> None:
    with library.initialize() as node:
        assert node.inputs_info() == {"in": NodeTensorInfo("in", Precision.FP32, (-1, -1))}
        assert node.outputs_info() == {"out": NodeTensorInfo("out", Precision.FP32, (-1, -1))}
        assert node.outputs_info()["out"].datatype == "FP32"


@lib("add_const")
def test_execute_copies_outputs_and_releases_every_buffer(
    library: CustomNodeLibrary, node_libs: dict[str, Path]
) -> None:
    counters = Counters(node_libs["add_const"])
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    with library.initialize({"add_value": "1.5"}) as node:
        node.metadata()  # the input check reads it once; its buffers are counted apart
        before = counters.allocations
        out = node.execute_sync({"in": x})
        assert node.statistics().executions == 1
    np.testing.assert_array_equal(out["out"], x + 1.5)
    assert out["out"].flags.writeable and out["out"].flags.owndata
    assert counters.allocations - before == 3  # data, dims, the outputs array
    assert counters.live_buffers == 0


@lib("add_const")
def test_params_belong_to_each_node(library: CustomNodeLibrary) -> None:
    x = np.zeros((1, 2), np.float32)
    with (
        library.initialize({"add_value": "1"}) as one,
        library.initialize({"add_value": "10"}) as ten,
    ):
        assert one.params == {"add_value": "1"}
        np.testing.assert_array_equal(one.execute_sync({"in": x})["out"], [[1, 1]])
        np.testing.assert_array_equal(ten.execute_sync({"in": x})["out"], [[10, 10]])


@lib("add_const")
def test_non_contiguous_input_is_passed_as_its_values(library: CustomNodeLibrary) -> None:
    x = np.arange(12, dtype=np.float32).reshape(3, 4)[:, ::2]
    with library.initialize({"add_value": "0"}) as node:
        np.testing.assert_array_equal(node.execute_sync({"in": x})["out"], x)


@lib("add_const")
def test_input_precision_the_interface_cannot_carry(library: CustomNodeLibrary) -> None:
    with (
        library.initialize() as node,
        pytest.raises(InvalidArgument, match="Invalid input precision"),
    ):
        node.execute_sync({"in": np.zeros((1, 2), np.bool_)})


INPUT_ERRORS = [
    (
        {"in": np.zeros((1, 2, 3), np.float32)},
        "Invalid number of shape dimensions - Node: n input: in Invalid number of shape dimensions - Expected: (1,2); Actual: (1,2,3)",
    ),
    (
        {"in": np.zeros((1, 3), np.float32)},
        "Invalid input shape - Node: n input: in Invalid shape - Expected: (1,2); Actual: (1,3)",
    ),
    (
        {"in": np.zeros((1, 2), np.int32)},
        "Invalid input precision - Node: n input: in Invalid precision - Expected: FP32; Actual: INT32",
    ),
    ({"x": np.zeros((1, 2), np.float32)}, "Missing input with specific name - Node: n input: in"),
    ({}, "Invalid number of inputs - Node: n Expected: 1; Actual: 0"),
    (
        {"in": np.zeros((1, 2), np.float32), "x": np.zeros((1, 2), np.float32)},
        "Invalid number of inputs - Node: n Expected: 1; Actual: 2",
    ),
]


@lib("broken")
@pytest.mark.parametrize(("inputs", "message"), INPUT_ERRORS)
def test_inputs_are_checked_against_the_declared_metadata(
    library: CustomNodeLibrary, inputs: dict[str, np.ndarray], message: str
) -> None:
    with (
        library.initialize({"mode": "ok"}, name="n") as node,
        pytest.raises(InvalidArgument) as info,
    ):
        node.execute_sync(inputs)
    assert info.value.message == message
    assert node.statistics().executions == 0


@lib("add_const")
def test_big_endian_input_is_passed_little_endian(library: CustomNodeLibrary) -> None:
    x = np.arange(4, dtype=">f4").reshape(2, 2)
    with library.initialize({"add_value": "1"}) as node:
        np.testing.assert_array_equal(node.execute_sync({"in": x})["out"], x + 1)


@lib("add_const")
def test_closed_node_refuses_calls(library: CustomNodeLibrary) -> None:
    node = library.initialize()
    node.close()
    node.close()
    with pytest.raises(RuntimeError, match="closed"):
        node.execute_sync({"in": np.zeros((1, 1), np.float32)})


@lib("demux")
def test_demultiplexer_outputs_lead_with_the_count(library: CustomNodeLibrary) -> None:
    x = np.array([[1, 2, 3, 4]], np.float32)
    with library.initialize({"count": "3"}) as node:
        assert node.outputs_info() == {
            "out": NodeTensorInfo("out", Precision.FP32, (-1, 1, -1)),
            "index": NodeTensorInfo("index", Precision.I32, (-1, 1, 1)),
        }
        out = node.execute_sync({"in": x})
    assert out["out"].shape == (3, 1, 4)
    np.testing.assert_array_equal(out["out"][2], x + 2)
    assert out["index"].dtype == np.int32
    np.testing.assert_array_equal(out["index"].ravel(), [0, 1, 2])


@lib("demux")
def test_zero_shards_come_back_as_empty_tensors(library: CustomNodeLibrary) -> None:
    with library.initialize({"count": "0"}) as node:
        out = node.execute_sync({"in": np.zeros((1, 4), np.float32)})
    assert out["out"].shape == (0, 1, 4)
    assert out["index"].shape == (0, 1, 1)


BROKEN = [
    ("fail", "NODE_LIBRARY_EXECUTION_FAILED", "Custom node failed during execution"),
    (
        "null_outputs",
        "NODE_LIBRARY_OUTPUTS_CORRUPTED",
        "Custom node library has returned corrupted outputs handle",
    ),
    (
        "zero_count",
        "NODE_LIBRARY_OUTPUTS_CORRUPTED_COUNT",
        "Custom node library has produced corrupted number of outputs",
    ),
    (
        "unspecified",
        "NODE_LIBRARY_INVALID_PRECISION",
        "Custom node has produced tensor with unspecified precision",
    ),
    (
        "bad_size",
        "NODE_LIBRARY_INVALID_CONTENT_SIZE",
        "Custom node output has invalid content size",
    ),
    (
        "null_data",
        "NODE_LIBRARY_INVALID_CONTENT_SIZE",
        "Custom node output has invalid content size",
    ),
    ("no_name", "NODE_LIBRARY_OUTPUT_MISSING_NAME", "Custom node output is missing name"),
]


@lib("broken")
@pytest.mark.parametrize(("mode", "code", "message"), BROKEN)
def test_broken_outputs_are_errors_and_still_released(
    library: CustomNodeLibrary, mode: str, code: str, message: str
) -> None:
    with library.initialize({"mode": mode}) as node, pytest.raises(NodeLibraryFailed) as info:
        node.execute_sync({"in": np.zeros((1, 2), np.float32)})
    assert info.value.code == code
    assert info.value.message.startswith(message)
    assert (info.value.http_status, info.value.grpc_status) == (500, 2)


@lib("broken")
def test_well_behaved_mode_of_the_broken_library(library: CustomNodeLibrary) -> None:
    with library.initialize({"mode": "ok"}) as node:
        out = node.execute_sync({"in": np.zeros((1, 2), np.float32)})
    np.testing.assert_array_equal(out["out"], [[1, 2]])


@lib("broken")
def test_metadata_call_failing(library: CustomNodeLibrary) -> None:
    node = library.initialize({"mode": "metadata_fail"})
    with (
        node,
        pytest.raises(NodeLibraryFailed, match="Custom node failed on metadata call") as info,
    ):
        node.inputs_info()
    assert info.value.code == "NODE_LIBRARY_METADATA_FAILED"


@lib("add_const")
def test_initialize_failing(library: CustomNodeLibrary) -> None:
    with pytest.raises(
        NodeLibraryFailed, match="Failure during custom node library initialization"
    ) as info:
        library.initialize({"fail_initialize": "1"})
    assert info.value.code == "NODE_LIBRARY_INITIALIZE_FAILED"


def test_missing_symbol(node_libs: dict[str, Path]) -> None:
    with pytest.raises(NodeLibraryFailed, match=r"failed to load symbol - .*: release$") as info:
        CustomNodeLibrary(node_libs["no_release"])
    assert info.value.code == "NODE_LIBRARY_LOAD_FAILED_SYM"


def test_unopenable_file(tmp_path: Path) -> None:
    (tmp_path / "not_a_library.so").write_text("hello")
    for path in (tmp_path / "missing.so", tmp_path / "not_a_library.so"):
        with pytest.raises(NodeLibraryFailed, match="Custom node library failed to open") as info:
            CustomNodeLibrary(path)
        assert info.value.code == "NODE_LIBRARY_LOAD_FAILED_OPEN"


@lib("add_const")
def test_concurrent_executes_off_the_event_loop(library: CustomNodeLibrary) -> None:
    results: dict[int, np.ndarray] = {}

    async def main() -> None:
        limiter = trio.CapacityLimiter(2)
        with library.initialize({"add_value": "1"}) as node:

            async def one(i: int) -> None:
                x = np.full((1, 3), i, np.float32)
                results[i] = (await node.execute({"in": x}, limiter=limiter))["out"]

            async with trio.open_nursery() as nursery:
                for i in range(16):
                    nursery.start_soon(one, i)
            assert node.statistics().executions == 16
            assert node.statistics().running == 0

    trio.run(main)
    for i, out in results.items():
        np.testing.assert_array_equal(out, np.full((1, 3), i + 1, np.float32))


@lib("gate")
def test_cancelled_execute_releases_its_outputs_and_returns_nothing(
    library: CustomNodeLibrary, node_libs: dict[str, Path]
) -> None:
    """Cancel a call that is inside the library, then let it finish: counters, not timing."""
    counters = Counters(node_libs["gate"])
    gate = counters.dll
    gate.entered.restype = ctypes.c_long
    entered = int(gate.entered())
    managers = counters.live_managers
    results: list[dict[str, np.ndarray]] = []
    node = library.initialize({"add_value": "1"})
    node.metadata()
    allocations = counters.allocations

    async def main() -> None:
        limiter = trio.CapacityLimiter(1)
        with trio.CancelScope() as scope:
            async with trio.open_nursery() as nursery:

                async def call() -> None:
                    results.append(
                        await node.execute({"in": np.ones((2, 2), np.float32)}, limiter=limiter)
                    )

                nursery.start_soon(call)
                await until(lambda: gate.entered() > entered)
                scope.cancel()
        assert scope.cancelled_caught
        # The call is still inside the library: the node cannot be deinitialized yet.
        node.close()
        assert node.statistics().running == 1
        assert counters.live_managers == managers + 1
        assert limiter.borrowed_tokens == 1  # the thread still holds its token
        gate.open_gate()
        await until(lambda: node.statistics().running == 0)
        await until(lambda: limiter.borrowed_tokens == 0)
        stats = node.statistics()
        assert (stats.executions, stats.abandoned, stats.running) == (1, 1, 0)

    trio.run(main)
    assert results == []
    assert counters.allocations - allocations == 3  # the call did allocate its outputs ...
    assert counters.live_buffers == 0  # ... and every one of them went back to release
    assert counters.live_managers == managers  # deinitialized once the call returned


@lib("add_const")
def test_cancelled_before_a_thread_is_free_never_calls_the_library(
    library: CustomNodeLibrary,
) -> None:
    async def main() -> None:
        limiter = trio.CapacityLimiter(1)
        with library.initialize() as node:
            async with limiter:
                with trio.move_on_after(0.01):
                    await node.execute({"in": np.ones((1, 1), np.float32)}, limiter=limiter)
            assert node.statistics() == type(node.statistics())(0, 0, 0)

    trio.run(main)


def test_pipeline_validated_with_a_real_library(node_libs: dict[str, Path]) -> None:
    """A dynamic demultiplexer from the C library "demux" feeding a model, validated from the
    library's own metadata, and a Python node beside it."""
    entry = {
        "name": "p",
        "inputs": ["x"],
        "nodes": [
            {
                "name": "d",
                "type": "custom",
                "library_name": "demux",
                "params": {"count": "3"},
                "demultiply_count": -1,
                "inputs": [{"in": {"node_name": "request", "data_item": "x"}}],
                "outputs": [
                    {"data_item": "out", "alias": "shards"},
                    {"data_item": "index", "alias": "i"},
                ],
            },
            {
                "name": "t",
                "type": "DL model",
                "model_name": "tiny",
                "inputs": [{"input": {"node_name": "d", "data_item": "shards"}}],
                "outputs": [{"data_item": "output", "alias": "y"}],
            },
            {
                "name": "py",
                "type": "python",
                "callable": "tests.pipelines.pynodes:add",
                "inputs": [{"in": {"node_name": "t", "data_item": "y"}}],
                "outputs": [{"data_item": "out", "alias": "z"}],
            },
        ],
        "outputs": [
            {"z": {"node_name": "py", "data_item": "z"}},
            {"i": {"node_name": "d", "data_item": "i"}},
        ],
    }
    (config,) = parse_pipelines([entry], "config.json: pipeline_config_list")
    libraries = {"demux": CustomNodeLibrary(node_libs["demux"])}
    counters = Counters(node_libs["demux"])
    managers = counters.live_managers
    tiny = NodeMeta(
        {"input": TensorMeta("FP32", (-1, 16))}, {"output": TensorMeta("FP32", (-1, 16))}
    )
    opened: list[ThreadedNode] = []

    def custom_nodes(node: NodeConfig) -> NodeMeta | None:
        instance = initialize_node(node, libraries)
        if instance is None:
            return None
        opened.append(instance)
        return instance.metadata()

    plan = validate(config, models=lambda name, version: tiny, custom_nodes=custom_nodes)
    assert plan.inputs_meta == {"x": TensorMeta("FP32", (1, -1))}
    assert plan.outputs_meta == {
        "i": TensorMeta("INT32", (-1, 1, 1)),
        "z": TensorMeta("FP32", (-1, -1, -1)),
    }
    assert [(s.node.name, s.level) for s in plan.steps] == [
        ("d", ()),
        ("t", ("d",)),
        ("py", ("d",)),
    ]
    assert counters.live_managers == managers + 1
    for instance in opened:
        instance.close()
    assert counters.live_managers == managers
    assert counters.live_buffers == 0
    assert initialize_node(NodeConfig("x", "custom", library_name="missing"), libraries) is None
