"""Softmax mapper: opset < 13 (2-D coercion at `axis`) and opset 13+ (one axis), against onnxruntime on real Caffe
and OpenCV."""

from __future__ import annotations

import pytest
from onnx import helper
from onnx_testing import check_conversion, make_model

# Softmax is computed in float32 by every runtime (max subtraction, exp, sum, divide); only the summation order
# and exp's last-bit rounding differ, so a few ulp of the largest probability: 1e-5 relative is float32 noise.
MAX_REL = 1e-5
COS = 0.999999

SHAPES_AXES = [
    ((2, 10), 1),
    ((2, 10), -1),
    ((2, 10), 0),
    ((1, 3, 4, 5), 1),
    ((1, 3, 4, 5), 2),
    ((2, 3, 4, 5), -1),
    ((2, 3, 4, 5), 0),
    ((3, 1, 6), 1),
    ((1, 2, 100, 100), -1),  # attention scores
    ((2, 3, 4, 5, 6), 0),  # 5-D, every position of the axis
    ((2, 3, 4, 5, 6), 2),
    ((2, 3, 4, 5, 6), -1),
    ((1, 4, 16, 21), 1),  # YOLO's DFL: softmax over the 16 bins
    ((2, 2, 3, 2, 3, 4), 3),  # 6-D
    ((2, 2, 3, 2, 3, 4), 5),
    ((7,), 0),  # 1-D
]


@pytest.mark.parametrize("opset", [11, 13])
@pytest.mark.parametrize(("shape", "axis"), SHAPES_AXES)
def test_softmax(tmp_path, opset, shape, axis):
    node = helper.make_node("Softmax", ["x"], ["y"], axis=axis)
    model = make_model([node], {"x": shape}, {"y": None}, opset=opset)
    net = check_conversion(model, tmp_path, max_rel=MAX_REL, cos=COS)
    types = [layer.type for layer in net.layers]
    rank = len(shape)
    a = axis % rank
    if opset >= 13 or all(d == 1 for d in shape[a + 1 :]):
        assert types == ["Input", "Softmax"]
    else:
        assert types == ["Input", "Reshape", "Softmax", "Reshape"]


@pytest.mark.parametrize("opset", [11, 13])
def test_softmax_default_axis(tmp_path, opset):
    # opset 11 default axis 1 (flattened block [1:]), opset 13 default axis -1
    model = make_model(
        [helper.make_node("Softmax", ["x"], ["y"])], {"x": (2, 3, 4)}, {"y": None}, opset=opset
    )
    check_conversion(model, tmp_path, max_rel=MAX_REL, cos=COS)


# LogSoftmax: x - max is exact; exp, the K-term sum (different order), log and the final subtraction each add
# float32 rounding, i.e. a few ulp of the largest |output| (which is >= log(K)). 1e-6 relative covers it
# (measured 8.7e-8).
LOG_MAX_REL = 1e-6


@pytest.mark.parametrize("opset", [11, 13])
@pytest.mark.parametrize(("shape", "axis"), SHAPES_AXES)
def test_log_softmax(tmp_path, opset, shape, axis):
    node = helper.make_node("LogSoftmax", ["x"], ["y"], axis=axis)
    model = make_model([node], {"x": shape}, {"y": None}, opset=opset)
    net = check_conversion(model, tmp_path, max_rel=LOG_MAX_REL, cos=COS)
    assert "Softmax" not in [layer.type for layer in net.layers]


def test_log_softmax_far_tail(tmp_path):
    # logits x * 200 (spread of hundreds): softmax underflows to 0 for most classes (Softmax + Log would give
    # -inf there); the composition stays finite and matches
    nodes = [
        helper.make_node("Constant", [], ["k"], value=helper.make_tensor("k", 1, [], [200.0])),
        helper.make_node("Mul", ["x", "k"], ["z"]),
        helper.make_node("LogSoftmax", ["z"], ["y"], axis=1),
    ]
    model = make_model(nodes, {"x": (2, 50)}, {"y": None}, opset=13)
    check_conversion(model, tmp_path, max_rel=LOG_MAX_REL, cos=COS)
