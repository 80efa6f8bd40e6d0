"""OVMS flags and config.json keys that ovtrio accepts but does not act on: each is recorded
for a warning, and docs/differences-from-ovms.md lists every one with its reason."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from ovtrio import config
from ovtrio.config import _cli
from ovtrio.config._types import BatchingConfig

DOC = Path(__file__).resolve().parents[1] / "docs" / "differences-from-ovms.md"
IGNORED_FLAGS = (*_cli._IGNORED_FLAGS, *_cli._IGNORED_WHEN_SERVING)


def _rows() -> list[tuple[str, str]]:
    """(section title, row) for every table row of the document."""
    section, rows = "", []
    for line in DOC.read_text(encoding="utf-8").splitlines():
        if line.startswith("## "):
            section = line[3:].strip()
        elif line.startswith("|") and not line.startswith("|---"):
            rows.append((section, line))
    return rows


def _documented_as_ignored(name: str) -> bool:
    return any(
        name in row and (section == "Accepted and ignored" or "warning" in row)
        for section, row in _rows()
    )


@pytest.mark.parametrize("flag", IGNORED_FLAGS)
def test_every_ignored_flag_is_in_the_differences_table(flag: str) -> None:
    assert _documented_as_ignored(f"`--{flag}`"), f"--{flag} is not documented in {DOC.name}"


@pytest.mark.parametrize("key", sorted(config.IGNORED_MODEL_KEYS))
def test_every_ignored_key_is_in_the_differences_table(key: str) -> None:
    assert _documented_as_ignored(f"`{key}`"), f"{key} is not documented in {DOC.name}"


def test_the_ignored_table_names_only_ignored_settings() -> None:
    """The "Accepted and ignored" table does not list a flag or key that has an effect."""
    named: set[str] = set()
    for section, row in _rows():
        if section == "Accepted and ignored":
            first_cell = row.split("|")[1]
            named.update(re.findall(r"`(?:--)?([a-z_]+)`", first_cell))
    named -= {"flag", "model_config_list"}
    assert named
    assert named <= {*IGNORED_FLAGS, *config.IGNORED_MODEL_KEYS}


def test_ignored_model_keys_are_recorded(tmp_path: Path) -> None:
    entry = {
        "name": "m",
        "base_path": "m",
        "stateful": False,
        "idle_sequence_cleanup": True,
        "max_sequence_number": 10,
    }
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"model_config_list": [{"config": entry}]}))
    (model,) = config.load_config_file(path, BatchingConfig()).models
    assert model.ignored_keys == ("idle_sequence_cleanup", "max_sequence_number")
    del entry["idle_sequence_cleanup"], entry["max_sequence_number"]
    path.write_text(json.dumps({"model_config_list": [{"config": entry}]}))
    (model,) = config.load_config_file(path, BatchingConfig()).models
    assert model.ignored_keys == ()


def test_model_repository_path_is_ignored_when_serving(tmp_path: Path) -> None:
    cfg = config.load(
        [
            "--model_name", "m", "--model_path", str(tmp_path), "--port", "9000",
            "--model_repository_path", str(tmp_path),
        ]
    )  # fmt: skip
    assert cfg.ignored_flags == ("model_repository_path",)
