"""Gemm / MatMul with constant weights -> InnerProduct, on real Caffe and OpenCV vs onnxruntime."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import helper
from onnx_testing import check_conversion, make_model

from onnx2caffe.convert import convert
from onnx2caffe.errors import ConversionError

# dot products of up to 37 terms summed in another order, alpha/beta folded into the weights: ~1e-6 relative
TOL = 1e-5
RNG = np.random.default_rng(3)


def _w(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


@pytest.mark.parametrize("trans_b", [0, 1])
@pytest.mark.parametrize("alpha,beta", [(1.0, 1.0), (0.5, 2.0), (1.0, 0.0)])
@pytest.mark.parametrize("c_shape", [None, (7,), (1, 7), (3, 7), ()])
def test_gemm(tmp_path, trans_b, alpha, beta, c_shape):
    b = _w(7, 37) if trans_b else _w(37, 7)
    inits = {"b": b}
    inputs = ["a", "b"]
    if c_shape is not None:
        c = np.broadcast_to(_w(*c_shape[-1:]) if c_shape else _w(), c_shape).copy()
        inits["c"] = c
        inputs.append("c")
    node = helper.make_node("Gemm", inputs, ["y"], transB=trans_b, alpha=alpha, beta=beta)
    model = make_model([node], {"a": (3, 37)}, {"y": None}, inits)
    check_conversion(model, tmp_path, max_rel=TOL)


@pytest.mark.parametrize("x_shape", [(4, 10), (2, 5, 10), (2, 3, 4, 10)])
def test_matmul(tmp_path, x_shape):
    model = make_model(
        [helper.make_node("MatMul", ["x", "w"], ["y"])], {"x": x_shape}, {"y": None}, {"w": _w(10, 6)}
    )
    check_conversion(model, tmp_path, max_rel=TOL)


@pytest.mark.parametrize("bias_first", [False, True])
def test_matmul_add_fused(tmp_path, bias_first):
    nodes = [
        helper.make_node("MatMul", ["x", "w"], ["h"], name="fc"),
        helper.make_node("Add", ["b", "h"] if bias_first else ["h", "b"], ["y"], name="bias"),
    ]
    model = make_model(nodes, {"x": (2, 10)}, {"y": None}, {"w": _w(10, 6), "b": _w(6)})
    net = check_conversion(model, tmp_path, max_rel=TOL)
    assert [layer.type for layer in net.layers] == ["Input", "InnerProduct"]
    assert len(net.layer("fc").blobs) == 2


def test_matmul_add_rank3_not_fused(tmp_path):
    nodes = [helper.make_node("MatMul", ["x", "w"], ["h"]), helper.make_node("Add", ["h", "b"], ["y"])]
    model = make_model(nodes, {"x": (2, 3, 10)}, {"y": None}, {"w": _w(10, 6), "b": _w(6)})
    net = check_conversion(model, tmp_path, max_rel=TOL)
    assert [layer.type for layer in net.layers] == ["Input", "InnerProduct", "Scale"]


def test_refusals(tmp_path):
    nodes = [
        helper.make_node("MatMul", ["x", "z"], ["h"], name="act_by_act"),
        helper.make_node("Gemm", ["h", "w"], ["y"], name="trans_a", transA=1),
    ]
    model = make_model(nodes, {"x": (4, 4), "z": (4, 4)}, {"y": None}, {"w": _w(4, 4)})
    with pytest.raises(ConversionError) as info:
        convert(model, str(tmp_path / "m"), check=False)
    msg = str(info.value)
    assert "node 'act_by_act' (MatMul, opset 13): the second operand is not a constant" in msg
    assert "node 'trans_a' (Gemm, opset 13): attribute transA=1" in msg
