"""OVMS' CORS flags --allowed_origins, --allowed_methods, --allowed_headers, --allow_credentials."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from ovtrio import config
from ovtrio.config import ConfigError, CorsConfig

CLI_MODEL = ["--model_name", "m", "--model_path", "/models/m", "--rest_port", "8000"]


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        ([], CorsConfig(("*",), ("*",), ("*",), False)),
        (["--allow_credentials"], CorsConfig(allow_credentials=True)),
        (["--allow_credentials=true"], CorsConfig(allow_credentials=True)),
        (["--allow_credentials", "false"], CorsConfig(allow_credentials=False)),
        (["--allowed_origins", "https://a.example"], CorsConfig(("https://a.example",))),
        (
            ["--allowed_origins", " HTTP://A.example:8080 ,https://b.example,,null "],
            CorsConfig(("http://a.example:8080", "https://b.example", "null")),
        ),
        (["--allowed_origins", "*,https://a.example"], CorsConfig(("*", "https://a.example"))),
        (
            ["--allowed_origins", "https://a.example,https://a.example"],
            CorsConfig(("https://a.example",)),
        ),
        (["--allowed_origins", "http://[::1]:8000"], CorsConfig(("http://[::1]:8000",))),
        (["--allowed_origins", ""], CorsConfig(allowed_origins=())),
        (["--allowed_origins", " , "], CorsConfig(allowed_origins=())),
        (["--allowed_methods", "GET,POST"], CorsConfig(allowed_methods=("GET", "POST"))),
        (["--allowed_methods", " GET , POST "], CorsConfig(allowed_methods=("GET", "POST"))),
        (["--allowed_methods", ""], CorsConfig(allowed_methods=())),
        (
            ["--allowed_headers", "Content-Type,Authorization,Inference-Header-Content-Length"],
            CorsConfig(
                allowed_headers=("Content-Type", "Authorization", "Inference-Header-Content-Length")
            ),
        ),
        (["--allowed_headers", ""], CorsConfig(allowed_headers=())),
    ],
)
def test_cors_flags(flags: list[str], expected: CorsConfig) -> None:
    cfg = config.load([*CLI_MODEL, *flags])
    assert cfg.cors == expected
    assert cfg.ignored_flags == ()


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (
            ["--allowed_origins", "ex ample.com"],
            '--allowed_origins: "ex ample.com" is not an origin',
        ),
        (["--allowed_origins", "https://a.example/"], '"https://a.example/" is not an origin'),
        (["--allowed_origins", "https://a.example/path"], "is not an origin"),
        (["--allowed_origins", "https://user@a.example"], "is not an origin"),
        (["--allowed_origins", "https://"], "is not an origin"),
        (["--allowed_methods", "GET POST"], '--allowed_methods: "GET POST" is not an HTTP method'),
        (["--allowed_headers", "X-A:b"], '--allowed_headers: "X-A:b" is not a header name or *'),
        (["--allowed_headers", "X\x01"], "--allowed_headers"),
        (["--allow_credentials=maybe"], "expected true or false"),
    ],
)
def test_cors_flags_refused(flags: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        config.load([*CLI_MODEL, *flags])


def test_cors_with_config_json_and_not_in_it(tmp_path: Path) -> None:
    """The flags work with --config_path; config.json has no CORS keys (OVMS' schema)."""
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"model_config_list": []}))
    cfg = config.load(
        ["--config_path", str(path), "--rest_port", "8000", "--allowed_methods", "GET"]
    )
    assert cfg.cors == CorsConfig(allowed_methods=("GET",))
    path.write_text(json.dumps({"model_config_list": [], "allowed_origins": "*"}))
    with pytest.raises(ConfigError, match="allowed_origins"):
        config.load(["--config_path", str(path), "--rest_port", "8000"])


def test_a_bare_host_is_kept_and_named_as_unmatchable() -> None:
    """OVMS takes ``--allowed_origins example.com``; so does ovtrio, and it says why it is inert."""
    cfg = config.load([*CLI_MODEL, "--allowed_origins", "example.com,https://a.example"])
    assert cfg.cors.allowed_origins == ("example.com", "https://a.example")
    assert cfg.cors.unmatchable_origins == ("example.com",)
