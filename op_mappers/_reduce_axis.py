"""Reductions over one axis of a (P, R, Q) view: sum_axis (ones InnerProduct, Slice + Eltwise SUM, or a ones
Convolution) and pool_axis (Pooling MAX / AVE with an (R, 1) window). Caffe's Reduction layer is not
loadable by OpenCV and reduces only trailing axes.

The batch stays axis 0: P is the product of the axes before the reduced run, and with `lead` (the blob's axis 0,
when it is not reduced) every view is (lead, P / lead, R, Q), so no data moves into or out of the batch axis
(ncnn and other batch-less consumers run one sample at a time; Caffe reshapes the batch at run time: the views
copy it, `dim: 0`). lead None: P is axis 0 of the views, written explicitly. Views have at most 4 axes.
"""

from __future__ import annotations

import numpy as np

from ._layers import ELTWISE_SUM, eltwise, fresh, identity, view

SUM_SLICES = 64  # sum_axis adds up to this many slices with one Eltwise, more with a ones Convolution


def _lead(P: int, lead: int | None) -> tuple[int, int]:
    """(axis 0 of the views, the rest of P). lead None: P itself is axis 0 (the caller's P is the batch)."""
    if lead is None or lead <= 1:
        return (P, 1) if lead is None else (1, P)
    if P % lead:
        raise ValueError(f"lead {lead} does not divide P {P}")
    return lead, P // lead


def sum_axis(
    ctx, node, bottom: str, shape_now, P: int, R: int, Q: int, top: str | None = None, tag="sum", lead=None
):
    """(layers, blob, shape): the sum over the middle axis of `bottom` viewed as (P, R, Q), P = lead * G; the
    result has shape (lead, G, 1) when Q == 1, else (lead, G, 1, Q) (G left out when 1; a 1x1 Convolution gives
    (lead, 1, Q, 1)).
    - Q == 1: InnerProduct with a (1, R) ones weight over the last axis (x * 1 is exact);
    - R <= SUM_SLICES: Slice the view (lead, G, R, Q) into its R slices and add them with one Eltwise SUM (in
      order, like a sequential sum) - on OpenCV up to 3x faster than the Convolution below on large blobs;
    - otherwise a ones Convolution: 1x1 over the view (lead, R, Q, 1) when G == 1, else depthwise (group G) with
      an (R, 1) kernel over (lead, G, R, Q) (on OpenCV 2x faster than a grouped 1x1 over (lead, G*R, Q, 1)).
    Only the order of the float32 additions can differ from onnxruntime: |error| <= (R - 1) 2^-24 sum |x|.
    Cost: one pass (InnerProduct, Convolution) or two (Slice copies, then the Eltwise), R (G * R) weights."""
    top = top or fresh(ctx, node, tag)
    n, g = _lead(P, lead)
    dims = (n, g) if g > 1 else (n,)
    axis = len(dims)
    ones_w = np.ones((1, R), np.float32)
    if Q == 1:
        layers, src = view(ctx, node, bottom, shape_now, (*dims, R), f"{tag}_in", batch=lead is not None)
        param = {"num_output": 1, "bias_term": False}
        if axis != 1:
            param["axis"] = axis
        layers.append(
            ctx.layer(
                fresh(ctx, node, tag), "InnerProduct", [src], [top], blobs=[ones_w], inner_product_param=param
            )
        )
        return layers, top, (*dims, 1)
    out = (*dims, 1, Q)
    if R == 1:
        layers, src = view(ctx, node, bottom, shape_now, out, f"{tag}_in", batch=lead is not None)
        layers.append(identity(ctx, fresh(ctx, node, tag), src, top))
    elif R <= SUM_SLICES:
        layers, src = view(ctx, node, bottom, shape_now, (*dims, R, Q), f"{tag}_in", batch=lead is not None)
        pieces = [fresh(ctx, node, f"{tag}_slice") for _ in range(R)]
        layers.append(
            ctx.layer(
                fresh(ctx, node, f"{tag}_split"),
                "Slice",
                [src],
                pieces,
                slice_param={"axis": axis, "slice_point": list(range(1, R))},
            )
        )
        layers.append(eltwise(ctx, fresh(ctx, node, tag), pieces, top, ELTWISE_SUM))
    elif g == 1:
        layers, src = view(ctx, node, bottom, shape_now, (n, R, Q, 1), f"{tag}_in", batch=lead is not None)
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
        out = (n, 1, Q, 1)
    else:
        layers, src = view(ctx, node, bottom, shape_now, (n, g, R, Q), f"{tag}_in", batch=lead is not None)
        param = {"num_output": g, "group": g, "bias_term": False, "kernel_h": R, "kernel_w": 1}
        layers.append(
            ctx.layer(
                fresh(ctx, node, tag),
                "Convolution",
                [src],
                [top],
                blobs=[np.ones((g, 1, R, 1), np.float32)],
                convolution_param=param,
            )
        )
        out = (n, g, 1, Q)
    return layers, top, out


def pool_axis(
    ctx,
    node,
    bottom: str,
    shape_now,
    P: int,
    R: int,
    Q: int,
    method: str,
    top: str | None = None,
    tag="pool",
    lead=None,
):
    """(layers, blob, shape): MAX or AVE over the middle axis of `bottom` viewed as (P, R, Q), P = lead * G, shape
    (lead, G, 1, Q): Pooling with an (R, 1) window over the view (lead, G, R, Q) (lead None: (P, 1, R, Q)), or with
    a (1, R) window over (lead, G, 1, R) when Q == 1. MAX is exact for finite and +-inf inputs (Caffe's pooling
    starts from -FLT_MAX and skips NaN: a window of only NaN / -inf gives -FLT_MAX); AVE sums in float32 and
    divides by R (one rounding more than the sum). Cost: one pass over the input."""
    top = top or fresh(ctx, node, tag)
    n, g = _lead(P, lead)
    # a window along the last axis when nothing follows the reduced run: OpenCV pools a (1, R) window ~3x faster
    # (AVE; ~1.3x MAX) than an (R, 1) one
    v, window = ((n, g, 1, R), (1, R)) if Q == 1 else ((n, g, R, Q), (R, 1))
    layers, src = view(ctx, node, bottom, shape_now, v, f"{tag}_in", batch=lead is not None)
    layers.append(
        ctx.layer(
            fresh(ctx, node, tag),
            "Pooling",
            [src],
            [top],
            pooling_param={"pool": method, "kernel_h": window[0], "kernel_w": window[1]},
        )
    )
    return layers, top, (n, g, 1, Q)
