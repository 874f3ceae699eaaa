"""Add, Sub, Mul, Div, Max -> Eltwise (same shapes), Scale (constants, broadcast gates) or Power (scalars).

- two activations of the output's shape: Eltwise SUM (Sub: coeff 1, -1), PROD, MAX; Div is refused (Caffe has no
  division, and a reciprocal then a product rounds twice);
- Mul by an activation broadcast over a contiguous run of axes (an SE gate (N, C, 1, 1)): Reshape of the gate to
  that run + two-bottom Scale;
- one constant operand c: Power(scale, shift) when c is one value, else Scale with a blob covering the run of
  axes where c varies (BVLC's Bias layer is not in OpenCV, so a constant add is Scale with unit scale and a
  bias). x - c, c - x and x * c are exact; x / c is x * (1/c) (1/c rounded once in float64 -> float32: within
  one float32 rounding of onnxruntime); c / x is refused;
- Max(x, 0) -> ReLU; Max with another constant is refused.
"""

from __future__ import annotations

import numpy as np

from onnx2caffe.registry import register

from ._compose import fresh, power, reshape

_LAYERS = ("Eltwise", "Scale", "Power", "Reshape")


def _run(shape_aligned, out_shape):
    """(first, last) axes of the smallest contiguous run holding every axis where `shape_aligned` is not 1."""
    idx = [i for i, d in enumerate(shape_aligned) if d != 1]
    if not idx:
        ones = [i for i, d in enumerate(out_shape) if d == 1]
        return (ones[0], ones[0]) if ones else None
    return idx[0], idx[-1]


def _scale_layer(node, ctx, x, y, scale, bias, out_shape):
    """y = x * scale + bias with scale/bias arrays broadcastable to out_shape (bias may be None)."""
    rank = len(out_shape)
    arrays = [
        np.broadcast_to(
            np.asarray(a, np.float64).reshape((1,) * (rank - np.ndim(a)) + np.shape(a)), out_shape
        )
        for a in (scale, bias)
        if a is not None
    ]
    varying = [i for i in range(rank) if any(np.ptp(a, axis=i).any() for a in arrays)]
    if varying:
        first, last = varying[0], varying[-1]
    else:
        first = last = rank - 1
    index = tuple(slice(None) if first <= i <= last else 0 for i in range(rank))
    blobs = [np.ascontiguousarray(a[index], dtype=np.float32) for a in arrays]
    p = {}
    if first != 1:
        p["axis"] = first
    if last - first + 1 != 1:
        p["num_axes"] = last - first + 1
    if bias is not None:
        p["bias_term"] = True
    return [ctx.layer(node.name, "Scale", [ctx.blob(x)], [ctx.blob(y)], blobs=blobs, scale_param=p)]


def _with_constant(node, ctx, op, x, c, const_first):
    y = node.outputs[0]
    out_shape = ctx.shape(y)
    if ctx.shape(x) != out_shape:
        node.reject(
            f"the constant of shape {c.shape} broadcasts the output {out_shape} beyond the activation {ctx.shape(x)}"
        )
    c64 = np.asarray(c, np.float64)
    if op == "Add":
        scale, bias = 1.0, c64
    elif op == "Sub":
        scale, bias = (-1.0, c64) if const_first else (1.0, -c64)
    elif op == "Mul":
        scale, bias = c64, None
    elif op == "Div":
        if const_first:
            node.reject("constant / activation needs a reciprocal and a product (two roundings)")
        with np.errstate(divide="ignore"):
            scale, bias = 1.0 / c64, None
    else:  # Max
        if c64.size and np.all(c64 == 0):
            return [ctx.layer(node.name, "ReLU", [ctx.blob(x)], [ctx.blob(y)])]
        node.reject("Max with a non-zero constant has no exact single-rounding Caffe form")
    scalars = [np.asarray(v) for v in (scale, bias) if v is not None]
    if all(v.size >= 1 and np.all(v == v.reshape(-1)[0]) for v in scalars):
        s = float(np.asarray(scale).reshape(-1)[0])
        t = 0.0 if bias is None else float(np.asarray(bias).reshape(-1)[0])
        return [power(ctx, node.name, ctx.blob(x), ctx.blob(y), scale=s, shift=t)]
    if bias is not None and np.ndim(scale) == 0:
        scale = np.full(np.shape(bias), float(scale))
    return _scale_layer(node, ctx, x, y, scale, bias, out_shape)


def _legacy_broadcast(node, ctx, b, cb):
    """Opset < 7 `broadcast=1, axis=k`: B's dims line up with A's from axis k (not from the right)."""
    node.ignore_attr("consumed_inputs", "legacy optimisation hint")
    if node.opset >= 7:
        return cb
    broadcast = int(node.attr("broadcast", 0))
    axis = node.attr("axis", None)
    if not broadcast or axis is None:
        return cb
    rank = len(ctx.shape(node.outputs[0]))
    axis = axis + rank if axis < 0 else axis
    if cb is None:
        if ctx.shape(b) != ctx.shape(node.outputs[0]):
            node.reject_attr("axis", axis, "legacy broadcast of an activation")
        return None
    return cb.reshape((1,) * axis + cb.shape + (1,) * (rank - axis - cb.ndim))


def _binary(node, ctx, op):
    a, b = node.inputs[0], node.inputs[1]
    y = node.outputs[0]
    ca, cb = ctx.const(a), _legacy_broadcast(node, ctx, b, ctx.const(b))
    dtype = ctx.dtype(y)
    if dtype is not None and dtype != np.float32:
        node.reject(f"{dtype} arithmetic (Caffe blobs are float32)")
    if ca is not None and cb is not None:
        node.reject("both operands are constants (not folded)")
    if ca is not None:
        return _with_constant(node, ctx, op, b, ca, True)
    if cb is not None:
        return _with_constant(node, ctx, op, a, cb, False)
    out_shape = ctx.shape(y)
    sa, sb = ctx.shape(a), ctx.shape(b)
    if sa == sb == out_shape:
        if op == "Div":
            node.reject("division of two activations has no exact Caffe form")
        operation, coeff = {
            "Add": ("SUM", None),
            "Sub": ("SUM", [1.0, -1.0]),
            "Mul": ("PROD", None),
            "Max": ("MAX", None),
        }[op]
        p = {"operation": operation}
        if coeff:
            p["coeff"] = coeff
        return [ctx.layer(node.name, "Eltwise", [ctx.blob(a), ctx.blob(b)], [ctx.blob(y)], eltwise_param=p)]
    if op != "Mul":
        node.reject(f"broadcasting between activations {sa} and {sb} has no exact Caffe form for {op}")
    big, small = (a, b) if sa == out_shape else (b, a) if sb == out_shape else (None, None)
    if big is None:
        node.reject(f"both operands {sa}, {sb} are broadcast")
    ss = ctx.shape(small)
    rank = len(out_shape)
    aligned = (1,) * (rank - len(ss)) + tuple(ss)
    run = _run(aligned, out_shape)
    if run is None or any(aligned[i] != out_shape[i] for i in range(run[0], run[1] + 1)):
        node.reject(f"the gate {ss} does not cover a contiguous run of axes of {out_shape}")
    first, last = run
    target = tuple(out_shape[first : last + 1])
    layers = []
    gate = ctx.blob(small)
    if tuple(ss) != target:
        gate = fresh(ctx, node, "gate")
        layers.append(reshape(ctx, gate, ctx.blob(small), gate, target))
    p = {} if first == 1 else {"axis": first}
    if len(target) != 1:
        p["num_axes"] = len(target)
    layers.append(ctx.layer(node.name, "Scale", [ctx.blob(big), gate], [ctx.blob(y)], scale_param=p))
    return layers


@register("Add", since=1, layers=_LAYERS)
def add(node, ctx):
    """Add -> Eltwise SUM; + constant -> Power shift / Scale with unit scale and bias."""
    return _binary(node, ctx, "Add")


@register("Sub", since=1, layers=_LAYERS)
def sub(node, ctx):
    """Sub -> Eltwise SUM coeff (1, -1); with a constant -> Power / Scale."""
    return _binary(node, ctx, "Sub")


@register("Mul", since=1, layers=_LAYERS)
def mul(node, ctx):
    """Mul -> Eltwise PROD; broadcast gate -> Reshape + Scale (2 bottoms); constant -> Power / Scale."""
    return _binary(node, ctx, "Mul")


@register("Div", since=1, layers=("Power", "Scale"))
def div(node, ctx):
    """Div by a constant -> Power / Scale by the reciprocal; activation / activation is refused."""
    return _binary(node, ctx, "Div")


@register("Max", since=1, layers=("Eltwise", "ReLU"))
def max_(node, ctx):
    """Max of same-shape activations -> Eltwise MAX; Max(x, 0) -> ReLU."""
    node.ignore_attr("consumed_inputs", "legacy optimisation hint")
    inputs = [t for t in node.inputs if t]
    if len(inputs) == 1:
        return [ctx.layer(node.name, "Split", [ctx.blob(inputs[0])], [ctx.blob(node.outputs[0])])]
    if len(inputs) == 2:
        return _binary(node, ctx, "Max")
    out_shape = ctx.shape(node.outputs[0])
    for t in inputs:
        if ctx.is_const(t) or ctx.shape(t) != out_shape:
            node.reject("Max of more than two inputs needs activations of one shape")
    return [
        ctx.layer(
            node.name,
            "Eltwise",
            [ctx.blob(t) for t in inputs],
            [ctx.blob(node.outputs[0])],
            eltwise_param={"operation": "MAX"},
        )
    ]
