"""ConvTranspose mapper -> Deconvolution (+ zero taps / Slice crop for asymmetric pads and output_padding), against
onnxruntime on Caffe and OpenCV."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import helper
from onnx_testing import check_conversion, make_model

from onnx2caffe import convert
from onnx2caffe.errors import ConversionError

# A transposed convolution output is a sum of at most C_in/group * kH * kW products (<= 48 here) accumulated
# in a different order by onnxruntime, Caffe (col2im) and OpenCV: a few float32 ulp of the largest output.
# 2e-6 relative to the largest |output| is that noise; a wrong tap or shift gives errors of order 1.
MAX_REL = 2e-6
COS = 0.999999

CASES = [
    # c_in, c_out/group, group, kernel, strides, pads, dilations, output_padding
    (4, 3, 1, (3, 3), (2, 2), (1, 1, 1, 1), (1, 1), (0, 0)),
    (4, 3, 1, (3, 3), (2, 2), (1, 1, 1, 1), (1, 1), (1, 1)),  # the usual x2 decoder: k3 s2 p1 op1
    (4, 2, 1, (4, 4), (2, 2), (1, 1, 1, 1), (1, 1), (0, 0)),  # k4 s2 p1 (DCGAN)
    (4, 2, 2, (3, 3), (2, 2), (0, 0, 0, 0), (1, 1), (0, 0)),  # grouped
    (4, 1, 4, (3, 3), (1, 1), (1, 1, 1, 1), (1, 1), (0, 0)),  # depthwise
    (3, 2, 1, (3, 2), (2, 3), (0, 1, 2, 0), (1, 1), (0, 0)),  # asymmetric pads, non-square kernel/stride
    (3, 2, 1, (3, 3), (3, 2), (0, 0, 0, 0), (1, 1), (2, 1)),  # output_padding beyond the full output
    (3, 2, 1, (3, 3), (2, 2), (1, 0, 1, 0), (2, 3), (1, 0)),  # dilation (written out as zero taps)
    (2, 2, 1, (1, 1), (1, 1), (0, 0, 0, 0), (1, 1), (0, 0)),  # 1x1
]


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize(("cin", "cog", "group", "k", "s", "p", "d", "op"), CASES)
def test_conv_transpose(tmp_path, cin, cog, group, k, s, p, d, op, bias):
    rng = np.random.default_rng(0)
    inits = {"w": rng.standard_normal((cin, cog, *k)).astype(np.float32)}
    inputs = ["x", "w"]
    if bias:
        inits["b"] = rng.standard_normal(cog * group).astype(np.float32)
        inputs.append("b")
    node = helper.make_node(
        "ConvTranspose",
        inputs,
        ["y"],
        kernel_shape=list(k),
        strides=list(s),
        pads=list(p),
        dilations=list(d),
        output_padding=list(op),
        group=group,
    )
    model = make_model([node], {"x": (2, cin, 5, 6)}, {"y": None}, initializers=inits, opset=13)
    net = check_conversion(model, tmp_path, max_rel=MAX_REL, cos=COS)
    assert net.outputs == ["y"]
    deconv = [layer for layer in net.layers if layer.type == "Deconvolution"]
    assert len(deconv) == 1 and deconv[0].proto.convolution_param.num_output == cog * group


@pytest.mark.parametrize("auto_pad", ["NOTSET", "SAME_UPPER", "SAME_LOWER"])
@pytest.mark.parametrize("out_hw", [(10, 12), (11, 13), (9, 11), (12, 14)])
def test_output_shape(tmp_path, out_hw, auto_pad):
    # the full output is 11x13: smaller shapes are cropped (odd unit placed per auto_pad), larger ones extended
    rng = np.random.default_rng(1)
    inits = {"w": rng.standard_normal((3, 2, 3, 3)).astype(np.float32)}
    node = helper.make_node(
        "ConvTranspose", ["x", "w"], ["y"], strides=[2, 2], output_shape=list(out_hw), auto_pad=auto_pad
    )
    model = make_model([node], {"x": (1, 3, 5, 6)}, {"y": None}, initializers=inits, opset=13)
    check_conversion(model, tmp_path, max_rel=MAX_REL, cos=COS)


@pytest.mark.parametrize("auto_pad", ["VALID", "SAME_UPPER", "SAME_LOWER"])
@pytest.mark.parametrize("k", [2, 3])
def test_auto_pad(tmp_path, auto_pad, k):
    rng = np.random.default_rng(2)
    inits = {"w": rng.standard_normal((3, 2, k, k)).astype(np.float32)}
    node = helper.make_node("ConvTranspose", ["x", "w"], ["y"], strides=[2, 2], auto_pad=auto_pad)
    model = make_model([node], {"x": (1, 3, 4, 4)}, {"y": None}, initializers=inits, opset=13)
    check_conversion(model, tmp_path, max_rel=MAX_REL, cos=COS)


CASES_1D = [
    # c_in, c_out/group, group, kernel, stride, pads, dilation, output_padding
    (4, 3, 1, 3, 2, (1, 1), 1, 1),  # the usual x2 upsampler: k3 s2 p1 op1
    (4, 2, 1, 4, 2, (1, 1), 1, 0),
    (4, 2, 2, 3, 3, (0, 2), 1, 0),  # grouped, asymmetric pads
    (4, 1, 4, 5, 1, (2, 2), 1, 0),  # depthwise
    (3, 2, 1, 3, 3, (0, 0), 2, 2),  # dilation, output_padding beyond the full output
]


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize(("cin", "cog", "group", "k", "s", "p", "d", "op"), CASES_1D)
def test_conv_transpose_1d(tmp_path, cin, cog, group, k, s, p, d, op, bias):
    rng = np.random.default_rng(3)
    inits = {"w": rng.standard_normal((cin, cog, k)).astype(np.float32)}
    inputs = ["x", "w"]
    if bias:
        inits["b"] = rng.standard_normal(cog * group).astype(np.float32)
        inputs.append("b")
    node = helper.make_node(
        "ConvTranspose",
        inputs,
        ["y"],
        name="deconv",
        kernel_shape=[k],
        strides=[s],
        pads=list(p),
        dilations=[d],
        output_padding=[op],
        group=group,
    )
    model = make_model([node], {"x": (2, cin, 7)}, {"y": None}, initializers=inits, opset=13)
    net = check_conversion(model, tmp_path, max_rel=MAX_REL, cos=COS)
    deconv = net.layer("deconv").proto.convolution_param
    assert deconv.kernel_h == 1 and deconv.stride_h in (0, 1)  # the unit axis: kernel 1, stride 1


@pytest.mark.parametrize("auto_pad", ["NOTSET", "SAME_UPPER", "SAME_LOWER"])
@pytest.mark.parametrize("out_len", [9, 10, 11, 12])
def test_output_shape_1d(tmp_path, out_len, auto_pad):
    rng = np.random.default_rng(4)
    inits = {"w": rng.standard_normal((3, 2, 3)).astype(np.float32)}
    node = helper.make_node(
        "ConvTranspose", ["x", "w"], ["y"], strides=[2], output_shape=[out_len], auto_pad=auto_pad
    )
    model = make_model([node], {"x": (1, 3, 5)}, {"y": None}, initializers=inits, opset=13)
    check_conversion(model, tmp_path, max_rel=MAX_REL, cos=COS)


@pytest.mark.parametrize("exporter", ["torchscript", "dynamo"])
def test_torch_conv_transpose_1d(tmp_path, exporter):
    torch = pytest.importorskip("torch")
    from onnx2caffe.exporters.torch_export import torch_to_onnx

    torch.manual_seed(0)
    net = torch.nn.ConvTranspose1d(4, 3, 3, stride=2, padding=1, output_padding=1, groups=1)
    exported = torch_to_onnx(net, [(1, 4, 9)], exporter=exporter)
    check_conversion(exported.model, tmp_path, max_rel=MAX_REL, cos=COS)


def test_3d_refused():
    inits = {"w": np.ones((3, 2, 3, 3, 3), np.float32)}
    node = helper.make_node("ConvTranspose", ["x", "w"], ["y"], strides=[2, 2, 2])
    model = make_model([node], {"x": (1, 3, 4, 4, 4)}, {"y": None}, initializers=inits, opset=13)
    with pytest.raises(ConversionError, match="1-D and 2-D"):
        convert(model, None, check=False)
