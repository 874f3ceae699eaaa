"""Identity / inference Dropout left by the eliminate_identity pass (a graph input or a constant passed straight to
an output) -> Split with one top (an exact copy)."""

from __future__ import annotations

from onnx2caffe.registry import register


def _copy(node, ctx):
    return [ctx.layer(node.name, "Split", [ctx.blob(node.inputs[0])], [ctx.blob(node.outputs[0])])]


@register("Identity", since=1, layers=("Split",))
def identity(node, ctx):
    """Identity that the eliminate_identity pass keeps (input straight to output) -> Split (copy)."""
    return _copy(node, ctx)


@register("Dropout", since=1, layers=("Split",))
def dropout(node, ctx):
    """Dropout in inference mode that the pass keeps -> Split (copy); training mode or a used mask is refused."""
    node.ignore_attr("ratio", "inference: no dropout")
    node.ignore_attr("seed", "inference: no dropout")
    node.ignore_attr("consumed_inputs", "legacy optimisation hint")
    if node.opset < 7 and not node.attr("is_test", 0):
        node.reject_attr("is_test", 0, "training mode")
    mask = node.output(1)
    if mask and (ctx.graph.consumers(mask) or ctx.graph.is_graph_output(mask)):
        node.reject("the mask output has no Caffe form")
    if node.input(2):
        mode = ctx.const(node.input(2))
        if mode is None or bool(mode.reshape(-1)[0]):
            node.reject("training_mode is not a constant false")
    return _copy(node, ctx)
