"""LayerNormalization (opset 17+) and onnx2caffe::LayerNorm (made by the fuse_layer_norm and
fuse_transposed_layer_norm passes from older exports) -> exact compositions of standard layers (_norm.py).

Over the last axes [axis:] (transformer LayerNorm, (N, T, D) or any rank): MVN for the mean, the variance built
explicitly, Power(-0.5), a two-bottom Scale that broadcasts the per-row factor, then Scale(gamma, beta) over the
normalised axes: 6-8 layers. Over the channel axis of (N, C, ...) (LayerNorm2d of ConvNeXt / timm / smp, which
torch writes as a permute to NHWC, a last-axis LayerNorm and a permute back): 1x1 Convolutions sum over C, so no
transpose is needed: 8-10 layers.

Error: the mean and variance are float32 sums in a different order than onnxruntime's, (var + eps)^-0.5 is
within an ulp of 1 / sqrt(var + eps), and the product by it rounds once where onnxruntime divides: a few ulp
of the normalised values (max_rel <= 5.4e-7 measured up to 768 features, 5.2e-7 over channels). An offset
much larger than the spread cancels digits in the mean subtraction: the float32 mean carries ~ulp(offset),
which 1 / std passes on (offset 50x the spread: 3.4e-6 measured; onnxruntime accumulates in higher precision).
"""

from __future__ import annotations

import numpy as np

from onnx2caffe.registry import register

from ._compose import norm_axis
from ._norm import CHANNEL_LAYERS, TRAILING_LAYERS, channel_norm_layers, norm_layers

DOMAIN = "onnx2caffe"


def _param(node, ctx, index: int, what: str, norm_shape) -> np.ndarray | None:
    """The constant gamma / beta input `index` broadcast to the normalised shape (None when omitted)."""
    name = node.input(index)
    if not name:
        return None
    value = ctx.const(name)
    if value is None:
        node.reject(f"input '{what}' must be a constant (it is computed at run time)")
    value = np.asarray(value, np.float32)
    try:
        return np.ascontiguousarray(np.broadcast_to(value, norm_shape))
    except ValueError:
        node.reject(f"{what} of shape {value.shape} does not broadcast to the normalised shape {norm_shape}")


def _check_float(node, ctx, x):
    if ctx.dtype(x) not in (None, np.float32):
        node.reject(f"{ctx.dtype(x)} input (Caffe blobs are float32)")


@register(
    "LayerNormalization",
    since=17,
    layers=TRAILING_LAYERS,
    notes="LayerNormalization over axes [axis:] -> MVN (mean) + explicit variance + Power(-0.5) + two-bottom "
    "Scale + Scale(gamma, beta) (7-9 layers; a few ulp of the normalised values: max_rel 5.4e-7 at 768 features)",
)
def layer_normalization(node, ctx):
    """LayerNormalization (Y only; the Mean / InvStdDev outputs are refused when used)."""
    x, y = node.input(0), node.output(0)
    _check_float(node, ctx, x)
    for k, what in ((1, "Mean"), (2, "InvStdDev")):
        out = node.output(k)
        if out and (ctx.graph.consumers(out) or ctx.graph.is_graph_output(out)):
            node.reject(f"the {what} output is used; only Y is converted")
    if int(node.attr("stash_type", 1)) != 1:
        node.reject_attr("stash_type", node.attr("stash_type"), "only float32 computation (stash_type 1)")
    shape = ctx.shape(x)
    axis = norm_axis(node, node.attr("axis", -1), len(shape))
    eps = float(node.attr("epsilon", 1e-5))
    norm_shape = tuple(shape[axis:])
    gamma = _param(node, ctx, 1, "Scale", norm_shape)
    beta = _param(node, ctx, 2, "B", norm_shape)
    return norm_layers(ctx, node, ctx.blob(x), shape, ctx.blob(y), eps, gamma, beta, axis)


@register(
    "LayerNorm",
    since=1,
    domain=DOMAIN,
    layers=tuple(dict.fromkeys(TRAILING_LAYERS + CHANNEL_LAYERS)),
    notes="a LayerNorm fused from ReduceMean/Sub/Pow/ReduceMean/Add/Sqrt/Div [+ Mul/Add] or from Transpose + "
    "LayerNorm(last axis) + Transpose: over the last axes like LayerNormalization, over the channel axis with "
    "1x1 Convolutions (8-10 layers, no transposes)",
)
def layer_norm(node, ctx):
    """onnx2caffe::LayerNorm(x, [scale], [bias]; axes, epsilon): normalise over `axes` (a run of last axes, or
    axis 1 alone), then scale / bias shaped like those axes."""
    x, y = node.input(0), node.output(0)
    _check_float(node, ctx, x)
    shape = ctx.shape(x)
    rank = len(shape)
    axes = sorted(norm_axis(node, a, rank, "axes") for a in node.attr("axes", [-1]))
    eps = float(node.attr("epsilon", 1e-5))
    norm_shape = tuple(shape[a] for a in axes)
    gamma = _param(node, ctx, 1, "scale", norm_shape)
    beta = _param(node, ctx, 2, "bias", norm_shape)
    xb, yb = ctx.blob(x), ctx.blob(y)
    if axes == list(range(axes[0], rank)):
        return norm_layers(ctx, node, xb, shape, yb, eps, gamma, beta, axes[0])
    if axes == [1]:
        return channel_norm_layers(ctx, node, xb, shape, yb, eps, gamma, beta)
    node.reject_attr("axes", axes, "only a run of last axes or the channel axis 1 can be normalised")
