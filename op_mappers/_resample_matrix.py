"""The interpolation matrix of ONNX Resize / Upsample along one axis, and the exact periodic forms of it.

Resize is separable: along each resized axis every output is a fixed weighted sum of inputs, a matrix R
(n_out x n_in) that depends only on the sizes and attributes, never on the data. Two versions are built here,
one row {input index: weight} per output:

- `ort_matrix`: onnxruntime's weights. Its CPU kernel computes the source coordinate in float32 (the ONNX
  formulas, evaluated in the order its code evaluates them), clamps it, and derives the weights in float32;
  this module repeats that arithmetic with numpy float32 scalars, so every weight is the float32 value
  onnxruntime multiplies by (nearest: the same index choice at every tie).
- `exact_matrix`: the ONNX spec's formulas in exact rational arithmetic (scale = the float32 `scales` value
  exactly, or n_out / n_in for `sizes`). It differs from onnxruntime's only by onnxruntime's float32 rounding of
  the coordinate, about n_in * 2^-24 per weight.

A composition is accepted only when its own matrix, built in exact arithmetic, is identical to one of these
(`periodic_plan`), so the mapper never relies on a hand-derived formula.
"""

from __future__ import annotations

import dataclasses
import math
from fractions import Fraction

import numpy as np

F32 = np.float32
_HALF = Fraction(1, 2)

# weight deviation tolerated between the exact spec matrix (which the periodic forms compute) and onnxruntime's
# float32 weights; beyond it the dense form with onnxruntime's own weights is used.
MAX_SPEC_DEVIATION = 2.0**-17

Row = dict  # {input index: Fraction}


def _q(v) -> Fraction:
    """The exact value of a float32 / Fraction / int."""
    return v if isinstance(v, Fraction) else Fraction(float(v))


@dataclasses.dataclass(frozen=True)
class AxisResize:
    """One resized axis. scale: the float32 scale onnxruntime uses; exact_scale: the spec's scale."""

    mode: str  # "nearest" | "linear" | "cubic"
    cmode: str  # coordinate_transformation_mode
    nearest_mode: str  # round_prefer_floor | round_prefer_ceil | floor | ceil | simple (opset < 11)
    n_in: int
    n_out: int
    scale: np.float32
    exact_scale: Fraction
    cubic_a: np.float32 = F32(-0.75)
    exclude_outside: bool = False
    antialias: bool = False


# ------------------------------------------------------------------------------------------ coordinates
def _coord_f32(a: AxisResize, o: int) -> np.float32:
    """onnxruntime's float32 source coordinate of output o (upsamplebase.h's formulas, same operation order)."""
    x, s = F32(o), a.scale
    n_in, n_out = F32(a.n_in), F32(a.n_out)
    c = a.cmode
    if c == "asymmetric":
        return x / s
    if c == "pytorch_half_pixel":
        return (x + F32(0.5)) / s - F32(0.5) if a.n_out > 1 else F32(0)
    if c == "tf_half_pixel_for_nn":
        return (x + F32(0.5)) / s
    if c == "align_corners":
        return F32(0) if a.n_out == 1 else x * (n_in - F32(1)) / (n_out - F32(1))
    if c == "half_pixel_symmetric":
        # float32 for the adjustment, then double (its literal 0.5 is a double) for the sum, cast to float
        adjustment = n_out / (s * n_in)
        offset = (n_in / F32(2)) * (F32(1) - adjustment)
        return F32(float(offset) + (float(x) + 0.5) / float(s) - 0.5)
    if c == "half_pixel":
        return (x + F32(0.5)) / s - F32(0.5)
    raise ValueError(c)


def _coord_exact(a: AxisResize, o: int) -> Fraction:
    """The ONNX spec's source coordinate of output o in exact arithmetic."""
    s, c = a.exact_scale, a.cmode
    if c == "asymmetric":
        return Fraction(o) / s
    if c == "pytorch_half_pixel":
        return (o + _HALF) / s - _HALF if a.n_out > 1 else Fraction(0)
    if c == "tf_half_pixel_for_nn":
        return (o + _HALF) / s
    if c == "align_corners":
        return Fraction(0) if a.n_out == 1 else Fraction(o * (a.n_in - 1), a.n_out - 1)
    if c == "half_pixel_symmetric":
        adjustment = a.n_out / (s * a.n_in)
        return Fraction(a.n_in, 2) * (1 - adjustment) + (o + _HALF) / s - _HALF
    if c == "half_pixel":
        return (o + _HALF) / s - _HALF
    raise ValueError(c)


COORDINATE_MODES = (
    "half_pixel",
    "half_pixel_symmetric",
    "pytorch_half_pixel",
    "align_corners",
    "asymmetric",
    "tf_half_pixel_for_nn",
)


# ------------------------------------------------------------------------------------------ rows
def _nearest_index(a: AxisResize, x: np.float32) -> int:
    m = a.nearest_mode
    if m == "simple":  # Resize-10 / Upsample: ceil when downsampling, truncation otherwise
        i = math.ceil(x) if a.scale < 1 else int(x)
    elif m == "round_prefer_ceil":
        i = int(np.copysign(np.floor(abs(float(x)) + 0.5), float(x)))  # std::round: halves away from zero
    elif m == "floor":
        i = math.floor(x)
    elif m == "ceil":
        i = math.ceil(x)
    else:  # round_prefer_floor
        if x == F32(int(x)) + F32(0.5):
            i = math.floor(x)
        else:
            i = int(np.copysign(np.floor(abs(float(x)) + 0.5), float(x)))
    return min(max(i, 0), a.n_in - 1)


def _linear_row(x, n_in: int, num) -> Row:
    """Two-tap row of a clamped coordinate x (num: F32 for onnxruntime's arithmetic, Fraction for exact)."""
    x = min(max(x, num(0)), num(n_in - 1))
    j1 = min(int(x), n_in - 1)
    j2 = min(j1 + 1, n_in - 1)
    if j1 == j2:
        return {j1: Fraction(1)}  # onnxruntime: 0.5 * v + 0.5 * v, exactly v
    d1, d2 = x - num(j1), num(j2) - x
    return {j1: _q(d2), j2: _q(d1)}


def cubic_coeffs(s, a, num) -> list:
    """Keys' cubic convolution weights of the four taps floor(x)-1 .. floor(x)+2 for the fraction s (upsample.cc's
    expressions, in `num` arithmetic)."""
    one, two = num(1), num(2)
    s1, s2 = s + one, one - s
    s3 = two - s
    return [
        ((a * s1 - num(5) * a) * s1 + num(8) * a) * s1 - num(4) * a,
        ((a + two) * s - (a + num(3))) * s * s + one,
        ((a + two) * s2 - (a + num(3))) * s2 * s2 + one,
        ((a * s3 - num(5) * a) * s3 + num(8) * a) * s3 - num(4) * a,
    ]


def _cubic_row(a: AxisResize, x, num) -> Row:
    xi = math.floor(x)
    s = x - num(xi)
    coeffs = cubic_coeffs(s, num(a.cubic_a) if num is F32 else _q(a.cubic_a), num)
    taps = [xi - 1 + i for i in range(4)]
    if a.exclude_outside:
        coeffs = [c if 0 <= t < a.n_in else num(0) for c, t in zip(coeffs, taps, strict=True)]
        total = num(0)
        for c in coeffs:
            total = total + c
        coeffs = [c / total for c in coeffs]
    row: Row = {}
    for c, t in zip(coeffs, taps, strict=True):
        j = min(max(t, 0), a.n_in - 1)
        row[j] = row.get(j, Fraction(0)) + _q(c)
    return row


def _aa_filter(a: AxisResize, t, num):
    t = abs(t)
    if a.mode == "linear":
        return num(1) - t if t < 1 else num(0)
    ca = num(a.cubic_a) if num is F32 else _q(a.cubic_a)
    if t < 1:
        return ((ca + num(2)) * t - (ca + num(3))) * t * t + num(1)
    if t < 2:
        return (((t - num(5)) * t + num(8)) * t - num(4)) * ca
    return num(0)


def _antialias_row(a: AxisResize, o: int, num) -> Row:
    """onnxruntime's antialiased row: the filter stretched by 1/scale when downsampling, windows
    cut at the edges (exclude_outside) or folded onto the edge pixels, normalised by the window's total weight."""
    exact = num is Fraction
    rscale = a.exact_scale if exact else a.scale
    scale = 1 / rscale if exact else F32(1) / rscale
    support_size = num(2) if a.mode == "linear" else num(4)
    support = support_size * num(0.5) * scale if scale >= 1 else support_size * num(0.5)
    inv_scale = (1 / scale if exact else F32(1) / scale) if scale >= 1 else num(1)
    if scale == 1:
        center = num(0.5) + num(o)
    else:
        center = num(0.5) + (_coord_exact(a, o) if exact else _coord_f32(a, o))
    lo_real = math.floor(center - support + num(0.5))
    hi_real = math.floor(center + support + num(0.5))
    lo_cut, hi_cut = max(lo_real, 0), min(hi_real, a.n_in)
    lo, hi = (lo_cut, hi_cut) if a.exclude_outside else (lo_real, hi_real)
    raw = {}
    total = num(0)
    for j in range(lo, hi):
        w = _aa_filter(a, (num(j) - center + num(0.5)) * inv_scale, num)
        raw[j] = w
        total = total + w
    # fold the weights of outside taps onto the edge pixels (in onnxruntime's order), then normalise
    folded = {j: w for j, w in raw.items() if 0 <= j < a.n_in}
    if lo < 0 and 0 in folded:
        for j in range(lo, 0):
            folded[0] = folded[0] + raw[j]
    if hi > a.n_in and a.n_in - 1 in folded:
        for j in range(a.n_in, hi):
            folded[a.n_in - 1] = folded[a.n_in - 1] + raw[j]
    # onnxruntime multiplies by the float32 reciprocal of the total
    inv = num(1) if total == 0 else (1 / total if exact else F32(1) / total)
    return {j: _q(w * inv) for j, w in folded.items()}


def _identity_axis(a: AxisResize) -> bool:
    """onnxruntime copies an axis whose scale is exactly 1 (no coordinate transform at all), and with antialias
    any axis whose size does not change."""
    return (a.scale == 1 or a.antialias) and a.n_in == a.n_out


def _rows(a: AxisResize, num) -> list[Row]:
    if _identity_axis(a):
        return [{o: Fraction(1)} for o in range(a.n_out)]
    coord = _coord_exact if num is Fraction else _coord_f32
    rows = []
    for o in range(a.n_out):
        if a.antialias:
            row = _antialias_row(a, o, num)
        elif a.mode == "nearest":
            row = {_nearest_index(a, _coord_f32(a, o)): Fraction(1)}
        elif a.mode == "linear":
            row = _linear_row(coord(a, o), a.n_in, num)
        else:
            row = _cubic_row(a, coord(a, o), num)
        rows.append({j: w for j, w in row.items() if w})
    return rows


def ort_matrix(a: AxisResize) -> list[Row]:
    """onnxruntime's rows: the exact values of its float32 weights."""
    return _rows(a, F32)


def exact_matrix(a: AxisResize) -> list[Row]:
    """The spec's rows in exact arithmetic (nearest: onnxruntime's index choice, ties included)."""
    return _rows(a, Fraction if a.mode != "nearest" else F32)


def dense(rows: list[Row], n_in: int) -> np.ndarray:
    """The rows as a float64 matrix (n_out, n_in)."""
    m = np.zeros((len(rows), n_in))
    for o, row in enumerate(rows):
        for j, w in row.items():
            m[o, j] = float(w)
    return m


def max_deviation(r1: list[Row], r2: list[Row]) -> Fraction:
    worst = Fraction(0)
    for a, b in zip(r1, r2, strict=True):
        for j in set(a) | set(b):
            worst = max(worst, abs(a.get(j, Fraction(0)) - b.get(j, Fraction(0))))
    return worst


# ------------------------------------------------------------------------------------------ periodic forms
@dataclasses.dataclass(frozen=True)
class Plan:
    """How one axis is computed. kind:
    identity - nothing to do;
    pick     - out[o] = in[start + stride * o]: a crop and a kernel-1 pooling with that stride (copies);
    deconv   - replicate-pad by `rep`, then a transposed convolution (stride, kernel, symmetric pad);
    conv     - replicate-pad by `rep`, then a convolution (stride, kernel, no pad), first n_out outputs kept;
    gather   - out[o] = in[index[o]] (nearest at other factors): Slice + Concat, copies;
    dense    - the full (n_out, n_in) matrix (`matrix`, float64 of float32 values)."""

    kind: str
    n_in: int
    n_out: int
    stride: int = 1
    start: int = 0
    kernel: tuple[float, ...] = ()
    pad: int = 0
    rep: int = 0
    matrix: np.ndarray | None = None
    index: tuple[int, ...] = ()

    @property
    def macs(self) -> int:
        """Multiply-adds per output element along this axis (0 for copies)."""
        if self.kind in ("identity", "pick", "gather"):
            return 0
        if self.kind == "dense":
            return self.n_in
        if self.kind == "deconv":  # each input feeds len(kernel) outputs: len(kernel) / stride per output
            return -(-len(self.kernel) // self.stride)
        return len(self.kernel)


def _pick(rows: list[Row], n_in: int) -> Plan | None:
    if any(len(r) != 1 or next(iter(r.values())) != 1 for r in rows):
        return None
    idx = [next(iter(r)) for r in rows]
    if idx == list(range(n_in)):
        return Plan("identity", n_in, n_in)
    if len(idx) == 1:
        return Plan("pick", n_in, 1, 1, idx[0])
    step = idx[1] - idx[0]
    if step < 1 or any(b - a != step for a, b in zip(idx, idx[1:], strict=False)):
        return None
    return Plan("pick", n_in, len(idx), step, idx[0])


def _deconv_rows(taps: dict[int, Fraction], rep: int, n_in: int, n_out: int, stride: int) -> list[Row]:
    """Rows of: replicate-pad by rep, transposed convolution (stride, taps {u: w}), outputs 0..n_out-1 where
    output o of input j is o = j * stride + u."""
    rows: list[Row] = [{} for _ in range(n_out)]
    for jp in range(-rep, n_in + rep):
        j = min(max(jp, 0), n_in - 1)
        for u, w in taps.items():
            o = jp * stride + u
            if 0 <= o < n_out:
                rows[o][j] = rows[o].get(j, Fraction(0)) + w
    return [{j: w for j, w in r.items() if w} for r in rows]


def _conv_rows(taps: dict[int, Fraction], n_in: int, n_out: int, stride: int) -> list[Row]:
    """Rows of: out[o] = sum_u w_u * in[clamp(o * stride + u)] (replicate padding as far as needed)."""
    rows = []
    for o in range(n_out):
        r: Row = {}
        for u, w in taps.items():
            j = min(max(o * stride + u, 0), n_in - 1)
            r[j] = r.get(j, Fraction(0)) + w
        rows.append({j: w for j, w in r.items() if w})
    return rows


def _deconv(rows: list[Row], n_in: int, n_out: int) -> Plan | None:
    """A transposed convolution with a fixed kernel (and replicate padding) whose matrix is exactly `rows`."""
    strides = []
    if n_out % n_in == 0 and n_out > n_in:
        strides.append(n_out // n_in)
    if n_in > 1 and n_out > n_in and (n_out - 1) % (n_in - 1) == 0:
        strides.append((n_out - 1) // (n_in - 1))
    for stride in dict.fromkeys(strides):
        j_mid = n_in // 2
        taps = {o - j_mid * stride: r[j_mid] for o, r in enumerate(rows) if j_mid in r}
        if not taps:
            continue
        for rep in (0, 1, 2):
            if _deconv_rows(taps, rep, n_in, n_out, stride) != rows:
                continue
            lo, hi = min(taps), max(taps)
            kernel = [taps.get(u, Fraction(0)) for u in range(lo, hi + 1)]
            # output o is output o + start of the full (pad 0) transposed convolution of the padded input
            start = rep * stride - lo
            end_excess = (n_in + 2 * rep - 1) * stride + len(kernel) - start - n_out
            if start < 0 or end_excess < 0:
                continue
            # Caffe crops symmetrically: zero taps in front raise start, zero taps behind raise the end excess
            if start < end_excess:
                kernel = [Fraction(0)] * (end_excess - start) + kernel
                start = end_excess
            elif end_excess < start:
                kernel = kernel + [Fraction(0)] * (start - end_excess)
            return Plan(
                "deconv", n_in, n_out, stride, kernel=tuple(float(w) for w in kernel), pad=start, rep=rep
            )
    return None


def _conv(rows: list[Row], n_in: int, n_out: int) -> Plan | None:
    """A strided convolution with a fixed kernel (and replicate padding) whose matrix is exactly `rows`."""
    if n_out >= n_in or n_in % n_out:
        return None
    stride = n_in // n_out
    o_mid = n_out // 2
    # taps relative to o * stride; a clamped edge tap would alias, so read the middle row
    taps = {j - o_mid * stride: w for j, w in rows[o_mid].items()}
    if _conv_rows(taps, n_in, n_out, stride) != rows:
        return None
    lo, hi = min(taps), max(taps)
    rep = max(0, -lo, (n_out - 1) * stride + hi - (n_in - 1))
    kernel = [taps.get(u, Fraction(0)) for u in range(lo, hi + 1)]
    # the padded input starts at -rep: output 0 reads padded positions lo + rep .. hi + rep
    kernel = [Fraction(0)] * (lo + rep) + kernel
    return Plan("conv", n_in, n_out, stride, kernel=tuple(float(w) for w in kernel), rep=rep)


def periodic_plan(rows: list[Row], n_in: int, n_out: int) -> Plan | None:
    """The cheapest form whose exact matrix equals `rows`: identity, pick, deconv or conv; None if none does."""
    plan = _pick(rows, n_in)
    if plan is not None:
        return plan
    if n_out > n_in:
        return _deconv(rows, n_in, n_out)
    if n_out < n_in:
        return _conv(rows, n_in, n_out)
    return None


def axis_plan(a: AxisResize) -> tuple[Plan, str]:
    """The plan for one axis and a note on how exact it is."""
    ort_rows = ort_matrix(a)
    if a.mode == "nearest":
        plan = periodic_plan(ort_rows, a.n_in, a.n_out)
        if plan is not None:
            return plan, "copies onnxruntime's index choice"
        return Plan("dense", a.n_in, a.n_out, matrix=dense(ort_rows, a.n_in)), "selection matrix"
    exact_rows = exact_matrix(a)
    plan = periodic_plan(exact_rows, a.n_in, a.n_out)
    if plan is not None:
        dev = max_deviation(exact_rows, ort_rows)
        if dev <= MAX_SPEC_DEVIATION:
            return plan, f"spec weights, {float(dev):.1e} from onnxruntime's"
    return Plan("dense", a.n_in, a.n_out, matrix=dense(ort_rows, a.n_in)), "onnxruntime's float32 weights"
