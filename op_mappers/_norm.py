"""Exact normalisation building blocks shared by InstanceNormalization, GroupNorm and LayerNorm (no mapper is
registered here).

Caffe's MVN with normalize_variance divides by sqrt(var) + eps (eps on the standard deviation: 1e-5 off the
ONNX ops, which put eps on the variance), and OpenCV's BatchNorm in training mode does the same, so the mean
comes from MVN and the variance path is built explicitly, as onnxruntime computes it (two passes):

  over trailing axes (normalize_trailing), on a 4-D view (a, b, c, d) whose rows (a, b) are normalised over
  (c, d):
    d    = MVN(x, normalize_variance: false)          x - mean per row
    v    = Pooling AVE global(Eltwise PROD(d, d))     biased variance, (a, b, 1, 1)
    r    = Power(v, shift: eps, power: -0.5)          (var + eps)^-1/2: powf, within an ulp of 1 / sqrt
    y    = Scale(d, Flatten(r), axis 0)               a two-bottom Scale broadcasts the (a, b) factor
  6 layers (+ a Reshape to the view and one back when the input is not already that 4-D shape);

  over the channel axis 1 of (N, C, ...) (normalize_channels: LayerNorm2d), without transposes: sums over C
  are 1x1 Convolutions with a 1 x C weight of 1/C, and their broadcast back over C a 1x1 Convolution with a
  C x 1 weight of ones (an exact copy):
    m = Conv(x, 1/C);  d = x - Conv(m, ones);  v = Conv(d * d, 1/C);  r = Power(v, shift eps, power -0.5)
    y = d * Conv(r, ones)
  8 layers, 4 C multiply-adds per position. fl(1/C) and the conv's summation order add a few ulp of the mean
  and variance, like onnxruntime's own summation (measured max_rel <= 5.2e-7 for C from 3 to 768).
"""

from __future__ import annotations

import math

import numpy as np

from ._compose import ELTWISE_PROD, ELTWISE_SUM, eltwise, fresh, power, reshape

TRAILING_LAYERS = ("Reshape", "MVN", "Eltwise", "Pooling", "Power", "Flatten", "Scale")
CHANNEL_LAYERS = ("Reshape", "Convolution", "Eltwise", "Power", "Scale")


def trailing_view(shape, axis: int) -> tuple[int, int, int, int]:
    """The 4-D view (a, b, c, d) of `shape` whose rows (a, b) are the axes before `axis` and whose (c, d) are
    the normalised axes [axis:] (a 4-D input normalised over H, W keeps its shape)."""
    rows, inner = tuple(shape[:axis]), tuple(shape[axis:])
    if len(shape) == 4 and axis == 2:
        return tuple(shape)
    a = math.prod(rows[:-1]) if len(rows) > 1 else 1
    b = rows[-1] if rows else 1
    return (a, b, math.prod(inner), 1)


def _last(ctx, node, top: str | None, same_shape: bool) -> tuple[str, str]:
    """(blob, layer name) of the last normalisation layer: the node's own top and layer when it may write the
    output directly, else a fresh intermediate."""
    if top is not None and same_shape:
        return top, node.name
    out = fresh(ctx, node, "normalized")
    return out, out


def normalize_trailing(ctx, node, bottom: str, shape, axis: int, eps: float, top: str | None = None):
    """(layers, blob, view): `bottom` (of `shape`) normalised over axes [axis:], as a blob of the 4-D `view`
    (written to `top` when given and the view is the input's shape)."""
    view = trailing_view(shape, axis)
    layers = []
    x = bottom
    if tuple(shape) != view:
        x = fresh(ctx, node, "rows")
        layers.append(reshape(ctx, x, bottom, x, view))
    d = fresh(ctx, node, "centered")
    layers.append(ctx.layer(d, "MVN", [x], [d], mvn_param={"normalize_variance": False}))
    sq = fresh(ctx, node, "sq")
    layers.append(eltwise(ctx, sq, [d, d], sq, ELTWISE_PROD))
    var = fresh(ctx, node, "var")
    layers.append(
        ctx.layer(var, "Pooling", [sq], [var], pooling_param={"pool": "AVE", "global_pooling": True})
    )
    rstd = fresh(ctx, node, "rstd")
    layers.append(power(ctx, rstd, var, rstd, power=-0.5, shift=eps))
    rows = fresh(ctx, node, "rstd_rows")
    layers.append(ctx.layer(rows, "Flatten", [rstd], [rows]))
    out, name = _last(ctx, node, top, tuple(shape) == view)
    layers.append(ctx.layer(name, "Scale", [d, rows], [out], scale_param={"axis": 0}))
    return layers, out, view


def _channel_mix(ctx, name: str, bottom: str, top: str, weight: np.ndarray):
    c_out = weight.shape[0]
    return ctx.layer(
        name,
        "Convolution",
        [bottom],
        [top],
        blobs=[weight.reshape(weight.shape[0], weight.shape[1], 1, 1).astype(np.float32)],
        convolution_param={"num_output": c_out, "kernel_size": [1], "bias_term": False},
    )


def normalize_channels(ctx, node, bottom: str, shape, eps: float, top: str | None = None):
    """(layers, blob, view): `bottom` (N, C, ...) normalised over axis 1 at every position, as a blob of the
    4-D view (N, C, S, 1) or the input's own 4-D shape."""
    n, c = shape[0], shape[1]
    view = tuple(shape) if len(shape) == 4 else (n, c, math.prod(shape[2:]), 1)
    layers = []
    x = bottom
    if tuple(shape) != view:
        x = fresh(ctx, node, "as4d")
        layers.append(reshape(ctx, x, bottom, x, view))
    mean_w = np.full((1, c), 1.0 / c, np.float32)
    ones = np.ones((c, 1), np.float32)
    mean = fresh(ctx, node, "mean")
    layers.append(_channel_mix(ctx, mean, x, mean, mean_w))
    mean_c = fresh(ctx, node, "mean_c")
    layers.append(_channel_mix(ctx, mean_c, mean, mean_c, ones))
    d = fresh(ctx, node, "centered")
    layers.append(eltwise(ctx, d, [x, mean_c], d, ELTWISE_SUM, coeff=[1.0, -1.0]))
    sq = fresh(ctx, node, "sq")
    layers.append(eltwise(ctx, sq, [d, d], sq, ELTWISE_PROD))
    var = fresh(ctx, node, "var")
    layers.append(_channel_mix(ctx, var, sq, var, mean_w))
    rstd = fresh(ctx, node, "rstd")
    layers.append(power(ctx, rstd, var, rstd, power=-0.5, shift=eps))
    rstd_c = fresh(ctx, node, "rstd_c")
    layers.append(_channel_mix(ctx, rstd_c, rstd, rstd_c, ones))
    out, name = _last(ctx, node, top, tuple(shape) == view)
    layers.append(eltwise(ctx, name, [d, rstd_c], out, ELTWISE_PROD))
    return layers, out, view


def affine(ctx, name: str, bottom: str, top: str, gamma, beta, axis: int):
    """top = bottom * gamma + beta with blobs of gamma's shape starting at `axis` (gamma None: ones; beta None:
    no bias). Returns [] when both are absent (the caller then needs bottom == top)."""
    if gamma is None and beta is None:
        return []
    if gamma is None:
        gamma = np.ones(np.shape(beta), np.float32)
    blobs = [np.asarray(gamma, np.float32)]
    p = {"axis": axis} if axis != 1 else {}
    if blobs[0].ndim != 1:
        p["num_axes"] = blobs[0].ndim
    if beta is not None:
        blobs.append(np.asarray(beta, np.float32).reshape(blobs[0].shape))
        p["bias_term"] = True
    return [ctx.layer(name, "Scale", [bottom], [top], blobs=blobs, scale_param=p)]


def identity_affine(gamma, beta) -> bool:
    """True when gamma is all ones (or absent) and beta all zeros (or absent): no affine layer needed."""
    return (gamma is None or bool(np.all(np.asarray(gamma) == 1))) and (
        beta is None or bool(np.all(np.asarray(beta) == 0))
    )


def finish(ctx, node, normed: str, view, shape, top: str, gamma, beta, axis: int):
    """Layers that turn the normalised `normed` (of 4-D `view`) into `top` (of `shape`): a Reshape back when
    the view differs, then the affine Scale (gamma/beta shaped like shape[axis:axis + k]) unless it is the
    identity (then normalize_* already wrote `top` when view == shape)."""
    layers = []
    skip = identity_affine(gamma, beta)
    if tuple(view) != tuple(shape):
        back = top if skip else fresh(ctx, node, "unview")
        layers.append(reshape(ctx, fresh(ctx, node, "reshape_back"), normed, back, shape))
        normed = back
    if not skip:
        layers += affine(ctx, node.name, normed, top, gamma, beta, axis)
    return layers


def norm_layers(
    ctx, node, x: str, shape, y: str, eps: float, gamma, beta, axis: int, affine_axis: int | None = None
):
    """The whole normalisation of `x` (of `shape`) into `y` over axes [axis:], then the affine with
    gamma/beta shaped like shape[affine_axis:affine_axis + k] (default affine_axis: axis; None: absent)."""
    top = y if identity_affine(gamma, beta) else None
    if affine_axis is None:
        affine_axis = axis
    layers, normed, view = normalize_trailing(ctx, node, x, shape, axis, eps, top)
    return layers + finish(ctx, node, normed, view, shape, y, gamma, beta, affine_axis)


def channel_norm_layers(ctx, node, x: str, shape, y: str, eps: float, gamma, beta):
    """Normalisation of `x` (N, C, ...) over axis 1 alone into `y`, then the per-channel affine."""
    top = y if identity_affine(gamma, beta) else None
    layers, normed, view = normalize_channels(ctx, node, x, shape, eps, top)
    return layers + finish(ctx, node, normed, view, shape, y, gamma, beta, 1)
