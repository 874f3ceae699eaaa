"""Erf -> two exact branches joined by exact 0 / 1 selectors (see _erf.py): sign(x) (1 - erfc(|x|)) from the
normal-tail rational and Exp for |x| >= 0.75, x S(x^2) (degree-5 minimax polynomial) below. torch's GELU is
fused into onnx2caffe::Gelu first (passes/fuse_gelu.py: 13 layers, no cancellation); this is for other uses."""

from __future__ import annotations

import numpy as np

from onnx2caffe.registry import register

from ._erf import ERF_BOUND, erf_layers


@register(
    "Erf",
    since=9,
    layers=("AbsVal", "Power", "Eltwise", "Exp", "Sigmoid", "Reshape"),
    notes="|x| >= 0.75: sign(x) (1 - exp(-x^2) * rational in 1 / (1 + sqrt(2) |x|)); |x| < 0.75: x * polynomial "
    f"in x^2; joined by Sigmoid(2^100 z) selectors (exactly 0 / 1); ~32 layers; {ERF_BOUND} (measured over "
    "every float32 |x| <= 10); +-inf gives NaN",
)
def erf(node, ctx):
    """Erf -> the two-branch composition of _erf.erf_layers."""
    x, y = node.input(0), node.output(0)
    dtype = ctx.dtype(x)
    if dtype is not None and dtype != np.float32:
        node.reject(f"{dtype} input (Caffe blobs are float32)")
    shape = tuple(ctx.shape(x))
    if not shape:
        node.reject("a rank-0 (scalar) tensor has no Caffe blob form")
    return erf_layers(ctx, node, ctx.blob(x), ctx.blob(y), shape)
