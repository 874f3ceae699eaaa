"""LayerNorm2d as torchvision / timm / smp write it -> one onnx2caffe::LayerNorm over the channel axis (mapped by
op_mappers/layer_norm.py with 1x1 Convolutions, no transposes):

    t = Transpose(x, perm=(0, 2, ..., r-1, 1))                      channels last
    n = LayerNormalization(t, scale, [bias], axis=-1)               or onnx2caffe::LayerNorm(axes=[r-1]) from
                                                                    the fuse_layer_norm pass (opset < 17)
    y = Transpose(n, perm=(0, r-1, 1, ..., r-2))                    channels first again

Normalising the last axis of the channels-last tensor is normalising axis 1 of x, value for value, and scale /
bias (one per channel) apply the same way: the fused node computes exactly the same function. t and n must be
read by the next node alone and not be graph outputs; LayerNormalization's Mean / InvStdDev must be unused.
"""

from __future__ import annotations

import numpy as np

from .fuse_l2_normalize import _attrs, _private, _std, replace_with_custom
from .fuse_layer_norm import _unique

NAME = "fuse_transposed_layer_norm"
DESCRIPTION = (
    "fuse Transpose(to channels last) + LayerNorm(last axis) + Transpose(back) into a channel-axis "
    "onnx2caffe::LayerNorm"
)


def _match(graph, back):
    if back.op_type != "Transpose" or not _std(back):
        return None
    norm = graph.producer(back.input[0])
    if norm is None or not _private(graph, back.input[0], back):
        return None
    front = graph.producer(norm.input[0]) if norm.input else None
    if (
        front is None
        or front.op_type != "Transpose"
        or not _std(front)
        or not _private(graph, norm.input[0], norm)
    ):
        return None
    x = front.input[0]
    shape = graph.shape(x)
    if shape is None or len(shape) < 3:
        return None
    rank = len(shape)
    to_last = [0, *range(2, rank), 1]
    to_first = [0, rank - 1, *range(1, rank - 1)]
    if list(_attrs(front).get("perm", [])) != to_last or list(_attrs(back).get("perm", [])) != to_first:
        return None
    attrs = _attrs(norm)
    if norm.op_type == "LayerNormalization" and _std(norm):
        if attrs.get("axis", -1) % rank != rank - 1 or attrs.get("stash_type", 1) != 1:
            return None
        if any(o and (graph.consumers(o) or graph.is_graph_output(o)) for o in norm.output[1:]):
            return None
    elif norm.op_type == "LayerNorm" and norm.domain == "onnx2caffe":
        if [a % rank for a in attrs.get("axes", [])] != [rank - 1]:
            return None
    else:
        return None
    eps = float(attrs.get("epsilon", 1e-5))
    params = []
    for i in (1, 2):
        name = norm.input[i] if len(norm.input) > i else ""
        if not name:
            params.append(None)
            continue
        value = graph.const(name)
        if value is None:
            return None
        try:
            params.append(np.ascontiguousarray(np.broadcast_to(np.asarray(value, np.float32), (shape[1],))))
        except ValueError:
            return None
    return x, eps, params, [front, norm]


def run(graph) -> bool:
    changed = False
    for back in graph.nodes:
        found = _match(graph, back)
        if found is None:
            continue
        x, eps, params, removed = found
        inputs = [x]
        for key, value in zip(("scale", "bias"), params, strict=True):
            if value is None:
                inputs.append("")
                continue
            name = _unique(graph, f"{back.name or back.output[0]}/ln_{key}")
            graph.set_initializer(name, value)
            inputs.append(name)
        while inputs[-1] == "":
            inputs.pop()
        replace_with_custom(graph, back, "LayerNorm", inputs, removed, axes=[1], epsilon=eps)
        graph.remove_unused_initializers()
        changed = True
        graph.refresh()
    return changed
