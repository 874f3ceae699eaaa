"""float64 islands in a float32 model -> float32 arithmetic (the only kind Caffe has).

torch writes them when a float32 activation meets a float64 tensor (a buffer made with torch.from_numpy, an
explicit .double()):

    Cast(x, to=DOUBLE) -> Mul / Add / Exp / ... with float64 constants -> Cast(to=FLOAT)

When every float64 activation of the graph is made by such a Cast or by an element-wise or data-moving op in
the list below, and is read only by those ops or by a Cast back to FLOAT (never a graph output), the pass
computes the island in float32: the entry Casts become FLOAT (then dropped), float64 constants read there are
rounded once to float32 (a new initializer; the original stays for other readers), and the exit Casts become
float32 copies (dropped too).

This changes values, within a stated bound (the one pass that does): each demoted op rounds its result to
float32 where onnxruntime rounds to float64, and each float64 constant is rounded to float32 once. A product,
quotient, square root or exp adds at most 2^-24 relative per op and per constant operand before the exit
Cast's own rounding (one op with one constant: within 1 ulp of onnxruntime); a sum or difference adds 2^-24 of
its larger operand, so a cancelling chain is off by that much of its operands. Anything else float64 is left
alone for the mappers to refuse.
"""

from __future__ import annotations

import numpy as np
import onnx

from .fuse_l2_normalize import _attrs, _std
from .fuse_layer_norm import _unique

NAME = "demote_float64"
DESCRIPTION = (
    "compute float32 -> float64 -> float32 islands (Cast to DOUBLE, element-wise ops, Cast to FLOAT) in "
    "float32: 2^-24 relative per op and per float64 constant"
)

_DOUBLE, _FLOAT = onnx.TensorProto.DOUBLE, onnx.TensorProto.FLOAT
ELEMENTWISE = {
    "Abs", "Add", "Clip", "Div", "Elu", "Exp", "Log", "Max", "Min", "Mul", "Neg", "Pow", "Reciprocal", "Relu",
    "Sigmoid", "Softplus", "Sqrt", "Sub", "Tanh",
}  # fmt: skip
MOVES = {"Concat", "Expand", "Flatten", "Identity", "Reshape", "Slice", "Squeeze", "Transpose", "Unsqueeze"}


def _is_double(graph, tensor: str) -> bool:
    return bool(tensor) and not graph.is_const(tensor) and graph.dtype(tensor) == np.float64


def _cast_to(node) -> int | None:
    return _attrs(node).get("to") if node.op_type == "Cast" and _std(node) else None


def run(graph) -> bool:
    doubles = {o for n in graph.graph.node for o in n.output if _is_double(graph, o)}
    if not doubles:
        return False
    region = []
    for t in doubles:
        node = graph.producer(t)
        if node is None or not _std(node) or graph.is_graph_output(t):
            return False
        if node.op_type == "Cast":
            src = node.input[0]
            if _cast_to(node) != _DOUBLE or not (graph.dtype(src) == np.float32 or src in doubles):
                return False
        elif node.op_type not in ELEMENTWISE | MOVES:
            return False
        if len([o for o in node.output if o]) != 1:
            return False
        region.append(node)
        for reader in graph.consumers(t):
            if reader.output and reader.output[0] in doubles:
                continue
            if _cast_to(reader) != _FLOAT:
                return False
    exits = {id(r): r for t in doubles for r in graph.consumers(t) if _cast_to(r) == _FLOAT}
    for node in region:
        if node.op_type == "Cast":
            for a in node.attribute:
                if a.name == "to":
                    a.i = _FLOAT
            continue
        for k, name in enumerate(node.input):
            value = graph.const(name)
            if value is not None and value.dtype == np.float64:
                f32 = _unique(graph, f"{name}__float32")
                graph.set_initializer(f32, value.astype(np.float32))
                node.input[k] = f32
    # the casts are now float32 -> float32: let their readers read the source
    for cast in [n for n in region if n.op_type == "Cast"] + list(exits.values()):
        x, y = cast.input[0], cast.output[0]
        prod = graph.producer(x)
        if not graph.is_graph_output(y):
            graph.rename_input_uses(y, x)
            graph.aliases[y] = x
        elif prod is not None and len(graph.consumers(x)) == 1 and not graph.is_graph_output(x):
            prod.output[list(prod.output).index(x)] = y  # the producer writes the graph output itself
            graph.aliases[x] = y
        else:
            continue  # kept: the Cast mapper copies
        graph.remove_nodes([cast])
    # shape inference keeps the float64 types recorded for these tensors unless they are dropped
    vi = graph.graph.value_info
    for i in reversed(range(len(vi))):
        if vi[i].name in doubles:
            del vi[i]
    graph.remove_unused_initializers()
    return True
