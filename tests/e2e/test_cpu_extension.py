"""--cpu_extension: a library of custom OpenVINO operations, loaded before any model."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import openvino as ov
import pytest
import requests

from tests.e2e.conftest import ROOT, start_server

TWICE_CPP = r"""#include <openvino/core/extension.hpp>
#include <openvino/core/op_extension.hpp>
#include <openvino/op/op.hpp>

class Twice : public ov::op::Op {
public:
    OPENVINO_OP("Twice", "ovtrio_test");
    Twice() = default;
    explicit Twice(const ov::Output<ov::Node>& arg) : Op({arg}) { constructor_validate_and_infer_types(); }
    void validate_and_infer_types() override {
        set_output_type(0, get_input_element_type(0), get_input_partial_shape(0));
    }
    std::shared_ptr<ov::Node> clone_with_new_inputs(const ov::OutputVector& args) const override {
        return std::make_shared<Twice>(args.at(0));
    }
    bool visit_attributes(ov::AttributeVisitor&) override { return true; }
    bool has_evaluate() const override { return true; }
    bool evaluate(ov::TensorVector& outputs, const ov::TensorVector& inputs) const override {
        outputs[0].set_shape(inputs[0].get_shape());
        const float* src = inputs[0].data<const float>();
        float* dst = outputs[0].data<float>();
        for (size_t i = 0; i < inputs[0].get_size(); ++i) dst[i] = 2.0f * src[i];
        return true;
    }
};

OPENVINO_CREATE_EXTENSIONS(std::vector<ov::Extension::Ptr>({std::make_shared<ov::OpExtension<Twice>>()}));
"""
"""An OpenVINO extension with one operation, ``Twice`` (y = 2x, FP32)."""

TWICE_XML = """<?xml version="1.0"?>
<net name="twice" version="11">
  <layers>
    <layer id="0" name="x" type="Parameter" version="opset1">
      <data shape="?,4" element_type="f32"/>
      <output><port id="0" precision="FP32" names="x"><dim>-1</dim><dim>4</dim></port></output>
    </layer>
    <layer id="1" name="twice" type="Twice" version="ovtrio_test">
      <input><port id="0" precision="FP32"><dim>-1</dim><dim>4</dim></port></input>
      <output><port id="1" precision="FP32" names="y"><dim>-1</dim><dim>4</dim></port></output>
    </layer>
    <layer id="2" name="y/sink" type="Result" version="opset1">
      <input><port id="0" precision="FP32"><dim>-1</dim><dim>4</dim></port></input>
    </layer>
  </layers>
  <edges>
    <edge from-layer="0" from-port="0" to-layer="1" to-port="0"/>
    <edge from-layer="1" from-port="1" to-layer="2" to-port="0"/>
  </edges>
</net>
"""
"""An IR whose only operation is the extension's ``Twice``: FP32 [-1, 4] ``x`` -> ``y``."""

OV_DIR = Path(ov.__file__).parent


def run_ovtrio(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ovtrio", "--rest_port", "0", "--port", "1", "--demo", *args],
        env={"PYTHONPATH": str(ROOT / "src"), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_a_file_that_is_not_a_library_exits_1_naming_it(tmp_path: Path) -> None:
    fake = tmp_path / "libfake.so"
    fake.write_text("not a shared library")
    result = run_ovtrio("--model_path", str(tmp_path / "demo"), "--cpu_extension", str(fake))
    assert result.returncode == 1
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"ovtrio: error: --cpu_extension: cannot load {fake}: ")


def test_a_missing_file_exits_1_naming_it(tmp_path: Path) -> None:
    missing = tmp_path / "libmissing.so"
    result = run_ovtrio("--cpu_extension", str(missing))
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        "ovtrio: error: File path provided as an --cpu_extension parameter does not exist in "
        f"the filesystem: {missing}"
    ]


@pytest.fixture(scope="module")
def extension(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The extension built with g++ against the OpenVINO wheel's headers and library."""
    compiler = shutil.which("g++")
    libraries = sorted((OV_DIR / "libs").glob("libopenvino.so*"))
    if compiler is None or not (OV_DIR / "include").is_dir() or not libraries:
        pytest.skip("needs g++ and the OpenVINO wheel's headers")
    tmp = tmp_path_factory.mktemp("extension")
    (tmp / "twice.cpp").write_text(TWICE_CPP)
    library = tmp / "libtwice.so"
    subprocess.run(
        [compiler, "-std=c++17", "-O1", "-shared", "-fPIC", f"-I{OV_DIR / 'include'}",
         str(tmp / "twice.cpp"), "-o", str(library), str(libraries[0])],
        check=True,
        timeout=300,
    )  # fmt: skip
    return library


def test_the_extension_runs_its_operation(extension: Path, tmp_path: Path) -> None:
    version = tmp_path / "twice" / "1"
    version.mkdir(parents=True)
    (version / "model.xml").write_text(TWICE_XML)
    args = ["--model_name", "twice", "--model_path", str(version.parent)]
    server = start_server(tmp_path, [*args, "--cpu_extension", str(extension)])
    try:
        body = {
            "inputs": [{"name": "x", "shape": [2, 4], "datatype": "FP32", "data": list(range(8))}]
        }
        reply = requests.post(f"{server.http}/v2/models/twice/infer", json=body, timeout=30)
        assert reply.status_code == 200, reply.text
        np.testing.assert_array_equal(reply.json()["outputs"][0]["data"], np.arange(8) * 2.0)
        assert f"loaded the CPU extension {extension}" in server.log()
    finally:
        assert server.stop() == 0
    without = start_server(tmp_path, args, wait_ready=False)
    try:
        reply = None
        for _ in range(300):
            try:
                reply = requests.get(f"{without.http}/v2/models/twice/ready", timeout=1)
                if "failed to load" in without.log():
                    break
            except requests.ConnectionError:
                pass
            time.sleep(0.1)
        assert "twice version 1 failed to load" in without.log()
        assert reply is not None and reply.status_code != 200
    finally:
        without.stop()
