"""nn.GroupNorm as torch exports it (TorchScript and dynamo alike) -> one onnx2caffe::GroupNorm node (mapped by
op_mappers/group_norm.py: 8-9 layers instead of 13 for the nodes one by one):

    r = Reshape(x, (N, G, -1))                         x: (N, C, ...), G divides C
    n = InstanceNormalization(r, ones(G), zeros(G))    normalise each group
    z = Reshape(n, shape of x)
    [w = Mul(z, gamma)]   [y = Add(w, beta)]           gamma / beta constant per channel

Every step is the same function as the fused node's definition (GroupNormalization-21: per-group statistics,
per-channel affine). r, n, z (and w) must be read by the next node alone and not be graph outputs.
"""

from __future__ import annotations

import numpy as np

from .fuse_l2_normalize import _attrs, _private, _std, replace_with_custom
from .fuse_layer_norm import _other, _unique

NAME = "fuse_group_norm"
DESCRIPTION = (
    "fuse Reshape + InstanceNormalization + Reshape [+ Mul + Add] (torch's GroupNorm) into "
    "onnx2caffe::GroupNorm"
)


def _per_channel(graph, node, tensor: str, shape) -> np.ndarray | None:
    """The constant operand of `node` as (C,) when it varies only along axis 1 of `shape`, else None."""
    other = _other(node, tensor)
    value = None if other is None else graph.const(other)
    if value is None or value.dtype != np.float32 or value.ndim > len(shape):
        return None
    aligned = value.reshape((1,) * (len(shape) - value.ndim) + value.shape)
    if any(d != 1 for i, d in enumerate(aligned.shape) if i != 1) or aligned.shape[1] not in (1, shape[1]):
        return None
    return np.ascontiguousarray(np.broadcast_to(aligned.reshape(-1), (shape[1],)))


def _match(graph, norm):
    if norm.op_type != "InstanceNormalization" or not _std(norm) or len(norm.input) != 3:
        return None
    first = graph.producer(norm.input[0])
    if (
        first is None
        or first.op_type != "Reshape"
        or not _std(first)
        or not _private(graph, norm.input[0], norm)
    ):
        return None
    users = graph.consumers(norm.output[0])
    if len(users) != 1 or users[0].op_type != "Reshape" or not _std(users[0]):
        return None
    second = users[0]
    if graph.is_graph_output(norm.output[0]):
        return None
    x = first.input[0]
    shape, grouped = graph.shape(x), graph.shape(norm.input[0])
    if (
        shape is None
        or grouped is None
        or len(shape) < 3
        or len(grouped) != 3
        or graph.dtype(x) != np.float32
    ):
        return None
    n, c = shape[0], shape[1]
    groups = grouped[1]
    if grouped[0] != n or groups <= 0 or c % groups or graph.shape(second.output[0]) != shape:
        return None
    scale, bias = graph.const(norm.input[1]), graph.const(norm.input[2])
    if scale is None or bias is None or not np.all(scale == 1) or not np.all(bias == 0):
        return None
    eps = float(_attrs(norm).get("epsilon", 1e-5))
    return x, shape, groups, eps, [first, norm]


def run(graph) -> bool:
    changed = False
    for norm in graph.nodes:
        found = _match(graph, norm)
        if found is None:
            continue
        x, shape, groups, eps, removed = found
        last = graph.consumers(norm.output[0])[0]
        out = last.output[0]
        params = {}
        for op, key in (("Mul", "scale"), ("Add", "bias")):
            users = graph.consumers(out)
            if graph.is_graph_output(out) or len(users) != 1 or users[0].op_type != op or not _std(users[0]):
                continue
            value = _per_channel(graph, users[0], out, shape)
            if value is None:
                continue
            params[key] = value
            removed.append(last)
            last, out = users[0], users[0].output[0]
        inputs = [x]
        for key in ("scale", "bias"):
            if key in params:
                name = _unique(graph, f"{last.name or out}/gn_{key}")
                graph.set_initializer(name, params[key])
                inputs.append(name)
            elif key == "scale" and "bias" in params:
                inputs.append("")
        replace_with_custom(graph, last, "GroupNorm", inputs, removed, num_groups=groups, epsilon=eps)
        graph.remove_unused_initializers()
        changed = True
        graph.refresh()
    return changed
