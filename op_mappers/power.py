"""Unary arithmetic built from Caffe's Power layer (top = (shift + scale * x) ^ power), AbsVal and Eltwise.

Power's pow is the C library's powf on both runtimes: measured within 1 ulp of onnxruntime for every exponent
tried (0.5, -1, 1.5, -0.5, 2.5, 4, -2, 1/3; 0 ulp for most), and exact when power is 1 (a scaling and a shift,
each rounded once like onnxruntime's). Exponents 2 and 3 use Eltwise PROD instead: x * x and (x * x) * x are
bit-exact with onnxruntime, which special-cases them the same way.

Edge values that differ (none occurs in a network's activations): OpenCV flushes subnormal inputs to 0 in every
layer; Power(0.5) of -inf is +inf where sqrt gives NaN; OpenCV's Power(-1) of -0 is +inf where 1 / -0 is -inf.
"""

from __future__ import annotations

import numpy as np

from onnx2caffe.registry import register

from ._compose import ELTWISE_MAX, ELTWISE_PROD, eltwise, fresh, identity, power

# most pieces a per-element exponent may be cut into (one Power layer each)
MAX_EXPONENT_PIECES = 16


def _pow_scalar(ctx, node, name: str, bottom: str, top: str, p: float):
    """Layers for top = bottom ** p with a constant scalar p."""
    if p == 1.0:
        return [identity(ctx, name, bottom, top)]
    if p == 2.0:
        return [eltwise(ctx, name, [bottom, bottom], top, ELTWISE_PROD)]
    if p == 3.0:
        return [eltwise(ctx, name, [bottom, bottom, bottom], top, ELTWISE_PROD)]
    return [power(ctx, name, bottom, top, power=p)]


def _exponent_runs(node, ctx, exponent: np.ndarray, out_shape):
    """(axis, [(start, end, p), ...]) for an exponent that varies along one axis only, else the node is
    refused."""
    full = np.broadcast_to(
        exponent.reshape((1,) * (len(out_shape) - exponent.ndim) + exponent.shape), out_shape
    )
    varying = [a for a in range(len(out_shape)) if np.ptp(full, axis=a).any()]
    if len(varying) != 1:
        node.reject(
            f"the exponent (shape {exponent.shape}) varies along {len(varying)} axes; Caffe's Power takes one "
            "exponent, so per-element exponents are cut along one axis only"
        )
    axis = varying[0]
    line = full[tuple(slice(None) if a == axis else 0 for a in range(len(out_shape)))]
    runs, start = [], 0
    for i in range(1, len(line) + 1):
        if i == len(line) or line[i] != line[start]:
            runs.append((start, i, float(line[start])))
            start = i
    if len(runs) > MAX_EXPONENT_PIECES:
        node.reject(
            f"the exponent changes {len(runs)} times along axis {axis}: more than {MAX_EXPONENT_PIECES} pieces"
        )
    return axis, runs


@register(
    "Pow",
    since=1,
    layers=("Power", "Eltwise", "Slice", "Concat"),
    notes="Pow with a constant exponent: 2 -> Eltwise PROD(x, x), 3 -> Eltwise PROD(x, x, x) (bit-exact), 1 -> "
    "copy, else Power(power=p) (<= 1 ulp); an exponent varying along one axis -> Slice + Power per run + "
    f"Concat (<= {MAX_EXPONENT_PIECES} runs)",
)
def pow_(node, ctx):
    """Pow(x, p) with p constant. A computed exponent (or a constant base) is refused: Caffe has no x ** y with y
    an activation, and exp(y * log x) rounds log x (an error that grows with |y log x|)."""
    x, p, y = node.input(0), node.input(1), node.output(0)
    if ctx.is_const(x):
        node.reject("the base is a constant and the exponent is computed: c ** y = exp(y * ln c) rounds ln c")
    exponent = ctx.const(p)
    if exponent is None:
        node.reject("the exponent is computed at run time; Caffe's Power layer takes a constant exponent")
    exponent = np.asarray(exponent)
    if exponent.dtype.kind not in "iuf":
        node.reject(f"exponent of type {exponent.dtype}")
    e32 = exponent.astype(np.float32)
    if not np.array_equal(e32.astype(np.float64), exponent.astype(np.float64)):
        node.reject("the exponent is not a float32 value (Caffe's Power exponent is float32)")
    out_shape = ctx.shape(y)
    if ctx.shape(x) != out_shape:
        node.reject(
            f"the exponent {exponent.shape} broadcasts the output {out_shape} beyond the base {ctx.shape(x)}"
        )
    if ctx.dtype(y) not in (None, np.float32):
        node.reject(f"{ctx.dtype(y)} arithmetic (Caffe blobs are float32)")
    xb, yb = ctx.blob(x), ctx.blob(y)
    flat = e32.reshape(-1)
    if flat.size == 0:
        node.reject("empty exponent")
    if np.all(flat == flat[0]):
        return _pow_scalar(ctx, node, node.name, xb, yb, float(flat[0]))
    axis, runs = _exponent_runs(node, ctx, e32, out_shape)
    pieces, powered, layers = [], [], []
    for k, (_, _, value) in enumerate(runs):
        piece = fresh(ctx, node, f"piece{k}")
        pieces.append(piece)
        if value == 1.0:
            powered.append(piece)
            continue
        out = fresh(ctx, node, f"pow{k}")
        layers += _pow_scalar(ctx, node, out, piece, out, value)
        powered.append(out)
    cut = ctx.layer(
        fresh(ctx, node, "slice"),
        "Slice",
        [xb],
        pieces,
        slice_param={"axis": axis, "slice_point": [start for start, _, _ in runs[1:]]},
    )
    concat = ctx.layer(node.name, "Concat", powered, [yb], concat_param={"axis": axis})
    return [cut] + layers + [concat]


@register(
    "Sqrt",
    since=1,
    layers=("Power",),
    notes="Sqrt -> Power(power=0.5): powf, <= 1 ulp of sqrt (-inf gives +inf)",
)
def sqrt(node, ctx):
    """Sqrt -> Power(power=0.5)."""
    node.ignore_attr("consumed_inputs", "legacy in-place hint of opset 1; no effect on values")
    return [power(ctx, node.name, ctx.blob(node.input(0)), ctx.blob(node.output(0)), power=0.5)]


@register(
    "Reciprocal", since=1, layers=("Power",), notes="Reciprocal -> Power(power=-1): powf, <= 1 ulp of 1 / x"
)
def reciprocal(node, ctx):
    """Reciprocal -> Power(power=-1)."""
    node.ignore_attr("consumed_inputs", "legacy in-place hint of opset 1; no effect on values")
    return [power(ctx, node.name, ctx.blob(node.input(0)), ctx.blob(node.output(0)), power=-1.0)]


@register("Neg", since=1, layers=("Power",))
def neg(node, ctx):
    """Neg -> Power(scale=-1) (exact)."""
    node.ignore_attr("consumed_inputs", "legacy in-place hint of opset 1; no effect on values")
    return [power(ctx, node.name, ctx.blob(node.input(0)), ctx.blob(node.output(0)), scale=-1.0)]


@register("Abs", since=1, layers=("AbsVal",))
def abs_(node, ctx):
    """Abs -> AbsVal (exact)."""
    node.ignore_attr("consumed_inputs", "legacy in-place hint of opset 1; no effect on values")
    return [ctx.layer(node.name, "AbsVal", [ctx.blob(node.input(0))], [ctx.blob(node.output(0))])]


@register(
    "Softsign",
    since=1,
    layers=("AbsVal", "Power", "Eltwise"),
    notes="Softsign -> x * Power(|x|, shift=1, power=-1) (3 layers): a reciprocal then a product where "
    "onnxruntime divides, <= 2 ulp (max_rel 7.5e-8 on N(0, 1); OpenCV gives 0 for |x| > 8.5e37, 1 / (1 + |x|) "
    "being subnormal)",
)
def softsign(node, ctx):
    """Softsign = x / (1 + |x|) = x * (1 + |x|)^-1: 1 + |x| rounds as in onnxruntime, then the reciprocal and
    the product round once each where onnxruntime divides once."""
    x, y = ctx.blob(node.input(0)), ctx.blob(node.output(0))
    mag = fresh(ctx, node, "abs")
    inv = fresh(ctx, node, "inv")
    return [
        ctx.layer(mag, "AbsVal", [x], [mag]),
        power(ctx, inv, mag, inv, power=-1.0, shift=1.0),
        eltwise(ctx, node.name, [x, inv], y, ELTWISE_PROD),
    ]


@register(
    "Sign",
    since=9,
    layers=("Power", "Eltwise"),
    notes="Sign -> clamp(x * 2^200, -1, 1) from Power and Eltwise MAX (7 layers): exact for every non-NaN "
    "input (NaN gives 1; OpenCV flushes subnormal inputs to 0, so their sign is 0)",
)
def sign(node, ctx):
    """Sign(x) = clamp(x * 2^200, -1, 1), exactly: x * 2^100 * 2^100 scales by powers of two (exact, or +-inf),
    and any non-zero float32 (>= 2^-149) times 2^200 is >= 1 in magnitude, while 0 stays 0. The clamp bounds
    are +-1 from Power(power=0) (1 for every input, infinities included) and max / -max(-., -1) (exact)."""
    x, y = ctx.blob(node.input(0)), ctx.blob(node.output(0))
    big1, big = fresh(ctx, node, "scaled1"), fresh(ctx, node, "neg_scaled")
    one, minus_one = fresh(ctx, node, "one"), fresh(ctx, node, "minus_one")
    lo, hi = fresh(ctx, node, "neg_max"), fresh(ctx, node, "min1")
    return [
        power(ctx, big1, x, big1, scale=-(2.0**100)),
        power(ctx, big, big1, big, scale=2.0**100),  # -x * 2^200
        power(ctx, one, x, one, power=0.0),
        power(ctx, minus_one, one, minus_one, scale=-1.0),
        eltwise(ctx, lo, [big, minus_one], lo, ELTWISE_MAX),  # max(-t, -1)
        power(ctx, hi, lo, hi, scale=-1.0),  # min(t, 1)
        eltwise(ctx, node.name, [hi, minus_one], y, ELTWISE_MAX),
    ]
