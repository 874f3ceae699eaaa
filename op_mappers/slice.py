"""Split and Slice -> Caffe Slice with slice_point; pieces nobody reads go to a Silence layer.

Slice with steps: a step s > 1 keeps every s-th element (YOLOv5's Focus: x[..., ::2, ::2], x[..., 1::2, ::2]): a
crop to exactly (count - 1) * s + 1 elements, then AVE Pooling with kernel 1 and stride s (both spatial axes of a
4-D tensor in one pooling, any other axis through a (P, 1, D, R) view). A window of one element divided by 1 is
a copy: bit-exact, inf and NaN included; no multiply-adds. A negative step reverses the axis (torch.flip): the
kept elements are picked in ascending order, then reversed by one Slice into single entries and one Concat in
reverse order (copies; one blob per element of the reversed axis).
"""

from __future__ import annotations

import numpy as np

from onnx2caffe.registry import register

from ._compose import fresh, norm_axis, silence, slice_range
from ._resample import finish, flip, pick


def _unused(ctx, tensor: str) -> bool:
    """True when no node reads `tensor` and it is not a graph output (or it is an omitted output)."""
    if not tensor:
        return True
    g = ctx.graph
    return not g.consumers(tensor) and not g.is_graph_output(tensor)


def _const_ints(node, ctx, index: int, what: str) -> list[int] | None:
    value = ctx.const_input(node, index, what)
    return None if value is None else [int(v) for v in value]


@register("Split", since=1, layers=("Slice", "Silence"))
def split(node, ctx):
    """Split along one axis (split sizes from the attribute, the input or equal parts / num_outputs)."""
    x = node.input(0)
    shape = ctx.shape(x)
    axis = norm_axis(node, node.attr("axis", 0), len(shape))
    dim = shape[axis]
    n = len(node.outputs)
    sizes = node.attr("split", None)
    from_input = _const_ints(node, ctx, 1, "split")
    if from_input is not None:
        sizes = from_input
    num_outputs = node.attr("num_outputs", None)
    if num_outputs is not None and num_outputs != n:
        node.reject_attr("num_outputs", num_outputs, f"the node has {n} outputs")
    if sizes is None:
        if num_outputs is not None:  # opset 18: chunks of ceil(dim / n), the last one smaller
            chunk = -(-dim // n)
            sizes = [chunk] * (n - 1) + [dim - chunk * (n - 1)]
        else:
            if dim % n:
                node.reject(f"axis {axis} of size {dim} cannot be split into {n} equal parts")
            sizes = [dim // n] * n
    sizes = [int(s) for s in sizes]
    if len(sizes) != n or sum(sizes) != dim or min(sizes) < 0:
        node.reject(f"split sizes {sizes} do not cut axis {axis} of size {dim} into {n} outputs")
    if min(sizes) == 0:
        node.reject(f"split sizes {sizes} contain an empty piece (Caffe blobs cannot be empty)")
    for out, size in zip(node.outputs, sizes, strict=True):
        got = ctx.graph.shape(out) if out else None
        want = shape[:axis] + (size,) + shape[axis + 1 :]
        if got is not None and tuple(got) != want:
            node.reject(f"output '{out}' has inferred shape {got}, expected {want}")
    tops = [ctx.blob(o) if o else fresh(ctx, node, f"piece{i}") for i, o in enumerate(node.outputs)]
    points = list(np.cumsum(sizes[:-1]).tolist())
    params = (
        {"slice_param": {"axis": axis, "slice_point": points}} if points else {"slice_param": {"axis": axis}}
    )
    layers = [ctx.layer(node.name, "Slice", [ctx.blob(x)], tops, **params)]
    unused = [top for top, o in zip(tops, node.outputs, strict=True) if _unused(ctx, o)]
    if len(unused) == len(tops):
        unused = unused[1:]  # keep one top alive: the node is dead code that a pass should have removed
    return layers + silence(ctx, node, unused)


def _axis_range(node, a: int, dim: int, start: int, end: int, step: int) -> range:
    """The indices ONNX Slice keeps along one axis (its clamping rules for both step signs)."""
    if step == 0:
        node.reject(f"step 0 on axis {a}")
    if start < 0:
        start += dim
    if end < 0:
        end += dim
    if step > 0:
        start, end = min(max(start, 0), dim), min(max(end, 0), dim)
    else:
        start, end = min(max(start, 0), dim - 1), min(max(end, -1), dim - 1)
    kept = range(start, end, step)
    if not kept:
        node.reject(
            f"the slice [{start}:{end}:{step}] of axis {a} (size {dim}) is empty; Caffe blobs cannot be empty"
        )
    return kept


def _slice(node, ctx, starts, ends, axes, steps):
    x, y = node.input(0), node.output(0)
    shape = ctx.shape(x)
    rank = len(shape)
    if len(starts) != len(ends):
        node.reject(f"starts ({len(starts)}) and ends ({len(ends)}) differ in length")
    if axes is None:
        axes = list(range(len(starts)))
    if steps is None:
        steps = [1] * len(starts)
    if not len(axes) == len(steps) == len(starts):
        node.reject("starts, ends, axes and steps differ in length")
    cuts, strided = {}, {}
    for start, end, axis, step in zip(starts, ends, axes, steps, strict=True):
        a = norm_axis(node, axis, rank, "axes")
        if a in cuts or a in strided:
            node.reject(f"axis {a} is sliced twice")
        kept = _axis_range(node, a, shape[a], start, end, step)
        if kept.step == 1:
            if (kept.start, kept.stop) != (0, shape[a]):
                cuts[a] = (kept.start, kept.stop)
        else:
            strided[a] = kept
    want = tuple(
        len(strided[a]) if a in strided else (cuts[a][1] - cuts[a][0]) if a in cuts else shape[a]
        for a in range(rank)
    )
    got = ctx.graph.shape(y)
    if got is not None and tuple(got) != want:
        node.reject(f"output has inferred shape {got}, expected {want}")
    bottom, top = ctx.blob(x), ctx.blob(y)
    if not cuts and not strided:
        return slice_range(ctx, node, bottom, top, 0, shape[0], 0, shape[0], [])
    layers, unused = [], []
    order = sorted(cuts)
    cur = tuple(shape)
    for k, a in enumerate(order):
        out = top if k == len(order) - 1 and not strided else fresh(ctx, node, f"axis{a}")
        s, e = cuts[a]
        layers += slice_range(ctx, node, bottom, out, a, shape[a], s, e, unused)
        bottom = out
        cur = cur[:a] + (e - s,) + cur[a + 1 :]
    layers += silence(ctx, node, unused)
    if strided:
        # every kept index list ascending: start, stride, count; the reversed axes are flipped afterwards
        picks = {}
        for a, kept in strided.items():
            lo = min(kept[0], kept[-1])
            picks[a] = (lo, abs(kept.step), len(kept))
        more, bottom, cur = pick(ctx, node, bottom, cur, picks)
        layers += more
        for a, kept in sorted(strided.items()):
            if kept.step < 0 and len(kept) > 1:
                more, bottom, cur = flip(ctx, node, bottom, cur, a)
                layers += more
        layers = finish(ctx, node, layers, bottom, top)
    return layers


@register("Slice", since=1, until=10, layers=("Slice", "Silence"))
def slice_v1(node, ctx):
    """Slice with starts/ends/axes attributes (opset < 10): one Caffe Slice per cut axis, rest silenced."""
    starts = node.attr("starts", None)
    ends = node.attr("ends", None)
    if starts is None or ends is None:
        node.reject("attributes starts and ends are required")
    return _slice(node, ctx, starts, ends, node.attr("axes", None), None)


@register(
    "Slice",
    since=10,
    layers=("Slice", "Silence", "Pooling", "Concat", "Reshape", "Power"),
    notes="constant starts/ends/axes/steps -> one Slice per cut axis; step s > 1: exact crop + AVE Pooling kernel 1 "
    "stride s; negative steps: Slice + Concat reversed (copies, bit-exact, no MACs)",
)
def slice_v10(node, ctx):
    """Slice with constant starts/ends/axes/steps inputs: one Caffe Slice per cut axis; steps > 1 a crop and an
    AVE Pooling kernel 1 stride s (copies, bit-exact); negative steps also Slice + Concat reversed (copies)."""
    starts = _const_ints(node, ctx, 1, "starts")
    ends = _const_ints(node, ctx, 2, "ends")
    if starts is None or ends is None:
        node.reject("inputs starts and ends are required")
    return _slice(
        node, ctx, starts, ends, _const_ints(node, ctx, 3, "axes"), _const_ints(node, ctx, 4, "steps")
    )
