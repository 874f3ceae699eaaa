"""InstanceNormalization -> MVN + explicit variance + Power + Scale composition, against onnxruntime on Caffe and
OpenCV (any batch size, ranks 3-5)."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import helper
from onnx_testing import check_conversion, make_model

# Mean and variance are sums over H*W (<= 63 terms here) in different orders, then 1/sqrt and two products:
# a few float32 ulp of the normalised values (|y| up to ~3 * |gamma| + |beta|). 1e-6 relative to the largest
# |output| is that noise (measured 2.6e-7); eps added to the std instead of the variance (OpenCV's
# BatchNorm/MVN) is 1e-5 off.
MAX_REL = 1e-6
COS = 0.999999


@pytest.mark.parametrize("eps", [1e-5, 1e-3])
@pytest.mark.parametrize("shape", [(1, 4, 7, 9), (3, 5, 4, 4), (2, 3, 10), (1, 2, 3, 4, 5)])
def test_instance_norm(tmp_path, shape, eps):
    c = shape[1]
    rng = np.random.default_rng(3)
    inits = {
        "gamma": rng.standard_normal(c).astype(np.float32),
        "beta": rng.standard_normal(c).astype(np.float32),
    }
    node = helper.make_node("InstanceNormalization", ["x", "gamma", "beta"], ["y"], epsilon=eps)
    model = make_model([node], {"x": shape}, {"y": None}, initializers=inits, opset=13)
    net = check_conversion(model, tmp_path, max_rel=MAX_REL, cos=COS)
    types = [layer.type for layer in net.layers]
    assert "BatchNorm" not in types and types.count("MVN") == 1


def test_instance_norm_large_offset(tmp_path):
    # a per-channel offset (50) much larger than the spread (1): the mean subtraction cancels ~6 digits
    inits = {
        "gamma": np.ones(3, np.float32),
        "beta": np.zeros(3, np.float32),
        "off": np.full((1, 3, 1, 1), 50, np.float32),
    }
    nodes = [
        helper.make_node("Add", ["x", "off"], ["z"]),
        helper.make_node("InstanceNormalization", ["z", "gamma", "beta"], ["y"], epsilon=1e-5),
    ]
    model = make_model(nodes, {"x": (1, 3, 6, 6)}, {"y": None}, initializers=inits, opset=13)
    # x + 50 is rounded identically everywhere; the mean of values near 50 carries ~ulp(50) = 3.8e-6 of
    # summation-order noise, which the subtraction keeps and 1/std (~1) passes on: 2e-5 relative bounds it.
    check_conversion(model, tmp_path, max_rel=2e-5, cos=COS)
