"""Shared by the example scripts: arguments, and the export -> convert -> verify steps of the Python API."""

from __future__ import annotations

import argparse
import os
import time

from onnx2caffe.exporters.torch_export import randomize_batchnorm

from onnx2caffe.convert import convert, format_report
from onnx2caffe.export import export


def parse_args(name: str, size: int, fast_size: int | None = None, argv=None) -> argparse.Namespace:
    """--size (default `size`; `fast_size` with --fast or ONNX2CAFFE_EXAMPLES_FAST=1) and -o OUTDIR."""
    p = argparse.ArgumentParser(
        description=f"{name}: PyTorch -> ONNX -> Caffe, verified on every Caffe runtime"
    )
    p.add_argument("--size", type=int, default=None, help=f"input height/width (default {size})")
    p.add_argument("--fast", action="store_true", help="a smaller input for a quick run")
    p.add_argument("-o", "--out", default=os.path.join("out", "examples"), help="output folder")
    args = p.parse_args(argv)
    fast = args.fast or os.environ.get("ONNX2CAFFE_EXAMPLES_FAST") == "1"
    if args.size is None:
        args.size = fast_size if fast and fast_size else size
    return args


def run(model, name: str, args) -> None:
    """Export `model` (random BatchNorm statistics, so no BatchNorm is an identity), convert, verify, print."""
    randomize_batchnorm(model).eval()
    os.makedirs(args.out, exist_ok=True)
    shape = (1, 3, args.size, args.size)
    t0 = time.perf_counter()
    exported = export(model, os.path.join(args.out, f"{name}.onnx"), [shape])
    t1 = time.perf_counter()
    result = convert(exported.path, os.path.join(args.out, name))  # checks every runtime installed here
    t2 = time.perf_counter()
    print(
        f"{name}: input {shape}, {len(result.net.layers)} Caffe layers -> {result.prototxt}, {result.caffemodel}"
    )
    print(f"export + simplify + check against PyTorch {t1 - t0:.1f}s, convert + verify {t2 - t1:.1f}s")
    print(format_report(result.report))
    worst = max(r["max_rel"] for r in result.report)
    print(
        f"agreement: worst max_rel {worst:.3g} over {len({r['runtime'] for r in result.report})} runtime(s)"
    )
