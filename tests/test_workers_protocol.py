"""What crosses between the engine and a front-end: the arena allocator, tensors placed in
shared memory and read back in place, datatypes back as the table's own objects."""

from __future__ import annotations

import os

import numpy as np

from ovtrio.errors import InvalidArgument
from ovtrio.tensors import InferRequest, Tensor, datatype
from ovtrio.workers._protocol import Arena, Codec, Framer, SharedArena, portable_error


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
    data = np.arange(12, dtype=np.float32).reshape(3, 4)
    words = np.array([b"ab", b"c"], dtype=object)
    request = InferRequest(
        "m", 1, [Tensor("x", datatype("FP32"), data), Tensor("s", datatype("BYTES"), words)]
    )
    placed: list[int] = []
    frame = sender.dumps(("infer", 1, request), placed)
    assert len(placed) == 1
    assert len(frame) < data.nbytes + 400 and data.tobytes() not in frame
    seen: list[int] = []
    (_, _, got) = receiver.loads(Framer().feed(frame)[0], lambda a, off: seen.append(off))
    assert seen == placed
    assert got.inputs[0].datatype is datatype("FP32")
    np.testing.assert_array_equal(got.inputs[0].data, data)
    assert np.shares_memory(got.inputs[0].data, np.frombuffer(peer.map, np.uint8))
    assert list(got.inputs[1].data) == [b"ab", b"c"]
    requests.arena.free(placed[0])
    assert requests.arena.alloc(1 << 20) == 0


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
