"""Small exact building blocks shared by the composition mappers (no mapper is registered here).

Every helper returns a list of `caffe_net.Layer` and uses only layer types that BVLC Caffe 1.0 and OpenCV's Caffe
importer both register (Power, ReLU, Eltwise, Slice, Silence, Concat, Reshape). Names of extra layers and
intermediate blobs come from `ctx.fresh()`, based on the node name.
"""

from __future__ import annotations

from collections.abc import Sequence

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
