"""Element-wise activations with a single exact Caffe layer: Relu, LeakyRelu, Sigmoid, Tanh, PRelu."""

from __future__ import annotations

import numpy as np

from onnx2caffe.registry import register


@register("Relu", since=1, layers=("ReLU",))
def relu(node, ctx):
    """Relu -> ReLU."""
    node.ignore_attr("consumed_inputs", "legacy optimisation hint (opset < 6)")
    return [ctx.layer(node.name, "ReLU", [ctx.blob(node.inputs[0])], [ctx.blob(node.outputs[0])])]


@register("LeakyRelu", since=1, layers=("ReLU",))
def leaky_relu(node, ctx):
    """LeakyRelu -> ReLU with negative_slope = alpha."""
    node.ignore_attr("consumed_inputs", "legacy optimisation hint (opset < 6)")
    alpha = float(node.attr("alpha", 0.01))
    return [
        ctx.layer(
            node.name,
            "ReLU",
            [ctx.blob(node.inputs[0])],
            [ctx.blob(node.outputs[0])],
            relu_param={"negative_slope": alpha},
        )
    ]


@register("Sigmoid", since=1, layers=("Sigmoid",))
def sigmoid(node, ctx):
    """Sigmoid -> Sigmoid."""
    node.ignore_attr("consumed_inputs", "legacy optimisation hint (opset < 6)")
    return [ctx.layer(node.name, "Sigmoid", [ctx.blob(node.inputs[0])], [ctx.blob(node.outputs[0])])]


@register("Tanh", since=1, layers=("TanH",))
def tanh(node, ctx):
    """Tanh -> TanH."""
    node.ignore_attr("consumed_inputs", "legacy optimisation hint (opset < 6)")
    return [ctx.layer(node.name, "TanH", [ctx.blob(node.inputs[0])], [ctx.blob(node.outputs[0])])]


@register("PRelu", since=1, layers=("PReLU",))
def prelu(node, ctx):
    """PRelu with a constant slope, shared (one value) or per channel (axis 1) -> PReLU (per-channel blob)."""
    node.ignore_attr("consumed_inputs", "legacy optimisation hint (opset < 6)")
    x, y = node.inputs[0], node.outputs[0]
    slope = ctx.const(node.inputs[1])
    if slope is None:
        node.reject("the slope is not a constant")
    shape = ctx.shape(x)
    if ctx.shape(y) != shape:
        node.reject(f"the slope {slope.shape} broadcasts the output beyond the input shape {shape}")
    flat = slope.astype(np.float32).reshape(-1)
    if flat.size == 0:
        node.reject("empty slope")
    if len(shape) < 2:
        node.reject("PReLU needs a channel axis (input rank >= 2)")
    if np.all(flat == flat[0]):
        # one shared slope, written per channel: Caffe's channel_shared wants a 0-d blob, which OpenCV cannot load
        ch = np.full((shape[1],), flat[0], np.float32)
        return [ctx.layer(node.name, "PReLU", [ctx.blob(x)], [ctx.blob(y)], blobs=[ch])]
    full = np.broadcast_to(slope.astype(np.float32), shape)
    # per channel: constant along every axis except 1
    per_channel = full.reshape(shape[0], shape[1], -1)
    ch = per_channel[0, :, 0]
    if not np.all(per_channel == ch[None, :, None]):
        node.reject(f"slope of shape {slope.shape} varies along other axes than the channel axis 1")
    return [ctx.layer(node.name, "PReLU", [ctx.blob(x)], [ctx.blob(y)], blobs=[ch.copy()])]
