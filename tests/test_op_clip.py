"""Clip mapper (ReLU6 and general bounds) -> ReLU / Power / Eltwise MAX, against onnxruntime on Caffe and OpenCV."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import helper
from onnx_testing import check_conversion, make_model

# max(x, lo) via ReLU or Eltwise MAX with a Power(scale=0, shift=lo) constant, and min(x, hi) = -max(-x, -hi)
# with exact negations: every step is exact in float32, so the outputs must match bit for bit.
EXACT = dict(max_rel=0.0, cos=0.999999)

BOUNDS = [
    (0.0, 6.0),
    (-1.0, 1.0),
    (0.25, 0.75),
    (None, 0.5),
    (-0.5, None),
    (0.0, None),
    (None, None),
    (1.0, -1.0),
]


def _types(net):
    return [layer.type for layer in net.layers if layer.type != "Input"]


@pytest.mark.parametrize(("lo", "hi"), BOUNDS)
def test_clip_inputs(tmp_path, lo, hi):
    inits, inputs = {}, ["x", "", ""]
    if lo is not None:
        inits["lo"] = np.array(lo, np.float32)
        inputs[1] = "lo"
    if hi is not None:
        inits["hi"] = np.array(hi, np.float32)
        inputs[2] = "hi"
    while inputs[-1] == "":
        inputs.pop()
    node = helper.make_node("Clip", inputs, ["y"])
    model = make_model([node], {"x": (2, 3, 5, 4)}, {"y": None}, initializers=inits, opset=13)
    net = check_conversion(model, tmp_path, **EXACT)
    types = _types(net)
    assert "Clip" not in types and "Threshold" not in types
    if (lo, hi) == (0.0, 6.0):  # ReLU6: ReLU, -x, const -6, MAX, -x
        assert types == ["ReLU", "Power", "Power", "Eltwise", "Power"]


@pytest.mark.parametrize(("lo", "hi"), BOUNDS[:4])
def test_clip_attributes(tmp_path, lo, hi):
    attrs = {k: v for k, v in (("min", lo), ("max", hi)) if v is not None}
    node = helper.make_node("Clip", ["x"], ["y"], **attrs)
    model = make_model([node], {"x": (1, 4, 3, 3)}, {"y": None}, opset=6)
    check_conversion(model, tmp_path, **EXACT)


def test_relu6_after_conv(tmp_path):
    # the usual MobileNetV2 pattern: Conv -> Clip(0, 6); large activations exercise the upper bound
    rng = np.random.default_rng(1)
    w = (rng.standard_normal((8, 3, 3, 3)) * 3).astype(np.float32)
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Clip", ["c", "lo", "hi"], ["y"]),
    ]
    inits = {"w": w, "lo": np.array(0, np.float32), "hi": np.array(6, np.float32)}
    model = make_model(nodes, {"x": (1, 3, 8, 8)}, {"y": None}, initializers=inits, opset=13)
    # the Conv's own summation order differs between runtimes: 1e-5 relative, float32 noise of a 27-term dot
    check_conversion(model, tmp_path, max_rel=1e-5, cos=0.99999)
