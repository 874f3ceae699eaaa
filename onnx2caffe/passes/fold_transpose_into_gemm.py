"""Transpose(x, perm keeping axis 0) -> Flatten(axis 1) / Reshape(N, K) -> Gemm or MatMul with a constant weight
(MTCNN RNet/ONet: x.permute(0, 3, 2, 1) -> view(N, -1) -> Linear): fold the permutation into the weight.

The flattened transposed row is a fixed permutation t of the flattened input row (f_y[j] = f_x[t[j]]), so
f_y @ W == f_x @ W' with W'[t[j]] = W[j]: the same products, only the order of the K-term sum changes (float32
noise). The Transpose disappears (it would be two block swaps of copies in Caffe). Matches only when the
Transpose and the flatten outputs are read by the next node alone and are not graph outputs; the permuted weight
is a new initializer (the original may be shared).
"""

from __future__ import annotations

import math

import numpy as np

NAME = "fold_transpose_into_gemm"
DESCRIPTION = "Transpose -> Flatten/Reshape -> Gemm/MatMul with a constant weight: permute the weight's rows"


def _std(node) -> bool:
    return node.domain in ("", "ai.onnx")


def _private(graph, tensor: str, reader) -> bool:
    users = graph.consumers(tensor)
    return len(users) == 1 and users[0] is reader and not graph.is_graph_output(tensor)


def _attr(node, name, default):
    for a in node.attribute:
        if a.name == name:
            return a.i if a.type == a.INT else list(a.ints)
    return default


def _match(graph, t):
    if t.op_type != "Transpose" or not _std(t):
        return None
    x = t.input[0]
    shape = graph.shape(x)
    if shape is None or len(shape) < 3:
        return None
    r = len(shape)
    perm = _attr(t, "perm", list(range(r))[::-1])
    if perm[0] != 0 or perm == list(range(r)):
        return None
    users = graph.consumers(t.output[0])
    if len(users) != 1 or not _private(graph, t.output[0], users[0]):
        return None
    flat = users[0]
    n, k = shape[0], math.prod(shape[1:])
    if not _std(flat) or graph.shape(flat.output[0]) != (n, k):
        return None
    if flat.op_type == "Flatten":
        if _attr(flat, "axis", 1) != 1:
            return None
    elif flat.op_type == "Reshape":
        target = graph.const(flat.input[1]) if len(flat.input) > 1 else None
        # a 0 in the target copies the input's dimension: at index 1 that would change with the input
        if target is None or target.size != 2 or int(target.reshape(-1)[1]) == 0:
            return None
    else:
        return None
    users = graph.consumers(flat.output[0])
    if len(users) != 1 or not _private(graph, flat.output[0], users[0]):
        return None
    mm = users[0]
    if not _std(mm) or mm.input[0] != flat.output[0]:
        return None
    w = graph.const(mm.input[1]) if len(mm.input) > 1 else None
    if w is None or w.ndim != 2 or not np.issubdtype(w.dtype, np.floating):
        return None
    if mm.op_type == "Gemm":
        if _attr(mm, "transA", 0):
            return None
        rows_axis = 1 if _attr(mm, "transB", 0) else 0
    elif mm.op_type == "MatMul":
        rows_axis = 0
    else:
        return None
    if w.shape[rows_axis] != k:
        return None
    return t, flat, mm, rows_axis, shape, perm


def run(graph) -> bool:
    changed = False
    while True:  # one fold at a time: the edits invalidate the node references
        found = next((m for m in (_match(graph, n) for n in graph.nodes) if m is not None), None)
        if found is None:
            return changed
        t, flat, mm, rows_axis, shape, perm = found
        w = graph.const(mm.input[1])
        # t[j]: the position in the flattened input row of entry j of the flattened transposed row
        idx = np.arange(math.prod(shape[1:])).reshape(shape[1:])
        order = idx.transpose([p - 1 for p in perm[1:]]).reshape(-1)
        moved = np.empty_like(w)
        if rows_axis == 0:
            moved[order, :] = w
        else:
            moved[:, order] = w
        name = f"{mm.input[1]}__{t.name or 'transpose'}_folded"
        graph.set_initializer(name, moved)
        mm.input[1] = name
        flat.input[0] = t.input[0]
        graph.remove_nodes([t])
        graph.remove_unused_initializers()
        graph.refresh()
        changed = True
