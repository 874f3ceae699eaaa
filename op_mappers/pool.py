"""Pooling: MaxPool, AveragePool (1-D and 2-D), GlobalAveragePool, GlobalMaxPool (any rank) -> Pooling
(ReduceMean/ReduceMax: reduce.py).

1-D pooling runs the 2-D machinery below on a (N, C, L, 1) view (kernel 1, stride 1, no pad on the unit axis):
two Reshapes, the same Pooling. A dilated MaxPool pools one axis after the other (a maximum over a product of
windows is the maximum of the per-axis maxima, exactly) and each dilated axis through a grid view (see
_dilated_max): about 8 layers per dilated axis, bit-exact unless a whole window is -inf (its padding is -FLT_MAX).

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

_POOL_LAYERS = ("Pooling", "Slice", "Silence", "Scale", "Reshape", "Power", "Concat")


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
    rank = len(shape)
    if rank not in (3, 4):
        node.reject(f"only 1-D and 2-D pooling (rank 3 or 4) have a Caffe Pooling form, input rank is {rank}")
    nsp = rank - 2
    kernel = [int(k) for k in node.attr("kernel_shape")]
    strides = [int(s) for s in (node.attr("strides", None) or [1] * nsp)]
    dil = [int(d) for d in (node.attr("dilations", None) or [1] * nsp)]
    if any(d != 1 for d in dil) and method != "MAX":
        node.reject_attr(
            "dilations", dil, "Caffe Pooling has no dilation (a dilated maximum is mapped, a mean not)"
        )
    if len(kernel) != nsp or len(strides) != nsp or len(dil) != nsp or min(dil) < 1:
        node.reject(f"kernel_shape, strides and dilations must have {nsp} values (dilations >= 1)")
    auto_pad = node.attr("auto_pad", "NOTSET")
    if auto_pad.startswith("SAME") and any(d != 1 for d in dil):
        # onnxruntime sizes SAME pads with the undilated kernel, ONNX shape inference with the dilated one
        node.reject_attr(
            "auto_pad", auto_pad, "with dilations onnxruntime and ONNX disagree on the output size"
        )
    begin, end = _explicit_pads(node, shape, kernel, strides, dil)
    out = ctx.shape(y)
    src, top, layers = ctx.blob(x), ctx.blob(y), []
    if rank == 3:
        # 1-D: the same 2-D machinery on a (N, C, L, 1) view (a unit axis with kernel 1, stride 1, no padding)
        src, top = fresh(ctx, node, "as_2d"), fresh(ctx, node, "pool_2d")
        layers.append(reshape(ctx, src, ctx.blob(x), src, (*shape, 1)))
        shape, out = (*shape, 1), (*out, 1)
        kernel, strides, dil, begin, end = kernel + [1], strides + [1], dil + [1], begin + [0], end + [0]
    if dil == [1, 1]:
        layers += _pool_2d(
            node, ctx, method, ceil, include_pad, src, top, shape, out[2:], kernel, strides, begin, end
        )
    else:
        # a maximum is separable: pool one axis after the other (the same window set, max is exact in any
        # order), the dilated axis through a grid view
        axes = [i for i in range(2) if (kernel[i], strides[i], begin[i], end[i]) != (1, 1, 0, 0)]
        cur, cur_shape = src, list(shape)
        for n, i in enumerate(axes):
            nxt = top if n == len(axes) - 1 else fresh(ctx, node, f"axis{i}")
            want = _onnx_out(shape[2 + i], (kernel[i] - 1) * dil[i] + 1, strides[i], begin[i], end[i], ceil)
            if want != out[2 + i]:
                node.reject(
                    f"ONNX shape inference gives size {out[2 + i]} on axis {2 + i} but onnxruntime computes {want}"
                )
            if dil[i] > 1:
                layers += _dilated_max(
                    node, ctx, cur, nxt, cur_shape, 2 + i, kernel[i], strides[i], dil[i], begin[i], want
                )
            else:
                one = [[kernel[i], 1], [strides[i], 1], [begin[i], 0], [end[i], 0]]
                k2, s2, b2, e2 = ([v[1], v[0]] if i == 1 else v for v in one)
                sizes = (want, cur_shape[3]) if i == 0 else (cur_shape[2], want)
                layers += _pool_2d(
                    node,
                    ctx,
                    "MAX",
                    ceil,
                    0,
                    cur,
                    nxt,
                    cur_shape,
                    sizes,
                    k2,
                    s2,
                    b2,
                    e2,
                    fresh(ctx, node, "pool"),
                )
            cur, cur_shape[2 + i] = nxt, want
    if rank == 3:
        layers.append(reshape(ctx, fresh(ctx, node, "as_1d"), top, ctx.blob(y), ctx.shape(y)))
    return layers


def _dilated_max(node, ctx, bottom, top, shape, axis, k, s, d, b, n):
    """Max pooling along one axis of a rank-4 blob with dilation d: y[o] = max_j xp[s*o + d*j], xp the input with
    b leading pad positions that never win (-FLT_MAX, exact unless a whole window is -inf). xp is padded at the end
    to a length Lp that is a multiple of d and viewed as a (Lp / d, d) grid: position q*d + r is row q, column r,
    and q*d + r + d*j is row q + j of the same column, so a (k, 1) Pooling over the rows gives the dilated maximum
    for every start position at once. A Slice and a (1, 1) Pooling with stride s keep the starts s*o."""
    L = shape[axis]
    keff = (k - 1) * d + 1
    Lp = -(-max(s * (n - 1) + keff, b + L) // d) * d
    tail = Lp - b - L
    layers, unused, cur = [], [], bottom
    if b or tail:
        edge, lowest, padded = (fresh(ctx, node, t) for t in ("edge", "lowest", "padded"))
        layers += slice_range(ctx, node, bottom, edge, axis, L, 0, 1, unused)
        low = float(np.finfo(np.float32).min)
        layers.append(ctx.layer(lowest, "Power", [edge], [lowest], power_param={"scale": 0.0, "shift": low}))
        bottoms = [lowest] * b + [bottom] + [lowest] * tail
        layers.append(ctx.layer(padded, "Concat", bottoms, [padded], concat_param={"axis": axis}))
        cur = padded
    N, C, H, W = shape
    R = Lp // d
    dense = (R - k + 1) * d
    grid = (N, C, R, d * W) if axis == 2 else (N, C * H, R, d)
    back = [N, C, H, W]
    back[axis] = dense
    need = s * (n - 1) + 1
    steps = ["grid", "pool", "back"] + (["cut"] if need < dense else []) + (["stride"] if s > 1 else [])
    for step in steps:
        nxt = top if step == steps[-1] else fresh(ctx, node, f"dilated_{step}")
        if step == "grid":
            layers.append(reshape(ctx, nxt, cur, nxt, grid))
        elif step == "pool":
            p = {"pool": "MAX", "kernel_h": k, "kernel_w": 1}
            layers.append(ctx.layer(nxt, "Pooling", [cur], [nxt], pooling_param=p))
        elif step == "back":
            layers.append(reshape(ctx, nxt, cur, nxt, back))
        elif step == "cut":
            layers += slice_range(ctx, node, cur, nxt, axis, dense, 0, need, unused)
        else:  # a 1x1 window with stride s copies every s-th start
            p = {
                "pool": "MAX",
                "kernel_size": 1,
                "stride_h": s if axis == 2 else 1,
                "stride_w": s if axis == 3 else 1,
            }
            layers.append(ctx.layer(nxt, "Pooling", [cur], [nxt], pooling_param=p))
        cur = nxt
    return layers + silence(ctx, node, unused)


def _pool_2d(
    node,
    ctx,
    method,
    ceil,
    include_pad,
    bottom,
    y_blob,
    shape,
    inferred,
    kernel,
    strides,
    begin,
    end,
    name=None,
):
    """Pooling of the rank-4 blob `bottom` (shape `shape`) into `y_blob`; `inferred`: ONNX's output H, W; `name`:
    the Pooling layer's name (default: the node's)."""
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
    if tuple(inferred) != tuple(need):
        node.reject(
            f"ONNX shape inference gives spatial size {tuple(inferred)} but onnxruntime computes {tuple(need)} "
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
    cur = y_blob if last_ops == 0 else fresh(ctx, node, "pool")
    layers.append(ctx.layer(name or node.name, "Pooling", [bottom], [cur], pooling_param=p))
    dims = [shape[0], shape[1], caffe_n[0], caffe_n[1]]
    for i in range(2):
        if not cut[i]:
            continue
        last_ops -= 1
        top = y_blob if last_ops == 0 else fresh(ctx, node, f"crop{i}")
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
                [y_blob],
                blobs=[ratio],
                scale_param={"axis": 2, "num_axes": 2},
            )
        )
    return layers


@register(
    "MaxPool",
    since=1,
    layers=_POOL_LAYERS,
    notes="1-D (Reshape to (N, C, L, 1)) and 2-D, floor/ceil, any pads -> Pooling MAX (+ Slice/Silence); dilation: "
    "per axis, ~8 layers per dilated axis; exact",
)
def max_pool(node, ctx):
    """MaxPool 1-D / 2-D (floor and ceil mode, any pads, dilation through a grid view) -> Pooling MAX (+ Slice/Silence
    to cut extra windows, + Reshape for 1-D); exact."""
    if len(node.outputs) > 1 and node.outputs[1]:
        node.reject("the Indices output has no Caffe form")
    node.ignore_attr("storage_order", "only affects the Indices output")
    return _map_pool(node, ctx, "MAX", int(node.attr("ceil_mode", 0)), 0)


@register(
    "AveragePool",
    since=1,
    layers=_POOL_LAYERS,
    notes="1-D (Reshape to (N, C, L, 1)) and 2-D, floor/ceil, count_include_pad 0/1, any pads -> Pooling AVE "
    "(+ Slice, + Scale fixing the divisor: one extra rounding)",
)
def average_pool(node, ctx):
    """AveragePool 1-D / 2-D (floor/ceil, count_include_pad 0/1) -> Pooling AVE (+ Slice, + Scale fixing the
    divisor: one extra rounding, + Reshape for 1-D)."""
    return _map_pool(node, ctx, "AVE", int(node.attr("ceil_mode", 0)), int(node.attr("count_include_pad", 0)))


def _global(node, ctx, method: str, x: str, y: str, keepdims: bool = True):
    """Global pooling over every axis after the channels. Rank 4 is one Pooling layer; other ranks (>= 3) pool a
    (N, C, L, 1) / (N, C, D*H, W) view of the input (the same elements, so the same maximum and the same mean up
    to the summation order) and reshape the (N, C, 1, 1) result back."""
    shape = ctx.shape(x)
    if len(shape) < 3:
        node.reject(f"global pooling needs an input of rank >= 3, got rank {len(shape)}")
    p = {"pool": method, "global_pooling": True}
    if len(shape) == 4 and keepdims:
        return [ctx.layer(node.name, "Pooling", [ctx.blob(x)], [ctx.blob(y)], pooling_param=p)]
    layers, src = [], ctx.blob(x)
    if len(shape) != 4:
        spatial = shape[2:]
        src = fresh(ctx, node, "as_2d")
        view = (*shape[:2], int(np.prod(spatial[:-1])), spatial[-1]) if len(spatial) > 1 else (*shape, 1)
        layers.append(reshape(ctx, src, ctx.blob(x), src, view))
    mid = fresh(ctx, node, "pool")
    layers.append(ctx.layer(node.name, "Pooling", [src], [mid], pooling_param=p))
    out = (*shape[:2], *([1] * (len(shape) - 2))) if keepdims else shape[:2]
    layers.append(
        reshape(ctx, fresh(ctx, node, "squeeze" if not keepdims else "as_nd"), mid, ctx.blob(y), out)
    )
    return layers


@register("GlobalAveragePool", since=1, layers=("Pooling", "Reshape"))
def global_average_pool(node, ctx):
    """GlobalAveragePool (any rank >= 3) -> Pooling AVE global_pooling (+ Reshape around it unless rank 4)."""
    return _global(node, ctx, "AVE", node.inputs[0], node.outputs[0])


@register("GlobalMaxPool", since=1, layers=("Pooling", "Reshape"))
def global_max_pool(node, ctx):
    """GlobalMaxPool (any rank >= 3) -> Pooling MAX global_pooling (+ Reshape around it unless rank 4)."""
    return _global(node, ctx, "MAX", node.inputs[0], node.outputs[0])
