"""Exp and Log -> Caffe Exp / Log (base e, no scale or shift: the plain functions).

Measured against onnxruntime: Log within 2 ulp on both runtimes; Exp within 1 ulp on real Caffe and OpenCV,
except that OpenCV's float32 exp overflows to inf from x = 88.3763 on, where exp(x) is still finite up to
x = 88.7228 (up to 3.4e38); onnxruntime and real Caffe overflow at 88.7229. OpenCV also flushes subnormal
inputs and results to 0 (exp(x) for x < -87.34, log of a subnormal gives -inf). The overflow edge is in
OpenCV's vectorised exp, which 4-D blobs take; 2-D blobs overflow where onnxruntime does.
"""

from __future__ import annotations

from onnx2caffe.registry import register

from ._compose import ELTWISE_SUM, eltwise, fresh


@register(
    "Exp",
    since=1,
    layers=("Exp",),
    notes="Exp -> Exp (<= 2 ulp; OpenCV's vectorised exp (4-D blobs) gives inf for x in [88.3763, 88.7228] where "
    "exp(x) < 3.4e38)",
)
def exp(node, ctx):
    """Exp -> Exp (base e)."""
    node.ignore_attr("consumed_inputs", "legacy in-place hint of opset 1; no effect on values")
    return [ctx.layer(node.name, "Exp", [ctx.blob(node.input(0))], [ctx.blob(node.output(0))])]


@register("Log", since=1, layers=("Log",), notes="Log -> Log (<= 2 ulp)")
def log(node, ctx):
    """Log -> Log (base e)."""
    node.ignore_attr("consumed_inputs", "legacy in-place hint of opset 1; no effect on values")
    return [ctx.layer(node.name, "Log", [ctx.blob(node.input(0))], [ctx.blob(node.output(0))])]


@register(
    "Cosh",
    since=9,
    layers=("Exp", "Eltwise"),
    notes="Cosh -> 0.5 * Exp(x) + 0.5 * Exp(-x) (3 layers, no cancellation: <= 2 ulp; overflows to inf from "
    "x = 88.72 where cosh is finite up to 89.41)",
)
def cosh(node, ctx):
    """Cosh = (exp(x) + exp(-x)) / 2: two Exp layers (the second with scale -1, an exact negation) and one
    Eltwise SUM with coefficients 0.5 (exact halvings, one rounding of the sum of two positive terms)."""
    x, y = ctx.blob(node.input(0)), ctx.blob(node.output(0))
    pos, neg = fresh(ctx, node, "exp"), fresh(ctx, node, "exp_neg")
    return [
        ctx.layer(pos, "Exp", [x], [pos]),
        ctx.layer(neg, "Exp", [x], [neg], exp_param={"scale": -1.0}),
        eltwise(ctx, node.name, [pos, neg], y, ELTWISE_SUM, coeff=[0.5, 0.5]),
    ]
