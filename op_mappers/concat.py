"""Concat of activations -> Concat."""

from __future__ import annotations

from onnx2caffe.registry import register


@register("Concat", since=1, layers=("Concat",))
def concat(node, ctx):
    """Concat along any axis (negative axes normalised) -> Concat."""
    inputs = [t for t in node.inputs if t]
    rank = len(ctx.shape(node.outputs[0]))
    axis = int(node.attr("axis", 1))  # opset < 4 defaults to 1
    if axis < 0:
        axis += rank
    if not 0 <= axis < rank:
        node.reject_attr("axis", axis, f"out of range for rank {rank}")
    consts = [t for t in inputs if ctx.is_const(t)]
    if consts:
        node.reject(f"constant input(s) {', '.join(consts)}: Caffe has no constant layer OpenCV also loads")
    p = {} if axis == 1 else {"concat_param": {"axis": axis}}
    return [ctx.layer(node.name, "Concat", [ctx.blob(t) for t in inputs], [ctx.blob(node.outputs[0])], **p)]
