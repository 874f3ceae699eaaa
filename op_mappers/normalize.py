"""Lp normalisation across channels -> exact composition of standard layers (Caffe has no BVLC Normalize layer).

    y = x * 1 / max(norm, eps),  norm = sqrt(sum_c x^2) (p = 2) or sum_c |x| (p = 1)

x^2: Eltwise PROD(x, x) (|x|: AbsVal); the channel sum: a 1x1 Convolution C -> 1 with ones; sqrt: Power(power=0.5);
eps: Eltwise MAX with a constant blob (exact); 1/n: Power(power=-1); broadcast back over channels: a 1x1
Convolution 1 -> C with ones (a copy); Eltwise PROD with x. For (N, C) inputs InnerProduct replaces the 1x1
Convolutions. Handles ONNX LpNormalization and onnx2caffe::L2Normalize, the node the fuse_l2_normalize pass makes
from F.normalize's ReduceL2 [+ Clip/Max eps] [+ Expand] + Div.
"""

from __future__ import annotations

import numpy as np

from onnx2caffe.registry import register

from ._compose import ELTWISE_PROD, eltwise, fresh, max_with, norm_axis, power

DOMAIN = "onnx2caffe"
_LAYERS = ("Eltwise", "AbsVal", "Convolution", "InnerProduct", "Power")


def _ones_projection(ctx, name: str, bottom: str, top: str, c_in: int, c_out: int, rank: int):
    """A channel mixing with an all-ones weight: sum over channels (c_out = 1) or copy to channels (c_in = 1)."""
    if rank == 2:
        w = np.ones((c_out, c_in), np.float32)
        return ctx.layer(
            name,
            "InnerProduct",
            [bottom],
            [top],
            blobs=[w],
            inner_product_param={"num_output": c_out, "bias_term": False},
        )
    w = np.ones((c_out, c_in, 1, 1), np.float32)
    return ctx.layer(
        name,
        "Convolution",
        [bottom],
        [top],
        blobs=[w],
        convolution_param={"num_output": c_out, "kernel_size": [1], "bias_term": False},
    )


def lp_normalize(node, ctx, axis: int, p: int, eps: float | None):
    x, y = node.input(0), node.output(0)
    shape = ctx.shape(x)
    rank = len(shape)
    if rank not in (2, 4):
        node.reject(f"only (N, C) and (N, C, H, W) inputs are supported (rank {rank})")
    if norm_axis(node, axis, rank) != 1:
        node.reject_attr("axis", axis, "only the channel axis (1) can be normalised with Caffe layers")
    if p not in (1, 2):
        node.reject_attr("p", p, "only p = 1 and p = 2 are defined")
    channels = shape[1]
    xb = ctx.blob(x)
    layers = []
    mag = fresh(ctx, node, "sq" if p == 2 else "abs")
    if p == 2:
        layers.append(eltwise(ctx, mag, [xb, xb], mag, ELTWISE_PROD))
    else:
        layers.append(ctx.layer(mag, "AbsVal", [xb], [mag]))
    total = fresh(ctx, node, "sum")
    layers.append(_ones_projection(ctx, total, mag, total, channels, 1, rank))
    norm = total
    if p == 2:
        norm = fresh(ctx, node, "norm")
        layers.append(power(ctx, norm, total, norm, power=0.5))
    if eps is not None:
        clamped = fresh(ctx, node, "clamped")
        layers += max_with(ctx, node, norm, clamped, eps, "eps")
        norm = clamped
    inv = fresh(ctx, node, "inv")
    layers.append(power(ctx, inv, norm, inv, power=-1.0))
    wide = fresh(ctx, node, "inv_c")
    layers.append(_ones_projection(ctx, wide, inv, wide, 1, channels, rank))
    layers.append(eltwise(ctx, node.name, [xb, wide], ctx.blob(y), ELTWISE_PROD))
    return layers


@register("LpNormalization", since=1, layers=_LAYERS)
def lp_normalization(node, ctx):
    """LpNormalization over the channel axis, p = 1 or 2 (no eps: a zero vector gives NaN as 0 * inf)."""
    return lp_normalize(node, ctx, node.attr("axis", -1), node.attr("p", 2), None)


@register("L2Normalize", since=1, domain=DOMAIN, layers=_LAYERS)
def l2_normalize(node, ctx):
    """F.normalize(x, dim=1) as fused by the fuse_l2_normalize pass: x / max(||x||_2, eps)."""
    return lp_normalize(node, ctx, node.attr("axis", 1), 2, node.attr("eps", None))
