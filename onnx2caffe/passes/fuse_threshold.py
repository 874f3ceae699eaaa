"""F.threshold-style selections -> one onnx2caffe::ThresholdSelect node (mapped by op_mappers/threshold.py).

    Where(Greater(x, t), x, v)        (the form in the brief / older exporters)
    Where(LessOrEqual(x, t), v, x)    (torch.onnx dynamo export of F.threshold(x, t, v))

and the Less / GreaterOrEqual variants, either operand order of the comparison, with t and v constant scalars.
The fused node means: y = x where (x `op` t) else v, op one of gt / ge / lt / le. The comparison's output must
have no other reader and must not be a graph output.
"""

from __future__ import annotations

import numpy as np

from .fuse_l2_normalize import _private, _scalar, _std, replace_with_custom

NAME = "fuse_threshold"
DESCRIPTION = (
    "fuse Where(x <cmp> t, x, v) with constant t and v (F.threshold) into onnx2caffe::ThresholdSelect"
)

_OPS = {"Greater": "gt", "GreaterOrEqual": "ge", "Less": "lt", "LessOrEqual": "le"}
_SWAP = {"gt": "lt", "lt": "gt", "ge": "le", "le": "ge"}  # t op x  ==  x swap(op) t
_NOT = {"gt": "le", "le": "gt", "lt": "ge", "ge": "lt"}


def _match(graph, where):
    if where.op_type != "Where" or not _std(where) or len(where.input) != 3:
        return None
    cond, a, b = where.input
    cmp = graph.producer(cond)
    if cmp is None or not _std(cmp) or cmp.op_type not in _OPS or not _private(graph, cond, where):
        return None
    op = _OPS[cmp.op_type]
    p, q = cmp.input
    if graph.is_const(q) and not graph.is_const(p):
        x, t = p, _scalar(graph, q)
    elif graph.is_const(p) and not graph.is_const(q):
        x, t, op = q, _scalar(graph, p), _SWAP[op]
    else:
        return None
    if t is None:
        return None
    if a == x and graph.is_const(b):
        v = _scalar(graph, b)
    elif b == x and graph.is_const(a):
        v, op = _scalar(graph, a), _NOT[op]
    else:
        return None
    shape = graph.shape(x)
    if graph.dtype(x) != np.float32:
        return None
    if v is None or shape is None or graph.shape(where.output[0]) != shape:
        return None
    return x, op, t, v, cmp


def run(graph) -> bool:
    changed = False
    for where in graph.nodes:
        found = _match(graph, where)
        if found is None:
            continue
        x, op, t, v, cmp = found
        replace_with_custom(graph, where, "ThresholdSelect", [x], [cmp], compare=op, threshold=t, value=v)
        changed = True
        graph.refresh()
    return changed
