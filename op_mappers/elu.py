"""The ELU family: Elu, Selu, Celu -> Caffe ELU (top = max(x, 0) + alpha * (exp(min(x, 0)) - 1)) plus exact glue.

Caffe and OpenCV compute exp(x) - 1 in float32, as onnxruntime does, so for x just below 0 all three lose the
same absolute ~alpha * 2^-24 to cancellation (none uses expm1): measured, the outputs differ from onnxruntime by
at most alpha * 6e-8 absolute (a few ulp of alpha) on both runtimes.
"""

from __future__ import annotations

from onnx2caffe.registry import register

from ._compose import ELTWISE_SUM, eltwise, fresh, power

# Selu's defaults (ONNX spec, float32)
SELU_ALPHA = 1.67326319217681884765625
SELU_GAMMA = 1.05070102214813232421875


def _elu(ctx, name: str, bottom: str, top: str, alpha: float):
    params = {"elu_param": {"alpha": float(alpha)}} if alpha != 1.0 else {}
    return ctx.layer(name, "ELU", [bottom], [top], **params)


@register("Elu", since=1, layers=("ELU",))
def elu(node, ctx):
    """Elu -> ELU, same alpha and formula: <= 2 ulp + alpha * 2^-23 absolute (max_rel 4e-8 on N(0, 1))."""
    node.ignore_attr("consumed_inputs", "legacy in-place hint of opset 1; no effect on values")
    alpha = float(node.attr("alpha", 1.0))
    return [_elu(ctx, node.name, ctx.blob(node.input(0)), ctx.blob(node.output(0)), alpha)]


@register(
    "Selu",
    since=1,
    layers=("ELU", "Power"),
    notes="Selu -> ELU(alpha) + Power(scale=gamma): one product more than onnxruntime's (gamma * alpha) * "
    "(exp(x) - 1): <= 3 ulp + gamma * alpha * 2^-23 absolute (max_rel 7e-8 on N(0, 1))",
)
def selu(node, ctx):
    """Selu = gamma * ELU(x, alpha): the ELU output is x itself for x > 0, so that side rounds once, like
    onnxruntime; for x <= 0 gamma * (alpha * e) rounds once more than (gamma * alpha) * e."""
    node.ignore_attr("consumed_inputs", "legacy in-place hint of opset 1; no effect on values")
    alpha = float(node.attr("alpha", SELU_ALPHA))
    gamma = float(node.attr("gamma", SELU_GAMMA))
    x, y = ctx.blob(node.input(0)), ctx.blob(node.output(0))
    mid = fresh(ctx, node, "elu")
    return [_elu(ctx, mid, x, mid, alpha), power(ctx, node.name, mid, y, scale=gamma)]


@register(
    "Celu",
    since=12,
    layers=("ELU", "ReLU", "Eltwise", "Power"),
    notes="Celu: alpha 1 -> ELU; else ReLU(x) + alpha * ELU(min(x, 0) * (1/alpha)) (5 layers): x > 0 exact, "
    "x <= 0 <= 3 ulp + alpha * 2^-23 absolute (max_rel 1.2e-7 on N(0, 1))",
)
def celu(node, ctx):
    """Celu = max(0, x) + min(0, alpha * (exp(x / alpha) - 1)).

        p = ReLU(x);  n = x - p (= min(x, 0), exact);  e = ELU(n * (1/alpha));  y = p + alpha * e

    Exactly one of p, e is non-zero, so the last sum is exact and x > 0 passes through unchanged (as in
    onnxruntime); for x <= 0 the argument x * (1/alpha) can be one ulp off x / alpha, which exp turns into a
    relative error of |x / alpha| * 2^-24 on exp(x / alpha) <= 1: a few ulp of alpha at most."""
    alpha = float(node.attr("alpha", 1.0))
    x, y = ctx.blob(node.input(0)), ctx.blob(node.output(0))
    if alpha == 1.0:
        return [_elu(ctx, node.name, x, y, 1.0)]
    if not alpha > 0.0:
        node.reject_attr(
            "alpha", alpha, "Celu needs alpha > 0 (it divides by alpha; ELU has no negative branch)"
        )
    pos = fresh(ctx, node, "relu")
    neg = fresh(ctx, node, "min0")
    arg = fresh(ctx, node, "scaled")
    e = fresh(ctx, node, "elu")
    return [
        ctx.layer(pos, "ReLU", [x], [pos]),
        eltwise(ctx, neg, [x, pos], neg, ELTWISE_SUM, coeff=[1.0, -1.0]),
        power(ctx, arg, neg, arg, scale=1.0 / alpha),
        _elu(ctx, e, arg, e, 1.0),
        eltwise(ctx, node.name, [pos, e], y, ELTWISE_SUM, coeff=[1.0, alpha]),
    ]
