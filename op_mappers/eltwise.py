"""Add, Sub, Mul, Div, Max, Min and the variadic Sum, Mean, Max, Min, with numpy broadcasting on any axes and
constant operands -> Eltwise, Scale, Power, with Concat copies for broadcasting.

Two activations:
- Add, Sub (Eltwise SUM, coeff 1, -1), Max (Eltwise MAX), Min (-max(-a, -b): negation is exact): operands of
  another shape are first broadcast to the output by Concat copies (bit-exact; see _compose.broadcast_to).
- Mul: Scale with two bottoms when one operand varies over a contiguous run of the output's axes only (an SE
  gate (N, C, 1, 1), a spatial gate (1, 1, H, W)): it multiplies without materialising the broadcast; the other
  operand is broadcast to the output first if needed. Otherwise Eltwise PROD of the broadcast operands.
- Div: a / b = a * (1 / b): Power -1 then the product - two float32 roundings where onnxruntime rounds once,
  |error| <= 2 ulp (2^-23 relative) per element (1 / b itself is correctly rounded on both runtimes).
  Division by zero gives +-inf, 0 / 0 NaN, like onnxruntime; |b| < 2^-126 (subnormal) overflows 1 / b to inf.
One constant operand c:
- x + c, x - c, c - x, x * c: Power (c a single value) or Scale with a learned blob over the run of axes where c
  varies (BVLC's Bias is not in OpenCV: an add is a unit Scale with a bias): one rounding, as onnxruntime.
- x / c: x * (1 / c) with 1 / c computed in float64 then rounded: within one float32 rounding of onnxruntime.
- c / x: Power -1 then the Scale by c (two roundings, as Div above).
- Max / Min with c: ReLU for Max(x, 0), else Eltwise with the constant produced exactly (filled_like for one
  value, else _compose.constant_blob broadcast by Concat copies).
- When c broadcasts the output beyond x's shape (a constant grid added to a smaller activation), x is first
  broadcast to the output shape.
Sum / Mean / Max / Min of n inputs: Eltwise over the broadcast inputs (constants as exact constant blobs); Mean
is the Eltwise SUM scaled by Power 1/n (one rounding more than onnxruntime's sum / n). OpenCV's Eltwise takes
at most 5 axes: higher ranks are viewed flat around it.
"""

from __future__ import annotations

import numpy as np

from onnx2caffe.registry import register

from ._compose import (
    ELTWISE_MAX,
    ELTWISE_PROD,
    ELTWISE_SUM,
    broadcast_cost,
    broadcast_shape,
    broadcast_to,
    constant_blob,
    eltwise_nd,
    filled_like,
    fresh,
    power,
    scale_bias,
    tidy,
    view,
)

_LAYERS = ("Eltwise", "Scale", "Power", "Reshape", "Concat", "ReLU")


def _gate_run(shape, out_shape):
    """(first, last) when `shape` (rank-aligned to out_shape) equals out_shape on a contiguous run of axes and
    is 1 elsewhere, so a two-bottom Scale broadcasts it over the axes before and after; else None."""
    r = len(out_shape)
    aligned = (1,) * (r - len(shape)) + tuple(shape)
    idx = [i for i in range(r) if aligned[i] != 1]
    if not idx:
        return (r - 1, r - 1) if out_shape[-1] == 1 else None
    first, last = idx[0], idx[-1]
    if all(aligned[i] == out_shape[i] for i in range(first, last + 1)):
        return first, last
    return None


def _full(ctx, node, blob, shape, out_shape, tag):
    """`blob` broadcast to out_shape (layers, blob)."""
    if tuple(shape) == tuple(out_shape):
        return [], blob
    return broadcast_to(ctx, node, blob, shape, out_shape, tag)


def _negated(ctx, node, blob, tag):
    out = fresh(ctx, node, tag)
    return [power(ctx, out, blob, out, scale=-1.0)], out


def _product(ctx, node, a, sa, b, sb, top, out_shape):
    """top = a * b (activations, broadcast): Scale with a gate where one operand is a gate, else Eltwise PROD."""
    choices = []
    for gate, gs, big, bs in ((b, sb, a, sa), (a, sa, b, sb)):
        run = _gate_run(gs, out_shape)
        if run is not None:
            choices.append((broadcast_cost(bs, out_shape), gate, gs, big, bs, run))
    if choices:
        _, gate, gs, big, bs, (first, last) = min(choices, key=lambda c: c[0])
        layers, big_full = _full(ctx, node, big, bs, out_shape, "bcast")
        more, g = view(ctx, node, gate, gs, tuple(out_shape[first : last + 1]), "gate")
        layers += more
        p = {} if first == 1 else {"axis": first}
        layers.append(ctx.layer(node.name, "Scale", [big_full, g], [top], scale_param=p))
        return layers
    layers, fa = _full(ctx, node, a, sa, out_shape, "a_bcast")
    more, fb = _full(ctx, node, b, sb, out_shape, "b_bcast")
    layers += more
    return layers + eltwise_nd(ctx, node, [fa, fb], top, out_shape, ELTWISE_PROD, name=node.name)


def _two_activations(node, ctx, op, a, sa, b, sb, top, out_shape):
    if op == "Mul":
        return _product(ctx, node, a, sa, b, sb, top, out_shape)
    if op == "Div":
        inv = fresh(ctx, node, "reciprocal")
        layers = [power(ctx, inv, b, inv, power=-1.0)]
        return layers + _product(ctx, node, a, sa, inv, sb, top, out_shape)
    layers = []
    if op == "Min":
        more, a = _negated(ctx, node, a, "a_neg")
        layers += more
        more, b = _negated(ctx, node, b, "b_neg")
        layers += more
    more, fa = _full(ctx, node, a, sa, out_shape, "a_bcast")
    layers += more
    more, fb = _full(ctx, node, b, sb, out_shape, "b_bcast")
    layers += more
    operation, coeff = {
        "Add": (ELTWISE_SUM, None),
        "Sub": (ELTWISE_SUM, [1.0, -1.0]),
        "Max": (ELTWISE_MAX, None),
        "Min": (ELTWISE_MAX, None),
    }[op]
    if op == "Min":
        mx = fresh(ctx, node, "negmax")
        layers += eltwise_nd(ctx, node, [fa, fb], mx, out_shape, operation, coeff, node.name)
        return layers + [power(ctx, fresh(ctx, node, "min"), mx, top, scale=-1.0)]
    return layers + eltwise_nd(ctx, node, [fa, fb], top, out_shape, operation, coeff, node.name)


def _with_constant(node, ctx, op, x, sx, c, const_first, top, out_shape):
    layers, x = _full(ctx, node, x, sx, out_shape, "bcast")
    c64 = np.asarray(c, np.float64)
    if op in ("Max", "Min"):
        if op == "Max" and c64.size and np.all(c64 == 0):
            return layers + [ctx.layer(node.name, "ReLU", [x], [top])]
        if c64.size and np.all(c64 == c64.reshape(-1)[0]):
            more, cb = filled_like(ctx, node, x, float(np.float32(c64.reshape(-1)[0])), "const")
            layers += more
        else:
            more, cb = constant_blob(ctx, node, np.asarray(c, np.float32), "const")
            layers += more
            more, cb = broadcast_to(ctx, node, cb, np.shape(c), out_shape, "const_bcast")
            layers += more
        return layers + _two_activations(node, ctx, op, x, out_shape, cb, out_shape, top, out_shape)
    if op == "Add":
        scale, bias = 1.0, c64
    elif op == "Sub":
        scale, bias = (-1.0, c64) if const_first else (1.0, -c64)
    elif op == "Mul":
        scale, bias = c64, None
    elif const_first:  # c / x = c * (1 / x)
        inv = fresh(ctx, node, "reciprocal")
        layers.append(power(ctx, inv, x, inv, power=-1.0))
        x, scale, bias = inv, c64, None
    else:
        with np.errstate(divide="ignore"):
            scale, bias = 1.0 / c64, None
    if bias is not None and np.ndim(scale) == 0:
        scale = float(scale)
    return layers + scale_bias(ctx, node.name, x, top, scale, bias, out_shape)


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


def _check_dtype(node, ctx, y):
    dtype = ctx.dtype(y)
    if dtype is not None and dtype != np.float32:
        node.reject(f"{dtype} arithmetic (Caffe blobs are float32)")


def _binary(node, ctx, op):
    a, b = node.inputs[0], node.inputs[1]
    y = node.outputs[0]
    ca, cb = ctx.const(a), _legacy_broadcast(node, ctx, b, ctx.const(b))
    _check_dtype(node, ctx, y)
    if ca is not None and cb is not None:
        node.reject("both operands are constants (not folded)")
    out_shape = tuple(ctx.shape(y))
    if not out_shape:
        node.reject("a rank-0 (scalar) output has no Caffe blob form")
    top = ctx.blob(y)
    if ca is not None:
        layers = _with_constant(node, ctx, op, ctx.blob(b), ctx.shape(b), ca, True, top, out_shape)
    elif cb is not None:
        layers = _with_constant(node, ctx, op, ctx.blob(a), ctx.shape(a), cb, False, top, out_shape)
    else:
        sa, sb = tuple(ctx.shape(a)), tuple(ctx.shape(b))
        broadcast_shape(node, sa, sb)
        layers = _two_activations(node, ctx, op, ctx.blob(a), sa, ctx.blob(b), sb, top, out_shape)
    return tidy(ctx, node, layers)


def _variadic(node, ctx, op):
    """Sum / Mean / Max / Min of any number of inputs (broadcast)."""
    node.ignore_attr("consumed_inputs", "legacy optimisation hint")
    inputs = [t for t in node.inputs if t]
    y = node.outputs[0]
    _check_dtype(node, ctx, y)
    out_shape = tuple(ctx.shape(y))
    if not out_shape:
        node.reject("a rank-0 (scalar) output has no Caffe blob form")
    top = ctx.blob(y)
    if len(inputs) == 2 and op != "Mean":
        return _binary(node, ctx, {"Sum": "Add"}.get(op, op))
    if all(ctx.is_const(t) for t in inputs):
        node.reject("every input is a constant (not folded)")
    if len(inputs) == 1:
        return [ctx.layer(node.name, "Split", [ctx.blob(inputs[0])], [top])]
    layers, full = [], []
    for i, t in enumerate(inputs):
        value = ctx.const(t)
        if value is not None:
            more, blob = constant_blob(ctx, node, np.asarray(value, np.float32), f"const{i}")
            shape = np.shape(value) or (1,)
        else:
            more, blob, shape = [], ctx.blob(t), tuple(ctx.shape(t))
        layers += more
        if op == "Min":
            more, blob = _negated(ctx, node, blob, f"neg{i}")
            layers += more
        more, blob = _full(ctx, node, blob, shape, out_shape, f"bcast{i}")
        layers += more
        full.append(blob)
    operation = ELTWISE_SUM if op in ("Sum", "Mean") else ELTWISE_MAX
    if op == "Sum" or op == "Max":
        return tidy(
            ctx, node, layers + eltwise_nd(ctx, node, full, top, out_shape, operation, name=node.name)
        )
    mid = fresh(ctx, node, "sum" if op == "Mean" else "negmax")
    layers += eltwise_nd(ctx, node, full, mid, out_shape, operation, name=node.name)
    scale = 1.0 / len(full) if op == "Mean" else -1.0
    layers.append(power(ctx, fresh(ctx, node, "scale"), mid, top, scale=scale))
    return tidy(ctx, node, layers)


@register(
    "Add",
    since=1,
    layers=_LAYERS,
    notes="Eltwise SUM (operands broadcast by Concat copies); + constant -> Power / Scale with bias; exact",
)
def add(node, ctx):
    """Add -> Eltwise SUM (broadcast by Concat copies); + constant -> Power shift / Scale with a bias."""
    return _binary(node, ctx, "Add")


@register(
    "Sub",
    since=1,
    layers=_LAYERS,
    notes="Eltwise SUM coeff (1, -1) (broadcast by copies); constant -> Power / Scale",
)
def sub(node, ctx):
    """Sub -> Eltwise SUM coeff (1, -1); with a constant -> Power / Scale."""
    return _binary(node, ctx, "Sub")


@register(
    "Mul",
    since=1,
    layers=_LAYERS,
    notes="two-bottom Scale for a gate over a run of axes, else Eltwise PROD (broadcast by copies); constant -> "
    "Power / Scale; exact",
)
def mul(node, ctx):
    """Mul -> two-bottom Scale (gates) or Eltwise PROD (broadcast by copies); constant -> Power / Scale."""
    return _binary(node, ctx, "Mul")


@register(
    "Div",
    since=1,
    layers=_LAYERS,
    notes="a / b = a * (1 / b): Power -1 then Scale / Eltwise PROD, |err| <= 2 ulp (Power -1 is a pow() per "
    "entry on OpenCV: ~30 ns); / constant -> Scale by 1 / c (1 ulp)",
)
def div(node, ctx):
    """Div -> reciprocal (Power -1) then product (two roundings: <= 2 ulp); / constant -> Scale by 1 / c."""
    return _binary(node, ctx, "Div")


@register(
    "Max", since=1, layers=_LAYERS, notes="Eltwise MAX of the broadcast inputs; Max(x, 0) -> ReLU; exact"
)
def max_(node, ctx):
    """Max of any number of inputs -> Eltwise MAX (broadcast by copies); Max(x, 0) -> ReLU (exact)."""
    return _variadic(node, ctx, "Max")


@register("Min", since=1, layers=_LAYERS, notes="-max(-x, -y, ...): Power -1, Eltwise MAX, Power -1; exact")
def min_(node, ctx):
    """Min of any number of inputs -> -max(-a, -b, ...) (exact)."""
    return _variadic(node, ctx, "Min")


@register(
    "Sum", since=1, layers=_LAYERS, notes="Eltwise SUM of the broadcast inputs (sum order as onnxruntime)"
)
def sum_(node, ctx):
    """Sum of any number of inputs -> Eltwise SUM (broadcast by copies)."""
    return _variadic(node, ctx, "Sum")


@register(
    "Mean", since=1, layers=_LAYERS, notes="Eltwise SUM then Power 1/n (one rounding more than sum / n)"
)
def mean(node, ctx):
    """Mean of any number of inputs -> Eltwise SUM then Power scale 1/n."""
    return _variadic(node, ctx, "Mean")
