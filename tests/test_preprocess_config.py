"""OVMS' preprocessing flags --mean, --scale, --color_format, --precision: parsing and rules."""

from __future__ import annotations

from pathlib import Path

import pytest

from ovtrio import config
from ovtrio.config import ConfigError, Preprocess

CLI_MODEL = ["--model_name", "m", "--model_path", "/models/m", "--rest_port", "8000"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.5", 127.5),
        (" 1 ", 1.0),
        ("-3", -3.0),
        ("+.5", 0.5),
        ("1e2", 100.0),
        ("2.5E-1", 0.25),
        ("[123.675,116.28,103.53]", (123.675, 116.28, 103.53)),
        ("[ 1, 2 , 3 ]", (1.0, 2.0, 3.0)),
        ("(1,2,3)", (1.0, 2.0, 3.0)),
        ("[7]", (7.0,)),
    ],
)
def test_parse_mean_scale(text: str, expected: object) -> None:
    assert config.parse_mean_scale(text) == expected


@pytest.mark.parametrize(
    "text", ["", "abc", "1,2,3", "[1,,2]", "[1,2", "[]", "nan", "inf", "1e999", "0x10", "[1;2]"]
)
def test_parse_mean_scale_invalid(text: str) -> None:
    with pytest.raises(ConfigError, match="The provided float is in wrong format"):
        config.parse_mean_scale(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("BGR:RGB", ("BGR", "RGB")),
        ("rgb:bgr", ("RGB", "BGR")),
        ("GRAY:GRAY", ("GRAY", "GRAY")),
        ("BGR:NV12", ("BGR", "NV12")),
        ("RGB:NV12_2", ("RGB", "NV12_2")),
        ("BGR:I420", ("BGR", "I420")),
        ("BGR:I420_3", ("BGR", "I420_3")),
    ],
)
def test_parse_color_format(text: str, expected: tuple[str, str]) -> None:
    assert config.parse_color_format(text) == expected


@pytest.mark.parametrize("text", ["BGR", "BGR:", ":RGB", "BGR:RGB:GRAY", "BGR:YUV", "HSV:RGB"])
def test_parse_color_format_invalid(text: str) -> None:
    with pytest.raises(ConfigError, match="The provided color format is in wrong format"):
        config.parse_color_format(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("UINT8:FP32", ("UINT8", "FP32")),
        ("fp16:fp32", ("FP16", "FP32")),
        ("BF16:INT4", ("BF16", "INT4")),
        ("uint1:uint64", ("UINT1", "UINT64")),
    ],
)
def test_parse_precision(text: str, expected: tuple[str, str]) -> None:
    assert config.parse_precision(text) == expected


@pytest.mark.parametrize(
    "text", ["FP32", "FP32:", "F32:FP16", "FP32:FP8", "U8:FP32", "STRING:FP32"]
)
def test_parse_precision_invalid(text: str) -> None:
    with pytest.raises(ConfigError, match="The provided precision is in wrong format"):
        config.parse_precision(text)


def test_cli_flags_give_one_preprocess() -> None:
    cfg = config.load(
        [
            *CLI_MODEL,
            "--layout", "NHWC:NCHW",
            "--mean", "[123.675, 116.28, 103.53]",
            "--scale", "58.4",
            "--color_format", "bgr:rgb",
            "--precision", "UINT8:FP32",
        ]
    )  # fmt: skip
    assert cfg.models[0].preprocess == Preprocess(
        mean=(123.675, 116.28, 103.53),
        scale=58.4,
        color_format=("BGR", "RGB"),
        precision=("UINT8", "FP32"),
    )


def test_no_flag_no_preprocess() -> None:
    assert config.load(CLI_MODEL).models[0].preprocess is None


def test_one_flag_leaves_the_others_unset() -> None:
    cfg = config.load([*CLI_MODEL, "--layout", "NCHW", "--scale", "255"])
    assert cfg.models[0].preprocess == Preprocess(scale=255.0)


def test_demo_takes_the_flags() -> None:
    cfg = config.load(["--demo", "--rest_port", "8000", "--layout", "N...", "--mean", "1"])
    assert cfg.models[0].preprocess == Preprocess(mean=1.0)


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--mean", "1"], "--mean parameter requires --layout to be set"),
        (["--scale", "1"], "--scale parameter requires --layout to be set"),
        (["--color_format", "BGR:RGB"], "--color_format parameter requires --layout to be set"),
        (["--precision", "UINT8:FP32"], "--precision parameter requires --layout to be set"),
        (
            ["--layout", "NCHW", "--mean", "[1,x]"],
            "--mean: couldn't parse mean parameter: The provided float is in wrong format: "
            '"[1,x]" (a number, or one per channel like "[123.675,116.28,103.53]")',
        ),
        (
            ["--layout", "NCHW", "--scale", "0"],
            '--scale: couldn\'t parse scale parameter: a scale value must not be zero, got "0"',
        ),
        (
            ["--layout", "NCHW", "--scale", "[1,0.0,2]"],
            "--scale: couldn't parse scale parameter: a scale value must not be zero, "
            'got "[1,0.0,2]"',
        ),
        (
            ["--layout", "NCHW", "--color_format", "BGR"],
            "--color_format: couldn't parse color_format parameter: The provided color format is"
            ' in wrong format: "BGR" (expected target:source, e.g. "BGR:RGB", each one of RGB,'
            " BGR, GRAY, NV12, NV12_2, I420, I420_3)",
        ),
        (
            ["--layout", "NCHW", "--precision", "FP16"],
            "--precision: couldn't parse precision parameter: The provided precision is in wrong"
            ' format: "FP16" (expected target:source, e.g. "UINT8:FP32", each one of BF16, FP64,'
            " FP32, FP16, INT64, INT32, INT16, INT8, INT4, UINT64, UINT32, UINT16, UINT8, UINT4,"
            " UINT1)",
        ),
    ],
)
def test_cli_errors(flags: list[str], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        config.load([*CLI_MODEL, *flags])
    assert str(info.value) == message


@pytest.mark.parametrize("key", ["mean", "scale", "color_format", "precision"])
def test_config_json_has_no_preprocessing_keys(tmp_path: Path, key: str) -> None:
    """OVMS' config.json schema refuses these keys; so does ovtrio's."""
    path = tmp_path / "config.json"
    path.write_text(
        f'{{"model_config_list": [{{"config": {{"name": "m", "base_path": "m", "{key}": "1"}}}}]}}'
    )
    with pytest.raises(ConfigError, match=f"unknown key '{key}'"):
        config.load(["--config_path", str(path), "--rest_port", "8000"])
