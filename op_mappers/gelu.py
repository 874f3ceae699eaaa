"""Gelu (opset 20) and onnx2caffe::Gelu (the fuse_gelu pass's node for torch's Erf-based GELU of older opsets).

approximate='none' (erf form, x * Phi(x)): the 13-layer tail composition of _erf.py - GELU(x) = 0.5 x + 0.5 |x|
- |x| Q(|x|) with the normal tail Q from a positive-coefficient rational and one Exp, accurate RELATIVE to GELU
everywhere (no 1 + erf cancellation); error bound in _erf.GELU_BOUND, measured over every float32 |x| <= 10.
approximate='tanh': 0.5 * x * (1 + tanh(k x + k 0.044715 x^3)) from TanH, Power and Eltwise (5 layers).
"""

from __future__ import annotations

import math

import numpy as np

from onnx2caffe.registry import register

from ._compose import ELTWISE_PROD, ELTWISE_SUM, eltwise, fresh, power
from ._erf import GELU_BOUND, GELU_LAYERS, gelu_layers

_K = math.sqrt(2.0 / math.pi)
_C = 0.044715
DOMAIN = "onnx2caffe"
_LAYERS = ("AbsVal", "Power", "Eltwise", "Exp", "TanH", "Reshape")


def _tanh_form(node, ctx, x: str, y: str) -> list:
    """Gelu with approximate='tanh':

        c = x * x * x                              Eltwise PROD (3 bottoms, as onnxruntime: (x * x) * x)
        a = k * x + (k * 0.044715) * c             Eltwise SUM with coefficients (k = sqrt(2 / pi))
        g = 0.5 + 0.5 * tanh(a)                    TanH, Power(scale 0.5, shift 0.5)
        y = x * g                                  Eltwise PROD

    Folding k into the sum's coefficients rounds k * 0.044715 and each product once instead of rounding the
    inner sum before the product with k: a few ulp of the tanh argument, which tanh' <= 1 does not amplify."""
    cube, arg, th, gate = (fresh(ctx, node, s) for s in ("cube", "arg", "tanh", "gate"))
    return [
        eltwise(ctx, cube, [x, x, x], cube, ELTWISE_PROD),
        eltwise(ctx, arg, [x, cube], arg, ELTWISE_SUM, coeff=[_K, _K * _C]),
        ctx.layer(th, "TanH", [arg], [th]),
        power(ctx, gate, th, gate, scale=0.5, shift=0.5),
        eltwise(ctx, node.name, [x, gate], y, ELTWISE_PROD),
    ]


def _gelu(node, ctx, scale: float = 1.0):
    x, y = node.input(0), node.output(0)
    dtype = ctx.dtype(x)
    if dtype is not None and dtype != np.float32:
        node.reject(f"{dtype} input (Caffe blobs are float32)")
    shape = tuple(ctx.shape(x))
    if not shape:
        node.reject("a rank-0 (scalar) tensor has no Caffe blob form")
    mode = node.attr("approximate", "none")
    if mode == "tanh":
        if scale != 1.0:
            node.reject_attr(
                "scale", scale, "a scaled tanh-form GELU is not fused (fuse_gelu makes erf forms)"
            )
        return _tanh_form(node, ctx, ctx.blob(x), ctx.blob(y))
    if mode != "none":
        node.reject_attr("approximate", mode, "only 'none' (erf) and 'tanh' are defined")
    return gelu_layers(ctx, node, ctx.blob(x), ctx.blob(y), shape, scale)


@register(
    "Gelu",
    since=20,
    layers=_LAYERS,
    notes=f"approximate='none': GELU = 0.5 x + 0.5 |x| - |x| Q(|x|), normal tail Q = exp(-x^2/2) * rational in "
    f"1 / (1 + |x|) with positive coefficients ({GELU_LAYERS} layers: AbsVal, Power, Eltwise, Exp; measured over "
    f"every float32 |x| <= 10: {GELU_BOUND}); approximate='tanh' -> 0.5 x (1 + TanH(k x + k 0.044715 x^3)) "
    "(5 layers): <= 3 ulp + |x| 2^-23 absolute",
)
def gelu(node, ctx):
    """Gelu: the erf form by the tail composition of _erf.py, the tanh form with TanH."""
    return _gelu(node, ctx)


@register(
    "Gelu",
    since=1,
    domain=DOMAIN,
    layers=_LAYERS,
    notes="scale * GELU(x) fused by fuse_gelu from torch's x / sqrt(2) -> Erf -> + 1 -> * x [-> * 0.5]: the Gelu "
    f"tail composition ({GELU_LAYERS} layers, scale folded into the last Eltwise's coefficients; {GELU_BOUND})",
)
def gelu_fused(node, ctx):
    """onnx2caffe::Gelu(x; approximate, scale) = scale * GELU(x) (from the fuse_gelu pass)."""
    return _gelu(node, ctx, float(node.attr("scale", 1.0)))
