"""erf and GELU(x) = x * Phi(x) from standard layers (AbsVal, Power, Exp, Sigmoid, Eltwise), to float32 noise
(no mapper is registered here: gelu.py and erf.py use these).

No BVLC layer computes erf, but the normal tail has a form that a rational function approximates uniformly
in RELATIVE error, with positive coefficients (so every sum below adds positive terms and rounds like one):

    Q(a) = 0.5 * erfc(a / sqrt(2)) = exp(-a^2 / 2) * F(a),   F(a) = 0.5 * erfcx(a / sqrt(2))   (a >= 0)
    F(a) ~ N(v) / D(v),   v = 1 / (1 + a),   N(v) = sum_{k=1..5} p_k v^k,   D(v) = 1 + sum_{k=1..5} q_k v^k

F falls smoothly from 0.5 to ~1 / (a sqrt(2 pi)); in v (which maps [0, inf] onto (0, 1]) it is a (5, 5)
rational to 5.7e-9 relative over a <= 14.2 and keeps the right limit beyond (where exp(-a^2 / 2) underflows
anyway). The coefficients below come from a Lawson (iteratively reweighted) minimax fit of the relative error
(benchmarks/gelu_bound.py --fit reproduces them); rounded to float32 they are within 3e-8 of F.

GELU without cancellation: with a = |x| and T = a * Q(a) = a * F(a) * exp(-x^2 / 2),

    GELU(x) = relu(x) - T = 0.5 * x + 0.5 * a - T

(x >= 0: x - x Q(x) = x Phi(x); x < 0: -|x| Q(|x|) = x Phi(x)). T >= 0 is computed to a few ulp RELATIVE, and
it is at most half of relu(x) - T for x > 0, so GELU keeps that relative accuracy for every x: also deep in the
negative tail, where onnxruntime's 0.5 x (1 + erf(x / sqrt(2))) loses every digit to 1 + erf cancelling (it is
0 below x = -5.9, where GELU is still -1e-8). 13 layers:

    a = AbsVal(x);  v = Power(a, shift 1, power -1);  v2 = v v;  v3 = v2 v;  v4 = v2 v2;  v5 = v4 v
    n = Eltwise SUM(v..v5; coeff p);  d = Eltwise SUM(v..v5; coeff q);  r = Power(d, shift 1, power -1)
    s = x x;  g = Exp(s; scale -0.5);  t = Eltwise PROD(n, r, a, g);  y = Eltwise SUM(x, a, t; 0.5, 0.5, -1)

(t's factors in that order: n r a stays a normal number, the last product with g rounds once into the
subnormals; 0.5 x + 0.5 a is exactly x or 0.) Error, measured over EVERY float32 with |x| <= 10 on pycaffe and
OpenCV (benchmarks/gelu_bound.py): see GELU_BOUND. Beyond, T underflows (|x| > 13.2: exactly x Phi(x) rounded
for x > 0, |error| < 1.2e-38 for x < 0; OpenCV flushes subnormals to 0). The exp(-x^2 / 2) step carries the
rounding of x^2 (x^2 / 2 * 2^-24 of the result's relative error): it is what grows in the far negative tail.
x = +-inf gives NaN (inf * 0 in t; onnxruntime: +inf and NaN).

erf alone: two branches joined by exact 0 / 1 selectors (ERF_LAYERS, ~32 layers):
- |x| >= c (c = 0.75): erf(x) = sign(x) (1 - erfc(|x|)) with erfc(a) = exp(-x^2) * 2 F(sqrt(2) a), the same
  rational in v = 1 / (1 + sqrt(2) a); 1 - erfc cancels at most erfc(c) / erf(c) = 0.41 of a digit;
- |x| < c: erf(x) = x S(x^2), S a degree-5 minimax polynomial of erf(x) / x on [0, c^2] (1.4e-9), evaluated on
  min(x^2, c^2) so that it stays finite for every x;
- the selectors are Sigmoid(2^100 (x - c)), Sigmoid(2^100 (-x - c)) and Sigmoid(2^100 (c - |x|)): 2^100 scales
  exactly, so the Sigmoid's input is 0 only at |x| = c (both branches then count half) and otherwise beyond
  +-2^100 * 2^-24: exactly 0 or 1 on both runtimes (Caffe's and OpenCV's sigmoids saturate to 0 and 1).
See ERF_BOUND. x = +-inf gives NaN (onnxruntime: +-1).
"""

from __future__ import annotations

from ._compose import ELTWISE_MAX, ELTWISE_PROD, ELTWISE_SUM, constant_like, eltwise_nd, fresh, power

# F(a) = 0.5 erfcx(a / sqrt(2)) ~ N(v) / D(v), v = 1 / (1 + a): coefficients of v^1 .. v^5 (D has a constant 1)
GELU_P = (0.39894714190031005, 2.3493684879831513, 8.37216325669023, 17.269074160218903, 20.342118857849588)
GELU_Q = (4.889691402308785, 16.079248078019738, 29.438204406042075, 31.406207051394247, 14.649992318458118)
# erf(x) / x ~ S(x^2) on |x| < ERF_SPLIT: coefficients of s^0 .. s^5
ERF_SMALL = (
    1.128379165496466,
    -0.37612618756807414,
    0.11283376575288694,
    -0.026834624611703193,
    0.005114345632346787,
    -0.0006749513788528403,
)
ERF_SPLIT = 0.75
STEP = 2.0**100  # Sigmoid(STEP * z) is exactly 0 or 1 unless z == 0 (STEP * z is exact: a power of two)

# Measured (benchmarks/gelu_bound.py: every float32 with |x| <= 10 and a sweep of the tails, on pycaffe and
# OpenCV, against float64 erfc): worst relative error, and worst |error| / |x| (GELU) over all |x|.
GELU_BOUND = (
    "<= 6.5e-7 relative (|x| <= 3), <= 2.5e-6 relative (|x| <= 10), |error| <= 2.2e-7 |x| for every x"
)
ERF_BOUND = "<= 2.5e-7 relative (<= 3 ulp) for every x"
GELU_LAYERS = 13


def _powers(ctx, node, v: str, shape, tag: str) -> tuple[list, list[str]]:
    """(layers, [v, v^2, v^3, v^4, v^5]): 4 Eltwise PROD (v^2 v, v^2 v^2, v^4 v): at most 3 roundings each."""
    names = [fresh(ctx, node, f"{tag}{k}") for k in range(2, 6)]
    v2, v3, v4, v5 = names
    layers = []
    for top, bottoms in ((v2, [v, v]), (v3, [v2, v]), (v4, [v2, v2]), (v5, [v4, v])):
        layers += eltwise_nd(ctx, node, bottoms, top, shape, ELTWISE_PROD, name=top)
    return layers, [v, v2, v3, v4, v5]


def _tail_ratio(ctx, node, a: str, shape, v_scale: float, n_scale: float, tag: str) -> tuple[list, list[str]]:
    """(layers, [n, r]): n = n_scale * N(v) and r = 1 / D(v), v = 1 / (1 + v_scale * a) (so n * r = n_scale * F)."""
    v = fresh(ctx, node, f"{tag}_v")
    layers = [power(ctx, v, a, v, power=-1.0, scale=v_scale, shift=1.0)]
    more, vs = _powers(ctx, node, v, shape, f"{tag}_v")
    layers += more
    n, d, r = (fresh(ctx, node, f"{tag}_{s}") for s in ("num", "den", "rden"))
    layers += eltwise_nd(ctx, node, vs, n, shape, ELTWISE_SUM, [n_scale * p for p in GELU_P], name=n)
    layers += eltwise_nd(ctx, node, vs, d, shape, ELTWISE_SUM, list(GELU_Q), name=d)
    layers.append(power(ctx, r, d, r, power=-1.0, shift=1.0))
    return layers, [n, r]


def gelu_layers(ctx, node, x: str, top: str, shape, scale: float = 1.0) -> list:
    """Layers writing top = scale * GELU(x) (erf form) for a blob x of `shape`; see the module docstring."""
    a = fresh(ctx, node, "abs")
    layers = [ctx.layer(a, "AbsVal", [x], [a])]
    more, (n, r) = _tail_ratio(ctx, node, a, shape, 1.0, 1.0, "tail")
    layers += more
    s, g, t = (fresh(ctx, node, k) for k in ("square", "gauss", "tail"))
    layers += eltwise_nd(ctx, node, [x, x], s, shape, ELTWISE_PROD, name=s)
    layers.append(ctx.layer(g, "Exp", [s], [g], exp_param={"scale": -0.5}))
    layers += eltwise_nd(ctx, node, [n, r, a, g], t, shape, ELTWISE_PROD, name=t)
    coeff = [0.5 * scale, 0.5 * scale, -scale]
    layers += eltwise_nd(ctx, node, [x, a, t], top, shape, ELTWISE_SUM, coeff, name=node.name)
    return layers


def _step(ctx, node, bottom: str, scale: float, shift: float, tag: str) -> tuple[list, str]:
    """(layers, blob): Sigmoid(STEP * (scale * bottom + shift)): exactly 1 where scale * bottom + shift > 0, 0
    where < 0 (scale = +-1: exact), 0.5 where it is 0."""
    z, out = fresh(ctx, node, f"{tag}_arg"), fresh(ctx, node, tag)
    return [
        power(ctx, z, bottom, z, scale=STEP * scale, shift=STEP * shift),
        ctx.layer(out, "Sigmoid", [z], [out]),
    ], out


def erf_layers(ctx, node, x: str, top: str, shape) -> list:
    """Layers writing top = erf(x) for a blob x of `shape`; see the module docstring."""
    c = ERF_SPLIT
    a = fresh(ctx, node, "abs")
    layers = [ctx.layer(a, "AbsVal", [x], [a])]
    # large branch: sign(x) (1 - erfc(|x|)), erfc(a) = 2 F(sqrt(2) a) exp(-x^2)
    more, (n, r) = _tail_ratio(ctx, node, a, shape, 2.0**0.5, 2.0, "tail")
    layers += more
    s, g, e, one_minus = (fresh(ctx, node, k) for k in ("square", "gauss", "erfc", "one_minus_erfc"))
    layers += eltwise_nd(ctx, node, [x, x], s, shape, ELTWISE_PROD, name=s)
    layers.append(ctx.layer(g, "Exp", [s], [g], exp_param={"scale": -1.0}))
    layers += eltwise_nd(ctx, node, [n, r, g], e, shape, ELTWISE_PROD, name=e)
    layers.append(power(ctx, one_minus, e, one_minus, scale=-1.0, shift=1.0))
    more, pos = _step(ctx, node, x, 1.0, -c, "is_pos")
    layers += more
    more, neg = _step(ctx, node, x, -1.0, -c, "is_neg")
    layers += more
    sign, large = fresh(ctx, node, "sign_large"), fresh(ctx, node, "large")
    layers += eltwise_nd(ctx, node, [pos, neg], sign, shape, ELTWISE_SUM, [1.0, -1.0], name=sign)
    layers += eltwise_nd(ctx, node, [sign, one_minus], large, shape, ELTWISE_PROD, name=large)
    # small branch: x S(min(x^2, c^2)) where |x| < c; with m = -min(x^2, c^2) = max(-x^2, -c^2), S(-m) has the
    # coefficients of m^k times (-1)^k (exact)
    neg_s, m = fresh(ctx, node, "neg_square"), fresh(ctx, node, "clamped")
    layers.append(power(ctx, neg_s, s, neg_s, scale=-1.0))
    more, floor = constant_like(ctx, node, a, -c * c, "clamp_const")  # from a: finite for finite x
    layers += more
    layers += eltwise_nd(ctx, node, [neg_s, floor], m, shape, ELTWISE_MAX, name=m)
    more, ms = _powers(ctx, node, m, shape, "clamped")
    layers += more
    poly, poly1 = fresh(ctx, node, "poly"), fresh(ctx, node, "poly_c0")
    coeff = [ck * (-1.0) ** k for k, ck in enumerate(ERF_SMALL)][1:]
    layers += eltwise_nd(ctx, node, ms, poly, shape, ELTWISE_SUM, coeff, name=poly)
    layers.append(power(ctx, poly1, poly, poly1, shift=ERF_SMALL[0]))
    more, inside = _step(ctx, node, a, -1.0, c, "is_small")
    layers += more
    small = fresh(ctx, node, "small")
    layers += eltwise_nd(ctx, node, [x, poly1, inside], small, shape, ELTWISE_PROD, name=small)
    layers += eltwise_nd(ctx, node, [large, small], top, shape, ELTWISE_SUM, name=node.name)
    return layers
