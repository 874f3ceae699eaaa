"""Split and Slice (step 1) -> Caffe Slice with slice_point; pieces nobody reads go to a Silence layer."""

from __future__ import annotations

import numpy as np

from onnx2caffe.registry import register

from ._compose import fresh, norm_axis, silence, slice_range


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
    cuts = {}
    for start, end, axis, step in zip(starts, ends, axes, steps, strict=True):
        a = norm_axis(node, axis, rank, "axes")
        if a in cuts:
            node.reject(f"axis {a} is sliced twice")
        if step != 1:
            node.reject(f"step {step} on axis {a}: Caffe Slice only takes contiguous ranges (step 1)")
        dim = shape[a]
        s = start + dim if start < 0 else start
        e = end + dim if end < 0 else end
        s, e = min(max(s, 0), dim), min(max(e, 0), dim)
        if e <= s:
            node.reject(
                f"the slice [{start}:{end}] of axis {a} (size {dim}) is empty; Caffe blobs cannot be empty"
            )
        if (s, e) != (0, dim):
            cuts[a] = (s, e)
    want = tuple((cuts[a][1] - cuts[a][0]) if a in cuts else shape[a] for a in range(rank))
    got = ctx.graph.shape(y)
    if got is not None and tuple(got) != want:
        node.reject(f"output has inferred shape {got}, expected {want}")
    bottom, top = ctx.blob(x), ctx.blob(y)
    if not cuts:
        return slice_range(ctx, node, bottom, top, 0, shape[0], 0, shape[0], [])
    layers, unused = [], []
    order = sorted(cuts)
    for k, a in enumerate(order):
        out = top if k == len(order) - 1 else fresh(ctx, node, f"axis{a}")
        s, e = cuts[a]
        layers += slice_range(ctx, node, bottom, out, a, shape[a], s, e, unused)
        bottom = out
    return layers + silence(ctx, node, unused)


@register("Slice", since=1, until=10, layers=("Slice", "Silence"))
def slice_v1(node, ctx):
    """Slice with starts/ends/axes attributes (opset < 10): one Caffe Slice per cut axis, rest silenced."""
    starts = node.attr("starts", None)
    ends = node.attr("ends", None)
    if starts is None or ends is None:
        node.reject("attributes starts and ends are required")
    return _slice(node, ctx, starts, ends, node.attr("axes", None), None)


@register("Slice", since=10, layers=("Slice", "Silence"))
def slice_v10(node, ctx):
    """Slice with constant starts/ends/axes/steps inputs (step 1 only): one Caffe Slice per cut axis."""
    starts = _const_ints(node, ctx, 1, "starts")
    ends = _const_ints(node, ctx, 2, "ends")
    if starts is None or ends is None:
        node.reject("inputs starts and ends are required")
    return _slice(
        node, ctx, starts, ends, _const_ints(node, ctx, 3, "axes"), _const_ints(node, ctx, 4, "steps")
    )
