"""OVMS' config-management flags, through the real CLI: --list_models, --add_to_config,
--remove_from_config, --model_repository_path and OVMS_MODEL_REPOSITORY_PATH."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ovtrio import config
from ovtrio.config import BatchingConfig, ConfigError

REPO = Path(__file__).resolve().parent.parent


def run_ovtrio(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k != "OVMS_MODEL_REPOSITORY_PATH"}
    return subprocess.run(
        [sys.executable, "-m", "ovtrio", *args],
        cwd=cwd,
        env={**base, "PYTHONPATH": str(REPO / "src"), **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def ok(result: subprocess.CompletedProcess[str]) -> list[str]:
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    return result.stdout.splitlines()


def error(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 1, result.stdout
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("ovtrio: error: ")
    return lines[0].removeprefix("ovtrio: error: ")


def version(folder: Path, *files: str) -> None:
    folder.mkdir(parents=True)
    for name in files:
        (folder / name).write_bytes(b"")


@pytest.fixture
def repository(tmp_path: Path) -> Path:
    repo = tmp_path / "models"
    version(repo / "resnet" / "1", "model.xml", "model.bin")
    version(repo / "onnx" / "3", "model.onnx")
    version(repo / "org" / "paddle" / "1", "m.pdmodel", "m.pdiparams")
    version(repo / "tf" / "1", "saved_model.pb")
    version(repo / "tflite" / "7", "m.tflite")
    version(repo / "half_ir" / "1", "model.xml")  # no .bin: not a model
    version(repo / "zero" / "01", "model.onnx")  # not a version folder
    version(repo / "empty" / "1")
    (repo / "llm").mkdir()
    (repo / "llm" / "graph.pbtxt").write_text("")  # a MediaPipe graph: not servable here
    version(repo / "llm" / "1", "model.onnx")
    return repo


def test_list_models(repository: Path) -> None:
    lines = ok(
        run_ovtrio("--list_models", "--model_repository_path", "models", cwd=repository.parent)
    )
    assert lines == ["onnx", "org/paddle", "resnet", "tf", "tflite"]
    assert config.list_models(repository) == lines


def test_list_models_from_the_environment(repository: Path) -> None:
    env = {"OVMS_MODEL_REPOSITORY_PATH": str(repository)}
    assert ok(run_ovtrio("--list_models", cwd=repository, env=env))[0] == "onnx"


def test_list_models_of_a_missing_folder_lists_nothing(tmp_path: Path) -> None:
    assert ok(run_ovtrio("--list_models", "--model_repository_path", "nope", cwd=tmp_path)) == []


def test_add_creates_the_file_then_the_server_loads_it(repository: Path, tmp_path: Path) -> None:
    cfg = repository / "config.json"
    add = ["--add_to_config", "--config_path", str(cfg)]
    lines = ok(
        run_ovtrio(
            *add, "--model_name", "resnet", "--model_repository_path", str(repository),
            "--batch_size", "1:8", "--layout", "NHWC:NCHW", "--nireq", "2",
            "--target_device", "CPU", "--plugin_config", '{"NUM_STREAMS": "1"}',
            "--model_version_policy", '{"latest": {"num_versions": 2}}',
            "--shape", '{"in": "(1,3,224,224)"}', "--port", "9000",
            cwd=tmp_path,
        )
    )  # fmt: skip
    assert lines == [f"Config updated: {cfg}"]
    assert json.loads(cfg.read_text()) == {
        "model_config_list": [
            {
                "config": {
                    "name": "resnet",
                    "base_path": "resnet",
                    "batch_size": "1:8",
                    "shape": {"in": "(1,3,224,224)"},
                    "layout": "NHWC:NCHW",
                    "model_version_policy": {"latest": {"num_versions": 2}},
                    "nireq": 2,
                    "target_device": "CPU",
                    "plugin_config": {"NUM_STREAMS": "1"},
                }
            }
        ]
    }
    ok(run_ovtrio(*add, "--model_name", "onnx", "--model_path", "onnx", cwd=tmp_path))
    ok(run_ovtrio(*add, "--model_name", "far", "--model_path", "/srv/far", cwd=tmp_path))
    loaded = config.load_config_file(cfg, BatchingConfig())
    assert [(m.name, m.base_path) for m in loaded.models] == [
        ("resnet", repository / "resnet"),
        ("onnx", repository / "onnx"),
        ("far", Path("/srv/far")),
    ]


def test_add_keeps_the_rest_of_the_file(tmp_path: Path) -> None:
    cfg = tmp_path / "config.json"
    original = {
        "model_config_list": [{"config": {"name": "a", "base_path": "a", "nireq": 1}}],
        "monitoring": {"metrics": {"enable": True}},
    }
    cfg.write_text(json.dumps(original))
    cfg.chmod(0o640)
    ok(run_ovtrio("--add_to_config", "--config_path", "config.json", "--model_name", "b",
                  "--model_path", "b", cwd=tmp_path))  # fmt: skip
    data = json.loads(cfg.read_text())
    assert data["monitoring"] == original["monitoring"]
    assert data["model_config_list"] == [
        *original["model_config_list"],  # type: ignore[misc]
        {"config": {"name": "b", "base_path": "b"}},
    ]
    assert cfg.stat().st_mode & 0o777 == 0o640
    assert [p.name for p in tmp_path.iterdir()] == ["config.json"]


def test_add_a_model_in_object_storage(tmp_path: Path) -> None:
    ok(run_ovtrio("--add_to_config", "--config_path", "config.json", "--model_name", "m",
                  "--model_path", "s3://bucket/models/m", cwd=tmp_path))  # fmt: skip
    assert json.loads((tmp_path / "config.json").read_text())["model_config_list"] == [
        {"config": {"name": "m", "base_path": "s3://bucket/models/m"}}
    ]


def test_add_with_the_environment_defaults(repository: Path, tmp_path: Path) -> None:
    env = {"OVMS_MODEL_REPOSITORY_PATH": str(repository)}
    lines = ok(run_ovtrio("--add_to_config", "--model_name", "tf", cwd=tmp_path, env=env))
    cfg = repository / "config.json"
    assert lines == [f"Using default config path: {cfg}", f"Config updated: {cfg}"]
    assert json.loads(cfg.read_text())["model_config_list"] == [
        {"config": {"name": "tf", "base_path": "tf"}}
    ]


def test_remove(tmp_path: Path) -> None:
    cfg = tmp_path / "config.json"
    entries = [{"config": {"name": n, "base_path": n}} for n in ("a", "b", "c")]
    cfg.write_text(json.dumps({"model_config_list": entries}))
    lines = ok(run_ovtrio("--remove_from_config", "--config_path", str(cfg), "--model_name", "b",
                          cwd=tmp_path))  # fmt: skip
    assert lines == [f"Config updated: {cfg}"]
    assert json.loads(cfg.read_text()) == {"model_config_list": [entries[0], entries[2]]}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--list_models"], "Use --list_models with --model_repository_path"),
        (
            ["--list_models", "--add_to_config", "--model_repository_path", "."],
            "--list_models cannot be used with --add_to_config",
        ),
        (
            ["--list_models", "--remove_from_config", "--model_repository_path", "."],
            "--list_models cannot be used with --remove_from_config",
        ),
        (
            ["--add_to_config", "--remove_from_config", "--config_path", "c.json"],
            "--add_to_config cannot be used with --remove_from_config",
        ),
        (
            ["--add_to_config", "--model_name", "m", "--model_path", "m"],
            "Set config_path with add_to_config/remove_from_config",
        ),
        (
            ["--add_to_config", "--config_path", "c.json", "--model_path", "m"],
            "Set model_name with add_to_config/remove_from_config (--add_to_config "
            "--config_path <config_path> --model_name <model_name> ...)",
        ),
        (
            ["--add_to_config", "--config_path", "c.json", "--model_name", "m"],
            "Set model_name either with model_path or model_repository_path with add_to_config",
        ),
        (
            ["--remove_from_config", "--config_path", "c.json", "--model_name", "m",
             "--model_path", "m"],
            "--model_path cannot be used with --remove_from_config",
        ),
        (
            ["--remove_from_config", "--config_path", "c.json", "--model_name", "m",
             "--nireq", "2", "--shape", "(1,2)"],
            "Removing models from the configuration file allows passing only model_name "
            "parameter. Invalid parameters passed: --shape, --nireq",
        ),
        (
            ["--add_to_config", "--config_path", "c.json", "--model_name", "m",
             "--model_path", "m", "--mean", "1"],
            "--mean cannot be added to a config file: config.json has no 'mean' key (OVMS' "
            "schema refuses it); use it in single-model mode",
        ),
        (
            ["--add_to_config", "--config_path", "c.json", "--model_name", "m",
             "--model_path", "m", "--shape", "(1,x)"],
            '--add_to_config.shape: invalid shape "(1,x)": a dimension is an integer >= 1, '
            '-1 or a range min:max, got "x"',
        ),
        (
            ["--add_to_config", "--config_path", "c.json", "--model_name", "m",
             "--model_path", "https://host/m"],
            "--add_to_config.base_path: base_path must be a local folder or an s3://, gs:// or "
            'az:// URL, got "https://host/m"',
        ),
    ],
)  # fmt: skip
def test_usage_errors(tmp_path: Path, args: list[str], message: str) -> None:
    assert error(run_ovtrio(*args, cwd=tmp_path)) == message
    assert list(tmp_path.iterdir()) == []


def test_add_a_name_already_there(tmp_path: Path) -> None:
    cfg = tmp_path / "config.json"
    text = json.dumps({"model_config_list": [{"config": {"name": "m", "base_path": "m"}}]})
    cfg.write_text(text)
    args = ["--add_to_config", "--config_path", str(cfg), "--model_name", "m", "--model_path", "x"]
    assert error(run_ovtrio(*args, cwd=tmp_path)) == (
        f"{cfg} error on config update : Given model name is already occupied: 'm'"
    )
    assert cfg.read_text() == text


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "the config file does not exist"),
        ('{"model_config_list": [}', "The file is not valid json: invalid JSON: "),
        ("[]", "expected an object, got []"),
        ('{"monitoring": {}}', "the file has no model_config_list list"),
        ('{"model_config_list": []}', "Model with requested name is not found: 'm'"),
    ],
)
def test_remove_errors(tmp_path: Path, content: str | None, message: str) -> None:
    cfg = tmp_path / "config.json"
    if content is not None:
        cfg.write_text(content)
    args = ["--remove_from_config", "--config_path", str(cfg), "--model_name", "m"]
    got = error(run_ovtrio(*args, cwd=tmp_path))
    assert got.startswith(f"{cfg} error on config update : {message}"), got
    assert (cfg.read_text() if content is not None else None) == content


def test_model_repository_path_alone_is_an_ignored_flag() -> None:
    cfg = config.load(
        ["--model_name", "m", "--model_path", "/m", "--port", "9000",
         "--model_repository_path", "/models"]
    )  # fmt: skip
    assert cfg.ignored_flags == ("model_repository_path",)


def test_load_refuses_management_flags() -> None:
    with pytest.raises(ConfigError):
        config.load(["--list_models", "--model_repository_path", "/m"])
    assert config.management_command(["--model_name", "m", "--model_path", "/m"]) is None
