"""Small exact building blocks shared by the composition mappers (no mapper is registered here).

Every helper returns a list of `caffe_net.Layer` and uses only layer types that BVLC Caffe 1.0 and OpenCV's Caffe
importer both register (Power, ReLU, Eltwise, Slice, Silence, Concat, Reshape). Names of extra layers and
intermediate blobs come from `ctx.fresh()`, based on the node name.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

ELTWISE_PROD = "PROD"
ELTWISE_SUM = "SUM"
ELTWISE_MAX = "MAX"


def norm_axis(node, axis: int, rank: int, what: str = "axis") -> int:
    """`axis` in [0, rank) (negative counts from the end); rejects the node when out of range."""
    a = int(axis)
    if a < 0:
        a += rank
    if not 0 <= a < rank:
        node.reject_attr(what, axis, f"out of range for a rank-{rank} input")
    return a


def fresh(ctx, node, suffix: str) -> str:
    return ctx.fresh(f"{node.name}/{suffix}")


def power(ctx, name: str, bottom: str, top: str, power: float = 1.0, scale: float = 1.0, shift: float = 0.0):
    """Caffe Power: top = (shift + scale * bottom) ^ power; only non-default fields are written."""
    p = {}
    if power != 1.0:
        p["power"] = float(power)
    if scale != 1.0:
        p["scale"] = float(scale)
    if shift != 0.0:
        p["shift"] = float(shift)
    params = {"power_param": p} if p else {}
    return ctx.layer(name, "Power", [bottom], [top], **params)


def identity(ctx, name: str, bottom: str, top: str):
    """An exact copy (Power with default parameters: Caffe copies the data, OpenCV too)."""
    return power(ctx, name, bottom, top)


def eltwise(
    ctx, name: str, bottoms: Sequence[str], top: str, operation: str, coeff: Sequence[float] | None = None
):
    p = {"operation": operation}
    if coeff is not None:
        p["coeff"] = [float(c) for c in coeff]
    return ctx.layer(name, "Eltwise", list(bottoms), [top], eltwise_param=p)


def constant_like(ctx, node, bottom: str, value: float, tag: str = "const"):
    """A blob of `bottom`'s shape filled with `value`: Power(scale=0, shift=value). Caffe special-cases a zero
    scale and writes pow(shift, 1) = value exactly; OpenCV computes 0 * x + value = value for finite x.
    Returns (layers, blob)."""
    blob = fresh(ctx, node, tag)
    p = {"scale": 0.0}
    if value != 0.0:
        p["shift"] = float(value)
    return [ctx.layer(blob, "Power", [bottom], [blob], power_param=p)], blob


def max_with(ctx, node, bottom: str, top: str, lo: float, tag: str = "max"):
    """top = max(bottom, lo), exactly (ReLU when lo == 0, else Eltwise MAX with a constant blob)."""
    if lo == 0.0:
        return [ctx.layer(fresh(ctx, node, f"{tag}_relu"), "ReLU", [bottom], [top])]
    layers, c = constant_like(ctx, node, bottom, lo, f"{tag}_const")
    layers.append(eltwise(ctx, fresh(ctx, node, tag), [bottom, c], top, ELTWISE_MAX))
    return layers


def min_with(ctx, node, bottom: str, top: str, hi: float, tag: str = "min"):
    """top = min(bottom, hi) = -max(-bottom, -hi), exactly (negation is exact in floating point)."""
    neg = fresh(ctx, node, f"{tag}_neg")
    layers = [power(ctx, neg, bottom, neg, scale=-1.0)]
    clipped = fresh(ctx, node, f"{tag}_negmax")
    layers += max_with(ctx, node, neg, clipped, -hi, f"{tag}_negmax")
    layers.append(power(ctx, fresh(ctx, node, f"{tag}_back"), clipped, top, scale=-1.0))
    return layers


def clamp(ctx, node, bottom: str, top: str, lo: float | None, hi: float | None):
    """top = min(max(bottom, lo), hi) with either bound optional (ONNX Clip order: a lo above hi gives hi)."""
    if lo is None and hi is None:
        return [identity(ctx, fresh(ctx, node, "copy"), bottom, top)]
    if hi is None:
        return max_with(ctx, node, bottom, top, lo)
    if lo is None:
        return min_with(ctx, node, bottom, top, hi)
    mid = fresh(ctx, node, "lo")
    return max_with(ctx, node, bottom, mid, lo) + min_with(ctx, node, mid, top, hi)


def silence(ctx, node, blobs: Sequence[str]):
    """A Silence layer eating blobs nobody uses (so they do not become net outputs); [] when none."""
    blobs = [b for b in blobs if b]
    if not blobs:
        return []
    return [ctx.layer(fresh(ctx, node, "silence"), "Silence", blobs, [])]


def slice_range(
    ctx, node, bottom: str, top: str, axis: int, dim: int, start: int, end: int, unused: list[str]
):
    """top = bottom[start:end] along `axis` (0 <= start < end <= dim) with one Caffe Slice; the pieces before and
    after are appended to `unused` (the caller feeds them to one Silence layer)."""
    if start == 0 and end == dim:
        return [identity(ctx, fresh(ctx, node, "copy"), bottom, top)]
    points, tops = [], []
    if start > 0:
        points.append(start)
        before = fresh(ctx, node, "before")
        tops.append(before)
        unused.append(before)
    tops.append(top)
    if end < dim:
        points.append(end)
        after = fresh(ctx, node, "after")
        tops.append(after)
        unused.append(after)
    return [
        ctx.layer(
            fresh(ctx, node, "slice"),
            "Slice",
            [bottom],
            tops,
            slice_param={"axis": axis, "slice_point": points},
        )
    ]


def reshape(ctx, name: str, bottom: str, top: str, shape: Sequence[int]):
    return ctx.layer(
        name, "Reshape", [bottom], [top], reshape_param={"shape": {"dim": [int(d) for d in shape]}}
    )


def view(ctx, node, bottom: str, shape_now, shape, tag: str = "view") -> tuple[list, str]:
    """(layers, blob): `bottom` (of shape shape_now) seen as `shape` - no layer when the shapes already agree."""
    if tuple(shape_now) == tuple(shape):
        return [], bottom
    v = fresh(ctx, node, tag)
    return [reshape(ctx, v, bottom, v, shape)], v


# ---------------------------------------------------------------------------------------------- transposes

from ._permute import MAX_PIECES, permute  # noqa: E402, F401  (re-exported; _permute uses the helpers above)

# ---------------------------------------------------------------------------------------------- constants


def ones_scalar(ctx) -> tuple[list, str]:
    """(layers, blob): a (1, 1) blob holding exactly 1.0, shared by the whole net (built once, on first use).

    Caffe has no constant layer that OpenCV also loads (BVLC's Parameter is not registered there), so the 1 is
    made from data: one entry of the first graph input (Reshape to one row, Slice off the first entry, the rest
    to a Silence) raised to the power 0. Caffe special-cases power 0 and writes 1 without reading the input;
    OpenCV computes pow(x, 0), which is 1 for every x, inf and NaN included. Cost: 4 layers, one copy of the
    input."""
    key = "ones_scalar"
    if key in ctx.memo:
        return [], ctx.memo[key]
    graph_inputs = list(ctx.graph.inputs)
    if not graph_inputs:
        raise ValueError("a constant blob needs a graph input to derive it from")
    src = graph_inputs[0]
    shape = ctx.shape(src)
    n = math.prod(shape)
    layers = []
    name = ctx.fresh("onnx2caffe_const/one")
    blob = ctx.blob(src)
    if n > 1:
        flat = ctx.fresh("onnx2caffe_const/flat")
        layers.append(reshape(ctx, flat, blob, flat, (1, n)))
        first, rest = ctx.fresh("onnx2caffe_const/first"), ctx.fresh("onnx2caffe_const/rest")
        layers.append(
            ctx.layer(
                ctx.fresh("onnx2caffe_const/slice"),
                "Slice",
                [flat],
                [first, rest],
                slice_param={"axis": 1, "slice_point": [1]},
            )
        )
        layers.append(ctx.layer(ctx.fresh("onnx2caffe_const/silence"), "Silence", [rest], []))
        blob = first
    elif tuple(shape) != (1, 1):
        one = ctx.fresh("onnx2caffe_const/entry")
        layers.append(reshape(ctx, one, blob, one, (1, 1)))
        blob = one
    layers.append(ctx.layer(name, "Power", [blob], [name], power_param={"power": 0.0}))
    ctx.memo[key] = name
    return layers, name


def constant_blob(ctx, node, value, tag: str = "const") -> tuple[list, str]:
    """(layers, blob): a blob holding the constant array `value` exactly (shape value.shape; a scalar gives
    shape (1,)). InnerProduct of the shared exact 1 (ones_scalar) with the values as its (n, 1) weight:
    each output is value * 1, one product with no sum, so exact on both runtimes (inf and NaN included; a -0.0
    comes out as +0.0, the accumulator starting at +0).
    Cost: InnerProduct + Reshape, value.size weights (+ the shared 4-layer 1 once per net)."""
    value = np.asarray(value, dtype=np.float32)
    shape = value.shape if value.ndim else (1,)
    layers, one = ones_scalar(ctx)
    flat = fresh(ctx, node, tag)
    layers.append(
        ctx.layer(
            flat,
            "InnerProduct",
            [one],
            [flat],
            blobs=[np.ascontiguousarray(value.reshape(-1, 1))],
            inner_product_param={"num_output": int(value.size), "bias_term": False},
        )
    )
    more, blob = view(ctx, node, flat, (1, value.size), shape, f"{tag}_shape")
    return layers + more, blob


# ---------------------------------------------------------------------------------------------- broadcasting

# OpenCV cost model of Concat copies (one thread, ns; see _permute): per contiguous run, per entry written
_RUN_NS = 10.0
_ENTRY_NS = 0.4
_LAYER_NS = 3000.0


def _repeat_costs(P: int, T: int, Q: int) -> tuple[float, float]:
    """(one Concat of T copies, doubling) estimated ns of repeat_axis."""
    out = P * T * Q
    steps = max(1.0, math.log2(T))
    single = P * T * _RUN_NS + out * _ENTRY_NS + _LAYER_NS
    double = 4 * P * steps * _RUN_NS + 2 * out * _ENTRY_NS + steps * _LAYER_NS
    return single, double


def repeat_cost(P: int, T: int, Q: int) -> float:
    """Estimated ns of repeat_axis(P, T, Q) on OpenCV (the cheaper of its two forms)."""
    if T == 1:
        return 0.0
    single, double = _repeat_costs(P, T, Q)
    return min(single, double) if T <= MAX_PIECES else double


def repeat_axis(
    ctx, node, bottom: str, shape_now, P: int, T: int, Q: int, tag: str = "repeat"
) -> tuple[list, str]:
    """(layers, blob): `bottom` viewed as (P, 1, Q) repeated T times along axis 1 -> shape (P, T, Q).

    Pure copies with Concat (the same bottom listed several times), so bit-exact for any input. One Concat of
    T copies when the copied runs are long, else doubling (x2, x4, ... then one Concat of the binary parts:
    about 2 log2(T) layers and 2x the output in copies, but few runs when Q is small)."""
    layers, src = view(ctx, node, bottom, shape_now, (P, 1, Q), f"{tag}_view")
    if T == 1:
        return layers, src
    single, double = _repeat_costs(P, T, Q)
    if T <= MAX_PIECES and single <= double:
        top = fresh(ctx, node, tag)
        layers.append(ctx.layer(top, "Concat", [src] * T, [top], concat_param={"axis": 1}))
        return layers, top
    powers = {1: src}
    cur, n = src, 1
    while 2 * n <= T:
        nxt = fresh(ctx, node, f"{tag}_x{2 * n}")
        layers.append(ctx.layer(nxt, "Concat", [cur, cur], [nxt], concat_param={"axis": 1}))
        cur, n = nxt, 2 * n
        powers[n] = cur
    parts, rest = [cur], T - n
    for k in sorted(powers, reverse=True):
        if k <= rest:
            parts.append(powers[k])
            rest -= k
    if len(parts) == 1:
        return layers, cur
    top = fresh(ctx, node, tag)
    layers.append(ctx.layer(top, "Concat", parts, [top], concat_param={"axis": 1}))
    return layers, top


def broadcast_shape(node, *shapes) -> tuple[int, ...]:
    """numpy's broadcast of the shapes (rejects the node when they do not broadcast)."""
    try:
        return tuple(int(d) for d in np.broadcast_shapes(*[tuple(s) for s in shapes]))
    except ValueError:
        node.reject(f"shapes {', '.join(str(tuple(s)) for s in shapes)} do not broadcast")


def broadcast_steps(in_shape, out_shape) -> list[tuple[int, int, int]] | None:
    """The repeat_axis steps (P, T, Q) that broadcast_to takes (None when in_shape does not broadcast)."""
    in_shape, out_shape = tuple(in_shape), tuple(out_shape)
    r = len(out_shape)
    if len(in_shape) > r:
        return None
    aligned = (1,) * (r - len(in_shape)) + in_shape
    if any(a != o and a != 1 for a, o in zip(aligned, out_shape, strict=True)):
        return None
    # runs of axes: ("keep", size) or ("bcast", size); unit output axes are neutral
    runs: list[list] = []
    for a, o in zip(aligned, out_shape, strict=True):
        if o == 1:
            continue
        kind = "keep" if a == o else "bcast"
        if runs and runs[-1][0] == kind:
            runs[-1][1] *= o
        else:
            runs.append([kind, o])
    cur = [s if k == "keep" else 1 for k, s in runs]
    steps = []
    for size, i in sorted((s, i) for i, (k, s) in enumerate(runs) if k == "bcast"):
        steps.append((math.prod(cur[:i]), size, math.prod(cur[i + 1 :])))
        cur[i] = size
    return steps


def broadcast_cost(in_shape, out_shape) -> float:
    """Estimated ns (OpenCV) of broadcast_to(in_shape -> out_shape)."""
    return sum(repeat_cost(*step) for step in broadcast_steps(in_shape, out_shape) or [])


def broadcast_to(ctx, node, bottom: str, in_shape, out_shape, tag: str = "bcast") -> tuple[list, str]:
    """(layers, blob): `bottom` (shape in_shape) broadcast numpy-style to out_shape, as exact copies.

    Axes are aligned from the right; neighbouring broadcast axes are merged and each merged run of broadcast
    axes is one repeat_axis (Concat copies) of the blob viewed as (P, 1, Q); runs are expanded smallest factor
    first. Bit-exact for any input. Cost: per broadcast run 1 Concat (or ~2 log2(T) when doubling) and one
    copy of the grown blob."""
    steps = broadcast_steps(in_shape, out_shape)
    if steps is None:
        node.reject(f"shape {tuple(in_shape)} does not broadcast to {tuple(out_shape)}")
    layers: list = []
    blob, blob_shape = bottom, tuple(in_shape)
    for P, T, Q in steps:
        more, blob = repeat_axis(ctx, node, blob, blob_shape, P, T, Q, tag)
        layers += more
        blob_shape = (P, T, Q)
    more, blob = view(ctx, node, blob, blob_shape, out_shape, f"{tag}_shape")
    return layers + more, blob


def ones_like(ctx, node, bottom: str, tag: str = "ones") -> tuple[list, str]:
    """(layers, blob): a blob of `bottom`'s shape holding exactly 1.0: Power with power 0 (Caffe writes 1 without
    reading; OpenCV computes pow(x, 0) = 1 for every x, inf and NaN included)."""
    top = fresh(ctx, node, tag)
    return [ctx.layer(top, "Power", [bottom], [top], power_param={"power": 0.0})], top


def filled_like(ctx, node, bottom: str, value: float, tag: str = "fill") -> tuple[list, str]:
    """(layers, blob): a blob of `bottom`'s shape holding exactly `value` for any input (unlike constant_like,
    whose 0 * x is NaN on OpenCV for an infinite x): ones_like, then Power scale `value` (value * 1, exact)."""
    layers, ones = ones_like(ctx, node, bottom, f"{tag}_one")
    if value == 1.0:
        return layers, ones
    top = fresh(ctx, node, tag)
    layers.append(power(ctx, top, ones, top, scale=value))
    return layers, top


# ---------------------------------------------------------------------------------------------- reductions


SUM_SLICES = 64  # sum_axis adds up to this many slices with one Eltwise, more with a ones Convolution


def sum_axis(ctx, node, bottom: str, shape_now, P: int, R: int, Q: int, top: str | None = None, tag="sum"):
    """(layers, blob, shape): the sum over the middle axis of `bottom` viewed as (P, R, Q); the result has shape
    (P, 1) when Q == 1, else (P, 1, Q, 1).
    - Q == 1: InnerProduct with a (1, R) ones weight (x * 1 is exact);
    - R <= SUM_SLICES: Slice the view (P, R, Q, 1) into its R slices and add them with one Eltwise SUM (in
      order, like a sequential sum) - on OpenCV up to 3x faster than the Convolution below on large blobs;
    - otherwise Convolution 1x1 with a ones weight (1, R, 1, 1) over (P, R, Q, 1).
    Only the order of the float32 additions can differ from onnxruntime: |error| <= (R - 1) 2^-24 sum |x|.
    Cost: one pass (InnerProduct, Convolution) or two (Slice copies, then the Eltwise), R weights."""
    top = top or fresh(ctx, node, tag)
    ones_w = np.ones((1, R), np.float32)
    if Q == 1:
        layers, src = view(ctx, node, bottom, shape_now, (P, R), f"{tag}_in")
        layers.append(
            ctx.layer(
                fresh(ctx, node, tag),
                "InnerProduct",
                [src],
                [top],
                blobs=[ones_w],
                inner_product_param={"num_output": 1, "bias_term": False},
            )
        )
        return layers, top, (P, 1)
    layers, src = view(ctx, node, bottom, shape_now, (P, R, Q, 1), f"{tag}_in")
    if R == 1:
        layers.append(identity(ctx, fresh(ctx, node, tag), src, top))
    elif R <= SUM_SLICES:
        pieces = [fresh(ctx, node, f"{tag}_slice") for _ in range(R)]
        layers.append(
            ctx.layer(
                fresh(ctx, node, f"{tag}_split"),
                "Slice",
                [src],
                pieces,
                slice_param={"axis": 1, "slice_point": list(range(1, R))},
            )
        )
        layers.append(eltwise(ctx, fresh(ctx, node, tag), pieces, top, ELTWISE_SUM))
    else:
        layers.append(
            ctx.layer(
                fresh(ctx, node, tag),
                "Convolution",
                [src],
                [top],
                blobs=[ones_w.reshape(1, R, 1, 1)],
                convolution_param={"num_output": 1, "bias_term": False, "kernel_size": [1]},
            )
        )
    return layers, top, (P, 1, Q, 1)


def pool_axis(
    ctx, node, bottom: str, shape_now, P: int, R: int, Q: int, method: str, top: str | None = None, tag="pool"
):
    """(layers, blob, shape): MAX or AVE over the middle axis of `bottom` viewed as (P, R, Q), shape (P, 1, 1, Q):
    Pooling with an (R, 1) window over the view (P, 1, R, Q). MAX is exact for finite and +-inf inputs (Caffe's
    pooling starts from -FLT_MAX and skips NaN: a window of only NaN / -inf gives -FLT_MAX); AVE sums in float32
    and divides by R (one rounding more than the sum). Cost: one pass over the input."""
    top = top or fresh(ctx, node, tag)
    layers, src = view(ctx, node, bottom, shape_now, (P, 1, R, Q), f"{tag}_in")
    layers.append(
        ctx.layer(
            fresh(ctx, node, tag),
            "Pooling",
            [src],
            [top],
            pooling_param={"pool": method, "kernel_h": R, "kernel_w": 1},
        )
    )
    return layers, top, (P, 1, 1, Q)


def scale_bias(ctx, name: str, bottom: str, top: str, scale, bias, out_shape) -> list:
    """top = bottom * scale + bias for a blob of shape out_shape and constants scale / bias (bias may be None)
    broadcastable to it: Power when both are single values, else one Scale whose learned blobs cover the
    smallest run of axes where they vary (BVLC's Bias layer is not in OpenCV: an add is a unit Scale with a
    bias). One rounding per multiply and per add, like onnxruntime's."""
    out_shape = tuple(out_shape)
    rank = len(out_shape)
    arrays = [
        np.broadcast_to(
            np.asarray(a, np.float64).reshape((1,) * (rank - np.ndim(a)) + np.shape(a)), out_shape
        )
        for a in (scale, bias)
        if a is not None
    ]
    if all(a.size == 0 or np.all(a == a.reshape(-1)[0]) for a in arrays):
        s = float(np.asarray(scale, np.float64).reshape(-1)[0])
        t = 0.0 if bias is None else float(np.asarray(bias, np.float64).reshape(-1)[0])
        return [power(ctx, name, bottom, top, scale=s, shift=t)]
    if bias is not None and np.ndim(scale) == 0:
        arrays[0] = np.full(out_shape, float(scale))
    varying = [i for i in range(rank) if any(np.ptp(a, axis=i).any() for a in arrays)]
    first, last = (varying[0], varying[-1]) if varying else (rank - 1, rank - 1)
    index = tuple(slice(None) if first <= i <= last else 0 for i in range(rank))
    blobs = [np.ascontiguousarray(a[index], dtype=np.float32) for a in arrays]
    p = {}
    if first != 1:
        p["axis"] = first
    if last - first + 1 != 1:
        p["num_axes"] = last - first + 1
    if bias is not None:
        p["bias_term"] = True
    return [ctx.layer(name, "Scale", [bottom], [top], blobs=blobs, scale_param=p)]


def tidy(ctx, node, layers: list) -> list:
    """Drop Reshape layers that only feed another Reshape (the compositions chain views): a Reshape of a
    Reshape reads the same memory, so the second can read the first's bottom. Blobs written for the node's
    outputs are kept. Returns the list (modified in place)."""
    outputs = {ctx.blob(o) for o in node.outputs if o}
    changed = True
    while changed:
        changed = False
        uses: dict[str, int] = {}
        for layer in layers:
            for b in layer.proto.bottom:
                uses[b] = uses.get(b, 0) + 1
        made = {layer.proto.top[0]: layer for layer in layers if layer.type == "Reshape"}
        for layer in layers:
            if layer.type != "Reshape":
                continue
            first = made.get(layer.proto.bottom[0])
            if first is None or first is layer or uses.get(first.proto.top[0]) != 1:
                continue
            if first.proto.top[0] in outputs:
                continue
            layer.proto.bottom[0] = first.proto.bottom[0]
            layers.remove(first)
            changed = True
            break
    return layers


def eltwise_nd(
    ctx, node, bottoms: Sequence[str], top: str, shape, operation: str, coeff=None, name: str | None = None
) -> list:
    """Eltwise over blobs of one `shape` of any rank: OpenCV's Eltwise takes at most 5 axes, so a higher-rank
    blob is viewed as (1, count) around it (Reshape shares the data)."""
    shape = tuple(shape)
    name = name or fresh(ctx, node, "eltwise")
    if len(shape) <= 5:
        return [eltwise(ctx, name, bottoms, top, operation, coeff)]
    flat = (1, math.prod(shape))
    layers = []
    views = []
    for b in bottoms:
        more, v = view(ctx, node, b, shape, flat, "flat")
        layers += more
        views.append(v)
    mid = fresh(ctx, node, "eltwise_flat")
    layers.append(eltwise(ctx, name, views, mid, operation, coeff))
    layers.append(reshape(ctx, fresh(ctx, node, "unflat"), mid, top, shape))
    return layers
