"""Broadcasting and exact constants as pure data movement: repeat_axis / broadcast_to (Concat copies of a blob,
bit-exact for any input), ones_like / filled_like (Power 0: exactly 1 for any input) and constant_blob (a
constant tensor as an InnerProduct of one shared exact 1). Caffe has no Tile that OpenCV runs (OpenCV's Tile
wants an ONNX `repeats` parameter) and no constant layer OpenCV loads (BVLC Parameter is not registered there).
"""

from __future__ import annotations

import math

import numpy as np

from ._layers import fresh, power, reshape, view
from ._permute import MAX_PIECES

# OpenCV cost model of Concat copies (one thread, ns; see _permute): per contiguous run, per entry written
_RUN_NS = 15.0
_ENTRY_NS = 0.1
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
