"""onnx2caffe::ChannelShuffle (made by the fuse_channel_shuffle pass from ShuffleNet's Reshape-Transpose-Reshape)
-> Reshape to (N, g, C/g, H*W), Slice into the g groups, Reshape, Concat, Reshape back to (N, C, H, W).

Output channel c * g + t is input channel t * (C/g) + c. The composition only copies values (no arithmetic), so
it is bit-exact for every input, inf and NaN included. (A 1x1 Convolution with a permutation-matrix weight would
be one layer but is exact only for finite inputs: 0 * inf is NaN; it also costs C*C multiply-adds per pixel.)
"""

from __future__ import annotations

from onnx2caffe.registry import register

from .transpose import MAX_PIECES, swap_layers

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
    if g > MAX_PIECES:
        node.reject_attr("group", g, f"more than {MAX_PIECES} groups")
    if ctx.shape(y) != shape:
        node.reject(f"output shape {ctx.shape(y)} differs from the input shape {shape}")
    return swap_layers(ctx, node, ctx.blob(x), ctx.blob(y), shape, n, g, c // g, h * w, shape)
