"""Add / Sub / Mul / Div / Max / Min and variadic Sum / Mean / Max / Min on real Caffe and OpenCV vs onnxruntime:
same shapes, numpy broadcasting between activations on any axes and ranks (CBAM and SE gates, both operands
broadcast, 6-D), constant operands on either side (also broadcasting the output beyond the activation)."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import helper
from onnx_testing import check_conversion, make_model

from onnx2caffe.convert import convert
from onnx2caffe.errors import ConversionError

# Add, Sub, Mul, Max, Min round once per element exactly like onnxruntime (broadcasting only copies): any
# difference is a bug. Div is a * (1 / b) (two roundings): <= 2 ulp of each element, <= 2.4e-7 relative. A
# constant divisor is folded as x * (1 / c) (<= 1 ulp more); Mean is a sum scaled by 1/n (<= 1 ulp more).
EXACT = 0.0
TOL = {"Add": EXACT, "Sub": EXACT, "Mul": EXACT, "Max": EXACT, "Min": EXACT, "Div": 3e-7}
X = (2, 3, 4, 5)
BINARY = ["Add", "Sub", "Mul", "Div", "Max", "Min"]


@pytest.mark.parametrize("op", BINARY)
def test_two_activations(tmp_path, op):
    model = make_model([helper.make_node(op, ["a", "b"], ["y"])], {"a": X, "b": X}, {"y": None})
    check_conversion(model, tmp_path, max_rel=TOL[op])


@pytest.mark.parametrize("op", BINARY)
@pytest.mark.parametrize(
    "sa, sb",
    [
        (X, (2, 1, 4, 5)),  # CBAM spatial gate with a batch of 2 (not a contiguous run: broadcast by copies)
        (X, (1, 1, 4, 5)),  # spatial gate of one image: a run (H, W)
        (X, (2, 3, 1, 1)),  # SE / channel gate
        ((1, 64, 8, 8), (1, 64, 1, 1)),  # BiSeNet's global context added back
        ((2, 1, 4, 5), (2, 3, 1, 1)),  # both operands broadcast
        ((3, 1, 5), (2, 1, 4, 1)),  # different ranks, both broadcast
        ((5,), X),  # a vector along the last axis, on the left
        (X, (1,)),  # a single value
        ((2, 1, 3, 1, 2, 2), (1, 2, 1, 2, 1, 2)),  # 6-D (OpenCV's Eltwise takes 5 axes at most)
    ],
)
def test_broadcast_activations(tmp_path, op, sa, sb):
    model = make_model([helper.make_node(op, ["a", "b"], ["y"])], {"a": sa, "b": sb}, {"y": None})
    check_conversion(model, tmp_path, max_rel=TOL[op])


def test_gate_uses_scale(tmp_path):
    """A channel gate multiplies through a two-bottom Scale, without copying the gate over H, W."""
    model = make_model([helper.make_node("Mul", ["x", "g"], ["y"])], {"x": X, "g": (2, 3, 1, 1)}, {"y": None})
    net = check_conversion(model, tmp_path, max_rel=EXACT)
    assert [layer.type for layer in net.layers] == ["Input", "Input", "Reshape", "Scale"]


def test_div_by_zero(tmp_path):
    """a / 0 = +-inf on both runtimes, like onnxruntime (1 / +0 = inf, then a * inf)."""
    nodes = [helper.make_node("Relu", ["b"], ["r"]), helper.make_node("Div", ["a", "r"], ["y"])]
    model = make_model(nodes, {"a": X, "b": X}, {"y": None})
    check_conversion(model, tmp_path, max_rel=TOL["Div"])


@pytest.mark.parametrize(
    "op,const_first",
    [(op, first) for op in BINARY for first in (False, True)],
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
    # x / c is x * (1 / c): 1 ulp; c / x two roundings
    check_conversion(model, tmp_path, max_rel=TOL[op] if op != "Div" or const_first else 2e-7)


@pytest.mark.parametrize("op", BINARY)
@pytest.mark.parametrize("x_shape, c_shape", [((3, 1), (2, 3, 4)), ((1, 4), (3, 1)), ((5,), (2, 1, 5))])
def test_constant_broadcasts_the_activation(tmp_path, op, x_shape, c_shape):
    """A constant grid combined with a smaller activation: the activation is broadcast to the output first."""
    rng = np.random.default_rng(2)
    c = (rng.uniform(0.5, 2.0, c_shape) * rng.choice([-1, 1], c_shape)).astype(np.float32)
    model = make_model([helper.make_node(op, ["c", "x"], ["y"])], {"x": x_shape}, {"y": None}, {"c": c})
    check_conversion(model, tmp_path, max_rel=TOL[op])


def test_max_with_zero_is_relu(tmp_path):
    model = make_model(
        [helper.make_node("Max", ["x", "z"], ["y"])], {"x": X}, {"y": None}, {"z": np.float32(0)}
    )
    net = check_conversion(model, tmp_path, max_rel=EXACT)
    assert [layer.type for layer in net.layers] == ["Input", "ReLU"]


@pytest.mark.parametrize("op", ["Sum", "Mean", "Max", "Min"])
@pytest.mark.parametrize(
    "shapes",
    [
        [X, X, X],
        [X, (3, 1, 1), (2, 1, 4, 5)],  # broadcasting
        [X, "const", (1, 1, 1, 5)],  # a constant among the inputs
        [X],  # a single input: a copy
        [X, (4, 5)],
    ],
)
def test_variadic(tmp_path, op, shapes):
    inputs, inits, names = {}, {}, []
    for i, s in enumerate(shapes):
        name = f"i{i}"
        if s == "const":
            inits[name] = np.random.default_rng(i).standard_normal((4, 1)).astype(np.float32)
        else:
            inputs[name] = s
        names.append(name)
    model = make_model([helper.make_node(op, names, ["y"])], inputs, {"y": None}, inits)
    # Mean: the sum of up to 3 terms scaled by 1/n (1/3 rounded, then one more rounding); Sum adds in order
    check_conversion(model, tmp_path, max_rel=3e-7 if op == "Mean" else EXACT)


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


def test_integer_arithmetic_refused(tmp_path):
    nodes = [
        helper.make_node("Cast", ["x"], ["i"], to=7),
        helper.make_node("Add", ["i", "i"], ["s"], name="n"),
        helper.make_node("Cast", ["s"], ["y"], to=1),
    ]
    model = make_model(nodes, {"x": (2, 3)}, {"y": None})
    with pytest.raises(ConversionError, match=r"node 'n' \(Add, opset 13\): int64 arithmetic"):
        convert(model, str(tmp_path / "m"), check=False)
    assert not list(tmp_path.iterdir())
