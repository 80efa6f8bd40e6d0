"""The REST JSON nesting limit (codecs/_json.py): a table, then hypothesis against a reference."""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ovtrio.codecs import _json
from ovtrio.codecs.kserve_rest import decode_infer_request
from ovtrio.codecs.tfs_rest import decode_predict
from ovtrio.errors import InvalidArgument, JsonInvalid


def nested(depth: int, inner: str = "1") -> bytes:
    return ("[" * depth + inner + "]" * depth).encode()


# body, limit, deeper than the limit?
DEPTH_CASES: dict[str, tuple[bytes, int, bool]] = {
    "flat": (b'{"a": [1, 2, 3]}', 2, False),
    "at the limit": (nested(4), 4, False),
    "one over": (nested(5), 4, True),
    "objects count": (b'{"a": {"b": {"c": {}}}}', 3, True),
    "mixed": (b'{"a": [{"b": [1]}]}', 4, False),
    "mixed over": (b'{"a": [{"b": [[1]]}]}', 4, True),
    "brackets in a string": (b'["[[[[[[[[[[", "{{{{{{{{"]', 2, False),
    "escaped quote keeps the string open": (b'["\\"[[[[[[[[", 1]', 2, False),
    "escaped backslash closes the string": (b'["\\\\", [[[[[[1]]]]]]', 2, True),
    "three backslashes then a quote": (b'["\\\\\\"[[[[[[", 1]', 2, False),
    "siblings do not add up": (b"[[1], [2], [3], [4], [5], [6], [7]]", 2, False),
    "deep after a long flat run": (b"[" + b"1," * 1000 + nested(6) + b"]", 5, True),
    # invalid JSON: the parser stops at the first stray closer, before any depth is reached
    "stray closers first": (b"]]]]]]]]]]" + nested(3), 2, False),
    "default limit is the parsers'": (nested(1100), _json.PARSER_DEPTH, False),
}


@pytest.mark.parametrize(("body", "limit", "deeper"), DEPTH_CASES.values(), ids=list(DEPTH_CASES))
def test_check_depth(body: bytes, limit: int, deeper: bool) -> None:
    if deeper:
        with pytest.raises(InvalidArgument, match=f"deeper than {limit} levels"):
            _json.check_depth(body, limit)
    else:
        _json.check_depth(body, limit)


def _depth(value: Any) -> int:
    if isinstance(value, list):
        return 1 + max((_depth(v) for v in value), default=0)
    if isinstance(value, dict):
        return 1 + max((_depth(v) for v in value.values()), default=0)
    return 0


_strings = st.text(alphabet=st.sampled_from('[]{}"\\ab,:'), max_size=8)
_values = st.recursive(
    st.none() | st.booleans() | st.integers() | _strings,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(_strings, children, max_size=4)
    ),
    max_leaves=40,
)


@settings(max_examples=400, deadline=None)
@given(value=_values, limit=st.integers(2, 8))
def test_check_depth_agrees_with_the_parsed_depth(value: Any, limit: int) -> None:
    body = json.dumps(value).encode()
    if _depth(value) > limit and len(body) > 2 * limit:
        with pytest.raises(InvalidArgument):
            _json.check_depth(body, limit)
    elif _depth(value) <= limit:
        _json.check_depth(body, limit)


def test_codecs_name_the_limit() -> None:
    kserve = orjson.dumps(
        {"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [[[[[[1.0]]]]]]}]}
    )
    with pytest.raises(InvalidArgument, match="--rest_max_json_depth"):
        decode_infer_request(kserve, None, model_name="m", model_version=None, max_depth=6)
    decode_infer_request(kserve, None, model_name="m", model_version=None, max_depth=9)
    tfs = b'{"instances": ' + nested(8, "1.0") + b"}"
    with pytest.raises(InvalidArgument, match="--rest_max_json_depth"):
        decode_predict(tfs, model_name="m", model_version=None, input_specs=(), max_depth=8)


@pytest.mark.parametrize("depth", [1025, 5000])
def test_beyond_the_parsers_own_limit_names_it(depth: int) -> None:
    body = b'{"inputs": ' + nested(depth) + b"}"
    with pytest.raises(InvalidArgument, match="deeper than 1024 levels"):
        decode_infer_request(body, None, model_name="m", model_version=None)
    with pytest.raises(InvalidArgument, match="deeper than 1024 levels"):
        decode_predict(body, model_name="m", model_version=None, input_specs=())


@pytest.mark.parametrize("body", [b'{"a": [1, 2}', b"]]]]]]]]]]" + nested(3)])
def test_other_invalid_json_stays_412(body: bytes) -> None:
    with pytest.raises(JsonInvalid):
        _json.loads(body, 2)
