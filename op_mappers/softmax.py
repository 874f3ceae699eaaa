"""Softmax -> Caffe Softmax (one axis, any rank: Caffe and OpenCV honour `axis` on blobs of 1 to 6 axes, tested);
before opset 13 the 2-D coercion is composed with Reshapes.
LogSoftmax -> the same max-shifted algorithm as onnxruntime from Pooling MAX / Exp / ones sum / Log, the max
and the log broadcast back by Concat copies (Softmax followed by Log would underflow to -inf where the exact
result is finite)."""

from __future__ import annotations

import math

from onnx2caffe.registry import register

from ._compose import (
    ELTWISE_SUM,
    broadcast_to,
    eltwise,
    fresh,
    norm_axis,
    pool_axis,
    reshape,
    sum_axis,
    tidy,
    view,
)


def _axis_param(axis: int) -> dict:
    return {} if axis == 1 else {"softmax_param": {"axis": axis}}


@register("Softmax", since=1, until=13, layers=("Softmax", "Reshape"))
def softmax_v1(node, ctx):
    """Softmax over the flattened block of axes [axis:] (opset < 13): Reshape to 2-D, Softmax axis 1, Reshape back."""
    x, y = node.input(0), node.output(0)
    shape = ctx.shape(x)
    if not shape:
        node.reject("a scalar input has no axis to normalise")
    axis = norm_axis(node, node.attr("axis", 1), len(shape))
    if math.prod(shape[axis + 1 :]) == 1:
        # only one non-trivial axis in the block: the same as a softmax over that axis alone
        return [ctx.layer(node.name, "Softmax", [ctx.blob(x)], [ctx.blob(y)], **_axis_param(axis))]
    rows, cols = math.prod(shape[:axis]), math.prod(shape[axis:])
    flat, prob = fresh(ctx, node, "flat"), fresh(ctx, node, "prob2d")
    return [
        reshape(ctx, flat, ctx.blob(x), flat, (rows, cols)),
        ctx.layer(node.name, "Softmax", [flat], [prob]),  # Caffe's default axis is 1
        reshape(ctx, fresh(ctx, node, "unflat"), prob, ctx.blob(y), shape),
    ]


@register(
    "Softmax",
    since=13,
    layers=("Softmax",),
    notes="Softmax over one axis of any rank (1-D to 6-D tested on both runtimes)",
)
def softmax_v13(node, ctx):
    """Softmax over one axis (opset 13+; negative axes normalised)."""
    x, y = node.input(0), node.output(0)
    shape = ctx.shape(x)
    if not shape:
        node.reject("a scalar input has no axis to normalise")
    axis = norm_axis(node, node.attr("axis", -1), len(shape))
    return [ctx.layer(node.name, "Softmax", [ctx.blob(x)], [ctx.blob(y)], **_axis_param(axis))]


def _log_softmax(node, ctx, shape, axes_from: int, single_axis: bool):
    """log_softmax over axis `axes_from` (single_axis) or over the flattened block [axes_from:], computed like
    onnxruntime: d = x - max, y = d - log(sum(exp(d))). The data is viewed as (A, K, B): the max is a Pooling
    MAX over an (K, 1) window, the sum an InnerProduct / Slice + Eltwise / Convolution with ones
    (_compose.sum_axis), and the (A, 1, B) results are broadcast back by Concat copies (exact)."""
    if single_axis:
        a, k, b = math.prod(shape[:axes_from]), shape[axes_from], math.prod(shape[axes_from + 1 :])
    else:
        a, k, b = math.prod(shape[:axes_from]), math.prod(shape[axes_from:]), 1
    view3 = (a, k, b)
    layers, x3 = view(ctx, node, ctx.blob(node.input(0)), shape, view3, "view")
    more, m, m_shape = pool_axis(ctx, node, x3, view3, a, k, b, "MAX", None, "max")
    layers += more
    more, m = view(ctx, node, m, m_shape, (a, 1, b), "max_kept")
    layers += more
    more, m_b = broadcast_to(ctx, node, m, (a, 1, b), view3, "max_b")
    layers += more
    shifted = fresh(ctx, node, "shifted")
    layers.append(eltwise(ctx, shifted, [x3, m_b], shifted, ELTWISE_SUM, coeff=[1.0, -1.0]))
    e = fresh(ctx, node, "exp")
    layers.append(ctx.layer(e, "Exp", [shifted], [e]))
    more, s, s_shape = sum_axis(ctx, node, e, view3, a, k, b, None, "sum")
    layers += more
    lg = fresh(ctx, node, "log")
    more, s = view(ctx, node, s, s_shape, (a, 1, b), "sum_kept")
    layers += more
    layers.append(ctx.layer(lg, "Log", [s], [lg]))
    more, lg_b = broadcast_to(ctx, node, lg, (a, 1, b), view3, "log_b")
    layers += more
    y3 = fresh(ctx, node, "out")
    layers.append(eltwise(ctx, node.name, [shifted, lg_b], y3, ELTWISE_SUM, coeff=[1.0, -1.0]))
    layers.append(reshape(ctx, fresh(ctx, node, "back"), y3, ctx.blob(node.output(0)), shape))
    return tidy(ctx, node, layers)


_LOG_LAYERS = (
    "Reshape",
    "Pooling",
    "Concat",
    "Eltwise",
    "Exp",
    "InnerProduct",
    "Slice",
    "Convolution",
    "Log",
)


_LOG_NOTES = (
    "x - max - log(sum(exp(x - max))) (onnxruntime's algorithm): Pooling MAX, Exp, ones sum, Log, Concat-copy "
    "broadcasts; exp/log a few ulp, sum order differs (<= K 2^-24 relative)"
)


@register(
    "LogSoftmax",
    since=1,
    until=13,
    layers=_LOG_LAYERS,
    notes="(opset < 13: over the flattened block [axis:]) " + _LOG_NOTES,
)
def log_softmax_v1(node, ctx):
    """LogSoftmax over the flattened block [axis:] (opset < 13): max-shifted exp / sum / log composition."""
    shape = ctx.shape(node.input(0))
    if not shape:
        node.reject("a scalar input has no axis to normalise")
    return _log_softmax(node, ctx, shape, norm_axis(node, node.attr("axis", 1), len(shape)), False)


@register("LogSoftmax", since=13, layers=_LOG_LAYERS, notes=_LOG_NOTES)
def log_softmax_v13(node, ctx):
    """LogSoftmax over one axis (opset 13+): max-shifted exp / sum / log composition."""
    shape = ctx.shape(node.input(0))
    if not shape:
        node.reject("a scalar input has no axis to normalise")
    return _log_softmax(node, ctx, shape, norm_axis(node, node.attr("axis", -1), len(shape)), True)
