"""HardSigmoid and HardSwish mappers -> Power + exact clamp (+ Eltwise PROD), against onnxruntime on Caffe and
OpenCV."""

from __future__ import annotations

import pytest
from onnx import helper
from onnx_testing import check_conversion, make_model

# alpha * x + beta is one float32 multiply and one add in Caffe's Power (no FMA); onnxruntime may fuse them
# (one rounding instead of two): at most 1 ulp of a value <= 1, i.e. 1.2e-7; the clamp is exact and
# HardSwish's final product adds one more rounding. 1e-6 relative to the largest output covers both.
MAX_REL = 1e-6
COS = 0.999999


@pytest.mark.parametrize(("alpha", "beta"), [(0.2, 0.5), (1 / 6, 0.5), (0.5, 0.0), (-0.3, 0.1), (2.0, 1.5)])
@pytest.mark.parametrize("opset", [6, 13])
def test_hard_sigmoid(tmp_path, alpha, beta, opset):
    node = helper.make_node("HardSigmoid", ["x"], ["y"], alpha=alpha, beta=beta)
    model = make_model([node], {"x": (2, 3, 6, 5)}, {"y": None}, opset=opset)
    net = check_conversion(model, tmp_path, max_rel=MAX_REL, cos=COS)
    assert {layer.type for layer in net.layers} <= {"Input", "Power", "ReLU", "Eltwise"}


def test_hard_sigmoid_defaults(tmp_path):
    model = make_model([helper.make_node("HardSigmoid", ["x"], ["y"])], {"x": (1, 8)}, {"y": None}, opset=13)
    check_conversion(model, tmp_path, max_rel=MAX_REL, cos=COS)


@pytest.mark.parametrize("shape", [(1, 16, 7, 7), (2, 10)])
def test_hard_swish(tmp_path, shape):
    model = make_model([helper.make_node("HardSwish", ["x"], ["y"])], {"x": shape}, {"y": None}, opset=14)
    net = check_conversion(model, tmp_path, max_rel=MAX_REL, cos=COS)
    assert [layer.type for layer in net.layers][-1] == "Eltwise"


def test_hard_swish_as_exported_before_opset_14(tmp_path):
    # torch exports HardSwish at opset < 14 as HardSigmoid(alpha=1/6) + Mul; Mul is the eltwise mapper's
    nodes = [
        helper.make_node("HardSigmoid", ["x"], ["g"], alpha=1 / 6, beta=0.5),
        helper.make_node("Mul", ["x", "g"], ["y"]),
    ]
    model = make_model(nodes, {"x": (1, 8, 5, 5)}, {"y": None}, opset=13)
    check_conversion(model, tmp_path, max_rel=MAX_REL, cos=COS)
