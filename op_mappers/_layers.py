"""Basic exact layer helpers shared by the compositions (no mapper is registered here; import them from
_compose, which re-exports this module and the composition primitives built on it).

Every helper returns `caffe_net.Layer`s of types that BVLC Caffe 1.0 and OpenCV's Caffe importer both register.
Names of extra layers and intermediate blobs come from `ctx.fresh()`, based on the node name.
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
