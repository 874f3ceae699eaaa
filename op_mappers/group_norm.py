"""GroupNormalization-21 (scale/bias per channel) and onnx2caffe::GroupNorm (made
by the fuse_group_norm pass from torch's Reshape -> InstanceNormalization -> Reshape -> Mul -> Add export) ->
the exact normalisation of _norm.py on the view (N, G, C/G * spatial, 1), a Reshape back, and one per-channel
Scale(gamma, beta): 8-9 layers (torch's export, mapped node by node, takes 13).

GroupNormalization-18 (scale/bias per group) is deprecated: the ONNX checker refuses it, so models using it do
not load.
"""

from __future__ import annotations

import numpy as np

from onnx2caffe.registry import register

from ._norm import TRAILING_LAYERS, finish, identity_affine, normalize_trailing

DOMAIN = "onnx2caffe"
_NOTE = " -> MVN + explicit variance over (N, G, C/G * spatial) + Power(-0.5) + Scale; Reshape back; Scale(gamma, beta)"


def _group_norm(node, ctx, groups: int, eps: float, gamma, beta):
    x, y = node.input(0), node.output(0)
    if ctx.dtype(x) not in (None, np.float32):
        node.reject(f"{ctx.dtype(x)} input (Caffe blobs are float32)")
    shape = ctx.shape(x)
    if len(shape) < 2:
        node.reject(f"needs a channel axis (input rank {len(shape)})")
    n, c = shape[0], shape[1]
    if groups <= 0 or c % groups:
        node.reject_attr("num_groups", groups, f"must divide the {c} channels")
    grouped = (n, groups, int(np.prod(shape[1:])) // groups)
    if identity_affine(gamma, beta):
        gamma = beta = None
    top = ctx.blob(y) if gamma is None and beta is None else None
    layers, normed, view = normalize_trailing(ctx, node, ctx.blob(x), grouped, 2, eps, top)
    return layers + finish(ctx, node, normed, view, shape, ctx.blob(y), gamma, beta, 1)


def _const(node, ctx, index: int, what: str):
    value = ctx.const(node.input(index)) if node.input(index) else None
    if value is None:
        node.reject(f"input '{what}' must be a constant")
    return np.asarray(value, np.float32).reshape(-1)


@register(
    "GroupNormalization",
    since=21,
    layers=TRAILING_LAYERS,
    notes="GroupNormalization-21 (scale/bias per channel)" + _NOTE,
)
def group_normalization_21(node, ctx):
    """GroupNormalization-21: scale and bias per channel."""
    groups = int(node.attr("num_groups", 0))
    eps = float(node.attr("epsilon", 1e-5))
    if int(node.attr("stash_type", 1)) != 1:
        node.reject_attr("stash_type", node.attr("stash_type"), "only float32 computation (stash_type 1)")
    gamma, beta = _const(node, ctx, 1, "scale"), _const(node, ctx, 2, "bias")
    c = ctx.shape(node.input(0))[1]
    if gamma.size != c or beta.size != c:
        node.reject(f"scale/bias sizes {gamma.size}/{beta.size} do not match {c} channels")
    return _group_norm(node, ctx, groups, eps, gamma, beta)


@register(
    "GroupNorm",
    since=1,
    domain=DOMAIN,
    layers=TRAILING_LAYERS,
    notes="torch's GroupNorm export fused by the fuse_group_norm pass" + _NOTE,
)
def group_norm(node, ctx):
    """onnx2caffe::GroupNorm(x, [scale], [bias]; num_groups, epsilon), scale/bias per channel (absent: identity)."""
    groups = int(node.attr("num_groups", 0))
    eps = float(node.attr("epsilon", 1e-5))
    c = ctx.shape(node.input(0))[1]
    gamma = _const(node, ctx, 1, "scale") if node.input(1) else None
    beta = _const(node, ctx, 2, "bias") if node.input(2) else None
    for v, what in ((gamma, "scale"), (beta, "bias")):
        if v is not None and v.size != c:
            node.reject(f"{what} has {v.size} values for {c} channels")
    return _group_norm(node, ctx, groups, eps, gamma, beta)
