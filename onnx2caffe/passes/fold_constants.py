"""Evaluate every node whose inputs are all constants (and Shape/Size of static tensors) ahead of time; the
results become initializers, so mappers see weights and shape tensors as plain arrays."""

from __future__ import annotations

import numpy as np
import onnx

NAME = "fold_constants"
DESCRIPTION = "evaluate constant subgraphs (Constant, Shape of static tensors, ops on initializers)"

# never evaluated ahead of time: random ops, and ops whose value depends on more than their inputs
_NON_DETERMINISTIC = {
    "RandomNormal",
    "RandomNormalLike",
    "RandomUniform",
    "RandomUniformLike",
    "Multinomial",
    "Bernoulli",
}


def _evaluate(graph, node: onnx.NodeProto) -> list[np.ndarray] | None:
    from onnx.reference import ReferenceEvaluator

    feeds = {i: graph.const(i) for i in node.input if i}
    try:
        ev = ReferenceEvaluator(node, opsets=dict(graph.opsets))
        outs = ev.run(None, feeds)
    except Exception:
        return None  # left in the graph: the mapper (or its absence) decides
    return [np.asarray(o) for o in outs]


def run(graph) -> bool:
    """Fold to a fixed point: folding a shape subgraph can let shape inference fix the shape of a tensor that
    another Shape node reads (ultralytics' unsimplified exports chain several), so fold, re-infer, repeat."""
    changed = False
    while _fold_once(graph):
        changed = True
        graph.refresh()
    return changed


def _fold_once(graph) -> bool:
    changed = False
    done = []
    for node in graph.nodes:
        if node.domain not in ("", "ai.onnx") or node.op_type in _NON_DETERMINISTIC:
            continue
        if any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for a in node.attribute):
            continue
        if any(graph.is_graph_output(o) for o in node.output if o):
            continue  # a graph output must stay computed by a layer
        values = None
        if node.op_type in ("Shape", "Size") and node.input and graph.shape(node.input[0]) is not None:
            shape = graph.shape(node.input[0])
            if node.op_type == "Size":
                values = [np.array(int(np.prod(shape, dtype=np.int64)), dtype=np.int64)]
            else:
                attrs = {a.name: a.i for a in node.attribute}
                rank = len(shape)
                start, end = attrs.get("start", 0), attrs.get("end", rank)
                start = min(max(start + rank if start < 0 else start, 0), rank)
                end = min(max(end + rank if end < 0 else end, 0), rank)
                values = [np.array(shape[start:end], dtype=np.int64)]
        elif all((not i) or graph.is_const(i) for i in node.input):
            if node.op_type == "Constant" and node.output[0] in graph.constants:
                values = [graph.constants[node.output[0]]]
            else:
                values = _evaluate(graph, node)
        if values is None or len(values) < len([o for o in node.output if o]):
            continue
        for name, value in zip(node.output, values, strict=False):
            if name:
                graph.set_initializer(name, value)
        done.append(node)
        changed = True
    if changed:
        graph.remove_nodes(done)
        graph.remove_unused_initializers()
    return changed
