"""Fuse the exporters' pixel shuffle Reshape(6-D) -> Transpose -> Reshape(4-D) into one onnx2caffe::DepthToSpace or
onnx2caffe::SpaceToDepth node (with blocksize and mode DCR / CRD; mapped by op_mappers/depth_to_space.py).

torch exports nn.PixelUnshuffle this way with both exporters, and nn.PixelShuffle below opset 11; TensorFlow-born
graphs do the same for both ops. A 6-D Transpose has no compact Caffe form, the fused op has.

Exact by construction: the three nodes only move values, and the pattern is accepted only when the position each
output element takes its value from, computed by running the three nodes' index arithmetic on the actual shapes
(numpy reshape / transpose of an index array), equals the ONNX definition of the fused op. Both intermediate tensors
must be read by the next node alone and not be graph outputs.
"""

from __future__ import annotations

import numpy as np
import onnx

NAME = "fuse_pixel_shuffle"
DESCRIPTION = "Reshape-Transpose-Reshape pixel (un)shuffle -> onnx2caffe::DepthToSpace / SpaceToDepth"

DOMAIN = "onnx2caffe"
DOMAIN_VERSION = 1
_MAX_ELEMENTS = 1 << 24  # index arrays up to 128 MB; larger tensors are left to the Transpose mapper


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


def reference(op: str, mode: str, x: np.ndarray, r: int) -> np.ndarray:
    """The ONNX definition of DepthToSpace / SpaceToDepth (mode DCR or CRD) on an (N, C, H, W) array."""
    n, c, h, w = x.shape
    if op == "DepthToSpace":
        co = c // (r * r)
        if mode == "DCR":
            t = x.reshape(n, r, r, co, h, w).transpose(0, 3, 4, 1, 5, 2)
        else:
            t = x.reshape(n, co, r, r, h, w).transpose(0, 1, 4, 2, 5, 3)
        return t.reshape(n, co, h * r, w * r)
    t = x.reshape(n, c, h // r, r, w // r, r)
    t = t.transpose(0, 3, 5, 1, 2, 4) if mode == "DCR" else t.transpose(0, 1, 3, 5, 2, 4)
    return t.reshape(n, c * r * r, h // r, w // r)


def _candidates(in_shape, out_shape):
    n, c, h, w = in_shape
    if out_shape[0] != n:
        return []
    if out_shape[2] > h and out_shape[2] % h == 0:
        r = out_shape[2] // h
        if tuple(out_shape) == (n, c // (r * r), h * r, w * r) and c % (r * r) == 0:
            return [("DepthToSpace", mode, r) for mode in ("CRD", "DCR")]
    if out_shape[2] < h and out_shape[2] and h % out_shape[2] == 0:
        r = h // out_shape[2]
        if tuple(out_shape) == (n, c * r * r, h // r, w // r) and w % r == 0:
            return [("SpaceToDepth", mode, r) for mode in ("DCR", "CRD")]
    return []


def _match(graph, transpose):
    """(x, y, op, mode, r, [first reshape, transpose]) for a pixel (un)shuffle around `transpose`, else None."""
    perm = _perm(transpose)
    if transpose.op_type != "Transpose" or not _std(transpose) or perm is None or len(perm) != 6:
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
    if (
        in_shape is None
        or mid_shape is None
        or out_shape is None
        or len(in_shape) != 4
        or len(mid_shape) != 6
    ):
        return None
    size = int(np.prod(in_shape))
    if size > _MAX_ELEMENTS:
        return None
    index = np.arange(size, dtype=np.int64).reshape(in_shape)
    moved = index.reshape(mid_shape).transpose(perm).reshape(out_shape)
    for op, mode, r in _candidates(in_shape, out_shape):
        if np.array_equal(moved, reference(op, mode, index, r)):
            return x, y, op, mode, r, [first, transpose]
    return None


def run(graph) -> bool:
    changed = False
    while True:  # one fusion at a time: removing nodes invalidates references into the node list
        found = next((f for f in (_match(graph, n) for n in graph.nodes) if f is not None), None)
        if found is None:
            break
        x, y, op, mode, r, removed = found
        last = graph.consumers(removed[1].output[0])[0]
        shape = graph.shape(y)
        new = onnx.helper.make_node(op, [x], [y], name=last.name, domain=DOMAIN, blocksize=int(r), mode=mode)
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
