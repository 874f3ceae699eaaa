"""MaxPool / AveragePool (2-D and 1-D) / global pooling / ReduceMean over H,W on real Caffe and OpenCV vs
onnxruntime."""

from __future__ import annotations

import os

import numpy as np
import pytest
from onnx import helper
from onnx_testing import check_conversion, make_model

from onnx2caffe.convert import convert
from onnx2caffe.errors import ConversionError

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


# 1-D (L, kernel, stride, pads): floor and ceil differ, asymmetric pads, kernel = stride (adaptive pooling as
# torch exports it when L is a multiple of the output size), a window as long as the input
CASES_1D = [
    (16, [3], [2], [1, 1]),
    (15, [3], [2], [0, 0]),
    (16, [4], [4], [0, 0]),
    (17, [5], [3], [2, 1]),
    (9, [2], [1], [0, 1]),
    (7, [7], [7], [0, 0]),
]


@pytest.mark.parametrize("ceil", [0, 1])
@pytest.mark.parametrize("L,k,s,pads", CASES_1D)
def test_maxpool_1d(tmp_path, L, k, s, pads, ceil):
    _pool("MaxPool", (2, 3, L), tmp_path, kernel_shape=k, strides=s, pads=pads, ceil_mode=ceil)


@pytest.mark.parametrize("cip", [0, 1])
@pytest.mark.parametrize("ceil", [0, 1])
@pytest.mark.parametrize("L,k,s,pads", CASES_1D)
def test_averagepool_1d(tmp_path, L, k, s, pads, ceil, cip):
    kw = {"kernel_shape": k, "strides": s, "pads": pads, "ceil_mode": ceil, "count_include_pad": cip}
    _pool("AveragePool", (2, 3, L), tmp_path, **kw)


# (L, kernel, stride, dilation, pads): L not a multiple of the dilation, stride above / below / equal to the
# dilation, pads on one side, a window spanning the whole input
DILATED_1D = [
    (16, [3], [1], [2], [1, 1]),
    (17, [3], [2], [2], [2, 0]),
    (20, [2], [3], [4], [0, 1]),
    (9, [3], [4], [3], [0, 0]),
    (10, [4], [1], [3], [1, 2]),
]


@pytest.mark.parametrize("ceil", [0, 1])
@pytest.mark.parametrize("L,k,s,d,pads", DILATED_1D)
def test_maxpool_dilated_1d(tmp_path, L, k, s, d, pads, ceil):
    kw = {"kernel_shape": k, "strides": s, "dilations": d, "pads": pads, "ceil_mode": ceil}
    _pool("MaxPool", (2, 3, L), tmp_path, **kw)


@pytest.mark.parametrize(
    "k,s,d,pads",
    [
        ([3, 3], [1, 1], [2, 2], [2, 2, 2, 2]),
        ([2, 3], [2, 1], [1, 3], [0, 1, 1, 2]),
        ([3, 2], [2, 3], [2, 1], [1, 0, 0, 1]),
    ],
)
def test_maxpool_dilated_2d(tmp_path, k, s, d, pads):
    # separable: each axis pooled on its own, the dilated ones through the grid view
    _pool("MaxPool", (1, 2, 11, 9), tmp_path, kernel_shape=k, strides=s, dilations=d, pads=pads)


def test_maxpool_dilated_same_refused():
    # onnxruntime pads SAME with the undilated kernel (output 5 here), ONNX shape inference says 7
    node = helper.make_node(
        "MaxPool",
        ["x"],
        ["y"],
        name="pool",
        kernel_shape=[3],
        strides=[2],
        dilations=[3],
        auto_pad="SAME_UPPER",
    )
    model = make_model([node], {"x": (1, 2, 13)}, {"y": None})
    with pytest.raises(
        ConversionError, match="auto_pad='SAME_UPPER': with dilations onnxruntime and ONNX disagree"
    ):
        convert(model, None, check=False)


def test_averagepool_dilated_refused(tmp_path):
    node = helper.make_node("AveragePool", ["x"], ["y"], name="pool", kernel_shape=[3], dilations=[2])
    model = make_model([node], {"x": (1, 2, 9)}, {"y": None}, opset=19)
    with pytest.raises(ConversionError, match=r"AveragePool, opset 19\): attribute dilations=\[2\]"):
        convert(model, None, check=False)


@pytest.mark.parametrize("auto_pad", ["SAME_UPPER", "SAME_LOWER", "VALID"])
def test_auto_pad_1d(tmp_path, auto_pad):
    _pool("MaxPool", (1, 2, 10), tmp_path, kernel_shape=[4], strides=[3], auto_pad=auto_pad)
    _pool("AveragePool", (1, 2, 10), tmp_path, kernel_shape=[3], strides=[2], auto_pad=auto_pad)


def test_pool_1d_is_the_2d_layer(tmp_path):
    net = _pool("MaxPool", (1, 4, 16), tmp_path, kernel_shape=[3], strides=[2], pads=[1, 1], ceil_mode=1)
    assert [layer.type for layer in net.layers] == ["Input", "Reshape", "Pooling", "Reshape"]
    p = net.layer("pool").proto.pooling_param
    assert (p.kernel_h, p.kernel_w, p.stride_h, p.stride_w, p.pad_h, p.pad_w) == (3, 1, 2, 1, 1, 0)


@pytest.mark.parametrize("shape", [(2, 5, 7, 3), (2, 5, 9), (1, 3, 1), (1, 2, 3, 4, 5)])
@pytest.mark.parametrize("op", ["GlobalAveragePool", "GlobalMaxPool"])
def test_global(tmp_path, op, shape):
    _pool(op, shape, tmp_path)


# the other forms of the same ops (about 25 s): set ONNX2CAFFE_FULL_EXPORTS=1
FULL_EXPORTS = pytest.mark.skipif(
    os.environ.get("ONNX2CAFFE_FULL_EXPORTS") != "1", reason="set ONNX2CAFFE_FULL_EXPORTS=1"
)
TORCH_1D = [
    ("MaxPool1d(3, 2, 1, ceil_mode=True)", "dynamo"),
    ("MaxPool1d(3, 1, 1, dilation=2)", "torchscript"),
    ("AdaptiveAvgPool1d(4)", "dynamo"),
    ("AdaptiveMaxPool1d(1)", "torchscript"),
]
TORCH_1D_SLOW = [
    ("MaxPool1d(3, 2, 1)", "torchscript"),
    ("AvgPool1d(3, 2, 1, count_include_pad=False)", "torchscript"),
    ("AvgPool1d(4, 3, 1, ceil_mode=True)", "dynamo"),
    ("AdaptiveAvgPool1d(4)", "torchscript"),
    ("AdaptiveAvgPool1d(1)", "torchscript"),
    ("AdaptiveMaxPool1d(4)", "dynamo"),
]


@pytest.mark.parametrize(
    ("module", "exporter"),
    TORCH_1D + [pytest.param(*case, marks=[pytest.mark.slow, FULL_EXPORTS]) for case in TORCH_1D_SLOW],
)
def test_torch_1d_pooling(tmp_path, module, exporter):
    # as torch exports nn.*Pool1d: MaxPool / AveragePool on (N, C, L), or (dynamo, adaptive) an Unsqueeze to
    # (N, C, 1, L), a 2-D pool and a Squeeze. (Dynamo writes AdaptiveAvgPool1d(1) as ReduceMean, not a pooling.)
    torch = pytest.importorskip("torch")
    from onnx2caffe.exporters.torch_export import torch_to_onnx

    net = eval(f"torch.nn.{module}", {"torch": torch})  # noqa: S307 - a literal from the list above
    exported = torch_to_onnx(torch.nn.Sequential(net), [(1, 4, 16)], exporter=exporter)
    check_conversion(exported.model, tmp_path, max_rel=TOL)


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
