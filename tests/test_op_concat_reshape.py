"""Concat, Flatten, Reshape, Squeeze, Unsqueeze, Identity on real Caffe and OpenCV vs onnxruntime."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import helper
from onnx_testing import check_conversion, make_model

# pure data movement: bit-exact
TOL = 0.0


@pytest.mark.parametrize("axis", [0, 1, 2, -1])
def test_concat(tmp_path, axis):
    shapes = {"a": [2, 3, 4, 5], "b": [2, 3, 4, 5], "c": [2, 3, 4, 5]}
    shapes["b"][axis] = 1
    node = helper.make_node("Concat", ["a", "b", "c"], ["y"], axis=axis)
    model = make_model([node], {k: tuple(v) for k, v in shapes.items()}, {"y": None})
    check_conversion(model, tmp_path, max_rel=TOL, cos=0.99999)


@pytest.mark.parametrize("axis", [0, 1, 2, 3])
def test_flatten(tmp_path, axis):
    model = make_model(
        [helper.make_node("Flatten", ["x"], ["y"], axis=axis)], {"x": (2, 3, 4, 5)}, {"y": None}
    )
    check_conversion(model, tmp_path, max_rel=TOL)


@pytest.mark.parametrize("target", [[2, -1], [0, 3, 20], [-1], [6, 4, 5], [2, 3, 2, 2, 5]])
def test_reshape(tmp_path, target):
    node = helper.make_node("Reshape", ["x", "s"], ["y"])
    model = make_model([node], {"x": (2, 3, 4, 5)}, {"y": None}, {"s": np.array(target, np.int64)})
    check_conversion(model, tmp_path, max_rel=TOL)


@pytest.mark.parametrize("opset", [11, 13])
def test_squeeze_unsqueeze(tmp_path, opset):
    if opset >= 13:
        nodes = [
            helper.make_node("Squeeze", ["x", "ax"], ["s"]),
            helper.make_node("Unsqueeze", ["s", "ax2"], ["y"]),
        ]
        inits = {"ax": np.array([2], np.int64), "ax2": np.array([0, 4], np.int64)}
    else:
        nodes = [
            helper.make_node("Squeeze", ["x"], ["s"], axes=[2]),
            helper.make_node("Unsqueeze", ["s"], ["y"], axes=[0, 4]),
        ]
        inits = {}
    model = make_model(nodes, {"x": (2, 3, 1, 5)}, {"y": None}, inits, opset=opset)
    check_conversion(model, tmp_path, max_rel=TOL)


def test_identity_input_to_output(tmp_path):
    model = make_model([helper.make_node("Identity", ["x"], ["y"])], {"x": (2, 3)}, {"y": None})
    net = check_conversion(model, tmp_path, max_rel=TOL)
    assert [layer.type for layer in net.layers] == ["Input", "Split"]
