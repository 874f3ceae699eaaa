"""MaxPool / AveragePool / global pooling / ReduceMean over H,W on real Caffe and OpenCV vs onnxruntime."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import helper
from onnx_testing import check_conversion, make_model

# float32 noise: pooling sums at most 5x5 values; the divisor fix adds one rounding (~6e-8 relative)
TOL = 1e-5


def _pool(op, shape, tmp_path, opset=13, **attrs):
    node = helper.make_node(op, ["x"], ["y"], name="pool", **attrs)
    model = make_model([node], {"x": shape}, {"y": None}, opset=opset)
    return check_conversion(model, tmp_path, max_rel=TOL)


# (H, W, kernel, stride, pads) where floor and ceil differ, odd sizes, asymmetric pads
CASES = [
    (112, 112, [3, 3], [2, 2], [1, 1, 1, 1]),  # ResNet stem: floor 56 vs Caffe 57
    (7, 9, [3, 3], [2, 2], [0, 0, 0, 0]),
    (8, 8, [2, 2], [2, 2], [0, 0, 0, 0]),
    (9, 10, [3, 2], [2, 3], [1, 0, 1, 1]),
    (11, 7, [3, 3], [2, 2], [0, 1, 1, 0]),  # asymmetric (SAME-like)
    (6, 6, [3, 3], [1, 1], [1, 1, 1, 1]),
    (13, 13, [5, 5], [3, 3], [2, 2, 2, 2]),
]


@pytest.mark.parametrize("ceil", [0, 1])
@pytest.mark.parametrize("H,W,k,s,pads", CASES)
def test_maxpool(tmp_path, H, W, k, s, pads, ceil):
    _pool("MaxPool", (1, 3, H, W), tmp_path, kernel_shape=k, strides=s, pads=pads, ceil_mode=ceil)


@pytest.mark.parametrize("cip", [0, 1])
@pytest.mark.parametrize("ceil", [0, 1])
@pytest.mark.parametrize("H,W,k,s,pads", CASES)
def test_averagepool(tmp_path, H, W, k, s, pads, ceil, cip):
    _pool(
        "AveragePool",
        (2, 3, H, W),
        tmp_path,
        kernel_shape=k,
        strides=s,
        pads=pads,
        ceil_mode=ceil,
        count_include_pad=cip,
    )


@pytest.mark.parametrize("auto_pad", ["SAME_UPPER", "SAME_LOWER", "VALID"])
def test_auto_pad(tmp_path, auto_pad):
    _pool("MaxPool", (1, 2, 9, 8), tmp_path, kernel_shape=[3, 2], strides=[2, 2], auto_pad=auto_pad)
    _pool("AveragePool", (1, 2, 9, 8), tmp_path, kernel_shape=[3, 3], strides=[2, 2], auto_pad=auto_pad)


def test_floor_mode_cuts_with_slice(tmp_path):
    net = _pool("MaxPool", (1, 3, 112, 112), tmp_path, kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
    types = [layer.type for layer in net.layers]
    assert types.count("Slice") == 2 and "Silence" in types


def test_ceil_mode_is_one_layer(tmp_path):
    net = _pool(
        "MaxPool",
        (1, 3, 112, 112),
        tmp_path,
        kernel_shape=[3, 3],
        strides=[2, 2],
        pads=[1, 1, 1, 1],
        ceil_mode=1,
    )
    assert [layer.type for layer in net.layers] == ["Input", "Pooling"]


@pytest.mark.parametrize("op", ["GlobalAveragePool", "GlobalMaxPool"])
def test_global(tmp_path, op):
    _pool(op, (2, 5, 7, 3), tmp_path)


@pytest.mark.parametrize("keepdims", [0, 1])
@pytest.mark.parametrize("opset", [13, 18])
@pytest.mark.parametrize("op", ["ReduceMean", "ReduceMax"])
def test_reduce_hw(tmp_path, op, keepdims, opset):
    inits = {}
    if opset >= 18:
        node = helper.make_node(op, ["x", "axes"], ["y"], keepdims=keepdims)
        inits["axes"] = np.array([-1, 2], np.int64)
    else:
        node = helper.make_node(op, ["x"], ["y"], axes=[2, 3], keepdims=keepdims)
    model = make_model([node], {"x": (2, 4, 5, 6)}, {"y": None}, inits, opset=opset)
    check_conversion(model, tmp_path, max_rel=TOL)
