"""Relu, LeakyRelu, Sigmoid, Tanh, PRelu on real Caffe and OpenCV vs onnxruntime."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import helper
from onnx_testing import check_conversion, make_model

from onnx2caffe.convert import convert
from onnx2caffe.errors import ConversionError

# element-wise; exp/tanh implementations differ by a few ulp between libraries
TOL = 1e-6


@pytest.mark.parametrize(
    "op,attrs",
    [("Relu", {}), ("LeakyRelu", {}), ("LeakyRelu", {"alpha": 0.2}), ("Sigmoid", {}), ("Tanh", {})],
)
@pytest.mark.parametrize("shape", [(2, 3, 5, 7), (4, 9)])
def test_unary(tmp_path, op, attrs, shape):
    model = make_model([helper.make_node(op, ["x"], ["y"], **attrs)], {"x": shape}, {"y": None})
    check_conversion(model, tmp_path, max_rel=TOL)


@pytest.mark.parametrize(
    "shape,slope_shape",
    [
        ((2, 3, 5, 5), (3, 1, 1)),
        ((2, 3, 5, 5), (1,)),
        ((2, 3, 5, 5), ()),
        ((4, 6), (6,)),
        ((2, 4, 7), (4, 1)),
    ],
)
def test_prelu(tmp_path, shape, slope_shape):
    slope = np.random.default_rng(0).uniform(0.05, 0.5, slope_shape).astype(np.float32)
    model = make_model(
        [helper.make_node("PRelu", ["x", "s"], ["y"])], {"x": shape}, {"y": None}, {"s": slope}
    )
    net = check_conversion(model, tmp_path, max_rel=TOL)
    assert net.layers[-1].type == "PReLU"


def test_prelu_spatial_slope_rejected(tmp_path):
    slope = np.random.default_rng(0).uniform(0.05, 0.5, (1, 5, 5)).astype(np.float32)
    model = make_model(
        [helper.make_node("PRelu", ["x", "s"], ["y"])], {"x": (1, 3, 5, 5)}, {"y": None}, {"s": slope}
    )
    with pytest.raises(ConversionError, match="varies along other axes"):
        convert(model, str(tmp_path / "m"), check=False)
