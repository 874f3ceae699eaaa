"""Einsum as (batched) matrix products on real Caffe and OpenCV vs onnxruntime: the attention equations MaxViT
writes, plain and batched matmuls, operands in other letter orders (permuted), a permuted output, ellipses,
constant operands; refusals name the equation."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import helper
from onnx_testing import check_conversion, make_model

from onnx2caffe.convert import convert
from onnx2caffe.errors import ConversionError

TOL = 1e-5  # matmul.py: K-term sums in another order, <= K 2^-24 sum |a b| (measured <= 1e-6 here)


@pytest.mark.parametrize(
    "equation,a_shape,b_shape",
    [
        ("BGHID,BGHJD->BGHIJ", (1, 2, 3, 7, 4), (1, 2, 3, 7, 4)),  # MaxViT q k^T
        ("BGHIJ,BGHJD->BGHID", (1, 2, 3, 7, 7), (1, 2, 3, 7, 4)),  # MaxViT attn v
        ("ij,jk->ik", (5, 6), (6, 3)),
        ("bij,bjk->bik", (2, 5, 6), (2, 6, 3)),
        ("bji,bjk->bik", (2, 6, 5), (2, 6, 3)),  # A transposed in place
        ("bhid,bhjd->bhji", (1, 2, 5, 4), (1, 2, 6, 4)),  # output permuted
        ("bihd,bjhd->bhij", (1, 5, 2, 4), (1, 6, 2, 4)),  # operands permuted (heads in the middle)
        ("...id,...jd->...ij", (2, 3, 5, 4), (2, 3, 6, 4)),
        ("bid,jd", (2, 5, 4), (6, 4)),  # implicit output 'bij'
        ("bi,bj->bij", (2, 5), (2, 3)),  # no contraction: an outer product
    ],
)
def test_einsum_products(tmp_path, equation, a_shape, b_shape):
    node = helper.make_node("Einsum", ["a", "b"], ["y"], equation=equation)
    model = make_model([node], {"a": a_shape, "b": b_shape}, {"y": None}, opset=12)
    check_conversion(model, tmp_path, max_rel=TOL, cos=0.999999)


def test_einsum_constant_operand(tmp_path):
    w = np.random.default_rng(0).standard_normal((4, 6)).astype(np.float32)
    node = helper.make_node("Einsum", ["a", "w"], ["y"], equation="bqd,dk->bqk")
    model = make_model([node], {"a": (2, 5, 4)}, {"y": None}, initializers={"w": w}, opset=12)
    check_conversion(model, tmp_path, max_rel=TOL, cos=0.999999)


@pytest.mark.parametrize(
    "equation,shapes,match",
    [
        ("ii->i", [(4, 4)], "1 operands"),
        ("ij,jk->i", [(3, 4), (4, 5)], "summed away"),
        ("iij,jk->ik", [(3, 3, 4), (4, 5)], "repeated within one term"),
    ],
)
def test_einsum_refused(equation, shapes, match):
    names = [f"x{i}" for i in range(len(shapes))]
    node = helper.make_node("Einsum", names, ["y"], equation=equation, name="e")
    model = make_model([node], dict(zip(names, shapes, strict=True)), {"y": None}, opset=12)
    with pytest.raises(ConversionError, match=match) as info:
        convert(model, None, check=False)
    assert "node 'e' (Einsum, opset 12)" in str(info.value)
