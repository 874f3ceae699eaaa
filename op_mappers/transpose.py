"""Transpose (any permutation of a static-shape tensor, rank 2 to 6 and beyond) -> Reshape + Slice + Concat.

The permutation is planned by `_permute` as a sequence of adjacent block swaps, each one Slice and one Concat
around free Reshape views (see op_mappers/_permute.py). Values are only copied, so the output is bit-exact on
Caffe and OpenCV for any input. Cost: 2 layers (+ Reshapes) and two copies of the tensor per swap; a rank-r
permutation needs at most r - 1 swaps (NCHW -> NHWC and (0, 1, 3, 2) one, (0, 3, 2, 1) two); one Slice has at
most MAX_PIECES (512) tops, larger swaps are factored into more passes. No size limit remains; the price is
speed on OpenCV when the innermost block moves (about 10-15 ns per entry for a swap ending at the last axis,
against ~1 ns for a dedicated transpose kernel).
"""

from __future__ import annotations

from onnx2caffe.registry import register

from ._compose import permute, reshape, tidy
from ._permute import MAX_PIECES, normalize

__all__ = ["MAX_PIECES", "transpose"]


@register(
    "Transpose",
    since=1,
    layers=("Reshape", "Slice", "Concat", "Power"),
    notes="any static permutation -> adjacent block swaps, each one Slice + one Concat (+ Reshape views); "
    "bit-exact copies; 2 layers and 2 copies per swap, at most rank - 1 swaps, <= 512 pieces per Slice (larger "
    "blocks factored); on OpenCV a swap moving the last axis costs ~10-30 ns per entry",
)
def transpose(node, ctx):
    """Transpose -> block swaps with Slice + Concat (+ Reshape views): bit-exact copies for any permutation."""
    x, y = node.inputs[0], node.outputs[0]
    shape = ctx.shape(x)
    r = len(shape)
    perm = node.attr("perm", None)
    perm = list(range(r))[::-1] if perm is None else [int(p) + r if int(p) < 0 else int(p) for p in perm]
    if sorted(perm) != list(range(r)):
        node.reject_attr("perm", perm, f"not a permutation of {r} axes")
    out_shape = tuple(shape[p] for p in perm)
    if r == 0:
        node.reject("a rank-0 (scalar) tensor has no Caffe blob form")
    dims, order = normalize(shape, perm)
    if order == sorted(order):
        # only unit axes move: the memory order is unchanged, a Reshape is exact
        return [reshape(ctx, node.name, ctx.blob(x), ctx.blob(y), out_shape)]
    return tidy(ctx, node, permute(ctx, node, ctx.blob(x), ctx.blob(y), shape, perm))
