"""Gemm on real Caffe and OpenCV vs onnxruntime: constant B -> InnerProduct (alpha, beta folded), otherwise the
MatMul product composition + alpha + beta * C (constant or activation C)."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import helper
from onnx_testing import check_conversion, make_model

from onnx2caffe.convert import convert

# dot products of up to 37 terms summed in another order, alpha/beta folded into the weights (or one more
# rounding each for a product of activations): ~1e-6 relative
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


@pytest.mark.parametrize("c_rows", [(3, 7), (3, 1)])
def test_gemm_bias_differs_between_rows(tmp_path, c_rows):
    """A C that is not one bias per output: InnerProduct, then a Scale adding C."""
    node = helper.make_node("Gemm", ["a", "b", "c"], ["y"], beta=0.5)
    model = make_model([node], {"a": (3, 37)}, {"y": None}, {"b": _w(37, 7), "c": _w(*c_rows)})
    net = check_conversion(model, tmp_path, max_rel=TOL)
    assert [layer.type for layer in net.layers] == ["Input", "InnerProduct", "Scale"]


@pytest.mark.parametrize("trans_a", [0, 1])
@pytest.mark.parametrize("trans_b", [0, 1])
@pytest.mark.parametrize("alpha,beta", [(1.0, 1.0), (0.5, 2.0)])
@pytest.mark.parametrize("c_kind", [None, "const", "activation"])
def test_gemm_two_activations(tmp_path, trans_a, trans_b, alpha, beta, c_kind):
    """A and B activations (transposed or not): the MatMul product composition, then alpha (Power) and beta * C
    (Scale with a bias for a constant C, Eltwise SUM for an activation C broadcast from (N,))."""
    inputs = {"a": (6, 5) if trans_a else (5, 6), "b": (4, 6) if trans_b else (6, 4)}
    names, inits = ["a", "b"], {}
    if c_kind == "const":
        inits["c"] = _w(5, 4)
        names.append("c")
    elif c_kind == "activation":
        inputs["c"] = (4,)
        names.append("c")
    node = helper.make_node("Gemm", names, ["y"], transA=trans_a, transB=trans_b, alpha=alpha, beta=beta)
    model = make_model([node], inputs, {"y": None}, inits)
    check_conversion(model, tmp_path, max_rel=TOL)


def test_gemm_trans_a_constant_b(tmp_path):
    """transA with a constant B: the product composition with B as an exact constant blob."""
    node = helper.make_node("Gemm", ["a", "b"], ["y"], transA=1)
    model = make_model([node], {"a": (6, 3)}, {"y": None}, {"b": _w(6, 5)})
    check_conversion(model, tmp_path, max_rel=TOL)


def test_gemm_constant_a(tmp_path):
    node = helper.make_node("Gemm", ["a", "b", "c"], ["y"], transB=1)
    model = make_model([node], {"b": (4, 6)}, {"y": None}, {"a": _w(5, 6), "c": _w(4)})
    check_conversion(model, tmp_path, max_rel=TOL)


@pytest.mark.parametrize("flatten", ["Reshape", "Flatten"])
@pytest.mark.parametrize("head", ["Gemm", "MatMul+Add"])
@pytest.mark.parametrize("perm", [[0, 3, 2, 1], [0, 2, 3, 1]])
def test_transpose_folded_into_weight(tmp_path, flatten, head, perm):
    """MTCNN R/O-Net: x.permute(0, 3, 2, 1).view(N, -1) -> Linear. fold_transpose_into_gemm permutes the weight's
    rows instead (the same products, another summation order): no Slice / Concat data movement remains."""
    n, c, h, w = 2, 8, 3, 3
    k = c * h * w
    nodes = [helper.make_node("Transpose", ["x"], ["t"], perm=perm)]
    inits = {"w": _w(k, 5), "b": _w(5)}
    if flatten == "Reshape":
        inits["shape"] = np.array([n, -1], np.int64)
        nodes.append(helper.make_node("Reshape", ["t", "shape"], ["f"]))
    else:
        nodes.append(helper.make_node("Flatten", ["t"], ["f"], axis=1))
    if head == "Gemm":
        inits["w"] = np.ascontiguousarray(inits["w"].T)
        nodes.append(helper.make_node("Gemm", ["f", "w", "b"], ["y"], transB=1))
    else:
        nodes += [helper.make_node("MatMul", ["f", "w"], ["m"]), helper.make_node("Add", ["m", "b"], ["y"])]
    model = make_model(nodes, {"x": (n, c, h, w)}, {"y": None}, inits, opset=18 if head != "Gemm" else 13)
    result = convert(model, None, runtimes=[], check=False)
    assert "fold_transpose_into_gemm" in result.passes_applied
    net = check_conversion(model, tmp_path, max_rel=TOL)
    assert [layer.type for layer in net.layers] == [
        "Input",
        "Flatten" if flatten == "Flatten" else "Reshape",
        "InnerProduct",
    ]


def test_transpose_not_folded_when_shared(tmp_path):
    nodes = [
        helper.make_node("Transpose", ["x"], ["t"], perm=[0, 3, 2, 1]),
        helper.make_node("Flatten", ["t"], ["f"]),
        helper.make_node("Gemm", ["f", "w"], ["y"]),
    ]
    model = make_model(nodes, {"x": (1, 4, 2, 3)}, {"y": None, "t": None}, {"w": _w(24, 3)})
    result = convert(model, None, runtimes=[], check=False)
    assert "fold_transpose_into_gemm" not in result.passes_applied
    check_conversion(model, tmp_path, max_rel=TOL)
