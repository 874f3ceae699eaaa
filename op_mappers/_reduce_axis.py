"""Reductions over one axis of a (P, R, Q) view: sum_axis (ones InnerProduct, Slice + Eltwise SUM, or ones
Convolution 1x1) and pool_axis (Pooling MAX / AVE with an (R, 1) window). Caffe's Reduction layer is not loadable
by OpenCV and reduces only trailing axes.
"""

from __future__ import annotations

import numpy as np

from ._layers import ELTWISE_SUM, eltwise, fresh, identity, view

SUM_SLICES = 64  # sum_axis adds up to this many slices with one Eltwise, more with a ones Convolution


def sum_axis(ctx, node, bottom: str, shape_now, P: int, R: int, Q: int, top: str | None = None, tag="sum"):
    """(layers, blob, shape): the sum over the middle axis of `bottom` viewed as (P, R, Q); the result has shape
    (P, 1) when Q == 1, else (P, 1, Q, 1).
    - Q == 1: InnerProduct with a (1, R) ones weight (x * 1 is exact);
    - R <= SUM_SLICES: Slice the view (P, R, Q, 1) into its R slices and add them with one Eltwise SUM (in
      order, like a sequential sum) - on OpenCV up to 3x faster than the Convolution below on large blobs;
    - otherwise Convolution 1x1 with a ones weight (1, R, 1, 1) over (P, R, Q, 1).
    Only the order of the float32 additions can differ from onnxruntime: |error| <= (R - 1) 2^-24 sum |x|.
    Cost: one pass (InnerProduct, Convolution) or two (Slice copies, then the Eltwise), R weights."""
    top = top or fresh(ctx, node, tag)
    ones_w = np.ones((1, R), np.float32)
    if Q == 1:
        layers, src = view(ctx, node, bottom, shape_now, (P, R), f"{tag}_in")
        layers.append(
            ctx.layer(
                fresh(ctx, node, tag),
                "InnerProduct",
                [src],
                [top],
                blobs=[ones_w],
                inner_product_param={"num_output": 1, "bias_term": False},
            )
        )
        return layers, top, (P, 1)
    layers, src = view(ctx, node, bottom, shape_now, (P, R, Q, 1), f"{tag}_in")
    if R == 1:
        layers.append(identity(ctx, fresh(ctx, node, tag), src, top))
    elif R <= SUM_SLICES:
        pieces = [fresh(ctx, node, f"{tag}_slice") for _ in range(R)]
        layers.append(
            ctx.layer(
                fresh(ctx, node, f"{tag}_split"),
                "Slice",
                [src],
                pieces,
                slice_param={"axis": 1, "slice_point": list(range(1, R))},
            )
        )
        layers.append(eltwise(ctx, fresh(ctx, node, tag), pieces, top, ELTWISE_SUM))
    else:
        layers.append(
            ctx.layer(
                fresh(ctx, node, tag),
                "Convolution",
                [src],
                [top],
                blobs=[ones_w.reshape(1, R, 1, 1)],
                convolution_param={"num_output": 1, "bias_term": False, "kernel_size": [1]},
            )
        )
    return layers, top, (P, 1, Q, 1)


def pool_axis(
    ctx, node, bottom: str, shape_now, P: int, R: int, Q: int, method: str, top: str | None = None, tag="pool"
):
    """(layers, blob, shape): MAX or AVE over the middle axis of `bottom` viewed as (P, R, Q), shape (P, 1, 1, Q):
    Pooling with an (R, 1) window over the view (P, 1, R, Q). MAX is exact for finite and +-inf inputs (Caffe's
    pooling starts from -FLT_MAX and skips NaN: a window of only NaN / -inf gives -FLT_MAX); AVE sums in float32
    and divides by R (one rounding more than the sum). Cost: one pass over the input."""
    top = top or fresh(ctx, node, tag)
    layers, src = view(ctx, node, bottom, shape_now, (P, 1, R, Q), f"{tag}_in")
    layers.append(
        ctx.layer(
            fresh(ctx, node, tag),
            "Pooling",
            [src],
            [top],
            pooling_param={"pool": method, "kernel_h": R, "kernel_w": 1},
        )
    )
    return layers, top, (P, 1, 1, Q)
