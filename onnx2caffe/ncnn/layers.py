"""Caffe layer -> ncnn layers, one translator per Caffe type (the layer part of caffe2ncnn).

Layer types and parameter ids are ncnn's (src/layer/*.cpp load_param / load_model, and caffe2ncnn.cpp
for what a Caffe layer becomes). Where caffe2ncnn's mapping does not compute what Caffe computes, the
translator writes what does, and says why:

* Pooling: Caffe drops a last window that would start in the right padding; ncnn's "full padding" mode
  does not, so when that rule fires the pooling is written in ncnn's "valid" mode with explicit tail
  padding. Caffe divides an AVE window by its size clipped to the padded input (padding counts, the area
  past it does not); ncnn divides by the whole kernel (avgpool_count_include_pad=1) or by the real
  elements only (0, caffe2ncnn's default). Windows inside the padded input get 6=1; when a window
  reaches past it, the pooling is followed by a BinaryOp multiply with a constant map kernel_area /
  Caffe's divisor (exact to 2 float32 roundings instead of 1).
* Crop writes explicit offsets and sizes (ncnn's two-input Crop would also crop the channels to the
  reference blob's).
* Scale / Bias over other axes than the channels, and the bias of a two-input Scale, become BinaryOp
  with a MemoryData constant (ncnn's Scale / Bias are per channel only).
* Floats are written with 9 significant digits (model.py), LRN's k and BatchNorm's eps as parameters.

A translator reads ``ctx.lp`` (the Caffe LayerParameter), ``ctx.blobs`` (weights), ``ctx.bottoms``
(BlobRef: ncnn name, Caffe shape, ncnn shape), ``ctx.top_shapes`` / ``ctx.top_names``, and calls
``ctx.emit``; ``ctx.refuse(reason)`` when ncnn cannot compute the layer exactly.
"""

from __future__ import annotations

import math

import numpy as np

from onnx2caffe.ncnn.builder import LayerContext, canonical, reshape_params
from onnx2caffe.ncnn.model import Weight
from onnx2caffe.ncnn.shapes import (
    concat_axis,
    conv_geometry,
    crop_offsets,
    permute_order,
    pool_geometry,
    slice_axis,
    upsample_size,
)

FLT_MAX = float(np.finfo(np.float32).max)


def _f32(a) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(a, dtype=np.float32))


def _raw(a) -> Weight:
    return Weight(_f32(a).reshape(-1), tagged=False)


def _tagged(a) -> Weight:
    return Weight(_f32(a).reshape(-1), tagged=True)


def _same_shape_out(ctx: LayerContext, i: int = 0) -> None:
    """Top 0 has the ncnn shape of bottom i (elementwise layers keep whatever layout they get)."""
    ctx.set_shape(0, ctx.bottoms[i].ncnn_shape)


# ------------------------------------------------------------------------------------------- inputs


def t_input(ctx: LayerContext) -> None:
    for i, top in enumerate(ctx.top_names):
        tag = None if i == 0 else f"input{i}"
        ctx.emit("Input", [], [top], reshape_params(ctx.top_canonical(i)), tag=tag)


def t_parameter(ctx: LayerContext) -> None:
    ctx.need_blobs(1)
    shape = ctx.top_canonical(0)
    ctx.emit("MemoryData", [], [ctx.top_names[0]], reshape_params(shape), [_raw(ctx.blobs[0])])


# ------------------------------------------------------------------------------------------- convolution


def t_convolution(ctx: LayerContext) -> None:
    g = conv_geometry(ctx.lp)
    ctx.need_blobs(2 if g["bias_term"] else 1)
    w = ctx.blobs[0]
    kh, kw = g["kernel"]
    if w.shape[-2:] != (kh, kw):
        ctx.refuse(f"weights of shape {w.shape} for a {kh}x{kw} kernel")
    p = _conv_params(g, w.size)
    if g["group"] > 1:
        p[7] = g["group"]
    weights = [_tagged(w)]
    if g["bias_term"]:
        weights.append(_raw(ctx.blobs[1]))
    kind = "ConvolutionDepthWise" if g["group"] > 1 else "Convolution"
    ctx.emit(kind, [ctx.canon(0)], ctx.top_names, p, weights)


def _conv_params(g: dict, weight_size: int) -> dict[int, int]:
    kh, kw = g["kernel"]
    dh, dw = g["dilation"]
    sh, sw = g["stride"]
    ph, pw = g["pad"]
    p = {0: g["num_output"], 1: kw}
    if kh != kw:
        p[11] = kh
    p[2] = dw
    if dh != dw:
        p[12] = dh
    p[3] = sw
    if sh != sw:
        p[13] = sh
    p[4] = pw
    if ph != pw:
        p[14] = ph
    p[5] = int(g["bias_term"])
    p[6] = int(weight_size)
    return p


def t_deconvolution(ctx: LayerContext) -> None:
    g = conv_geometry(ctx.lp)
    ctx.need_blobs(2 if g["bias_term"] else 1)
    w = ctx.blobs[0]
    group = g["group"]
    cin = w.shape[0]
    cout_g = w.shape[1]
    kh, kw = g["kernel"]
    # Caffe stores (C_in, C_out / group, kh, kw); ncnn reads, per group, (C_out / group, C_in / group, kh, kw)
    w = w.reshape(group, cin // group, cout_g, kh, kw).transpose(0, 2, 1, 3, 4)
    p = _conv_params(g, w.size)
    if group > 1:
        p[7] = group
    weights = [_tagged(w)]
    if g["bias_term"]:
        weights.append(_raw(ctx.blobs[1]))
    kind = "DeconvolutionDepthWise" if group > 1 else "Deconvolution"
    ctx.emit(kind, [ctx.canon(0)], ctx.top_names, p, weights)


def t_inner_product(ctx: LayerContext) -> None:
    p = ctx.lp.inner_product_param
    bias = bool(p.bias_term)
    ctx.need_blobs(2 if bias else 1)
    shape = ctx.bottoms[0].caffe_shape
    a = int(p.axis) + (len(shape) if p.axis < 0 else 0)
    if a == 0:
        ctx.refuse("axis 0 flattens the batch axis, which ncnn does not have")
    n_out = int(p.num_output)
    k = math.prod(shape[a:])
    w = ctx.blobs[0].reshape(-1, ctx.blobs[0].shape[-1]) if ctx.blobs[0].ndim > 2 else ctx.blobs[0]
    w = w.T if p.transpose else w
    if w.shape != (n_out, k):
        ctx.refuse(f"weights of shape {ctx.blobs[0].shape} for {k} inputs and {n_out} outputs")
    weights = [_tagged(w)] + ([_raw(ctx.blobs[1])] if bias else [])
    params = {0: n_out, 1: int(bias), 2: int(w.size)}
    if a == 1:
        # ncnn flattens the whole Mat, except a 2-D Mat whose rows hold the K inputs: then it works per row
        src = ctx.bottoms[0]
        ctx.emit("InnerProduct", [src.ncnn], ctx.top_names, params, weights)
        if len(src.ncnn_shape) == 2 and src.ncnn_shape[1] == k:
            ctx.set_shape(0, (1, n_out))
        else:
            ctx.set_shape(0, (n_out,))
        return
    # axis >= 2: per row of a 2-D (M, K) Mat, which ncnn's InnerProduct computes row by row
    m = math.prod(shape[1:a])
    ctx.emit("InnerProduct", [ctx.as_shape(0, (m, k))], ctx.top_names, params, weights)
    ctx.set_shape(0, (m, n_out))


# ------------------------------------------------------------------------------------------- pooling


def t_pooling(ctx: LayerContext) -> None:
    lp = ctx.lp
    pp = lp.pooling_param
    if len(lp.top) != 1:
        ctx.refuse("a second top (the max-pooling mask) has no ncnn counterpart")
    if pp.pool == 2:
        ctx.refuse("STOCHASTIC pooling")
    shape = ctx.bottoms[0].caffe_shape
    g = pool_geometry(lp, shape)
    src = ctx.canon(0)
    kind = int(pp.pool)  # MAX 0, AVE 1: the same ids in ncnn
    if g["global"]:
        ctx.emit("Pooling", [src], ctx.top_names, {0: kind, 4: 1})
        ctx.set_shape(0, (shape[1],))  # ncnn's global pooling gives a 1-D Mat of the channels
        return
    (kh, kw), (sh, sw), (ph, pw), (oh, ow) = g["kernel"], g["stride"], g["pad"], g["out"]
    h, w = shape[2], shape[3]
    params = {0: kind, 1: kw}
    if kh != kw:
        params[11] = kh
    params[2] = sw
    if sh != sw:
        params[12] = sh
    # ncnn's full padding (pad_mode 0) rounds up like Caffe but without Caffe's last-window rule
    full = [(-(-(x + 2 * p - k) // s)) + 1 for x, p, k, s in ((h, ph, kh, sh), (w, pw, kw, sw))]
    if g["ceil"] and full == [oh, ow]:
        params[3] = pw
        if ph != pw:
            params[13] = ph
    else:
        # valid mode with explicit padding: right/bottom cover exactly the windows Caffe computes
        # (at least 0: in floor mode the last window can end before the input does)
        bottom = max((oh - 1) * sh + kh - h - ph, 0)
        right = max((ow - 1) * sw + kw - w - pw, 0)
        params.update({3: pw, 14: right, 13: ph, 15: bottom, 5: 1})
    if kind == 0:
        ctx.emit("Pooling", [src], ctx.top_names, params)
        return
    params[6] = 1  # divide by the whole kernel: Caffe's divisor wherever the window is inside the padding
    area = _caffe_ave_area(h, w, (kh, kw), (sh, sw), (ph, pw), (oh, ow))
    if np.all(area == kh * kw):
        ctx.emit("Pooling", [src], ctx.top_names, params)
        return
    pooled = ctx.tmp(ctx.top_names[0], "pooled")
    ctx.emit("Pooling", [src], [pooled], params)
    fix = (np.float32(kh * kw) / area.astype(np.float32)).reshape(1, oh, ow)
    const = ctx.tmp(ctx.top_names[0], "ave_divisor")
    ctx.emit("MemoryData", [], [const], reshape_params((1, oh, ow)), [_raw(fix)], tag="ave_divisor")
    ctx.emit("BinaryOp", [pooled, const], ctx.top_names, {0: 2}, tag="ave_fix")


def _caffe_ave_area(h, w, k, s, p, out) -> np.ndarray:
    """Caffe's AVE divisor per output position: the window clipped to the padded input (H + pad)."""
    sizes = []
    for x, kk, ss, pp, oo in zip((h, w), k, s, p, out, strict=True):
        start = np.arange(oo) * ss - pp
        end = np.minimum(start + kk, x + pp)
        sizes.append(end - start)
    return np.outer(sizes[0], sizes[1])


# ------------------------------------------------------------------------------------------- normalisation


def t_batch_norm(ctx: LayerContext) -> None:
    p = ctx.lp.batch_norm_param
    if p.HasField("use_global_stats") and not p.use_global_stats:
        ctx.refuse("use_global_stats: false (statistics of the running batch)")
    ctx.need_blobs(3)
    mean, var, factor = ctx.blobs[0].reshape(-1), ctx.blobs[1].reshape(-1), ctx.blobs[2].reshape(-1)
    f = np.float32(factor[0])
    sf = np.float32(0) if f == 0 else np.float32(1) / f  # Caffe's scale factor
    c = mean.size
    shape = ctx.bottoms[0].caffe_shape
    if (shape[1] if len(shape) > 1 else 1) != c:
        ctx.refuse(f"{c} statistics for {shape[1] if len(shape) > 1 else 1} channels")
    weights = [
        _raw(np.ones(c, np.float32)),
        _raw(mean * sf),
        _raw(var * sf),
        _raw(np.zeros(c, np.float32)),
    ]
    ctx.emit("BatchNorm", [ctx.canon(0)], ctx.top_names, {0: c, 1: float(p.eps)}, weights)


def _broadcast_shape(full: tuple[int, ...], axis: int, sub: tuple[int, ...]) -> tuple[int, ...]:
    """The canonical ncnn shape of `sub` placed at `axis` of `full`, 1 elsewhere."""
    s = [1] * len(full)
    s[axis : axis + len(sub)] = sub
    return canonical(tuple(s))


def _affine(ctx: LayerContext, op: str) -> None:
    """Scale (op "mul") or Bias (op "add"), with a learned blob or a second input.

    The factor covers the axes [axis, axis + n) of the input. Per channel (the outermost axis of the
    canonical ncnn Mat) it is ncnn's Scale; otherwise a BinaryOp with the factor as a MemoryData constant
    (or the second input) shaped to broadcast. The bias of a Scale is a second step, x * s then + b, as in
    Caffe (its Scale layer adds the bias after scaling)."""
    lp = ctx.lp
    par = lp.scale_param if op == "mul" else lp.bias_param
    shape = ctx.bottoms[0].caffe_shape
    rank = len(shape)
    axis = int(par.axis) + (rank if par.axis < 0 else 0)
    if not 0 <= axis < max(rank, 1):
        ctx.refuse(f"axis {par.axis} out of range")
    bias_term = op == "mul" and bool(par.bias_term)
    learned = len(ctx.bottoms) == 1
    if learned:
        n = int(par.num_axes)
        end = rank if n == -1 else axis + n
        if n < -1 or end > rank:
            ctx.refuse(f"num_axes {n} out of range")
        sub = tuple(shape[axis:end])
        ctx.need_blobs(1 + int(bias_term))
        factor, bias = ctx.blobs[0], (ctx.blobs[1] if bias_term else None)
        if factor.size != math.prod(sub):
            ctx.refuse(f"blob of shape {factor.shape} for the axes {sub}")
        if axis == 0 and sub and sub[0] != 1:
            ctx.refuse("a learned blob over the batch axis")
    else:
        sub = tuple(ctx.bottoms[1].caffe_shape)
        if tuple(shape[axis : axis + len(sub)]) != sub:
            ctx.refuse(f"second input of shape {sub} does not match {shape} at axis {axis}")
        factor = None
        if bias_term:
            ctx.need_blobs(1, " (the bias)")
        bias = ctx.blobs[0] if bias_term else None
    bshape = _broadcast_shape(shape, axis, sub)  # per sample: the batch entry is dropped
    canon = canonical(shape)
    per_channel = rank >= 2 and bshape == (canon[0],) + (1,) * (len(canon) - 1)
    x, out = ctx.canon(0), ctx.top_names[0]
    if op == "add":
        if learned:
            _add_const(ctx, x, factor, bshape, out, main=True)
        else:
            ctx.emit("BinaryOp", [x, ctx.as_shape(1, bshape)], [out], {0: 0})
        return
    if learned and per_channel:
        weights = [_raw(factor)] + ([_raw(bias)] if bias_term else [])
        ctx.emit("Scale", [x], [out], {0: int(factor.size), 1: int(bias_term)}, weights)
        return
    scaled = ctx.tmp(out, "scaled") if bias_term else out
    if not learned and per_channel:
        ctx.emit("Scale", [x, ctx.as_shape(1, (canon[0],))], [scaled], {0: -233, 1: 0})
    elif not learned:
        ctx.emit("BinaryOp", [x, ctx.as_shape(1, bshape)], [scaled], {0: 2})
    else:
        const = ctx.tmp(out, "scale")
        ctx.emit("MemoryData", [], [const], reshape_params(bshape), [_raw(factor)], tag="scale")
        ctx.emit("BinaryOp", [x, const], [scaled], {0: 2})
    if bias_term:
        _add_const(ctx, scaled, bias, bshape, out)


def _add_const(ctx, x: str, blob, bshape, out: str, main: bool = False) -> None:
    const = ctx.tmp(out, "bias")
    ctx.emit("MemoryData", [], [const], reshape_params(bshape), [_raw(blob)], tag="bias")
    ctx.emit("BinaryOp", [x, const], [out], {0: 0}, tag=None if main else "bias_add")


def t_scale(ctx: LayerContext) -> None:
    _affine(ctx, "mul")


def t_bias(ctx: LayerContext) -> None:
    _affine(ctx, "add")


def t_mvn(ctx: LayerContext) -> None:
    p = ctx.lp.mvn_param
    shape = ctx.bottoms[0].caffe_shape
    if len(shape) < 2:
        ctx.refuse("MVN needs a channel axis")
    view = (shape[1], math.prod(shape[2:]), 1)
    src = ctx.canon(0) if len(shape) == 4 else ctx.as_shape(0, view)
    params = {0: int(p.normalize_variance), 1: int(p.across_channels), 2: float(p.eps)}
    ctx.emit("MVN", [src], ctx.top_names, params)
    if len(shape) != 4:
        ctx.set_shape(0, view)


def t_lrn(ctx: LayerContext) -> None:
    p = ctx.lp.lrn_param
    if len(ctx.bottoms[0].caffe_shape) != 4:
        ctx.refuse("LRN needs N, C, H, W")
    if p.local_size % 2 == 0:
        ctx.refuse(f"even local_size {p.local_size}")
    region = int(p.norm_region)
    # Caffe's WITHIN_CHANNEL uses shift 1 whatever k is
    k = float(p.k) if region == 0 else 1.0
    params = {0: region, 1: int(p.local_size), 2: float(p.alpha), 3: float(p.beta), 4: k}
    ctx.emit("LRN", [ctx.canon(0)], ctx.top_names, params)


def t_normalize(ctx: LayerContext) -> None:
    p = ctx.lp.norm_param
    if len(ctx.bottoms[0].caffe_shape) != 4:
        ctx.refuse("Normalize needs N, C, H, W")
    ctx.need_blobs(1, " (the scale)")
    scale = ctx.blobs[0].reshape(-1)
    c = ctx.bottoms[0].caffe_shape[1]
    shared = bool(p.channel_shared)
    if scale.size != (1 if shared else c):
        ctx.refuse(f"scale of {scale.size} values ({'shared' if shared else f'{c} channels'})")
    params = {0: int(p.across_spatial), 1: int(shared), 2: float(p.eps), 3: int(scale.size), 9: 0}
    ctx.emit("Normalize", [ctx.canon(0)], ctx.top_names, params, [_raw(scale)])


# ------------------------------------------------------------------------------------------- activations


def _elementwise(kind: str, params_fn=None):
    def translate(ctx: LayerContext) -> None:
        params = params_fn(ctx) if params_fn else {}
        ctx.emit(kind, [ctx.bottoms[0].ncnn], ctx.top_names, params)
        _same_shape_out(ctx)

    return translate


def _relu_params(ctx):
    p = ctx.lp.relu_param
    return {0: float(p.negative_slope)} if p.negative_slope != 0 else {}


def _power_params(ctx):
    p = ctx.lp.power_param
    return {0: float(p.power), 1: float(p.scale), 2: float(p.shift)}


def _exp_log_params(field):
    def params(ctx):
        p = getattr(ctx.lp, field)
        if p.base != -1 and p.base <= 0:
            ctx.refuse(f"base {p.base}")
        return {0: float(p.base), 1: float(p.scale), 2: float(p.shift)}

    return params


def _dropout_params(ctx):
    p = ctx.lp.dropout_param
    if p.HasField("scale_train") and not p.scale_train:
        return {0: float(np.float32(1) - np.float32(p.dropout_ratio))}
    return {}


def _clip_params(ctx):
    if ctx.type == "ReLU6":
        return {0: 0.0, 1: 6.0}
    p = ctx.lp.clip_param
    return {0: float(p.min), 1: float(p.max)}


def _swish_params(ctx):
    if ctx.lp.swish_param.beta != 1:
        ctx.refuse(f"beta {ctx.lp.swish_param.beta} (ncnn's Swish is x * sigmoid(x))")
    return {}


def t_prelu(ctx: LayerContext) -> None:
    ctx.need_blobs(1)
    slope = ctx.blobs[0].reshape(-1)
    shape = ctx.bottoms[0].caffe_shape
    c = shape[1] if len(shape) > 1 else 1
    shared = bool(ctx.lp.prelu_param.channel_shared)
    if slope.size != (1 if shared else c):
        ctx.refuse(f"{slope.size} slopes for {'a shared slope' if shared else f'{c} channels'}")
    ctx.emit("PReLU", [ctx.canon(0)], ctx.top_names, {0: int(slope.size)}, [_raw(slope)])


def t_elu(ctx: LayerContext) -> None:
    ctx.emit("ELU", [ctx.bottoms[0].ncnn], ctx.top_names, {0: float(ctx.lp.elu_param.alpha)})
    _same_shape_out(ctx)


# ------------------------------------------------------------------------------------------- blob plumbing


def t_eltwise(ctx: LayerContext) -> None:
    p = ctx.lp.eltwise_param
    op = int(p.operation)
    coeff = [float(c) for c in p.coeff]
    if coeff and op != 1:
        ctx.refuse("coeff with an operation other than SUM")
    if coeff and len(coeff) != len(ctx.bottoms):
        ctx.refuse(f"{len(coeff)} coeff for {len(ctx.bottoms)} inputs")
    shapes = {b.ncnn_shape for b in ctx.bottoms}
    if len(shapes) == 1:
        srcs = [b.ncnn for b in ctx.bottoms]
        _same_shape_out(ctx)
    else:
        srcs = [ctx.canon(i) for i in range(len(ctx.bottoms))]
    params = {0: op}
    if coeff and any(c != 1.0 for c in coeff):
        params[1] = coeff
    ctx.emit("Eltwise", srcs, ctx.top_names, params)


def t_concat(ctx: LayerContext) -> None:
    rank = len(ctx.bottoms[0].caffe_shape)
    a = ctx.caffe_axis(concat_axis(ctx.lp, rank), rank)
    srcs = [ctx.canon(i) for i in range(len(ctx.bottoms))]
    ctx.emit("Concat", srcs, ctx.top_names, {0: a})


def t_slice(ctx: LayerContext) -> None:
    shape = ctx.bottoms[0].caffe_shape
    a = ctx.caffe_axis(slice_axis(ctx.lp, len(shape)), len(shape))
    points = [int(v) for v in ctx.lp.slice_param.slice_point]
    params: dict = {}
    if points:
        params[2] = points
    else:
        params[0] = [-233] * len(ctx.top_names)
    params[1] = a
    ctx.emit("Slice", [ctx.canon(0)], ctx.top_names, params)


def t_split(ctx: LayerContext) -> None:
    ctx.emit("Split", [ctx.bottoms[0].ncnn], ctx.top_names)
    for i in range(len(ctx.top_names)):
        ctx.set_shape(i, ctx.bottoms[0].ncnn_shape)


def t_reshape(ctx: LayerContext) -> None:
    out = ctx.top_canonical(0)
    ctx.emit("Reshape", [ctx.bottoms[0].ncnn], ctx.top_names, reshape_params(out))


def t_flatten(ctx: LayerContext) -> None:
    out = ctx.top_canonical(0)
    if len(out) == 1:
        ctx.emit("Flatten", [ctx.bottoms[0].ncnn], ctx.top_names)
    else:  # a partial flatten is a reshape
        ctx.emit("Reshape", [ctx.bottoms[0].ncnn], ctx.top_names, reshape_params(out))


def t_softmax(ctx: LayerContext) -> None:
    rank = len(ctx.bottoms[0].caffe_shape)
    a = ctx.caffe_axis(ctx.lp.softmax_param.axis, rank)
    ctx.emit("Softmax", [ctx.canon(0)], ctx.top_names, {0: a, 1: 1})


def t_tile(ctx: LayerContext) -> None:
    rank = len(ctx.bottoms[0].caffe_shape)
    a = ctx.caffe_axis(ctx.lp.tile_param.axis, rank)
    ctx.emit("Tile", [ctx.canon(0)], ctx.top_names, {0: a, 1: int(ctx.lp.tile_param.tiles)})


def t_crop(ctx: LayerContext) -> None:
    shape, ref = ctx.bottoms[0].caffe_shape, ctx.bottoms[1].caffe_shape
    a, offs = crop_offsets(ctx.lp, shape, ref)
    full = [0] * len(shape)
    full[a:] = offs
    if full[0] != 0:
        ctx.refuse("a crop of the batch axis")
    out = ctx.top_canonical(0)
    off = tuple(full[1:]) or (0,)
    names = {1: ("w",), 2: ("h", "w"), 3: ("c", "h", "w"), 4: ("c", "d", "h", "w")}[len(out)]
    off_key = {"w": 0, "h": 1, "d": 13, "c": 2}
    out_key = {"w": 3, "h": 4, "d": 14, "c": 5}
    params = {}
    for axis_name, o, size in zip(names, off, out, strict=True):
        params[off_key[axis_name]] = int(o)
        params[out_key[axis_name]] = int(size)
    ctx.emit("Crop", [ctx.canon(0)], ctx.top_names, dict(sorted(params.items())))


def t_silence(ctx: LayerContext) -> None:
    ctx.emit("Noop", [b.ncnn for b in ctx.bottoms], [])


def t_reduction(ctx: LayerContext) -> None:
    p = ctx.lp.reduction_param
    shape = ctx.bottoms[0].caffe_shape
    rank = len(shape)
    a = ctx.caffe_axis(p.axis, rank)
    ops = {1: 0, 2: 1, 3: 2, 4: 3}  # SUM ASUM SUMSQ MEAN -> ncnn's ids
    dims = len(canonical(shape))
    params = {0: ops[int(p.operation)], 1: 0, 2: float(p.coeff), 3: list(range(a, dims)), 4: 0, 5: 1}
    ctx.emit("Reduction", [ctx.canon(0)], ctx.top_names, params)


# ncnn Permute order types, per Mat dims: the output's axes, innermost first, named after the input's
_PERMUTE_TYPES = {
    2: ["wh", "hw"],
    3: ["whc", "hwc", "wch", "cwh", "hcw", "chw"],
    4: [
        "whdc", "hwdc", "wdhc", "dwhc", "hdwc", "dhwc", "whcd", "hwcd", "wchd", "cwhd", "hcwd", "chwd",
        "wdch", "dwch", "wcdh", "cwdh", "dcwh", "cdwh", "hdcw", "dhcw", "hcdw", "chdw", "dchw", "cdhw",
    ],
}  # fmt: skip


def t_permute(ctx: LayerContext) -> None:
    shape = ctx.bottoms[0].caffe_shape
    order = permute_order(ctx.lp, len(shape))
    if order[0] != 0:
        ctx.refuse(f"order {order} moves the batch axis")
    dims = len(shape) - 1
    if dims == 1 or order == list(range(len(shape))):
        ctx.emit("Permute", [ctx.canon(0)], ctx.top_names, {0: 0})
        return
    names = {2: "hw", 3: "chw", 4: "cdhw"}[dims]  # canonical axes 1.. of the Caffe blob, outer to inner
    out = "".join(names[i - 1] for i in order[1:])  # the output's axes, outer to inner
    ctx.emit("Permute", [ctx.canon(0)], ctx.top_names, {0: _PERMUTE_TYPES[dims].index(out[::-1])})


def t_shuffle_channel(ctx: LayerContext) -> None:
    shape = ctx.bottoms[0].caffe_shape
    group = int(ctx.lp.shuffle_channel_param.group)
    if len(shape) != 4 or group <= 0 or shape[1] % group:
        ctx.refuse(f"group {group} for {shape}")
    ctx.emit("ShuffleChannel", [ctx.canon(0)], ctx.top_names, {0: group})


# ------------------------------------------------------------------------------------------- resizing / SSD


def t_interp(ctx: LayerContext) -> None:
    shape = ctx.bottoms[0].caffe_shape
    oh, ow = ctx.top_shapes[0][2:]
    if min(shape[2], shape[3], oh, ow) < 2:
        ctx.refuse("sizes below 2 (ncnn's align-corners interpolation needs 2 or more on both sides)")
    # PSPNet's Interp: bilinear with the corners aligned
    ctx.emit("Interp", [ctx.canon(0)], ctx.top_names, {0: 2, 3: oh, 4: ow, 6: 1})


def t_upsample(ctx: LayerContext) -> None:
    if len(ctx.bottoms) != 1:
        ctx.refuse("max-unpooling with a mask input (no ncnn layer)")
    shape = ctx.bottoms[0].caffe_shape
    oh, ow = upsample_size(ctx.lp, shape)
    h, w = shape[2], shape[3]
    if oh % h or ow % w:
        ctx.refuse(f"{h}x{w} -> {oh}x{ow} is not an integer nearest-neighbour upsampling")
    sh, sw = oh // h, ow // w
    # ncnn picks source index int(x * float(1 / scale)): check it is x // scale for every output index
    for n, s in ((oh, sh), (ow, sw)):
        x = np.arange(n, dtype=np.float32)
        picked = (x * np.float32(np.float32(1) / np.float32(s))).astype(np.int64)
        if not np.array_equal(np.minimum(picked, n // s - 1), np.arange(n) // s):
            ctx.refuse(f"ncnn's nearest index rounding differs from x // {s} at this size")
    ctx.emit("Interp", [ctx.canon(0)], ctx.top_names, {0: 1, 1: float(sh), 2: float(sw)})


def t_prior_box(ctx: LayerContext) -> None:
    p = ctx.lp.prior_box_param
    if len(ctx.bottoms) != 2:
        ctx.refuse("PriorBox needs the feature map and the image as inputs")
    if p.max_size and len(p.max_size) != len(p.min_size):
        ctx.refuse("max_size count differs from min_size count")
    # ncnn adds each given ratio (and its inverse when flip) after the min/max boxes; SSD skips a ratio
    # already in its list (1 included): write the ratios SSD keeps, in order
    kept: list[float] = [1.0]
    given: list[float] = []
    for a in p.aspect_ratio:
        a = float(a)
        if any(abs(a - r) < 1e-6 for r in kept):
            continue
        kept.append(a)
        given.append(a)
        if p.flip:
            kept.append(1.0 / a)
    var = [float(v) for v in p.variance]
    if len(var) == 1:
        var = var * 4
    elif not var:
        var = [0.1] * 4
    elif len(var) != 4:
        ctx.refuse(f"{len(var)} variance values")
    img_w = img_h = -233
    if p.HasField("img_size"):
        img_w = img_h = int(p.img_size)
    elif p.HasField("img_h") or p.HasField("img_w"):
        img_w, img_h = int(p.img_w), int(p.img_h)
    step_w = step_h = -233.0
    if p.HasField("step"):
        step_w = step_h = float(p.step)
    elif p.HasField("step_h") or p.HasField("step_w"):
        step_w, step_h = float(p.step_w), float(p.step_h)
    params = {
        0: [float(v) for v in p.min_size],
        1: [float(v) for v in p.max_size],
        2: given,
        3: var[0],
        4: var[1],
        5: var[2],
        6: var[3],
        7: int(p.flip),
        8: int(p.clip),
        9: img_w,
        10: img_h,
        11: step_w,
        12: step_h,
        13: float(p.offset),
    }
    ctx.emit("PriorBox", [ctx.canon(0), ctx.canon(1)], ctx.top_names, params)


def t_detection_output(ctx: LayerContext) -> None:
    p = ctx.lp.detection_output_param
    if ctx.batch != 1:
        ctx.refuse("batch > 1")
    if not p.share_location or p.background_label_id != 0 or p.code_type != 2 or p.variance_encoded_in_target:
        ctx.refuse(
            "ncnn decodes CENTER_SIZE boxes shared by all classes, background label 0, variances from the priors"
        )
    if len(ctx.bottoms) != 3:
        ctx.refuse("needs location, confidence and prior inputs")
    nms = p.nms_param
    if nms.eta != 1:
        ctx.refuse(f"adaptive NMS (eta {nms.eta})")
    big = 2**30
    params = {
        0: int(p.num_classes),
        1: float(nms.nms_threshold),
        2: int(nms.top_k) if nms.HasField("top_k") and nms.top_k >= 0 else big,
        3: int(p.keep_top_k) if p.keep_top_k >= 0 else big,
        4: float(p.confidence_threshold) if p.HasField("confidence_threshold") else -FLT_MAX,
    }
    srcs = [ctx.as_shape(i, (math.prod(ctx.bottoms[i].caffe_shape[1:]),)) for i in (0, 1)]
    prior = ctx.bottoms[2]
    srcs.append(ctx.as_shape(2, (2, math.prod(prior.caffe_shape[1:]) // 2)))
    ctx.emit("DetectionOutput", srcs, ctx.top_names, params)
    ctx.set_shape(0, ())  # (detections, 6) when it runs: the runtime rebuilds Caffe's (1, 1, K, 7)


# ------------------------------------------------------------------------------------------- registry

TRANSLATORS = {
    "Input": t_input,
    "MemoryData": t_input,
    "Parameter": t_parameter,
    "Convolution": t_convolution,
    "ConvolutionDepthwise": t_convolution,
    "DepthwiseConvolution": t_convolution,
    "Deconvolution": t_deconvolution,
    "InnerProduct": t_inner_product,
    "Pooling": t_pooling,
    "BatchNorm": t_batch_norm,
    "Scale": t_scale,
    "Bias": t_bias,
    "MVN": t_mvn,
    "LRN": t_lrn,
    "Normalize": t_normalize,
    "ReLU": _elementwise("ReLU", _relu_params),
    "PReLU": t_prelu,
    "ELU": t_elu,
    "Sigmoid": _elementwise("Sigmoid"),
    "TanH": _elementwise("TanH"),
    "AbsVal": _elementwise("AbsVal"),
    "BNLL": _elementwise("BNLL"),
    "Exp": _elementwise("Exp", _exp_log_params("exp_param")),
    "Log": _elementwise("Log", _exp_log_params("log_param")),
    "Power": _elementwise("Power", _power_params),
    "Threshold": _elementwise("Threshold", lambda ctx: {0: float(ctx.lp.threshold_param.threshold)}),
    "Dropout": _elementwise("Dropout", _dropout_params),
    "Clip": _elementwise("Clip", _clip_params),
    "ReLU6": _elementwise("Clip", _clip_params),
    "Swish": _elementwise("Swish", _swish_params),
    "Eltwise": t_eltwise,
    "Concat": t_concat,
    "Slice": t_slice,
    "Split": t_split,
    "Reshape": t_reshape,
    "Flatten": t_flatten,
    "Softmax": t_softmax,
    "Tile": t_tile,
    "Crop": t_crop,
    "Silence": t_silence,
    "Reduction": t_reduction,
    "Permute": t_permute,
    "ShuffleChannel": t_shuffle_channel,
    "Interp": t_interp,
    "Upsample": t_upsample,
    "PriorBox": t_prior_box,
    "DetectionOutput": t_detection_output,
}

# Caffe types refused with a specific reason (any other unknown type: "no ncnn layer")
REFUSED = {
    "Data": "a training data source (deploy nets start with an Input layer)",
    "ImageData": "a training data source (deploy nets start with an Input layer)",
    "HDF5Data": "a training data source (deploy nets start with an Input layer)",
    "WindowData": "a training data source (deploy nets start with an Input layer)",
    "DummyData": "a training data source (deploy nets start with an Input layer)",
    "HDF5Output": "writes files during training",
    "Accuracy": "a training/evaluation layer",
    "SoftmaxWithLoss": "a loss layer (deploy nets end with Softmax)",
    "EuclideanLoss": "a loss layer",
    "SigmoidCrossEntropyLoss": "a loss layer",
    "HingeLoss": "a loss layer",
    "InfogainLoss": "a loss layer",
    "MultinomialLogisticLoss": "a loss layer",
    "ContrastiveLoss": "a loss layer",
    "Python": "a Python layer (its code is not part of the model)",
    "ArgMax": "ncnn's ArgMax layer is left out of its standard builds (the PyPI wheel has none)",
    "Embed": "ncnn's Embed reads integer indices; Caffe's takes them as floats (not converted)",
    "SPP": "no exact ncnn form of Caffe's spatial pyramid pooling",
    "Im2col": "no ncnn layer",
    "BatchReindex": "reorders the batch axis, which ncnn does not have",
    "Filter": "selects samples of the batch, which ncnn does not have",
    "RNN": "recurrent layers are not converted",
    "LSTM": "recurrent layers are not converted",
    "Recurrent": "recurrent layers are not converted",
}


def refusal(caffe_type: str) -> str:
    return REFUSED.get(caffe_type, f"no ncnn layer for Caffe type {caffe_type!r}")


SUPPORTED_TYPES = tuple(sorted(TRANSLATORS))
