"""Gather with constant indices from an activation -> Slice + Concat + Reshape (pure copies: bit-exact).

Transformers select with constant indices: the class token (x[:, 0]), the q / k / v parts of a fused qkv
projection (qkv[0], qkv[1], qkv[2]). The indices are grouped into runs of consecutive ascending positions; one
Slice cuts the data along `axis` at every run boundary (pieces nobody reads go to a Silence layer), one Concat
joins the runs' pieces in index order (a piece may appear several times), one Reshape gives the output shape
(data.shape[:axis] + indices.shape + data.shape[axis + 1:]). Cost: 1-3 layers and one copy of the selected
entries. A Gather of constant data by constant indices is folded before mapping (passes/fold_constants.py);
constant data looked up by computed indices (an embedding) is refused: Caffe's Embed is not in OpenCV.
"""

from __future__ import annotations

import numpy as np

from onnx2caffe.registry import register

from ._compose import MAX_PIECES, fresh, identity, norm_axis, reshape, silence

_LAYERS = ("Slice", "Concat", "Reshape", "Silence", "Power")


def runs_of(indices) -> list[tuple[int, int]]:
    """[start, end) runs of consecutive ascending indices, in order (a run never goes back)."""
    runs: list[list[int]] = []
    for i in (int(v) for v in indices):
        if runs and i == runs[-1][1]:
            runs[-1][1] += 1
        else:
            runs.append([i, i + 1])
    return [(s, e) for s, e in runs]


def select(ctx, node, bottom: str, shape, axis: int, indices, top: str, out_shape) -> list:
    """Layers writing top (out_shape) = bottom (shape) at `indices` (normalised, in range) along `axis`."""
    dim = shape[axis]
    runs = runs_of(indices)
    points = sorted({p for run in runs for p in run if 0 < p < dim})
    if len(points) + 1 > MAX_PIECES or len(runs) > MAX_PIECES:
        node.reject(
            f"{len(indices)} indices make {len(runs)} runs of consecutive positions; more than {MAX_PIECES} "
            "Slice / Concat pieces (MAX_PIECES) is refused"
        )
    layers: list = []
    edges = [0, *points, dim]
    if points:
        pieces = [fresh(ctx, node, f"piece{k}") for k in range(len(edges) - 1)]
        layers.append(
            ctx.layer(
                fresh(ctx, node, "slice"),
                "Slice",
                [bottom],
                pieces,
                slice_param={"axis": axis, "slice_point": points},
            )
        )
    else:  # every run is the whole axis
        pieces = [bottom]
    chosen = []
    for s, e in runs:
        chosen += [pieces[k] for k in range(edges.index(s), edges.index(e))]
    layers += silence(ctx, node, [p for p in pieces if p not in chosen])
    if len(chosen) == 1:
        src = chosen[0]
    else:
        src = fresh(ctx, node, "joined")
        layers.append(ctx.layer(src, "Concat", chosen, [src], concat_param={"axis": axis}))
    if tuple(out_shape) == tuple(shape) and src == bottom:
        return layers + [identity(ctx, node.name, src, top)]
    return layers + [reshape(ctx, node.name, src, top, out_shape)]


@register(
    "Gather",
    since=1,
    layers=_LAYERS,
    notes="constant indices on an activation -> Slice at the run boundaries + Concat of the runs + Reshape "
    "(copies, bit-exact); constant data by computed indices (embeddings) refused",
)
def gather(node, ctx):
    """Gather(data, constant indices, axis) -> Slice + Concat + Reshape (exact copies)."""
    data, idx, y = node.input(0), node.input(1), node.output(0)
    indices = ctx.const(idx)
    if indices is None:
        if ctx.is_const(data):
            node.reject(
                "a constant table looked up by computed indices (an embedding): Caffe's Embed layer is not "
                "loadable by OpenCV"
            )
        node.reject("the indices are computed at run time (only constant indices select by copies)")
    if ctx.is_const(data):
        node.reject("both inputs are constants (not folded)")
    if not np.issubdtype(indices.dtype, np.integer):
        node.reject(f"indices of type {indices.dtype}")
    shape = tuple(ctx.shape(data))
    axis = norm_axis(node, node.attr("axis", 0), len(shape))
    dim = shape[axis]
    flat = indices.astype(np.int64).reshape(-1)
    if flat.size and (flat.min() < -dim or flat.max() >= dim):
        node.reject(f"index out of range for axis {axis} of size {dim}: {flat.min()}..{flat.max()}")
    flat = np.where(flat < 0, flat + dim, flat)
    out_shape = tuple(ctx.shape(y))
    if not out_shape:
        node.reject("a rank-0 (scalar) output has no Caffe blob form")
    if flat.size == 0:
        node.reject("an empty output has no Caffe blob form")
    return select(ctx, node, ctx.blob(data), shape, axis, flat, ctx.blob(y), out_shape)
