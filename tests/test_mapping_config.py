"""``mapping_config.json``: parsing (config) and the names it gives at compile (runtime)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ovtrio.config import (
    ConfigError,
    ModelConfig,
    TensorMapping,
    parse_layout,
    parse_mapping_config,
    parse_shape,
)
from ovtrio.repository._discovery import read_mapping
from ovtrio.runtime import LoadError, compile_version, ov_core
from tests import models


def test_parse_both_sides_and_either() -> None:
    text = '{"inputs": {"x": "first"}, "outputs": {"sum": "plus"}}'
    assert parse_mapping_config(text) == TensorMapping({"x": "first"}, {"sum": "plus"})
    assert parse_mapping_config('{"outputs": {"a": "b"}}') == TensorMapping({}, {"a": "b"})
    assert parse_mapping_config("{}") == TensorMapping()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{'inputs': {}}", "mapping_config.json: invalid JSON"),
        ('{"inputs": {"a": "b", "a": "c"}}', "duplicate key 'a'"),
        ("[]", "mapping_config.json: expected an object"),
        ('{"inputs": {}, "input": {}}', "unknown key 'input' (did you mean 'inputs'?)"),
        ('{"inputs": ["a"]}', "mapping_config.json: inputs: expected an object"),
        ('{"outputs": {"a": 1}}', "mapping_config.json: outputs.a: expected a non-empty string"),
        ('{"outputs": {"a": " "}}', "outputs.a: expected a non-empty string"),
        ('{"inputs": {"a": {"b": "c"}}}', "inputs.a: expected a non-empty string"),
    ],
)
def test_parse_refusals(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_mapping_config(text)
    assert message in str(info.value)


def test_read_mapping_from_a_version_folder(tmp_path: Path) -> None:
    assert read_mapping(tmp_path) is None
    (tmp_path / "mapping_config.json").write_text(json.dumps({"inputs": {"b": "in"}}))
    assert read_mapping(tmp_path) == TensorMapping({"b": "in"})
    (tmp_path / "mapping_config.json").write_bytes(b'{"inputs": {"b": "\xff"}}')
    with pytest.raises(ConfigError, match=r"mapping_config\.json: cannot read"):
        read_mapping(tmp_path)


@pytest.fixture(scope="module")
def multi(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("multi") / "multi"
    models.multi_model(base)
    return base


def _compile(base: Path, mapping: TensorMapping, **settings: object) -> tuple[list[str], ...]:
    cfg = ModelConfig(name="multi", base_path=base, **settings)  # type: ignore[arg-type]
    _, inputs, outputs, _ = compile_version(ov_core(), cfg, base / "1", mapping)
    return [s.name for s in inputs], [s.name for s in outputs]


def test_specs_carry_the_aliases(multi: Path) -> None:
    mapping = TensorMapping({"y": "second"}, {"diff": "minus"})
    assert _compile(multi, mapping) == (["x", "second"], ["sum", "minus"])
    # a tensor may be mapped to its own name
    assert _compile(multi, TensorMapping({"x": "x"})) == (["x", "y"], ["sum", "diff"])
    # inputs and outputs are separate name spaces, as in OVMS
    assert _compile(multi, TensorMapping({"x": "sum"})) == (["sum", "y"], ["sum", "diff"])


def test_shape_and_layout_use_the_aliases(multi: Path) -> None:
    cfg = ModelConfig(
        name="multi",
        base_path=multi,
        shape={"first": parse_shape("(3,4)")},
        layout={"second": parse_layout("CN:NC"), "minus": parse_layout("NC")},
    )
    mapping = TensorMapping({"x": "first", "y": "second"}, {"diff": "minus"})
    _, inputs, outputs, batch = compile_version(ov_core(), cfg, multi / "1", mapping)
    assert [(s.name, s.shape) for s in inputs] == [("first", (3, 4)), ("second", (4, -1))]
    assert [(s.name, s.shape) for s in outputs] == [("sum", (3, 4)), ("minus", (3, 4))]
    assert batch == (0, 1)


@pytest.mark.parametrize(
    ("mapping", "settings", "message"),
    [
        (TensorMapping({"z": "zed"}), {}, "'z' is not an input of the model (inputs: 'x', 'y')"),
        (TensorMapping({}, {"x": "ex"}), {}, "'x' is not an output of the model"),
        (TensorMapping({"x": "y"}), {}, "inputs 'x' and 'y' would both be named 'y'"),
        (TensorMapping({"x": "k", "y": "k"}), {}, "inputs 'x' and 'y' would both be named 'k'"),
        (
            TensorMapping({}, {"sum": "o", "diff": "o"}),
            {},
            "outputs 'sum' and 'diff' would both be named 'o'",
        ),
        (
            TensorMapping({"x": "first"}),
            {"shape": {"x": parse_shape("(1,4)")}},
            "shape names 'x', which mapping_config.json renames to 'first': use the mapped name",
        ),
        (
            TensorMapping({}, {"sum": "plus"}),
            {"layout": {"sum": "NC"}},
            "layout names 'sum', which mapping_config.json renames to 'plus'",
        ),
        (
            TensorMapping({"x": "first"}),
            {"shape": {"nope": parse_shape("(1,4)")}},
            "shape names 'nope', which is not an input of the model",
        ),
    ],
)
def test_refusals_at_compile(
    multi: Path, mapping: TensorMapping, settings: dict[str, object], message: str
) -> None:
    with pytest.raises(LoadError) as info:
        _compile(multi, mapping, **settings)
    assert message in str(info.value)


def test_any_name_of_a_tensor_may_be_mapped(tmp_path: Path) -> None:
    import numpy as np
    import openvino as ov
    import openvino.opset13 as ops

    x = ops.parameter(ov.PartialShape([-1, 2]), ov.Type.f32, name="in")
    x.output(0).get_tensor().set_names({"in", "in:0"})
    y = ops.add(x, ops.constant(np.float32(1)))
    y.output(0).get_tensor().set_names({"out", "out:0"})
    models._save(ov.Model([y.output(0)], [x], "two_names"), tmp_path)
    assert _compile(tmp_path, TensorMapping({"in:0": "a"}, {"out:0": "b"})) == (["a"], ["b"])
    with pytest.raises(LoadError, match="input 'in' is renamed twice"):
        _compile(tmp_path, TensorMapping({"in:0": "a", "in": "b"}))
