"""Concat of activations (and constant tensors) -> Concat.

A constant input becomes an exact constant blob (_compose.constant_blob: InnerProduct of a shared exact 1 with
the values as weights, value * 1 exact on both runtimes), since Caffe has no constant layer OpenCV also loads.
"""

from __future__ import annotations

import numpy as np

from onnx2caffe.registry import register

from ._compose import constant_blob


@register("Concat", since=1, layers=("Concat", "InnerProduct", "Reshape"))
def concat(node, ctx):
    """Concat along any axis (negative axes normalised) -> Concat; constant inputs as exact constant blobs."""
    inputs = [t for t in node.inputs if t]
    rank = len(ctx.shape(node.outputs[0]))
    axis = int(node.attr("axis", 1))  # opset < 4 defaults to 1
    if axis < 0:
        axis += rank
    if not 0 <= axis < rank:
        node.reject_attr("axis", axis, f"out of range for rank {rank}")
    if all(ctx.is_const(t) for t in inputs):
        node.reject("every input is a constant (not folded)")
    layers, bottoms = [], []
    for i, t in enumerate(inputs):
        value = ctx.const(t)
        if value is None:
            bottoms.append(ctx.blob(t))
            continue
        if value.dtype != np.float32:
            node.reject(f"constant input {t} is {value.dtype} (Caffe blobs are float32)")
        if value.ndim != rank:
            node.reject(f"constant input {t} has rank {value.ndim}, the output rank {rank}")
        if value.size == 0:
            continue  # an empty piece adds nothing
        more, blob = constant_blob(ctx, node, value, f"const{i}")
        layers += more
        bottoms.append(blob)
    p = {} if axis == 1 else {"concat_param": {"axis": axis}}
    return layers + [ctx.layer(node.name, "Concat", bottoms, [ctx.blob(node.outputs[0])], **p)]
