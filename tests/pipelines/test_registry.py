"""PipelineRegistry: validation against the models it is given, status, and replacing a
definition while requests hold the old one (custom node managers counted by the C library)."""

from __future__ import annotations

import _ctypes
import ctypes
import functools
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import trio

from ovtrio.config import ModelConfig
from ovtrio.errors import ModelNotLoadedYet, NotFound
from ovtrio.pipelines import LibraryConfig, parse_pipelines
from ovtrio.repository import ModelState, PipelineRegistry, run_pipeline
from ovtrio.tensors import TensorSpec, datatype

from .test_custom_node import Counters, until


def tiny() -> Any:
    """What the registry reads of a Model with one AVAILABLE version: b [-1,10] -> a."""
    spec = TensorSpec("b", datatype("FP32"), (-1, 10), ((0, -1), (10, 10)))
    out = TensorSpec("a", datatype("FP32"), (-1, 10), ((0, -1), (10, 10)))
    version = SimpleNamespace(version=1, available=True, inputs=(spec,), outputs=(out,))
    return SimpleNamespace(
        retired=False,
        config=ModelConfig("tiny", Path("/nowhere")),
        versions={1: version},
        default_version=lambda: version,
    )


def chain(add_value: str, name: str = "chain") -> Any:
    entry = {
        "name": name,
        "inputs": ["x"],
        "nodes": [
            {
                "name": "t",
                "type": "DL model",
                "model_name": "tiny",
                "inputs": [{"b": {"node_name": "request", "data_item": "x"}}],
                "outputs": [{"data_item": "a", "alias": "a"}],
            },
            {
                "name": "plus",
                "type": "custom",
                "library_name": "add",
                "params": {"add_value": add_value},
                "inputs": [{"in": {"node_name": "t", "data_item": "a"}}],
                "outputs": [{"data_item": "out", "alias": "out"}],
            },
        ],
        "outputs": [{"y": {"node_name": "plus", "data_item": "out"}}],
    }
    return parse_pipelines([entry], "config.json: pipeline_config_list")[0]


@pytest.fixture
def add_const(node_libs: dict[str, Path]) -> tuple[LibraryConfig, Counters]:
    path = node_libs["add_const"]
    return LibraryConfig("add", str(path), path), Counters(path)


def test_lifecycle(add_const: tuple[LibraryConfig, Counters]) -> None:
    library, counters = add_const
    managers = counters.live_managers

    async def main() -> None:
        registry = PipelineRegistry([chain("1")], [library])
        # the model is missing: the pipeline is registered, failed, and comes back with it
        assert await registry.refresh({})
        pipeline = registry.pipelines["chain"]
        assert (pipeline.state, pipeline.error_code) == (ModelState.LOADING, "FAILED_PRECONDITION")
        assert pipeline.error_message.startswith(
            "Pipeline definition has reference to missing model"
        )
        with pytest.raises(ModelNotLoadedYet, match="Pipeline is not loaded yet"):
            pipeline.definition_for_request()
        assert counters.live_managers == managers  # its custom node was closed again
        models = {"tiny": tiny()}
        assert await registry.refresh(models)
        assert pipeline.available
        assert not await registry.refresh(models)  # nothing changed: not validated again
        first = pipeline.definition_for_request()
        assert [s.name for s in first.inputs] == ["x"]
        assert counters.live_managers == managers + 1

        # changed params while a request holds the first definition
        with first.use():
            registry.configure([chain("2")], [library])
            assert await registry.refresh(models)
            second = pipeline.definition_for_request()
            assert second is not first
            assert counters.live_managers == managers + 2  # the first is still in use
        assert counters.live_managers == managers + 1  # closed when its last request left

        registry.configure([], [library])
        assert await registry.refresh(models)
        assert pipeline.state is ModelState.END
        with pytest.raises(NotFound, match="Pipeline is retired"):
            pipeline.definition_for_request()
        assert counters.live_managers == managers

        # a pipeline named like a model is not registered
        registry.configure([chain("1", name="tiny")], [library])
        await registry.refresh(models)
        assert "tiny" not in registry.pipelines

    trio.run(main)


def test_shutdown_deinitializes_every_node_and_unloads_the_libraries(
    node_libs: dict[str, Path], tmp_path: Path
) -> None:
    """A copy of the library at a path of its own: once the registry and the counters let go
    of it, it is gone from the process's memory map (dlclose really happened)."""
    path = tmp_path / "libadd_copy.so"
    path.write_bytes(node_libs["add_const"].read_bytes())
    counters = Counters(path)
    library = LibraryConfig("add", str(path), path)

    async def main() -> None:
        registry = PipelineRegistry([chain("1"), chain("2", name="other")], [library])
        await registry.refresh({"tiny": tiny()})
        held = registry.pipelines["chain"].definition_for_request()
        assert counters.live_managers == 2
        with held.use():  # a request still holding its definition keeps its node
            registry.configure([chain("3"), chain("2", name="other")], [library])
            await registry.refresh({"tiny": tiny()})
            assert counters.live_managers == 3
        assert counters.live_managers == 2
        await registry.shutdown(trio.current_time() + 5)
        assert counters.live_managers == 0
        assert all(lib.closed for lib in registry._opened)

    trio.run(main)
    _ctypes.dlclose(counters.dll._handle)
    assert str(path) not in Path("/proc/self/maps").read_text()


def test_shutdown_waits_for_a_running_call_until_the_deadline(
    node_libs: dict[str, Path], tmp_path: Path
) -> None:
    """A call of a cancelled request still inside the library (a fresh copy of the gate
    library: its gate starts closed) outlives the deadline: its node is deinitialized only
    when the call returns, and the library stays loaded until then."""
    path = tmp_path / "libgate_copy.so"
    path.write_bytes(node_libs["gate"].read_bytes())
    counters = Counters(path)
    gate = counters.dll
    gate.entered.restype = ctypes.c_long
    entry = {
        "name": "gated",
        "inputs": ["x"],
        "nodes": [
            {
                "name": "plus",
                "type": "custom",
                "library_name": "gate",
                "inputs": [{"in": {"node_name": "request", "data_item": "x"}}],
                "outputs": [{"data_item": "out", "alias": "out"}],
            }
        ],
        "outputs": [{"y": {"node_name": "plus", "data_item": "out"}}],
    }
    config = parse_pipelines([entry], "config.json: pipeline_config_list")[0]

    async def main() -> None:
        registry = PipelineRegistry([config], [LibraryConfig("gate", str(path), path)])
        await registry.refresh({})
        definition = registry.pipelines["gated"].definition_for_request()

        async def no_models(name: str, version: int | None) -> Any:
            raise AssertionError(name)

        with trio.CancelScope() as scope:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(
                    functools.partial(
                        run_pipeline,
                        definition,
                        {"x": np.ones((1, 2), np.float32)},
                        models=no_models,
                        limiter=registry.limiter,
                    )
                )
                await until(lambda: gate.entered() > 0)
                scope.cancel()
        await registry.shutdown(trio.current_time() + 0.1)
        assert counters.live_managers == 1  # the call is still running
        assert not any(lib.closed for lib in registry._opened)
        gate.open_gate()
        await until(lambda: counters.live_managers == 0)  # deinitialized as the call returned
        assert all(lib.close() for lib in registry._opened)

    trio.run(main)
