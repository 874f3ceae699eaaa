"""Transpose that swaps two adjacent runs of axes -> pure data movement (Reshape, Slice, Concat); exact.

A permutation of the form [0..i) + [j..k) + [i..j) + [k..r) views the input as (P, A, B, Q) and swaps A and B
(A = the product of axes [i, j), B of [j, k)). Caffe has no Permute layer in BVLC (it is an SSD-Caffe addition),
but the swap is a regrouping of contiguous pieces: slice the smaller of A and B into single entries, reshape
each piece so that the sliced axis sits on the other side, and concatenate. Every value is copied, never
computed, so the result is bit-exact for any input (inf and NaN included). The layer count grows with
min(A, B), so swaps needing more than MAX_PIECES pieces are refused. Other permutations (e.g. NCHW -> NHWC
of a tensor with more than one non-unit axis on each side) have no compact exact BVLC form and are refused.
"""

from __future__ import annotations

import math

from onnx2caffe.registry import register

from ._compose import fresh, identity, reshape

MAX_PIECES = 64


def block_swap(perm: list[int]) -> tuple[int, int, int] | None:
    """(i, j, k) when perm == [0..i) + [j..k) + [i..j) + [k..r) with i < j < k, else None."""
    r = len(perm)
    i = 0
    while i < r and perm[i] == i:
        i += 1
    if i == r:
        return None
    j = perm[i]  # the first moved axis is the start of the second block
    k = j
    while i + (k - j) < r and perm[i + (k - j)] == k:
        k += 1
    rest = perm[i + (k - j) :]
    if rest[: j - i] != list(range(i, j)) or rest[j - i :] != list(range(k, r)):
        return None
    return i, j, k


def swap_layers(ctx, node, bottom: str, top: str, in_shape, P: int, A: int, B: int, Q: int, out_shape):
    """Layers computing top = bottom viewed as (P, A, B, Q) with A and B swapped, reshaped to out_shape."""
    layers = []
    view = (P, A, B, Q)
    src = bottom
    if tuple(in_shape) != view:
        src = fresh(ctx, node, "view")
        layers.append(reshape(ctx, src, bottom, src, view))
    n = min(A, B)
    axis = 1 if n == A else 2  # slice the smaller block into single entries
    pieces = [fresh(ctx, node, f"piece{t}") for t in range(n)]
    layers.append(
        ctx.layer(
            fresh(ctx, node, "split"),
            "Slice",
            [src],
            pieces,
            slice_param={"axis": axis, "slice_point": list(range(1, n))},
        )
    )
    moved = []
    for t, piece in enumerate(pieces):
        m = fresh(ctx, node, f"moved{t}")
        # a piece (P, 1, B, Q) becomes (P, B, 1, Q); a piece (P, A, 1, Q) becomes (P, 1, A, Q)
        shape = (P, B, 1, Q) if axis == 1 else (P, 1, A, Q)
        layers.append(reshape(ctx, m, piece, m, shape))
        moved.append(m)
    joined = top if tuple(out_shape) == (P, B, A, Q) else fresh(ctx, node, "joined")
    cat_axis = 2 if axis == 1 else 1
    layers.append(
        ctx.layer(fresh(ctx, node, "join"), "Concat", moved, [joined], concat_param={"axis": cat_axis})
    )
    if joined != top:
        layers.append(reshape(ctx, fresh(ctx, node, "out"), joined, top, out_shape))
    return layers


@register("Transpose", since=1, layers=("Reshape", "Slice", "Concat", "Power"))
def transpose(node, ctx):
    """Transpose swapping two adjacent runs of axes -> Reshape + Slice + Reshape + Concat (exact copy)."""
    x, y = node.inputs[0], node.outputs[0]
    shape = ctx.shape(x)
    out_shape = ctx.shape(y)
    r = len(shape)
    perm = node.attr("perm", None)
    perm = list(range(r))[::-1] if perm is None else [int(p) + r if int(p) < 0 else int(p) for p in perm]
    if sorted(perm) != list(range(r)):
        node.reject_attr("perm", perm, f"not a permutation of {r} axes")
    # axes of size 1 move freely: drop them before looking for the block structure
    kept = [p for p in perm if shape[p] != 1]
    order = sorted(kept)
    squeezed = [order.index(p) for p in kept]
    if squeezed == sorted(squeezed):
        # only unit axes move: the memory order is unchanged, a Reshape is exact
        return [reshape(ctx, node.name, ctx.blob(x), ctx.blob(y), out_shape)]
    dims = [shape[p] for p in order]
    found = block_swap(squeezed)
    if found is None:
        node.reject_attr(
            "perm",
            perm,
            "only a swap of two adjacent runs of axes has an exact BVLC form (Slice + Concat); "
            "Caffe 1.0 has no Permute layer",
        )
    i, j, k = found
    P, A, B, Q = (math.prod(dims[:i]), math.prod(dims[i:j]), math.prod(dims[j:k]), math.prod(dims[k:]))
    if min(A, B) > MAX_PIECES:
        node.reject_attr(
            "perm",
            perm,
            f"the swap of blocks of {A} and {B} entries needs {min(A, B)} Slice pieces (limit {MAX_PIECES})",
        )
    if min(A, B) == 1:  # cannot happen after dropping unit axes, kept for clarity
        return [identity(ctx, node.name, ctx.blob(x), ctx.blob(y))]
    return swap_layers(ctx, node, ctx.blob(x), ctx.blob(y), shape, P, A, B, Q, out_shape)
