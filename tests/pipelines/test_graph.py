"""Pipeline config entries: OVMS' schema, its validation rules and messages, and the plan."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ovtrio.config import ConfigError
from ovtrio.errors import NodeLibraryFailed, PipelineInvalid
from ovtrio.pipelines import (
    CUSTOM,
    DL_MODEL,
    ExecutionPlan,
    NodeConfig,
    NodeMeta,
    NodeOutput,
    PipelineConfig,
    Source,
    TensorMeta,
    parse_libraries,
    parse_pipelines,
    validate,
)
from ovtrio.tensors import TensorSpec, datatype

WHERE = "config.json: pipeline_config_list"


def fp32(*shape: int) -> TensorMeta:
    return TensorMeta("FP32", shape)


def model(inputs: dict[str, TensorMeta], outputs: dict[str, TensorMeta], **kw: Any) -> NodeMeta:
    return NodeMeta(inputs, outputs, **kw)


TINY = model({"input": fp32(-1, 16)}, {"output": fp32(-1, 16)})
MODELS: dict[str, NodeMeta] = {
    "tiny": TINY,
    "tiny2": TINY,
    "expand": model({"input": fp32(-1, 16)}, {"output": fp32(3, -1, 16)}),
    "sum3": model({"input": fp32(3, -1, 16)}, {"output": fp32(-1, 16)}),
    "pair": model({"input": fp32(2, 16)}, {"output": fp32(2, 16)}),
    "wide": model({"input": fp32(-1, 15)}, {"output": fp32(-1, 15)}),
    "ints": model(
        {"input": TensorMeta("INT32", (-1, 16))}, {"output": TensorMeta("INT32", (-1, 16))}
    ),
    "strings": model(
        {"input": TensorMeta("BYTES", (-1,))}, {"output": TensorMeta("BYTES", (-1, 1, 1))}
    ),
    "two_in": model({"a": fp32(-1, 16), "b": fp32(-1, 16)}, {"output": fp32(-1, 16)}),
    "auto": model({"input": fp32(-1, 16)}, {"output": fp32(-1, 16)}, dynamic_parameters=True),
}
LIBRARIES: dict[str, NodeMeta] = {
    # a dynamic demultiplexer as the C test library "demux" reports itself (0 dims are -1)
    "dyn": model(
        {"in": fp32(-1, 16)}, {"out": fp32(-1, 1, 16), "index": TensorMeta("INT32", (-1, 1, 1))}
    ),
}


def lookup_model(name: str, version: int | None) -> NodeMeta | None:
    if version not in (None, 1) and not (name == "tiny" and version == 2):
        return None
    return MODELS.get(name)


def lookup_library(node: NodeConfig) -> NodeMeta | None:
    if node.callable == "pkg.mod:crop":
        return LIBRARIES["dyn"]
    if node.library_name == "bad_init":
        raise NodeLibraryFailed(
            "NODE_LIBRARY_INITIALIZE_FAILED", "Failure during custom node library initialization"
        )
    return LIBRARIES.get(node.library_name or "")


def src(node: str, alias: str) -> dict[str, str]:
    return {"node_name": node, "data_item": alias}


def dl(name: str, model_name: str, inputs: dict[str, dict[str, str]], **kw: Any) -> dict[str, Any]:
    """A DL model node whose single output "output" is aliased as the node's name."""
    outputs = kw.pop("outputs", [{"data_item": "output", "alias": name}])
    return {
        "name": name,
        "type": DL_MODEL,
        "model_name": model_name,
        "inputs": [{k: v} for k, v in inputs.items()],
        "outputs": outputs,
        **kw,
    }


def pipeline(
    nodes: list[dict[str, Any]], outputs: dict[str, dict[str, str]], **kw: Any
) -> dict[str, Any]:
    return {
        "name": kw.pop("name", "p"),
        "inputs": kw.pop("inputs", ["x"]),
        "nodes": nodes,
        "outputs": [{k: v} for k, v in outputs.items()],
        **kw,
    }


def parse(entry: dict[str, Any]) -> PipelineConfig:
    (parsed,) = parse_pipelines([entry], WHERE)
    return parsed


def plan_of(entry: dict[str, Any], taken: tuple[str, ...] = ()) -> ExecutionPlan:
    return validate(
        parse(entry), models=lookup_model, custom_nodes=lookup_library, taken_names=taken
    )


X = src("request", "x")
CHAIN = pipeline(
    [dl("t1", "tiny", {"input": X}), dl("t2", "tiny2", {"input": src("t1", "t1")})],
    {"y": src("t2", "t2")},
)
EXPAND = dl("e", "expand", {"input": X}, demultiply_count=3)
DYN = {
    "name": "d",
    "type": CUSTOM,
    "library_name": "dyn",
    "inputs": [{"in": X}],
    "outputs": [{"data_item": "out", "alias": "crops"}, {"data_item": "index", "alias": "index"}],
    "demultiply_count": -1,
    "params": {"count": "4"},
}

# (id, config, inputs metadata, outputs metadata, [(step, level, gathers)], response gathers)
VALID = [
    (
        "chain",
        CHAIN,
        {"x": fp32(-1, 16)},
        {"y": fp32(-1, 16)},
        [("t1", (), None), ("t2", (), None)],
        (),
    ),
    (
        "fixed demultiplexer gathered by the response",
        pipeline([EXPAND, dl("t", "tiny", {"input": src("e", "e")})], {"y": src("t", "t")}),
        {"x": fp32(-1, 16)},
        {"y": fp32(3, -1, 16)},
        [("e", (), None), ("t", ("e",), None)],
        ("e",),
    ),
    (
        "fixed demultiplexer gathered by a node",
        pipeline(
            [
                EXPAND,
                dl("t", "tiny", {"input": src("e", "e")}),
                dl("s", "sum3", {"input": src("t", "t")}, gather_from_node="e"),
            ],
            {"y": src("s", "s")},
        ),
        {"x": fp32(-1, 16)},
        {"y": fp32(-1, 16)},
        [("e", (), None), ("t", ("e",), None), ("s", (), "e")],
        (),
    ),
    (
        "response takes the demultiplexer's own output",
        pipeline([EXPAND], {"y": src("e", "e")}),
        {"x": fp32(-1, 16)},
        {"y": fp32(3, -1, 16)},
        [("e", (), None)],
        ("e",),
    ),
    (
        "request demultiplexed dynamically",
        pipeline([dl("t", "tiny", {"input": X})], {"y": src("t", "t")}, demultiply_count=-1),
        {"x": fp32(-1, -1, 16)},
        {"y": fp32(-1, -1, 16)},
        [("t", ("request",), None)],
        ("request",),
    ),
    (
        "request demultiplexed and gathered by a node",
        pipeline(
            [
                dl("t", "tiny", {"input": X}),
                dl("s", "sum3", {"input": src("t", "t")}, gather_from_node="request"),
            ],
            {"y": src("s", "s")},
            demultiply_count=3,
        ),
        {"x": fp32(3, -1, 16)},
        {"y": fp32(-1, 16)},
        [("t", ("request",), None), ("s", (), "request")],
        (),
    ),
    (
        "request demultiplexed and gathered right away",
        pipeline(
            [dl("s", "sum3", {"input": X}, gather_from_node="request")],
            {"y": src("s", "s")},
            demultiply_count=3,
        ),
        {"x": fp32(3, -1, 16)},
        {"y": fp32(-1, 16)},
        [("s", (), "request")],
        (),
    ),
    (
        "dynamic custom demultiplexer, its own output also in the response",
        pipeline(
            [DYN, dl("t", "tiny", {"input": src("d", "crops")})],
            {"y": src("t", "t"), "index": src("d", "index")},
        ),
        {"x": fp32(-1, 16)},
        {"index": TensorMeta("INT32", (-1, 1, 1)), "y": fp32(-1, -1, 16)},
        [("d", (), None), ("t", ("d",), None)],
        ("d",),
    ),
    (
        "python node as the demultiplexer",
        pipeline(
            [
                {
                    **{k: v for k, v in DYN.items() if k != "library_name"},
                    "type": "python",
                    "callable": "pkg.mod:crop",
                },
                dl("t", "tiny", {"input": src("d", "crops")}),
            ],
            {"y": src("t", "t")},
        ),
        {"x": fp32(-1, 16)},
        {"y": fp32(-1, -1, 16)},
        [("d", (), None), ("t", ("d",), None)],
        ("d",),
    ),
    (
        "diamond",
        pipeline(
            [
                dl("a", "tiny", {"input": X}),
                dl("b", "tiny2", {"input": X}, version=1),
                dl("j", "two_in", {"a": src("a", "a"), "b": src("b", "b")}),
            ],
            {"y": src("j", "j")},
        ),
        {"x": fp32(-1, 16)},
        {"y": fp32(-1, 16)},
        [("a", (), None), ("b", (), None), ("j", (), None)],
        (),
    ),
    (
        "consumers' shapes intersect; a request input sent straight back is unspecified",
        pipeline(
            [dl("a", "tiny", {"input": X}), dl("b", "pair", {"input": X})],
            {"y": src("a", "a"), "z": src("b", "b"), "copy": X},
        ),
        {"x": fp32(2, 16)},
        {"copy": TensorMeta("INVALID", ()), "y": fp32(-1, 16), "z": fp32(2, 16)},
        [("a", (), None), ("b", (), None)],
        (),
    ),
    (
        "no nodes",
        pipeline([], {"y": X}),
        {"x": TensorMeta("INVALID", ())},
        {"y": TensorMeta("INVALID", ())},
        [],
        (),
    ),
    (
        "pinned version and an output listed in the response twice",
        pipeline(
            [dl("t", "tiny", {"input": X}, version=2)], {"y": src("t", "t"), "y2": src("t", "t")}
        ),
        {"x": fp32(-1, 16)},
        {"y": fp32(-1, 16), "y2": fp32(-1, 16)},
        [("t", (), None)],
        (),
    ),
]


@pytest.mark.parametrize(
    ("config", "inputs", "outputs", "steps", "gathers"),
    [pytest.param(*case[1:], id=case[0]) for case in VALID],
)
def test_valid_pipelines(
    config: dict[str, Any],
    inputs: dict[str, TensorMeta],
    outputs: dict[str, TensorMeta],
    steps: list[tuple[str, tuple[str, ...], str | None]],
    gathers: tuple[str, ...],
) -> None:
    plan = plan_of(config)
    assert dict(plan.inputs_meta) == inputs
    assert list(plan.inputs_meta) == sorted(inputs)
    assert dict(plan.outputs_meta) == outputs
    assert list(plan.outputs_meta) == sorted(outputs)
    assert [(s.node.name, s.level, s.gathers) for s in plan.steps] == steps
    assert plan.gathers == gathers


def test_plan_edges_resolve_aliases_to_data_items() -> None:
    plan = plan_of(
        pipeline([DYN, dl("t", "tiny", {"input": src("d", "crops")})], {"y": src("t", "t")})
    )
    (d, t) = plan.steps
    assert d.demultiply_count == -1
    assert d.node.params == {"count": "4"}
    assert [(e.target, e.node, e.alias, e.data_item) for e in d.inputs] == [
        ("in", "request", "x", "x")
    ]
    assert [(e.target, e.node, e.alias, e.data_item) for e in t.inputs] == [
        ("input", "d", "crops", "out")
    ]
    assert [(e.target, e.node, e.data_item) for e in plan.outputs] == [("y", "t", "output")]
    assert (d.used, t.used) == (("out",), ("output",))  # "index" is aliased but never read


def _with(config: dict[str, Any], **changes: Any) -> dict[str, Any]:
    return {**config, **changes}


TWO_LEVELS = [
    EXPAND,
    dl("e2", "expand", {"input": src("e", "e")}, demultiply_count=3),
    dl("t", "tiny", {"input": src("e2", "e2")}),
]

# (id, config, taken names, StatusCode, OVMS message)
INVALID = [
    (
        "name of a model",
        CHAIN,
        ("p",),
        "PIPELINE_NAME_OCCUPIED",
        "Pipeline has the same name as model",
    ),
    (
        "unknown library",
        pipeline([_with(DYN, library_name="nope")], {"y": src("d", "crops")}),
        (),
        "PIPELINE_DEFINITION_INVALID_NODE_LIBRARY",
        "Pipeline refers to incorrect library",
    ),
    (
        "library initialize fails",
        pipeline([_with(DYN, library_name="bad_init")], {"y": src("d", "crops")}),
        (),
        "NODE_LIBRARY_INITIALIZE_FAILED",
        "Failure during custom node library initialization",
    ),
    (
        "dynamic demultiplexer beside another",
        pipeline(
            [DYN, dl("t", "tiny", {"input": src("d", "crops")})],
            {"y": src("t", "t")},
            demultiply_count=2,
        ),
        (),
        "NOT_IMPLEMENTED",
        "Functionality not implemented",
    ),
    (
        "two nodes with one name",
        pipeline(
            [dl("t", "tiny", {"input": X}), dl("t", "tiny", {"input": X})], {"y": src("t", "t")}
        ),
        (),
        "PIPELINE_NODE_NAME_DUPLICATE",
        "Pipeline definition has multiple nodes with the same name",
    ),
    (
        "a node named request",
        pipeline([dl("request", "tiny", {"input": X})], {"y": src("request", "request")}),
        (),
        "PIPELINE_NODE_NAME_DUPLICATE",
        "Pipeline definition has multiple nodes with the same name",
    ),
    (
        "missing model",
        pipeline([dl("t", "nope", {"input": X})], {"y": src("t", "t")}),
        (),
        "PIPELINE_NODE_REFERING_TO_MISSING_MODEL",
        "Pipeline definition has reference to missing model",
    ),
    (
        "missing pinned version",
        pipeline([dl("t", "tiny", {"input": X}, version=7)], {"y": src("t", "t")}),
        (),
        "PIPELINE_NODE_REFERING_TO_MISSING_MODEL",
        "Pipeline definition has reference to missing model",
    ),
    (
        "model with auto shape",
        pipeline([dl("t", "auto", {"input": X})], {"y": src("t", "t")}),
        (),
        "FORBIDDEN_MODEL_DYNAMIC_PARAMETER",
        "Value of provided parameter is forbidden",
    ),
    (
        "string demultiplexer",
        pipeline([dl("s", "strings", {"input": X}, demultiply_count=-1)], {"y": src("s", "s")}),
        (),
        "PIPELINE_STRING_DEMUILTIPLICATION_UNSUPPORTED",
        "Demultiplication is not supported for string precision",
    ),
    (
        "demultiplexer output of rank 2",
        pipeline([dl("t", "tiny", {"input": X}, demultiply_count=2)], {"y": src("t", "t")}),
        (),
        "PIPELINE_NOT_ENOUGH_SHAPE_DIMENSIONS_TO_DEMULTIPLY",
        "Pipeline has not enough shape dimensions to demultiply",
    ),
    (
        "fixed count against a static first dimension",
        pipeline([_with(EXPAND, demultiply_count=4)], {"y": src("e", "e")}),
        (),
        "PIPELINE_DEMULTIPLY_COUNT_DOES_NOT_MATCH_TENSOR_SHARD_COUNT",
        "Demultiplication count does not match tensor first dimension",
    ),
    (
        "gather from an unknown node",
        pipeline(
            [EXPAND, dl("s", "sum3", {"input": src("e", "e")}, gather_from_node="ghost")],
            {"y": src("s", "s")},
        ),
        (),
        "PIPELINE_NODE_GATHER_FROM_NOT_EXISTING_NODE",
        "Gather node refers to not existing node",
    ),
    (
        "gather from a node that does not demultiplex",
        pipeline(
            [
                dl("t", "tiny", {"input": X}),
                dl("s", "sum3", {"input": src("t", "t")}, gather_from_node="t"),
            ],
            {"y": src("s", "s")},
        ),
        (),
        "PIPELINE_NODE_GATHER_FROM_NOT_DEMULTIPLEXER",
        "Gather node refers to node that isn't demultiplexer",
    ),
    (
        "gather from a request that is not demultiplexed",
        pipeline([dl("s", "sum3", {"input": X}, gather_from_node="request")], {"y": src("s", "s")}),
        (),
        "PIPELINE_NODE_GATHER_FROM_NOT_DEMULTIPLEXER",
        "Gather node refers to node that isn't demultiplexer",
    ),
    (
        "input from an unknown node",
        pipeline([dl("t", "tiny", {"input": src("ghost", "g")})], {"y": src("t", "t")}),
        (),
        "PIPELINE_NODE_REFERING_TO_MISSING_NODE",
        "Pipeline definition has reference to missing node",
    ),
    (
        "response output from an unknown node",
        pipeline([dl("t", "tiny", {"input": X})], {"y": src("ghost", "t")}),
        (),
        "PIPELINE_NODE_REFERING_TO_MISSING_NODE",
        "Pipeline definition has reference to missing node",
    ),
    (
        "input from the response",
        pipeline([dl("t", "tiny", {"input": src("response", "y")})], {"y": src("t", "t")}),
        (),
        "PIPELINE_EXIT_USED_AS_NODE_DEPENDENCY",
        "Pipeline definition has response node used as dependency node",
    ),
    (
        "connection to an input the model lacks",
        pipeline([dl("t", "tiny", {"input": X, "extra": X})], {"y": src("t", "t")}),
        (),
        "PIPELINE_CONNECTION_TO_MISSING_MODEL_INPUT",
        "Pipeline definition has connection to non existing model input",
    ),
    (
        "one input fed twice",
        pipeline(
            [
                {
                    "name": "j",
                    "type": DL_MODEL,
                    "model_name": "two_in",
                    "inputs": [{"a": X}, {"a": X}, {"b": X}],
                    "outputs": [{"data_item": "output", "alias": "j"}],
                }
            ],
            {"y": src("j", "j")},
        ),
        (),
        "PIPELINE_MODEL_INPUT_CONNECTED_TO_MULTIPLE_DATA_SOURCES",
        "Pipeline definition has multiple connections to the same input of underlying model",
    ),
    (
        "request input not declared",
        pipeline([dl("t", "tiny", {"input": src("request", "z")})], {"y": src("t", "t")}),
        (),
        "PIPELINE_NODE_REFERING_TO_MISSING_DATA_SOURCE",
        "Pipeline definition has reference to missing data source",
    ),
    (
        "unknown alias",
        pipeline([dl("t", "tiny", {"input": X})], {"y": src("t", "output")}),
        (),
        "PIPELINE_NODE_REFERING_TO_MISSING_DATA_SOURCE",
        "Pipeline definition has reference to missing data source",
    ),
    (
        "alias of an output the model lacks",
        pipeline(
            [dl("t", "tiny", {"input": X}, outputs=[{"data_item": "nope", "alias": "t"}])],
            {"y": src("t", "t")},
        ),
        (),
        "PIPELINE_NODE_REFERING_TO_MISSING_MODEL_OUTPUT",
        "Pipeline definition has reference to missing model output",
    ),
    (
        "shape mismatch between nodes",
        pipeline(
            [dl("t", "tiny", {"input": X}), dl("w", "wide", {"input": src("t", "t")})],
            {"y": src("w", "w")},
        ),
        (),
        "INVALID_SHAPE",
        "Invalid input shape - Node: w input: input Invalid shape - Expected: (-1,15); Actual: (-1,16)",
    ),
    (
        "shape mismatch after gathering",
        pipeline(
            [EXPAND, dl("t", "tiny", {"input": src("e", "e")}, gather_from_node="e")],
            {"y": src("t", "t")},
        ),
        (),
        "INVALID_SHAPE",
        "Invalid input shape - Node: t input: input Invalid shape - Expected: (-1,16); Actual: (3,-1,16)",
    ),
    (
        "precision mismatch between nodes",
        pipeline(
            [dl("t", "tiny", {"input": X}), dl("i", "ints", {"input": src("t", "t")})],
            {"y": src("i", "i")},
        ),
        (),
        "INVALID_PRECISION",
        "Invalid input precision",
    ),
    (
        "string tensor between nodes",
        pipeline(
            [dl("a", "strings", {"input": X}), dl("b", "strings", {"input": src("a", "a")})],
            {"y": src("b", "b")},
        ),
        (),
        "NOT_IMPLEMENTED",
        "Functionality not implemented",
    ),
    (
        "model input left unfed",
        pipeline([dl("j", "two_in", {"a": X})], {"y": src("j", "j")}),
        (),
        "PIPELINE_NOT_ALL_INPUTS_CONNECTED",
        "Pipeline definition does not have connections for all inputs of underlying models",
    ),
    (
        "cycle",
        pipeline(
            [
                dl("a", "two_in", {"a": X, "b": src("b", "b")}),
                dl("b", "tiny", {"input": src("a", "a")}),
            ],
            {"y": src("b", "b")},
        ),
        (),
        "PIPELINE_CYCLE_FOUND",
        "Pipeline definition contains a cycle",
    ),
    (
        "self loop",
        pipeline([dl("a", "two_in", {"a": X, "b": src("a", "a")})], {"y": src("a", "a")}),
        (),
        "PIPELINE_CYCLE_FOUND",
        "Pipeline definition contains a cycle",
    ),
    (
        "node not reaching the response",
        pipeline(
            [dl("a", "tiny", {"input": X}), dl("b", "tiny", {"input": X})], {"y": src("a", "a")}
        ),
        (),
        "PIPELINE_CONTAINS_UNCONNECTED_NODES",
        "Pipeline definition has unconnected nodes",
    ),
    (
        "gathering the outer demultiplexer first",
        pipeline(
            [*TWO_LEVELS, dl("s", "sum3", {"input": src("t", "t")}, gather_from_node="e")],
            {"y": src("s", "s")},
        ),
        (),
        "PIPELINE_WRONG_DEMULTIPLEXER_GATHER_NODES_ORDER",
        "Demultiplexer and gather nodes are not in LIFO order",
    ),
    (
        "inputs from two demultiplexing levels",
        pipeline(
            [
                EXPAND,
                dl("t", "tiny", {"input": src("e", "e")}),
                dl("j", "two_in", {"a": src("t", "t"), "b": X}),
            ],
            {"y": src("j", "j")},
        ),
        (),
        "PIPELINE_WRONG_DEMULTIPLEXER_GATHER_NODES_ORDER",
        "Demultiplexer and gather nodes are not in LIFO order",
    ),
    (
        "response from two demultiplexing levels",
        pipeline([EXPAND, dl("t", "tiny", {"input": src("e", "e")})], {"y": src("t", "t"), "x": X}),
        (),
        "PIPELINE_WRONG_DEMULTIPLEXER_GATHER_NODES_ORDER",
        "Demultiplexer and gather nodes are not in LIFO order",
    ),
    (
        "consumers of one input disagree",
        pipeline(
            [dl("a", "tiny", {"input": X}), dl("b", "wide", {"input": X})],
            {"y": src("a", "a"), "z": src("b", "b")},
        ),
        (),
        "PIPELINE_INPUTS_AMBIGUOUS_METADATA",
        "Multiple nodes connected to the same pipeline input require different tensor metadata",
    ),
]


@pytest.mark.parametrize(
    ("config", "taken", "code", "message"),
    [pytest.param(*case[1:], id=case[0]) for case in INVALID],
)
def test_invalid_pipelines(
    config: dict[str, Any], taken: tuple[str, ...], code: str, message: str
) -> None:
    with pytest.raises(PipelineInvalid) as info:
        plan_of(config, taken)
    assert info.value.code == code
    assert info.value.message.startswith(message), info.value.message
    expected_http = 400 if code in ("INVALID_SHAPE", "INVALID_PRECISION") else 500
    assert (info.value.http_status, info.value.grpc_status) == (expected_http, 9)


def test_two_nested_fixed_demultiplexers_gather_outermost_first() -> None:
    plan = plan_of(pipeline(TWO_LEVELS, {"y": src("t", "t")}))
    assert plan.gathers == ("e", "e2")
    assert plan.outputs_meta == {"y": fp32(3, 3, -1, 16)}
    assert [s.level for s in plan.steps] == [(), ("e",), ("e", "e2")]


# -- schema ----------------------------------------------------------------------------------

NODE = dl("t", "tiny", {"input": X})

# (id, pipeline entry, expected message)
SCHEMA_ERRORS = [
    (
        "unknown pipeline key",
        _with(CHAIN, nodez=[]),
        f"{WHERE}[0]: unknown key 'nodez' (did you mean 'nodes'?)",
    ),
    (
        "missing outputs",
        {k: v for k, v in CHAIN.items() if k != "outputs"},
        f"{WHERE}[0]: missing required key 'outputs'",
    ),
    (
        "inputs not strings",
        _with(CHAIN, inputs=[1]),
        f"{WHERE}[0].inputs[0]: expected a string, got 1",
    ),
    (
        "unknown node key",
        pipeline([_with(NODE, batch_size=1)], {"y": src("t", "t")}),
        f"{WHERE}[0].nodes[0]: unknown key 'batch_size'",
    ),
    (
        "node type",
        pipeline([_with(NODE, type="DL")], {"y": src("t", "t")}),
        f'{WHERE}[0].nodes[0].type: expected "DL model", "custom" or "python", got \'DL\'',
    ),
    (
        "custom node without library",
        pipeline([_with(NODE, type="custom")], {"y": src("t", "t")}),
        f"{WHERE}[0].nodes[0]: a 'custom' node needs 'library_name'",
    ),
    (
        "DL model node with a library",
        pipeline([_with(NODE, library_name="dyn")], {"y": src("t", "t")}),
        f"{WHERE}[0].nodes[0]: a 'DL model' node cannot have 'library_name'",
    ),
    (
        "python node without a callable",
        pipeline([_with(NODE, type="python")], {"y": src("t", "t")}),
        f"{WHERE}[0].nodes[0]: a 'python' node needs 'callable'",
    ),
    (
        "custom node with a callable",
        pipeline([_with(DYN, callable="m:f")], {"y": src("d", "crops")}),
        f"{WHERE}[0].nodes[0]: a 'custom' node cannot have 'callable'",
    ),
    (
        "params not strings",
        pipeline([_with(DYN, params={"count": 4})], {"y": src("d", "crops")}),
        f"{WHERE}[0].nodes[0].params.count: expected a string, got 4",
    ),
    (
        "demultiply_count too large",
        pipeline([_with(NODE, demultiply_count=10001)], {"y": src("t", "t")}),
        f"{WHERE}[0].nodes[0].demultiply_count: expected an integer from -1 to 10000, got 10001",
    ),
    (
        "demultiply_count boolean",
        _with(CHAIN, demultiply_count=True),
        f"{WHERE}[0].demultiply_count: expected an integer from -1 to 10000, got True",
    ),
    (
        "version zero",
        pipeline([_with(NODE, version=0)], {"y": src("t", "t")}),
        f"{WHERE}[0].nodes[0].version: expected an integer >= 1, got 0",
    ),
    (
        "input with two keys",
        pipeline([_with(NODE, inputs=[{"input": X, "other": X}])], {"y": src("t", "t")}),
        f"{WHERE}[0].nodes[0].inputs[0]: expected an object with one key",
    ),
    (
        "unknown key in a source",
        pipeline([_with(NODE, inputs=[{"input": {**X, "version": 1}}])], {"y": src("t", "t")}),
        f"{WHERE}[0].nodes[0].inputs[0].input: unknown key 'version'",
    ),
    (
        "output without alias",
        pipeline([_with(NODE, outputs=[{"data_item": "output"}])], {"y": src("t", "t")}),
        f"{WHERE}[0].nodes[0].outputs[0]: missing required key 'alias'",
    ),
    (
        "response output not an object",
        _with(CHAIN, outputs=["y"]),
        f"{WHERE}[0].outputs[0]: expected an object with one key, got 'y'",
    ),
]


@pytest.mark.parametrize(
    ("entry", "message"), [pytest.param(*c[1:], id=c[0]) for c in SCHEMA_ERRORS]
)
def test_schema_errors_name_the_key(entry: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_pipelines([entry], WHERE)
    assert str(info.value).startswith(message), str(info.value)


def test_parsed_node() -> None:
    entry = pipeline([DYN], {"y": src("d", "crops")}, demultiply_count=0)
    parsed = parse(entry)
    assert parsed.demultiply_count == -1  # 0 is the deprecated spelling of -1
    assert parsed.nodes == (
        NodeConfig(
            name="d",
            kind=CUSTOM,
            library_name="dyn",
            inputs=(("in", Source("request", "x")),),
            outputs=(NodeOutput("out", "crops"), NodeOutput("index", "index")),
            params={"count": "4"},
            demultiply_count=-1,
        ),
    )
    assert parsed.outputs == (("y", Source("d", "crops")),)


def test_repeated_alias_keeps_the_last() -> None:
    node = parse(
        pipeline(
            [
                _with(
                    NODE,
                    outputs=[
                        {"data_item": "a", "alias": "t"},
                        {"data_item": "output", "alias": "t"},
                    ],
                )
            ],
            {"y": src("t", "t")},
        )
    ).nodes[0]
    assert node.aliases == {"t": "output"}


def test_duplicate_pipeline_names_keep_the_first() -> None:
    first, second = _with(CHAIN, inputs=["x"]), _with(CHAIN, inputs=["other"])
    assert [p.inputs for p in parse_pipelines([first, second], WHERE)] == [("x",)]


def test_libraries(tmp_path: Path) -> None:
    where = "config.json: custom_node_library_config_list"
    libraries = parse_libraries(
        [
            {"name": "a", "base_path": "lib/a.so"},
            {"name": "b", "base_path": "/abs/b.so"},
            {"name": "c", "base_path": "../c.so"},
        ],
        where,
        tmp_path,
    )
    assert [(lib.name, lib.path, lib.path_refused) for lib in libraries] == [
        ("a", tmp_path / "lib/a.so", False),
        ("b", Path("/abs/b.so"), False),
        ("c", tmp_path / "../c.so", True),
    ]
    with pytest.raises(
        ConfigError, match=r"\[0\]: unknown key 'path' \(did you mean 'base_path'\?\)"
    ):
        parse_libraries([{"name": "a", "base_path": "x", "path": "y"}], where, tmp_path)
    with pytest.raises(ConfigError, match=r"\[0\]\.base_path: expected a string, got 3"):
        parse_libraries([{"name": "a", "base_path": 3}], where, tmp_path)
    with pytest.raises(ConfigError, match=r"custom_node_library_config_list: expected an array"):
        parse_libraries({}, where, tmp_path)


def test_model_metadata_with_ranges() -> None:
    spec = TensorSpec("input", datatype("FP32"), (-1, 16), ((1, 8), (16, 16)))
    ranged = TensorMeta.of(spec)
    assert ranged == TensorMeta("FP32", (-1, 16), ((1, 8), (16, 16)))
    models = {**MODELS, "ranged": model({"input": ranged}, {"output": ranged})}
    big = model({"input": fp32(-1, 16)}, {"output": fp32(9, 16)})
    models["big"] = big

    def lookup(name: str, version: int | None) -> NodeMeta | None:
        return models.get(name)

    ok = pipeline(
        [dl("a", "tiny", {"input": X}), dl("r", "ranged", {"input": src("a", "a")})],
        {"y": src("r", "r")},
    )
    plan = validate(parse(ok), models=lookup, custom_nodes=lookup_library)
    assert plan.outputs_meta == {"y": ranged}
    # two consumers of x: (-1,16) and 1..8 x 16 agree on 1..8
    both = pipeline(
        [dl("a", "tiny", {"input": X}), dl("r", "ranged", {"input": X})],
        {"y": src("a", "a"), "z": src("r", "r")},
    )
    assert validate(parse(both), models=lookup, custom_nodes=lookup_library).inputs_meta == {
        "x": TensorMeta("FP32", (-1, 16), ((1, 8), (16, 16)))
    }
    bad = pipeline(
        [dl("b", "big", {"input": X}), dl("r", "ranged", {"input": src("b", "b")})],
        {"y": src("r", "r")},
    )
    with pytest.raises(PipelineInvalid, match=r"Expected: \(-1,16\); Actual: \(9,16\)"):
        validate(parse(bad), models=lookup, custom_nodes=lookup_library)
