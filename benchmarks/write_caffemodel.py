"""Benchmark: CaffeNet.write_caffemodel / CaffeNet.load on a VGG-16-sized net vs raw ndarray.tofile.

Builds VGG-16 in memory (13 convolutions + 3 fully connected layers, 138,357,544 float32 parameters, random
weights), then, in the same folder on the same disk, times (best of --repeat runs each):
  * tofile:          every weight array written with ndarray.tofile into one open file (the raw bytes only)
  * write_caffemodel: the same arrays as a .caffemodel (atomic temp file + rename)
  * load:            CaffeNet.load(prototxt, caffemodel) (hot page cache), and np.fromfile of the raw file
Both writers fsync or neither does (--fsync). The goal is write_caffemodel / tofile <= 1.5.

    .venv/bin/python benchmarks/write_caffemodel.py [--dir DIR] [--fsync] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import sys
import tempfile
import time

import numpy as np

from onnx2caffe.caffe_net import CaffeNet

VGG16_CONVS = [
    (3, 64),
    (64, 64),
    None,
    (64, 128),
    (128, 128),
    None,
    (128, 256),
    (256, 256),
    (256, 256),
    None,
    (256, 512),
    (512, 512),
    (512, 512),
    None,
    (512, 512),
    (512, 512),
    (512, 512),
    None,
]
VGG16_FCS = [(512 * 7 * 7, 4096), (4096, 4096), (4096, 1000)]
VGG16_PARAMS = 138_357_544


def build_vgg16(seed: int = 0) -> CaffeNet:
    rng = np.random.default_rng(seed)
    net = CaffeNet("VGG_ILSVRC_16_layers")
    net.add_input("data", (1, 3, 224, 224))
    bottom = "data"
    stage, index = 1, 1
    for spec in VGG16_CONVS:
        if spec is None:
            name = f"pool{stage}"
            net.add_layer(
                name, "Pooling", bottom, name, pooling_param={"pool": "MAX", "kernel_size": 2, "stride": 2}
            )
            bottom = name
            stage, index = stage + 1, 1
            continue
        cin, cout = spec
        name = f"conv{stage}_{index}"
        w = rng.standard_normal((cout, cin, 3, 3), dtype=np.float32)
        b = rng.standard_normal(cout, dtype=np.float32)
        conv = {"num_output": cout, "kernel_size": [3], "pad": [1]}
        net.add_layer(name, "Convolution", bottom, name, blobs=[w, b], convolution_param=conv)
        net.add_layer(f"relu{stage}_{index}", "ReLU", name, name)
        bottom = name
        index += 1
    for i, (k, n) in enumerate(VGG16_FCS):
        name = f"fc{6 + i}"
        w = rng.standard_normal((n, k), dtype=np.float32)
        b = rng.standard_normal(n, dtype=np.float32)
        net.add_layer(name, "InnerProduct", bottom, name, blobs=[w, b], inner_product_param={"num_output": n})
        bottom = name
        if i < 2:
            net.add_layer(f"relu{6 + i}", "ReLU", name, name)
            net.add_layer(f"drop{6 + i}", "Dropout", name, name, dropout_param={"dropout_ratio": 0.5})
    net.add_layer("prob", "Softmax", bottom, "prob")
    return net


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def best_of(repeat: int, fn) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dir", default=None, help="folder for the files (default: a new temp folder)")
    ap.add_argument("--fsync", action="store_true", help="fsync the file in both writers")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args(argv)

    t0 = time.perf_counter()
    net = build_vgg16()
    arrays = [b for layer in net.layers for b in layer.blobs]
    nparams = sum(a.size for a in arrays)
    nbytes = sum(a.nbytes for a in arrays)
    assert nparams == VGG16_PARAMS, nparams
    print(f"built VGG-16: {nparams:,} params, {nbytes / 2**20:.1f} MiB in {time.perf_counter() - t0:.1f} s")

    folder = tempfile.mkdtemp(prefix="bench_caffemodel_", dir=args.dir)
    raw_path = os.path.join(folder, "weights.raw")
    proto_path = os.path.join(folder, "vgg16.prototxt")
    model_path = os.path.join(folder, "vgg16.caffemodel")
    try:
        net.write_prototxt(proto_path)

        def write_raw() -> None:
            if os.path.exists(raw_path):
                os.unlink(raw_path)
            with open(raw_path, "wb") as f:
                for a in arrays:
                    a.tofile(f)
                f.flush()
                if args.fsync:
                    os.fsync(f.fileno())

        def write_model() -> None:
            if os.path.exists(model_path):
                os.unlink(model_path)
            net.write_caffemodel(model_path, fsync=args.fsync)

        peak0 = peak_rss_mib()
        # Interleave the two writers so that page-cache/disk state drifts affect both alike.
        t_raw = t_model = float("inf")
        for _ in range(args.repeat):
            t_raw = min(t_raw, best_of(1, write_raw))
            t_model = min(t_model, best_of(1, write_model))
        peak_write = peak_rss_mib() - peak0
        size = os.path.getsize(model_path)
        overhead = size - os.path.getsize(raw_path)

        rss0, peak1 = rss_mib(), peak_rss_mib()
        t_load = best_of(args.repeat, lambda: CaffeNet.load(proto_path, model_path))
        t_fromfile = best_of(args.repeat, lambda: np.fromfile(raw_path, dtype=np.float32))
        kept = CaffeNet.load(proto_path, model_path)
        rss_load = rss_mib() - rss0
        peak_load = peak_rss_mib() - peak1
        same = all(
            np.array_equal(a, b)
            for la, lb in zip(net.layers, kept.layers, strict=True)
            for a, b in zip(la.blobs, lb.blobs, strict=True)
        )

        gb = nbytes / 1e9
        print(f"folder: {folder} (fsync: {'both' if args.fsync else 'neither'}, best of {args.repeat})")
        print(f"ndarray.tofile      : {t_raw:7.3f} s  ({gb / t_raw:5.2f} GB/s)")
        print(
            f"write_caffemodel    : {t_model:7.3f} s  ({gb / t_model:5.2f} GB/s)  file {size:,} bytes (+{overhead} framing)"
        )
        print(f"ratio write/tofile  : {t_model / t_raw:7.3f}  (goal <= 1.5)")
        print(f"CaffeNet.load       : {t_load:7.3f} s  ({gb / t_load:5.2f} GB/s), blobs equal: {same}")
        print(f"np.fromfile (raw)   : {t_fromfile:7.3f} s  ratio load/fromfile {t_load / t_fromfile:.3f}")
        print(f"peak RSS increase while writing: {peak_write:.1f} MiB (weights: {nbytes / 2**20:.1f} MiB)")
        print(
            f"RSS held by one loaded net: {rss_load:.1f} MiB; peak RSS increase while loading: {peak_load:.1f} MiB"
        )
        return 0 if same else 1
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
