"""Python nodes for test_python_node: each function declares its metadata as attributes
(mypy does not check tests, so the attributes need no ignores)."""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

Array = np.ndarray[Any, Any]


def add(inputs: dict[str, Array], params: dict[str, str]) -> dict[str, Array]:
    return {"out": inputs["in"] + np.float32(params.get("add_value", "0"))}


add.inputs = {"in": ("FP32", (-1, -1))}
add.outputs = {"out": ("FP32", (-1, -1))}


def fails(inputs: dict[str, Array], params: dict[str, str]) -> dict[str, Array]:
    raise ValueError("no")


fails.inputs = add.inputs
fails.outputs = add.outputs


def returns_list(inputs: dict[str, Array], params: dict[str, str]) -> object:
    return [inputs["in"]]


returns_list.inputs = add.inputs
returns_list.outputs = add.outputs


def writes_its_input(inputs: dict[str, Array], params: dict[str, str]) -> dict[str, Array]:
    inputs["in"][...] = 0
    return {"out": inputs["in"]}


writes_its_input.inputs = add.inputs
writes_its_input.outputs = add.outputs


def undeclared(inputs: dict[str, Array], params: dict[str, str]) -> dict[str, Array]:
    return inputs


def bad_metadata(inputs: dict[str, Array], params: dict[str, str]) -> dict[str, Array]:
    return inputs


bad_metadata.inputs = {"in": ("FLOAT", (1,))}
bad_metadata.outputs = add.outputs

# gate: blocks until the test sets it; entered counts calls that started.
gate = threading.Event()
entered = threading.Semaphore(0)


def gated(inputs: dict[str, Array], params: dict[str, str]) -> dict[str, Array]:
    entered.release()
    gate.wait()
    return {"out": inputs["in"] + 1}


gated.inputs = add.inputs
gated.outputs = add.outputs
