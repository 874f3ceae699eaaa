"""Benchmark: writing an ncnn model (`onnx2caffe ncnn`) vs writing the same weights with ndarray.tofile.

Builds VGG-16 as a Caffe model (benchmarks/write_caffemodel.py: 138,357,544 float32 parameters, random
weights), converts it to ncnn in memory, then times, interleaved and best of --repeat, in one folder:
  * tofile:       the .bin's weight arrays written with ndarray.tofile into one open file (raw bytes only)
  * NcnnModel.write: the .param and the .bin (storage tags, padding), atomically (temp files + rename)
and, for the whole command, `onnx2caffe ncnn` (read the prototxt and the caffemodel, convert, write) vs
np.fromfile of the raw weights + tofile. The goal is write / tofile <= 1.5.

    .venv/bin/python benchmarks/ncnn_writer.py [--dir DIR] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from write_caffemodel import VGG16_PARAMS, build_vgg16  # noqa: E402

from onnx2caffe.cli import main as cli_main  # noqa: E402
from onnx2caffe.ncnn import caffe_to_ncnn  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dir", default=None, help="folder for the files (default: a new temp folder)")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args(argv)

    net = build_vgg16()
    folder = tempfile.mkdtemp(prefix="bench_ncnn_", dir=args.dir)
    try:
        proto, model = net.save(os.path.join(folder, "vgg16"))
        del net
        t0 = time.perf_counter()
        ncnn_model = caffe_to_ncnn(proto, model)
        t_convert = time.perf_counter() - t0
        arrays = [w.data for layer in ncnn_model.layers for w in layer.weights]
        nparams = sum(a.size for a in arrays)
        assert nparams == VGG16_PARAMS, nparams
        nbytes = sum(a.nbytes for a in arrays)
        raw = os.path.join(folder, "weights.raw")
        param, binf = os.path.join(folder, "vgg16.param"), os.path.join(folder, "vgg16.bin")

        def write_raw() -> None:
            if os.path.exists(raw):
                os.unlink(raw)
            with open(raw, "wb") as f:
                for a in arrays:
                    a.tofile(f)

        def write_ncnn() -> None:
            for p in (param, binf):
                if os.path.exists(p):
                    os.unlink(p)
            ncnn_model.write(param, binf)

        def run_cli() -> None:
            assert cli_main(["ncnn", proto, model, "-o", os.path.join(folder, "cli"), "--quiet"]) == 0

        def raw_copy() -> None:
            np.fromfile(raw, dtype=np.float32).tofile(raw + ".copy")

        t_raw = t_write = t_cli = t_copy = float("inf")
        for _ in range(args.repeat):  # interleaved: page-cache and disk drift hit both alike
            t_raw = min(t_raw, _timed(write_raw))
            t_write = min(t_write, _timed(write_ncnn))
            t_copy = min(t_copy, _timed(raw_copy))
            t_cli = min(t_cli, _timed(run_cli))
        framing = os.path.getsize(binf) - os.path.getsize(raw)
        gb = nbytes / 1e9
        print(
            f"VGG-16: {nparams:,} params, {nbytes / 2**20:.1f} MiB; folder {folder} (best of {args.repeat})"
        )
        print(f"caffe_to_ncnn (read + convert, in memory): {t_convert:7.3f} s")
        print(f"ndarray.tofile                 : {t_raw:7.3f} s  ({gb / t_raw:5.2f} GB/s)")
        print(
            f"NcnnModel.write (.param + .bin): {t_write:7.3f} s  ({gb / t_write:5.2f} GB/s), .bin +{framing} bytes"
        )
        print(f"ratio write/tofile             : {t_write / t_raw:7.3f}  (goal <= 1.5)")
        print(f"onnx2caffe ncnn (whole command): {t_cli:7.3f} s")
        print(f"np.fromfile + tofile (raw copy): {t_copy:7.3f} s  ratio command/copy {t_cli / t_copy:.3f}")
        return 0
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


if __name__ == "__main__":
    sys.exit(main())
