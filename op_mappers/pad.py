"""Pad (constant, reflect, edge, wrap; any pads including negative ones, any axes and rank) -> copies along each
padded axis: one Slice into the runs the output needs and one Concat of them in order.

Along one axis the padded output is a fixed index list into the input: o -> i (reflect: i mirrored at the edges
without repeating them, edge: i clamped, wrap: i modulo the length) or the constant. onnxruntime first crops by the
negative pads, then pads the cropped extent, so the list is built on the cropped range; reflect pads longer than
the cropped length - 1 are refused (onnxruntime refuses them too). A run of consecutive indices is one slice piece;
a piece may appear several times in the Concat (edge padding repeats the edge slice). The constant is a
Power(scale=0, shift=value) of a one-element-thick slice: Caffe writes the value exactly, OpenCV computes
0 * x + value (exact for finite x). Everything else is copied, never computed: bit-exact.

Cost: per padded axis one Slice, one Concat (a copy of the output), a Power of one slice for constant padding,
and a Silence when a piece is cut off; no multiply-adds. A zero Pad directly before a Conv or pooling that can take
it as its own padding is folded into that layer by the fold_pad_into_conv_pool pass instead.
"""

from __future__ import annotations

import numpy as np

from onnx2caffe.registry import register

from ._compose import norm_axis
from ._resample import finish, gather

_LAYERS = ("Slice", "Concat", "Power", "Silence")
_MODES = ("constant", "reflect", "edge", "wrap")


def axis_index(node, mode: str, n: int, begin: int, end: int) -> list[int | None]:
    """The input index (None: the constant) of every output position along one axis, onnxruntime's way."""
    lo, hi = max(-begin, 0), n - max(-end, 0)
    if hi <= lo:
        node.reject(
            f"pads ({begin}, {end}) leave nothing of an axis of size {n} (Caffe blobs cannot be empty)"
        )
    m = hi - lo
    before, after = max(begin, 0), max(end, 0)
    if mode == "reflect" and (before or after) and max(before, after) > m - 1:
        node.reject(f"reflect pads ({before}, {after}) exceed the axis length {m} - 1")
    index: list[int | None] = []
    for k in range(-before, m + after):
        if 0 <= k < m:
            index.append(lo + k)
        elif mode == "constant":
            index.append(None)
        elif mode == "edge":
            index.append(lo + min(max(k, 0), m - 1))
        elif mode == "wrap":
            index.append(lo + k % m)
        else:  # reflect
            index.append(lo + (-k if k < 0 else 2 * (m - 1) - k))
    return index


def _pad(node, ctx, mode: str, pads, value: float, axes=None):
    x, y = node.input(0), node.output(0)
    shape = ctx.shape(x)
    rank = len(shape)
    if mode not in _MODES:
        node.reject_attr("mode", mode, f"expected one of {', '.join(_MODES)}")
    if axes is None:
        axes = list(range(rank))
    axes = [norm_axis(node, a, rank, "axes") for a in axes]
    if len(set(axes)) != len(axes):
        node.reject_attr("axes", axes, "an axis is listed twice")
    pads = [int(p) for p in pads]
    if len(pads) != 2 * len(axes):
        node.reject(f"pads has {len(pads)} values for {len(axes)} axes")
    if not np.isfinite(value):
        node.reject(f"constant value {value} is not finite")
    indexes = {}
    for k, a in enumerate(axes):
        b, e = pads[k], pads[k + len(axes)]
        if b or e:
            indexes[a] = axis_index(node, mode, shape[a], b, e)
    want = tuple(len(indexes[a]) if a in indexes else shape[a] for a in range(rank))
    got = ctx.graph.shape(y)
    if got is not None and tuple(got) != want:
        node.reject(f"output has inferred shape {tuple(got)}, expected {want}")
    layers: list = []
    blob, cur = ctx.blob(x), tuple(shape)
    # crops first (less to copy afterwards), then the growing axes
    for a in sorted(indexes, key=lambda a: len(indexes[a]) - shape[a]):
        more, blob, cur = gather(ctx, node, blob, cur, a, indexes[a], value)
        layers += more
    return finish(ctx, node, layers, blob, ctx.blob(y))


@register(
    "Pad",
    since=1,
    until=11,
    layers=_LAYERS,
    notes="pads/paddings, mode and value attributes -> as Pad 11+ (Slice + Concat copies per padded axis)",
)
def pad_v1(node, ctx):
    """Pad with attributes (opsets 1-10: pads/paddings, mode, value) -> Slice + Concat per axis (copies)."""
    pads = node.attr("pads", None)
    if pads is None:
        pads = node.attr("paddings", None)
    else:
        node.ignore_attr("paddings", "superseded by pads")
    if pads is None:
        node.reject("attribute pads is required")
    return _pad(node, ctx, node.attr("mode", "constant"), pads, float(node.attr("value", 0.0)))


@register(
    "Pad",
    since=11,
    layers=_LAYERS,
    notes="constant/reflect/edge/wrap, negative pads (crops), any axes and rank -> per padded axis one Slice and one "
    "Concat of the runs (copies, bit-exact, no MACs); a constant is Power(scale 0, shift v) of one slice (exact; "
    "OpenCV: finite inputs); reflect beyond length-1 refused (as onnxruntime)",
)
def pad_v11(node, ctx):
    """Pad (constant, reflect, edge, wrap; negative pads crop; axes input) -> Slice + Concat per padded axis:
    copies, bit-exact (a constant is Power(scale=0, shift=v) of one slice: exact for finite inputs on OpenCV)."""
    pads = ctx.const_input(node, 1, "pads")
    if pads is None:
        node.reject("input pads is required")
    value = ctx.const_input(node, 2, "constant_value")
    if value is not None and value.size != 1:
        node.reject(f"constant_value has {value.size} values, expected one")
    axes = ctx.const_input(node, 3, "axes")
    return _pad(
        node,
        ctx,
        node.attr("mode", "constant"),
        pads.tolist(),
        0.0 if value is None else float(value[0]),
        None if axes is None else axes.tolist(),
    )
