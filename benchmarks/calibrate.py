"""Benchmark of `onnx2caffe calibrate`.

1. One KL threshold search (ncnn2table method=kl, exact) in ms per blob, on 2048-bin histograms of
   synthetic activations (ReLU'd Gaussian, Laplace, heavy-tailed).
2. The whole calibration of a ResNet-18-like Caffe net (built with onnx2caffe.caffe_net: Convolution,
   BatchNorm, Scale, ReLU, Pooling, Eltwise, InnerProduct; random weights) on N generated images, against
   the time of two forward passes alone (the same blobs requested, inputs already decoded) on the same
   runtime. Prints both ratios.

    python benchmarks/calibrate.py [--runtime opencv] [--images 200] [--size 224] [--cache-mb 1024]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from onnx2caffe.caffe_net import CaffeNet
from onnx2caffe.calibrate import methods as M
from onnx2caffe.calibrate.images import Preprocess, iter_inputs, list_inputs
from onnx2caffe.calibrate.job import Config, find_quant_layers, open_runtime, run_calibration


def bench_kl(repeats: int = 20, legacy: bool = False) -> list[tuple[str, float, int]]:
    rng = np.random.default_rng(0)
    data = {
        "relu-gauss": np.maximum(rng.standard_normal(1_000_000), 0),
        "laplace": rng.laplace(size=1_000_000),
        "student-t3": rng.standard_t(3, size=1_000_000),
    }
    out = []
    for name, x in data.items():
        x = x.astype(np.float32)
        absmax = float(np.abs(x).max())
        hist = M.legacy_histogram(x, absmax) if legacy else M.ncnn_histogram(x, absmax)
        search = M.kl_legacy_bin if legacy else M.kl_ncnn_bin
        search(hist)  # warm up
        times = []
        for _ in range(repeats):
            t0 = time.process_time()  # CPU time: the search is single-threaded numpy
            t, _ = search(hist)
            times.append(time.process_time() - t0)
        out.append((name, 1e3 * statistics.median(times), t))
    return out


def resnet18(size: int, rng: np.random.Generator) -> CaffeNet:
    net = CaffeNet("resnet18")
    net.add_input("data", (1, 3, size, size))

    def conv_bn(name, bottom, cin, cout, k, s, relu=True):
        p = {"num_output": cout, "kernel_size": [k], "stride": [s], "pad": [k // 2], "bias_term": False}
        w = rng.standard_normal((cout, cin, k, k)).astype(np.float32) * np.float32(
            np.sqrt(2.0 / (cin * k * k))
        )
        net.add_layer(name, "Convolution", [bottom], [name], blobs=[w], convolution_param=p)
        stats = [
            rng.standard_normal(cout).astype(np.float32) * 0.1,
            rng.uniform(0.5, 1.5, cout).astype(np.float32),
        ]
        net.add_layer(name + "_bn", "BatchNorm", [name], [name], blobs=[*stats, np.ones(1, np.float32)])
        sb = [
            rng.uniform(0.5, 1.5, cout).astype(np.float32),
            rng.standard_normal(cout).astype(np.float32) * 0.1,
        ]
        net.add_layer(name + "_scale", "Scale", [name], [name], blobs=sb, scale_param={"bias_term": True})
        if relu:
            net.add_layer(name + "_relu", "ReLU", [name], [name])
        return name

    x = conv_bn("conv1", "data", 3, 64, 7, 2)
    net.add_layer(
        "pool1",
        "Pooling",
        [x],
        ["pool1"],
        pooling_param={"pool": "MAX", "kernel_size": 3, "stride": 2, "pad": 1},
    )
    x, cin = "pool1", 64
    for stage, cout in enumerate((64, 128, 256, 512), start=1):
        for block in range(2):
            s = 2 if (stage > 1 and block == 0) else 1
            n = f"res{stage}{'ab'[block]}"
            y = conv_bn(n + "_branch2a", x, cin, cout, 3, s)
            y = conv_bn(n + "_branch2b", y, cout, cout, 3, 1, relu=False)
            short = conv_bn(n + "_branch1", x, cin, cout, 1, s, relu=False) if (s != 1 or cin != cout) else x
            net.add_layer(n, "Eltwise", [short, y], [n], eltwise_param={"operation": "SUM"})
            net.add_layer(n + "_relu", "ReLU", [n], [n])
            x, cin = n, cout
    net.add_layer("pool5", "Pooling", [x], ["pool5"], pooling_param={"pool": "AVE", "global_pooling": True})
    w = rng.standard_normal((1000, 512)).astype(np.float32) * np.float32(0.05)
    net.add_layer("fc1000", "InnerProduct", ["pool5"], ["fc1000"], blobs=[w, np.zeros(1000, np.float32)],
                  inner_product_param={"num_output": 1000})  # fmt: skip
    return net


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runtime", choices=("pycaffe", "opencv"), default=None)
    ap.add_argument("--images", type=int, default=200)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--cache-mb", type=float, default=1024.0)
    ap.add_argument("--method", default="kl")
    args = ap.parse_args()

    import os

    load0 = os.getloadavg()
    kl_ms = {}
    for legacy, title in ((False, "ncnn method=kl, exact"), (True, "kl-legacy")):
        print(f"KL threshold search ({title}), CPU time, median of 20:")
        for name, ms, t in bench_kl(legacy=legacy):
            print(f"  {name:12s} {ms:7.2f} ms per blob (T = {t})")
            kl_ms[legacy] = max(kl_ms.get(legacy, 0.0), ms)

    import cv2

    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory(prefix="bench-calib-") as tmp:
        tmp = Path(tmp)
        net = resnet18(args.size, rng)
        proto, model = net.save(tmp / "resnet18")
        (tmp / "imgs").mkdir()
        for i in range(args.images):
            img = rng.integers(0, 256, (args.size + 32, args.size + 48, 3), dtype=np.uint8)
            cv2.imwrite(str(tmp / "imgs" / f"{i:04d}.png"), cv2.GaussianBlur(img, (5, 5), 0))
        cfg = Config(proto, model, str(tmp / "imgs"), str(tmp / "out.table"), mean=(104.0, 117.0, 123.0),
                     norm=(0.017,), method=args.method, workers=args.workers, cache_mb=args.cache_mb,
                     progress=False)  # fmt: skip
        rt = open_runtime(args.runtime)
        try:
            quant, rewritten = find_quant_layers(net, "ncnn", True)
            assert rewritten is None
            blobs = list(dict.fromkeys(q.run_blob for q in quant))
            pre = Preprocess(3, args.size, args.size, cfg.mean, cfg.norm)
            inputs = [x for _, _, x in iter_inputs(list_inputs(cfg.images), pre, args.workers)]
            with rt.load(proto, model) as m:
                m.run({"data": inputs[0]}, outputs=blobs)  # warm up
                t0 = time.perf_counter()
                for _ in range(2):
                    for x in inputs:
                        m.run({"data": x}, outputs=blobs)
                two_fwd = time.perf_counter() - t0
            t0 = time.perf_counter()
            res = run_calibration(cfg, runtime=rt)
            whole = time.perf_counter() - t0
        finally:
            rt.close()
    s = res.seconds
    print(f"\nResNet-18-like Caffe net, {args.images} images {args.size}x{args.size}, {len(quant)} quantised "
          f"layers ({len(blobs)} blobs), runtime {res.runtime}, method {args.method}:")  # fmt: skip
    print(f"  two forward passes alone (same blobs requested, inputs pre-decoded): {two_fwd:7.2f} s")
    print(f"  whole calibration:                                                 {whole:7.2f} s")
    print(f"    setup {s['setup']:.2f} s, pass 1 {s['pass1']:.2f} s, pass 2 {s['pass2']:.2f} s, "
          f"thresholds + table {s['thresholds']:.2f} s")  # fmt: skip
    print(f"\nKL search, worst of the three: kl {kl_ms[False]:.2f} ms, kl-legacy {kl_ms[True]:.2f} ms per blob "
          "(goal <= 5 ms)")  # fmt: skip
    print(f"ratio whole / two forward passes: {whole / two_fwd:.2f}x (goal <= 1.2x)")
    load1 = os.getloadavg()
    print(f"load average (1 min) at start {load0[0]:.2f}, at end {load1[0]:.2f} on {os.cpu_count()} CPUs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
