"""Fuse ShuffleNet's channel shuffle Reshape(N, g, C/g, H, W) -> Transpose(0, 2, 1, 3, 4) -> Reshape(N, C, H, W)
into one onnx2caffe::ChannelShuffle(group=g) node (mapped by op_mappers/channel_shuffle.py).

Exact by construction: the three nodes only move values, and so does the replacement. The pattern matches only
when both intermediate tensors are read by the next node alone and are not graph outputs.
"""

from __future__ import annotations

import onnx

NAME = "fuse_channel_shuffle"
DESCRIPTION = "Reshape-Transpose-Reshape channel shuffle -> onnx2caffe::ChannelShuffle"

DOMAIN = "onnx2caffe"
DOMAIN_VERSION = 1


def _std(node) -> bool:
    return node.domain in ("", "ai.onnx")


def _private(graph, tensor: str, reader) -> bool:
    users = graph.consumers(tensor)
    return len(users) == 1 and users[0] is reader and not graph.is_graph_output(tensor)


def _perm(node) -> list[int] | None:
    for a in node.attribute:
        if a.name == "perm":
            return list(a.ints)
    return None


def _match(graph, transpose):
    """(x, y, group, [first reshape, last reshape]) for a channel shuffle around `transpose`, else None."""
    if transpose.op_type != "Transpose" or not _std(transpose) or _perm(transpose) != [0, 2, 1, 3, 4]:
        return None
    first = graph.producer(transpose.input[0])
    if first is None or first.op_type != "Reshape" or not _std(first):
        return None
    users = graph.consumers(transpose.output[0])
    if len(users) != 1 or users[0].op_type != "Reshape" or not _std(users[0]):
        return None
    last = users[0]
    if not _private(graph, first.output[0], transpose) or not _private(graph, transpose.output[0], last):
        return None
    x, y = first.input[0], last.output[0]
    in_shape, mid_shape, out_shape = graph.shape(x), graph.shape(first.output[0]), graph.shape(y)
    if in_shape is None or mid_shape is None or out_shape is None or len(in_shape) != 4:
        return None
    n, c, h, w = in_shape
    if len(mid_shape) != 5 or tuple(out_shape) != tuple(in_shape):
        return None
    g = mid_shape[1]
    if (mid_shape[0], mid_shape[3], mid_shape[4]) != (n, h, w) or g * mid_shape[2] != c or g < 2:
        return None
    return x, y, g, [first, transpose]


def run(graph) -> bool:
    changed = False
    while True:  # one fusion at a time: removing nodes invalidates references into the node list
        found = next((f for f in (_match(graph, n) for n in graph.nodes) if f is not None), None)
        if found is None:
            break
        x, y, g, removed = found
        node = removed[1]
        last = graph.consumers(node.output[0])[0]
        new = onnx.helper.make_node("ChannelShuffle", [x], [y], name=last.name, domain=DOMAIN, group=int(g))
        shape = graph.shape(y)
        last.CopyFrom(new)
        graph.remove_nodes(removed)
        if DOMAIN not in graph.opsets:
            graph.model.opset_import.append(onnx.helper.make_opsetid(DOMAIN, DOMAIN_VERSION))
            graph.opsets[DOMAIN] = DOMAIN_VERSION
        # shape inference cannot see into a custom op: record the output's shape
        if not graph.is_graph_output(y):
            vi = graph.graph.value_info
            for i in reversed(range(len(vi))):
                if vi[i].name == y:
                    del vi[i]
            elem = graph.elem_types.get(y, onnx.TensorProto.FLOAT)
            vi.append(onnx.helper.make_tensor_value_info(y, elem, list(shape)))
        graph.refresh()
        changed = True
    return changed
