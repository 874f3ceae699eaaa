"""Resize / Upsample with integer factors on H and W -> one depthwise Deconvolution with a fixed kernel.

For an integer factor f the 1-D resampling is a transposed convolution with stride f: every output o reads
inputs j with a weight that depends only on u = o - j * f (nearest: 1 on one tap per output; linear: the
triangle 1 - |x(o) - j| for the half_pixel/asymmetric coordinate maps). Edges: onnxruntime and PyTorch clamp the
source coordinate, which is a replicate padding by one pixel (built from Slice + Concat) before the
Deconvolution. The 2-D kernel is the outer product of the H and W kernels (group = C, one kernel per channel).

Nothing is taken on trust: for each axis the mapper builds onnxruntime's interpolation matrix in exact rational
arithmetic and the matrix of the Deconvolution composition, and refuses the node unless they are identical.
So exactly the equivalent combinations of mode / coordinate_transformation_mode / nearest_mode are accepted; the
only remaining difference is float32 rounding of the weights and the sums.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np

from onnx2caffe.registry import register

from ._compose import fresh, silence

_LAYERS = ("Deconvolution", "Slice", "Concat", "Silence")
_HALF = Fraction(1, 2)


# ------------------------------------------------------------------------------------------ exact 1-D maps
def _coordinate(mode: str, o: int, f: int, n_in: int, n_out: int) -> Fraction | None:
    """Source coordinate of output o (the ONNX formulas with scale = f = n_out / n_in); None if unsupported."""
    if mode in ("half_pixel", "half_pixel_symmetric"):  # symmetric == half_pixel when n_out == n_in * scale
        return (o + _HALF) / f - _HALF
    if mode == "pytorch_half_pixel":
        return (o + _HALF) / f - _HALF if n_out > 1 else Fraction(0)
    if mode == "asymmetric":
        return Fraction(o, f)
    if mode == "tf_half_pixel_for_nn":
        return (o + _HALF) / f
    if mode == "align_corners":
        return Fraction(o * (n_in - 1), n_out - 1) if n_out > 1 else Fraction(0)
    return None


def _round(nearest_mode: str, x: Fraction) -> int:
    fl = math.floor(x)
    if nearest_mode in ("floor", "simple"):  # simple: onnxruntime's opset < 11 rule when upsampling
        return fl
    if nearest_mode == "ceil":
        return math.ceil(x)
    frac = x - fl
    if frac == _HALF:
        return fl if nearest_mode == "round_prefer_floor" else fl + 1
    return fl if frac < _HALF else fl + 1


def _reference_matrix(mode, cmode, nearest_mode, n_in, f):
    """onnxruntime's interpolation matrix for one axis: one {input index: exact weight} row per output."""
    n_out = n_in * f
    rows = []
    for o in range(n_out):
        x = _coordinate(cmode, o, f, n_in, n_out)
        if mode == "nearest":
            rows.append({min(max(_round(nearest_mode, x), 0), n_in - 1): Fraction(1)})
            continue
        # linear: the coordinate is clamped into [0, n_in - 1], then two-tap interpolation
        x = min(max(x, Fraction(0)), Fraction(n_in - 1))
        j0 = math.floor(x)
        row = {}
        if j0 >= n_in - 1:
            row[n_in - 1] = Fraction(1)
        else:
            row[j0] = 1 - (x - j0)
            row[j0 + 1] = row.get(j0 + 1, Fraction(0)) + (x - j0)
        rows.append({j: w for j, w in row.items() if w})
    return rows


def _kernel(mode, cmode, nearest_mode, n_in, f):
    """Candidate (taps {u: weight}, replicate pad R) with weight(u), u = o - j * f, on an unbounded axis."""
    if n_in == 1 or f == 1:
        # broadcast (every output reads the single input) or identity: onnxruntime copies the value
        return ({u: Fraction(1) for u in range(f)}, 0) if n_in == 1 else ({0: Fraction(1)}, 0)
    taps = {}
    big = 4 * f + 4  # a window far from both edges: weights there depend on u only
    for u in range(-3 * f, 3 * f + 1):
        o = big * f + u
        x = _coordinate(cmode, o, f, 1 << 30, (1 << 30) * f)
        if x is None:
            return None
        x -= big
        if mode == "nearest":
            w = Fraction(1) if _round(nearest_mode, x) == 0 else Fraction(0)
        else:
            w = max(Fraction(0), 1 - abs(x))
        if w:
            taps[u] = w
    return taps, (1 if mode != "nearest" else 0)


def _composition_matrix(taps, r, n_in, f):
    """The rows of: replicate-pad by r, then transposed convolution with stride f and taps {u: w}."""
    n_out = n_in * f
    rows = [{} for _ in range(n_out)]
    for jp in range(n_in + 2 * r):
        j = min(max(jp - r, 0), n_in - 1)
        for u, w in taps.items():
            o = (jp - r) * f + u
            if 0 <= o < n_out:
                rows[o][j] = rows[o].get(j, Fraction(0)) + w
    return [{j: w for j, w in row.items() if w} for row in rows]


def axis_plan(mode, cmode, nearest_mode, n_in, f):
    """(kernel as float64 array, stride, symmetric pad, replicate pad R) for one axis, or a reason string.
    The Deconvolution over the R-padded input then yields exactly n_in * f outputs."""
    cand = _kernel(mode, cmode, nearest_mode, n_in, f)
    if cand is None:
        return f"coordinate_transformation_mode '{cmode}' is not supported"
    taps, r = cand
    if _composition_matrix(taps, r, n_in, f) != _reference_matrix(mode, cmode, nearest_mode, n_in, f):
        what = f"mode '{mode}'" + (f", nearest_mode '{nearest_mode}'" if mode == "nearest" else "")
        return (
            f"{what} with coordinate_transformation_mode '{cmode}' and factor {f} on size {n_in} is not an exact "
            "fixed-kernel upsampling"
        )
    lo, hi = min(taps), max(taps)
    kernel = [taps.get(u, Fraction(0)) for u in range(lo, hi + 1)]
    start = r * f - lo  # output o of the ONNX op is output o + start of the full (pad 0) deconvolution
    end_excess = (n_in + 2 * r - 1) * f + len(kernel) - start - n_in * f
    # Caffe pads symmetrically: zero taps in front raise start, zero taps behind raise the end excess
    if start < end_excess:
        kernel = [Fraction(0)] * (end_excess - start) + kernel
        start = end_excess
    elif end_excess < start:
        kernel = kernel + [Fraction(0)] * (start - end_excess)
    return np.array([float(w) for w in kernel]), f, start, r


# ------------------------------------------------------------------------------------------ Caffe layers
def _replicate_pad(ctx, node, bottom: str, shape, axis: int, unused: list[str]):
    """bottom padded by one copy of its first and last slice along `axis` (Slice + Concat). -> (layers, top)."""
    n = shape[axis]
    layers = []
    if n == 1:
        first = last = bottom
    else:
        first, last = fresh(ctx, node, f"first{axis}"), fresh(ctx, node, f"last{axis}")
        tops, points = [first], [1]
        if n > 2:
            mid = fresh(ctx, node, f"mid{axis}")
            tops.append(mid)
            points.append(n - 1)
            unused.append(mid)
        tops.append(last)
        layers.append(
            ctx.layer(
                fresh(ctx, node, f"edges{axis}"),
                "Slice",
                [bottom],
                tops,
                slice_param={"axis": axis, "slice_point": points},
            )
        )
    top = fresh(ctx, node, f"padded{axis}")
    layers.append(ctx.layer(top, "Concat", [first, bottom, last], [top], concat_param={"axis": axis}))
    return layers, top


def _emit(node, ctx, mode, cmode, nearest_mode, factors):
    x, y = node.input(0), node.output(0)
    shape = ctx.shape(x)
    if len(shape) != 4:
        node.reject(f"only 4-D (N, C, H, W) inputs are supported (rank {len(shape)})")
    if factors[0] != 1 or factors[1] != 1:
        node.reject(f"resizing the N or C axis (factors {factors[:2]}) has no Caffe form")
    plans = []
    for axis in (2, 3):
        plan = axis_plan(mode, cmode, nearest_mode, shape[axis], factors[axis])
        if isinstance(plan, str):
            node.reject(plan)
        plans.append(plan)
    channels = shape[1]
    layers, unused = [], []
    bottom, cur = ctx.blob(x), list(shape)
    for axis, plan in zip((2, 3), plans, strict=True):
        if plan[3]:
            more, bottom = _replicate_pad(ctx, node, bottom, cur, axis, unused)
            layers += more
            cur[axis] += 2
    (kh, sh, ph, _), (kw, sw, pw, _) = plans
    weight = np.ascontiguousarray(
        np.broadcast_to(np.outer(kh, kw), (channels, 1, len(kh), len(kw))), dtype=np.float32
    )
    conv = {"num_output": channels, "bias_term": False, "group": channels}
    conv.update(
        {"kernel_h": len(kh), "kernel_w": len(kw), "stride_h": sh, "stride_w": sw, "pad_h": ph, "pad_w": pw}
    )
    layers.append(
        ctx.layer(node.name, "Deconvolution", [bottom], [ctx.blob(y)], blobs=[weight], convolution_param=conv)
    )
    return layers + silence(ctx, node, unused)


def _factors(node, ctx, shape, scales, sizes, axes=None):
    """Integer factor per axis from scales or sizes (checked against the inferred output shape)."""
    rank = len(shape)
    out = ctx.shape(node.output(0))
    if len(out) != rank:
        node.reject(f"inferred output rank {len(out)} differs from the input rank {rank}")
    if axes is not None:
        axes = [a + rank if a < 0 else a for a in axes]
    for what, values in (("scales", scales), ("sizes", sizes)):
        if values is None:
            continue
        values = [float(v) for v in values]
        if axes is not None:
            full = [1.0 if what == "scales" else float(d) for d in shape]
            if len(values) != len(axes):
                node.reject(f"{what} has {len(values)} values for {len(axes)} axes")
            for a, v in zip(axes, values, strict=True):
                full[a] = v
            values = full
        if len(values) != rank:
            node.reject(f"{what} has {len(values)} values for a rank-{rank} input")
        if what == "scales":
            bad = [v for v in values if v < 1 or v != int(v)]
            if bad:
                node.reject(f"scales {values}: only integer upsampling factors have an exact Caffe form")
            factors = [int(v) for v in values]
        else:
            bad = [(int(v), d) for v, d in zip(values, shape, strict=True) if int(v) < d or int(v) % d]
            if bad:
                node.reject(
                    f"sizes {[int(v) for v in values]}: only integer multiples of the input size {shape}"
                )
            factors = [int(v) // d for v, d in zip(values, shape, strict=True)]
        want = tuple(d * f for d, f in zip(shape, factors, strict=True))
        if tuple(out) != want:
            node.reject(f"inferred output shape {out} differs from the computed {want}")
        return factors
    node.reject("neither scales nor sizes is given")


def _const_values(node, ctx, index: int, what: str):
    value = ctx.const_input(node, index, what)
    return None if value is None or value.size == 0 else value.tolist()


def _mode(node, value: str) -> str:
    m = value.lower()
    if m == "bilinear":  # Upsample-7 spelling in some exporters
        m = "linear"
    if m not in ("nearest", "linear"):
        node.reject_attr(
            "mode", value, "only nearest and (bi)linear have an exact Caffe form (cubic does not)"
        )
    return m


@register("Upsample", since=7, until=10, layers=_LAYERS)
def upsample(node, ctx):
    """Upsample (opsets 7-9, asymmetric coordinates): integer factors on H/W, nearest or linear."""
    mode = _mode(node, node.attr("mode", "nearest"))
    shape = ctx.shape(node.input(0))
    scales = node.attr("scales", None)  # opset 7: attribute; opset 9: input
    from_input = _const_values(node, ctx, 1, "scales")
    if from_input is not None:
        scales = from_input
    factors = _factors(node, ctx, shape, scales, None)
    return _emit(node, ctx, mode, "asymmetric", "simple", factors)


@register("Resize", since=10, until=11, layers=_LAYERS)
def resize_v10(node, ctx):
    """Resize-10 (asymmetric coordinates, scales input): integer factors on H/W, nearest or linear."""
    mode = _mode(node, node.attr("mode", "nearest"))
    shape = ctx.shape(node.input(0))
    factors = _factors(node, ctx, shape, _const_values(node, ctx, 1, "scales"), None)
    return _emit(node, ctx, mode, "asymmetric", "simple", factors)


@register("Resize", since=11, layers=_LAYERS)
def resize_v11(node, ctx):
    """Resize (opset 11+; scales or sizes): integer factors on H/W, nearest (exactly equivalent modes only) or
    linear (half_pixel / pytorch_half_pixel / asymmetric), verified exactly per axis."""
    mode = _mode(node, node.attr("mode", "nearest"))
    cmode = node.attr("coordinate_transformation_mode", "half_pixel")
    nearest_mode = node.attr("nearest_mode", "round_prefer_floor")
    if mode != "nearest":
        node.ignore_attr("nearest_mode", "only used by mode nearest")
    if cmode == "tf_crop_and_resize":
        node.reject_attr("coordinate_transformation_mode", cmode, "crops a region of interest; no Caffe form")
    node.ignore_attr("extrapolation_value", "only used by tf_crop_and_resize, which is refused")
    node.ignore_attr("cubic_coeff_a", "only used by mode cubic, which is refused")
    exclude = node.attr("exclude_outside", 0)
    if exclude and mode != "nearest":
        node.reject_attr("exclude_outside", exclude, "renormalised edge weights are not supported")
    antialias = node.attr("antialias", 0)
    if antialias:
        node.ignore_attr("antialias", "no effect when upsampling (the only case accepted)")
    policy = node.attr("keep_aspect_ratio_policy", "stretch")
    axes = node.attr("axes", None)
    shape = ctx.shape(node.input(0))
    scales = _const_values(node, ctx, 2, "scales")
    sizes = _const_values(node, ctx, 3, "sizes") if scales is None else None
    if sizes is not None and policy != "stretch":
        node.reject_attr("keep_aspect_ratio_policy", policy, "only 'stretch' is supported with sizes")
    if scales is not None and sizes is None and node.input(3) and ctx.const(node.input(3)) is not None:
        if np.asarray(ctx.const(node.input(3))).size:
            node.reject("both scales and sizes are given")
    factors = _factors(node, ctx, shape, scales, sizes, axes)
    return _emit(node, ctx, mode, cmode, nearest_mode, factors)
