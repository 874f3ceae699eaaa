"""Threshold methods of `onnx2caffe calibrate`, pinned against slow loop transcriptions of the published
algorithms (ncnn's tools/quantize/ncnn2table.cpp quantize_KL / compute_aciq_gaussian_clip, and
threshold_distribution of caffe-int8-convert-tool-dev-weight.py), written here independently of the
vectorised code, and against hand-computed cases."""

from __future__ import annotations

import math

import numpy as np
import pytest

from onnx2caffe.calibrate import methods as M

F = np.float32


# ----------------------------------------------------------------------------------- references (slow)


def ncnn_kl_reference(hist, candidates=None):
    """ncnn2table's KL loop, one float32 operation at a time (num_histogram_bins = len(hist)).
    Returns (first-minimum T, its KL, {T: KL})."""
    hist = [int(v) for v in hist]
    total = float(sum(hist))
    hn = [F(v / total) for v in hist]
    nb, tb, eps = len(hn), 128, F(1e-4)
    best_t, best = tb, F(np.finfo(np.float32).max)
    values = {}
    for T in candidates if candidates is not None else range(tb, nb):
        clip = [eps] * T
        for j in range(T):
            clip[j] = F(clip[j] + hn[j])
        for j in range(T, nb):
            clip[T - 1] = F(clip[T - 1] + hn[j])
        npb = F(F(T) / F(tb))
        q = [F(0)] * tb
        edges = []
        for j in range(tb):
            start = F(F(j) * npb)
            end = F(F(j + 1) * npb) if j < tb - 1 else F(T)
            lu, rl = math.ceil(start), math.floor(end)
            edges.append((lu, F(F(lu) - start), rl, F(end - F(rl))))
        for j, (lu, ls, rl, rs) in enumerate(edges):
            if ls > 0:
                q[j] = F(q[j] + F(ls * hn[lu - 1]))
            if rs > 0:
                q[j] = F(q[j] + F(rs * hn[rl]))
            for k in range(lu, rl):
                q[j] = F(q[j] + hn[k])
            q[j] = F(q[j] / F(F(F(rl - lu) + ls) + rs))
        e = [eps] * T
        for j, (lu, ls, rl, rs) in enumerate(edges):
            if ls > 0:
                e[lu - 1] = F(e[lu - 1] + F(ls * q[j]))
            if rs > 0:
                e[rl] = F(e[rl] + F(rs * q[j]))
            for k in range(lu, rl):
                e[k] = F(e[k] + q[j])
        r = F(0)
        for i in range(T):
            r = F(r + F(clip[i] * F(math.log(float(F(clip[i] / e[i]))))))
        values[T] = r
        if r < best:
            best, best_t = r, T
    return best_t, best, values


def legacy_kl_reference(distribution, target_bin=128):
    """threshold_distribution of the Caffe-era tool, transcribed loop by loop (scipy's entropy done
    with numpy). Returns (T, KL of T)."""
    distribution = np.asarray(distribution, dtype=np.float64)[1:]
    length = distribution.size
    threshold_sum = sum(distribution[target_bin:])
    kl = np.zeros(length - target_bin)
    for threshold in range(target_bin, length):
        sliced = distribution[:threshold].copy()
        p = sliced.copy()
        p[threshold - 1] += threshold_sum
        threshold_sum = threshold_sum - distribution[threshold]
        is_nonzeros = (p != 0).astype(np.int64)
        quantized = np.zeros(target_bin, dtype=np.int64)
        nmb = sliced.size // target_bin
        for j in range(target_bin):
            quantized[j] = sliced[j * nmb : j * nmb + nmb].sum()
        quantized[-1] += sliced[target_bin * nmb :].sum()
        q = np.zeros(sliced.size, dtype=np.float64)
        for j in range(target_bin):
            start = j * nmb
            stop = -1 if j == target_bin - 1 else start + nmb
            norm = is_nonzeros[start:stop].sum()
            if norm != 0:
                q[start:stop] = float(quantized[j]) / float(norm)
        q[p == 0] = 0
        p[p == 0] = 0.0001
        q[q == 0] = 0.0001
        pn, qn = p / np.sum(p), q / np.sum(q)
        kl[threshold - target_bin] = np.sum(pn * np.log(pn / qn))
    i = int(np.argmin(kl))
    return i + target_bin, float(kl[i])


# ----------------------------------------------------------------------------------- ncnn kl


def _relu_hist(rng, n_bins, n=20000, scale=1.0):
    x = np.maximum(rng.standard_normal(n) * scale, 0)
    x = x[x > 0]
    idx = np.minimum((x / x.max() * n_bins).astype(int), n_bins - 1)
    return np.bincount(idx, minlength=n_bins)


@pytest.mark.parametrize("seed", range(6))
def test_kl_ncnn_matches_loop_reference_on_small_histograms(seed):
    # ncnn's loop works for any num_histogram_bins; 160..400 bins keep the slow reference fast while
    # exercising fractional merging (T/128 non-integer) and every candidate.
    rng = np.random.default_rng(seed)
    n_bins = int(rng.integers(160, 400))
    kind = seed % 3
    if kind == 0:
        hist = _relu_hist(rng, n_bins)
    elif kind == 1:
        hist = rng.integers(0, 50, n_bins) * (rng.random(n_bins) < 0.6)  # sparse, many zero bins
    else:
        hist = np.bincount(np.minimum(rng.geometric(0.02, 5000), n_bins - 1), minlength=n_bins)
    t_ref, v_ref, _ = ncnn_kl_reference(hist)
    t, v = M.kl_ncnn_bin(hist)
    assert t == t_ref
    assert np.float32(v) == v_ref  # bit-identical float32 KL (same operation order)


def test_kl_ncnn_full_2048_against_reference_near_choice():
    # the full reference takes ~10 s on 2048 bins; evaluate it on the chosen T, its neighbours and a
    # spread of other candidates: every value must match bit for bit and none may beat the choice.
    rng = np.random.default_rng(7)
    x = np.maximum(rng.standard_normal(300000) * 1.7, 0).astype(np.float32)
    hist = M.ncnn_histogram(x, float(np.abs(x).max()))
    t, v = M.kl_ncnn_bin(hist)
    cands = sorted({*range(max(128, t - 6), min(2048, t + 7)), *range(128, 2048, 97)})
    _, _, values = ncnn_kl_reference(hist, cands)
    assert values[t] == np.float32(v)
    assert all(values[c] > values[t] or (values[c] == values[t] and c >= t) for c in cands)
    exact = M._kl32_exact(M.normalize_ncnn(hist), np.array(cands))
    assert [float(e) for e in exact] == [float(values[c]) for c in cands]


def test_kl_ncnn_fast_search_equals_full_float32_emulation():
    # the float64 screening may only discard candidates that cannot win in float32
    rng = np.random.default_rng(3)
    for scale in (0.3, 1.0, 4.0):
        x = rng.laplace(size=100000).astype(np.float32) * scale
        hist = M.ncnn_histogram(x, float(np.abs(x).max()))
        allv = M._kl32_exact(M.normalize_ncnn(hist), np.arange(128, 2048))
        t, v = M.kl_ncnn_bin(hist)
        assert t == int(np.argmin(allv)) + 128 and v == float(allv.min())


def test_kl_ncnn_hand_cases():
    # everything in bin 0: T = 128 merges nothing, P == Q bin for bin, KL = 0 exactly -> T = 128
    hist = np.zeros(2048, np.int64)
    hist[0] = 1000
    assert M.kl_ncnn_bin(hist) == (128, 0.0)
    # everything in the last bin: Q is all eps for every T and P = eps except P[T-1] = 1 + eps, so every
    # candidate has the same KL = (1 + eps) ln((1 + eps) / eps); the first minimum wins -> T = 128
    hist = np.zeros(2048, np.int64)
    hist[-1] = 5
    t, v = M.kl_ncnn_bin(hist)
    eps = np.float32(1e-4)
    assert t == 128
    assert v == pytest.approx(float((1 + eps) * math.log((1 + eps) / eps)), rel=1e-6)  # float32 rounding
    th = M.kl_ncnn(hist, 2.0)
    assert th.threshold == float(np.float32(128.5 * 2.0 / 2048))
    assert th.scale == float(np.float32(127) / np.float32(th.threshold))


def test_ncnn_histogram_binning():
    x = np.array([0.0, -0.0, 1.0, -1.0, 0.5, 1e-9, -0.25], np.float32)
    h = M.ncnn_histogram(x, 1.0)
    assert h.sum() == 5  # zeros skipped
    assert h[2047] == 2 and h[1024] == 1 and h[512] == 1 and h[0] == 1


def test_kl_search_is_fast():
    import time

    rng = np.random.default_rng(0)
    x = np.maximum(rng.standard_normal(200000), 0).astype(np.float32)
    hist = M.ncnn_histogram(x, float(x.max()))
    M.kl_ncnn_bin(hist)
    t0 = time.perf_counter()
    for _ in range(3):
        M.kl_ncnn_bin(hist)
    per = (time.perf_counter() - t0) / 3
    assert per < 0.25  # generous for a shared 2-core CI box; ~10-30 ms measured here (benchmark: quiet box)


# ----------------------------------------------------------------------------------- legacy kl


@pytest.mark.parametrize("seed", range(5))
def test_kl_legacy_matches_loop_reference(seed):
    rng = np.random.default_rng(100 + seed)
    n_bins = int(rng.integers(200, 420))
    if seed % 2:
        hist = rng.integers(0, 30, n_bins) * (rng.random(n_bins) < 0.5)
    else:
        hist = _relu_hist(rng, n_bins)
    hist[0] += 500  # the zeros the tool's np.histogram puts in bin 0 (dropped)
    t_ref, v_ref = legacy_kl_reference(hist)
    t, v = M.kl_legacy_bin(hist)
    assert t == t_ref
    assert v == pytest.approx(v_ref, rel=1e-9, abs=1e-12)  # same formula; float64 summation order only


def test_kl_legacy_2048_synthetic():
    rng = np.random.default_rng(11)
    x = (rng.standard_normal(200000) * 2).astype(np.float32)
    hist = M.legacy_histogram(x, float(np.abs(x).max()))
    assert hist.sum() == np.count_nonzero(x >= 0)  # negatives dropped
    t, v = M.kl_legacy_bin(hist)
    assert M.kl_legacy_value(hist[1:].astype(float), t) == pytest.approx(v, rel=1e-12)
    # spot-check optimality against the direct transcription on a spread of candidates
    for c in range(128, 2047, 131):
        assert M.kl_legacy_value(hist[1:].astype(float), c) >= v - 1e-12
    th = M.kl_legacy(hist, 3.0)
    assert th.threshold == (t + 0.5) * (3.0 / 2048) and th.scale == 127.0 / th.threshold


def test_kl_methods_pick_different_thresholds():
    # the notes: the two tools choose clearly different thresholds on the same data
    rng = np.random.default_rng(5)
    x = np.maximum(rng.standard_normal(200000) * 1.5, 0).astype(np.float32)
    am = float(x.max())
    a = M.kl_ncnn(M.ncnn_histogram(x, am), am)
    b = M.kl_legacy(M.legacy_histogram(x, am), am)
    assert abs(a.threshold - b.threshold) > 0.01 * am


# ----------------------------------------------------------------------------------- others


def test_aciq_formula():
    # compute_aciq_gaussian_clip by hand: alpha(8 bits) * absmax * 2 * 0.175 * (1 + sqrt(pi ln 4)) / sqrt(2 ln N)
    n, absmax = 64 * 56 * 56, 6.5
    expect = (
        3.92403714 * absmax * 2 * 0.175 * (1 + math.sqrt(math.pi * math.log(4))) / math.sqrt(2 * math.log(n))
    )
    th = M.aciq(absmax, n)
    assert th.threshold == pytest.approx(expect, rel=1e-6)  # float32 result
    assert th.scale == pytest.approx(127 / expect, rel=1e-6)
    six = M.aciq_clip(1.0, 576, 6)
    assert six == pytest.approx(
        3.28691474 * 2 * 0.175 * (1 + math.sqrt(math.pi * math.log(4))) / math.sqrt(2 * math.log(576)),
        rel=1e-6,
    )
    assert M.aciq_clip(2.0, 1) == 2.0  # ln 1 = 0: guarded, ncnn would divide by zero


def test_minmax_and_percentile():
    th = M.minmax(4.0)
    assert th.threshold == 4.0 and th.scale == 127 / 4.0
    hist = np.zeros(2048, np.int64)
    hist[9] = 90  # 90 values in bin 9
    hist[1999] = 10
    # 50 % of 100 non-zero values + 0 zeros: reached in bin 9 -> upper edge 10/2048 * absmax
    assert M.percentile(hist, 0, 2.048, 50).threshold == pytest.approx(0.010, rel=1e-6)
    assert M.percentile(hist, 0, 2.048, 95).threshold == pytest.approx(2.0, rel=1e-6)
    # 900 zeros: 99 % of 1000 values lies in bin 9 (900 zeros + 90)
    assert M.percentile(hist, 900, 2.048, 99).threshold == pytest.approx(0.010, rel=1e-6)
    assert M.clipped_share(hist, 900, 2.048, 0.010) == pytest.approx(0.01)
    assert M.clipped_share(hist, 900, 2.048, 2.048) == 0.0


def test_percentile_on_synthetic_matches_numpy():
    rng = np.random.default_rng(2)
    x = np.abs(rng.standard_normal(100000)).astype(np.float32)
    am = float(x.max())
    th = M.percentile(M.ncnn_histogram(x, am), 0, am, 99.0)
    # the histogram answer is the upper edge of the bin holding numpy's 99th percentile
    assert np.percentile(x, 99.0) <= th.threshold <= np.percentile(x, 99.0) + am / 2048 + 1e-6
