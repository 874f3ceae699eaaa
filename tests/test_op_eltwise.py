"""Add/Sub/Mul/Div/Max on real Caffe and OpenCV vs onnxruntime: same shapes, constants, broadcast gates."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import helper
from onnx_testing import check_conversion, make_model

from onnx2caffe.convert import convert
from onnx2caffe.errors import ConversionError

# one float32 rounding per element (x / c becomes x * (1/c): at most 1 ulp more): 1e-6 relative is ample
TOL = 1e-6
X = (2, 3, 4, 5)


@pytest.mark.parametrize("op", ["Add", "Sub", "Mul", "Max"])
def test_two_activations(tmp_path, op):
    model = make_model([helper.make_node(op, ["a", "b"], ["y"])], {"a": X, "b": X}, {"y": None})
    check_conversion(model, tmp_path, max_rel=TOL)


@pytest.mark.parametrize(
    "op,const_first",
    [
        (op, first)
        for op in ("Add", "Sub", "Mul", "Div")
        for first in (False, True)
        if not (op == "Div" and first)
    ],
)
@pytest.mark.parametrize(
    "c_shape",
    [(), (1,), (5,), (3, 1, 1), (1, 3, 1, 1), (4, 5), (3, 1, 5), (2, 1, 1, 1), X],
)
def test_with_constant(tmp_path, op, const_first, c_shape):
    rng = np.random.default_rng(1)
    c = (rng.uniform(0.5, 2.0, c_shape) * rng.choice([-1, 1], c_shape)).astype(np.float32)
    inputs = ["c", "x"] if const_first else ["x", "c"]
    model = make_model([helper.make_node(op, inputs, ["y"])], {"x": X}, {"y": None}, {"c": c})
    check_conversion(model, tmp_path, max_rel=TOL)


@pytest.mark.parametrize("gate_shape", [(2, 3, 1, 1), (5,), (1, 1, 4, 5), (3, 4, 5), (2, 1, 1, 1)])
def test_broadcast_gate(tmp_path, gate_shape):
    model = make_model([helper.make_node("Mul", ["x", "g"], ["y"])], {"x": X, "g": gate_shape}, {"y": None})
    check_conversion(model, tmp_path, max_rel=TOL)


def test_max_with_zero_is_relu(tmp_path):
    model = make_model(
        [helper.make_node("Max", ["x", "z"], ["y"])], {"x": X}, {"y": None}, {"z": np.float32(0)}
    )
    net = check_conversion(model, tmp_path, max_rel=TOL)
    assert [layer.type for layer in net.layers] == ["Input", "ReLU"]


def test_max_three_inputs(tmp_path):
    model = make_model(
        [helper.make_node("Max", ["a", "b", "c"], ["y"])], {"a": X, "b": X, "c": X}, {"y": None}
    )
    check_conversion(model, tmp_path, max_rel=TOL)


def test_legacy_broadcast_attribute(tmp_path):
    # opset 6 `broadcast=1, axis=1`: c lines up with the channel axis (onnxruntime has no Add-6 kernel, so the
    # layer is checked structurally)
    node = helper.make_node("Add", ["x", "c"], ["y"], name="add", broadcast=1, axis=1)
    c = np.arange(3, dtype=np.float32)
    model = make_model([node], {"x": X}, {"y": None}, {"c": c}, opset=6)
    net = convert(model, str(tmp_path / "m"), check=False).net
    layer = net.layer("add")
    assert layer.type == "Scale" and layer.proto.scale_param.bias_term
    assert layer.proto.scale_param.axis == 1 and layer.proto.scale_param.num_axes == 1
    np.testing.assert_array_equal(layer.blobs[1], c)
    np.testing.assert_array_equal(layer.blobs[0], np.ones(3, np.float32))


@pytest.mark.parametrize(
    "op,inputs,shapes,match",
    [
        ("Div", ["a", "b"], {"a": X, "b": X}, "division of two activations"),
        ("Div", ["c", "a"], {"a": X}, "constant / activation"),
        ("Add", ["a", "b"], {"a": X, "b": (1, 3, 1, 1)}, "broadcasting between activations"),
        ("Max", ["a", "c"], {"a": X}, "non-zero constant"),
    ],
)
def test_refusals(tmp_path, op, inputs, shapes, match):
    inits = {"c": np.float32(2.0)} if "c" in inputs else {}
    model = make_model([helper.make_node(op, inputs, ["y"], name="n")], shapes, {"y": None}, inits)
    with pytest.raises(ConversionError, match=match):
        convert(model, str(tmp_path / "m"), check=False)
    assert not list(tmp_path.iterdir())
