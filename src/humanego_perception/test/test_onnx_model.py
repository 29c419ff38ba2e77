"""humanego_perception.onnx_model on small models built here with onnx.helper: loading, signature checks with
their messages, running, and refusing non-finite outputs."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from humanego_perception.onnx_model import CPU, OnnxModel, OnnxModelError, TensorSpec, default_providers


def doubling_model(path, input_name="x", shape=(1, 3, "n"), elem=TensorProto.FLOAT, extra_input=False):
    """y = 2 x (plus 0 * z when ``extra_input``)."""
    inputs = [helper.make_tensor_value_info(input_name, elem, list(shape))]
    nodes = [helper.make_node("Add", [input_name, input_name], ["y"])]
    if extra_input:
        inputs.append(helper.make_tensor_value_info("z", elem, list(shape)))
        nodes = [helper.make_node("Add", [input_name, input_name], ["y0"]),
                 helper.make_node("Sub", ["z", "z"], ["zero"]), helper.make_node("Add", ["y0", "zero"], ["y"])]
    graph = helper.make_graph(nodes, "doubling", inputs, [helper.make_tensor_value_info("y", elem, list(shape))])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


X = [TensorSpec("x", (1, 3, None))]
Y = [TensorSpec("y", (1, 3, None))]


def test_loads_runs_and_reports_its_providers(tmp_path):
    model = OnnxModel(doubling_model(tmp_path / "m.onnx"), X, Y, "test doubler")
    x = np.arange(12, dtype=np.float32).reshape(1, 3, 4)
    out = model.run({"x": x})
    assert set(out) == {"y"}
    np.testing.assert_array_equal(out["y"], 2 * x)
    assert CPU in model.providers
    assert default_providers()[-1] == CPU


def test_run_casts_inputs_and_checks_them(tmp_path):
    model = OnnxModel(doubling_model(tmp_path / "m.onnx"), X, Y, "test doubler")
    np.testing.assert_array_equal(model.run({"x": np.ones((1, 3, 2))})["y"], np.full((1, 3, 2), 2.0, np.float32))
    with pytest.raises(ValueError, match="missing inputs x"):
        model.run({})
    with pytest.raises(ValueError, match="dimension 1 is 4, expected 3"):
        model.run({"x": np.ones((1, 4, 2), np.float32)})


def test_non_finite_output_is_refused(tmp_path):
    model = OnnxModel(doubling_model(tmp_path / "m.onnx"), X, Y, "test doubler")
    with pytest.raises(ValueError, match="test doubler.*'y' contains NaN or inf"):
        model.run({"x": np.array([[[1.0], [np.nan], [0.0]]], np.float32)})


def test_symbolic_and_fixed_dimensions_fit_each_other(tmp_path):
    # the file's symbolic dimension accepts an expected fixed size, an expected dynamic one accepts a fixed size
    OnnxModel(doubling_model(tmp_path / "a.onnx"), [TensorSpec("x", (1, 3, 7))], [TensorSpec("y", (1, 3, 7))], "a")
    OnnxModel(doubling_model(tmp_path / "b.onnx", shape=(1, 3, 5)), X, Y, "b")


@pytest.mark.parametrize("kwargs, problem", [
    ({"input_name": "images"}, "no input named 'x'"),
    ({"shape": (1, 4, "n")}, "input 'x' has dimension 1 is 4, expected 3"),
    ({"shape": (1, 3)}, "input 'x' has rank 2, expected 3"),
    ({"elem": TensorProto.DOUBLE}, "input 'x' has dtype float64, expected float32"),
    ({"extra_input": True}, "unexpected input 'z'"),
])
def test_wrong_signature_names_file_purpose_expectation_and_contents(tmp_path, kwargs, problem):
    path = doubling_model(tmp_path / "wrong.onnx", **kwargs)
    with pytest.raises(OnnxModelError) as info:
        OnnxModel(path, X, Y, "test doubler (config key a.b)")
    message = str(info.value)
    assert str(path) in message and "test doubler (config key a.b)" in message
    assert problem in message
    assert "expected inputs: x [1, 3, ?] float32" in message and "expected outputs: y [1, 3, ?] float32" in message
    assert "The file has inputs:" in message


def test_missing_file_names_it_and_the_expected_inputs(tmp_path):
    with pytest.raises(OnnxModelError) as info:
        OnnxModel(tmp_path / "absent.onnx", X, Y, "SAM2 image encoder")
    message = str(info.value)
    assert str(tmp_path / "absent.onnx") in message and "does not exist" in message
    assert "SAM2 image encoder" in message and "expected inputs: x [1, 3, ?] float32" in message


def test_not_an_onnx_file(tmp_path):
    path = tmp_path / "garbage.onnx"
    path.write_bytes(b"not a model at all")
    with pytest.raises(OnnxModelError, match="not a loadable ONNX model.*expected inputs: x"):
        OnnxModel(path, X, Y, "test doubler")
    with pytest.raises(OnnxModelError, match="is not a regular file"):
        OnnxModel(tmp_path, X, Y, "test doubler")
