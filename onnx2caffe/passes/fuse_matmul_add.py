"""MatMul(x, W) + constant bias -> Gemm (x 2-D, W a constant 2-D weight): one InnerProduct with a bias."""

from __future__ import annotations

import numpy as np
import onnx

NAME = "fuse_matmul_add"
DESCRIPTION = "fold the constant bias Add after a 2-D MatMul with a constant weight into a Gemm"


def run(graph) -> bool:
    changed = False
    if (graph.opset("") or 0) < 7:  # Gemm before opset 7 needs the `broadcast` attribute for a 1-D bias
        return False
    for mm in graph.nodes:
        if mm.op_type != "MatMul" or mm.domain not in ("", "ai.onnx") or len(mm.input) != 2:
            continue
        x, w_name = mm.input
        y = mm.output[0]
        w = graph.const(w_name)
        xs = graph.shape(x)
        if (
            w is None
            or w.ndim != 2
            or xs is None
            or len(xs) != 2
            or graph.is_const(x)
            or graph.is_graph_output(y)
        ):
            continue
        if not np.issubdtype(w.dtype, np.floating):
            continue
        users = graph.consumers(y)
        if len(users) != 1 or users[0].op_type != "Add" or users[0].domain not in ("", "ai.onnx"):
            continue
        add = users[0]
        if len(add.input) != 2 or add.input[0] == add.input[1]:
            continue
        b_name = add.input[1] if add.input[0] == y else add.input[0]
        b = graph.const(b_name)
        n = w.shape[1]
        if b is None or b.dtype != w.dtype or b.size not in (1, n) or b.ndim > 2:
            continue
        if b.ndim == 2 and b.shape[0] != 1:
            continue
        bias = np.broadcast_to(b.reshape(-1), (n,)).astype(w.dtype)
        bias_name = f"{b_name}__gemm_bias" if b.shape != (n,) else b_name
        if bias_name != b_name:
            graph.set_initializer(bias_name, bias)
        gemm = onnx.helper.make_node("Gemm", [x, w_name, bias_name], [add.output[0]], name=mm.name)
        mm.CopyFrom(gemm)
        graph.remove_nodes([add])
        changed = True
    return changed
