"""MatMul(Transpose(a), b) between two activations, where the Transpose swaps the last two axes (attention's
q.transpose(-2, -1) @ k, v @ attn.transpose(-2, -1)) -> onnx2caffe::MatMul(a, b, transA=1) (and transB): the
product composition of op_mappers/matmul reads the operand in the orientation it has, so the transpose is
never materialised (on OpenCV a transpose of the last two axes costs ~10 ns per entry).

Exact by construction: the MatMul is the same product; only its mapping changes. The Transpose is folded only
when every reader of its output is such a MatMul (between two activations) and the output is no graph output.
"""

from __future__ import annotations

import onnx

NAME = "fold_transpose_into_matmul"
DESCRIPTION = (
    "Transpose of the last two axes feeding activation-activation MatMuls -> onnx2caffe::MatMul trans"
)

DOMAIN = "onnx2caffe"
DOMAIN_VERSION = 1


def _std(node) -> bool:
    return node.domain in ("", "ai.onnx")


def _swaps_last_two(graph, node) -> bool:
    if node is None or node.op_type != "Transpose" or not _std(node):
        return False
    shape = graph.shape(node.input[0])
    if shape is None or len(shape) < 2:
        return False
    r = len(shape)
    perm = next((list(a.ints) for a in node.attribute if a.name == "perm"), list(range(r))[::-1])
    return perm == list(range(r - 2)) + [r - 1, r - 2]


def _activation_matmul(graph, node) -> bool:
    return (
        node.op_type == "MatMul"
        and _std(node)
        and len(node.input) == 2
        and not any(graph.is_const(i) for i in node.input)
        and all(graph.shape(i) is not None and len(graph.shape(i)) >= 2 for i in node.input)
    )


def run(graph) -> bool:
    foldable = {}
    for t in graph.nodes:
        if not _swaps_last_two(graph, t) or graph.is_graph_output(t.output[0]):
            continue
        users = graph.consumers(t.output[0])
        if users and all(_activation_matmul(graph, u) for u in users):
            foldable[t.output[0]] = t
    if not foldable:
        return False
    matmuls = {id(u): u for name in foldable for u in graph.consumers(name)}
    for mm in matmuls.values():
        inputs, flags = [], {}
        for name, flag in zip(mm.input, ("transA", "transB"), strict=True):
            if name in foldable:
                inputs.append(foldable[name].input[0])
                flags[flag] = 1
            else:
                inputs.append(name)
        y = mm.output[0]
        shape = graph.shape(y)
        elem = graph.elem_types.get(y, onnx.TensorProto.FLOAT)
        mm.CopyFrom(onnx.helper.make_node("MatMul", inputs, [y], name=mm.name, domain=DOMAIN, **flags))
        # shape inference cannot see into a custom op: record the output's shape
        if shape is not None and not graph.is_graph_output(y):
            vi = graph.graph.value_info
            for k in reversed(range(len(vi))):
                if vi[k].name == y:
                    del vi[k]
            vi.append(onnx.helper.make_tensor_value_info(y, elem, list(shape)))
    graph.remove_nodes(foldable.values())
    if DOMAIN not in graph.opsets:
        graph.model.opset_import.append(onnx.helper.make_opsetid(DOMAIN, DOMAIN_VERSION))
        graph.opsets[DOMAIN] = DOMAIN_VERSION
    return True
