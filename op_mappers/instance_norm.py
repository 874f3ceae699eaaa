"""InstanceNormalization -> exact composition of standard layers, for any batch size.

Caffe's BatchNorm with use_global_stats: false would be instance norm for N = 1 in Caffe, but OpenCV adds eps
to the standard deviation there (measured: 1.4e-5 off), and MVN with normalize_variance does the same in both;
so the variance path is built explicitly:

    d    = MVN(x, normalize_variance: false)           x - mean over H, W per (n, c)
    v    = Pooling AVE global(Eltwise PROD(d, d))      biased variance, (N, C, 1, 1)
    r    = Power(v, shift: eps, power: -0.5)           1 / sqrt(var + eps)
    y    = Scale(d, Flatten(r), axis 0)                per-(n, c) factor from a second bottom
    out  = Scale(y, gamma, beta)                       learned affine (bias_term)

Inputs of rank 3 or 5+ are reshaped to (N, C, S, 1) around the composition.
"""

from __future__ import annotations

import math

import numpy as np

from onnx2caffe.registry import register

from ._compose import ELTWISE_PROD, eltwise, fresh, power, reshape


@register(
    "InstanceNormalization",
    since=1,
    layers=("MVN", "Eltwise", "Pooling", "Power", "Flatten", "Scale", "Reshape"),
)
def instance_norm(node, ctx):
    """InstanceNormalization: MVN (mean) + explicit biased variance + Power(-0.5) + Scale, exact for any N."""
    node.ignore_attr("consumed_inputs", "legacy in-place hint of opset 1; no effect on values")
    eps = float(node.attr("epsilon", 1e-5))
    x, y = node.input(0), node.output(0)
    gamma, beta = ctx.const(node.input(1)), ctx.const(node.input(2))
    if gamma is None or beta is None:
        node.reject("scale and B must be constants")
    shape = ctx.shape(x)
    if len(shape) < 3:
        node.reject(f"needs at least one spatial axis (input rank {len(shape)})")
    n, c = shape[:2]
    gamma = np.asarray(gamma, np.float32).reshape(-1)
    beta = np.asarray(beta, np.float32).reshape(-1)
    if gamma.shape != (c,) or beta.shape != (c,):
        node.reject(f"scale/B shapes {gamma.shape}/{beta.shape} do not match {c} channels")
    layers = []
    xb = ctx.blob(x)
    if len(shape) != 4:
        flat = fresh(ctx, node, "as4d")
        layers.append(reshape(ctx, flat, xb, flat, (n, c, math.prod(shape[2:]), 1)))
        xb = flat
    d = fresh(ctx, node, "centered")
    layers.append(ctx.layer(d, "MVN", [xb], [d], mvn_param={"normalize_variance": False}))
    sq = fresh(ctx, node, "sq")
    layers.append(eltwise(ctx, sq, [d, d], sq, ELTWISE_PROD))
    var = fresh(ctx, node, "var")
    layers.append(
        ctx.layer(var, "Pooling", [sq], [var], pooling_param={"pool": "AVE", "global_pooling": True})
    )
    rstd = fresh(ctx, node, "rstd")
    layers.append(power(ctx, rstd, var, rstd, power=-0.5, shift=eps))
    rstd2 = fresh(ctx, node, "rstd_nc")
    layers.append(ctx.layer(rstd2, "Flatten", [rstd], [rstd2]))
    normed = fresh(ctx, node, "normalized")
    layers.append(ctx.layer(normed, "Scale", [d, rstd2], [normed], scale_param={"axis": 0}))
    out = ctx.blob(y) if len(shape) == 4 else fresh(ctx, node, "affine")
    layers.append(
        ctx.layer(node.name, "Scale", [normed], [out], blobs=[gamma, beta], scale_param={"bias_term": True})
    )
    if len(shape) != 4:
        layers.append(reshape(ctx, fresh(ctx, node, "back"), out, ctx.blob(y), shape))
    return layers
