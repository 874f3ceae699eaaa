"""Activation thresholds: the histogram and the threshold methods, ported from the published tools.

* ``kl``        ncnn's tools/quantize/ncnn2table.cpp, ``method=kl``.
* ``kl-legacy`` the Caffe-era caffe-int8-convert-tool-dev-weight.py (``threshold_distribution``).
* ``aciq``      ncnn2table's ``method=aciq`` (``compute_aciq_gaussian_clip``).
* ``minmax``    threshold = absmax.
* ``percentile`` threshold = the upper edge of the histogram bin holding the given percentile of |x|.

Every method returns a :class:`Threshold`; the activation scale is ``127 / threshold``.

ncnn's KL search, reproduced choice for choice. The 2048-bin histogram counts every non-zero |x| at
``min(int(|x| / absmax * 2048), 2047)`` (float32 arithmetic), is normalised to sum 1 (``float(count /
(double)sum)``), and for each candidate T in 128..2047: P = the first T bins + 1e-4, with the mass of
bins T..2047 added to bin T-1; Q = the first T normalised bins merged into 128 bins with fractional edges
(T/128 source bins each), each merged value spread evenly back over its source bins (fractional edge bins
get their share) + 1e-4; no masking, no renormalising; KL = sum P ln(P/Q) accumulated in float32; the
first minimum wins; threshold = (T + 0.5) * absmax / 2048, all in float32.

Fast and exact: all 1920 candidates are first scored in float64 in closed form (prefix sums over the
histogram; arrays of 1920 x 128, no 2048 x 2048 work), then every candidate whose float64 score is
within a rigorous bound of ncnn's float32 rounding error of the best is re-scored by an exact float32
emulation of ncnn's loops (same operation order, sequential float32 sums, vectorised over candidates), and
the first minimum of those float32 values is taken. The only operation that is not bit-identical is
``logf``: we use the correctly rounded float32 logarithm (glibc's logf is within 0.82 ulp of it), so a
choice can differ only where two candidates tie to the last float32 bit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

NUM_BINS = 2048
TARGET_BINS = 128
KL_EPS = 1e-4
DEFAULT_PERCENTILE = 99.99
# Activation scale written for a blob that is zero on every calibration image (any scale represents
# zero exactly; 1.0 keeps the table finite and is ncnn's own fallback for all-zero weights).
ZERO_BLOB_SCALE = 1.0

_F32 = np.float32
_U32 = 2.0**-24  # unit roundoff of float32


@dataclass
class Threshold:
    """A method's result for one blob: threshold (in activation units), scale = 127 / threshold,
    the chosen bin (KL methods), the KL value of the choice (KL methods) or None."""

    threshold: float
    scale: float
    bin: int | None = None
    kl: float | None = None


# --------------------------------------------------------------------------------------------- histogram


def ncnn_bin_indices(values: np.ndarray, absmax: float) -> np.ndarray:
    """ncnn2table's bin of every non-zero value: min(int(|x| / absmax * 2048), 2047) in float32."""
    a = np.abs(np.asarray(values, dtype=np.float32).ravel())
    a = a[a != 0]
    idx = (a / _F32(absmax) * _F32(NUM_BINS)).astype(np.int64)
    np.minimum(idx, NUM_BINS - 1, out=idx)
    return idx


def ncnn_histogram(values: np.ndarray, absmax: float) -> np.ndarray:
    """2048-bin int64 histogram of the non-zero |values| (ncnn2table's binning)."""
    return np.bincount(ncnn_bin_indices(values, absmax), minlength=NUM_BINS).astype(np.int64)


def legacy_histogram(values: np.ndarray, absmax: float) -> np.ndarray:
    """The Caffe-era tool's histogram: np.histogram of the signed blob over [0, absmax], 2048 bins
    (negative values dropped, zeros in bin 0), as int64 counts."""
    hist, _ = np.histogram(np.asarray(values, dtype=np.float32).ravel(), bins=NUM_BINS, range=(0, absmax))
    return hist.astype(np.int64)


# --------------------------------------------------------------------------------------------- ncnn KL


def normalize_ncnn(hist: np.ndarray) -> np.ndarray:
    """ncnn's histogram_normed: float32(count / (double)sum)."""
    hist = np.asarray(hist, dtype=np.float64)
    return (hist / hist.sum()).astype(np.float32)


def _kl64_all(h: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """float64 KL of every candidate T = 128..2047 (closed form) and a bound on how far ncnn's float32
    value can be from it. h: the normalised histogram (float32 values, as float64)."""
    eps = float(_F32(KL_EPS))
    n_bins = h.size
    ts = np.arange(TARGET_BINS, n_bins)  # candidates
    S = np.concatenate(([0.0], np.cumsum(h)))  # S[k] = sum h[:k]
    hpad = np.concatenate((h, [0.0]))
    Pbase = h + eps
    lnPbase = np.log(Pbase)
    f = Pbase * lnPbase
    F = np.concatenate(([0.0], np.cumsum(f)))
    Fabs = np.concatenate(([0.0], np.cumsum(np.abs(f))))
    total = S[-1]

    n = ts / TARGET_BINS  # block width, exact dyadic
    j = np.arange(TARGET_BINS + 1)
    x = j[None, :] * n[:, None]  # block edges, (nT, 129), exact
    fl = np.floor(x).astype(np.int64)
    fr = x - fl
    # C(x) = integral of the piecewise-constant histogram over [0, x)
    C = S[fl] + fr * hpad[fl]  # fr == 0 where fl == T (the last edge)
    mass = np.diff(C, axis=1)  # (nT, 128)
    Q = mass / n[:, None]
    lnE = np.log(eps + Q)

    lu = np.ceil(x[:, :-1]).astype(np.int64)  # first full bin of each block
    rl = fl[:, 1:]  # one past its last full bin
    full = rl - lu
    interior_P = S[rl] - S[lu] + eps * full
    interior_PlnP = F[rl] - F[lu]
    interior_W = Fabs[rl] - Fabs[lu]
    # bin T-1 (the last full bin of block 127) holds the clipped tail: P[T-1] = eps + sum h[T-1:]
    plast = eps + (total - S[ts - 1])
    lnE_last = lnE[:, -1]
    interior_P[:, -1] += plast - Pbase[ts - 1]
    interior_PlnP[:, -1] += plast * np.log(plast) - f[ts - 1]
    interior_W[:, -1] += plast * abs(np.log(plast)) - np.abs(f[ts - 1])
    contrib = interior_PlnP - interior_P * lnE
    W = interior_W + interior_P * np.abs(lnE)
    # a bin split between block j and block j+1 (edge j+1 fractional) closes block j
    frj = fr[:, 1:-1]
    split = (frj > 0).astype(np.float64)
    b = fl[:, 1:-1]
    lnEb = np.log(eps + frj * Q[:, :-1] + (1.0 - frj) * Q[:, 1:])  # split bins' E (harmless elsewhere)
    Pb = Pbase[b] * split
    lnPb = lnPbase[b]
    contrib[:, :-1] += Pb * (lnPb - lnEb)
    W[:, :-1] += Pb * (np.abs(lnPb) + np.abs(lnEb))
    nbins = full.astype(np.float64)
    nbins[:, :-1] += split
    partial = np.cumsum(contrib, axis=1)
    kl = partial[:, -1]
    # ncnn's float32 rounding, bounded: the sequential sum adds <= u * |partial sum| per term, and a
    # partial sum inside block j is within W_j (its sum of |terms|) of the block's end values; each
    # term's P/E carries <= (n + 8) u relative error (Q sums <= n + 2 values), the product and the
    # log 2 u more; P[T-1] is a float32 sum with one rounding per non-zero tail bin.
    prev = np.concatenate((np.zeros((kl.size, 1)), partial[:, :-1]), axis=1)
    acc_err = np.sum(nbins * (np.maximum(np.abs(prev), np.abs(partial)) + W), axis=1)
    sumP = 1.0 + eps * ts
    term_err = (n + 8) * sumP + 2 * np.sum(W, axis=1)
    tail_adds = np.concatenate((np.cumsum((h != 0)[::-1])[::-1], [0]))[ts] + 1  # adding 0.0 is exact
    tail_err = tail_adds * plast * (np.abs(np.log(plast) - lnE_last) + 1.0)
    err = 1.5 * _U32 * (acc_err + term_err + tail_err) + 1e-12
    return kl, err


def _kl32_exact(h32: np.ndarray, ts: np.ndarray) -> np.ndarray:
    """ncnn2table's float32 KL for the candidates ts, emulating its loops operation by operation
    (vectorised over candidates; additions of +0.0 stand in for loop iterations that do not exist)."""
    eps = _F32(KL_EPS)
    n_bins = h32.size
    nc = ts.size
    hpad = np.concatenate((h32, np.zeros(1, np.float32)))
    k = np.arange(n_bins)
    T = ts[:, None]

    # P: clip_distribution
    P = np.where(k[None, :] < T, eps + h32[None, :], _F32(0))
    tail = np.zeros((nc, n_bins + 1), np.float32)
    tail[:, 0] = eps + h32[ts - 1]
    tail[:, 1:] = np.where(k[None, :] >= T, h32[None, :], _F32(0))
    P[np.arange(nc), ts - 1] = np.add.accumulate(tail, axis=1)[:, -1]

    # Q: quantize_distribution (float32 edges are exact: j * T / 128 has at most 18 significant bits)
    npb = ts.astype(np.float32) / _F32(TARGET_BINS)
    j = np.arange(TARGET_BINS, dtype=np.float32)
    start = j[None, :] * npb[:, None]
    end = (j[None, :] + _F32(1)) * npb[:, None]
    lu = np.ceil(start).astype(np.int64)
    ls = lu.astype(np.float32) - start
    rl = np.floor(end).astype(np.int64)
    rs = end - rl.astype(np.float32)
    acc = np.where(ls > 0, ls * hpad[np.maximum(lu - 1, 0)], _F32(0))
    acc = acc + np.where(rs > 0, rs * hpad[np.minimum(rl, n_bins)], _F32(0))
    width_max = int(np.max(rl - lu)) if nc else 0
    for t in range(width_max):
        kk = lu + t
        acc = acc + np.where(kk < rl, hpad[np.minimum(kk, n_bins)], _F32(0))
    width = ((rl - lu).astype(np.float32) + ls) + rs
    Q = acc / width

    # E: expand_distribution. Bin k lies in block jl = floor(k / n) and ends in block jh = ceil((k+1)/n)-1.
    jl = (k[None, :] * TARGET_BINS) // T
    jh = -((-(k[None, :] + 1) * TARGET_BINS) // T) - 1
    valid = k[None, :] < T
    jl = np.where(valid, jl, 0)
    jh = np.where(valid, np.minimum(jh, TARGET_BINS - 1), 0)
    rows = np.arange(nc)[:, None]
    Ql = Q[rows, jl]
    Qh = Q[rows, jh]
    kf = k.astype(np.float32)[None, :]
    rs_l = (jh.astype(np.float32) * npb[:, None]) - kf  # right part of block jl in bin k
    ls_h = (kf + _F32(1)) - jh.astype(np.float32) * npb[:, None]  # left part of block jh in bin k
    E_split = (eps + rs_l * Ql) + ls_h * Qh
    E = np.where(jl == jh, eps + Ql, E_split)

    # KL: result += P * logf(P / E), sequential float32
    Es = np.where(valid, E, _F32(1))
    Ps = np.where(valid, P, _F32(1))
    ratio = Ps / Es
    lg = np.log(ratio.astype(np.float64)).astype(np.float32)  # correctly rounded logf
    terms = np.where(valid, Ps * lg, _F32(0))
    return np.add.accumulate(terms, axis=1)[:, -1]


def kl_ncnn_bin(hist: np.ndarray, *, exact: bool = True, chunk: int = 24) -> tuple[int, float]:
    """ncnn2table's KL choice on a count histogram (2048 bins in ncnn; any size > 128 works, with
    candidates 128 .. size-1): (T, its float32 KL value).
    exact=False returns the float64 closed-form argmin (no float32 rescoring)."""
    hist = np.asarray(hist)
    if hist.size <= TARGET_BINS:
        raise ValueError(f"expected a histogram of more than {TARGET_BINS} bins, got {hist.size}")
    if hist.sum() <= 0:
        raise ValueError("empty histogram")
    h32 = normalize_ncnn(hist)
    kl64, err = _kl64_all(h32.astype(np.float64))
    if not exact:
        i = int(np.argmin(kl64))
        return i + TARGET_BINS, float(kl64[i])
    lower = kl64 - err  # ncnn's float32 value of candidate T is at least this
    cand = np.nonzero(lower <= np.min(kl64 + err))[0]
    cand = cand[np.argsort(lower[cand], kind="stable")]
    best_t, best_v = -1, math.inf
    for s in range(0, cand.size, chunk):
        if lower[cand[s]] > best_v:  # no remaining candidate can reach the best float32 value
            break
        ts = np.sort(cand[s : s + chunk]) + TARGET_BINS
        vals = _kl32_exact(h32, ts)
        for t, v in zip(ts.tolist(), vals.tolist(), strict=True):
            if v < best_v or (v == best_v and t < best_t):  # ncnn: first minimum in T order
                best_t, best_v = t, v
    return best_t, best_v


def kl_ncnn(hist: np.ndarray, absmax: float) -> Threshold:
    """ncnn2table method=kl: threshold = (T + 0.5) * absmax / 2048, scale = 127 / threshold (float32)."""
    t, v = kl_ncnn_bin(hist)
    thr = (_F32(t + 0.5) * _F32(absmax)) / _F32(NUM_BINS)
    return Threshold(float(thr), float(_F32(127) / thr), t, v)


# --------------------------------------------------------------------------------------------- legacy KL


def _entropy(p: np.ndarray, q: np.ndarray) -> float:
    """scipy.stats.entropy(p, q) for strictly positive p and q, with numpy."""
    p = p / np.sum(p)
    q = q / np.sum(q)
    return float(np.sum(p * np.log(p / q)))


def kl_legacy_value(dist: np.ndarray, t: int) -> float:
    """The Caffe-era tool's KL for one candidate t of the shifted histogram dist (bin 0 dropped):
    a direct transcription, used to re-score near-ties."""
    p = dist[:t].astype(np.float64).copy()
    p[t - 1] += dist[t:].sum()
    is_nonzero = p != 0
    nmb = t // TARGET_BINS
    quant = np.array([dist[j * nmb : (j + 1) * nmb].sum() for j in range(TARGET_BINS)], dtype=np.float64)
    quant[-1] += dist[TARGET_BINS * nmb : t].sum()
    q = np.zeros(t)
    for j in range(TARGET_BINS):
        start = j * nmb
        stop = t - 1 if j == TARGET_BINS - 1 else start + nmb  # the tool's stop = -1
        norm = is_nonzero[start:stop].sum()
        if norm:
            q[start:stop] = quant[j] / norm
    q[~is_nonzero] = 0
    p[p == 0] = KL_EPS
    q[q == 0] = KL_EPS
    return _entropy(p, q)


def kl_legacy_bin(hist: np.ndarray) -> tuple[int, float]:
    """The Caffe-era tool's threshold_distribution on its 2048-bin histogram: (T, KL).
    Bin 0 is dropped; T runs over 128..2046 of the shifted histogram; integer merging (T // 128 bins per
    target bin, the remainder into the last), the merged count averaged over the non-zero source bins
    (the last target bin stops one short: its last source bin keeps 1e-4), zeros -> 1e-4 in count
    units, scipy's normalised KL, first minimum. Closed form in float64, near-ties re-scored directly."""
    hist = np.asarray(hist, dtype=np.float64)
    d = hist[1:]
    if not np.any(d):
        raise ValueError("empty histogram")
    length = d.size  # 2047
    eps = KL_EPS
    ts = np.arange(TARGET_BINS, length)
    nz = d != 0
    S = np.concatenate(([0.0], np.cumsum(d)))
    N = np.concatenate(([0], np.cumsum(nz)))
    pz = np.where(nz, d, eps)
    g = pz * np.log(pz)
    G = np.concatenate(([0.0], np.cumsum(g)))
    Z = np.concatenate(([0.0], np.cumsum(pz)))
    plast_raw = S[-1] - S[ts - 1]  # d[T-1] + tail
    plast = np.where(plast_raw != 0, plast_raw, eps)

    nmb = ts // TARGET_BINS
    j = np.arange(TARGET_BINS)
    start = j[None, :] * nmb[:, None]
    stop = np.where(j[None, :] == TARGET_BINS - 1, ts[:, None] - 1, start + nmb[:, None])
    quant = S[np.minimum(start + nmb[:, None], ts[:, None])] - S[start]
    quant[:, -1] = S[ts] - S[start[:, -1]]
    norm = N[stop] - N[start]
    mass = S[stop] - S[start]  # p mass of the non-zero bins inside each block's q range
    has = norm > 0
    v = np.where(has, quant / np.where(has, norm, 1), 1.0)
    # sums over the candidate's T bins
    sum_plogp = G[ts - 1] + plast * np.log(plast)
    sum_p = Z[ts - 1] + plast
    zeros_before = (ts - 1) - N[ts - 1]  # zero bins among the first T-1
    sum_q = np.sum(np.where(has, quant, 0.0), axis=1) + eps * (zeros_before + 1)
    sum_plogq = np.sum(np.where(has, mass * np.log(v), 0.0), axis=1) + math.log(eps) * (
        eps * zeros_before + plast
    )
    kl = (sum_plogp - sum_plogq) / sum_p - np.log(sum_p) + np.log(sum_q)
    best = float(np.min(kl))
    near = np.nonzero(kl <= best + 1e-9 * max(1.0, abs(best)))[0]
    if near.size == 1:
        t = int(ts[near[0]])
        return t, kl_legacy_value(d, t)
    vals = [kl_legacy_value(d, int(ts[i])) for i in near]
    i = int(np.argmin(vals))
    return int(ts[near[i]]), float(vals[i])


def kl_legacy(hist: np.ndarray, absmax: float) -> Threshold:
    """The Caffe-era tool: threshold = (T + 0.5) * absmax / 2048 with T in shifted-histogram units (its
    quirk: the bin dropped in front is not added back), scale = 127 / threshold (float64)."""
    t, v = kl_legacy_bin(hist)
    thr = (t + 0.5) * (float(absmax) / NUM_BINS)
    return Threshold(thr, 127.0 / thr, t, v)


# --------------------------------------------------------------------------------------------- others

ACIQ_ALPHA_GAUSSIAN = (0.0, 1.71063519, 2.15159277, 2.55913646, 2.93620062, 3.28691474, 3.6151146, 3.92403714)


def aciq_clip(absmax: float, n: int, num_bits: int = 8) -> float:
    """ncnn2table's compute_aciq_gaussian_clip: the clipping value of a Gaussian with the std estimated
    from absmax and the element count n. float32 result of the double formula, as ncnn. For n <= 1
    (ln n = 0, ncnn divides by zero) we return absmax."""
    if n <= 1:
        return float(_F32(absmax))
    alpha = float(_F32(ACIQ_ALPHA_GAUSSIAN[num_bits - 1]))
    gaussian_const = (0.5 * 0.35) * (1 + math.sqrt(3.14159265358979323846 * math.log(4)))
    std = (float(_F32(absmax)) * 2 * gaussian_const) / math.sqrt(2 * math.log(n))
    return float(_F32(alpha * std))


def aciq(absmax: float, n: int) -> Threshold:
    """ncnn2table method=aciq for an activation blob of n elements per image."""
    thr = _F32(aciq_clip(absmax, n))
    return Threshold(float(thr), float(_F32(127) / thr))


def minmax(absmax: float) -> Threshold:
    thr = _F32(absmax)
    return Threshold(float(thr), float(_F32(127) / thr))


def percentile(hist: np.ndarray, zeros: int, absmax: float, pct: float) -> Threshold:
    """Threshold = the upper edge of the first ncnn-histogram bin at which the cumulative count of |x|
    (exact zeros counted in bin 0) reaches pct percent of all values."""
    counts = np.asarray(hist, dtype=np.float64).copy()
    counts[0] += zeros
    cum = np.cumsum(counts)
    b = int(np.searchsorted(cum, cum[-1] * (pct / 100.0), side="left"))
    b = min(b, NUM_BINS - 1)
    thr = _F32(_F32(b + 1) * _F32(absmax)) / _F32(NUM_BINS)
    return Threshold(float(thr), float(_F32(127) / thr), b)


def clipped_share(hist: np.ndarray, zeros: int, absmax: float, threshold: float) -> float:
    """Share of all values whose |x| lies beyond threshold, from the ncnn histogram (bins entirely
    above the threshold; a bin straddling it counts as not clipped)."""
    counts = np.asarray(hist, dtype=np.float64)
    total = counts.sum() + zeros
    if total <= 0 or absmax <= 0:
        return 0.0
    first_above = int(math.ceil(threshold / absmax * NUM_BINS))
    if first_above >= NUM_BINS:
        return 0.0
    return float(counts[first_above:].sum() / total)
