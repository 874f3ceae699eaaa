"""DepthToSpace (PixelShuffle) and SpaceToDepth (PixelUnshuffle, YOLOv5's Focus order), both channel orders.

DepthToSpace, blocksize r, (N, C*r*r, H, W) -> (N, C, H*r, W*r):
- CRD (torch's PixelShuffle: input channel c*r*r + i*r + j feeds output pixel (h*r + i, w*r + j) of channel c):
  one Deconvolution with kernel r, stride r and group C whose weight is one-hot: tap (i, j) of input channel
  c*r*r + i*r + j is 1, every other tap 0. Kernel = stride, so every output receives exactly one input times 1
  plus r*r - 1 products with an exact 0: exact for finite inputs. Cost r*r multiply-adds per output, C*r^4 weights.
- DCR (ONNX's default: input channel (i*r + j)*C + c): the channels are first regrouped to CRD order by copies
  (one Slice into the r*r blocks of C channels, Reshapes and one Concat: a swap of the (r*r, C) axes), then the
  same Deconvolution. C = 1 needs no regrouping.
SpaceToDepth, (N, C, H, W) -> (N, C*r*r, H/r, W/r): for each offset (i, j) the pixels (h*r + i, w*r + j) are picked
by a crop and an AVE Pooling with kernel 1 and stride r (a copy), then concatenated: on the channel axis in (i, j)
order for DCR (ONNX's SpaceToDepth); interleaved per channel for CRD (torch's PixelUnshuffle: a (N, C, 1, H*W/r^2)
view of each pick, one Concat on the new axis). Copies only: bit-exact, no multiply-adds.
The fuse_pixel_shuffle pass turns the exporters' Reshape-Transpose-Reshape forms of both ops into onnx2caffe::
DepthToSpace / SpaceToDepth nodes with a `mode` attribute, mapped here too.
"""

from __future__ import annotations

import numpy as np

from onnx2caffe.registry import register

from ._compose import fresh
from ._resample import finish, pick, view

DOMAIN = "onnx2caffe"
_D2S_LAYERS = ("Deconvolution", "Slice", "Reshape", "Concat", "Power")
_S2D_LAYERS = ("Slice", "Pooling", "Concat", "Reshape", "Silence", "Power")


def _mode(node, default: str = "DCR") -> str:
    mode = node.attr("mode", default)
    mode = mode.decode() if isinstance(mode, bytes) else mode
    if mode not in ("DCR", "CRD"):
        node.reject_attr("mode", mode, "expected DCR or CRD")
    return mode


def _blocksize(node, shape) -> int:
    r = int(node.attr("blocksize", 0))
    if r < 1:
        node.reject_attr("blocksize", r, "must be >= 1")
    if len(shape) != 4:
        node.reject(f"only 4-D (N, C, H, W) inputs are supported (rank {len(shape)})")
    return r


def _dcr_to_crd(ctx, node, bottom, shape, r):
    """Input channels regrouped from (i*r + j)*C + c to c*r*r + i*r + j (copies). -> (layers, blob)."""
    n, cr2, h, w = shape
    c = cr2 // (r * r)
    layers, src = view(ctx, node, bottom, shape, (n, r * r, c, h * w))
    pieces = [fresh(ctx, node, f"block{k}") for k in range(r * r)]
    layers.append(
        ctx.layer(
            fresh(ctx, node, "blocks"),
            "Slice",
            [src],
            pieces,
            slice_param={"axis": 1, "slice_point": list(range(1, r * r))},
        )
    )
    moved = []
    for k, p in enumerate(pieces):
        more, b = view(ctx, node, p, (n, 1, c, h * w), (n, c, 1, h * w), f"block{k}_moved")
        layers += more
        moved.append(b)
    joined = fresh(ctx, node, "crd")
    layers.append(ctx.layer(joined, "Concat", moved, [joined], concat_param={"axis": 2}))
    more, blob = view(ctx, node, joined, (n, c, r * r, h * w), shape, "crd_view")
    return layers + more, blob


def depth_to_space(node, ctx, mode: str):
    x, y = node.input(0), node.output(0)
    shape = ctx.shape(x)
    r = _blocksize(node, shape)
    n, cr2, h, w = shape
    if cr2 % (r * r):
        node.reject(f"{cr2} channels do not divide by blocksize^2 = {r * r}")
    c = cr2 // (r * r)
    layers: list = []
    blob = ctx.blob(x)
    if r == 1:
        return finish(ctx, node, layers, blob, ctx.blob(y))
    if mode == "DCR" and c > 1:
        layers, blob = _dcr_to_crd(ctx, node, blob, shape, r)
    weight = np.zeros((cr2, 1, r, r), np.float32)
    for ch in range(c):
        for i in range(r):
            for j in range(r):
                weight[ch * r * r + i * r + j, 0, i, j] = 1.0
    param = {"num_output": c, "group": c, "bias_term": False, "kernel_size": [r], "stride": [r]}
    top = ctx.blob(y)
    layers.append(
        ctx.layer(node.name, "Deconvolution", [blob], [top], blobs=[weight], convolution_param=param)
    )
    return layers


def space_to_depth(node, ctx, mode: str):
    x, y = node.input(0), node.output(0)
    shape = ctx.shape(x)
    r = _blocksize(node, shape)
    n, c, h, w = shape
    if h % r or w % r:
        node.reject(f"spatial size {h}x{w} does not divide by blocksize {r}")
    ho, wo = h // r, w // r
    blob = ctx.blob(x)
    if r == 1:
        return finish(ctx, node, [], blob, ctx.blob(y))
    layers: list = []
    picks = []
    for i in range(r):
        for j in range(r):
            more, p, _ = pick(ctx, node, blob, shape, {2: (i, r, ho), 3: (j, r, wo)})
            layers += more
            picks.append(p)
    if mode == "DCR":
        top = fresh(ctx, node, "join")
        layers.append(ctx.layer(top, "Concat", picks, [top], concat_param={"axis": 1}))
        return finish(ctx, node, layers, top, ctx.blob(y))
    moved = []
    for k, p in enumerate(picks):
        more, b = view(ctx, node, p, (n, c, ho, wo), (n, c, 1, ho * wo), f"pick{k}_flat")
        layers += more
        moved.append(b)
    joined = fresh(ctx, node, "join")
    layers.append(ctx.layer(joined, "Concat", moved, [joined], concat_param={"axis": 2}))
    more, blob = view(ctx, node, joined, (n, c, r * r, ho * wo), (n, c * r * r, ho, wo), "unflat")
    return finish(ctx, node, layers + more, blob, ctx.blob(y))


@register(
    "DepthToSpace",
    since=1,
    layers=_D2S_LAYERS,
    notes="DCR/CRD -> one-hot grouped Deconvolution, kernel = stride = r (r*r MACs per output, C*r^4 weights; 1*x plus "
    "exact zeros: exact for finite inputs); DCR regroups channels first (Slice, Reshape, Concat: copies)",
)
def depth_to_space_onnx(node, ctx):
    """DepthToSpace (DCR, or CRD = PixelShuffle) -> one-hot grouped Deconvolution (r*r MACs per output, exact for
    finite inputs); DCR first regroups the channels by copies (Slice, Reshape, Concat)."""
    return depth_to_space(node, ctx, _mode(node) if node.opset >= 11 else "DCR")


@register(
    "SpaceToDepth",
    since=1,
    layers=_S2D_LAYERS,
    notes="-> r*r strided picks (crop + AVE Pooling kernel 1 stride r) concatenated on channels (copies, bit-exact, "
    "no MACs)",
)
def space_to_depth_onnx(node, ctx):
    """SpaceToDepth -> r*r strided picks (crop + AVE Pooling kernel 1 stride r) concatenated on channels: copies."""
    return space_to_depth(node, ctx, "DCR")


@register(
    "DepthToSpace",
    since=1,
    domain=DOMAIN,
    layers=_D2S_LAYERS,
    notes="pixel shuffle fused by the fuse_pixel_shuffle pass (mode CRD/DCR) -> as DepthToSpace",
)
def depth_to_space_fused(node, ctx):
    """PixelShuffle found by the fuse_pixel_shuffle pass (mode CRD or DCR), as DepthToSpace."""
    return depth_to_space(node, ctx, _mode(node))


@register(
    "SpaceToDepth",
    since=1,
    domain=DOMAIN,
    layers=_S2D_LAYERS,
    notes="pixel unshuffle fused by the fuse_pixel_shuffle pass (mode CRD/DCR) -> strided picks and Concat (copies)",
)
def space_to_depth_fused(node, ctx):
    """PixelUnshuffle found by the fuse_pixel_shuffle pass (mode CRD, or DCR as SpaceToDepth): strided picks, copies."""
    return space_to_depth(node, ctx, _mode(node))
