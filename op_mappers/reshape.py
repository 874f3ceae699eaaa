"""Flatten, Reshape, Squeeze, Unsqueeze -> Flatten (axis 1) or Reshape with the explicit output dims."""

from __future__ import annotations

from onnx2caffe.registry import register

from ._compose import reshape


def _to_shape(node, ctx):
    x, y = node.inputs[0], node.outputs[0]
    out = ctx.shape(y)
    if len(out) == 0:
        node.reject("a rank-0 (scalar) output has no Caffe blob form")
    if any(d == 0 for d in out):
        node.reject(f"empty output shape {out}")
    return [reshape(ctx, node.name, ctx.blob(x), ctx.blob(y), out)]


@register("Flatten", since=1, layers=("Flatten", "Reshape"))
def flatten(node, ctx):
    """Flatten: axis 1 -> Flatten; other axes -> Reshape with explicit dims."""
    x, y = node.inputs[0], node.outputs[0]
    axis = int(node.attr("axis", 1))
    rank = len(ctx.shape(x))
    if axis < 0:
        axis += rank
    if axis == 1:
        return [ctx.layer(node.name, "Flatten", [ctx.blob(x)], [ctx.blob(y)])]
    return _to_shape(node, ctx)


@register("Reshape", since=1, layers=("Reshape",))
def reshape_op(node, ctx):
    """Reshape with a constant shape -> Reshape with the explicit output dims (from shape inference)."""
    if node.opset >= 5:
        if not ctx.is_const(node.input(1)):
            node.reject("the shape input is not a constant")
        node.ignore_attr("allowzero", "the output dims come from shape inference, which applies it")
    else:
        node.ignore_attr("shape", "the output dims come from shape inference")
        node.ignore_attr("consumed_inputs", "legacy optimisation hint")
    return _to_shape(node, ctx)


@register("Squeeze", since=1, layers=("Reshape",))
def squeeze(node, ctx):
    """Squeeze -> Reshape with the explicit output dims."""
    if node.opset >= 13 and node.input(1) and not ctx.is_const(node.input(1)):
        node.reject("the axes input is not a constant")
    node.ignore_attr("axes", "the output dims come from shape inference")
    return _to_shape(node, ctx)


@register("Unsqueeze", since=1, layers=("Reshape",))
def unsqueeze(node, ctx):
    """Unsqueeze -> Reshape with the explicit output dims."""
    if node.opset >= 13 and not ctx.is_const(node.input(1)):
        node.reject("the axes input is not a constant")
    node.ignore_attr("axes", "the output dims come from shape inference")
    return _to_shape(node, ctx)
