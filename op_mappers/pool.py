"""Pooling: MaxPool, AveragePool, GlobalAveragePool, GlobalMaxPool -> Pooling (ReduceMean/ReduceMax: reduce.py).

Caffe's Pooling always rounds the output size up (ceil, minus one when the last window would start in the end
padding) with symmetric padding, and its AVE divisor is the window clipped to H + pad. Every ONNX variant is
mapped exactly on top of that:
- window alignment: Caffe pads P >= the ONNX begin pad b with (P - b) a multiple of the stride, so the ONNX
  windows are a contiguous run of Caffe windows; extra Caffe windows (floor mode, asymmetric pads) are cut off
  with Slice (+ Silence for the dropped pieces);
- AVE divisor: where onnxruntime's divisor (count_include_pad 0: the valid elements; 1: the window clipped to
  H + end pad) differs from Caffe's, a Scale layer with a constant per-position map Caffe_divisor / ONNX_divisor
  corrects it (one extra float32 rounding; the ratio is exact in float64 before the cast).
"""

from __future__ import annotations

import numpy as np

from onnx2caffe.registry import register

from ._compose import fresh, reshape, silence, slice_range

_POOL_LAYERS = ("Pooling", "Slice", "Silence", "Scale")


def _caffe_out(H: int, k: int, s: int, P: int) -> int:
    out = -(-(H + 2 * P - k) // s) + 1
    return out


def _explicit_pads(node, shape, kernel, strides, dilations=None):
    """ONNX (begin, end) pads per spatial axis, from `pads` or `auto_pad`."""
    nsp = len(shape) - 2
    auto_pad = node.attr("auto_pad", "NOTSET")
    pads = node.attr("pads", None)
    dil = dilations or [1] * nsp
    if auto_pad in ("NOTSET", ""):
        pads = list(pads) if pads is not None else [0] * (2 * nsp)
        return pads[:nsp], pads[nsp:]
    if pads is not None and any(pads):
        node.reject_attr("pads", pads, f"given together with auto_pad={auto_pad}")
    if auto_pad == "VALID":
        return [0] * nsp, [0] * nsp
    if auto_pad not in ("SAME_UPPER", "SAME_LOWER"):
        node.reject_attr("auto_pad", auto_pad, "unknown auto_pad value")
    begin, end = [], []
    for i in range(nsp):
        H = shape[2 + i]
        out = -(-H // strides[i])
        total = max((out - 1) * strides[i] + (kernel[i] - 1) * dil[i] + 1 - H, 0)
        small = total // 2
        if auto_pad == "SAME_UPPER":
            begin.append(small)
            end.append(total - small)
        else:
            begin.append(total - small)
            end.append(small)
    return begin, end


def _onnx_out(H, k, s, b, e, ceil):
    L = H + b + e - k
    out = (-(-L // s) if ceil else L // s) + 1
    if ceil and (out - 1) * s >= H + b:
        out -= 1  # onnxruntime (like PyTorch and Caffe): the last window must start inside the input or begin pad
    return out


def _onnx_divisor(H, k, s, b, e, n, include_pad):
    st = np.arange(n) * s - b
    if include_pad:
        return np.minimum(st + k, H + e) - st
    return np.minimum(st + k, H) - np.maximum(st, 0)


def _caffe_divisor(H, k, s, P, first, n):
    st = (np.arange(n) + first) * s - P
    return np.minimum(st + k, H + P) - st


def _map_pool(node, ctx, method: str, ceil: int, include_pad: int):
    x, y = node.inputs[0], node.outputs[0]
    shape = ctx.shape(x)
    if len(shape) != 4:
        node.reject(f"only 2-D pooling (rank-4 input) has a Caffe Pooling form, input rank is {len(shape)}")
    kernel = [int(k) for k in node.attr("kernel_shape")]
    strides = [int(s) for s in (node.attr("strides", None) or [1, 1])]
    dil = node.attr("dilations", None)
    if dil is not None and any(d != 1 for d in dil):
        node.reject_attr("dilations", dil, "Caffe Pooling has no dilation")
    begin, end = _explicit_pads(node, shape, kernel, strides)
    layers, unused = [], []
    caffe_pad, first, caffe_n, need = [], [], [], []
    for i in range(2):
        H, k, s, b, e = shape[2 + i], kernel[i], strides[i], begin[i], end[i]
        n = _onnx_out(H, k, s, b, e, ceil)
        if n < 1:
            node.reject(f"empty output along axis {2 + i}")
        P, j = b, 0
        while True:
            if P >= k and P > 0:
                node.reject(
                    f"pads {begin}/{end} with kernel {kernel}: no Caffe padding (< kernel) aligns the windows"
                )
            cn = _caffe_out(H, k, s, P)
            if P > 0 and (cn - 1) * s >= H + P:
                cn -= 1
            if cn >= j + n:
                break
            P, j = P + s, j + 1
        caffe_pad.append(P)
        first.append(j)
        caffe_n.append(cn)
        need.append(n)
    inferred = ctx.shape(y)
    if tuple(inferred[2:]) != tuple(need):
        node.reject(
            f"ONNX shape inference gives spatial size {tuple(inferred[2:])} but onnxruntime computes {tuple(need)} "
            "(ceil mode with a last window starting in the padding); re-export without ceil_mode"
        )
    # Caffe's rule (applied only with padding) uses pad_h and pad_w together
    if any(caffe_pad):
        for i in range(2):
            H, k, s, P = shape[2 + i], kernel[i], strides[i], caffe_pad[i]
            cn = _caffe_out(H, k, s, P)
            if (cn - 1) * s >= H + P:
                cn -= 1
            caffe_n[i] = cn
            if cn < first[i] + need[i]:
                node.reject("no exact Caffe padding for these pads")
    p = {"pool": method}
    if kernel[0] == kernel[1]:
        p["kernel_size"] = kernel[0]
    else:
        p["kernel_h"], p["kernel_w"] = kernel
    if strides[0] == strides[1]:
        if strides[0] != 1:
            p["stride"] = strides[0]
    else:
        p["stride_h"], p["stride_w"] = strides
    if caffe_pad[0] == caffe_pad[1]:
        if caffe_pad[0]:
            p["pad"] = caffe_pad[0]
    else:
        p["pad_h"], p["pad_w"] = caffe_pad
    ratio = None
    if method == "AVE":
        r = []
        for i in range(2):
            H, k, s, b, e = shape[2 + i], kernel[i], strides[i], begin[i], end[i]
            dc = _caffe_divisor(H, k, s, caffe_pad[i], first[i], need[i]).astype(np.float64)
            do = _onnx_divisor(H, k, s, b, e, need[i], include_pad).astype(np.float64)
            r.append(dc / do)
        if not (np.all(r[0] == 1) and np.all(r[1] == 1)):
            ratio = np.outer(r[0], r[1]).astype(np.float32)
    cut = [first[i] > 0 or caffe_n[i] > first[i] + need[i] for i in range(2)]
    last_ops = sum(cut) + (ratio is not None)
    cur = ctx.blob(y) if last_ops == 0 else fresh(ctx, node, "pool")
    layers.append(ctx.layer(node.name, "Pooling", [ctx.blob(x)], [cur], pooling_param=p))
    dims = [shape[0], shape[1], caffe_n[0], caffe_n[1]]
    for i in range(2):
        if not cut[i]:
            continue
        last_ops -= 1
        top = ctx.blob(y) if last_ops == 0 else fresh(ctx, node, f"crop{i}")
        layers += slice_range(ctx, node, cur, top, 2 + i, dims[2 + i], first[i], first[i] + need[i], unused)
        dims[2 + i] = need[i]
        cur = top
    layers += silence(ctx, node, unused)
    if ratio is not None:
        layers.append(
            ctx.layer(
                fresh(ctx, node, "divisor"),
                "Scale",
                [cur],
                [ctx.blob(y)],
                blobs=[ratio],
                scale_param={"axis": 2, "num_axes": 2},
            )
        )
    return layers


@register("MaxPool", since=1, layers=_POOL_LAYERS)
def max_pool(node, ctx):
    """MaxPool (floor and ceil mode, any pads) -> Pooling MAX (+ Slice/Silence to cut extra windows)."""
    if len(node.outputs) > 1 and node.outputs[1]:
        node.reject("the Indices output has no Caffe form")
    node.ignore_attr("storage_order", "only affects the Indices output")
    return _map_pool(node, ctx, "MAX", int(node.attr("ceil_mode", 0)), 0)


@register("AveragePool", since=1, layers=_POOL_LAYERS)
def average_pool(node, ctx):
    """AveragePool (floor/ceil, count_include_pad 0/1) -> Pooling AVE (+ Slice, + Scale fixing the divisor)."""
    return _map_pool(node, ctx, "AVE", int(node.attr("ceil_mode", 0)), int(node.attr("count_include_pad", 0)))


def _global(node, ctx, method: str, x: str, y: str, keepdims: bool = True):
    shape = ctx.shape(x)
    if len(shape) != 4:
        node.reject(f"global pooling needs a rank-4 input, got rank {len(shape)}")
    if keepdims:
        return [
            ctx.layer(
                node.name,
                "Pooling",
                [ctx.blob(x)],
                [ctx.blob(y)],
                pooling_param={"pool": method, "global_pooling": True},
            )
        ]
    mid = fresh(ctx, node, "pool")
    return [
        ctx.layer(
            node.name, "Pooling", [ctx.blob(x)], [mid], pooling_param={"pool": method, "global_pooling": True}
        ),
        reshape(ctx, fresh(ctx, node, "squeeze"), mid, ctx.blob(y), shape[:2]),
    ]


@register("GlobalAveragePool", since=1, layers=("Pooling",))
def global_average_pool(node, ctx):
    """GlobalAveragePool -> Pooling AVE global_pooling."""
    return _global(node, ctx, "AVE", node.inputs[0], node.outputs[0])


@register("GlobalMaxPool", since=1, layers=("Pooling",))
def global_max_pool(node, ctx):
    """GlobalMaxPool -> Pooling MAX global_pooling."""
    return _global(node, ctx, "MAX", node.inputs[0], node.outputs[0])
