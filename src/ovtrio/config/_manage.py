"""OVMS' config-management mode: ``--list_models``, ``--add_to_config``, ``--remove_from_config``.

Each lists a model repository or edits a config.json, prints what it did and exits; no server
starts. The flags, their rules and the printed lines follow OVMS:

    ovtrio --list_models --model_repository_path /models
    ovtrio --add_to_config --config_path /models/config.json --model_name resnet \\
        --model_path resnet --batch_size 1 --target_device CPU
    ovtrio --add_to_config --config_path /models/config.json --model_name resnet \\
        --model_repository_path /models
    ovtrio --remove_from_config --config_path /models/config.json --model_name resnet

``OVMS_MODEL_REPOSITORY_PATH`` gives the default ``--model_repository_path``, and for
``--add_to_config`` / ``--remove_from_config`` the default ``--config_path`` (its config.json).
A server polling the file picks an edit up like any other change: the file is replaced at once,
never written in place.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, TextIO

from ._json import parse_config_json
from ._types import _MODEL_SETTINGS, BatchingConfig, ConfigError
from ._values import _abs_path, _json_at, _show

REPOSITORY_ENV = "OVMS_MODEL_REPOSITORY_PATH"

_ADD_FLAGS = _MODEL_SETTINGS
"""Model flags ``--add_to_config`` writes into the new entry (as the config.json keys)."""
_JSON_OR_STRING = ("shape", "layout", "model_version_policy", "plugin_config")
"""Written as a JSON object when the text is one, otherwise as a string (OVMS)."""
_NOT_IN_SCHEMA = ("mean", "scale", "color_format", "precision")
_MODEL_FLAGS = ("model_name", "model_path", *_ADD_FLAGS, *_NOT_IN_SCHEMA)

# The model file extensions of one version folder (all of a set must be there), as OVMS lists.
_MODEL_FILE_SETS = ({".xml", ".bin"}, {".onnx"}, {".pdmodel", ".pdiparams"}, {".pb"}, {".tflite"})


@dataclass(frozen=True, slots=True)
class ManageCommand:
    """One config-management command, parsed and checked."""

    action: Literal["list", "add", "remove"]
    """``--list_models``, ``--add_to_config`` or ``--remove_from_config``."""
    repository: Path | None = None
    """``--model_repository_path`` (for ``list``; for ``add``, the default model path)."""
    config_path: Path | None = None
    """The config.json to edit (``add`` and ``remove``)."""
    model_name: str = ""
    """The model to add or remove."""
    entry: Mapping[str, object] = field(default_factory=dict)
    """For ``add``: the new ``model_config_list`` entry's ``config`` object."""
    notes: tuple[str, ...] = ()
    """Lines printed before the command runs (OVMS prints the defaults it took)."""


def _flag_given(ns: argparse.Namespace, name: str) -> bool:
    return getattr(ns, name, None) is not None


def _command_from_args(ns: argparse.Namespace) -> ManageCommand | None:
    """The command the parsed flags ask for, or ``None`` when they ask to serve.

    Raises:
        ConfigError: OVMS' usage rules, e.g. ``--list_models`` without a repository.
    """
    listing, adding, removing = ns.list_models, ns.add_to_config, ns.remove_from_config
    if not (listing or adding or removing):
        return None
    if listing and adding:
        raise ConfigError("--list_models cannot be used with --add_to_config")
    if listing and removing:
        raise ConfigError("--list_models cannot be used with --remove_from_config")
    if adding and removing:
        raise ConfigError("--add_to_config cannot be used with --remove_from_config")
    env_repository = os.environ.get(REPOSITORY_ENV) or None
    repository_text = ns.model_repository_path or env_repository
    repository = _abs_path(repository_text, None) if repository_text else None
    if listing:
        if repository is None:
            raise ConfigError("Use --list_models with --model_repository_path")
        return ManageCommand("list", repository=repository)
    if removing and ns.model_path is not None:
        raise ConfigError("--model_path cannot be used with --remove_from_config")
    directive = "--add_to_config" if adding else "--remove_from_config"
    notes: list[str] = []
    config_text = ns.config_path
    if config_text is None and env_repository:
        config_text = os.path.join(env_repository, "config.json")
        notes.append(f"Using default config path: {config_text}")
    if not config_text:
        raise ConfigError("Set config_path with add_to_config/remove_from_config")
    config_path = _abs_path(config_text, None)
    if not ns.model_name:
        raise ConfigError(
            "Set model_name with add_to_config/remove_from_config "
            f"({directive} --config_path <config_path> --model_name <model_name> ...)"
        )
    if removing:
        extra = [f"--{name}" for name in _MODEL_FLAGS[1:] if _flag_given(ns, name)]
        if extra:
            raise ConfigError(
                "Removing models from the configuration file allows passing only model_name "
                f"parameter. Invalid parameters passed: {', '.join(extra)}"
            )
        return ManageCommand("remove", config_path=config_path, model_name=ns.model_name)
    for name in _NOT_IN_SCHEMA:
        if _flag_given(ns, name):
            raise ConfigError(
                f"--{name} cannot be added to a config file: config.json has no {name!r} key "
                "(OVMS' schema refuses it); use it in single-model mode"
            )
    base_path = _model_path(ns.model_path, repository, ns.model_name, config_path)
    entry = _new_entry(ns, base_path)
    _check_entry(entry, config_path)
    return ManageCommand(
        "add",
        repository=repository,
        config_path=config_path,
        model_name=ns.model_name,
        entry=entry,
        notes=tuple(notes),
    )


def _model_path(given: str | None, repository: Path | None, name: str, config: Path) -> str:
    """``--model_path`` as written, or the repository's ``<name>`` folder, written relative to
    the config file's folder when it lies below it (a relative ``base_path`` resolves there)."""
    if given is not None:
        return given
    if repository is None:
        raise ConfigError(
            "Set model_name either with model_path or model_repository_path with add_to_config"
        )
    folder = repository / name
    try:
        return str(folder.relative_to(config.parent))
    except ValueError:
        return str(folder)


def _new_entry(ns: argparse.Namespace, base_path: str) -> dict[str, object]:
    entry: dict[str, object] = {"name": ns.model_name, "base_path": base_path}
    for name in _ADD_FLAGS:
        value = getattr(ns, name)
        if value is None:
            continue
        if name in _JSON_OR_STRING and value.lstrip().startswith("{"):
            value = _json_at(value, f"--{name}")
        entry[name] = value
    return entry


def _check_entry(entry: Mapping[str, object], config_path: Path) -> None:
    """Refuse an entry ovtrio could not load, before the file is touched."""
    text = json.dumps({"model_config_list": [{"config": entry}]})
    try:
        parse_config_json(text, config_path, BatchingConfig())
    except ConfigError as exc:
        message = str(exc).replace(f"{config_path}: model_config_list[0].config", "--add_to_config")
        raise ConfigError(message) from None


def run_management(command: ManageCommand, out: TextIO) -> None:
    """Run ``command``, printing its result to ``out``.

    Raises:
        ConfigError: the config file cannot be read, parsed or written, or the model is already
            there (add) or missing (remove); one line naming the file.
    """
    for note in command.notes:
        print(note, file=out)
    if command.action == "list":
        assert command.repository is not None
        for name in list_models(command.repository):
            print(name, file=out)
        return
    assert command.config_path is not None
    path = command.config_path
    if command.action == "add":
        data = _read(path) if path.exists() else {"model_config_list": []}
        entries = _entries(data, path)
        if _find(entries, command.model_name) is not None:
            raise ConfigError(
                f"{path} error on config update : Given model name is already occupied: "
                f"{command.model_name!r}"
            )
        entries.append({"config": dict(command.entry)})
    else:
        if not path.exists():
            raise ConfigError(f"{path} error on config update : the config file does not exist")
        data = _read(path)
        entries = _entries(data, path)
        index = _find(entries, command.model_name)
        if index is None:
            raise ConfigError(
                f"{path} error on config update : Model with requested name is not found: "
                f"{command.model_name!r}"
            )
        del entries[index]
    _replace(path, json.dumps(data, indent=4) + "\n")
    print(f"Config updated: {path}", file=out)


def _read(path: Path) -> dict[str, object]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ConfigError(
            f"{path} error on config update : cannot read the file: {reason}"
        ) from None
    data = _json_at(text, f"{path} error on config update : The file is not valid json")
    if not isinstance(data, dict):
        raise ConfigError(f"{path} error on config update : expected an object, got {_show(data)}")
    return data


def _entries(data: dict[str, object], path: Path) -> list[object]:
    entries = data.get("model_config_list")
    if not isinstance(entries, list):
        raise ConfigError(f"{path} error on config update : the file has no model_config_list list")
    return entries


def _find(entries: list[object], name: str) -> int | None:
    for i, item in enumerate(entries):
        if isinstance(item, dict):
            cfg = item.get("config")
            if isinstance(cfg, dict) and cfg.get("name") == name:
                return i
    return None


def _replace(path: Path, text: str) -> None:
    """Write ``path`` through a temporary file in its folder, so readers see old or new."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(text)
            if path.exists():
                os.chmod(tmp, path.stat().st_mode & 0o777)
            os.replace(tmp, path)
        except BaseException:
            os.unlink(tmp)
            raise
    except OSError as exc:
        raise ConfigError(
            f"{path} error on config update : cannot write the file: {exc.strerror or exc}"
        ) from None


def list_models(repository: Path) -> list[str]:
    """The servable models under ``repository``, as paths relative to it, sorted.

    A model is a folder holding a version folder (digits, no leading zero) with a model's
    files; the search goes down the folders that are not models, as OVMS'. Folders holding
    a MediaPipe ``graph.pbtxt``, which OVMS also lists, are skipped: ovtrio cannot serve them.
    """
    found: list[str] = []
    if repository.is_dir():
        for child in sorted(repository.iterdir()):
            _walk(child, repository, found)
    return sorted(found)


def _walk(folder: Path, repository: Path, found: list[str]) -> None:
    if not folder.is_dir() or (folder / "graph.pbtxt").is_file():
        return
    if any(_is_model_version(v) for v in folder.iterdir()):
        found.append(folder.relative_to(repository).as_posix())
        return
    for child in sorted(folder.iterdir()):
        _walk(child, repository, found)


def _is_model_version(folder: Path) -> bool:
    name = folder.name
    if not (name.isdigit() and name.isascii() and name[0] != "0" and folder.is_dir()):
        return False
    suffixes = {p.suffix for p in folder.iterdir() if p.is_file()}
    return any(wanted <= suffixes for wanted in _MODEL_FILE_SETS)
