"""Resize / Upsample (every mode, coordinate mode, nearest mode, scale or size, any axes) -> a fixed linear map per
resized axis, in the cheapest exact Caffe form.

Resize is separable: along each resized axis the output is R @ input for a fixed matrix R (n_out x n_in) that
depends only on the sizes and attributes (_resample_matrix.py builds onnxruntime's R by repeating its float32
arithmetic, and the spec's R in exact rationals). Per axis the mapper takes the first form whose own matrix,
built in exact arithmetic, is identical to R:
- identity: nothing (scale 1, or every size unchanged);
- pick (out[o] = in[a + s * o], nearest downsampling): Slice crop + AVE Pooling kernel 1 stride s, copies only;
- deconv (integer upsampling n_out = f * n_in, or align_corners with n_out - 1 = f * (n_in - 1)): replicate
  padding by Slice + Concat, then one depthwise Deconvolution with a fixed kernel, stride f;
  cost len(kernel) / f multiply-adds per output per axis (bilinear x2: 2, x8: 2; nearest: 1);
- conv (integer downsampling with a periodic kernel, e.g. linear half_pixel / 2 = a [0.5, 0.5] kernel stride 2):
  replicate padding, one depthwise Convolution with stride, cost len(kernel) per output;
- gather (nearest at other factors): Slice into single rows + Concat in output order, copies only;
- dense (linear / cubic / antialias at any other factor or size, align_corners, exclude_outside): the matrix
  itself, InnerProduct(axis=last) along W, a 1x1 Convolution over a (N*C, H, W, 1) view along H (channel axis = H);
  cost n_in multiply-adds per output per axis, (H_out * H_in * W_in + H_out * W_out * W_in) per channel for both,
  in the cheaper axis order; weights n_out * n_in floats per axis.
When H and W are both deconv (or both conv, both pick) they share one layer (a 2-D kernel, the outer product).

Exactness. Nearest, pick and gather copy onnxruntime's index choice (ties included): bit-exact. Deconv and conv
compute the spec's exact weights rounded once to float32; they are used only when those differ from onnxruntime's
float32 weights by at most 2^-17 (its coordinate rounding, about n_in * 2^-24), else the dense form with
onnxruntime's own float32 weights is used. Every output is then a sum of <= n_in products of float32 weights:
error <= (taps + 1) * 2^-24 * sum|w_j x_j| per axis, and the deconv/conv forms add 0 * x terms from zero taps
(exact for finite inputs). Refused: tf_crop_and_resize (a region of interest with extrapolation).
"""

from __future__ import annotations

import itertools
import math
from fractions import Fraction

import numpy as np

from onnx2caffe.registry import register

from ._compose import fresh
from ._resample import finish, gather, matrix, pick, prod, replicate_pad, view
from ._resample_matrix import COORDINATE_MODES, F32, AxisResize, Plan, axis_plan

_LAYERS = ("Deconvolution", "Convolution", "InnerProduct", "Pooling", "Reshape", "Slice", "Concat", "Silence")
_NEAREST_MODES = ("round_prefer_floor", "round_prefer_ceil", "floor", "ceil")


# ------------------------------------------------------------------------------------------ sizes and scales
def _full(node, values, axes, rank, fill, what):
    values = [v for v in values]
    if axes is None:
        if len(values) != rank:
            node.reject(f"{what} has {len(values)} values for a rank-{rank} input")
        return values
    if len(values) != len(axes):
        node.reject(f"{what} has {len(values)} values for {len(axes)} axes")
    full = list(fill)
    for a, v in zip(axes, values, strict=True):
        full[a] = v
    return full


def _axes_scales(node, ctx, shape, scales, sizes, axes=None, policy="stretch"):
    """Per axis (n_out, float32 scale, exact scale), as onnxruntime derives them; the output shape is checked
    against shape inference."""
    rank = len(shape)
    if axes is not None:
        norm = []
        for a in axes:
            b = a + rank if a < 0 else a
            if not 0 <= b < rank or b in norm:
                node.reject_attr("axes", axes, f"invalid for a rank-{rank} input")
            norm.append(b)
        axes = norm
    if scales is not None:
        s32 = [F32(v) for v in _full(node, scales, axes, rank, [1.0] * rank, "scales")]
        if any(not (v > 0) for v in s32):
            node.reject(f"scales {[float(v) for v in s32]} must be positive")
        out = [int(s * F32(d)) for s, d in zip(s32, shape, strict=True)]
        exact = [Fraction(float(s)) for s in s32]
    elif sizes is not None:
        out = [int(v) for v in _full(node, sizes, axes, rank, list(shape), "sizes")]
        if any(v <= 0 for v in out):
            node.reject(f"sizes {out} must be positive (Caffe blobs cannot be empty)")
        s32 = [F32(o) / F32(d) for o, d in zip(out, shape, strict=True)]
        exact = [Fraction(o, d) for o, d in zip(out, shape, strict=True)]
        if policy != "stretch":
            chosen = axes if axes is not None else list(range(rank))
            pick32 = min if policy == "not_larger" else max
            s = pick32(s32[a] for a in chosen)
            e = pick32(exact[a] for a in chosen)
            for a in range(rank):
                if a in chosen:
                    s32[a], exact[a] = s, e
                    out[a] = int(math.floor(float(s * F32(shape[a])) + 0.5))  # std::round, halves up
                else:
                    s32[a], exact[a], out[a] = F32(1), Fraction(1), shape[a]
    else:
        node.reject("neither scales nor sizes is given")
    got = ctx.shape(node.output(0))
    if tuple(got) != tuple(out):
        node.reject(f"inferred output shape {tuple(got)} differs from onnxruntime's {tuple(out)}")
    if min(out) <= 0:
        node.reject(f"output shape {tuple(out)} is empty (Caffe blobs cannot be empty)")
    return list(zip(out, s32, exact, strict=True))


# ------------------------------------------------------------------------------------------ emission
def _sampler(ctx, node, blob, shape, plans: dict[int, Plan]):
    """Deconvolution / Convolution plans on axes 2 and 3 of a 4-D blob, as one depthwise layer (the 2-D kernel is
    the outer product of the 1-D kernels). -> (layers, blob, shape)."""
    kind = next(p.kind for p in plans.values())
    layers: list = []
    cur_shape = tuple(shape)
    for axis, p in sorted(plans.items()):
        if p.rep:
            more, blob, cur_shape = replicate_pad(ctx, node, blob, cur_shape, axis, p.rep, p.rep)
            layers += more
    one = Plan(kind, 1, 1, 1, kernel=(1.0,))
    ph, pw = plans.get(2, one), plans.get(3, one)
    kh, kw = np.array(ph.kernel), np.array(pw.kernel)
    c = cur_shape[1]
    weight = np.ascontiguousarray(
        np.broadcast_to(np.outer(kh, kw), (c, 1, len(kh), len(kw))), dtype=np.float32
    )
    param = {"num_output": c, "bias_term": False, "group": c, "kernel_h": len(kh), "kernel_w": len(kw)}
    param.update({"stride_h": ph.stride, "stride_w": pw.stride})
    if kind == "deconv":
        param.update({"pad_h": ph.pad, "pad_w": pw.pad})
    top = fresh(ctx, node, kind)
    layer_type = "Deconvolution" if kind == "deconv" else "Convolution"
    layers.append(ctx.layer(top, layer_type, [blob], [top], blobs=[weight], convolution_param=param))
    if kind == "deconv":
        out = cur_shape[:2] + tuple(plans[a].n_out if a in plans else cur_shape[a] for a in (2, 3))
        return layers, top, out
    # convolution: floor((L - k) / s) + 1 outputs; keep the first n_out
    full = cur_shape[:2] + tuple(
        (cur_shape[a] - len(p.kernel)) // p.stride + 1 if (p := plans.get(a)) else cur_shape[a]
        for a in (2, 3)
    )
    blob = top
    for a, p in sorted(plans.items()):
        if full[a] != p.n_out:
            more, blob, full = _crop_axis(ctx, node, blob, full, a, p.n_out)
            layers += more
    return layers, blob, full


def _crop_axis(ctx, node, blob, shape, axis, n):
    return gather(ctx, node, blob, shape, axis, list(range(n)))


def _step(ctx, node, blob, shape, step):
    """One step: a single axis plan, or plans on the last two axes of a 4-D (or viewed) blob."""
    axes = sorted(step)
    kind = step[axes[0]].kind
    shape = tuple(shape)
    if kind == "pick":
        return pick(ctx, node, blob, shape, {a: (p.start, p.stride, p.n_out) for a, p in step.items()})
    if kind == "gather":
        (axis,) = axes
        return gather(ctx, node, blob, shape, axis, step[axis].index)
    if kind == "dense":
        (axis,) = axes
        return matrix(ctx, node, blob, shape, axis, step[axis].matrix)
    out_shape = list(shape)
    for a, p in step.items():
        out_shape[a] = p.n_out
    out_shape = tuple(out_shape)
    rank = len(shape)
    if rank == 4 and set(axes) <= {2, 3}:
        return _sampler(ctx, node, blob, shape, step)
    if len(axes) == 2:  # the last two axes of another rank: a (P, 1, H, W) view
        v = (prod(shape[:-2]), 1, shape[-2], shape[-1])
        plans = {2: step[rank - 2], 3: step[rank - 1]}
    else:
        (axis,) = axes
        v = (prod(shape[:axis]), 1, shape[axis], prod(shape[axis + 1 :]))
        plans = {2: step[axis]}
    layers, b = view(ctx, node, blob, shape, v)
    more, b, vout = _sampler(ctx, node, b, v, plans)
    more2, b = view(ctx, node, b, vout, out_shape, "unview")
    return layers + more + more2, b, out_shape


def _steps(plans: dict[int, Plan], rank: int) -> list[dict[int, Plan]]:
    """Group the plans into steps: the last two axes share one layer when both are deconv, conv or pick."""
    active = {a: p for a, p in plans.items() if p.kind != "identity"}
    steps = []
    last2 = [a for a in (rank - 2, rank - 1) if a in active]
    if len(last2) == 2 and active[last2[0]].kind == active[last2[1]].kind in ("deconv", "conv", "pick"):
        steps.append({a: active.pop(a) for a in last2})
    steps += [{a: p} for a, p in sorted(active.items())]
    return steps


def _cost(steps, shape) -> float:
    """Multiply-adds (copies count 1 per element) of running the steps in this order."""
    total, cur = 0.0, list(shape)
    for step in steps:
        for a, p in step.items():
            cur[a] = p.n_out
        per = 1
        for p in step.values():
            per *= max(p.macs, 1)
        total += prod(cur) * per
    return total


def resample(ctx, node, x: str, y: str, shape, plans: dict[int, Plan]):
    """Layers computing y from x with one plan per axis, steps in the cheapest order."""
    steps = _steps(plans, len(shape))
    if len(steps) > 1:
        steps = list(min(itertools.permutations(steps), key=lambda order: _cost(order, shape)))
    layers: list = []
    blob, cur = ctx.blob(x), tuple(shape)
    for step in steps:
        more, blob, cur = _step(ctx, node, blob, cur, step)
        layers += more
    return finish(ctx, node, layers, blob, ctx.blob(y))


# ------------------------------------------------------------------------------------------ the mappers
def _convert(
    node, ctx, mode, cmode, nearest_mode, axes_scales, cubic_a=-0.75, exclude=False, antialias=False
):
    x = node.input(0)
    shape = ctx.shape(x)
    plans: dict[int, Plan] = {}
    if [n for n, _, _ in axes_scales] != list(shape):
        for axis, (n_out, s32, exact) in enumerate(axes_scales):
            a = AxisResize(
                mode,
                cmode,
                nearest_mode,
                shape[axis],
                n_out,
                s32,
                exact,
                F32(cubic_a),
                bool(exclude),
                bool(antialias),
            )
            plan, _ = axis_plan(a)
            if a.mode == "nearest" and plan.kind == "dense":
                index = [int(np.argmax(row)) for row in plan.matrix]
                plan = Plan("gather", a.n_in, a.n_out, index=tuple(index))
            plans[axis] = plan
    return resample(ctx, node, x, node.output(0), shape, plans)


def _mode(node, value: str, allowed=("nearest", "linear", "cubic")) -> str:
    m = value.lower()
    if m == "bilinear":  # Upsample-7 spelling in some exporters
        m = "linear"
    if m not in allowed:
        node.reject_attr("mode", value, f"expected one of {', '.join(allowed)}")
    return m


def _const_values(node, ctx, index: int, what: str):
    value = ctx.const_input(node, index, what)
    return None if value is None or value.size == 0 else value.tolist()


@register("Upsample", since=7, until=10, layers=_LAYERS)
def upsample(node, ctx):
    """Upsample (opsets 7-9, asymmetric coordinates, any factor >= 1): nearest or linear, per axis as Resize."""
    mode = _mode(node, node.attr("mode", "nearest"), ("nearest", "linear"))
    shape = ctx.shape(node.input(0))
    scales = node.attr("scales", None)  # opset 7: attribute; opset 9: input
    from_input = _const_values(node, ctx, 1, "scales")
    if from_input is not None:
        scales = from_input
    if scales is None:
        node.reject("scales are required")
    if any(s < 1 for s in scales):
        node.reject(f"scales {scales}: Upsample takes factors >= 1")
    return _convert(node, ctx, mode, "asymmetric", "simple", _axes_scales(node, ctx, shape, scales, None))


@register("Resize", since=10, until=11, layers=_LAYERS)
def resize_v10(node, ctx):
    """Resize-10 (asymmetric coordinates, scales input): nearest or linear, per axis as Resize-11."""
    mode = _mode(node, node.attr("mode", "nearest"), ("nearest", "linear"))
    shape = ctx.shape(node.input(0))
    scales = _const_values(node, ctx, 1, "scales")
    return _convert(node, ctx, mode, "asymmetric", "simple", _axes_scales(node, ctx, shape, scales, None))


@register("Resize", since=11, layers=_LAYERS)
def resize_v11(node, ctx):
    """Resize 11+ (nearest / linear / cubic, every coordinate and nearest mode, antialias, scales or sizes, axes,
    keep_aspect_ratio_policy) -> per axis: copies (pick/gather, bit-exact), a depthwise Deconvolution or Convolution
    for periodic factors (kernel/stride MACs per output), else the interpolation matrix (InnerProduct along W,
    1x1 Convolution along H: n_in MACs per output); weights within 2^-17 of onnxruntime's, float32 sums."""
    mode = _mode(node, node.attr("mode", "nearest"))
    cmode = node.attr("coordinate_transformation_mode", "half_pixel")
    nearest_mode = node.attr("nearest_mode", "round_prefer_floor")
    if cmode == "tf_crop_and_resize":
        node.reject_attr("coordinate_transformation_mode", cmode, "crops a region of interest; no Caffe form")
    if cmode not in COORDINATE_MODES:
        node.reject_attr("coordinate_transformation_mode", cmode, "unknown coordinate transformation mode")
    if mode == "nearest" and nearest_mode not in _NEAREST_MODES:
        node.reject_attr("nearest_mode", nearest_mode, "unknown nearest mode")
    if mode != "nearest":
        node.ignore_attr("nearest_mode", "only used by mode nearest")
    node.ignore_attr("extrapolation_value", "only used by tf_crop_and_resize, which is refused")
    cubic_a = node.attr("cubic_coeff_a", -0.75)
    if mode != "cubic":
        node.ignore_attr("cubic_coeff_a", "only used by mode cubic")
    exclude = node.attr("exclude_outside", 0)
    antialias = node.attr("antialias", 0)
    if antialias and mode == "nearest":
        node.reject_attr("antialias", antialias, "antialias applies to linear and cubic only")
    if exclude and mode == "nearest":
        node.ignore_attr("exclude_outside", "no effect in mode nearest")
        exclude = 0
    if exclude and mode == "linear" and not antialias:
        node.ignore_attr("exclude_outside", "no effect in mode linear without antialias")
        exclude = 0
    policy = node.attr("keep_aspect_ratio_policy", "stretch")
    if policy not in ("stretch", "not_larger", "not_smaller"):
        node.reject_attr("keep_aspect_ratio_policy", policy, "unknown policy")
    axes = node.attr("axes", None)
    shape = ctx.shape(node.input(0))
    scales = _const_values(node, ctx, 2, "scales")
    sizes = _const_values(node, ctx, 3, "sizes")
    if scales is not None and sizes is not None:
        node.reject("both scales and sizes are given")
    if scales is not None and policy != "stretch":
        node.ignore_attr("keep_aspect_ratio_policy", "only used with sizes")
        policy = "stretch"
    axes_scales = _axes_scales(node, ctx, shape, scales, sizes, axes, policy)
    return _convert(node, ctx, mode, cmode, nearest_mode, axes_scales, cubic_a, exclude, antialias)
