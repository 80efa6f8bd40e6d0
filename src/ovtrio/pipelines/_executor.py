"""Running one request through an ``ExecutionPlan``, inside one trio nursery.

Every node run is a task that starts as soon as its inputs exist (branches run concurrently).
A node at a demultiplexing level runs once per shard, all shards at once, so the shards of a
model node reach that model's batcher together and batch there. Values are kept per
``(node, shard index)``: the index has one entry per demultiplexer open around the node,
outermost first; a demultiplexer's outputs are stored per shard, one level deeper than its run.

Gathering (a node's ``gather_from_node``, and the response for every demultiplexer still
open there) stacks the shards by shard index, never by completion order. The first failing
node run cancels the nursery: queued model work leaves the batch queues, running custom nodes
are abandoned (their results dropped), and that first error is raised. A cancelled request
cancels everything the same way.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from typing import Any, Final, TypeAlias

import numpy as np
import trio

from ..errors import NodeLibraryFailed, OvtrioError, PipelineFailed, PipelineNoResults
from ._graph import DL_MODEL, MAX_DEMULTIPLY_COUNT, REQUEST, NodeConfig
from ._meta import Array
from ._node import ThreadedNode
from ._plan import Edge, ExecutionPlan, Step

__all__ = ["RunModel", "execute"]

log = logging.getLogger(__name__)

RunModel: TypeAlias = Callable[[NodeConfig, Mapping[str, Array]], Awaitable[dict[str, Array]]]
"""Runs a DL model node: (node, inputs by model input name) -> outputs by model output name."""

Index: TypeAlias = tuple[int, ...]

# OVMS' messages (src/status.cpp) for the run-time demultiplexing codes.
MESSAGES: Final = {
    "PIPELINE_WRONG_NUMBER_OF_DIMENSIONS_TO_DEMULTIPLY": (
        "Wrong number of dimensions in a tensor to be sharded"
    ),
    "PIPELINE_WRONG_DIMENSION_SIZE_TO_DEMULTIPLY": (
        "Wrong dimension size. Should match demultiply count"
    ),
    "PIPELINE_TOO_LARGE_DIMENSION_SIZE_TO_DEMULTIPLY": (
        "Too large dynamic demultiplication requested."
    ),
    "PIPELINE_INCONSISTENT_SHARD_DIMENSIONS": "Gathered tensor shards dimensions are different",
}
NO_RESULTS: Final = "Pipeline execution aborted due to no content from custom node"


def _failed(code: str, detail: str) -> PipelineFailed:
    return PipelineFailed(code, f"{MESSAGES[code]} - {detail}")


async def execute(
    plan: ExecutionPlan,
    inputs: Mapping[str, Array],
    *,
    run_model: RunModel,
    nodes: Mapping[str, ThreadedNode],
    limiter: trio.CapacityLimiter,
) -> dict[str, Array]:
    """Run ``plan`` for one request; the response tensors by name, in ``plan.outputs`` order.

    ``inputs`` are the request's tensors by pipeline input name, already checked against the
    pipeline's input metadata. ``nodes`` holds the custom and Python node instances by node
    name; their calls run in worker threads under ``limiter``.

    Raises:
        OvtrioError: the first node run (or demultiplexing/gathering step) that failed.
    """
    return await _Session(plan, run_model, nodes, limiter).run(inputs)


class _Session:
    def __init__(
        self,
        plan: ExecutionPlan,
        run_model: RunModel,
        nodes: Mapping[str, ThreadedNode],
        limiter: trio.CapacityLimiter,
    ) -> None:
        self.plan = plan
        self.run_model = run_model
        self.nodes = nodes
        self.limiter = limiter
        self.values: dict[tuple[str, Index], dict[str, Array]] = {}
        self.counts: dict[tuple[str, Index], int] = {}
        self.value_events: dict[tuple[str, Index], trio.Event] = {}
        self.count_events: dict[tuple[str, Index], trio.Event] = {}
        self.response: dict[str, Array] = {}
        self.error: OvtrioError | None = None
        self.nursery: trio.Nursery | None = None

    async def run(self, inputs: Mapping[str, Array]) -> dict[str, Array]:
        self._publish(REQUEST, (), dict(inputs), self.plan.demultiply_count)
        async with trio.open_nursery() as nursery:
            self.nursery = nursery
            for step in self.plan.steps:
                self._spawn(self._expand(step, ()))
            self._spawn(self._respond())
        if self.error is not None:
            raise self.error
        return self.response

    # -- tasks ------------------------------------------------------------------------------

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        assert self.nursery is not None
        self.nursery.start_soon(self._guard, work)

    async def _guard(self, work: Coroutine[Any, Any, None]) -> None:
        """Run ``work``; its failure is the request's (the first one wins) and cancels the rest."""
        try:
            await work
        except OvtrioError as exc:
            self._fail(exc)
        except Exception as exc:  # a bug must fail this request only
            log.exception("pipeline %s: unexpected error", self.plan.pipeline)
            self._fail(OvtrioError(f"Internal server error - {type(exc).__name__}: {exc}"))

    def _fail(self, exc: OvtrioError) -> None:
        if self.error is None:
            self.error = exc
        assert self.nursery is not None
        self.nursery.cancel_scope.cancel()

    async def _expand(self, step: Step, prefix: Index) -> None:
        """Start one run of ``step`` per shard index of its level (as the counts become known)."""
        depth = len(prefix)
        if depth == len(step.level):
            self._spawn(self._run_step(step, prefix))
            return
        count = await self._count(step.level[depth], prefix)
        for i in range(count):
            self._spawn(self._expand(step, (*prefix, i)))

    async def _run_step(self, step: Step, index: Index) -> None:
        node = step.node
        inputs: dict[str, Array] = {}
        for edge in step.inputs:
            if step.gathers is None:
                inputs[edge.target] = (await self._value(edge.node, index))[edge.data_item]
            else:
                inputs[edge.target] = await self._gather(edge, step.gathers, index, node.name)
        if node.kind == DL_MODEL:
            outputs = await self.run_model(node, inputs)
        else:
            outputs = await self.nodes[node.name].execute(inputs, limiter=self.limiter)
        used: dict[str, Array] = {}
        for item in step.used:
            array = outputs.get(item)
            if array is None:
                raise NodeLibraryFailed(
                    "NODE_LIBRARY_MISSING_OUTPUT",
                    f"Custom node has not produced required output - node: {node.name} "
                    f"output: {item}",
                )
            used[item] = array
        self._publish(node.name, index, used, step.demultiply_count)

    async def _respond(self) -> None:
        for edge in self.plan.outputs:
            self.response[edge.target] = np.ascontiguousarray(await self._collect(edge, ()))

    async def _collect(self, edge: Edge, prefix: Index) -> Array:
        """One response tensor: the shards of every demultiplexer open at the response,
        stacked outermost first."""
        depth = len(prefix)
        if depth == len(self.plan.gathers):
            return (await self._value(edge.node, prefix))[edge.data_item]
        demultiplexer = self.plan.gathers[depth]
        count = await self._count(demultiplexer, prefix)
        shards = [await self._collect(edge, (*prefix, i)) for i in range(count)]
        return _stack(shards, f"response: {edge.target}")

    async def _gather(self, edge: Edge, demultiplexer: str, index: Index, node: str) -> Array:
        count = await self._count(demultiplexer, index)
        shards = [(await self._value(edge.node, (*index, i)))[edge.data_item] for i in range(count)]
        return _stack(shards, f"node: {node} input: {edge.target}")

    # -- values -----------------------------------------------------------------------------

    async def _value(self, node: str, index: Index) -> dict[str, Array]:
        key = (node, index)
        if key not in self.values:
            await self.value_events.setdefault(key, trio.Event()).wait()
        return self.values[key]

    async def _count(self, demultiplexer: str, index: Index) -> int:
        key = (demultiplexer, index)
        if key not in self.counts:
            await self.count_events.setdefault(key, trio.Event()).wait()
        return self.counts[key]

    def _publish(
        self, node: str, index: Index, outputs: dict[str, Array], demultiply_count: int | None
    ) -> None:
        """Store a run's outputs, split into shards when ``node`` is a demultiplexer."""
        if demultiply_count is None:
            self._store(node, index, outputs)
            return
        shards = _split(node, outputs, demultiply_count)
        for i, shard in enumerate(shards):
            self._store(node, (*index, i), shard)
        key = (node, index)
        self.counts[key] = len(shards)
        event = self.count_events.pop(key, None)
        if event is not None:
            event.set()

    def _store(self, node: str, index: Index, outputs: dict[str, Array]) -> None:
        key = (node, index)
        self.values[key] = outputs
        event = self.value_events.pop(key, None)
        if event is not None:
            event.set()


def _split(node: str, outputs: Mapping[str, Array], count: int) -> list[dict[str, Array]]:
    """A demultiplexer's outputs as shards along dimension 0 (views, no copies)."""
    sizes: set[int] = set()
    for name, array in outputs.items():
        if array.ndim < 3:
            raise _failed(
                "PIPELINE_WRONG_NUMBER_OF_DIMENSIONS_TO_DEMULTIPLY",
                f"node: {node} output: {name} shape: {list(array.shape)}",
            )
        sizes.add(array.shape[0])
        if count > 0 and array.shape[0] != count:
            raise _failed(
                "PIPELINE_WRONG_DIMENSION_SIZE_TO_DEMULTIPLY",
                f"node: {node} output: {name} demultiply_count: {count} shape: {list(array.shape)}",
            )
    if len(sizes) > 1:
        raise _failed(
            "PIPELINE_WRONG_DIMENSION_SIZE_TO_DEMULTIPLY",
            f"node: {node} outputs differ in dimension 0: {sorted(sizes)}",
        )
    shards = sizes.pop() if sizes else 0
    if shards > MAX_DEMULTIPLY_COUNT:
        raise _failed(
            "PIPELINE_TOO_LARGE_DIMENSION_SIZE_TO_DEMULTIPLY",
            f"node: {node} shards: {shards}, at most {MAX_DEMULTIPLY_COUNT}",
        )
    if shards == 0:
        raise PipelineNoResults(NO_RESULTS)
    return [{name: array[i] for name, array in outputs.items()} for i in range(shards)]


def _stack(shards: list[Array], where: str) -> Array:
    """Shards gathered along a new dimension 0, in shard order; they must agree."""
    first = shards[0]
    for shard in shards[1:]:
        if shard.shape != first.shape or shard.dtype != first.dtype:
            raise _failed(
                "PIPELINE_INCONSISTENT_SHARD_DIMENSIONS",
                f"{where} shard shapes {list(first.shape)} and {list(shard.shape)}",
            )
    return np.stack(shards)
