"""Constant tensors as layer inputs (Concat with a constant, constants that cannot fold into a Power / Scale) on
real Caffe and OpenCV vs onnxruntime. The constant is produced exactly (an InnerProduct of a shared exact 1 with
the values as its weight), so the outputs must match bit for bit, special values included."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import helper
from onnx_testing import check_conversion, make_model, runtimes_here

from onnx2caffe.convert import convert

EXACT = 0.0


@pytest.mark.parametrize(
    "x_shape, c_shape, axis",
    [
        ((2, 3, 4), (2, 5, 4), 1),
        ((2, 3, 4), (2, 3, 1), -1),
        ((1, 3, 4, 4), (1, 1, 4, 4), 1),  # a constant channel (e.g. a coordinate map)
        ((3, 4), (2, 4), 0),
    ],
)
def test_concat_with_constant(tmp_path, x_shape, c_shape, axis):
    c = np.random.default_rng(0).standard_normal(c_shape).astype(np.float32)
    model = make_model(
        [helper.make_node("Concat", ["x", "c", "x"], ["y"], axis=axis)], {"x": x_shape}, {"y": None}, {"c": c}
    )
    net = check_conversion(model, tmp_path, max_rel=EXACT)
    assert "InnerProduct" in [layer.type for layer in net.layers]


def test_constants_share_one_source(tmp_path):
    """Every constant blob of a net is derived from one shared exact 1 (one Slice of the first input)."""
    rng = np.random.default_rng(1)
    nodes = [
        helper.make_node("Concat", ["x", "c1"], ["a"], axis=1),
        helper.make_node("Concat", ["a", "c2"], ["y"], axis=1),
    ]
    inits = {"c1": rng.standard_normal((1, 2, 3)).astype(np.float32), "c2": rng.standard_normal((1, 1, 3))}
    inits["c2"] = inits["c2"].astype(np.float32)
    model = make_model(nodes, {"x": (1, 4, 3)}, {"y": None}, inits)
    net = check_conversion(model, tmp_path, max_rel=EXACT)
    types = [layer.type for layer in net.layers]
    assert types.count("Slice") == 1 and types.count("InnerProduct") == 2


def test_special_values_exact(tmp_path):
    """inf, -inf, NaN in the constant and a NaN / inf input entry feeding the shared 1. (A -0.0 constant comes out
    as +0.0: the product's accumulator starts at +0; the two compare equal.)"""
    c = np.array([[np.inf, -np.inf, np.nan, -0.0, 1e-40, 3.5]], np.float32)
    model = make_model(
        [helper.make_node("Concat", ["x", "c"], ["y"], axis=0)], {"x": (2, 6)}, {"y": None}, {"c": c}
    )
    result = convert(model, str(tmp_path / "m"), check=False)
    for first in (np.nan, np.inf, 2.0):
        x = np.random.default_rng(2).standard_normal((2, 6)).astype(np.float32)
        x[0, 0] = first
        want = np.concatenate([x, c])
        for rt in runtimes_here():
            with rt.load(result.prototxt, result.caffemodel) as loaded:
                got = loaded.run({"x": x}, outputs=[result.name_map["y"]])[result.name_map["y"]]
            # bitwise, except the sign of the zero and a runtime that flushes the subnormal 1e-40 to zero
            same = got.view(np.uint32) == want.view(np.uint32)
            same[2, 3] |= got[2, 3] == 0
            same[2, 4] |= got[2, 4] == 0
            assert same.all(), (rt.name, first, got)
