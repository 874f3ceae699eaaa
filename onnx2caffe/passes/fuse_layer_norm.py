"""A LayerNorm written out in primitive ops -> one onnx2caffe::LayerNorm node (mapped by op_mappers/layer_norm.py).

What torch's TorchScript exporter writes for nn.LayerNorm below opset 17, and what hand-written channel-first
LayerNorms (ConvNeXt's `u = x.mean(1, keepdim=True); s = (x - u).pow(2).mean(1, keepdim=True); (x - u) /
torch.sqrt(s + eps)`, then `weight[:, None, None] * x + bias[:, None, None]`) export to:

    m = ReduceMean(x, A, keepdims=1);  d = Sub(x, m);  p = Pow(d, 2) | Mul(d, d);  v = ReduceMean(p, A, keepdims=1)
    s = Sqrt(Add(v, eps));  y = Div(d, s) | Mul(d, Reciprocal(s))  [-> Mul(y, gamma)] [-> Add(., beta)]

with A a run of last axes or the channel axis 1, eps a constant scalar, gamma / beta constants that vary only
along A. The fused node means exactly that function (the mapper states the rounding of its composition). Every
intermediate tensor must be read by the pattern alone (d by the Pow/Mul and the Div) and not be a graph output.
"""

from __future__ import annotations

import numpy as np

from .fuse_l2_normalize import _attrs, _private, _reduce_axes, _scalar, _std, replace_with_custom

NAME = "fuse_layer_norm"
DESCRIPTION = (
    "fuse ReduceMean/Sub/Pow/ReduceMean/Add/Sqrt/Div [+ Mul/Add] (LayerNorm over the last axes or the channel "
    "axis) into onnx2caffe::LayerNorm"
)


def _producer(graph, tensor: str, op_types, reader):
    """The standard-domain producer of `tensor` when its op is in `op_types` and `tensor` is private to
    `reader`, else None."""
    node = graph.producer(tensor)
    if node is None or not _std(node) or node.op_type not in op_types or not _private(graph, tensor, reader):
        return None
    return node


def _other(node, tensor: str) -> str | None:
    """The other input of a two-input node that reads `tensor` once."""
    if len(node.input) != 2 or node.input[0] == node.input[1]:
        return None
    return node.input[1] if node.input[0] == tensor else node.input[0] if node.input[1] == tensor else None


def _mean_axes(graph, node, rank: int) -> list[int] | None:
    if _attrs(node).get("keepdims", 1) != 1:
        return None
    axes = _reduce_axes(graph, node)
    if not axes:
        return None
    return sorted({a % rank for a in axes})


def _normalized_axes(axes: list[int], rank: int) -> bool:
    return axes == list(range(axes[0], rank)) or (axes == [1] and rank >= 3)


def _core(graph, div):
    """(x, axes, eps, removed) for the normalisation ending in `div`, else None."""
    if not _std(div) or div.op_type not in ("Div", "Mul") or len(div.input) != 2:
        return None
    removed = []
    d, s = div.input
    if div.op_type == "Mul":  # d * Reciprocal(sqrt(v + eps)), either operand order
        for a, b in ((d, s), (s, d)):
            rec = graph.producer(b)
            if rec is not None and _std(rec) and rec.op_type == "Reciprocal" and _private(graph, b, div):
                d, s = a, rec.input[0]
                removed.append(rec)
                reader = rec
                break
        else:
            return None
    else:
        reader = div
    sqrt = _producer(graph, s, ("Sqrt",), reader)
    if sqrt is None:
        return None
    add = _producer(graph, sqrt.input[0], ("Add",), sqrt)
    if add is None:
        return None
    v, eps_name = add.input if graph.is_const(add.input[1]) else add.input[::-1]
    eps = _scalar(graph, eps_name)
    mean2 = _producer(graph, v, ("ReduceMean",), add)
    if eps is None or mean2 is None:
        return None
    sq = _producer(graph, mean2.input[0], ("Pow", "Mul"), mean2)
    if sq is None:
        return None
    if sq.op_type == "Pow":
        if sq.input[0] != d or _scalar(graph, sq.input[1]) != 2.0:
            return None
    elif list(sq.input) != [d, d]:
        return None
    sub = graph.producer(d)
    if sub is None or not _std(sub) or sub.op_type != "Sub" or graph.is_graph_output(d):
        return None
    if {id(n) for n in graph.consumers(d)} != {id(sq), id(div)}:  # Mul(d, d) is listed twice
        return None
    x, m = sub.input
    mean1 = _producer(graph, m, ("ReduceMean",), sub)
    if mean1 is None or mean1.input[0] != x:
        return None
    shape = graph.shape(x)
    if shape is None or graph.dtype(x) != np.float32 or graph.shape(div.output[0]) != shape:
        return None
    rank = len(shape)
    axes = _mean_axes(graph, mean1, rank)
    if axes is None or axes != _mean_axes(graph, mean2, rank) or not _normalized_axes(axes, rank):
        return None
    removed += [sqrt, add, mean2, sq, sub, mean1]
    return x, axes, eps, removed


def _affine_param(graph, node, tensor: str, shape, axes) -> np.ndarray | None:
    """The constant other operand of `node` as an array of the normalised axes' shape, when it broadcasts
    against x without growing it and varies only along `axes`, else None."""
    other = _other(node, tensor)
    if other is None:
        return None
    value = graph.const(other)
    if value is None or value.dtype != np.float32 or value.ndim > len(shape):
        return None
    aligned = value.reshape((1,) * (len(shape) - value.ndim) + value.shape)
    for i, dim in enumerate(aligned.shape):
        if dim != 1 and (i not in axes or dim != shape[i]):
            return None
    full = np.broadcast_to(aligned, tuple(shape[i] if i in axes else 1 for i in range(len(shape))))
    return np.ascontiguousarray(full.reshape([shape[i] for i in axes]))


def _unique(graph, base: str) -> str:
    taken = (
        set(graph.constants)
        | {o for n in graph.graph.node for o in n.output}
        | {i.name for i in graph.graph.input}
    )
    name, k = base, 1
    while name in taken:
        name, k = f"{base}_{k}", k + 1
    return name


def run(graph) -> bool:
    """Fuse every LayerNorm. The patterns are disjoint (each owns its nodes), so the indices need no refresh
    between them: one shape inference afterwards instead of one per LayerNorm (MaxViT has 45, ViT-L 49)."""
    changed = False
    gone: set[int] = set()
    for div in graph.nodes:
        if id(div) in gone:
            continue
        found = _core(graph, div)
        if found is None:
            continue
        x, axes, eps, removed = found
        shape = graph.shape(x)
        last, out = div, div.output[0]
        params = {}
        for op, key in (("Mul", "scale"), ("Add", "bias")):
            users = graph.consumers(out)
            if graph.is_graph_output(out) or len(users) != 1 or users[0].op_type != op or not _std(users[0]):
                continue
            value = _affine_param(graph, users[0], out, shape, axes)
            if value is None:
                continue
            params[key] = value
            removed.append(last)
            last, out = users[0], users[0].output[0]
        inputs = [x]
        for key in ("scale", "bias"):
            if key in params:
                name = _unique(graph, f"{last.name or out}/ln_{key}")
                graph.set_initializer(name, params[key])
                inputs.append(name)
            elif key == "scale" and "bias" in params:
                inputs.append("")
        gone |= {id(n) for n in removed}
        replace_with_custom(graph, last, "LayerNorm", inputs, removed, axes=axes, epsilon=eps)
        changed = True
    if changed:
        graph.remove_unused_initializers()
    return changed
