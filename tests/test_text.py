"""Strings to and from 2-D UINT8 tensors (OVMS' text handling): the conversion as a table."""

from __future__ import annotations

import numpy as np
import pytest

from ovtrio.dataplane import _output, _text_rows
from ovtrio.errors import InvalidArgument
from ovtrio.tensors import Tensor, TensorSpec, datatype
from ovtrio.text import (
    is_text_input,
    is_text_output,
    rows_to_strings,
    strings_to_rows,
)

U8 = datatype("UINT8")
BYTES = datatype("BYTES")
FP32 = datatype("FP32")


def spec(name: str, shape: tuple[int, ...], dt: str = "UINT8", ranges=None) -> TensorSpec:
    if ranges is None:
        ranges = tuple((0, -1) if d < 0 else (d, d) for d in shape)
    return TensorSpec(name, datatype(dt), shape, ranges)


ROWS = [
    # strings, expected rows (the documented example first)
    ([b"abcd", b"ab"], [b"abcd\0", b"ab\0\0\0"]),
    ([b"x"], [b"x\0"]),
    ([b""], [b"\0"]),
    ([b"", b"", b""], [b"\0", b"\0", b"\0"]),
    (["zażółć".encode()], ["zażółć".encode() + b"\0"]),
    ([b"a\0b", b"cc"], [b"a\0b\0", b"cc\0\0"]),
    ([bytearray(b"ab"), memoryview(b"c")], [b"ab\0", b"c\0\0"]),
]


@pytest.mark.parametrize(("strings", "rows"), ROWS)
def test_strings_to_rows(strings: list[bytes], rows: list[bytes]) -> None:
    out = strings_to_rows(strings, "in")
    assert out.dtype == np.uint8
    assert out.shape == (len(rows), len(rows[0]))
    assert [r.tobytes() for r in out] == rows


STRINGS = [
    # rows, expected strings: each row up to its first zero byte
    ([b"abcd\0", b"ab\0\0\0"], [b"abcd", b"ab"]),
    ([b"abc"], [b"abc"]),  # no terminating zero: the whole row
    ([b"\0\0"], [b""]),
    ([b"a\0b\0"], [b"a"]),
    ([b"\xff\xfe\0"], [b"\xff\xfe"]),
]


@pytest.mark.parametrize(("rows", "strings"), STRINGS)
def test_rows_to_strings(rows: list[bytes], strings: list[bytes]) -> None:
    array = np.frombuffer(b"".join(rows), np.uint8).reshape(len(rows), -1)
    out = rows_to_strings(array)
    assert out.dtype == object and out.shape == (len(strings),)
    assert list(out) == strings


def test_rows_to_strings_of_empty_batch_and_strided_view() -> None:
    assert rows_to_strings(np.zeros((0, 4), np.uint8)).shape == (0,)
    array = np.frombuffer(b"ab\0xcd\0y", np.uint8).reshape(2, 4)[:, :3]
    assert list(rows_to_strings(array)) == [b"ab", b"cd"]


def test_round_trip() -> None:
    strings = [b"one", b"", b"three", "żółw".encode()]
    assert list(rows_to_strings(strings_to_rows(strings, "in"))) == strings


def test_limits() -> None:
    with pytest.raises(InvalidArgument, match="at least one string"):
        strings_to_rows([], "in")
    with pytest.raises(InvalidArgument, match="Maximum size of a string batch exceeded"):
        strings_to_rows([b"x" * 99, b"y"], "in", max_bytes=199)
    assert strings_to_rows([b"x" * 99, b"y"], "in", max_bytes=200).shape == (2, 100)


KINDS = [
    # spec, text input?, text output?
    (spec("in", (-1, -1)), True, False),
    (spec("in", (2, 16)), True, False),
    (spec("out_string", (-1, -1)), True, True),
    (spec("out_string", (-1,)), False, False),
    (spec("out_string", (-1, -1, -1)), False, False),
    (spec("out_string", (-1, -1), "INT8"), False, False),
    (spec("out_strings", (-1, -1)), True, False),
    (spec("in", (-1,)), False, False),
    (spec("in", (-1, -1), "FP32"), False, False),
]


@pytest.mark.parametrize(("s", "text_in", "text_out"), KINDS)
def test_which_tensors_are_text(s: TensorSpec, text_in: bool, text_out: bool) -> None:
    assert is_text_input(s) is text_in
    assert is_text_output(s) is text_out


def _bytes_tensor(items: list[bytes], shape: tuple[int, ...] | None = None) -> Tensor:
    data = np.empty(len(items), dtype=object)
    data[:] = items
    return Tensor("in", BYTES, data if shape is None else data.reshape(shape))


REQUESTS = [
    # input spec, strings (and request shape), expected rows or error message
    (spec("in", (-1, -1)), [b"abcd", b"ab"], None, [b"abcd\0", b"ab\0\0\0"]),
    (spec("in", (-1, 5)), [b"abcd", b"ab"], None, [b"abcd\0", b"ab\0\0\0"]),
    (
        spec("in", (-1, 4)),
        [b"abcd"],
        None,
        "Invalid input shape - Expected: (-1,4); Actual: (1,5) (1 strings, the longest 4 bytes",
    ),
    (spec("in", (-1, -1), ranges=((0, -1), (1, 8))), [b"x" * 7], None, [b"x" * 7 + b"\0"]),
    (spec("in", (-1, -1), ranges=((0, -1), (1, 8))), [b"x" * 8], None, "Expected: (-1,1:8)"),
    (spec("in", (-1, -1)), [b"a", b"b"], (1, 2), "Expected number of input shape dimensions: 1"),
    (spec("in", (-1, -1)), [b"a"], (), "Expected number of input shape dimensions: 1"),
    (spec("in", (-1, -1)), [], None, "at least one string"),
]


@pytest.mark.parametrize(("s", "items", "shape", "want"), REQUESTS)
def test_text_rows_for_an_input(
    s: TensorSpec, items: list[bytes], shape: tuple[int, ...] | None, want: list[bytes] | str
) -> None:
    tensor = _bytes_tensor(items, shape)
    if isinstance(want, str):
        with pytest.raises(InvalidArgument) as info:
            _text_rows(s, tensor)
        assert want in str(info.value)
        return
    out = _text_rows(s, tensor)
    assert out.datatype is U8 and out.name == "in"
    assert [r.tobytes() for r in out.data] == want


def test_outputs() -> None:
    rows = np.frombuffer(b"hi\0\0yes\0", np.uint8).reshape(2, 4)
    text = _output(spec("label_string", (-1, -1)), rows)
    assert text.datatype is BYTES and list(text.data) == [b"hi", b"yes"]
    plain = _output(spec("label", (-1, -1)), rows)
    assert plain.datatype is U8 and plain.data is rows
    numbers = np.zeros((2, 3), np.float32)
    assert _output(spec("x_string", (-1, 3), "FP32"), numbers).datatype is FP32
