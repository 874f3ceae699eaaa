"""ConvTranspose (2-D, and 1-D on a (N, C, 1, L) view) -> Caffe Deconvolution, exact for any pads, output_padding,
output_shape and dilation.

Caffe's Deconvolution has symmetric padding only and no output_padding, and OpenCV ignores its dilation. So:
* a dilated kernel is written out with zeros between the taps (dilation 1 everywhere; the zero taps add 0 * x);
* the ONNX output is the window [pad_begin, pad_begin + out) of the full (pad 0) transposed convolution; where it
  reaches past the full output (output_padding > pad_end) the kernel gets trailing zero taps, which extend the full
  output by positions that hold only the bias, exactly like ONNX;
* the symmetric part of the cut becomes Caffe's pad and the rest a Slice crop (its off-cuts go to a Silence layer).
"""

from __future__ import annotations

import numpy as np

from onnx2caffe.registry import register

from ._compose import fresh, reshape, silence, slice_range


def _pair(node, name: str, default: list[int], nsp: int, unit: int = 1) -> list[int]:
    """A 2-D attribute; a 1-D node's single value gets the unit axis (value `unit`) in front."""
    value = node.attr(name, None)
    if value is None:
        return list(default)
    if len(value) != nsp:
        node.reject_attr(name, value, f"expected {nsp} values for a {nsp}-D ConvTranspose")
    return [unit] * (2 - nsp) + [int(v) for v in value]


@register(
    "ConvTranspose",
    since=1,
    layers=("Deconvolution", "Slice", "Silence", "Reshape"),
    notes="1-D (Reshape to (N, C, 1, L)) and 2-D -> Deconvolution (groups, strides, dilation as zero taps) + "
    "Slice crop for asymmetric pads / output_padding / output_shape",
)
def conv_transpose(node, ctx):
    """ConvTranspose 2-D (and 1-D through a (N, C, 1, L) Reshape): Deconvolution (groups, strides, dilation as zero
    taps) + exact crop for asymmetric pads / output_padding / output_shape."""
    x, w_name, b_name, y = node.input(0), node.input(1), node.input(2), node.output(0)
    w = ctx.const(w_name)
    if w is None:
        node.reject("the weight must be a constant")
    w = np.asarray(w, dtype=np.float32)
    if w.ndim not in (3, 4):
        node.reject(f"only 1-D and 2-D transposed convolutions are supported (weight rank {w.ndim})")
    nsp = w.ndim - 2
    if nsp == 1:  # 1-D: the 2-D layer on a (N, C, 1, L) view, a unit kernel row
        w = w.reshape(w.shape[0], w.shape[1], 1, w.shape[2])
    bias = None
    if b_name:
        bias = ctx.const(b_name)
        if bias is None:
            node.reject("the bias must be a constant")
        bias = np.asarray(bias, dtype=np.float32).reshape(-1)
    xs, ys = ctx.shape(x), ctx.shape(y)
    if len(xs) != nsp + 2 or len(ys) != nsp + 2:
        node.reject(f"input rank {len(xs)} does not fit the weight rank {nsp + 2}")
    if nsp == 1:
        xs, ys = (xs[0], xs[1], 1, xs[2]), (ys[0], ys[1], 1, ys[2])
    group = int(node.attr("group", 1))
    c_in, c_out_g, kh, kw = w.shape
    if xs[1] != c_in or c_in % group:
        node.reject(f"weight shape {w.shape} does not fit input channels {xs[1]} with group {group}")
    num_output = c_out_g * group
    if bias is not None and bias.shape != (num_output,):
        node.reject(f"bias shape {bias.shape} does not match {num_output} output channels")
    kernel = _pair(node, "kernel_shape", [kh, kw], nsp)
    if kernel != [kh, kw]:
        node.reject_attr("kernel_shape", kernel[2 - nsp :], f"differs from the weight's kernel {kh}x{kw}")
    strides = _pair(node, "strides", [1, 1], nsp)
    dilations = _pair(node, "dilations", [1, 1], nsp)
    out_pad = _pair(node, "output_padding", [0, 0], nsp, unit=0)
    pads = node.attr("pads", None)
    pads = [0] * (2 * nsp) if pads is None else [int(p) for p in pads]
    if len(pads) != 2 * nsp or min(pads) < 0:
        node.reject_attr("pads", pads, f"expected {2 * nsp} non-negative values")
    if nsp == 1:
        pads = [0, pads[0], 0, pads[1]]
    if min(strides) < 1 or min(dilations) < 1 or min(out_pad) < 0:
        node.reject("strides and dilations must be >= 1 and output_padding >= 0")
    auto_pad = node.attr("auto_pad", "NOTSET")
    if auto_pad not in ("NOTSET", "VALID", "SAME_UPPER", "SAME_LOWER"):
        node.reject_attr("auto_pad", auto_pad, "unknown value")
    spatial_in = xs[2:]
    eff = [(k - 1) * d + 1 for k, d in zip((kh, kw), dilations, strict=True)]
    full = [s * (n - 1) + e for s, n, e in zip(strides, spatial_in, eff, strict=True)]
    output_shape = node.attr("output_shape", None)
    if output_shape is None and auto_pad.startswith("SAME"):
        output_shape = [n * s for n, s in zip(spatial_in, strides, strict=True)]
    if output_shape is not None:
        # ONNX (and onnxruntime): total = full + output_padding - out (never below 0: a larger output is
        # extended at the tail); SAME_UPPER puts the odd unit at the end, NOTSET / SAME_LOWER at the start
        want = [1] * (2 - nsp) + [int(v) for v in output_shape][-nsp:]
        pads = [0, 0, 0, 0]
        for i in range(2):
            total = max(0, full[i] + out_pad[i] - want[i])
            head = total // 2 if auto_pad == "SAME_UPPER" else total - total // 2
            pads[i], pads[i + 2] = head, total - head
    else:
        if auto_pad == "VALID":
            pads = [0, 0, 0, 0]
        want = [full[i] + out_pad[i] - pads[i] - pads[i + 2] for i in range(2)]
    if list(ys[2:]) != want or ys[:2] != (xs[0], num_output):
        node.reject(f"inferred output shape {ys} differs from the computed {(xs[0], num_output, *want)}")
    if min(want) < 1:
        node.reject(f"empty output {want}")

    # dilated kernel written out, then zero taps appended where the window passes the full output
    begin = pads[:2]
    ext = [max(0, begin[i] + want[i] - full[i]) for i in range(2)]
    big = np.zeros((c_in, c_out_g, eff[0] + ext[0], eff[1] + ext[1]), dtype=np.float32)
    big[:, :, : eff[0] : dilations[0], : eff[1] : dilations[1]] = w
    full = [full[i] + ext[i] for i in range(2)]
    tail = [full[i] - begin[i] - want[i] for i in range(2)]
    pad = [min(begin[i], tail[i]) for i in range(2)]
    conv = {"num_output": num_output}
    if big.shape[2] == big.shape[3]:
        conv["kernel_size"] = [big.shape[2]]
    else:
        conv["kernel_h"], conv["kernel_w"] = big.shape[2], big.shape[3]
    if strides[0] == strides[1]:
        if strides[0] != 1:
            conv["stride"] = [strides[0]]
    else:
        conv["stride_h"], conv["stride_w"] = strides
    if pad[0] == pad[1]:
        if pad[0]:
            conv["pad"] = [pad[0]]
    else:
        conv["pad_h"], conv["pad_w"] = pad
    if group != 1:
        conv["group"] = group
    blobs = [big]
    if bias is None:
        conv["bias_term"] = False
    else:
        blobs.append(bias)

    crop = [(begin[i] - pad[i], begin[i] - pad[i] + want[i], full[i] - 2 * pad[i]) for i in range(2)]
    cropped_axes = [i for i in range(2) if (crop[i][0], crop[i][1]) != (0, crop[i][2])]
    layers = []
    src, out = ctx.blob(x), ctx.blob(y)
    if nsp == 1:
        src, out = fresh(ctx, node, "as_2d"), fresh(ctx, node, "deconv_2d")
        layers.append(reshape(ctx, src, ctx.blob(x), src, xs))
    deconv_top = out if not cropped_axes else fresh(ctx, node, "full")
    layers.append(
        ctx.layer(node.name, "Deconvolution", [src], [deconv_top], blobs=blobs, convolution_param=conv)
    )
    unused: list[str] = []
    bottom = deconv_top
    for k, i in enumerate(cropped_axes):
        top = out if k == len(cropped_axes) - 1 else fresh(ctx, node, "crop_h")
        start, end, dim = crop[i]
        layers += slice_range(ctx, node, bottom, top, 2 + i, dim, start, end, unused)
        bottom = top
    layers += silence(ctx, node, unused)
    if nsp == 1:
        layers.append(reshape(ctx, fresh(ctx, node, "as_1d"), out, ctx.blob(y), ctx.shape(y)))
    return layers
