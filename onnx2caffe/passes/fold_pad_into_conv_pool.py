"""Fold a constant zero Pad on the spatial axes into the following Conv / AveragePool / MaxPool `pads`.

Exact only when the padded zeros reach the consumer as its own padding would:
- Conv: its padding is zeros, always exact;
- AveragePool: the consumer gets count_include_pad=1 (the zeros are counted); refused when it already has pads
  with count_include_pad=0, and in ceil mode (windows starting inside the end padding would be dropped);
- MaxPool: its padding is ignored (-inf), equal to zero padding only when the input is known non-negative
  (produced by Relu, Sigmoid, Clip with min >= 0, ...), pads stay below the kernel, and floor mode.
The result may be asymmetric; the Conv / pooling mappers handle asymmetric pads exactly.
Every other Pad (non-zero constants, reflect / edge / wrap, negative pads, a MaxPool input that may be negative,
any axis) stays a node for the Pad mapper (op_mappers/pad.py: Slice + Concat copies).
"""

from __future__ import annotations

import numpy as np
import onnx

NAME = "fold_pad_into_conv_pool"
DESCRIPTION = "merge a constant zero Pad on H,W into the next Conv/AveragePool/MaxPool"

_NON_NEGATIVE_OPS = {"Relu", "Sigmoid", "Softmax", "Abs", "Exp", "Softplus", "HardSigmoid", "Sqrt"}


def _attrs(node) -> dict:
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def _pad_amounts(graph, pad, rank: int) -> tuple[list[int], list[int]] | None:
    """(begin, end) per axis for a constant-zero Pad, else None."""
    a = _attrs(pad)
    mode = a.get("mode", b"constant")
    if (mode.decode() if isinstance(mode, bytes) else mode) != "constant":
        return None
    opset = graph.node_opset(pad)
    if opset < 11:
        pads = a.get("pads", a.get("paddings"))
        value = float(a.get("value", 0.0))
        axes = None
    else:
        pads = graph.const(pad.input[1]) if len(pad.input) > 1 and pad.input[1] else None
        if pads is None:
            return None
        pads = [int(v) for v in pads.reshape(-1)]
        value = 0.0
        if len(pad.input) > 2 and pad.input[2]:
            cv = graph.const(pad.input[2])
            if cv is None or cv.size != 1:
                return None
            value = float(cv.reshape(-1)[0])
        axes = None
        if len(pad.input) > 3 and pad.input[3]:
            ax = graph.const(pad.input[3])
            if ax is None:
                return None
            axes = [int(v) + rank if int(v) < 0 else int(v) for v in ax.reshape(-1)]
    if pads is None or value != 0.0:
        return None
    pads = list(pads)
    axes = list(range(rank)) if axes is None else axes
    if len(pads) != 2 * len(axes):
        return None
    begin, end = [0] * rank, [0] * rank
    for k, ax in enumerate(axes):
        begin[ax], end[ax] = pads[k], pads[k + len(axes)]
    return begin, end


def _non_negative(graph, tensor: str) -> bool:
    c = graph.const(tensor)
    if c is not None:
        return bool(np.all(c >= 0))
    prod = graph.producer(tensor)
    if prod is None or prod.domain not in ("", "ai.onnx"):
        return False
    if prod.op_type in _NON_NEGATIVE_OPS:
        return True
    if prod.op_type == "Clip":
        opset = graph.node_opset(prod)
        if opset < 11:
            lo = _attrs(prod).get("min")
        else:
            lo_arr = graph.const(prod.input[1]) if len(prod.input) > 1 and prod.input[1] else None
            lo = None if lo_arr is None else float(lo_arr.reshape(-1)[0])
        return lo is not None and lo >= 0
    if prod.op_type == "MaxPool":
        return _non_negative(graph, prod.input[0])
    return False


def run(graph) -> bool:
    changed = False
    for pad in graph.nodes:
        if pad.op_type != "Pad" or pad.domain not in ("", "ai.onnx") or not pad.input:
            continue
        x, y = pad.input[0], pad.output[0]
        shape = graph.shape(x)
        if shape is None or len(shape) < 3 or graph.is_graph_output(y):
            continue
        users = graph.consumers(y)
        if len(users) != 1 or users[0].op_type not in ("Conv", "AveragePool", "MaxPool"):
            continue
        user = users[0]
        if user.domain not in ("", "ai.onnx") or user.input[0] != y or list(user.input).count(y) != 1:
            continue
        amounts = _pad_amounts(graph, pad, len(shape))
        if amounts is None:
            continue
        begin, end = amounts
        if any(begin[:2]) or any(end[:2]) or min(begin + end) < 0:
            continue
        a = _attrs(user)
        auto_pad = a.get("auto_pad", b"NOTSET")
        auto_pad = auto_pad.decode() if isinstance(auto_pad, bytes) else auto_pad
        if auto_pad not in ("NOTSET", "VALID"):
            continue
        nsp = len(shape) - 2
        own = list(a.get("pads", [0] * (2 * nsp))) if auto_pad == "NOTSET" else [0] * (2 * nsp)
        new = [own[i] + begin[2 + i] for i in range(nsp)] + [own[nsp + i] + end[2 + i] for i in range(nsp)]
        if user.op_type in ("AveragePool", "MaxPool") and a.get("ceil_mode", 0):
            continue
        if user.op_type == "AveragePool" and any(own) and not a.get("count_include_pad", 0):
            continue
        if user.op_type == "MaxPool":
            kernel = list(a.get("kernel_shape", []))
            dil = list(a.get("dilations", [1] * nsp))
            if len(user.output) > 1 and user.output[1]:
                continue  # Indices would change
            if not _non_negative(graph, x) or len(kernel) != nsp:
                continue
            if any(max(new[i], new[nsp + i]) >= (kernel[i] - 1) * dil[i] + 1 for i in range(nsp)):
                continue
        keep = [att for att in user.attribute if att.name not in ("pads", "auto_pad", "count_include_pad")]
        del user.attribute[:]
        user.attribute.extend(keep)
        user.attribute.append(onnx.helper.make_attribute("pads", new))
        if user.op_type == "AveragePool":
            user.attribute.append(onnx.helper.make_attribute("count_include_pad", 1))
        user.input[0] = x
        graph.remove_nodes([pad])
        changed = True
    return changed
