"""Expand -> broadcast by Concat copies (_compose.broadcast_to): bit-exact for any input.

The output shape is numpy's broadcast of the input's shape and the (constant, or folded) shape input. Neighbouring
broadcast axes are merged and each run is one Concat of copies (or a doubling chain when the copied runs are
short); cost: one copy of the output per broadcast run. An Expand that only feeds a broadcasting element-wise op
is removed before mapping (passes/fold_expand_into_eltwise.py), so the op broadcasts without the copy.
"""

from __future__ import annotations

from onnx2caffe.registry import register

from ._compose import broadcast_to, identity, tidy


@register(
    "Expand",
    since=8,
    layers=("Concat", "Reshape", "Power"),
    notes="numpy broadcast by Concat copies of the input (one per merged run of broadcast axes): bit-exact",
)
def expand(node, ctx):
    """Expand -> Concat copies along the broadcast axes (+ Reshape views)."""
    x, y = node.input(0), node.output(0)
    if ctx.is_const(x):
        node.reject("the input is a constant (not folded)")
    in_shape, out_shape = tuple(ctx.shape(x)), tuple(ctx.shape(y))
    if not out_shape:
        node.reject("a rank-0 (scalar) output has no Caffe blob form")
    if in_shape == out_shape:
        return [identity(ctx, node.name, ctx.blob(x), ctx.blob(y))]
    layers, blob = broadcast_to(ctx, node, ctx.blob(x), in_shape, out_shape)
    if not layers:
        return [identity(ctx, node.name, blob, ctx.blob(y))]
    # the last layer writes the node's output under the node's name
    last = layers[-1]
    last.proto.top[0] = ctx.blob(y)
    return tidy(ctx, node, layers)
