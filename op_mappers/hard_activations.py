"""HardSigmoid and HardSwish -> Power (alpha * x + beta) + exact clamp to [0, 1] (+ Eltwise PROD with x)."""

from __future__ import annotations

from onnx2caffe.registry import register

from ._compose import ELTWISE_PROD, clamp, eltwise, fresh, power

_LAYERS = ("Power", "ReLU", "Eltwise")


def _hard_sigmoid(ctx, node, bottom: str, top: str, alpha: float, beta: float):
    lin = fresh(ctx, node, "affine")
    return [power(ctx, lin, bottom, lin, scale=alpha, shift=beta)] + clamp(ctx, node, lin, top, 0.0, 1.0)


@register("HardSigmoid", since=1, layers=_LAYERS)
def hard_sigmoid(node, ctx):
    """HardSigmoid: max(0, min(1, alpha * x + beta))."""
    node.ignore_attr("consumed_inputs", "legacy in-place hint of opset 1; no effect on values")
    alpha, beta = node.attr("alpha", 0.2), node.attr("beta", 0.5)
    return _hard_sigmoid(ctx, node, ctx.blob(node.input(0)), ctx.blob(node.output(0)), alpha, beta)


@register("HardSwish", since=14, layers=_LAYERS)
def hard_swish(node, ctx):
    """HardSwish: x * HardSigmoid(x) with alpha 1/6, beta 0.5."""
    x = ctx.blob(node.input(0))
    gate = fresh(ctx, node, "gate")
    layers = _hard_sigmoid(ctx, node, x, gate, 1.0 / 6.0, 0.5)
    layers.append(eltwise(ctx, node.name, [x, gate], ctx.blob(node.output(0)), ELTWISE_PROD))
    return layers
