"""onnx2caffe::ChannelShuffle (made by the fuse_channel_shuffle pass from ShuffleNet's Reshape-Transpose-Reshape)
-> the block swap (N, g, C/g, H*W) -> (N, C/g, g, H*W) of op_mappers/_permute: Reshape, one Slice into the g
groups, one Concat, Reshape back to (N, C, H, W).

Output channel c * g + t is input channel t * (C/g) + c. The composition only copies values (no arithmetic), so
it is bit-exact for every input, inf and NaN included. (A 1x1 Convolution with a permutation-matrix weight would
be one layer but is exact only for finite inputs: 0 * inf is NaN; it also costs C*C multiply-adds per pixel.)
"""

from __future__ import annotations

from onnx2caffe.registry import register

from ._compose import permute

DOMAIN = "onnx2caffe"


@register("ChannelShuffle", since=1, domain=DOMAIN, layers=("Reshape", "Slice", "Concat"))
def channel_shuffle(node, ctx):
    """Channel shuffle with `group` groups on a (N, C, H, W) tensor -> Reshape + Slice + Concat (exact copy)."""
    x, y = node.inputs[0], node.outputs[0]
    shape = ctx.shape(x)
    g = int(node.attr("group", 0))
    if len(shape) != 4:
        node.reject(f"expected a rank-4 (N, C, H, W) input, got rank {len(shape)}")
    n, c, h, w = shape
    if g < 2 or c % g:
        node.reject_attr("group", g, f"must be >= 2 and divide the {c} channels")
    if ctx.shape(y) != shape:
        node.reject(f"output shape {ctx.shape(y)} differs from the input shape {shape}")
    view = (n, g, c // g, h * w)
    return permute(
        ctx, node, ctx.blob(x), ctx.blob(y), view, (0, 2, 1, 3), bottom_shape=shape, top_shape=shape
    )
