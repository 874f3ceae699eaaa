"""The fast paths of `onnx2caffe calibrate`, against slow references: the float32 emulation of ncnn's KL
for every candidate, the rigorous bound of the float64 screening, the vectorised legacy KL value, and
the pass-2 activation cache (any cache size must give the same table)."""

from __future__ import annotations

import numpy as np
import pytest
from test_calibrate_cli import calibrate, preprocess, read_table, small_net, write_images
from test_calibrate_methods import ncnn_kl_reference

from onnx2caffe.calibrate import methods as M


def _histograms(seed, n_bins):
    rng = np.random.default_rng(seed)
    x = np.maximum(rng.standard_normal(30000) * 1.3, 0).astype(np.float32)
    relu = np.bincount(np.minimum((x[x > 0] / x.max() * n_bins).astype(int), n_bins - 1), minlength=n_bins)
    sparse = rng.integers(0, 40, n_bins) * (rng.random(n_bins) < 0.3)
    sparse[0] += 1
    spikes = np.zeros(n_bins, np.int64)
    spikes[rng.integers(0, n_bins, 5)] = rng.integers(1, 500, 5)
    heavy = np.bincount(np.minimum(rng.zipf(1.7, 20000), n_bins) - 1, minlength=n_bins)
    return {"relu": relu, "sparse": sparse, "spikes": spikes, "heavy": heavy}


@pytest.mark.parametrize("seed", range(2))
def test_kl32_exact_equals_loop_reference_for_every_candidate(seed):
    # 150..260 bins keep the operation-by-operation reference fast; every candidate, every kind
    n_bins = 150 + 110 * seed
    for name, hist in _histograms(seed, n_bins).items():
        _, _, ref = ncnn_kl_reference(hist)
        got = M._kl32_exact(M.normalize_ncnn(hist), np.arange(128, n_bins))
        assert [float(v) for v in got] == [float(ref[t]) for t in range(128, n_bins)], name


@pytest.mark.parametrize("n_bins", [300, 2048])
def test_screening_bound_holds_for_every_candidate(n_bins):
    # the float64 screen may only drop candidates that cannot win in float32: |kl32 - kl64| <= err
    for seed in range(3):
        for name, hist in _histograms(10 + seed, n_bins).items():
            h32 = M.normalize_ncnn(hist)
            kl64, err = M._kl64_screen(h32.astype(np.float64))
            kl32 = M._kl32_exact(h32, np.arange(128, n_bins)).astype(np.float64)
            assert np.all(np.abs(kl32 - kl64) <= err), name
            assert np.all(M._kl32_floor(h32.astype(np.float64)) <= kl32), name  # the pruning floor
            # and it is tight enough to be useful: the bound stays far below the spread of the values
            assert np.median(err) < 1e-3 * (kl64.max() - kl64.min() + 1e-30) or name == "spikes"


def legacy_value_loop(dist, t):
    """The Caffe-era tool's KL of one candidate, one target bin at a time (the earlier transcription)."""
    p = dist[:t].astype(np.float64).copy()
    p[t - 1] += dist[t:].sum()
    is_nonzero = p != 0
    nmb = t // 128
    quant = np.array([dist[j * nmb : (j + 1) * nmb].sum() for j in range(128)], dtype=np.float64)
    quant[-1] += dist[128 * nmb : t].sum()
    q = np.zeros(t)
    for j in range(128):
        start = j * nmb
        stop = t - 1 if j == 127 else start + nmb
        norm = is_nonzero[start:stop].sum()
        if norm:
            q[start:stop] = quant[j] / norm
    q[~is_nonzero] = 0
    p[p == 0] = 1e-4
    q[q == 0] = 1e-4
    p = p / np.sum(p)
    q = q / np.sum(q)
    return float(np.sum(p * np.log(p / q)))


def test_kl_legacy_value_is_bit_identical_to_the_loop():
    rng = np.random.default_rng(21)
    for i in range(12):
        x = rng.standard_t(2 + i % 3, 50000).astype(np.float32)
        hist = M.legacy_histogram(x, float(np.abs(x).max()))
        if i % 4 == 3:
            hist = hist * (rng.random(hist.size) < 0.2)  # sparse, zero target bins
        d = hist[1:].astype(float)
        for t in rng.integers(128, 2047, 5).tolist() + [128, 2046]:
            assert M.kl_legacy_value(d, t) == legacy_value_loop(d, t)


def test_kl_legacy_matches_exhaustive_loop_choice():
    # the grouped closed form must pick the first minimum of the direct transcription over all T
    rng = np.random.default_rng(8)
    x = np.abs(rng.standard_normal(40000) * 0.7).astype(np.float32) ** 1.5
    hist = M.legacy_histogram(x, float(x.max()))
    d = hist[1:].astype(float)
    vals = [legacy_value_loop(d, t) for t in range(128, 2047)]
    t, v = M.kl_legacy_bin(hist)
    assert t == int(np.argmin(vals)) + 128
    assert v == pytest.approx(min(vals), rel=1e-12)  # same operations; 1e-12 covers pairwise-sum order


@pytest.mark.parametrize("method", ["kl", "kl-legacy", "percentile"])
def test_cache_size_does_not_change_the_table(tmp_path, method):
    # with a cache holding one image of five, pass 2 re-runs four images: each image must still be
    # counted exactly once (the table equals the one from a cache that holds them all, and no cache)
    rng = np.random.default_rng(6)
    _, (proto, model) = small_net(tmp_path, rng)
    images = write_images(tmp_path / "imgs", rng, n=5, corrupt=False)
    tables = {}
    for mb in ("0", "0.02", "1024"):  # one image keeps ~12 KB here
        out = tmp_path / f"t{mb}.table"
        assert calibrate(proto, model, images, out, "--runtime", "opencv", "--method", method, "--report",
                         "--cache-mb", mb) == 0  # fmt: skip
        tables[mb] = read_table(out)
    assert tables["0"] == tables["0.02"] == tables["1024"]
    # conv1 reads the input: recompute its scale from the images, each counted once
    xs = [preprocess(p) for p in sorted(images.glob("img*.png"))]
    absmax = float(np.float32(max(float(np.abs(x).max()) for x in xs)))
    if method == "kl":
        expect = f"{M.kl_ncnn(sum(M.ncnn_histogram(x, absmax) for x in xs), absmax).scale:f}"
    elif method == "kl-legacy":
        expect = repr(M.kl_legacy(sum(M.legacy_histogram(x, absmax) for x in xs), absmax).scale)
    else:
        zeros = sum(int(np.count_nonzero(x == 0)) for x in xs)
        hist = sum(M.ncnn_histogram(x, absmax) for x in xs)
        expect = f"{M.percentile(hist, zeros, absmax, M.DEFAULT_PERCENTILE).scale:f}"
    row = {r[0]: r for r in tables["1024"]}["conv1"]
    assert row[1] == expect
