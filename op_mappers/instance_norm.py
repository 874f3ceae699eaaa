"""InstanceNormalization -> exact composition of standard layers, for any batch size and any rank >= 3.

Caffe's BatchNorm with use_global_stats: false would be instance norm for N = 1 in Caffe, but OpenCV adds eps
to the standard deviation there (measured: 1.4e-5 off), and MVN with normalize_variance does the same in both;
so the variance path is built explicitly (see _norm.py):

    d    = MVN(x, normalize_variance: false)           x - mean over H, W per (n, c)
    v    = Pooling AVE global(Eltwise PROD(d, d))      biased variance, (N, C, 1, 1)
    r    = Power(v, shift: eps, power: -0.5)           1 / sqrt(var + eps)
    y    = Scale(d, Flatten(r), axis 0)                per-(n, c) factor from a second bottom
    out  = Scale(y, gamma, beta)                       learned affine (bias_term; left out when it is the
                                                       identity, as in torch's GroupNorm export)

Inputs of rank 3 or 5+ are reshaped to (N, C, S, 1) around the composition.
"""

from __future__ import annotations

import numpy as np

from onnx2caffe.registry import register

from ._norm import TRAILING_LAYERS, norm_layers


@register("InstanceNormalization", since=1, layers=TRAILING_LAYERS)
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
    c = shape[1]
    gamma = np.asarray(gamma, np.float32).reshape(-1)
    beta = np.asarray(beta, np.float32).reshape(-1)
    if gamma.shape != (c,) or beta.shape != (c,):
        node.reject(f"scale/B shapes {gamma.shape}/{beta.shape} do not match {c} channels")
    return norm_layers(ctx, node, ctx.blob(x), shape, ctx.blob(y), eps, gamma, beta, axis=2, affine_axis=1)
