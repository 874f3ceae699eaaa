"""A channels-last block between two Transposes -> the same block in NCHW, without the Transposes.

ConvNeXt's block (and LayerNorm2d-style code) writes

    Transpose(x, (0, 2, 3, 1)) -> LayerNorm over C -> Linear(C, 4C) -> GELU -> Linear(4C, C) [-> * gamma]
    -> Transpose(., (0, 3, 1, 2))

where every op between the Transposes acts on the channel axis alone (last there) or element-wise. The same
function in NCHW needs no Transpose: LayerNorm over axis 1, a Linear is a 1x1 Conv (weight W^T), a per-channel
constant is reshaped to (C, 1, 1), element-wise ops are unchanged. On Caffe the two Transposes are materialised
copies (Slice + Concat; a swap ending at the last axis costs ~10-30 ns per entry on OpenCV), the NCHW ops are
Convolution / the channel LayerNorm composition. The rewrite computes the same function (a 1x1 Conv sums the
same C products as the Linear; float32 summation order is the backend's either way).

Matched between Transpose(perm (0, 2, 3, 1)) of a rank-4 x and Transpose(perm (0, 3, 1, 2)), each intermediate
read only by the next op and not a graph output: onnx2caffe::LayerNorm / LayerNormalization over the last axis,
Reshape between (N, H, W, C) and (N * H * W, C) (the view Linear layers export), MatMul by a constant (C, C')
weight, Gemm with a constant weight (alpha = beta = 1, no transA), Add / Mul / Sub / Div by a constant that
varies along the channel axis only, and the element-wise ops in ELEMENTWISE.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper

from .fuse_l2_normalize import DOMAIN, DOMAIN_VERSION, _attrs, _private, _std

NAME = "sink_channels_last"
DESCRIPTION = "rewrite Transpose(0,2,3,1) -> per-channel ops -> Transpose(0,3,1,2) (ConvNeXt's block) in NCHW"

ELEMENTWISE = frozenset(
    {"Gelu", "Relu", "Sigmoid", "Tanh", "Erf", "Elu", "LeakyRelu", "HardSigmoid", "HardSwish", "Softplus"}
)
_CONST_BINARY = frozenset({"Add", "Sub", "Mul", "Div"})


def _channel_const(graph, value: np.ndarray, c: int, rank: int) -> np.ndarray | None:
    """A constant broadcast against a channels-last tensor of rank `rank` (C last) as a (C, 1, 1) array (or a
    scalar), when it varies along the channel axis only; else None."""
    value = np.asarray(value)
    if value.size == 1:
        return value.reshape(())
    if value.ndim > rank or any(d != 1 for d in value.shape[:-1]) or value.shape[-1] != c:
        return None
    return value.reshape(c, 1, 1)


def _chain(graph, t1):
    """(nodes between, t2) for a block starting at Transpose t1, else None."""
    x = t1.input[0]
    xs = graph.shape(x)
    if xs is None or len(xs) != 4 or list(_attrs(t1).get("perm", [])) != [0, 2, 3, 1]:
        return None
    n, _, h, w = xs
    cur, chain = t1.output[0], []
    while True:
        users = graph.consumers(cur)
        if len(users) != 1 or graph.is_graph_output(cur) or not _private(graph, cur, users[0]):
            return None
        node = users[0]
        shape = graph.shape(cur)
        if shape is None:
            return None
        if node.op_type == "Transpose" and _std(node):
            out = graph.shape(node.output[0])
            if list(_attrs(node).get("perm", [])) != [0, 3, 1, 2] or len(shape) != 4 or out is None:
                return None
            return (chain, node) if chain else None
        if not _allowed(graph, node, cur, shape, (n, h, w)):
            return None
        chain.append(node)
        cur = node.output[0]


def _allowed(graph, node, cur: str, shape, nhw) -> bool:
    """`node` reads the channels-last tensor `cur` (of `shape`: (N, H, W, C) or (N * H * W, C)) and acts on its
    channel axis alone or element-wise."""
    op, c, rank = node.op_type, shape[-1], len(shape)
    rows = nhw[0] * nhw[1] * nhw[2]
    if rank == 4 and tuple(shape[:3]) != tuple(nhw):
        return False
    if not (rank == 4 or (rank == 2 and shape[0] == rows)):
        return False
    if node.domain == DOMAIN and op == "LayerNorm":
        return list(_attrs(node).get("axes", [])) in ([rank - 1], [-1])
    if not _std(node):
        return node.domain == DOMAIN and op == "Gelu"
    if op == "LayerNormalization":
        return (
            _attrs(node).get("axis", -1) in (-1, rank - 1)
            and all(graph.is_const(t) for t in node.input[1:] if t)
            and len([o for o in node.output if o]) == 1
        )
    if op == "Reshape":
        out = graph.shape(node.output[0])
        return out is not None and (tuple(out) == (rows, c) or tuple(out) == (*nhw, c))
    if op == "MatMul":
        w = graph.const(node.input[1])
        return node.input[0] == cur and w is not None and w.ndim == 2 and w.dtype == np.float32
    if op == "Gemm":
        a = _attrs(node)
        w = graph.const(node.input[1])
        bias = graph.const(node.input[2]) if len(node.input) > 2 and node.input[2] else None
        return (
            node.input[0] == cur
            and a.get("transA", 0) == 0
            and a.get("alpha", 1.0) == 1.0
            and a.get("beta", 1.0) == 1.0
            and w is not None
            and w.ndim == 2
            and (
                len(node.input) < 3
                or not node.input[2]
                or (bias is not None and bias.size in (1, w.shape[0 if a.get("transB", 0) else 1]))
            )
        )
    if op in _CONST_BINARY:
        if len(node.input) != 2 or cur not in node.input or node.input[0] == node.input[1]:
            return False
        value = graph.const(node.input[1] if node.input[0] == cur else node.input[0])
        return value is not None and _channel_const(graph, value, c, rank) is not None
    return op in ELEMENTWISE


def _nchw_shape(shape, n, h, w):
    return [n, shape[-1], h, w]


def _rewrite(graph, t1, chain, t2) -> None:
    x = t1.input[0]
    n, _, h, w = graph.shape(x)
    cur = x  # the tensor the next op reads in the NCHW graph
    prev = t1.output[0]  # ... and in the original graph
    new_nodes = []
    custom_shapes = {}
    for node in chain:
        op = node.op_type
        out = node.output[0]
        shape = graph.shape(out)
        c_out = shape[-1]
        nchw = _nchw_shape(shape, n, h, w)
        if op == "Reshape":
            # a view between (N, H, W, C) and (N * H * W, C): nothing in NCHW
            new_nodes.append(("alias", out, cur))
            prev = out
            continue
        if op in ("LayerNorm", "LayerNormalization"):
            attrs = _attrs(node)
            eps = float(attrs.get("epsilon", 1e-5))
            inputs = [cur]
            for k, t in enumerate(node.input[1:3]):
                if t:
                    value = np.asarray(graph.const(t), np.float32).reshape(-1)
                    name = _fresh(graph, f"{out}/nchw_{'scale' if k == 0 else 'bias'}")
                    graph.set_initializer(name, value)
                    inputs.append(name)
                else:
                    inputs.append("")
            while inputs and inputs[-1] == "":
                inputs.pop()
            new = helper.make_node(
                "LayerNorm", inputs, [out], name=node.name, domain=DOMAIN, axes=[1], epsilon=eps
            )
            custom_shapes[out] = nchw
        elif op in ("MatMul", "Gemm"):
            wt = np.asarray(graph.const(node.input[1]), np.float32)
            transb = op == "Gemm" and _attrs(node).get("transB", 0)
            kernel = (wt if transb else wt.T).reshape(c_out, -1, 1, 1)
            wname = _fresh(graph, f"{out}/nchw_weight")
            graph.set_initializer(wname, np.ascontiguousarray(kernel))
            inputs = [cur, wname]
            if op == "Gemm" and len(node.input) > 2 and node.input[2]:
                bias = np.broadcast_to(
                    np.asarray(graph.const(node.input[2]), np.float32).reshape(-1), (c_out,)
                )
                bname = _fresh(graph, f"{out}/nchw_bias")
                graph.set_initializer(bname, np.ascontiguousarray(bias))
                inputs.append(bname)
            new = helper.make_node("Conv", inputs, [out], name=node.name, kernel_shape=[1, 1])
        elif op in _CONST_BINARY:
            const_first = node.input[0] != prev
            k = node.input[0] if const_first else node.input[1]
            raw = graph.const(k)
            value = _channel_const(graph, raw, c_out, len(shape))
            cname = _fresh(graph, f"{out}/nchw_const")
            graph.set_initializer(cname, np.ascontiguousarray(value.astype(raw.dtype)))
            inputs = [cname, cur] if const_first else [cur, cname]
            new = helper.make_node(op, inputs, [out], name=node.name)
        else:  # element-wise: the same node reading the NCHW tensor
            new = onnx.NodeProto()
            new.CopyFrom(node)
            new.input[0] = cur
            if node.domain == DOMAIN:
                custom_shapes[out] = nchw
        new_nodes.append(("node", node, new))
        cur = prev = out
    # the second Transpose's output is now `cur`'s value: readers of t2's output read cur instead
    final = t2.output[0]
    last = cur
    # rename: the last op writes t2's output name directly
    for item in new_nodes:
        if item[0] == "node" and item[2].output[0] == last:
            item[2].output[0] = final
            if last in custom_shapes:
                custom_shapes[final] = custom_shapes.pop(last)
            break
    else:  # only views between: t2's readers read x (cannot happen: a chain has at least one real op)
        return
    # aliases (Reshape views) resolve to the tensor they view
    alias = {}
    for item in new_nodes:
        if item[0] == "alias":
            src = item[2]
            alias[item[1]] = alias.get(src, src)
    for item in new_nodes:
        if item[0] == "node":
            new = item[2]
            for k, t in enumerate(new.input):
                if t in alias:
                    new.input[k] = alias[t]
    # write the new nodes in place of the old ones (same positions), drop the Transposes and views
    g = graph.model.graph
    replace = {id(item[1]): item[2] for item in new_nodes if item[0] == "node"}
    drop = {id(t1), id(t2)} | {id(node) for node in chain if id(node) not in replace}
    for i in range(len(g.node)):
        if id(g.node[i]) in replace:
            g.node[i].CopyFrom(replace[id(g.node[i])])
    graph.remove_nodes([node for node in list(g.node) if id(node) in drop])
    # stale declared shapes of the rewritten tensors; custom ops get their NCHW shapes declared
    changed = {node.output[0] for node in chain} | {final}
    vi = g.value_info
    for i in reversed(range(len(vi))):
        if vi[i].name in changed:
            del vi[i]
    for name, shape in custom_shapes.items():
        vi.append(helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, shape))
    if DOMAIN not in graph.opsets and custom_shapes:
        graph.model.opset_import.append(helper.make_opsetid(DOMAIN, DOMAIN_VERSION))
        graph.opsets[DOMAIN] = DOMAIN_VERSION


def _fresh(graph, base: str) -> str:
    name, k = base, 1
    while name in graph.constants or graph.producer(name) is not None:
        name, k = f"{base}_{k}", k + 1
    return name


def run(graph) -> bool:
    blocks = []
    for node in graph.nodes:
        if node.op_type == "Transpose" and _std(node):
            found = _chain(graph, node)
            if found is not None:
                blocks.append((node, *found))
    for t1, chain, t2 in blocks:
        _rewrite(graph, t1, chain, t2)
    if blocks:
        graph.remove_unused_initializers()
    return bool(blocks)
