"""The interpolation matrix of ONNX Resize / Upsample along one axis, and how to compute it in Caffe.

Resize is separable: along each resized axis every output is a fixed weighted sum of inputs, a matrix R
(n_out x n_in) that depends only on the sizes and attributes, never on the data. `ort_matrix` builds onnxruntime's
R: its CPU kernel computes the source coordinate in float32 (the ONNX formulas, evaluated in the order its code
evaluates them), clamps it and derives the weights in float32 (linear: 1 - d and d; cubic: Keys' polynomials,
renormalised with exclude_outside; antialias: the filter stretched by 1/scale, windows folded onto the edge pixels
or cut, normalised); this module repeats that arithmetic with numpy float32 scalars, so every weight is the float32
value onnxruntime multiplies by, and every nearest index is its choice, ties included. Weights are kept as exact
rationals of those float32 values, so "this output copies one input" is an exact test.
"""

from __future__ import annotations

import dataclasses
import math
from fractions import Fraction

import numpy as np

F32 = np.float32
Row = dict  # {input index: Fraction}


def _q(v) -> Fraction:
    """The exact value of a float32 (or int)."""
    return Fraction(float(v))


@dataclasses.dataclass(frozen=True)
class AxisResize:
    """One resized axis; scale is the float32 scale onnxruntime uses (given, or float32(n_out) / float32(n_in))."""

    mode: str  # "nearest" | "linear" | "cubic"
    cmode: str  # coordinate_transformation_mode
    nearest_mode: str  # round_prefer_floor | round_prefer_ceil | floor | ceil | simple (opset < 11)
    n_in: int
    n_out: int
    scale: np.float32
    cubic_a: np.float32 = F32(-0.75)
    exclude_outside: bool = False
    antialias: bool = False


COORDINATE_MODES = (
    "half_pixel",
    "half_pixel_symmetric",
    "pytorch_half_pixel",
    "align_corners",
    "asymmetric",
    "tf_half_pixel_for_nn",
)


def _coord(a: AxisResize, o: int) -> np.float32:
    """onnxruntime's float32 source coordinate of output o (its formulas, same operation order)."""
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


def _linear_row(x: np.float32, n_in: int) -> Row:
    """Two-tap row of the clamped coordinate x."""
    x = min(max(x, F32(0)), F32(n_in - 1))
    j1 = min(int(x), n_in - 1)
    j2 = min(j1 + 1, n_in - 1)
    if j1 == j2:
        return {j1: Fraction(1)}  # onnxruntime: 0.5 * v + 0.5 * v, exactly v
    return {j1: _q(F32(j2) - x), j2: _q(x - F32(j1))}


def cubic_coeffs(s: np.float32, a: np.float32) -> list[np.float32]:
    """Keys' cubic convolution weights of the taps floor(x)-1 .. floor(x)+2 for the fraction s."""
    one, two = F32(1), F32(2)
    s1, s2, s3 = s + one, one - s, two - s
    return [
        ((a * s1 - F32(5) * a) * s1 + F32(8) * a) * s1 - F32(4) * a,
        ((a + two) * s - (a + F32(3))) * s * s + one,
        ((a + two) * s2 - (a + F32(3))) * s2 * s2 + one,
        ((a * s3 - F32(5) * a) * s3 + F32(8) * a) * s3 - F32(4) * a,
    ]


def _cubic_row(a: AxisResize, x: np.float32) -> Row:
    xi = math.floor(x)
    coeffs = cubic_coeffs(x - F32(xi), a.cubic_a)
    taps = [xi - 1 + i for i in range(4)]
    if a.exclude_outside:
        coeffs = [c if 0 <= t < a.n_in else F32(0) for c, t in zip(coeffs, taps, strict=True)]
        total = F32(0)
        for c in coeffs:
            total = total + c
        coeffs = [c / total for c in coeffs]
    row: Row = {}
    for c, t in zip(coeffs, taps, strict=True):
        j = min(max(t, 0), a.n_in - 1)  # clamped taps: replicate padding
        row[j] = row.get(j, Fraction(0)) + _q(c)
    return row


def _aa_filter(a: AxisResize, t: np.float32) -> np.float32:
    t = abs(t)
    if a.mode == "linear":
        return F32(1) - t if t < 1 else F32(0)
    ca = a.cubic_a
    if t < 1:
        return ((ca + F32(2)) * t - (ca + F32(3))) * t * t + F32(1)
    if t < 2:
        return (((t - F32(5)) * t + F32(8)) * t - F32(4)) * ca
    return F32(0)


def _antialias_row(a: AxisResize, o: int) -> Row:
    """onnxruntime's antialiased row: the filter stretched by 1/scale when downsampling, windows cut at the edges
    (exclude_outside) or folded onto the edge pixels, normalised by the window's total weight."""
    scale = F32(1) / a.scale
    support_size = F32(2) if a.mode == "linear" else F32(4)
    support = support_size * F32(0.5) * scale if scale >= 1 else support_size * F32(0.5)
    inv_scale = F32(1) / scale if scale >= 1 else F32(1)
    center = F32(0.5) + (F32(o) if scale == 1 else _coord(a, o))
    lo_real = math.floor(center - support + F32(0.5))
    hi_real = math.floor(center + support + F32(0.5))
    lo, hi = (max(lo_real, 0), min(hi_real, a.n_in)) if a.exclude_outside else (lo_real, hi_real)
    raw = {}
    total = F32(0)
    for j in range(lo, hi):
        w = _aa_filter(a, (F32(j) - center + F32(0.5)) * inv_scale)
        raw[j] = w
        total = total + w
    # fold the weights of outside taps onto the edge pixels (in onnxruntime's order), then normalise by
    # multiplying with the float32 reciprocal of the total, as onnxruntime does
    folded = {j: w for j, w in raw.items() if 0 <= j < a.n_in}
    if lo < 0 and 0 in folded:
        for j in range(lo, 0):
            folded[0] = folded[0] + raw[j]
    if hi > a.n_in and a.n_in - 1 in folded:
        for j in range(a.n_in, hi):
            folded[a.n_in - 1] = folded[a.n_in - 1] + raw[j]
    inv = F32(1) if total == 0 else F32(1) / total
    return {j: _q(w * inv) for j, w in folded.items()}


def _identity_axis(a: AxisResize) -> bool:
    """onnxruntime copies an axis whose scale is exactly 1 (no coordinate transform at all), and with antialias
    any axis whose size does not change."""
    return (a.scale == 1 or a.antialias) and a.n_in == a.n_out


def ort_matrix(a: AxisResize) -> list[Row]:
    """onnxruntime's rows: {input index: the exact value of its float32 weight} per output."""
    if _identity_axis(a):
        return [{o: Fraction(1)} for o in range(a.n_out)]
    rows = []
    for o in range(a.n_out):
        if a.antialias:
            row = _antialias_row(a, o)
        elif a.mode == "nearest":
            row = {_nearest_index(a, _coord(a, o)): Fraction(1)}
        elif a.mode == "linear":
            row = _linear_row(_coord(a, o), a.n_in)
        else:
            row = _cubic_row(a, _coord(a, o))
        rows.append({j: w for j, w in row.items() if w})
    return rows


def dense(rows: list[Row], n_in: int) -> np.ndarray:
    """The rows as a float64 matrix (n_out, n_in)."""
    m = np.zeros((len(rows), n_in))
    for o, row in enumerate(rows):
        for j, w in row.items():
            m[o, j] = float(w)
    return m


# ------------------------------------------------------------------------------------------ plans
@dataclasses.dataclass(frozen=True)
class Plan:
    """How one axis is computed. kind:
    identity - nothing to do;
    pick     - out[o] = in[start + stride * o]: a crop and a kernel-1 pooling with that stride (copies);
    repeat   - out[o] = in[o // stride] (nearest upsampling by an integer factor): Concat of `stride` references
               on a (P, n, 1, R) view, a copy of each row (axes before the last one);
    gather   - out[o] = in[index[o]] (other copy patterns): Slice into runs + Concat in output order (copies);
    dense    - the full (n_out, n_in) matrix (`matrix`, float64 holding onnxruntime's float32 weights)."""

    kind: str
    n_in: int
    n_out: int
    stride: int = 1
    start: int = 0
    matrix: np.ndarray | None = None
    index: tuple[int, ...] = ()

    @property
    def macs(self) -> int:
        """Multiply-adds per output element along this axis (copies count 1, nothing 0)."""
        return {"identity": 0, "dense": self.n_in}.get(self.kind, 1)


def copy_plan(index: list[int], n_in: int, last_axis: bool) -> Plan | None:
    """The copy plan for out[o] = in[index[o]], or None where a copy is slow (along the last axis OpenCV
    concatenates one element at a time: the selection matrix is faster there)."""
    n_out = len(index)
    if index == list(range(n_in)):
        return Plan("identity", n_in, n_in)
    step = index[1] - index[0] if n_out > 1 else 1
    if step >= 1 and all(b - a == step for a, b in zip(index, index[1:], strict=False)):
        return Plan("pick", n_in, n_out, step, index[0])
    if last_axis:
        return None
    if n_out % n_in == 0 and index == [o // (n_out // n_in) for o in range(n_out)]:
        return Plan("repeat", n_in, n_out, n_out // n_in)
    return Plan("gather", n_in, n_out, index=tuple(index))


def axis_plan(a: AxisResize, last_axis: bool = False) -> Plan:
    """The plan for one axis: copies where every row of onnxruntime's matrix copies one input (weight exactly 1),
    else the matrix with onnxruntime's float32 weights."""
    rows = ort_matrix(a)
    if all(len(r) == 1 and next(iter(r.values())) == 1 for r in rows):
        plan = copy_plan([next(iter(r)) for r in rows], a.n_in, last_axis)
        if plan is not None:
            return plan
    return Plan("dense", a.n_in, a.n_out, matrix=dense(rows, a.n_in))
