"""Gemm and MatMul with a constant 2-D weight -> InnerProduct.

alpha and beta are folded into the weight and bias (one float32 rounding each, exact when they are 1). A MatMul
on a rank-r input becomes InnerProduct with axis r-1 (it multiplies the last axis, like MatMul). A constant bias
Add after a 2-D MatMul is merged by the fuse_matmul_add pass.
"""

from __future__ import annotations

import numpy as np

from onnx2caffe.registry import register


def _inner_product(ctx, node, x, y, weight_nk, bias, axis):
    p = {"num_output": int(weight_nk.shape[0])}
    blobs = [np.ascontiguousarray(weight_nk, dtype=np.float32)]
    if bias is None:
        p["bias_term"] = False
    else:
        blobs.append(np.asarray(bias, np.float32).reshape(-1))
    if axis != 1:
        p["axis"] = axis
    return [
        ctx.layer(node.name, "InnerProduct", [ctx.blob(x)], [ctx.blob(y)], blobs=blobs, inner_product_param=p)
    ]


@register("Gemm", since=1, layers=("InnerProduct",))
def gemm(node, ctx):
    """Gemm with a constant B (and C), transA=0 -> InnerProduct (alpha, beta folded into the weights)."""
    a, y = node.inputs[0], node.outputs[0]
    b = ctx.const(node.inputs[1])
    if b is None:
        node.reject("B is not a constant (a product of two activations has no Caffe layer)")
    if ctx.is_const(a):
        node.reject("A is a constant and B is not")
    trans_a = int(node.attr("transA", 0))
    if trans_a:
        node.reject_attr("transA", trans_a, "a transposed activation has no InnerProduct form")
    trans_b = int(node.attr("transB", 0))
    alpha = float(node.attr("alpha", 1.0))
    beta = float(node.attr("beta", 1.0))
    if node.opset < 7:
        node.ignore_attr("broadcast", "C is checked against the output shape below")
    m, k = ctx.shape(a)
    w = b if trans_b else b.T  # (N, K); a view: only alpha != 1 needs a (float64) copy of the weight
    n = w.shape[0]
    if w.shape[1] != k:
        node.reject(f"B {b.shape} does not fit A ({m}, {k})")
    weight = (w.astype(np.float64) * alpha).astype(np.float32) if alpha != 1.0 else w
    bias = None
    if node.input(2):
        c = ctx.const(node.input(2))
        if c is None:
            node.reject("C is not a constant")
        full = np.broadcast_to(c.astype(np.float64), (m, n))
        if not np.all(full == full[0:1]):
            node.reject(f"C of shape {c.shape} differs between rows; InnerProduct has one bias per output")
        bias = (full[0] * beta if beta != 1.0 else full[0]).astype(np.float32)
        if beta == 0.0:
            bias = None
    return _inner_product(ctx, node, a, y, weight, bias, 1)


@register("MatMul", since=1, layers=("InnerProduct",))
def matmul(node, ctx):
    """MatMul of an activation (rank >= 2) by a constant 2-D weight -> InnerProduct over the last axis."""
    x, y = node.inputs[0], node.outputs[0]
    w = ctx.const(node.inputs[1])
    if w is None:
        node.reject("the second operand is not a constant (a product of two activations has no Caffe layer)")
    if ctx.is_const(x):
        node.reject("the first operand is a constant and the second is not")
    if w.ndim != 2:
        node.reject(f"the constant operand has rank {w.ndim}; only a 2-D weight maps to InnerProduct")
    shape = ctx.shape(x)
    if len(shape) < 2:
        node.reject("a rank-1 activation has no InnerProduct form")
    if shape[-1] != w.shape[0]:
        node.reject(f"shapes {shape} and {w.shape} do not multiply")
    return _inner_product(ctx, node, x, y, w.T, None, len(shape) - 1)
