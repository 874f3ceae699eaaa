"""BatchNormalization (inference) -> BatchNorm (stored statistics, eps) + Scale (gamma, beta).

Any input rank >= 2 maps as it is: Caffe's BatchNorm and Scale (axis 1) and OpenCV's take axis 1 as the channels
and every later axis as the spatial extent, which is ONNX's definition for (N, C), (N, C, L), (N, C, H, W) and
(N, C, D, H, W). Rounding: (x - mean) / sqrt(var + eps) then * gamma + beta, a few float32 roundings in another
order than onnxruntime's (relative error a few 2^-24).
"""

from __future__ import annotations

import numpy as np

from onnx2caffe.registry import register

from ._compose import fresh


@register(
    "BatchNormalization",
    since=1,
    layers=("BatchNorm", "Scale"),
    notes="inference mode, any rank >= 2 -> BatchNorm (stored statistics, eps) + Scale (gamma, beta); "
    "a few roundings",
)
def batch_norm(node, ctx):
    """BatchNormalization in inference mode, any rank >= 2 -> BatchNorm(use_global_stats, eps) + Scale(bias_term);
    a few float32 roundings."""
    x, y = node.inputs[0], node.outputs[0]
    for extra in node.outputs[1:]:
        if extra:
            node.reject("training outputs (running mean/var, saved statistics) have no Caffe form")
    eps = float(node.attr("epsilon", 1e-5))
    node.ignore_attr("momentum", "only used in training")
    node.ignore_attr("consumed_inputs", "legacy optimisation hint (opset < 6)")
    if node.opset < 9:
        spatial = node.attr("spatial", 1)
        if spatial != 1:
            node.reject_attr("spatial", spatial, "per-activation statistics have no BatchNorm form")
    if node.opset < 7:
        is_test = node.attr("is_test", 0)
        if not is_test:
            node.reject_attr("is_test", is_test, "training mode")
    training = node.attr("training_mode", 0)
    if training:
        node.reject_attr("training_mode", training, "training mode uses batch statistics")
    params = [ctx.const(t) for t in node.inputs[1:5]]
    for name, value in zip(("scale", "B", "mean", "var"), params, strict=True):
        if value is None:
            node.reject(f"{name} is not a constant")
    gamma, beta, mean, var = (np.asarray(v, np.float32).reshape(-1) for v in params)
    shape = ctx.shape(x)
    if len(shape) < 2 or any(v.size != shape[1] for v in (gamma, beta, mean, var)):
        node.reject(f"parameters do not match the {shape[1] if len(shape) > 1 else '?'} channels of axis 1")
    mid = fresh(ctx, node, "normalized")
    return [
        ctx.layer(
            node.name,
            "BatchNorm",
            [ctx.blob(x)],
            [mid],
            # Caffe divides the stored statistics by the third blob: 1
            blobs=[mean, var, np.ones((1,), np.float32)],
            batch_norm_param={"use_global_stats": True, "eps": eps},
        ),
        ctx.layer(
            fresh(ctx, node, "scale"),
            "Scale",
            [mid],
            [ctx.blob(y)],
            blobs=[gamma, beta],
            scale_param={"bias_term": True},
        ),
    ]
