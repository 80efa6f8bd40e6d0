"""Python nodes for test_python_node: each function declares its metadata as attributes."""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

Array = np.ndarray[Any, Any]


def add(inputs: dict[str, Array], params: dict[str, str]) -> dict[str, Array]:
    return {"out": inputs["in"] + np.float32(params.get("add_value", "0"))}


add.inputs = {"in": ("FP32", (-1, -1))}  # type: ignore[attr-defined]
add.outputs = {"out": ("FP32", (-1, -1))}  # type: ignore[attr-defined]


def fails(inputs: dict[str, Array], params: dict[str, str]) -> dict[str, Array]:
    raise ValueError("no")


fails.inputs = add.inputs  # type: ignore[attr-defined]
fails.outputs = add.outputs  # type: ignore[attr-defined]


def returns_list(inputs: dict[str, Array], params: dict[str, str]) -> object:
    return [inputs["in"]]


returns_list.inputs = add.inputs  # type: ignore[attr-defined]
returns_list.outputs = add.outputs  # type: ignore[attr-defined]


def writes_its_input(inputs: dict[str, Array], params: dict[str, str]) -> dict[str, Array]:
    inputs["in"][...] = 0
    return {"out": inputs["in"]}


writes_its_input.inputs = add.inputs  # type: ignore[attr-defined]
writes_its_input.outputs = add.outputs  # type: ignore[attr-defined]


def undeclared(inputs: dict[str, Array], params: dict[str, str]) -> dict[str, Array]:
    return inputs


bad_metadata = add.__class__(add.__code__, globals(), "bad_metadata")
bad_metadata.inputs = {"in": ("FLOAT", (1,))}  # type: ignore[attr-defined]
bad_metadata.outputs = add.outputs  # type: ignore[attr-defined]

# gate: blocks until the test sets it; entered counts calls that started.
gate = threading.Event()
entered = threading.Semaphore(0)


def gated(inputs: dict[str, Array], params: dict[str, str]) -> dict[str, Array]:
    entered.release()
    gate.wait()
    return {"out": inputs["in"] + 1}


gated.inputs = add.inputs  # type: ignore[attr-defined]
gated.outputs = add.outputs  # type: ignore[attr-defined]
