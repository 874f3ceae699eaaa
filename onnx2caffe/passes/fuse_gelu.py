"""torch's exact GELU written out with Erf -> one onnx2caffe::Gelu node (mapped by op_mappers/gelu.py).

nn.GELU() / F.gelu below opset 20 (TorchScript and dynamo exporters, after onnx-simplifier) is

    e = Erf(Div(x, sqrt(2)) | Mul(x, 1 / sqrt(2)));  p = Add(e, 1);  y = x * p * k

with the product x * p * k written as any tree of two-input Muls (Mul(Mul(x, p), 0.5), Mul(x, Mul(p, 0.5)),
Mul(Mul(x, 0.5), p), ...) and k the product of the scalar constants in it (0.5, or none when a simplifier has
folded the 0.5 into the next layer's weights: then y = 2 GELU(x)). The fused node computes scale * GELU(x) with
scale = 2 k: the GELU composition has no 1 + erf cancellation and one exp instead of erf's two branches, and
is exact where the pattern's own float32 evaluation loses digits (GELU(x) for x << 0). The sqrt(2) must be the
float32 sqrt(2) (or 1 / sqrt(2)) to within one ulp; every intermediate must be read only by the pattern and not
be a graph output.
"""

from __future__ import annotations

import math

import numpy as np

from .fuse_l2_normalize import _private, _scalar, _std, replace_with_custom

NAME = "fuse_gelu"
DESCRIPTION = "fuse Div(x, sqrt 2) / Mul(x, 1/sqrt 2) -> Erf -> Add 1 -> Mul x [-> Mul k] (torch's GELU) into onnx2caffe::Gelu"

_SQRT2 = math.sqrt(2.0)


def _close(value: float | None, target: float) -> bool:
    """value is target rounded to float32, within one float32 ulp."""
    return value is not None and abs(value - target) <= 2.0**-23 * abs(target)


def _erf_input(graph, erf):
    """(x, the Div / Mul node) when erf reads x / sqrt(2), else None."""
    node = graph.producer(erf.input[0])
    if node is None or not _std(node) or len(node.input) != 2 or not _private(graph, erf.input[0], erf):
        return None
    a, b = node.input
    if node.op_type == "Div" and not graph.is_const(a) and _close(_scalar(graph, b), _SQRT2):
        return a, node
    if node.op_type == "Mul":
        for x, c in ((a, b), (b, a)):
            if not graph.is_const(x) and _close(_scalar(graph, c), 1.0 / _SQRT2):
                return x, node
    return None


def _factors(graph, tensor: str, root, x: str, p: str, seen: list):
    """The leaves of the product tree computing `tensor` (read by `root`): x, p and scalar constants; Mul nodes
    private to their reader are expanded (and collected in `seen`). None when another factor appears."""
    if tensor in (x, p):
        return [tensor]
    value = _scalar(graph, tensor)
    if value is not None:
        return [value]
    node = graph.producer(tensor)
    if node is None or not _std(node) or node.op_type != "Mul" or len(node.input) != 2:
        return None
    if not _private(graph, tensor, root):
        return None
    seen.append(node)
    out = []
    for t in node.input:
        more = _factors(graph, t, node, x, p, seen)
        if more is None:
            return None
        out += more
    return out


def _match(graph, erf):
    """(x, scale, last Mul, nodes to remove) for a GELU around `erf`, else None."""
    if erf.op_type != "Erf" or not _std(erf):
        return None
    found = _erf_input(graph, erf)
    if found is None:
        return None
    x, scaled = found
    users = graph.consumers(erf.output[0])
    if (
        len(users) != 1
        or users[0].op_type != "Add"
        or not _std(users[0])
        or graph.is_graph_output(erf.output[0])
    ):
        return None
    add = users[0]
    other = [t for t in add.input if t != erf.output[0]]
    if len(add.input) != 2 or len(other) != 1 or _scalar(graph, other[0]) != 1.0:
        return None
    p = add.output[0]
    # climb the chain of Muls above p; the highest one whose product tree is x * p * constants wins
    best = None
    cur = p
    for _ in range(4):
        users = graph.consumers(cur)
        if len(users) != 1 or users[0].op_type != "Mul" or not _std(users[0]) or graph.is_graph_output(cur):
            break
        top = users[0]
        seen: list = []
        leaves = []
        for t in top.input:
            more = _factors(graph, t, top, x, p, seen)
            if more is None:
                leaves = None
                break
            leaves += more
        if leaves is None:
            break
        consts = [v for v in leaves if not isinstance(v, str)]
        if leaves.count(x) == 1 and leaves.count(p) == 1 and len(leaves) == 2 + len(consts):
            k = float(np.prod(np.asarray(consts, np.float64))) if consts else 1.0
            best = (x, 2.0 * k, top, [scaled, erf, add, *seen])
        cur = top.output[0]
    if best is None or graph.shape(best[2].output[0]) != graph.shape(x):
        return None
    return best


def run(graph) -> bool:
    """Match every GELU first (the patterns are disjoint: each owns its Erf, Add and Muls), then rewrite them
    all: one shape inference afterwards instead of one per GELU (MaxViT has 45)."""
    matches, taken = [], set()
    for erf in graph.nodes:
        found = _match(graph, erf)
        if found is None:
            continue
        ids = {id(n) for n in (found[2], *found[3])}
        if ids & taken:
            continue
        taken |= ids
        matches.append(found)
    for x, scale, last, removed in matches:
        attrs = {"approximate": "none"}
        if scale != 1.0:
            attrs["scale"] = scale
        replace_with_custom(graph, last, "Gelu", [x], removed, **attrs)
    return bool(matches)
