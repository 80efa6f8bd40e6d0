"""The real command line: every OVMS flag and config.json key that ovtrio accepts but does not
act on is named by a warning in the server's log at start."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import requests

from ovtrio import config
from ovtrio.config import _cli
from tests import models
from tests.e2e.conftest import start_server

pytestmark = pytest.mark.e2e


def _value(flag: str) -> str:
    if flag == "allow_credentials":
        return "false"
    if flag.endswith("_arguments"):
        return "grpc.max_connection_age_ms=2000"
    if flag.endswith(("_origins", "_methods", "_headers")):
        return "*"
    if flag.endswith("_path"):
        return "."
    return "1"


def test_ignored_flags_and_keys_are_named_in_the_log(tmp_path: Path) -> None:
    models.add_model(tmp_path / "models" / "dummy")
    keys = {"idle_sequence_cleanup": True, "low_latency_transformation": False}
    keys["max_sequence_number"] = 100
    assert set(keys) == set(config.IGNORED_MODEL_KEYS)
    entry = {"name": "dummy", "base_path": "models/dummy", **keys}
    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps({"model_config_list": [{"config": entry}]}))
    flags = (*_cli._IGNORED_FLAGS, *_cli._IGNORED_WHEN_SERVING)
    args = [f"--{flag}={_value(flag)}" for flag in flags]
    server = start_server(tmp_path, ["--config_path", str(cfg), *args])
    try:
        assert requests.get(f"{server.http}/v2/models/dummy/ready", timeout=10).status_code == 200
    finally:
        assert server.stop() == 0
    log = server.log()
    warnings = [line for line in log.splitlines() if "WARNING" in line]
    for flag in flags:
        (line,) = [w for w in warnings if f"--{flag} " in w]
        assert "has no effect" in line
    for key in keys:
        (line,) = [w for w in warnings if f"config.{key} " in w]
        assert f"{cfg}: model_config_list[0].config.{key} is accepted" in line
        assert "has no effect: stateful models are not supported" in line
