"""Validation of a pipeline definition against model and library metadata, and its execution plan.

``validate`` applies OVMS' rules in OVMS' order (its pipelinedefinition.cpp ``validate``): name
clash, custom node libraries, demultiplexer count, node names, then per node (config order,
then the response) its model, demultiplexer, gathering and connections, then cycles and
unconnected nodes, then the demultiplexing levels (LIFO), then the pipeline's own input and
output metadata. The first failure is raised as ``PipelineInvalid`` with OVMS' StatusCode name
and message. Metadata comes in through two callables, so nothing here knows the registry.

The plan is data only: steps in a topological order, each with the demultiplexers open around
it (``level``: it runs once per shard), the one it gathers, and the one it opens.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Final

from ..errors import NodeLibraryFailed, PipelineInvalid
from ._graph import DL_MODEL, REQUEST, RESPONSE, NodeConfig, PipelineConfig, Source
from ._meta import INVALID, NodeMeta, TensorMeta, intersect, overlap, shape_text

__all__ = [
    "CustomNodeLookup",
    "Edge",
    "ExecutionPlan",
    "ModelLookup",
    "NodeMeta",
    "Step",
    "TensorMeta",
    "validate",
]

log = logging.getLogger(__name__)

# OVMS' messages (src/status.cpp) for the codes validation raises.
MESSAGES: Final = {
    "PIPELINE_NAME_OCCUPIED": "Pipeline has the same name as model",
    "PIPELINE_DEFINITION_INVALID_NODE_LIBRARY": "Pipeline refers to incorrect library",
    "NOT_IMPLEMENTED": "Functionality not implemented",
    "PIPELINE_NODE_NAME_DUPLICATE": "Pipeline definition has multiple nodes with the same name",
    "PIPELINE_NODE_REFERING_TO_MISSING_MODEL": "Pipeline definition has reference to missing model",
    "FORBIDDEN_MODEL_DYNAMIC_PARAMETER": "Value of provided parameter is forbidden",
    "PIPELINE_STRING_DEMUILTIPLICATION_UNSUPPORTED": (
        "Demultiplication is not supported for string precision"
    ),
    "PIPELINE_NOT_ENOUGH_SHAPE_DIMENSIONS_TO_DEMULTIPLY": (
        "Pipeline has not enough shape dimensions to demultiply"
    ),
    "PIPELINE_DEMULTIPLY_COUNT_DOES_NOT_MATCH_TENSOR_SHARD_COUNT": (
        "Demultiplication count does not match tensor first dimension"
    ),
    "PIPELINE_NODE_GATHER_FROM_NOT_EXISTING_NODE": "Gather node refers to not existing node",
    "PIPELINE_NODE_GATHER_FROM_NOT_DEMULTIPLEXER": (
        "Gather node refers to node that isn't demultiplexer"
    ),
    "PIPELINE_NODE_REFERING_TO_MISSING_NODE": "Pipeline definition has reference to missing node",
    "PIPELINE_EXIT_USED_AS_NODE_DEPENDENCY": (
        "Pipeline definition has response node used as dependency node"
    ),
    "PIPELINE_CONNECTION_TO_MISSING_MODEL_INPUT": (
        "Pipeline definition has connection to non existing model input"
    ),
    "PIPELINE_MODEL_INPUT_CONNECTED_TO_MULTIPLE_DATA_SOURCES": (
        "Pipeline definition has multiple connections to the same input of underlying model"
    ),
    "PIPELINE_NODE_REFERING_TO_MISSING_DATA_SOURCE": (
        "Pipeline definition has reference to missing data source"
    ),
    "PIPELINE_NODE_REFERING_TO_MISSING_MODEL_OUTPUT": (
        "Pipeline definition has reference to missing model output"
    ),
    "INVALID_SHAPE": "Invalid input shape",
    "INVALID_PRECISION": "Invalid input precision",
    "PIPELINE_NOT_ALL_INPUTS_CONNECTED": (
        "Pipeline definition does not have connections for all inputs of underlying models"
    ),
    "PIPELINE_CYCLE_FOUND": "Pipeline definition contains a cycle",
    "PIPELINE_CONTAINS_UNCONNECTED_NODES": "Pipeline definition has unconnected nodes",
    "PIPELINE_WRONG_DEMULTIPLEXER_GATHER_NODES_ORDER": (
        "Demultiplexer and gather nodes are not in LIFO order"
    ),
    "PIPELINE_INPUTS_AMBIGUOUS_METADATA": (
        "Multiple nodes connected to the same pipeline input require different tensor metadata"
    ),
}


def _invalid(code: str, detail: str) -> PipelineInvalid:
    return PipelineInvalid(code, f"{MESSAGES[code]} - {detail}")


ModelLookup = Callable[[str, int | None], NodeMeta | None]
"""(model name, pinned version or None for the default) -> metadata, None if not available."""
CustomNodeLookup = Callable[[NodeConfig], NodeMeta | None]
"""For a custom (or Python) node: initialize its library with the node's params (or load its
callable) -> metadata; None if the library is missing. May raise ``NodeLibraryFailed``
(initialize, loading or a metadata call failed). What it initializes is the caller's: it closes
those nodes when validation fails or the definition is replaced."""


@dataclass(frozen=True, slots=True)
class Edge:
    """One tensor moving along the graph, into node input (or response name) ``target``."""

    target: str
    node: str
    alias: str
    data_item: str
    """The producing model/library output (the input name for ``request``)."""


@dataclass(frozen=True, slots=True)
class Step:
    node: NodeConfig
    inputs: tuple[Edge, ...]
    level: tuple[str, ...]
    """Demultiplexers open around this node, outermost first: it runs once per shard."""
    gathers: str | None
    """The demultiplexer whose shards are stacked (by shard index) into this node's inputs."""
    demultiply_count: int | None
    """Its outputs are split along dimension 0 into this many shards (-1: as many as there are)."""
    used: tuple[str, ...]
    """Its outputs (data items) that a later node or the response reads, sorted; others can
    be dropped as soon as it returns."""


@dataclass(frozen=True, slots=True)
class ExecutionPlan:
    pipeline: str
    inputs: tuple[str, ...]
    demultiply_count: int | None
    """The request is split along dimension 0 (-1: as many shards as it has)."""
    steps: tuple[Step, ...]
    """Topological order; among ready nodes, config order."""
    outputs: tuple[Edge, ...]
    """One per response tensor, ``target`` being its name."""
    gathers: tuple[str, ...]
    """Demultiplexers still open at the response, gathered there implicitly, outermost first."""
    inputs_meta: Mapping[str, TensorMeta]
    """The pipeline's inputs as metadata reports them, sorted by name."""
    outputs_meta: Mapping[str, TensorMeta]


def validate(
    pipeline: PipelineConfig,
    *,
    models: ModelLookup,
    custom_nodes: CustomNodeLookup,
    taken_names: Collection[str] = (),
) -> ExecutionPlan:
    """Check ``pipeline`` as OVMS does and plan its execution.

    Args:
        models: metadata of a model (version), None if it is not available.
        custom_nodes: initializes each custom node's library with the node's params.
        taken_names: names of models and graphs; a pipeline may not take one.

    Raises:
        PipelineInvalid: the first rule broken, with OVMS' code and message.
    """
    return _Validator(pipeline, models, custom_nodes).run(taken_names)


class _Validator:
    def __init__(
        self, pipeline: PipelineConfig, models: ModelLookup, custom_nodes: CustomNodeLookup
    ) -> None:
        self.p = pipeline
        self.models = models
        self.custom_nodes = custom_nodes
        self.nodes = {node.name: node for node in pipeline.nodes}
        self.meta: dict[str, NodeMeta] = {}

    def run(self, taken_names: Collection[str]) -> ExecutionPlan:
        p = self.p
        if p.name in taken_names:
            raise _invalid("PIPELINE_NAME_OCCUPIED", p.name)
        self._initialize_custom_nodes()
        self._check_demultiplexer_count()
        self._check_names()
        for node in p.nodes:
            self._check_node(node)
        for name, source in p.outputs:
            self._produced(source, RESPONSE, name)
        deps = self._dependencies()
        order = self._topological(deps)
        self._check_connected(deps)
        levels = self._levels(order)
        return ExecutionPlan(
            pipeline=p.name,
            inputs=p.inputs,
            demultiply_count=p.demultiply_count,
            steps=tuple(self._step(self.nodes[name], levels[name]) for name in order),
            outputs=tuple(self._edge(name, source) for name, source in p.outputs),
            gathers=levels[RESPONSE],
            inputs_meta=self._inputs_meta(),
            outputs_meta=self._outputs_meta(levels[RESPONSE]),
        )

    # -- nodes --------------------------------------------------------------------------------

    def _initialize_custom_nodes(self) -> None:
        for node in self.p.nodes:
            if node.kind == DL_MODEL:
                continue
            try:
                meta = self.custom_nodes(node)
            except NodeLibraryFailed as exc:
                raise PipelineInvalid(exc.code, f"{exc.message} - node: {node.name}") from exc
            if meta is None:
                raise _invalid(
                    "PIPELINE_DEFINITION_INVALID_NODE_LIBRARY",
                    f"node: {node.name} library: {node.library_name or node.callable}",
                )
            self.meta[node.name] = meta

    def _check_demultiplexer_count(self) -> None:
        counts = [n.demultiply_count for n in self.p.nodes if n.demultiply_count is not None]
        if self.p.demultiply_count is not None:
            counts.append(self.p.demultiply_count)
        if len(counts) > 1 and -1 in counts:
            raise _invalid(
                "NOT_IMPLEMENTED", "a dynamic demultiplexer must be the only one in its pipeline"
            )

    def _check_names(self) -> None:
        seen = {REQUEST, RESPONSE}
        for node in self.p.nodes:
            if node.name in seen:
                raise _invalid("PIPELINE_NODE_NAME_DUPLICATE", node.name)
            seen.add(node.name)

    def _meta_of(self, node: NodeConfig) -> NodeMeta:
        meta = self.meta.get(node.name)
        if meta is None:
            assert node.model_name is not None
            meta = self.models(node.model_name, node.version)
            if meta is None:
                version = "default" if node.version is None else node.version
                raise _invalid(
                    "PIPELINE_NODE_REFERING_TO_MISSING_MODEL",
                    f"node: {node.name} model: {node.model_name} version: {version}",
                )
            if meta.dynamic_parameters:
                raise _invalid(
                    "FORBIDDEN_MODEL_DYNAMIC_PARAMETER",
                    f"model {node.model_name} uses batch_size or shape auto",
                )
            self.meta[node.name] = meta
        return meta

    def _check_node(self, node: NodeConfig) -> None:
        meta = self._meta_of(node)
        if node.demultiply_count is not None:
            self._check_demultiplexer(node, meta)
        if node.gather_from_node is not None:
            self._count_of(node.gather_from_node, node.name)
        seen: set[str] = set()
        for key, source in node.inputs:
            self._source_node(source)
            if key not in meta.inputs:
                raise _invalid(
                    "PIPELINE_CONNECTION_TO_MISSING_MODEL_INPUT", f"node: {node.name} input: {key}"
                )
            if key in seen:
                raise _invalid(
                    "PIPELINE_MODEL_INPUT_CONNECTED_TO_MULTIPLE_DATA_SOURCES",
                    f"node: {node.name} input: {key}",
                )
            seen.add(key)
            produced = self._produced(source, node.name, key)
            if produced is not None:
                if node.gather_from_node is not None:
                    produced = produced.with_leading(
                        self._count_of(node.gather_from_node, node.name)
                    )
                _check_fits(produced, meta.inputs[key], node.name, key)
        missing = sorted(set(meta.inputs) - seen)
        if missing:
            raise _invalid(
                "PIPELINE_NOT_ALL_INPUTS_CONNECTED",
                f"node: {node.name} inputs: {', '.join(missing)}",
            )

    def _check_demultiplexer(self, node: NodeConfig, meta: NodeMeta) -> None:
        count = node.demultiply_count
        for name, tensor in {**meta.inputs, **meta.outputs}.items():
            if tensor.datatype == "BYTES":
                raise _invalid(
                    "PIPELINE_STRING_DEMUILTIPLICATION_UNSUPPORTED",
                    f"node: {node.name} tensor: {name}",
                )
        for name, tensor in meta.outputs.items():
            if len(tensor.shape) < 3:
                raise _invalid(
                    "PIPELINE_NOT_ENOUGH_SHAPE_DIMENSIONS_TO_DEMULTIPLY",
                    f"node: {node.name} output: {name} shape: {shape_text(tensor.shape)}",
                )
            first = tensor.shape[0]
            if count is not None and count > 0 and first >= 0 and first != count:
                raise _invalid(
                    "PIPELINE_DEMULTIPLY_COUNT_DOES_NOT_MATCH_TENSOR_SHARD_COUNT",
                    f"node: {node.name} output: {name} count: {count} "
                    f"shape: {shape_text(tensor.shape)}",
                )
            if count is not None and count > 0 and first < 0:
                log.warning(
                    "pipeline %s node %s: output %s has a dynamic dimension 0; demultiply_count %d "
                    "is checked per request",
                    self.p.name,
                    node.name,
                    name,
                    count,
                )

    def _count_of(self, demultiplexer: str, gatherer: str) -> int:
        """The shard count of the demultiplexer ``gatherer`` gathers from (-1: dynamic)."""
        if demultiplexer == REQUEST:
            count = self.p.demultiply_count
        elif demultiplexer in self.nodes:
            count = self.nodes[demultiplexer].demultiply_count
        else:
            raise _invalid(
                "PIPELINE_NODE_GATHER_FROM_NOT_EXISTING_NODE",
                f"node: {gatherer} gather_from_node: {demultiplexer}",
            )
        if count is None:
            raise _invalid(
                "PIPELINE_NODE_GATHER_FROM_NOT_DEMULTIPLEXER",
                f"node: {gatherer} gather_from_node: {demultiplexer}",
            )
        return count

    def _source_node(self, source: Source) -> NodeConfig | None:
        """The node ``source`` names (None for ``request``)."""
        if source.node == RESPONSE:
            raise _invalid("PIPELINE_EXIT_USED_AS_NODE_DEPENDENCY", f"{source.node}")
        if source.node == REQUEST:
            return None
        node = self.nodes.get(source.node)
        if node is None:
            raise _invalid("PIPELINE_NODE_REFERING_TO_MISSING_NODE", source.node)
        return node

    def _produced(self, source: Source, consumer: str, key: str) -> TensorMeta | None:
        """What ``source`` delivers per shard to ``consumer``; None for a request input."""
        node = self._source_node(source)
        where = f"node: {consumer} input: {key} source: {source.node}.{source.alias}"
        if node is None:
            if source.alias not in self.p.inputs:
                raise _invalid("PIPELINE_NODE_REFERING_TO_MISSING_DATA_SOURCE", where)
            return None
        data_item = node.aliases.get(source.alias)
        if data_item is None:
            raise _invalid("PIPELINE_NODE_REFERING_TO_MISSING_DATA_SOURCE", where)
        tensor = self._meta_of(node).outputs.get(data_item)
        if tensor is None:
            raise _invalid(
                "PIPELINE_NODE_REFERING_TO_MISSING_MODEL_OUTPUT", f"{where} data_item: {data_item}"
            )
        return tensor.shard() if node.demultiply_count is not None else tensor

    # -- graph --------------------------------------------------------------------------------

    def _dependencies(self) -> dict[str, list[str]]:
        deps = {node.name: [s.node for _, s in node.inputs] for node in self.p.nodes}
        deps[REQUEST] = []
        deps[RESPONSE] = [s.node for _, s in self.p.outputs]
        return deps

    def _topological(self, deps: Mapping[str, list[str]]) -> list[str]:
        """Node names (no pseudo-nodes) in execution order; config order among ready ones."""
        done = {REQUEST}
        order: list[str] = []
        pending = [node.name for node in self.p.nodes]
        while pending:
            ready = [name for name in pending if all(d in done for d in deps[name])]
            if not ready:
                raise _invalid("PIPELINE_CYCLE_FOUND", f"between {', '.join(pending)}")
            for name in ready:
                done.add(name)
                order.append(name)
            pending = [name for name in pending if name not in done]
        return order

    def _check_connected(self, deps: Mapping[str, list[str]]) -> None:
        reached = {RESPONSE}
        stack = [RESPONSE]
        while stack:
            for dep in deps[stack.pop()]:
                if dep not in reached:
                    reached.add(dep)
                    stack.append(dep)
        unconnected = [name for name in (REQUEST, *self.nodes) if name not in reached]
        if unconnected:
            raise _invalid("PIPELINE_CONTAINS_UNCONNECTED_NODES", ", ".join(unconnected))

    def _levels(self, order: list[str]) -> dict[str, tuple[str, ...]]:
        """Each node's level (demultiplexers open around its runs); the response's too."""
        opened: dict[str, tuple[str, ...]] = {
            REQUEST: (REQUEST,) if self.p.demultiply_count is not None else ()
        }
        levels: dict[str, tuple[str, ...]] = {}

        def level_in(name: str, sources: list[Source]) -> tuple[str, ...]:
            found = {opened[s.node] for s in sources}
            if len(found) > 1:
                raise _invalid(
                    "PIPELINE_WRONG_DEMULTIPLEXER_GATHER_NODES_ORDER",
                    f"inputs of {name} come from different demultiplexing levels",
                )
            return found.pop() if found else ()

        for name in order:
            node = self.nodes[name]
            level = level_in(name, [s for _, s in node.inputs])
            if node.gather_from_node is not None:
                if not level or level[-1] != node.gather_from_node:
                    raise _invalid(
                        "PIPELINE_WRONG_DEMULTIPLEXER_GATHER_NODES_ORDER",
                        f"{name} gathers from {node.gather_from_node}, but the innermost "
                        f"open demultiplexer is {level[-1] if level else 'none'}",
                    )
                level = level[:-1]
            levels[name] = level
            opened[name] = (*level, name) if node.demultiply_count is not None else level
        levels[RESPONSE] = level_in(RESPONSE, [s for _, s in self.p.outputs])
        return levels

    # -- plan and metadata --------------------------------------------------------------------

    def _edge(self, target: str, source: Source) -> Edge:
        if source.node == REQUEST:
            return Edge(target, REQUEST, source.alias, source.alias)
        return Edge(
            target, source.node, source.alias, self.nodes[source.node].aliases[source.alias]
        )

    def _step(self, node: NodeConfig, level: tuple[str, ...]) -> Step:
        readers = [s for n in self.p.nodes for _, s in n.inputs] + [s for _, s in self.p.outputs]
        used = {node.aliases[s.alias] for s in readers if s.node == node.name}
        return Step(
            node=node,
            inputs=tuple(self._edge(key, source) for key, source in node.inputs),
            level=level,
            gathers=node.gather_from_node,
            demultiply_count=node.demultiply_count,
            used=tuple(sorted(used)),
        )

    def _inputs_meta(self) -> dict[str, TensorMeta]:
        wanted: dict[str, list[tuple[str, TensorMeta]]] = {}
        for node in self.p.nodes:
            for key, source in node.inputs:
                if source.node == REQUEST:
                    tensor = self.meta[node.name].inputs[key]
                    if node.gather_from_node == REQUEST:
                        tensor = tensor.shard()  # the request's own split adds it back
                    wanted.setdefault(source.alias, []).append((node.name, tensor))
        direct = {s.alias for _, s in self.p.outputs if s.node == REQUEST}
        out: dict[str, TensorMeta] = {}
        for name in sorted(wanted.keys() | direct):
            consumers = wanted.get(name)
            if not consumers:
                out[name] = TensorMeta(INVALID, ())
                continue
            tensor = consumers[0][1]
            for consumer, other in consumers[1:]:
                merged = intersect(tensor, other)
                if merged is None:
                    raise _invalid(
                        "PIPELINE_INPUTS_AMBIGUOUS_METADATA", f"input: {name} node: {consumer}"
                    )
                tensor = merged
            if self.p.demultiply_count is not None:
                tensor = tensor.with_leading(self.p.demultiply_count)
            out[name] = tensor
        return out

    def _outputs_meta(self, gathers: tuple[str, ...]) -> dict[str, TensorMeta]:
        out: dict[str, TensorMeta] = {}
        for name, source in sorted(self.p.outputs, key=lambda entry: entry[0]):
            tensor = self._produced(source, RESPONSE, name)
            if tensor is None:
                out[name] = TensorMeta(INVALID, ())
                continue
            for demultiplexer in reversed(gathers):
                tensor = tensor.with_leading(self._count_of(demultiplexer, RESPONSE))
            out[name] = tensor
        return out


def _check_fits(produced: TensorMeta, expected: TensorMeta, node: str, key: str) -> None:
    """A tensor between two nodes must fit the consumer: same precision, overlapping dims."""
    if "BYTES" in (produced.datatype, expected.datatype):
        raise _invalid("NOT_IMPLEMENTED", f"string tensor between nodes, node: {node} input: {key}")
    if produced.datatype != expected.datatype:
        raise _invalid(
            "INVALID_PRECISION",
            f"Node: {node} input: {key} Invalid precision - Expected: {expected.datatype}; "
            f"Actual: {produced.datatype}",
        )
    a, b = produced.intervals(), expected.intervals()
    if len(a) != len(b) or any(overlap(x, y) is None for x, y in zip(a, b, strict=True)):
        raise _invalid(
            "INVALID_SHAPE",
            f"Node: {node} input: {key} Invalid shape - Expected: {shape_text(expected.shape)}; "
            f"Actual: {shape_text(produced.shape)}",
        )
