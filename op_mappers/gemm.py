"""Gemm: Y = alpha * op(A) @ op(B) + beta * C (op = transpose when transA / transB).

- B constant, A an activation (transA 0): InnerProduct, alpha and beta folded into the weight and bias (one
  float32 rounding each, exact when they are 1); C must be the same for every row.
- otherwise (B an activation, transA 1, A constant): the product of op_mappers/matmul (repeat + two-bottom Scale
  + ones Convolution over K; a constant operand becomes an exact constant blob), then alpha * . (Power, one more
  rounding unless alpha is 1) and beta * C added (Scale with a bias for a constant C, Eltwise SUM with
  coefficient beta for an activation C, broadcast to (M, N) first).
"""

from __future__ import annotations

import numpy as np

from onnx2caffe.registry import register

from ._compose import broadcast_to, constant_blob, fresh, power, scale_bias
from .matmul import inner_product, product


@register(
    "Gemm",
    since=1,
    layers=("InnerProduct", "Convolution", "Concat", "Scale", "Eltwise", "Reshape", "Slice", "Power"),
    notes="constant B -> InnerProduct (alpha, beta folded); activation B or transA -> the MatMul product "
    "composition (K-term sums reordered: |err| <= K 2^-24 sum|a b|) + Power alpha + Scale / Eltwise for C",
)
def gemm(node, ctx):
    """Gemm: constant B -> InnerProduct (alpha, beta folded); otherwise the MatMul product + alpha, beta * C."""
    a, y = node.inputs[0], node.outputs[0]
    b_name = node.inputs[1]
    trans_a = int(node.attr("transA", 0))
    trans_b = int(node.attr("transB", 0))
    alpha = float(node.attr("alpha", 1.0))
    beta = float(node.attr("beta", 1.0))
    if node.opset < 7:
        node.ignore_attr("broadcast", "C is broadcast to the output shape below")
    ca, cb = ctx.const(a), ctx.const(b_name)
    if ca is not None and cb is not None:
        node.reject("A and B are constants (not folded)")
    out_shape = tuple(ctx.shape(y))
    m, n = out_shape
    c_name = node.input(2)
    c = ctx.const(c_name) if c_name else None
    if cb is not None and not trans_a:
        k = ctx.shape(a)[1]
        w = cb if trans_b else cb.T  # (N, K); a view: only alpha != 1 needs a (float64) copy of the weight
        if w.shape[1] != k:
            node.reject(f"B {cb.shape} does not fit A {ctx.shape(a)}")
        weight = (w.astype(np.float64) * alpha).astype(np.float32) if alpha != 1.0 else w
        if not c_name or beta == 0.0:
            return inner_product(ctx, node, a, y, weight, None, 1)
        if c is not None:
            full = np.broadcast_to(c.astype(np.float64), (m, n))
            if np.all(full == full[0:1]):  # one bias per output: folded into the InnerProduct
                bias = (full[0] * beta if beta != 1.0 else full[0]).astype(np.float32)
                return inner_product(ctx, node, a, y, weight, bias, 1)
        mid = fresh(ctx, node, "product")
        layers = inner_product(ctx, node, a, y, weight, None, 1)
        layers[0].proto.top[0] = mid
        return layers + _add_c(node, ctx, mid, ctx.blob(y), c_name, c, beta, out_shape)
    layers = []
    operands = []
    for name, value, what in ((a, ca, "A"), (b_name, cb, "B")):
        if value is None:
            operands.append((ctx.blob(name), ctx.shape(name)))
        else:
            more, blob = constant_blob(ctx, node, value, f"{what}_const")
            layers += more
            operands.append((blob, value.shape))
    scaled = alpha != 1.0
    has_c = bool(c_name) and beta != 0.0
    mid = fresh(ctx, node, "product") if (scaled or has_c) else ctx.blob(y)
    layers += product(ctx, node, *operands[0], bool(trans_a), *operands[1], bool(trans_b), mid, out_shape)
    if scaled:
        top = fresh(ctx, node, "alpha") if has_c else ctx.blob(y)
        layers.append(power(ctx, fresh(ctx, node, "alpha"), mid, top, scale=alpha))
        mid = top
    if has_c:
        layers += _add_c(node, ctx, mid, ctx.blob(y), c_name, c, beta, out_shape)
    return layers


def _add_c(node, ctx, bottom, top, c_name, c, beta, out_shape):
    """top = bottom + beta * C."""
    if c is not None:
        return scale_bias(
            ctx, fresh(ctx, node, "c"), bottom, top, 1.0, c.astype(np.float64) * beta, out_shape
        )
    layers, cb = broadcast_to(ctx, node, ctx.blob(c_name), ctx.shape(c_name), out_shape, "c_bcast")
    layers.append(
        ctx.layer(
            fresh(ctx, node, "c"),
            "Eltwise",
            [bottom, cb],
            [top],
            eltwise_param={"operation": "SUM", **({"coeff": [1.0, beta]} if beta != 1.0 else {})},
        )
    )
    return layers
