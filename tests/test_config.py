"""config.py: config.json schema, CLI flags, shape/batch/layout parsing, batching merge."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest

from ovtrio import cli, config
from ovtrio._version import __version__
from ovtrio.config import (
    BatchingConfig,
    ConfigError,
    ModelConfig,
    ShapeSpec,
    VersionPolicy,
)

REPO = Path(__file__).resolve().parent.parent
MODEL = {"name": "m", "base_path": "models/m"}
CLI_MODEL = ["--model_name", "m", "--model_path", "/models/m", "--rest_port", "8000"]


def write_config(directory: Path, data: object) -> Path:
    path = directory / "config.json"
    path.write_text(data if isinstance(data, str) else json.dumps(data), encoding="utf-8")
    return path


def one_model(**overrides: object) -> dict[str, object]:
    return {"model_config_list": [{"config": {**MODEL, **overrides}}]}


def load_file(directory: Path, data: object) -> config.ConfigFile:
    return config.load_config_file(write_config(directory, data), BatchingConfig())


def assert_one_line_naming(exc: ConfigError, *fragments: str) -> None:
    message = str(exc)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"


# --------------------------------------------------------------------------------------------
# Value parsers

DIM_ANY = (0, -1)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("auto", ShapeSpec(auto=True)),
        (" AUTO ", ShapeSpec(auto=True)),
        ("(1,3,224,224)", ShapeSpec(False, ((1, 1), (3, 3), (224, 224), (224, 224)))),
        ("[1,3,224,224]", ShapeSpec(False, ((1, 1), (3, 3), (224, 224), (224, 224)))),
        ("(-1,3,-1,-1)", ShapeSpec(False, (DIM_ANY, (3, 3), DIM_ANY, DIM_ANY))),
        ("(1:8,3,224,224)", ShapeSpec(False, ((1, 8), (3, 3), (224, 224), (224, 224)))),
        (" ( 1 : 8 , 3 ) ", ShapeSpec(False, ((1, 8), (3, 3)))),
        ("(7)", ShapeSpec(False, ((7, 7),))),
    ],
)
def test_parse_shape(text: str, expected: ShapeSpec) -> None:
    assert config.parse_shape(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "()",
        "(1,3",
        "1,3",
        "(1,3]",
        "(1,,3)",
        "(1,x)",
        "(0,3)",
        "(-2,3)",
        "(1.5,3)",
        "(8:1,3)",
        "(4:4,3)",
        "(0:4,3)",
        "(1:2:3)",
        "(1:-1)",
        "(99999999999,1)",
        "automatic",
    ],
)
def test_parse_shape_invalid(text: str) -> None:
    with pytest.raises(ConfigError, match="invalid shape"):
        config.parse_shape(text)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (16, (16, 16)),
        (0, None),
        ("0", None),
        ("16", (16, 16)),
        (" 16 ", (16, 16)),
        ("1:8", (1, 8)),
        ("-1", DIM_ANY),
        ("auto", "auto"),
        ("Auto", "auto"),
    ],
)
def test_parse_batch_size(value: int | str, expected: object) -> None:
    assert config.parse_batch_size(value) == expected


@pytest.mark.parametrize("value", [-1, -2, True, "", "x", "8:1", "0:4", "1.5", "(1)", 2**40])
def test_parse_batch_size_invalid(value: int | str) -> None:
    with pytest.raises(ConfigError, match="invalid batch size"):
        config.parse_batch_size(value)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("NCHW", "NCHW"),
        ("nhwc:nchw", "NHWC:NCHW"),
        ("NHWC : NCHW", "NHWC:NCHW"),
        ("CN", "CN"),
        ("N...", "N..."),
        ("...", "..."),
        ("N?C", "N?C"),
        ("N??", "N??"),
        ("NCDHW", "NCDHW"),
        ("N...C:NC...", "N...C:NC..."),
    ],
)
def test_parse_layout(text: str, expected: str) -> None:
    assert config.parse_layout(text) == expected


@pytest.mark.parametrize(
    "text", ["", "NCHX", "NN", "N......", "N..", "NC:HW:CN", "NHWC:", ":NCHW", "[N,C]", "N1"]
)
def test_parse_layout_invalid(text: str) -> None:
    with pytest.raises(ConfigError, match="invalid layout"):
        config.parse_layout(text)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ({"all": {}}, VersionPolicy("all")),
        ({"latest": {}}, VersionPolicy("latest", num_versions=1)),
        ({"latest": {"num_versions": 3}}, VersionPolicy("latest", num_versions=3)),
        ({"specific": {"versions": [3, 1, 3]}}, VersionPolicy("specific", versions=(1, 3))),
        ('{"latest": {"num_versions": 2}}', VersionPolicy("latest", num_versions=2)),
        ('{"all": {}}', VersionPolicy("all")),
    ],
)
def test_parse_version_policy(value: object, expected: VersionPolicy) -> None:
    assert config.parse_version_policy(value) == expected


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ({}, "exactly one of"),
        ({"all": {}, "latest": {}}, "exactly one of"),
        ({"newest": {}}, "unknown policy 'newest'"),
        ({"all": {"x": 1}}, "all: unknown key 'x'"),
        ({"all": []}, "all: expected an object"),
        ({"latest": {"num_versions": 0}}, "latest.num_versions: expected an integer >= 1"),
        ({"latest": {"num_versions": "2"}}, "latest.num_versions: expected an integer >= 1"),
        ({"latest": {"n": 2}}, "latest: unknown key 'n'"),
        ({"specific": {}}, "specific: missing required key 'versions'"),
        ({"specific": {"versions": []}}, "specific.versions: expected a non-empty list"),
        ({"specific": {"versions": [0]}}, "specific.versions[0]: expected an integer >= 1"),
        ({"specific": {"versions": [1, True]}}, "specific.versions[1]"),
        ([], "expected an object"),
        ("{latest", "invalid JSON"),
    ],
)
def test_parse_version_policy_invalid(value: object, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        config.parse_version_policy(value)
    assert_one_line_naming(info.value, fragment)


@pytest.mark.parametrize(
    ("policy", "available", "expected"),
    [
        (VersionPolicy("latest"), [1, 3, 2], [3]),
        (VersionPolicy("latest", num_versions=2), [1, 3, 2], [2, 3]),
        (VersionPolicy("latest", num_versions=5), [2, 1], [1, 2]),
        (VersionPolicy("latest"), [], []),
        (VersionPolicy("all"), [3, 1, 2, 2], [1, 2, 3]),
        (VersionPolicy("specific", versions=(1, 4)), [1, 2, 3], [1]),
        (VersionPolicy("specific", versions=(5,)), [1, 2], []),
    ],
)
def test_version_policy_select(
    policy: VersionPolicy, available: list[int], expected: list[int]
) -> None:
    assert policy.select(available) == expected
    assert policy.select(iter(available)) == expected


def test_shape_spec_str_round_trips() -> None:
    for text in ["auto", "(1,3,224,224)", "(-1,3)", "(1:8,3)"]:
        spec = config.parse_shape(text)
        assert str(spec) == text
        assert config.parse_shape(str(spec)) == spec


# --------------------------------------------------------------------------------------------
# config.json: errors


CONFIG_ERRORS = [
    # top level
    ("not-an-object", [], "expected an object"),
    ("unknown-top-key", {"model_config_list": [], "models": []}, "unknown key 'models'"),
    ("missing-model-list", {}, "missing required key 'model_config_list'"),
    ("model-list-not-list", {"model_config_list": {}}, "model_config_list: expected a list"),
    *[
        (
            f"unsupported-{key}",
            {"model_config_list": [], key: [{"x": 1}]},
            f"{key} is not supported yet",
        )
        for key in (
            "mediapipe_config_list",
            "custom_loader_config_list",
        )
    ],
    # pipelines and custom node libraries: OVMS' schema
    (
        "pipeline-unknown-key",
        {
            "model_config_list": [],
            "pipeline_config_list": [
                {"name": "p", "inputs": [], "nodes": [], "outputs": [], "extra": 1}
            ],
        },
        "pipeline_config_list[0]: unknown key 'extra'",
    ),
    (
        "library-missing-base-path",
        {"model_config_list": [], "custom_node_library_config_list": [{"name": "lib"}]},
        "custom_node_library_config_list[0]: missing required key 'base_path'",
    ),
    # list entries
    ("entry-not-object", {"model_config_list": ["m"]}, "model_config_list[0]: expected an object"),
    (
        "entry-no-config",
        {"model_config_list": [{}]},
        "model_config_list[0]: missing required key 'config'",
    ),
    (
        "entry-extra-key",
        {"model_config_list": [{"config": MODEL, "extra": 1}]},
        "model_config_list[0]: unknown key 'extra'",
    ),
    # model keys
    ("unknown-model-key", one_model(nireqs=4), "model_config_list[0].config: unknown key 'nireqs'"),
    (
        "ovms-only-mean",
        one_model(mean="[1,2,3]"),
        "model_config_list[0].config: unknown key 'mean'",
    ),
    (
        "missing-name",
        {"model_config_list": [{"config": {"base_path": "x"}}]},
        "missing required key 'name'",
    ),
    (
        "missing-base-path",
        {"model_config_list": [{"config": {"name": "m"}}]},
        "missing required key 'base_path'",
    ),
    ("empty-name", one_model(name=""), 'config.name: expected a non-empty string, got ""'),
    ("name-not-string", one_model(name=5), "config.name: expected a non-empty string, got 5"),
    ("name-slash", one_model(name="a/b"), "config.name: model name must not contain '/' or '..'"),
    ("name-dotdot", one_model(name="a..b"), "config.name: model name must not contain '/' or '..'"),
    (
        "base-path-not-string",
        one_model(base_path=3),
        "config.base_path: expected a non-empty string",
    ),
    (
        "base-path-web",
        one_model(base_path="https://host/m"),
        'config.base_path: base_path must be a local folder or an s3://, gs:// or az:// URL, got "https://host/m"',
    ),
    (
        "base-path-azure-files",
        one_model(base_path="azfs://share/m"),
        "config.base_path: azfs://share/m: Azure Files shares (azfs://) are not supported",
    ),
    ("base-path-no-bucket", one_model(base_path="s3:///m"), "config.base_path: s3:///m: no bucket"),
    ("nireq-string", one_model(nireq="4"), 'config.nireq: expected an integer >= 0, got "4"'),
    (
        "nireq-negative",
        one_model(nireq=-1),
        "config.nireq: expected an integer in 0..100000, got -1",
    ),
    ("nireq-too-big", one_model(nireq=100001), "config.nireq: expected an integer in 0..100000"),
    ("nireq-bool", one_model(nireq=True), "config.nireq: expected an integer >= 0, got true"),
    ("nireq-float", one_model(nireq=1.0), "config.nireq: expected an integer >= 0, got 1.0"),
    (
        "target-device-empty",
        one_model(target_device=""),
        "config.target_device: expected a non-empty string",
    ),
    ("plugin-config-list", one_model(plugin_config=[]), "config.plugin_config: expected an object"),
    (
        "plugin-config-null",
        one_model(plugin_config={"A": None}),
        "config.plugin_config.A: expected a string, number or boolean",
    ),
    ("plugin-config-nested", one_model(plugin_config={"A": {}}), "config.plugin_config.A"),
    ("batch-size-bad", one_model(batch_size="x"), "config.batch_size: invalid batch size"),
    ("batch-size-negative", one_model(batch_size=-1), "config.batch_size: invalid batch size -1"),
    (
        "batch-size-bool",
        one_model(batch_size=True),
        "config.batch_size: expected an integer >= 0 or a string",
    ),
    ("batch-size-range", one_model(batch_size="8:1"), "config.batch_size: invalid batch size"),
    ("shape-bad", one_model(shape="(1,x)"), "config.shape: invalid shape"),
    ("shape-number", one_model(shape=5), "config.shape: expected a string or an object of strings"),
    ("shape-object-bad", one_model(shape={"in": "(0,1)"}), "config.shape.in: invalid shape"),
    (
        "shape-object-number",
        one_model(shape={"in": 1}),
        "config.shape.in: expected a non-empty string",
    ),
    ("layout-bad", one_model(layout="NCHX"), "config.layout: invalid layout"),
    (
        "layout-object-bad",
        one_model(layout={"out": "NC:HW:CN"}),
        "config.layout.out: invalid layout",
    ),
    (
        "layout-number",
        one_model(layout=1),
        "config.layout: expected a string or an object of strings",
    ),
    (
        "policy-two-keys",
        one_model(model_version_policy={"all": {}, "latest": {}}),
        "config.model_version_policy: expected exactly one of",
    ),
    (
        "policy-num-zero",
        one_model(model_version_policy={"latest": {"num_versions": 0}}),
        "config.model_version_policy.latest.num_versions: expected an integer >= 1",
    ),
    (
        "policy-string",
        one_model(model_version_policy="latest"),
        "config.model_version_policy: invalid JSON",
    ),
    (
        "allow-cache-string",
        one_model(allow_cache="yes"),
        'config.allow_cache: expected true or false, got "yes"',
    ),
    ("stateful", one_model(stateful=True), "config.stateful: stateful models are not supported"),
    ("stateful-not-bool", one_model(stateful=1), "config.stateful: expected true or false"),
    (
        "idle-cleanup-not-bool",
        one_model(idle_sequence_cleanup="x"),
        "config.idle_sequence_cleanup: expected true or false",
    ),
    (
        "low-latency-not-bool",
        one_model(low_latency_transformation=0),
        "config.low_latency_transformation",
    ),
    (
        "max-seq-negative",
        one_model(max_sequence_number=-1),
        "config.max_sequence_number: expected an integer",
    ),
    (
        "custom-loader-options",
        one_model(custom_loader_options={}),
        "config.custom_loader_options: custom model loaders are not supported",
    ),
    (
        "graph-path",
        one_model(graph_path="g.pbtxt"),
        "config.graph_path: MediaPipe graphs are not supported",
    ),
    (
        "batching-string",
        one_model(dynamic_batching="yes"),
        "config.dynamic_batching: expected true, false or an object",
    ),
    (
        "batching-mode",
        one_model(dynamic_batching={"mode": "sometimes"}),
        'config.dynamic_batching.mode: expected "auto", "on" or "off"',
    ),
    (
        "batching-size-zero",
        one_model(dynamic_batching={"max_batch_size": 0}),
        "config.dynamic_batching.max_batch_size: expected an integer >= 1",
    ),
    (
        "batching-delay-negative",
        one_model(dynamic_batching={"max_delay_us": -1}),
        "config.dynamic_batching.max_delay_us: expected an integer >= 0",
    ),
    (
        "batching-queue-zero",
        one_model(dynamic_batching={"max_queue_size": 0}),
        "config.dynamic_batching.max_queue_size",
    ),
    (
        "batching-unknown",
        one_model(dynamic_batching={"max_batch": 4}),
        "config.dynamic_batching: unknown key 'max_batch' (did you mean 'max_batch_size'?)",
    ),
    (
        "duplicate-name",
        {"model_config_list": [{"config": MODEL}, {"config": {**MODEL, "base_path": "y"}}]},
        "model_config_list[1].config.name: duplicate model name 'm' (also in model_config_list[0])",
    ),
    # monitoring
    (
        "monitoring-not-object",
        {"model_config_list": [], "monitoring": []},
        "monitoring: expected an object",
    ),
    (
        "monitoring-unknown",
        {"model_config_list": [], "monitoring": {"logs": {}}},
        "monitoring: unknown key 'logs'",
    ),
    (
        "metrics-unknown",
        {"model_config_list": [], "monitoring": {"metrics": {"on": True}}},
        "monitoring.metrics: unknown key 'on'",
    ),
    (
        "metrics-enable-string",
        {"model_config_list": [], "monitoring": {"metrics": {"enable": "true"}}},
        "monitoring.metrics.enable: expected true or false",
    ),
    (
        "metrics-list-string",
        {
            "model_config_list": [],
            "monitoring": {"metrics": {"enable": True, "metrics_list": "ovms_streams"}},
        },
        "monitoring.metrics.metrics_list: expected a list",
    ),
    (
        "metrics-list-unknown",
        {
            "model_config_list": [],
            "monitoring": {"metrics": {"enable": True, "metrics_list": ["ovms_streams", "nope"]}},
        },
        'monitoring.metrics.metrics_list[1]: unknown metric "nope"',
    ),
    # JSON itself
    ("bad-json", '{"model_config_list": [', "invalid JSON: Expecting value"),
    (
        "duplicate-json-key",
        '{"model_config_list": [], "model_config_list": []}',
        "invalid JSON: duplicate key 'model_config_list'",
    ),
    (
        "json-nan",
        '{"model_config_list": [{"config": {"name": "m", "base_path": "x", "nireq": NaN}}]}',
        "invalid JSON: NaN",
    ),
]


@pytest.mark.parametrize(
    ("data", "fragment"),
    [pytest.param(data, fragment, id=case) for case, data, fragment in CONFIG_ERRORS],
)
def test_config_file_errors(tmp_path: Path, data: object, fragment: str) -> None:
    path = write_config(tmp_path, data)
    with pytest.raises(ConfigError) as info:
        config.load_config_file(path, BatchingConfig())
    assert str(info.value).startswith(f"{path}: ")
    assert_one_line_naming(info.value, fragment)


def test_config_file_missing(tmp_path: Path) -> None:
    path = tmp_path / "nope.json"
    with pytest.raises(ConfigError) as info:
        config.load_config_file(path, BatchingConfig())
    assert_one_line_naming(info.value, str(path), "cannot read the config file", "No such file")


def test_config_file_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_bytes(b'{"model_config_list": ["\xff"]}')
    with pytest.raises(ConfigError) as info:
        config.load_config_file(path, BatchingConfig())
    assert_one_line_naming(info.value, str(path), "cannot read the config file")


# --------------------------------------------------------------------------------------------
# config.json: valid content


def test_config_file_full_model(tmp_path: Path) -> None:
    data = one_model(
        batch_size="1:8",
        shape={"in": "(1,3,224,224)", "aux": "auto"},
        layout={"in": "nhwc:nchw", "out": "CN"},
        model_version_policy={"specific": {"versions": [2, 1]}},
        nireq=4,
        target_device="GPU",
        plugin_config={"NUM_STREAMS": "1", "INFERENCE_NUM_THREADS": 2, "X": 0.5, "Y": True},
        allow_cache=True,
        stateful=False,
        idle_sequence_cleanup=True,
        low_latency_transformation=False,
        max_sequence_number=500,
    )
    (model,) = load_file(tmp_path, data).models
    assert model == ModelConfig(
        name="m",
        base_path=tmp_path / "models" / "m",
        batch_size=(1, 8),
        shape={"in": config.parse_shape("(1,3,224,224)"), "aux": ShapeSpec(auto=True)},
        layout={"in": "NHWC:NCHW", "out": "CN"},
        version_policy=VersionPolicy("specific", versions=(1, 2)),
        nireq=4,
        target_device="GPU",
        plugin_config={"NUM_STREAMS": "1", "INFERENCE_NUM_THREADS": 2, "X": 0.5, "Y": True},
        batching=BatchingConfig(),
        allow_cache=True,
    )
    assert model.source == f"{tmp_path / 'config.json'}: model_config_list[0]"


def test_config_file_defaults(tmp_path: Path) -> None:
    (model,) = load_file(tmp_path, one_model()).models
    assert model.batch_size is None
    assert model.shape is None
    assert model.layout is None
    assert model.version_policy == VersionPolicy("latest", num_versions=1)
    assert model.nireq == 0
    assert model.target_device == "CPU"
    assert model.plugin_config == {}
    assert model.batching == BatchingConfig()
    assert model.allow_cache is False


AUTO = ShapeSpec(auto=True)
STATIC = ShapeSpec(auto=False, dims=((1, 1), (3, 3)))


@pytest.mark.parametrize(
    ("settings", "model_cache"),
    [
        ({}, True),
        ({"shape": STATIC, "batch_size": (1, 8)}, True),
        ({"shape": AUTO}, False),
        ({"shape": {"a": STATIC, "b": AUTO}}, False),
        ({"batch_size": "auto"}, False),
        ({"shape": AUTO, "allow_cache": True}, True),
        ({"batch_size": "auto", "allow_cache": True}, True),
        ({"allow_cache": False}, True),
    ],
)
def test_model_cache_skips_auto_shapes_unless_allow_cache(
    settings: dict[str, object], model_cache: bool
) -> None:
    model = ModelConfig(name="m", base_path=Path("/m"), **settings)  # type: ignore[arg-type]
    assert model.model_cache is model_cache


@pytest.mark.parametrize(
    ("data", "batch_size", "shape"),
    [
        (one_model(batch_size=0), None, None),
        (one_model(batch_size="auto"), "auto", None),
        (one_model(shape="auto"), None, ShapeSpec(auto=True)),
        (one_model(shape={}), None, None),
        # both kept: the runtime ignores batch_size with a warning, like OVMS
        (one_model(batch_size=4, shape="(1,3)"), (4, 4), ShapeSpec(False, ((1, 1), (3, 3)))),
    ],
)
def test_config_file_batch_and_shape(
    tmp_path: Path, data: object, batch_size: object, shape: object
) -> None:
    (model,) = load_file(tmp_path, data).models
    assert model.batch_size == batch_size
    assert model.shape == shape


@pytest.mark.parametrize(
    "key",
    [
        "pipeline_config_list",
        "custom_node_library_config_list",
        "mediapipe_config_list",
        "custom_loader_config_list",
    ],
)
def test_config_file_empty_unsupported_lists_are_accepted(tmp_path: Path, key: str) -> None:
    assert load_file(tmp_path, {"model_config_list": [{"config": MODEL}], key: []}).models


def test_config_file_empty_model_list(tmp_path: Path) -> None:
    assert load_file(tmp_path, {"model_config_list": []}) == config.ConfigFile(models=())


@pytest.mark.parametrize(
    ("monitoring", "expected"),
    [
        ({}, config.MonitoringConfig()),
        ({"metrics": {}}, config.MonitoringConfig()),
        ({"metrics": {"enable": True}}, config.MonitoringConfig(enable=True)),
        (
            {"metrics": {"enable": True, "metrics_list": ["ovms_streams", "ovms_streams"]}},
            config.MonitoringConfig(enable=True, metrics_list=("ovms_streams",)),
        ),
    ],
)
def test_config_file_monitoring(
    tmp_path: Path, monitoring: object, expected: config.MonitoringConfig
) -> None:
    loaded = load_file(tmp_path, {"model_config_list": [], "monitoring": monitoring})
    assert loaded.monitoring == expected


@pytest.mark.parametrize(
    ("base_path", "expected"),
    [
        ("models/m", "conf/models/m"),
        ("./models/../m", "conf/m"),
        ("../m", "m"),
        ("/abs/m", "/abs/m"),
        ("~/m", "HOME/m"),
    ],
)
def test_relative_base_path_resolves_against_config_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, base_path: str, expected: str
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir("/")  # the current directory must not matter
    (tmp_path / "conf").mkdir()
    path = write_config(tmp_path / "conf", one_model(base_path=base_path))
    (model,) = config.load_config_file(path, BatchingConfig()).models
    want = Path(expected.replace("HOME", str(tmp_path / "home")))
    assert model.base_path == (want if want.is_absolute() else tmp_path / want)
    assert isinstance(model.base_path, Path) and model.base_path.is_absolute()


@pytest.mark.parametrize(
    "base_path", ["s3://bucket/models/m", "gs://bucket/m/", "az://container/m", "azure://c/m"]
)
def test_remote_base_path_stays_a_url(tmp_path: Path, base_path: str) -> None:
    path = write_config(tmp_path, one_model(base_path=base_path))
    (model,) = config.load_config_file(path, BatchingConfig()).models
    assert model.base_path == base_path
    cfg = config.load(["--model_name", "m", "--model_path", base_path, "--rest_port", "8000"])
    assert cfg.models[0].base_path == base_path


def test_relative_config_path_still_gives_absolute_base_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    write_config(tmp_path, one_model())
    (model,) = config.load_config_file(Path("config.json"), BatchingConfig()).models
    assert model.base_path == tmp_path / "models" / "m"


def test_model_config_equality_ignores_source_and_is_hashable(tmp_path: Path) -> None:
    a = ModelConfig(name="m", base_path=tmp_path, plugin_config={"A": 1}, source="x")
    b = ModelConfig(name="m", base_path=tmp_path, plugin_config={"A": 1}, source="y")
    assert a == b
    assert hash(a) == hash(b)
    assert a != ModelConfig(name="m", base_path=tmp_path, plugin_config={"A": 2})


def test_example_config_loads() -> None:
    loaded = config.load_config_file(REPO / "config" / "config.json", BatchingConfig())
    assert [m.name for m in loaded.models] == ["resnet", "dummy"]
    assert loaded.models[0].base_path == REPO / "config" / "models" / "resnet50"
    assert loaded.models[0].batching.mode == "on"
    assert loaded.models[1].batching.mode == "off"


# --------------------------------------------------------------------------------------------
# Dynamic batching: server-wide flags merged with the per-model "dynamic_batching"

SERVER_BATCHING = [
    "--dynamic_batching",
    "off",
    "--max_batch_size",
    "32",
    "--max_batch_delay_us",
    "500",
    "--max_queue_size",
    "64",
]


@pytest.mark.parametrize(
    ("per_model", "cli", "expected"),
    [
        (None, [], BatchingConfig("auto", 16, 0, 256)),
        (None, SERVER_BATCHING, BatchingConfig("off", 32, 500, 64)),
        (True, SERVER_BATCHING, BatchingConfig("on", 32, 500, 64)),
        (False, [], BatchingConfig("off", 16, 0, 256)),
        ({}, SERVER_BATCHING, BatchingConfig("off", 32, 500, 64)),
        ({"mode": "on"}, SERVER_BATCHING, BatchingConfig("on", 32, 500, 64)),
        ({"max_delay_us": 100}, SERVER_BATCHING, BatchingConfig("off", 32, 100, 64)),
        (
            {"mode": "auto", "max_batch_size": 8, "max_delay_us": 0, "max_queue_size": 1},
            SERVER_BATCHING,
            BatchingConfig("auto", 8, 0, 1),
        ),
    ],
)
def test_batching_merge(
    tmp_path: Path, per_model: object, cli: list[str], expected: BatchingConfig
) -> None:
    extra = {} if per_model is None else {"dynamic_batching": per_model}
    path = write_config(tmp_path, one_model(**extra))
    cfg = config.load(["--config_path", str(path), "--rest_port", "8000", *cli])
    assert cfg.models[0].batching == expected
    assert cfg.batching == (
        BatchingConfig("off", 32, 500, 64) if cli else BatchingConfig("auto", 16, 0, 256)
    )


def test_batching_flags_apply_to_single_model() -> None:
    cfg = config.load([*CLI_MODEL, *SERVER_BATCHING])
    assert cfg.models[0].batching == BatchingConfig("off", 32, 500, 64)


# --------------------------------------------------------------------------------------------
# Command line


def test_cli_defaults() -> None:
    cfg = config.load(CLI_MODEL)
    assert cfg == config.ServerConfig(
        port=0,
        rest_port=8000,
        models=(ModelConfig(name="m", base_path=Path("/models/m")),),
        ignored_flags=(),
    )
    assert cfg.models[0].source == "command line"
    assert cfg.config_path is None
    assert cfg.log_level == "INFO"
    assert cfg.graceful_timeout_s == 30.0
    assert cfg.grpc_max_message_bytes == cfg.rest_max_body_bytes == 1 << 30
    assert cfg.file_system_poll_wait_seconds == 1
    assert cfg.metrics_enable is False
    assert cfg.metrics_list == ()
    assert cfg.demo is False


@pytest.mark.parametrize(
    ("text", "addresses"),
    [
        ("0.0.0.0", ("0.0.0.0",)),
        ("127.0.0.1,127.0.0.2", ("127.0.0.1", "127.0.0.2")),
        (" 127.0.0.1 , ::1 ", ("127.0.0.1", "::1")),
        ("[::1],localhost", ("::1", "localhost")),
        ("::,0.0.0.0", ("::", "0.0.0.0")),
        ("model-server.example.com", ("model-server.example.com",)),
    ],
)
def test_cli_bind_address_lists(text: str, addresses: tuple[str, ...]) -> None:
    cfg = config.load([*CLI_MODEL, "--rest_bind_address", text, "--grpc_bind_address", text])
    assert cfg.rest_bind_address == cfg.grpc_bind_address == addresses


def test_cli_single_model_all_flags(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    cfg = config.load(
        [
            "--model_name", "resnet",
            "--model_path", "models/resnet",
            "--port", "9000",
            "--rest_port", "8000",
            "--grpc_bind_address", "127.0.0.1",
            "--rest_bind_address", "::1",
            "--batch_size", "1:8",
            "--shape", '{"in": "(1,3,-1,-1)", "aux": "auto"}',
            "--layout", "NHWC:NCHW",
            "--model_version_policy", '{"latest": {"num_versions": 2}}',
            "--nireq", "3",
            "--target_device", "AUTO",
            "--plugin_config", '{"NUM_STREAMS": "1", "ENABLE_CPU_PINNING": false}',
            "--log_level", "trace",
            "--log_path", "logs/ovtrio.log",
            "--cache_dir", "~/cache",
            "--file_system_poll_wait_seconds", "0",
            "--graceful_timeout_s", "2.5",
            "--grpc_max_message_bytes", "1024",
            "--rest_max_body_bytes", "2048",
        ]
    )  # fmt: skip
    (model,) = cfg.models
    assert model == ModelConfig(
        name="resnet",
        base_path=tmp_path / "models" / "resnet",
        batch_size=(1, 8),
        shape={"in": ShapeSpec(False, ((1, 1), (3, 3), DIM_ANY, DIM_ANY)), "aux": ShapeSpec(True)},
        layout="NHWC:NCHW",
        version_policy=VersionPolicy("latest", num_versions=2),
        nireq=3,
        target_device="AUTO",
        plugin_config={"NUM_STREAMS": "1", "ENABLE_CPU_PINNING": False},
    )
    assert (cfg.port, cfg.rest_port) == (9000, 8000)
    assert (cfg.grpc_bind_address, cfg.rest_bind_address) == (("127.0.0.1",), ("::1",))
    assert cfg.log_level == "TRACE"
    assert cfg.log_path == tmp_path / "logs" / "ovtrio.log"
    assert cfg.cache_dir == Path.home() / "cache"
    assert cfg.file_system_poll_wait_seconds == 0
    assert cfg.graceful_timeout_s == 2.5
    assert (cfg.grpc_max_message_bytes, cfg.rest_max_body_bytes) == (1024, 2048)


@pytest.mark.parametrize(
    ("flags", "shape", "layout"),
    [
        (["--shape", "(1,3)"], ShapeSpec(False, ((1, 1), (3, 3))), None),
        (["--shape", "auto"], ShapeSpec(True), None),
        (["--layout", '{"in": "nhwc:nchw"}'], None, {"in": "NHWC:NCHW"}),
        (["--layout", "N..."], None, "N..."),
    ],
)
def test_cli_shape_and_layout(flags: list[str], shape: object, layout: object) -> None:
    (model,) = config.load([*CLI_MODEL, *flags]).models
    assert model.shape == shape
    assert model.layout == layout


def test_cli_config_mode(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_config(tmp_path, one_model())
    monkeypatch.chdir(tmp_path)
    cfg = config.load(["--config_path", "config.json", "--port", "9000"])
    assert cfg.config_path == tmp_path / "config.json"
    assert [m.name for m in cfg.models] == ["m"]
    assert cfg.models[0].source == f"{tmp_path / 'config.json'}: model_config_list[0]"


def test_cli_demo(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    cfg = config.load(["--demo", "--rest_port", "8000", "--nireq", "2"])
    assert cfg.demo is True
    assert cfg.models == (
        ModelConfig(name="demo", base_path=tmp_path / ".cache" / "ovtrio" / "demo", nireq=2),
    )
    cfg = config.load(["--demo", "--rest_port", "8000", "--model_path", "/srv/demo"])
    assert cfg.models[0].base_path == Path("/srv/demo")
    assert cfg.models[0].name == "demo"


def test_cli_ignored_flags_are_recorded() -> None:
    cfg = config.load(
        [
            *CLI_MODEL,
            "--grpc_max_threads", "2",
            "--grpc_memory_quota", "1000",
            "--grpc_channel_arguments", "grpc.max_connection_age_ms=2000",
            "--sequence_cleaner_poll_wait_minutes", "5",
            "--custom_node_resources_cleaner_interval_seconds", "300",
        ]
    )  # fmt: skip
    assert cfg.ignored_flags == (
        "grpc_max_threads",
        "grpc_memory_quota",
        "grpc_channel_arguments",
        "sequence_cleaner_poll_wait_minutes",
        "custom_node_resources_cleaner_interval_seconds",
    )


def test_cli_workers_flags() -> None:
    cfg = config.load(CLI_MODEL)
    assert (cfg.rest_workers, cfg.grpc_workers) == (1, 1)
    cfg = config.load([*CLI_MODEL, "--grpc_workers", "4", "--rest_workers", "8"])
    assert (cfg.rest_workers, cfg.grpc_workers) == (8, 4)
    assert cfg.ignored_flags == ()
    for bad in ("0", "-1", "1025"):
        with pytest.raises(ConfigError, match=r"--rest_workers: expected an integer in 1\.\.1024"):
            config.load([*CLI_MODEL, "--rest_workers", bad])


@pytest.mark.parametrize(
    ("flags", "enabled", "names"),
    [
        ([], False, ()),
        (["--metrics_enable"], True, config.DEFAULT_METRICS),
        (["--metrics_enable=true"], True, config.DEFAULT_METRICS),
        (["--metrics_enable", "false"], False, ()),
        (
            ["--metrics_enable", "--metrics_list", "ovms_streams, ovms_infer_req_active"],
            True,
            ("ovms_streams", "ovms_infer_req_active"),
        ),
    ],
)
def test_cli_metrics(flags: list[str], enabled: bool, names: tuple[str, ...]) -> None:
    cfg = config.load([*CLI_MODEL, *flags])
    assert (cfg.metrics_enable, cfg.metrics_list) == (enabled, names)


@pytest.mark.parametrize(
    ("monitoring", "flags", "enabled", "names"),
    [
        (None, [], False, ()),
        ({"metrics": {"enable": True}}, [], True, config.DEFAULT_METRICS),
        (
            {"metrics": {"enable": True, "metrics_list": ["ovms_streams"]}},
            [],
            True,
            ("ovms_streams",),
        ),
        ({"metrics": {"enable": False, "metrics_list": ["ovms_streams"]}}, [], False, ()),
        # the command line takes precedence over the file
        ({"metrics": {"enable": True}}, ["--metrics_enable=false"], False, ()),
        (
            {"metrics": {"enable": False}},
            ["--metrics_enable", "--metrics_list", "ovms_responses"],
            True,
            ("ovms_responses",),
        ),
    ],
)
def test_config_file_metrics(
    tmp_path: Path,
    monitoring: object,
    flags: list[str],
    enabled: bool,
    names: tuple[str, ...],
) -> None:
    data: dict[str, object] = {"model_config_list": []}
    if monitoring is not None:
        data["monitoring"] = monitoring
    path = write_config(tmp_path, data)
    cfg = config.load(["--config_path", str(path), "--rest_port", "8000", *flags])
    assert (cfg.metrics_enable, cfg.metrics_list) == (enabled, names)


CLI_ERRORS = [
    ("no-model", ["--rest_port", "8000"], "no model to serve"),
    ("nothing", [], "both are 0"),
    (
        "no-port",
        ["--model_name", "m", "--model_path", "/m"],
        "set --port (gRPC), --rest_port (REST) or both",
    ),
    (
        "same-ports",
        [*CLI_MODEL, "--port", "8000"],
        "--port and --rest_port cannot have the same value (8000)",
    ),
    (
        "port-too-big",
        [*CLI_MODEL, "--port", "70000"],
        "--port: expected an integer in 0..65535, got 70000",
    ),
    (
        "rest-port-negative",
        ["--rest_port", "-1"],
        "--rest_port: expected an integer in 0..65535, got -1",
    ),
    ("port-not-int", ["--port", "abc"], "argument --port: invalid int value: 'abc'"),
    ("unknown-flag", [*CLI_MODEL, "--bogus", "1"], "unrecognized arguments: --bogus 1"),
    ("abbreviation", [*CLI_MODEL, "--por", "9000"], "unrecognized arguments: --por"),
    ("positional", [*CLI_MODEL, "extra"], "unrecognized arguments: extra"),
    (
        "log-level",
        [*CLI_MODEL, "--log_level", "LOUD"],
        "argument --log_level: invalid choice: 'LOUD'",
    ),
    (
        "batching-mode",
        [*CLI_MODEL, "--dynamic_batching", "maybe"],
        "argument --dynamic_batching: invalid choice",
    ),
    (
        "metrics-enable-word",
        [*CLI_MODEL, "--metrics_enable", "maybe"],
        "argument --metrics_enable: expected true or false",
    ),
    (
        "metrics-list-without-enable",
        [*CLI_MODEL, "--metrics_list", "ovms_streams"],
        "--metrics_list requires --metrics_enable",
    ),
    (
        "metrics-without-rest",
        ["--model_name", "m", "--model_path", "/m", "--port", "9000", "--metrics_enable"],
        "--metrics_enable requires --rest_port",
    ),
    (
        "metrics-unknown",
        [*CLI_MODEL, "--metrics_enable", "--metrics_list", "ovms_streams,nope"],
        '--metrics_list[1]: unknown metric "nope"',
    ),
    (
        "model-name-alone",
        ["--model_name", "m", "--rest_port", "8000"],
        "--model_name requires --model_path",
    ),
    (
        "model-path-alone",
        ["--model_path", "/m", "--rest_port", "8000"],
        "--model_path requires --model_name",
    ),
    (
        "model-name-slash",
        ["--model_name", "a/b", "--model_path", "/m", "--rest_port", "8000"],
        "--model_name: model name must not contain '/' or '..'",
    ),
    (
        "model-path-web",
        ["--model_name", "m", "--model_path", "http://b/m", "--rest_port", "8000"],
        "--model_path: base_path must be a local folder or an s3://, gs:// or az:// URL",
    ),
    (
        "model-path-dotdot",
        ["--model_name", "m", "--model_path", "gs://b/a/../m", "--rest_port", "8000"],
        "--model_path: gs://b/a/../m: the path must not contain '.' or '..' segments",
    ),
    (
        "demo-remote",
        ["--demo", "--model_path", "s3://b/demo", "--rest_port", "8000"],
        "--demo needs a local --model_path",
    ),
    (
        "demo-and-config",
        ["--demo", "--config_path", "c.json", "--rest_port", "8000"],
        "--demo cannot be used with --config_path",
    ),
    (
        "demo-and-name",
        ["--demo", "--model_name", "x", "--rest_port", "8000"],
        "--model_name cannot be used with --demo",
    ),
    (
        "nireq-too-big",
        [*CLI_MODEL, "--nireq", "100001"],
        "--nireq: expected an integer in 0..100000, got 100001",
    ),
    (
        "max-batch-zero",
        [*CLI_MODEL, "--max_batch_size", "0"],
        "--max_batch_size: expected an integer >= 1, got 0",
    ),
    (
        "max-delay-negative",
        [*CLI_MODEL, "--max_batch_delay_us", "-5"],
        "--max_batch_delay_us: expected an integer >= 0",
    ),
    (
        "queue-zero",
        [*CLI_MODEL, "--max_queue_size", "0"],
        "--max_queue_size: expected an integer >= 1",
    ),
    (
        "graceful-negative",
        [*CLI_MODEL, "--graceful_timeout_s", "-1"],
        "--graceful_timeout_s: expected a number >= 0",
    ),
    (
        "graceful-nan",
        [*CLI_MODEL, "--graceful_timeout_s", "nan"],
        "--graceful_timeout_s: expected a number >= 0",
    ),
    (
        "poll-negative",
        [*CLI_MODEL, "--file_system_poll_wait_seconds", "-1"],
        "--file_system_poll_wait_seconds: expected an integer >= 0",
    ),
    (
        "grpc-max-zero",
        [*CLI_MODEL, "--grpc_max_message_bytes", "0"],
        "--grpc_max_message_bytes: expected an integer >= 1",
    ),
    ("shape-bad", [*CLI_MODEL, "--shape", "(1,x)"], '--shape: invalid shape "(1,x)"'),
    ("shape-json-bad", [*CLI_MODEL, "--shape", '{"in": (1,3)}'], "--shape: invalid JSON"),
    ("layout-bad", [*CLI_MODEL, "--layout", "NCHQ"], '--layout: invalid layout "NCHQ"'),
    ("batch-bad", [*CLI_MODEL, "--batch_size", "0:2"], '--batch_size: invalid batch size "0:2"'),
    (
        "policy-bad-json",
        [*CLI_MODEL, "--model_version_policy", "latest"],
        "--model_version_policy: invalid JSON",
    ),
    (
        "policy-bad",
        [*CLI_MODEL, "--model_version_policy", '{"latest": {"num_versions": 0}}'],
        "--model_version_policy.latest.num_versions: expected an integer >= 1, got 0",
    ),
    (
        "plugin-bad-json",
        [*CLI_MODEL, "--plugin_config", "{NUM_STREAMS: 1}"],
        "--plugin_config: invalid JSON",
    ),
    (
        "plugin-not-object",
        [*CLI_MODEL, "--plugin_config", "[1]"],
        "--plugin_config: expected an object, got [1]",
    ),
    (
        "plugin-bad-value",
        [*CLI_MODEL, "--plugin_config", '{"A": null}'],
        "--plugin_config.A: expected a string, number or boolean, got null",
    ),
    (
        "target-device-empty",
        [*CLI_MODEL, "--target_device", ""],
        "--target_device: expected a non-empty string",
    ),
    ("stateful", [*CLI_MODEL, "--stateful"], "--stateful: stateful models are not supported"),
    (
        "bind-address-not-ipv4",
        [*CLI_MODEL, "--rest_bind_address", "192.0.2"],
        '--rest_bind_address: invalid format "192.0.2": a hostname or an IP address expected',
    ),
    (
        "bind-address-empty-in-list",
        [*CLI_MODEL, "--grpc_bind_address", "127.0.0.1,,::1"],
        '--grpc_bind_address: invalid format ""',
    ),
    (
        "bind-address-underscore",
        [*CLI_MODEL, "--rest_bind_address", "my_host"],
        '--rest_bind_address: invalid format "my_host"',
    ),
    (
        "bind-address-twice",
        [*CLI_MODEL, "--rest_bind_address", "127.0.0.1, 127.0.0.1"],
        "--rest_bind_address: address 127.0.0.1 is given twice",
    ),
    (
        "max-sequence-number",
        [*CLI_MODEL, "--max_sequence_number", "10"],
        "--max_sequence_number: stateful models are not supported",
    ),
]


@pytest.mark.parametrize(
    ("argv", "fragment"), [pytest.param(argv, frag, id=case) for case, argv, frag in CLI_ERRORS]
)
def test_cli_errors(argv: list[str], fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        config.load(argv)
    assert_one_line_naming(info.value, fragment)


@pytest.mark.parametrize(
    ("flag", "value"),
    [
        ("--model_name", "m"),
        ("--model_path", "/m"),
        ("--batch_size", "1"),
        ("--shape", "(1,3)"),
        ("--layout", "NC"),
        ("--model_version_policy", '{"all": {}}'),
        ("--nireq", "1"),
        ("--target_device", "CPU"),
        ("--plugin_config", "{}"),
        ("--mean", "1"),
        ("--scale", "[1,2,3]"),
        ("--color_format", "BGR:RGB"),
        ("--precision", "FP32:FP16"),
    ],
)
def test_cli_single_model_flag_with_config_path(tmp_path: Path, flag: str, value: str) -> None:
    path = write_config(tmp_path, one_model())
    with pytest.raises(ConfigError) as info:
        config.load(["--config_path", str(path), "--rest_port", "8000", flag, value])
    assert_one_line_naming(info.value, f"{flag} cannot be used with --config_path")


def test_cli_config_file_errors_name_the_file(tmp_path: Path) -> None:
    path = write_config(tmp_path, one_model(nireq="4"))
    with pytest.raises(ConfigError) as info:
        config.load(["--config_path", str(path), "--rest_port", "8000"])
    assert_one_line_naming(
        info.value, f'{path}: model_config_list[0].config.nireq: expected an integer >= 0, got "4"'
    )


def test_cli_file_metrics_without_rest_port(tmp_path: Path) -> None:
    path = write_config(
        tmp_path, {"model_config_list": [], "monitoring": {"metrics": {"enable": True}}}
    )
    with pytest.raises(ConfigError) as info:
        config.load(["--config_path", str(path), "--port", "9000"])
    assert_one_line_naming(info.value, str(path), "monitoring.metrics.enable requires --rest_port")


# --------------------------------------------------------------------------------------------
# The real entry point, in a subprocess


def run_ovtrio(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    return subprocess.run(
        [sys.executable, "-m", "ovtrio", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_help_lists_every_flag() -> None:
    result = run_ovtrio("--help")
    assert result.returncode == 0, result.stderr
    flags = [
        "--port", "--rest_port", "--grpc_bind_address", "--rest_bind_address", "--config_path",
        "--model_name", "--model_path", "--batch_size", "--shape", "--layout",
        "--model_version_policy", "--nireq", "--target_device", "--plugin_config", "--log_level",
        "--log_path", "--file_system_poll_wait_seconds", "--metrics_enable", "--metrics_list",
        "--cache_dir", "--graceful_timeout_s", "--grpc_max_message_bytes",
        "--rest_max_body_bytes", "--dynamic_batching", "--max_batch_size",
        "--max_batch_delay_us", "--max_queue_size", "--demo", "--grpc_workers", "--rest_workers",
        "--grpc_max_threads", "--grpc_memory_quota", "--grpc_channel_arguments",
        "--sequence_cleaner_poll_wait_minutes", "--custom_node_resources_cleaner_interval_seconds",
        "--cpu_extension", "--allowed_origins", "--allowed_methods", "--allowed_headers",
        "--allow_credentials", "--mean", "--scale", "--color_format", "--precision", "--stateful",
        "--version", "--list_models", "--add_to_config", "--remove_from_config",
        "--model_repository_path",
    ]  # fmt: skip
    for flag in flags:
        assert f"  {flag} " in result.stdout or f"  {flag}\n" in result.stdout, flag
    assert "(default: 30.0)" in result.stdout
    assert result.stderr == ""


def test_version() -> None:
    result = run_ovtrio("--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"ovtrio {__version__}\n"


@pytest.mark.parametrize(
    "args",
    [
        pytest.param(["--config_path", "CONFIG", "--rest_port", "8000"], id="bad-config-file"),
        pytest.param(["--bogus"], id="argparse-error"),
        pytest.param(["--port", "x"], id="argparse-type-error"),
        pytest.param(["--rest_port", "8000"], id="no-model"),
        pytest.param([*CLI_MODEL, "--log_path", "/nonexistent/dir/x.log"], id="log-path"),
    ],
)
def test_errors_exit_1_with_one_line(tmp_path: Path, args: list[str]) -> None:
    path = write_config(tmp_path, {"model_config_list": [{"config": {"name": "m", "nireqs": 1}}]})
    result = run_ovtrio(*[str(path) if a == "CONFIG" else a for a in args], cwd=tmp_path)
    assert result.returncode == 1
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("ovtrio: error: ")
    if "CONFIG" in args:
        assert lines[0] == (
            f"ovtrio: error: {path}: model_config_list[0].config: unknown key 'nireqs' "
            "(did you mean 'nireq'?)"
        )


def test_main_calls_server_run_and_exits_with_its_code(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[config.ServerConfig] = []

    def run(cfg: config.ServerConfig) -> int:
        seen.append(cfg)
        return 7

    def leave(code: int) -> None:  # the real one ends the process without a teardown
        raise SystemExit(code)

    fake = types.ModuleType("ovtrio.server")
    fake.run = run  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "ovtrio.server", fake)
    monkeypatch.setattr(cli, "_leave", leave)
    with pytest.raises(SystemExit) as info:
        cli.main([*CLI_MODEL, "--log_level", "TRACE"])
    assert info.value.code == 7
    assert [cfg.models[0].name for cfg in seen] == ["m"]


def test_main_config_error_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        cli.main(["--rest_port", "8000"])
    assert info.value.code == 1
    assert capsys.readouterr().err == (
        "ovtrio: error: no model to serve: use --config_path, --model_name with --model_path, "
        "or --demo\n"
    )


def test_cli_cpu_extension(tmp_path: Path) -> None:
    library = tmp_path / "libext.so"
    library.write_bytes(b"")
    assert config.load(CLI_MODEL).cpu_extension is None
    cfg = config.load([*CLI_MODEL, "--cpu_extension", str(library)])
    assert cfg.cpu_extension == library
    assert "cpu_extension" not in cfg.ignored_flags
    with pytest.raises(ConfigError) as info:
        config.load([*CLI_MODEL, "--cpu_extension", str(tmp_path / "missing.so")])
    assert_one_line_naming(
        info.value,
        "File path provided as an --cpu_extension parameter does not exist in the filesystem: "
        f"{tmp_path / 'missing.so'}",
    )
