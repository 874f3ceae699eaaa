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

Fast and exact (a few ms per blob), in four steps: (1) an O(1)-per-candidate floor of ncnn's float32 KL
(a few blocks scored exactly, the log-sum inequality for the rest, less a rigorous rounding bound);
(2) the float64 closed form (prefix sums over the histogram, one log per block and per cut bin, laid out
(block, candidate) so numpy runs along long rows) on every 16th candidate, whose best value plus its
bound is an upper bound U of the best float32 value; (3) the closed form, with a rigorous bound of ncnn's
float32 rounding error, on every candidate whose floor does not exceed U; (4) every candidate whose
bounded interval reaches the best one is re-scored by an exact float32 emulation of ncnn's loops (same
operation order, sequential float32 sums via np.add.accumulate, vectorised over candidates), and the
first minimum of those float32 values is taken. The only operation that is not bit-identical is
``logf``: we use the correctly rounded float32 logarithm (glibc's logf is within 0.82 ulp of it), so a
choice can differ only where two candidates tie to the last float32 bit.
"""

from __future__ import annotations

import functools
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


@functools.lru_cache(maxsize=8)
def _screen_geometry(n_bins: int) -> dict[str, np.ndarray]:
    """Everything about the candidates T = 128..n_bins-1 that does not depend on the histogram, laid out
    (edge or block, candidate) so that every pass runs over long contiguous rows."""
    eps = float(_F32(KL_EPS))
    ts = np.arange(TARGET_BINS, n_bins)
    num = np.arange(TARGET_BINS + 1)[:, None] * ts[None, :]  # 128 x edge j of candidate T: exact integers
    fl = num // TARGET_BINS  # the bin holding edge j (edge 128 = T)
    fr = (num % TARGET_BINS) / TARGET_BINS  # where in that bin the edge lies
    # the bin at every inner edge (cut or not) is scored apart; the other bins of block j are its own
    inner = np.ones((TARGET_BINS, 1))
    inner[0] = 0.0
    own = (fl[1:] - fl[:-1] - inner).astype(np.float64)
    geo = {
        "ts": ts,
        "n": ts / TARGET_BINS,
        "inv_n": TARGET_BINS / ts,
        "fl": fl,
        "fr": fr,
        "fr_inner": fr[1:-1],
        "head": inner * (1.0 - fr[:-1]),  # share of block j's inner-edge bin that lies in block j
        "eps_own": eps * own,
    }
    for v in geo.values():
        v.setflags(write=False)
    return geo


def _scalars(h: np.ndarray, ts: np.ndarray) -> dict[str, np.ndarray]:
    """Per-candidate quantities of the closed form and of the error bound that need no block loop."""
    eps = float(_F32(KL_EPS))
    S = np.concatenate(([0.0], np.cumsum(h)))  # S[k] = sum h[:k]
    p = h + eps
    F = np.concatenate(([0.0], np.cumsum(p * np.log(p))))  # F[k] = sum P ln P over bins < k
    total = S[-1]
    plast = eps + (total - S[ts - 1])  # P[T-1] takes the clipped tail
    sumE = S[ts] + eps * ts
    sumP = total + eps * ts
    tail_adds = np.concatenate((np.cumsum((h != 0)[::-1])[::-1], [0]))[ts] + 1  # adding 0.0 is exact
    return {
        "S": S,
        "F": F,
        "p": p,
        "total": total,
        "plast": plast,
        "A": F[ts - 1] + plast * np.log(plast),  # sum P ln P over the T bins
        "sumE": sumE,
        "sumP": sumP,
        "tail": sumP - sumE,
        "tail_adds": tail_adds,
        "n": ts / TARGET_BINS,
    }


def _error_bound(
    sc: dict[str, np.ndarray], ts: np.ndarray, kl: np.ndarray, lnE_last: np.ndarray
) -> np.ndarray:
    """A rigorous bound on |ncnn's float32 KL - the exact KL| (u = 2^-24 per operation, 1.5x for
    second-order terms), for candidates whose exact KL is at most `kl`:
    * the sequential sum adds <= u |s_k| per term. Each term t_i = P_i ln(P_i/E_i) >= P_i - E_i, so
      d_k <= s_k <= d_k + KL - D with d_k = sum_(i<=k) (P_i - E_i) and D = sum P - sum E (the tail);
      d_k is the gap between the histogram's integral and its per-block linear interpolation at k+1
      (plus D at k = T-1), at most the mass of the block holding k+1; a block holds <= n+1 such points:
      sum_k |s_k| <= (n + 1) sum E + D + T (KL - D).
    * each term: E_i carries <= (n + 6) u relative error (a q sums <= n + 2 rounded values, then a
      division, + eps, and a split bin's two products and sums), P_i u, the ratio u, the log and the
      product u |t_i| each: <= (n + 9) u P_i + 3 u |t_i|, and sum |t_i| <= KL + 2 sum E.
    * P[T-1] is a float32 sum with one rounding per non-zero tail bin.
    Plus 1e-12 (|sum P ln P| + 1) for the float64 closed form's own cancellation."""
    n, sumE, sumP, tail, plast = sc["n"], sc["sumE"], sc["sumP"], sc["tail"], sc["plast"]
    acc = (n + 1) * sumE + tail + ts * np.maximum(kl - tail, 0.0)
    term = (n + 9) * sumP + 3 * (np.abs(kl) + 2 * sumE)
    tail_err = sc["tail_adds"] * plast * (np.abs(np.log(plast) - lnE_last) + 1.0)
    return 1.5 * _U32 * (acc + term + tail_err) + 1e-12 * (np.abs(sc["A"]) + 1.0)


def _kl64_screen(h: np.ndarray, cols: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """KL of the candidates T = 128 + cols (all of 128..size-1 by default) in float64 (closed form; h: the
    normalised histogram, float32 values as float64), and a rigorous bound on how far ncnn's float32
    value can be from it (_error_bound).

    With E the expanded Q (+eps) and P the clipped histogram (+eps): KL = sum P ln P - sum P ln E. The
    first sum is a prefix sum; E is constant over the bins a block owns (its mass / n + eps), and the bin
    at an inner edge j gets E_b = fr E_(j-1) + (1 - fr) E_j (fr = 0 when the edge is a bin boundary: then
    E_b = E_j exactly), so the second sum takes one log per block and one per inner edge."""
    eps = float(_F32(KL_EPS))
    geo = _screen_geometry(h.size)
    if cols is None:
        ts, fl, fr, head, eps_own, inv_n = (geo[k] for k in ("ts", "fl", "fr", "head", "eps_own", "inv_n"))
    else:
        ts, inv_n = geo["ts"][cols], geo["inv_n"][cols]
        fl, fr, head, eps_own = (np.take(geo[k], cols, axis=1) for k in ("fl", "fr", "head", "eps_own"))
    sc = _scalars(h, ts)
    S = sc["S"]
    SG = S[fl]
    HG = h[fl]  # fl <= T <= size - 1
    frHG = fr * HG
    C = SG + frHG  # integral of the histogram up to each edge
    E = np.diff(C, axis=0)  # block masses
    Pown = E - frHG[1:]  # P mass of the bins a block owns: its mass less the parts of its edge bins
    Pown -= head * HG[:-1]
    Pown += eps_own
    Pown[-1] += sc["total"] - SG[-1]  # bin T-1 takes the clipped tail
    E *= inv_n
    E += eps
    lnE = np.log(E)
    B = np.einsum("ij,ij->j", Pown, lnE)
    Eb = E[:-1] - E[1:]
    Eb *= fr[1:-1]
    Eb += E[1:]
    lnEb = np.log(Eb)
    Pb = HG[1:-1] + eps
    B += np.einsum("ij,ij->j", Pb, lnEb)
    kl = sc["A"] - B
    return kl, _error_bound(sc, ts, kl, lnE[-1])


# blocks scored exactly by the lower bound: the first ones (where a heavy-tailed histogram's mass sits)
# and the last one (the clipped tail)
_LB_BLOCKS = (*range(8), TARGET_BINS - 1)


def _kl32_floor(h: np.ndarray) -> np.ndarray:
    """For every candidate, a number ncnn's float32 KL is sure to reach, in O(1) per candidate: the
    exact terms of the bins owned by the blocks _LB_BLOCKS, plus the log-sum inequality for all other bins
    (sum P ln(P/E) >= P_R ln(P_R/E_R) over any set R), less the error bound (the exact KL is >= that
    lower bound and >= 0, and the bound's KL-dependent part is a factor 1.5 u (T + 3) of it)."""
    eps = float(_F32(KL_EPS))
    geo = _screen_geometry(h.size)
    ts = geo["ts"]
    sc = _scalars(h, ts)
    S, F = sc["S"], sc["F"]
    edges = sorted({e for j in _LB_BLOCKS for e in (j, j + 1)})
    fl = {e: geo["fl"][e] for e in edges}
    C = {e: S[fl[e]] + geo["fr"][e] * h[fl[e]] for e in edges}
    lb = np.zeros(ts.size)
    PJ = np.zeros(ts.size)
    EJ = np.zeros(ts.size)
    lnE_last = np.zeros(ts.size)
    for j in _LB_BLOCKS:  # the last one is block 127
        E = eps + (C[j + 1] - C[j]) * geo["inv_n"]
        lo = fl[j] + (j > 0)  # the bin at an inner edge belongs to no block here (as in _kl64_screen)
        hi = fl[j + 1]
        Pown = S[hi] - S[lo] + eps * (hi - lo)
        PlnP = F[hi] - F[lo]
        if j == TARGET_BINS - 1:
            Pown = Pown + (sc["total"] - S[ts])
            PlnP = PlnP - sc["p"][ts - 1] * np.log(sc["p"][ts - 1]) + sc["plast"] * np.log(sc["plast"])
        lnE = np.log(E)
        lnE_last = lnE
        lb += PlnP - Pown * lnE
        PJ += Pown
        EJ += (hi - lo) * E
    PR = sc["sumP"] - PJ
    ER = sc["sumE"] - EJ
    lb += PR * np.log(PR / ER)
    klfloor = np.maximum(lb, 0.0)
    err0 = _error_bound(sc, ts, np.zeros(ts.size), lnE_last)
    return klfloor * (1.0 - 1.5 * _U32 * (ts + 3)) - err0


def _logf(x: np.ndarray) -> np.ndarray:
    """Correctly rounded float32 logarithm (glibc's logf is within 0.82 ulp of it)."""
    return np.log(x.astype(np.float64)).astype(np.float32)


def _kl32_exact(h32: np.ndarray, ts: np.ndarray) -> np.ndarray:
    """ncnn2table's float32 KL for the candidates ts, emulating its loops operation by operation, in the
    same order (vectorised over candidates; np.add.accumulate sums sequentially, and additions of +0.0
    stand in for loop iterations that do not exist)."""
    eps = _F32(KL_EPS)
    ts = np.asarray(ts, dtype=np.int64)
    nc = ts.size
    if nc == 0:
        return np.zeros(0, np.float32)
    n_bins = h32.size
    hpad = np.concatenate((h32, np.zeros(1, np.float32)))  # hpad[-1] == hpad[n_bins] == 0

    # Q: quantize_distribution (float32 edges are exact: j * T / 128 has at most 18 significant bits)
    npb = ts.astype(np.float32) / _F32(TARGET_BINS)
    j = np.arange(TARGET_BINS, dtype=np.float32)
    start = j[None, :] * npb[:, None]
    end = (j[None, :] + _F32(1)) * npb[:, None]
    lu = np.ceil(start).astype(np.int64)
    ls = lu.astype(np.float32) - start
    rl = np.floor(end).astype(np.int64)
    rs = end - rl.astype(np.float32)
    full = rl - lu
    wmax = int(full.max())
    parts = np.zeros((nc, TARGET_BINS, wmax + 2), np.float32)
    parts[:, :, 0] = ls * hpad[lu - 1]  # 0 where ls == 0 (then lu - 1 may be -1: hpad[-1] == 0)
    parts[:, :, 1] = rs * hpad[np.minimum(rl, n_bins)]
    k = lu[:, :, None] + np.arange(wmax)[None, None, :]
    parts[:, :, 2:] = np.where(k < rl[:, :, None], hpad[np.minimum(k, n_bins)], _F32(0))
    q = np.add.accumulate(parts, axis=2)[:, :, -1]
    q /= (full.astype(np.float32) + ls) + rs

    # E: expand_distribution. Bin by bin: the full bins of block j get eps + q_j; a bin cut by edge j
    # gets (eps + rs_(j-1) q_(j-1)) + ls_j q_j (block j-1 comes first in ncnn's loop).
    vals = np.empty((nc, 2 * TARGET_BINS - 1), np.float32)
    vals[:, 0::2] = eps + q
    vals[:, 1::2] = (eps + rs[:, :-1] * q[:, :-1]) + ls[:, 1:] * q[:, 1:]
    counts = np.empty((nc, 2 * TARGET_BINS - 1), np.int64)
    counts[:, 0::2] = full
    counts[:, 1::2] = ls[:, 1:] > 0
    width = int(ts.max())
    p0 = eps + h32[:width]  # clip_distribution: eps + hist for the first T bins
    E = np.tile(p0, (nc, 1))  # beyond T: E = P, so the term is P * log(1) = 0
    E[np.arange(width)[None, :] < ts[:, None]] = np.repeat(vals.ravel(), counts.ravel())
    terms = p0 * _logf(p0 / E)

    # P[T-1]: (eps + hist[T-1]) + hist[T] + ... + hist[n_bins-1], sequential float32
    rows = np.arange(nc)
    tl = n_bins - int(ts.min()) + 1
    tail = hpad[np.minimum(ts[:, None] - 1 + np.arange(tl)[None, :], n_bins)]
    tail[:, 0] += eps
    plast = np.add.accumulate(tail, axis=1)[:, -1]
    terms[rows, ts - 1] = plast * _logf(plast / E[rows, ts - 1])

    # KL: result += P * logf(P / E), sequential float32
    return np.add.accumulate(terms, axis=1)[:, -1]


def kl_ncnn_bin(hist: np.ndarray, *, exact: bool = True, chunk: int = 32) -> tuple[int, float]:
    """ncnn2table's KL choice on a count histogram (2048 bins in ncnn; any size > 128 works, with
    candidates 128 .. size-1): (T, its float32 KL value).
    exact=False returns the float64 closed-form argmin (no float32 rescoring)."""
    hist = np.asarray(hist)
    if hist.size <= TARGET_BINS:
        raise ValueError(f"expected a histogram of more than {TARGET_BINS} bins, got {hist.size}")
    if hist.sum() <= 0:
        raise ValueError("empty histogram")
    h32 = normalize_ncnn(hist)
    h = h32.astype(np.float64)
    if not exact:
        kl64, _ = _kl64_screen(h)
        i = int(np.argmin(kl64))
        return i + TARGET_BINS, float(kl64[i])
    # 1. a cheap floor for every candidate; 2. the closed form on a coarse sample gives an upper bound U
    # of the best float32 value; 3. the closed form on every candidate whose floor does not exceed U
    # (the others cannot be a minimum); 4. ncnn's exact float32 arithmetic for the near-ties
    floor = _kl32_floor(h)
    coarse = np.arange(0, floor.size, 16)
    kl_c, err_c = _kl64_screen(h, coarse)
    keep = np.nonzero(floor <= np.min(kl_c + err_c))[0]
    kl64, err = _kl64_screen(h, keep)
    lower = kl64 - err  # ncnn's float32 value of candidate T is at least this
    cand = np.nonzero(lower <= min(np.min(kl64 + err), np.min(kl_c + err_c)))[0]
    cand = cand[np.argsort(lower[cand], kind="stable")]
    best_t, best_v = -1, math.inf
    for s in range(0, cand.size, chunk):
        if lower[cand[s]] > best_v:  # no remaining candidate can reach the best float32 value
            break
        ts = np.sort(keep[cand[s : s + chunk]]) + TARGET_BINS
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
    a direct transcription (vectorised over the target bins, same float64 operations), used to
    re-score near-ties."""
    p = dist[:t].astype(np.float64).copy()
    p[t - 1] += dist[t:].sum()
    is_nonzero = p != 0
    nmb = t // TARGET_BINS
    quant = dist[: TARGET_BINS * nmb].astype(np.float64).reshape(TARGET_BINS, nmb).sum(axis=1)
    quant[-1] += dist[TARGET_BINS * nmb : t].sum()
    starts = np.arange(TARGET_BINS) * nmb
    stops = starts + nmb
    stops[-1] = t - 1  # the tool's stop = -1
    nz = np.concatenate(([0], np.cumsum(is_nonzero)))
    norm = nz[stops] - nz[starts]
    fill = np.divide(quant, norm, out=np.zeros(TARGET_BINS), where=norm != 0)
    q = np.zeros(t)
    q[: t - 1] = np.repeat(fill, stops - starts)
    q[~is_nonzero] = 0
    p[p == 0] = KL_EPS
    q[q == 0] = KL_EPS
    return _entropy(p, q)


def kl_legacy_bin(hist: np.ndarray) -> tuple[int, float]:
    """The Caffe-era tool's threshold_distribution on its 2048-bin histogram: (T, KL).
    Bin 0 is dropped; T runs over 128..2046 of the shifted histogram; integer merging (T // 128 bins per
    target bin, the remainder into the last), the merged count averaged over the non-zero source bins
    (the last target bin stops one short: its last source bin keeps 1e-4), zeros -> 1e-4 in count
    units, scipy's normalised KL, first minimum. Closed form in float64, near-ties re-scored directly.
    Target bins 0..126 of every candidate with the same T // 128 are the same bins: they are scored once
    per width (at most 16 widths), only the last target bin per candidate."""
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
    G = np.concatenate(([0.0], np.cumsum(pz * np.log(pz))))
    Z = np.concatenate(([0.0], np.cumsum(pz)))
    plast_raw = S[-1] - S[ts - 1]  # d[T-1] + tail
    plast = np.where(plast_raw != 0, plast_raw, eps)

    nmb = ts // TARGET_BINS
    # target bins 0..126, per width w: [j w, (j + 1) w)
    widths = np.arange(1, int(nmb.max()) + 1)
    start = np.arange(TARGET_BINS - 1)[None, :] * widths[:, None]
    quant = S[start + widths[:, None]] - S[start]
    norm = N[start + widths[:, None]] - N[start]
    has = norm > 0
    v = np.where(has, quant / np.where(has, norm, 1), 1.0)
    reg_q = np.sum(np.where(has, quant, 0.0), axis=1)[nmb - 1]
    reg_plogq = np.sum(np.where(has, quant * np.log(v), 0.0), axis=1)[nmb - 1]
    # the last target bin: [127 w, T) merged, spread over [127 w, T - 1)
    lstart = (TARGET_BINS - 1) * nmb
    lquant = S[ts] - S[lstart]
    lnorm = N[ts - 1] - N[lstart]
    lmass = S[ts - 1] - S[lstart]
    lhas = lnorm > 0
    lv = np.where(lhas, lquant / np.where(lhas, lnorm, 1), 1.0)
    sum_plogp = G[ts - 1] + plast * np.log(plast)
    sum_p = Z[ts - 1] + plast
    zeros_before = (ts - 1) - N[ts - 1]  # zero bins among the first T-1
    sum_q = reg_q + np.where(lhas, lquant, 0.0) + eps * (zeros_before + 1)
    sum_plogq = (
        reg_plogq + np.where(lhas, lmass * np.log(lv), 0.0) + math.log(eps) * (eps * zeros_before + plast)
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
