"""Softmax -> Caffe Softmax (one axis); before opset 13 the 2-D coercion is composed with Reshapes.
LogSoftmax -> the same max-shifted algorithm as onnxruntime from Pooling MAX / Exp / ones-Convolution / Log
(Softmax followed by Log would underflow to -inf where the exact result is finite)."""

from __future__ import annotations

import math

import numpy as np

from onnx2caffe.registry import register

from ._compose import ELTWISE_SUM, eltwise, fresh, norm_axis, reshape


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


@register("Softmax", since=13, layers=("Softmax",))
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
    onnxruntime: d = x - max, y = d - log(sum(exp(d))). The data is viewed as (A, 1, K, B) so that the max is a
    Pooling MAX and the sum a Convolution with a (K, 1) window of ones; Deconvolutions with ones broadcast the
    (A, 1, 1, B) results back (x * 1.0: exact)."""
    if single_axis:
        a, k, b = math.prod(shape[:axes_from]), shape[axes_from], math.prod(shape[axes_from + 1 :])
    else:
        a, k, b = math.prod(shape[:axes_from]), math.prod(shape[axes_from:]), 1
    ones = np.ones((1, 1, k, 1), np.float32)
    window = {"kernel_h": k, "kernel_w": 1}
    names = {
        s: fresh(ctx, node, s)
        for s in ("view", "max", "max_b", "shifted", "exp", "sum", "log", "log_b", "out")
    }
    x4, y4 = names["view"], names["out"]
    return [
        reshape(ctx, x4, ctx.blob(node.input(0)), x4, (a, 1, k, b)),
        ctx.layer(names["max"], "Pooling", [x4], [names["max"]], pooling_param={"pool": "MAX", **window}),
        ctx.layer(
            names["max_b"],
            "Deconvolution",
            [names["max"]],
            [names["max_b"]],
            blobs=[ones],
            convolution_param={"num_output": 1, "bias_term": False, **window},
        ),
        eltwise(
            ctx, names["shifted"], [x4, names["max_b"]], names["shifted"], ELTWISE_SUM, coeff=[1.0, -1.0]
        ),
        ctx.layer(names["exp"], "Exp", [names["shifted"]], [names["exp"]]),
        ctx.layer(
            names["sum"],
            "Convolution",
            [names["exp"]],
            [names["sum"]],
            blobs=[ones],
            convolution_param={"num_output": 1, "bias_term": False, **window},
        ),
        ctx.layer(names["log"], "Log", [names["sum"]], [names["log"]]),
        ctx.layer(
            names["log_b"],
            "Deconvolution",
            [names["log"]],
            [names["log_b"]],
            blobs=[ones],
            convolution_param={"num_output": 1, "bias_term": False, **window},
        ),
        eltwise(ctx, node.name, [names["shifted"], names["log_b"]], y4, ELTWISE_SUM, coeff=[1.0, -1.0]),
        reshape(ctx, fresh(ctx, node, "back"), y4, ctx.blob(node.output(0)), shape),
    ]


_LOG_LAYERS = ("Reshape", "Pooling", "Deconvolution", "Eltwise", "Exp", "Convolution", "Log")


@register("LogSoftmax", since=1, until=13, layers=_LOG_LAYERS)
def log_softmax_v1(node, ctx):
    """LogSoftmax over the flattened block [axis:] (opset < 13): max-shifted exp / sum / log composition."""
    shape = ctx.shape(node.input(0))
    if not shape:
        node.reject("a scalar input has no axis to normalise")
    return _log_softmax(node, ctx, shape, norm_axis(node, node.attr("axis", 1), len(shape)), False)


@register("LogSoftmax", since=13, layers=_LOG_LAYERS)
def log_softmax_v13(node, ctx):
    """LogSoftmax over one axis (opset 13+): max-shifted exp / sum / log composition."""
    shape = ctx.shape(node.input(0))
    if not shape:
        node.reject("a scalar input has no axis to normalise")
    return _log_softmax(node, ctx, shape, norm_axis(node, node.attr("axis", -1), len(shape)), True)
