"""Where with a constant condition -> copies where the condition is uniform, else one Scale per activation
operand (the mask as its learned multiplier, the constant operand's selected values as its bias).

    y = where(c, a, b) = a * m + b * (1 - m) (+ the constant operand's values where selected),  m = c as 0 / 1

Each product is a * 1 (exact) or a * 0 (exactly 0 for a finite a), each sum adds exact zeros: y is bit-exact for
finite operands. A non-finite entry at a position NOT selected turns that output into NaN (inf * 0); a masked
fill with a constant (attention masks: where(mask, -inf / -100, scores)) never multiplies the constant. A
condition computed at run time has no exact Caffe select and is refused.
"""

from __future__ import annotations

import numpy as np

from onnx2caffe.registry import register

from ._compose import ELTWISE_SUM, broadcast_to, eltwise_nd, fresh, identity, scale_bias, silence, tidy


def _full(ctx, node, t, out_shape, tag):
    shape = tuple(ctx.shape(t))
    if shape == tuple(out_shape):
        return [], ctx.blob(t)
    return broadcast_to(ctx, node, ctx.blob(t), shape, out_shape, tag)


@register(
    "Where",
    since=9,
    layers=("Scale", "Eltwise", "Concat", "Reshape", "Power"),
    notes="constant condition: a uniform one selects by copies; otherwise Scale(a, mask) [+ Scale(b, 1 - mask)] "
    "with the constant operand as the bias: exact for finite inputs (inf / NaN in an unselected entry give NaN); "
    "a computed condition is refused",
)
def where(node, ctx):
    """Where(constant condition, a, b) -> copies or masked Scale layers (see the module docstring)."""
    c, a, b = node.input(0), node.input(1), node.input(2)
    y = node.output(0)
    cond = ctx.const(c)
    if cond is None:
        node.reject("the condition is computed at run time (Caffe has no exact select by a run-time mask)")
    out_shape = tuple(ctx.shape(y))
    if not out_shape:
        node.reject("a rank-0 (scalar) output has no Caffe blob form")
    dtype = ctx.dtype(y)
    if dtype is not None and dtype != np.float32:
        node.reject(f"{dtype} output (Caffe blobs are float32)")
    if ctx.is_const(a) and ctx.is_const(b):
        node.reject("every input is a constant (not folded)")
    mask = np.broadcast_to(np.asarray(cond, bool), out_shape)
    top = ctx.blob(y)
    for value, t, other in ((True, a, b), (False, b, a)):
        if np.all(mask == value) and not ctx.is_const(t):
            layers, blob = _full(ctx, node, t, out_shape, "bcast")
            # the unselected operand is not read: a Silence keeps it from becoming a net output
            unused = [] if ctx.is_const(other) else [ctx.blob(other)]
            return tidy(
                ctx, node, layers + [identity(ctx, node.name, blob, top)] + silence(ctx, node, unused)
            )
    m = mask.astype(np.float64)
    bias = np.zeros(out_shape, np.float64)
    terms = []
    for t, weight in ((a, m), (b, 1.0 - m)):
        value = ctx.const(t)
        if value is not None:
            bias += np.where(weight > 0, np.broadcast_to(np.asarray(value, np.float64), out_shape), 0.0)
        else:
            terms.append((t, weight))
    layers: list = []
    outs = []
    for i, (t, weight) in enumerate(terms):
        more, blob = _full(ctx, node, t, out_shape, f"bcast{i}")
        layers += more
        last = i == len(terms) - 1
        out = top if len(terms) == 1 else fresh(ctx, node, f"masked{i}")
        name = node.name if len(terms) == 1 else out
        layers += scale_bias(ctx, name, blob, out, weight, bias if last and bias.any() else None, out_shape)
        outs.append(out)
    if len(outs) > 1:
        layers += eltwise_nd(ctx, node, outs, top, out_shape, ELTWISE_SUM, name=node.name)
    return tidy(ctx, node, layers)
