"""Resize / Upsample (every mode, coordinate mode, nearest mode, scale or size, axes, any rank) -> one fixed linear
map per resized axis, as copies where it copies and as the interpolation matrix otherwise.

Resize is separable: along each resized axis the output is R @ input for a fixed matrix R (n_out x n_in) that
depends only on the sizes and attributes. _resample_matrix.py builds onnxruntime's R by repeating its float32
arithmetic (coordinates, clamping, nearest rounding and ties, cubic coefficients, antialias filters), so its
weights are bit-identical to onnxruntime's. Per axis:
- identity (scale 1, or no size changes): nothing;
- every row copies one input with weight 1 (nearest; linear at coordinates that are integers): copies only,
  bit-exact for any input:
  pick (out[o] = in[a + s * o], downsampling): Slice crop + AVE Pooling kernel 1 stride s;
  repeat (out[o] = in[o // k], nearest upsampling by k): Concat of k references to a (P, n, 1, R) view;
  gather (other patterns): Slice + Concat in output order;
  along the last axis (W) repeat/gather become the 0/1 selection matrix instead (OpenCV concatenates the last
  axis one element at a time; 1 * x + 0 * others is exact for finite x);
- otherwise (linear, cubic, antialias, align_corners, any factor or size): the matrix R, as InnerProduct(axis=last)
  along the last axis and as a 1x1 Convolution over a (P, n_in, R, 1) view along any other axis (its channel axis
  is the resized one); n_in multiply-adds per output element and n_out * n_in weights per axis. Both axes of a
  2-D resize cost C * (H_out * H_in * W_? + H_? * W_out * W_in) in the cheaper order (the axis that shrinks, or
  the cheaper one, first).
Error bound of the matrix form: each output is a float32 sum of the same non-zero products onnxruntime forms
(with the same float32 weights) plus exact zeros, rounded differently: <= (taps + 1) * 2^-24 * sum|w_j x_j| per
axis; onnxruntime multiplies the two axes' weights first, one rounding more. Tests hold it to 2e-6 of max|y|.
Why not the depthwise Deconvolution of the older mapper (integer factors): on OpenCV 4.14 (one thread) it runs
5-15x slower than these forms (benchmarks/resample.py), and no faster in Caffe. Refused: tf_crop_and_resize
(a region of interest with extrapolation).
"""

from __future__ import annotations

import itertools
import math

import numpy as np

from onnx2caffe.registry import register

from ._resample import finish, gather, matrix, pick, prod, repeat
from ._resample_matrix import COORDINATE_MODES, F32, AxisResize, Plan, axis_plan

_LAYERS = ("InnerProduct", "Convolution", "Pooling", "Concat", "Reshape", "Slice", "Silence", "Power")
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
    """Per axis (n_out, float32 scale), as onnxruntime derives them; the output shape is checked against shape
    inference."""
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
    elif sizes is not None:
        out = [int(v) for v in _full(node, sizes, axes, rank, list(shape), "sizes")]
        if any(v <= 0 for v in out):
            node.reject(f"sizes {out} must be positive (Caffe blobs cannot be empty)")
        s32 = [F32(o) / F32(d) for o, d in zip(out, shape, strict=True)]
        if policy != "stretch":
            chosen = axes if axes is not None else list(range(rank))
            s = (min if policy == "not_larger" else max)(s32[a] for a in chosen)
            for a in range(rank):
                if a in chosen:
                    s32[a] = s
                    out[a] = int(math.floor(float(s * F32(shape[a])) + 0.5))  # std::round, halves up
                else:
                    s32[a], out[a] = F32(1), shape[a]
    else:
        node.reject("neither scales nor sizes is given")
    got = ctx.shape(node.output(0))
    if tuple(got) != tuple(out):
        node.reject(f"inferred output shape {tuple(got)} differs from onnxruntime's {tuple(out)}")
    if min(out) <= 0:
        node.reject(f"output shape {tuple(out)} is empty (Caffe blobs cannot be empty)")
    return list(zip(out, s32, strict=True))


# ------------------------------------------------------------------------------------------ emission
def _step(ctx, node, blob, shape, step: dict[int, Plan]):
    """One step: one axis's plan, or picks on axes 2 and 3 of a 4-D blob (one pooling)."""
    kind = next(iter(step.values())).kind
    if kind == "pick":
        return pick(ctx, node, blob, shape, {a: (p.start, p.stride, p.n_out) for a, p in step.items()})
    ((axis, plan),) = step.items()
    if kind == "repeat":
        return repeat(ctx, node, blob, shape, axis, plan.stride)
    if kind == "gather":
        return gather(ctx, node, blob, shape, axis, plan.index)
    return matrix(ctx, node, blob, shape, axis, plan.matrix)


def _steps(plans: dict[int, Plan], rank: int) -> list[dict[int, Plan]]:
    """One step per resized axis; picks on the two spatial axes of a 4-D tensor share one pooling."""
    active = {a: p for a, p in plans.items() if p.kind != "identity"}
    steps = []
    if rank == 4 and all(active.get(a, Plan("", 0, 0)).kind == "pick" for a in (2, 3)):
        steps.append({a: active.pop(a) for a in (2, 3)})
    return steps + [{a: p} for a, p in sorted(active.items())]


def _cost(steps, shape) -> float:
    """Multiply-adds (a copied element counts 1) of running the steps in this order."""
    total, cur = 0.0, list(shape)
    for step in steps:
        per = 1
        for a, p in step.items():
            cur[a] = p.n_out
            per *= max(p.macs, 1)
        total += prod(cur) * per
    return total


def resample(ctx, node, x: str, y: str, shape, plans: dict[int, Plan]):
    """Layers computing y from x with one plan per axis, the steps in the cheapest order."""
    steps = _steps(plans, len(shape))
    if len(steps) > 1:
        # ties: matrices before copies (a GEMM on the smaller tensor, the big output written by a copy)
        steps = list(
            min(
                itertools.permutations(steps),
                key=lambda order: (
                    _cost(order, shape),
                    [next(iter(st.values())).kind != "dense" for st in order],
                ),
            )
        )
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
    if [n for n, _ in axes_scales] != list(shape):  # onnxruntime copies when no size changes
        for axis, (n_out, s32) in enumerate(axes_scales):
            a = AxisResize(
                mode,
                cmode,
                nearest_mode,
                shape[axis],
                n_out,
                s32,
                F32(cubic_a),
                bool(exclude),
                bool(antialias),
            )
            # the dense form builds a float64 (n_out, n_in) matrix: ask before building it
            ctx.check_array(
                (n_out, shape[axis]), np.float64, f"the interpolation matrix of axis {axis}", False
            )
            plans[axis] = axis_plan(a, last_axis=axis == len(shape) - 1)
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


@register(
    "Upsample",
    since=7,
    until=10,
    layers=_LAYERS,
    notes="nearest/linear, asymmetric coordinates, factors >= 1 -> per axis as Resize 11+ (copies or the interpolation "
    "matrix)",
)
def upsample(node, ctx):
    """Upsample (opsets 7-9, asymmetric coordinates, any factor >= 1): nearest or linear, per axis as Resize 11+."""
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


@register(
    "Resize",
    since=10,
    until=11,
    layers=_LAYERS,
    notes="nearest/linear, asymmetric coordinates, any scales -> per axis as Resize 11+ (copies or the interpolation "
    "matrix)",
)
def resize_v10(node, ctx):
    """Resize-10 (asymmetric coordinates, scales input): nearest or linear, per axis as Resize-11."""
    mode = _mode(node, node.attr("mode", "nearest"), ("nearest", "linear"))
    shape = ctx.shape(node.input(0))
    scales = _const_values(node, ctx, 1, "scales")
    return _convert(node, ctx, mode, "asymmetric", "simple", _axes_scales(node, ctx, shape, scales, None))


@register(
    "Resize",
    since=11,
    layers=_LAYERS,
    notes="nearest/linear/cubic, every coordinate and nearest mode, antialias, exclude_outside, scales or sizes, axes, "
    "keep_aspect_ratio_policy -> per axis: copies where each output copies one input (Pooling kernel 1, Concat; "
    "bit-exact), else onnxruntime's float32 interpolation matrix (InnerProduct along W, 1x1 Convolution on a view "
    "along other axes; n_in MACs per output, n_out*n_in weights; error <= (taps+1)*2^-24*sum|w*x| per axis); "
    "tf_crop_and_resize refused",
)
def resize_v11(node, ctx):
    """Resize 11+ (nearest/linear/cubic, every coordinate and nearest mode, antialias, scales/sizes, axes, aspect
    policy) -> per axis: copies where each output copies one input (Pooling/Concat, bit-exact; the last axis: a 0/1
    InnerProduct), else onnxruntime's interpolation matrix (InnerProduct along W, 1x1 Convolution along H: n_in
    MACs per output, n_out * n_in weights), float32 sums: error <= (taps + 1) * 2^-24 * sum|w x| per axis."""
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
