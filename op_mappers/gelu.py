"""Gelu (opset 20): the tanh approximation composes exactly from TanH, Power and Eltwise; the erf form has no
Caffe form (see refused.py for Erf itself, which the opset < 20 exports of nn.GELU() contain)."""

from __future__ import annotations

import math

from onnx2caffe.registry import register

from ._compose import ELTWISE_PROD, ELTWISE_SUM, eltwise, fresh, power

_K = math.sqrt(2.0 / math.pi)
_C = 0.044715

ERF_REASON = (
    "no BVLC Caffe layer computes erf, and a polynomial or sigmoid stand-in is not exact to float32 noise"
)


@register(
    "Gelu",
    since=20,
    layers=("Eltwise", "TanH", "Power"),
    notes="Gelu approximate='tanh' -> 0.5 * x * (1 + TanH(k * x + k * 0.044715 * x^3)) (5 layers): <= 3 ulp + "
    "|x| * 2^-23 absolute (1 + tanh cancels on both sides; max_rel 8e-8 on N(0, 1)); approximate='none' (erf) "
    "is refused",
)
def gelu(node, ctx):
    """Gelu with approximate='tanh':

        c = x * x * x                              Eltwise PROD (3 bottoms, as onnxruntime: (x * x) * x)
        a = k * x + (k * 0.044715) * c             Eltwise SUM with coefficients (k = sqrt(2 / pi))
        g = 0.5 + 0.5 * tanh(a)                    TanH, Power(scale 0.5, shift 0.5)
        y = x * g                                  Eltwise PROD

    Folding k into the sum's coefficients rounds k * 0.044715 and each product once instead of rounding the
    inner sum before the product with k: a few ulp of the tanh argument, which tanh' <= 1 does not amplify.
    approximate='none' is 0.5 * x * (1 + erf(x / sqrt(2))): refused, no BVLC layer computes erf."""
    mode = node.attr("approximate", "none")
    if mode != "tanh":
        node.reject_attr("approximate", mode, "GELU's erf form has no exact Caffe form: " + ERF_REASON)
    x, y = ctx.blob(node.input(0)), ctx.blob(node.output(0))
    cube, arg, th, gate = (fresh(ctx, node, s) for s in ("cube", "arg", "tanh", "gate"))
    return [
        eltwise(ctx, cube, [x, x, x], cube, ELTWISE_PROD),
        eltwise(ctx, arg, [x, cube], arg, ELTWISE_SUM, coeff=[_K, _K * _C]),
        ctx.layer(th, "TanH", [arg], [th]),
        power(ctx, gate, th, gate, scale=0.5, shift=0.5),
        eltwise(ctx, node.name, [x, gate], y, ELTWISE_PROD),
    ]
