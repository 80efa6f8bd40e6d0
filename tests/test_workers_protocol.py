"""What crosses between the engine and a front-end: the arena allocator, tensors placed in
shared memory and read back in place, datatypes back as the table's own objects."""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import pytest

from ovtrio.errors import InvalidArgument
from ovtrio.tensors import InferRequest, InferResponse, Tensor, TensorSpec, datatype
from ovtrio.workers._protocol import (
    Arena,
    Codec,
    Framer,
    SharedArena,
    pack_request,
    pack_response,
    portable_error,
    unpack_request,
    unpack_response,
)


def test_arena_first_fit_and_merge() -> None:
    arena = Arena(1024)
    a, b, c = arena.alloc(100), arena.alloc(64), arena.alloc(1)
    assert (a, b, c) == (0, 128, 192)
    assert arena.alloc(1024) is None
    arena.free(b)
    assert arena.alloc(64) == 128  # the hole is reused
    arena.free(128)
    arena.free(a)
    arena.free(c)
    assert arena.alloc(1024) == 0  # every range merged back into one


def test_codec_places_numeric_tensors_in_the_arena_and_reads_them_in_place() -> None:
    requests = SharedArena.create("test-requests", 1 << 20)
    peer = SharedArena(os.dup(requests.fd), 1 << 20)  # the other process's mapping
    sender, receiver = Codec(out=requests, into=None), Codec(out=None, into=peer)
    data = np.arange(3 * 1024, dtype=np.float32).reshape(3, 1024)  # above INLINE_BYTES
    words = np.array([b"ab", b"c"], dtype=object)
    request = InferRequest(
        "m", 1, [Tensor("x", datatype("FP32"), data), Tensor("s", datatype("BYTES"), words)]
    )
    placed: list[int] = []
    frame = sender.dumps(("infer", 1, pack_request(sender, request, placed)))
    assert len(placed) == 1
    assert len(frame) < 400 and data.tobytes() not in frame
    (_, _, packed) = receiver.loads(Framer().feed(frame)[0])
    got = unpack_request(receiver, packed)
    assert got.inputs[0].datatype is datatype("FP32")
    np.testing.assert_array_equal(got.inputs[0].data, data)
    assert np.shares_memory(got.inputs[0].data, np.frombuffer(peer.map, np.uint8))
    assert list(got.inputs[1].data) == [b"ab", b"c"]
    requests.arena.free(placed[0])
    assert requests.arena.alloc(1 << 20) == 0


def test_response_views_report_their_offsets() -> None:
    responses = SharedArena.create("test-responses", 1 << 20)
    peer = SharedArena(os.dup(responses.fd), 1 << 20)
    engine, frontend = Codec(out=responses, into=None), Codec(out=None, into=peer)
    out = np.ones((2, 1024), np.int64)
    response = InferResponse("m", 2, [Tensor("y", datatype("INT64"), out)], "id")
    frame = engine.dumps(("answer", 7, pack_response(engine, response)))
    seen: list[int] = []
    (_, _, packed) = frontend.loads(Framer().feed(frame)[0])
    got = unpack_response(frontend, packed, lambda _a, offset: seen.append(offset))
    assert seen == [0] and got.id == "id" and got.model_version == 2
    np.testing.assert_array_equal(got.outputs[0].data, out)


@pytest.mark.parametrize(
    "array",
    [
        np.arange(12, dtype=np.float32).reshape(3, 4),
        np.array(7, dtype=np.int8),  # 0-d
        np.zeros((0, 4), np.float16),  # empty
        np.array([True, False]),
        np.arange(1024, dtype=np.float32),  # exactly INLINE_BYTES
        np.arange(24, dtype=np.int64).reshape(4, 6)[:, ::2],  # not contiguous
    ],
)
def test_small_tensors_travel_inside_the_message(array: np.ndarray[Any, Any]) -> None:
    """No arena space, so nothing to free and nothing to release for the other side."""
    arena = SharedArena.create("test-small", 1 << 20)
    sender, receiver = Codec(out=arena, into=None), Codec(out=None, into=arena)
    placed: list[int] = []
    request = InferRequest("m", 1, [Tensor("x", datatype("FP32"), array)])
    frame = sender.dumps(("infer", 1, pack_request(sender, request, placed)))
    assert placed == []
    (_, _, packed) = receiver.loads(Framer().feed(frame)[0])
    seen: list[int] = []
    got = receiver.unpack(packed[2], lambda _a, offset: seen.append(offset))[0].data
    assert seen == [] and got.dtype == array.dtype and got.shape == array.shape
    np.testing.assert_array_equal(got, array)
    assert arena.arena.alloc(1 << 20) == 0  # nothing was allocated


def test_typed_messages_bring_back_the_table_s_datatypes() -> None:
    codec = Codec(None, None)
    spec = TensorSpec("x", datatype("FP16"), (1, -1))
    (got,) = codec.loads(Framer().feed(codec.dumps_typed((spec,)))[0])
    assert got == spec and got.datatype is datatype("FP16")


def test_framer_splits_and_joins_frames() -> None:
    codec = Codec(None, None)
    stream = codec.dumps("one") + codec.dumps(("two", 2))
    framer = Framer()
    assert [codec.loads(p) for p in framer.feed(stream[:3])] == []
    assert [codec.loads(p) for p in framer.feed(stream[3:])] == ["one", ("two", 2)]


def test_errors_cross_as_the_tree_s_classes() -> None:
    exc = portable_error(InvalidArgument("bad"))
    assert isinstance(exc, InvalidArgument)
    assert "boom" in str(portable_error(RuntimeError("boom")))
