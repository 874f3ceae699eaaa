"""Softplus and Mish -> Caffe BNLL (log(1 + exp(x)), computed without overflow) [+ TanH + Eltwise PROD].

BNLL computes x + log(1 + exp(-x)) for x > 0 and log(1 + exp(x)) otherwise. Real Caffe does it in double, so
it is within an ulp of onnxruntime's float32 softplus everywhere. OpenCV does it in float32: 1 + exp(x) drops
exp(x) below 2^-24, so for x < -16.6 it returns 0 where the exact value (and onnxruntime) is exp(x) < 6e-8: an
absolute error below 6e-8 = 2^-24 (relative to the largest output that is float32 noise unless every input
of the tensor is below about -16). Both runtimes, like onnxruntime, return x itself for x > ~16.6 and never
overflow (x = 1e30 gives 1e30).
"""

from __future__ import annotations

from onnx2caffe.registry import register

from ._compose import ELTWISE_PROD, eltwise, fresh

SOFTPLUS_NOTE = "<= 2 ulp + 2^-24 absolute: OpenCV's float32 1 + exp(x) gives 0 for x < -16.6"


@register(
    "Softplus",
    since=1,
    layers=("BNLL",),
    notes="Softplus -> BNLL: " + SOFTPLUS_NOTE + " (max_rel 8e-8 on N(0, 1))",
)
def softplus(node, ctx):
    """Softplus -> BNLL (the same function, overflow-free for large x)."""
    return [ctx.layer(node.name, "BNLL", [ctx.blob(node.input(0))], [ctx.blob(node.output(0))])]


@register(
    "Mish",
    since=18,
    layers=("BNLL", "TanH", "Eltwise"),
    notes="Mish -> BNLL + TanH + Eltwise PROD with x (3 layers): <= 4 ulp + 1.1e-6 absolute (OpenCV's softplus "
    "error times |x| <= 16.6; max_rel 1.6e-7 on N(0, 1))",
)
def mish(node, ctx):
    """Mish = x * tanh(softplus(x)): each of the three steps is one float32 rounding, as in onnxruntime."""
    x, y = ctx.blob(node.input(0)), ctx.blob(node.output(0))
    sp = fresh(ctx, node, "softplus")
    th = fresh(ctx, node, "tanh")
    return [
        ctx.layer(sp, "BNLL", [x], [sp]),
        ctx.layer(th, "TanH", [sp], [th]),
        eltwise(ctx, node.name, [x, th], y, ELTWISE_PROD),
    ]
