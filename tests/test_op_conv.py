"""Conv on real Caffe and OpenCV vs onnxruntime: groups, depthwise, dilation, strides, asymmetric pads, Conv1d."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import helper
from onnx_testing import check_conversion, make_model

# float32 noise of sums of up to C*k*k ~ 150 products in a different order: ~1e-6 relative
TOL = 1e-5


def _conv(tmp_path, x_shape, w_shape, bias=True, seed=0, **attrs):
    rng = np.random.default_rng(seed)
    inits = {"w": rng.standard_normal(w_shape).astype(np.float32)}
    inputs = ["x", "w"]
    if bias:
        inits["b"] = rng.standard_normal(w_shape[0]).astype(np.float32)
        inputs.append("b")
    node = helper.make_node("Conv", inputs, ["y"], name="conv", **attrs)
    model = make_model([node], {"x": x_shape}, {"y": None}, inits)
    return check_conversion(model, tmp_path, max_rel=TOL)


@pytest.mark.parametrize(
    "x_shape,w_shape,attrs",
    [
        ((1, 3, 9, 11), (4, 3, 3, 3), {"pads": [1, 1, 1, 1]}),
        ((2, 4, 10, 7), (6, 2, 3, 3), {"group": 2, "strides": [2, 2], "pads": [1, 1, 1, 1]}),
        ((1, 6, 9, 9), (6, 1, 3, 3), {"group": 6, "pads": [1, 1, 1, 1]}),  # depthwise
        ((1, 3, 13, 12), (5, 3, 3, 3), {"dilations": [2, 3], "pads": [2, 1, 2, 1]}),
        ((1, 3, 11, 13), (4, 3, 1, 5), {"strides": [1, 3], "pads": [0, 2, 0, 2]}),
        ((1, 3, 9, 9), (4, 3, 3, 3), {"strides": [2, 2], "pads": [0, 0, 1, 1]}),  # TF SAME, stride 2
        ((1, 3, 8, 10), (4, 3, 3, 2), {"pads": [2, 0, 0, 1]}),  # asymmetric both axes
        ((1, 3, 9, 9), (4, 3, 3, 3), {"strides": [2, 2], "auto_pad": "SAME_UPPER"}),
        ((1, 3, 9, 9), (4, 3, 4, 4), {"strides": [2, 2], "auto_pad": "SAME_LOWER"}),
        ((1, 3, 9, 9), (4, 3, 3, 3), {"auto_pad": "VALID", "kernel_shape": [3, 3]}),
    ],
)
def test_conv2d(tmp_path, x_shape, w_shape, attrs):
    _conv(tmp_path, x_shape, w_shape, **attrs)


def test_no_bias(tmp_path):
    net = _conv(tmp_path, (1, 2, 5, 5), (3, 2, 3, 3), bias=False)
    assert net.layer("conv").proto.convolution_param.bias_term is False


def test_asymmetric_pad_structure(tmp_path):
    net = _conv(tmp_path, (1, 3, 9, 9), (4, 3, 3, 3), strides=[2, 2], pads=[0, 0, 1, 1])
    types = [layer.type for layer in net.layers]
    assert types == ["Input", "Convolution", "Slice", "Slice", "Silence", "Convolution"]


@pytest.mark.parametrize(
    "attrs", [{"pads": [1, 1]}, {"pads": [0, 2], "strides": [2]}, {"dilations": [2], "group": 2}]
)
def test_conv1d(tmp_path, attrs):
    w_shape = (4, 2 if attrs.get("group") else 4, 3)
    _conv(tmp_path, (2, 4, 17), w_shape, **attrs)


def test_non_constant_weight_rejected(tmp_path):
    from onnx2caffe.convert import convert
    from onnx2caffe.errors import ConversionError

    node = helper.make_node("Conv", ["x", "w"], ["y"], name="c")
    model = make_model([node], {"x": (1, 2, 5, 5), "w": (3, 2, 3, 3)}, {"y": None})
    with pytest.raises(ConversionError, match="node 'c' \\(Conv, opset 13\\): the weight is not a constant"):
        convert(model, str(tmp_path / "m"), check=False)
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize(
    "x_shape,w_shape,attrs,kernel",
    [
        ((1, 8, 1, 1), (8, 1, 3, 3), {"group": 8, "pads": [1, 1, 1, 1]}, (1, 1)),  # SSDlite's last blocks
        ((1, 8, 1, 1), (8, 1, 3, 3), {"group": 8, "pads": [1, 1, 1, 1], "strides": [2, 2]}, (1, 1)),
        ((1, 8, 1, 6), (8, 1, 3, 3), {"group": 8, "pads": [1, 1, 1, 1]}, (1, 3)),
        ((1, 8, 5, 1), (8, 1, 3, 3), {"group": 8, "pads": [1, 1, 1, 1]}, (3, 1)),
        ((1, 8, 1, 1), (8, 1, 3, 3), {"group": 8, "pads": [2, 2, 2, 2], "dilations": [2, 2]}, (1, 1)),
        ((1, 4, 1, 1), (6, 4, 3, 3), {"pads": [1, 1, 1, 1]}, (1, 1)),  # not depthwise: same trim
        ((1, 8, 1, 1), (8, 1, 3, 3), {"group": 8, "pads": [2, 2, 2, 2]}, (3, 3)),  # output 3x3: kept
    ],
)
def test_conv_on_unit_axes_keeps_only_the_tap_that_reads_the_input(tmp_path, x_shape, w_shape, attrs, kernel):
    """Taps that only ever read padding add w * 0 = 0: they are dropped, which also keeps OpenCV off its
    depthwise 3x3 kernel that is wrong on 1-wide maps (see test_caffe_layers KNOWN)."""
    net = _conv(tmp_path, x_shape, w_shape, **attrs)
    conv = next(layer for layer in net.layers if layer.type == "Convolution")
    assert tuple(conv.blobs[0].shape[2:]) == kernel
