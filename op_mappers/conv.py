"""Conv (2-D; groups, depthwise, dilation, asymmetric kernel/stride, any pads) -> Convolution.

Caffe pads symmetrically. Asymmetric ONNX pads (b, e) are made exact with a zero padding stage: a depthwise 1x1
Convolution with unit weights and pad |e - b| (x * 1 is exact) surrounds the input with zeros, a Slice drops the
rows/columns on the side that needs none (Silence eats them), and the Convolution itself pads min(b, e).
Conv1d (rank-3 input) is mapped through a Reshape to (N, C, 1, L) and back.

On a spatial axis of size 1 whose output has size 1 (a 3x3 pad-1 convolution on a 1xW, Hx1 or 1x1 map, as in
SSDlite's last extra blocks), every tap but one reads padding: the kernel is trimmed to that tap and the pad to 0.
The dropped terms are w * 0 = 0 for finite weights, so the sum is the same; it also avoids an OpenCV 4.x bug
(its depthwise 3x3 kernel gives wrong results when the input height or width is 1; see tests/test_op_conv.py).
"""

from __future__ import annotations

import numpy as np

from onnx2caffe.registry import register

from ._compose import fresh, reshape, silence, slice_range
from .pool import _explicit_pads


def _hw(params: dict, name: str, values, default: int) -> None:
    """Caffe convention: one (repeated-field) value when equal, omitted when the default, else name_h / name_w."""
    if values[0] == values[1]:
        if values[0] != default:
            params[name] = [int(values[0])]
    else:
        params[f"{name}_h"], params[f"{name}_w"] = values


def zero_pad(ctx, node, bottom: str, shape, begin, end):
    """Exact asymmetric zero padding of the excess |end - begin| on H and W. Returns (layers, top, new_shape)
    where the caller still pads min(begin, end) symmetrically."""
    extra = [abs(end[i] - begin[i]) for i in range(2)]
    C = shape[1]
    padded = fresh(ctx, node, "zero_pad")
    p = {"num_output": C, "group": C, "kernel_size": [1], "bias_term": False}
    _hw(p, "pad", extra, 0)
    layers = [
        ctx.layer(
            padded,
            "Convolution",
            [bottom],
            [padded],
            blobs=[np.ones((C, 1, 1, 1), np.float32)],
            convolution_param=p,
        )
    ]
    unused: list[str] = []
    cur = padded
    dims = [shape[2] + 2 * extra[0], shape[3] + 2 * extra[1]]
    for i in range(2):
        if not extra[i]:
            continue
        top = fresh(ctx, node, f"zero_pad_crop{i}")
        # keep the zeros on the side that has the larger ONNX pad
        start, stop = (extra[i], dims[i]) if end[i] > begin[i] else (0, dims[i] - extra[i])
        layers += slice_range(ctx, node, cur, top, 2 + i, dims[i], start, stop, unused)
        dims[i] = stop - start
        cur = top
    layers += silence(ctx, node, unused)
    return layers, cur, (shape[0], shape[1], dims[0], dims[1])


def trim_unit_axes(w, shape, out_shape, begin, end, strides, dil):
    """For each spatial axis of input size 1 and output size 1 where exactly one tap reads the input: keep that
    tap only (pads 0, dilation 1 on the axis). Returns (w, begin, end, dil), unchanged where nothing applies."""
    begin, end, dil = list(begin), list(end), list(dil)
    for i in range(2):
        k = w.shape[2 + i]
        if shape[2 + i] != 1 or out_shape[2 + i] != 1 or k == 1:
            continue
        # output 0 reads input index j * dil - begin for tap j: only index 0 exists
        taps = [j for j in range(k) if j * dil[i] - begin[i] == 0]
        if len(taps) != 1:
            continue
        index = [slice(None)] * 4
        index[2 + i] = slice(taps[0], taps[0] + 1)
        w = w[tuple(index)]
        begin[i] = end[i] = 0
        dil[i] = 1
    return w, begin, end, dil


@register("Conv", since=1, layers=("Convolution", "Slice", "Silence", "Reshape"))
def conv(node, ctx):
    """Conv 2-D (and 1-D via Reshape) with constant weights -> Convolution (+ exact asymmetric zero padding)."""
    x, y = node.inputs[0], node.outputs[0]
    w = ctx.const(node.inputs[1])
    if w is None:
        node.reject("the weight is not a constant")
    b = None
    if node.input(2):
        b = ctx.const(node.input(2))
        if b is None:
            node.reject("the bias is not a constant")
    shape = ctx.shape(x)
    out_shape = ctx.shape(y)
    rank = len(shape)
    if rank not in (3, 4) or w.ndim != rank:
        node.reject(f"only 1-D and 2-D convolutions map to Caffe Convolution, input rank {rank}")
    group = int(node.attr("group", 1))
    kshape = node.attr("kernel_shape", None)
    if kshape is not None and list(kshape) != list(w.shape[2:]):
        node.reject_attr("kernel_shape", kshape, f"differs from the weight shape {w.shape}")
    nsp = rank - 2
    strides = [int(v) for v in (node.attr("strides", None) or [1] * nsp)]
    dil = [int(v) for v in (node.attr("dilations", None) or [1] * nsp)]
    layers = []
    src = ctx.blob(x)
    if rank == 3:  # (N, C, L) -> (N, C, 1, L)
        w = w.reshape(w.shape[0], w.shape[1], 1, w.shape[2])
        begin, end = _explicit_pads(node, shape, list(w.shape[3:]), strides, dil)
        begin, end = [0] + begin, [0] + end
        strides, dil = [1] + strides, [1] + dil
        shape = (shape[0], shape[1], 1, shape[2])
        src4 = fresh(ctx, node, "as_2d")
        layers.append(reshape(ctx, src4, src, src4, shape))
        src = src4
    else:
        begin, end = _explicit_pads(node, shape, list(w.shape[2:]), strides, dil)
        w, begin, end, dil = trim_unit_axes(w, shape, out_shape, begin, end, strides, dil)
    if w.shape[1] * group != shape[1] or w.shape[0] % group:
        node.reject(f"weight {w.shape} with group {group} does not fit input channels {shape[1]}")
    if begin != end:
        pad_layers, src, shape = zero_pad(ctx, node, src, shape, begin, end)
        layers += pad_layers
    pads = [min(begin[i], end[i]) for i in range(2)]
    p = {"num_output": int(w.shape[0])}
    kernel = [int(w.shape[2]), int(w.shape[3])]
    if kernel[0] == kernel[1]:
        p["kernel_size"] = [kernel[0]]
    else:
        p["kernel_h"], p["kernel_w"] = kernel
    _hw(p, "stride", strides, 1)
    _hw(p, "pad", pads, 0)
    if dil != [1, 1]:
        p["dilation"] = [dil[0]] if dil[0] == dil[1] else dil
    if group != 1:
        p["group"] = group
    blobs = [w.astype(np.float32)]
    if b is None:
        p["bias_term"] = False
    else:
        blobs.append(b.astype(np.float32).reshape(-1))
    top = ctx.blob(y) if rank == 4 else fresh(ctx, node, "conv2d")
    layers.append(ctx.layer(node.name, "Convolution", [src], [top], blobs=blobs, convolution_param=p))
    if rank == 3:
        layers.append(reshape(ctx, fresh(ctx, node, "as_1d"), top, ctx.blob(y), out_shape))
    return layers
