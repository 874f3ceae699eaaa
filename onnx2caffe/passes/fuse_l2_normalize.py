"""F.normalize(x, p=2, dim=1) -> one onnx2caffe::L2Normalize node (mapped by op_mappers/normalize.py).

PyTorch exports F.normalize as ReduceL2(x, axes=[1], keepdims=1) -> Clip(min=eps) (or Max(., eps)) -> Expand(.,
shape(x)) -> Div(x, .). The Clip/Max and the Expand are optional here. The fused node computes the same function
(x / max(||x||, eps)); intermediate results must have no other reader and must not be graph outputs.
"""

from __future__ import annotations

import numpy as np
import onnx

NAME = "fuse_l2_normalize"
DESCRIPTION = "fuse ReduceL2 [+ Clip/Max eps] [+ Expand] + Div (F.normalize) into onnx2caffe::L2Normalize"
DOMAIN = "onnx2caffe"
DOMAIN_VERSION = 1


def _std(node) -> bool:
    return node.domain in ("", "ai.onnx")


def _attrs(node) -> dict:
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def _private(graph, tensor: str, reader) -> bool:
    """`tensor` is read only by `reader` and is not a graph output."""
    users = graph.consumers(tensor)
    return len(users) == 1 and users[0] is reader and not graph.is_graph_output(tensor)


def _scalar(graph, tensor: str) -> float | None:
    value = graph.const(tensor)
    if value is None or np.asarray(value).size != 1:
        return None
    return float(np.asarray(value).reshape(-1)[0])


def replace_with_custom(graph, node, op_type: str, inputs: list[str], removed: list, **attrs) -> None:
    """Turn `node` (keeping its name and first output) into onnx2caffe::`op_type`, delete `removed`, import the
    custom domain and record the output's shape (ONNX shape inference cannot see into a custom op)."""
    out = node.output[0]
    shape = graph.shape(out)
    elem = graph.elem_types.get(out, onnx.TensorProto.FLOAT)
    new = onnx.helper.make_node(op_type, inputs, [out], name=node.name, domain=DOMAIN, **attrs)
    node.CopyFrom(new)
    graph.remove_nodes(removed)
    if DOMAIN not in graph.opsets:
        graph.model.opset_import.append(onnx.helper.make_opsetid(DOMAIN, DOMAIN_VERSION))
        graph.opsets[DOMAIN] = DOMAIN_VERSION
    if shape is not None and not graph.is_graph_output(out):
        vi = graph.graph.value_info
        for i in reversed(range(len(vi))):
            if vi[i].name == out:
                del vi[i]
        vi.append(onnx.helper.make_tensor_value_info(out, elem, list(shape)))


def _reduce_axes(graph, node) -> list[int] | None:
    attrs = _attrs(node)
    if "axes" in attrs:
        return [int(a) for a in attrs["axes"]]
    if len(node.input) > 1 and node.input[1]:
        value = graph.const(node.input[1])
        return None if value is None else [int(a) for a in np.asarray(value).reshape(-1)]
    return None


def _match(graph, div):
    """(x, eps or None, nodes to remove) when `div` ends an F.normalize pattern over axis 1, else None."""
    if div.op_type != "Div" or not _std(div) or len(div.input) != 2:
        return None
    x, d = div.input
    shape = graph.shape(x)
    if shape is None or len(shape) not in (2, 4) or graph.shape(div.output[0]) != shape:
        return None
    removed, reader = [], div
    node = graph.producer(d)
    if node is not None and node.op_type == "Expand" and _std(node) and _private(graph, d, reader):
        removed.append(node)
        reader, d = node, node.input[0]
        node = graph.producer(d)
    eps = None
    if node is not None and _std(node) and node.op_type in ("Clip", "Max") and _private(graph, d, reader):
        if node.op_type == "Clip":
            attrs = _attrs(node)
            if "max" in attrs or (len(node.input) > 2 and node.input[2]):
                return None
            if "min" in attrs:
                eps = float(attrs["min"])
            elif len(node.input) > 1 and node.input[1]:
                eps = _scalar(graph, node.input[1])
                if eps is None:
                    return None
            inner = node.input[0]
        else:
            if len(node.input) != 2:
                return None
            a, b = node.input
            inner, eps = (a, _scalar(graph, b)) if graph.is_const(b) else (b, _scalar(graph, a))
            if eps is None:
                return None
        removed.append(node)
        reader, d = node, inner
        node = graph.producer(d)
    if node is None or node.op_type != "ReduceL2" or not _std(node) or not _private(graph, d, reader):
        return None
    if node.input[0] != x or _attrs(node).get("keepdims", 1) != 1:
        return None
    axes = _reduce_axes(graph, node)
    if axes is None or [a % len(shape) for a in axes] != [1]:
        return None
    removed.append(node)
    return x, eps, removed


def run(graph) -> bool:
    changed = False
    for div in graph.nodes:
        found = _match(graph, div)
        if found is None:
            continue
        x, eps, removed = found
        attrs = {"axis": 1}
        if eps is not None:
            attrs["eps"] = eps
        replace_with_custom(graph, div, "L2Normalize", [x], removed, **attrs)
        changed = True
        graph.refresh()  # producers/consumers for the next match
    return changed
