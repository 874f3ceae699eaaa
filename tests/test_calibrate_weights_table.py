"""Weight scales and the ncnn table format of `onnx2caffe calibrate`."""

from __future__ import annotations

import numpy as np
import pytest

from onnx2caffe.caffe_net import Layer
from onnx2caffe.calibrate.table import table_text, write_table
from onnx2caffe.calibrate.weights import ConvGeometry, weight_scales


def conv(num_output, group=1, k=3, stride=1, dilation=1):
    p = {"num_output": num_output, "kernel_size": [k], "stride": [stride], "group": group}
    if dilation != 1:
        p["dilation"] = [dilation]
    from onnx2caffe.calibrate.weights import geometry

    return geometry(Layer("c", "Convolution", ["x"], ["y"], convolution_param=p).proto)


def test_group1_conv_per_channel_and_six_bit_rule():
    w = np.zeros((3, 2, 3, 3), np.float32)
    w[0, 0, 0, 0], w[1, 1, 2, 2], w[2, 0, 1, 1] = 0.5, -0.25, 2.0
    # 3x3, stride 1, dilation 1, group 1: 31 / max|w| for the ncnn family
    assert weight_scales(w, conv(3), "ncnn") == [62.0, 124.0, 15.5]
    # stride 2 or dilation 2: 127 / max|w|
    assert weight_scales(w, conv(3, stride=2), "ncnn") == [254.0, 508.0, 63.5]
    assert weight_scales(w, conv(3, dilation=2), "ncnn") == [254.0, 508.0, 63.5]
    # --group 0: one scale for the layer
    assert weight_scales(w, conv(3), "ncnn", per_channel=False) == [15.5]
    # float32 division as ncnn2table
    w2 = np.full((1, 1, 1, 1), 0.3, np.float32)
    assert weight_scales(w2, conv(1, k=1), "ncnn") == [float(np.float32(127) / np.float32(0.3))]


def test_depthwise_and_grouped_conv_one_scale_per_group():
    rng = np.random.default_rng(0)
    w = rng.standard_normal((8, 2, 3, 3)).astype(np.float32)  # group 4: 2 outputs x 2 inputs each
    got = weight_scales(w, conv(8, group=4), "ncnn")
    expect = [float(np.float32(127) / np.abs(w[2 * g : 2 * g + 2]).max()) for g in range(4)]
    assert got == expect  # per group, no 6-bit rule (ConvolutionDepthWise in ncnn)
    dw = rng.standard_normal((6, 1, 3, 3)).astype(np.float32)
    assert len(weight_scales(dw, conv(6, group=6), "ncnn")) == 6


def test_zero_channel_is_finite():
    w = np.zeros((2, 1, 1, 1), np.float32)
    w[1] = 0.5
    assert weight_scales(w, conv(2, k=1), "ncnn") == [1.0, 254.0]
    assert weight_scales(w, conv(2, k=1), "aciq")[0] == 1.0
    w[1] = 5e-5  # below the legacy tool's 1e-4 limit
    assert weight_scales(w, conv(2, k=1), "legacy") == [0.0, 0.0]


def test_legacy_rules():
    w = np.full((4, 1, 3, 3), 0.5, np.float32)
    # legacy: 31 for kernel 3, stride 1 and group != num_output (a grouped conv qualifies)
    assert weight_scales(w, conv(4, group=2), "legacy") == [62.0, 62.0]
    # depthwise (group == num_output): 127
    assert weight_scales(w, conv(4, group=4), "legacy") == [254.0] * 4
    # float64 division, as the tool's numpy arithmetic
    w3 = np.full((1, 1, 1, 1), 0.3, np.float32)
    assert weight_scales(w3, conv(1, k=1), "legacy") == [127.0 / float(np.float32(0.3))]


def test_aciq_weights_clip_the_range():
    from onnx2caffe.calibrate.methods import aciq_clip

    w = np.zeros((1, 4, 1, 1), np.float32)
    w[0, 0, 0, 0] = 1.0
    got = weight_scales(w, conv(1, k=1), "aciq")
    assert got == [float(np.float32(127) / np.float32(aciq_clip(1.0, 4)))]


def test_inner_product_per_output_and_transpose():
    w = np.array([[1.0, -4.0, 2.0], [0.5, 0.25, -0.5]], np.float32)  # (N=2, K=3)
    g = ConvGeometry("InnerProduct", 2)
    assert weight_scales(w, g, "ncnn") == [127 / 4.0, 254.0]
    gt = ConvGeometry("InnerProduct", 2, transpose=True)
    assert weight_scales(np.ascontiguousarray(w.T), gt, "ncnn") == [127 / 4.0, 254.0]


def test_table_ncnn_format_byte_exact(tmp_path):
    text = table_text([("conv1", [1.5, 127.0]), ("fc", [0.1234567])], [("conv1", 42.0), ("fc", 1e-7)], "ncnn")
    assert (
        text == "conv1_param_0 1.500000 127.000000 \nfc_param_0 0.123457 \nconv1 42.000000 \nfc 0.000000 \n"
    )
    path = tmp_path / "t.table"
    write_table(path, [("a", [2.0])], [("a", 3.0)], "ncnn")
    assert path.read_bytes() == b"a_param_0 2.000000 \na 3.000000 \n"
    assert [p.name for p in tmp_path.iterdir()] == ["t.table"]  # no temp file left behind


def test_table_legacy_format_byte_exact():
    text = table_text([("conv1", [0.0, 127.0 / 0.3])], [("conv1", 12.5)], "legacy")
    assert text == "conv1_param_0 0.0 423.33333333333337\nconv1 12.5\n"


def test_table_rejects_whitespace_names():
    with pytest.raises(ValueError):
        table_text([("a b", [1.0])], [], "ncnn")
