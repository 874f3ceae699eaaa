"""Expand(x, shape) read only by broadcasting element-wise ops that broadcast x to the same result anyway ->
the ops read x directly (F.normalize's Expand before the Div; masks expanded before an Add).

numpy broadcasting makes op(Expand(x), y) == op(x, y) whenever the op's output shape is unchanged without the
Expand, so the rewrite is exact; the mappers then broadcast x without materialising the expanded copy (a Div by
a per-row norm becomes one two-bottom Scale instead of Concat copies + Eltwise). The Expand's output must not be
a graph output.
"""

from __future__ import annotations

import numpy as np

NAME = "fold_expand_into_eltwise"
DESCRIPTION = "let broadcasting element-wise ops read an Expand's input (the Expand is removed when unused)"

BROADCASTING = frozenset({"Add", "Sub", "Mul", "Div", "Max", "Min", "Sum", "Mean", "Where"})


def _broadcast(shapes) -> tuple[int, ...] | None:
    try:
        return tuple(int(d) for d in np.broadcast_shapes(*[tuple(s) for s in shapes]))
    except ValueError:
        return None


def run(graph) -> bool:
    changed = False
    for node in graph.nodes:
        if node.op_type != "Expand" or node.domain not in ("", "ai.onnx") or not node.input:
            continue
        x, e = node.input[0], node.output[0]
        if graph.is_graph_output(e) or graph.shape(x) is None:
            continue
        users = graph.consumers(e)
        if not users or any(u.op_type not in BROADCASTING or u.domain not in ("", "ai.onnx") for u in users):
            continue
        ok = True
        for u in users:
            shapes = [graph.shape(x if t == e else t) for t in u.input if t]
            out = graph.shape(u.output[0])
            if any(s is None for s in shapes) or out is None or _broadcast(shapes) != tuple(out):
                ok = False
                break
        if not ok:
            continue
        for u in users:
            for i, t in enumerate(u.input):
                if t == e:
                    u.input[i] = x
        graph.remove_nodes([node])
        changed = True
    return changed
