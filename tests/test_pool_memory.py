"""The pool gives back what a large inference leaves on its infer request (``LARGE_BYTES``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import trio

from ovtrio.config import ModelConfig
from ovtrio.runtime import CompiledModel, _pool, compile_version, ov_core
from tests import models

WIDTH = 16
ONE_STREAM = {"NUM_STREAMS": 1, "INFERENCE_PRECISION_HINT": "f32"}


def compiled(base: Path) -> CompiledModel:
    cfg = ModelConfig(name="m", base_path=base, plugin_config=ONE_STREAM, nireq=2)
    return CompiledModel(*compile_version(ov_core(), cfg, base / "1"), 2)


@pytest.fixture(scope="module")
def dynamic(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return models.add_model(tmp_path_factory.mktemp("mem") / "dyn", shape=(-1, WIDTH))


@pytest.fixture(scope="module")
def static(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return models.add_model(tmp_path_factory.mktemp("mem") / "static", shape=(2, WIDTH))


def _held_elements(cm: CompiledModel) -> int:
    """Elements the pool's free requests hold in their input and output tensors."""
    return sum(
        r.get_input_tensor(0).get_size() + r.get_output_tensor(0).get_size() for r in cm._free
    )


def test_a_large_inference_is_flushed_and_the_answer_kept(dynamic: Path) -> None:
    cm = compiled(dynamic)
    rows = _pool.LARGE_BYTES // (4 * WIDTH)
    small = np.ones((3, WIDTH), np.float32)
    big = np.full((rows, WIDTH), 2.0, np.float32)

    async def main() -> None:
        np.testing.assert_array_equal((await cm.infer([small]))[0], small + 1)
        assert cm.flushes == 0
        out = (await cm.infer([big]))[0]
        assert out.shape == big.shape and out[0, 0] == out[-1, -1] == 3.0
        assert cm.flushes == 1
        assert cm.shapes.last == ((3, WIDTH),)  # the flush ran in the last small shape
        assert _held_elements(cm) <= 4 * 3 * WIDTH
        assert cm.release_memory()
        np.testing.assert_array_equal((await cm.infer([small]))[0], small + 1)
        np.testing.assert_array_equal((await cm.infer([big[:5]]))[0], big[:5] + 1)
        assert cm.completed == 4 and cm.flushes == 1

    trio.run(main)
    cm.close()


def test_a_first_large_inference_flushes_in_the_smallest_shape(dynamic: Path) -> None:
    cm = compiled(dynamic)
    big = np.ones((_pool.LARGE_BYTES // (4 * WIDTH), WIDTH), np.float32)

    async def main() -> None:
        assert (await cm.infer([big]))[0][0, 0] == 2.0
        assert cm.flushes == 1
        assert cm.shapes.last == ((1, WIDTH),)

    trio.run(main)
    cm.close()


def test_a_static_model_never_flushes(static: Path) -> None:
    cm = compiled(static)
    assert not cm._grows
    cm.close()
