"""Shared by the family examples: arguments, and the two-command flow (export, then convert) of the Python API.

Each step is what the CLI does; the script prints the two equivalent commands. Packages that write settings or
caches (ultralytics, torch hub, Hugging Face) keep them under the output folder."""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time

from onnx2caffe.convert import convert, format_report
from onnx2caffe.errors import Onnx2CaffeError
from onnx2caffe.export import export
from onnx2caffe.families_models import isolate_package_files


def parse_args(
    name: str, shape: tuple[int, ...], fast_shape: tuple[int, ...], argv=None
) -> argparse.Namespace:
    """--fast (or ONNX2CAFFE_EXAMPLES_FAST=1): `fast_shape` instead of `shape`; -o OUTDIR."""
    p = argparse.ArgumentParser(
        description=f"{name}: PyTorch -> ONNX -> Caffe, verified on every Caffe runtime"
    )
    p.add_argument("--fast", action="store_true", help=f"a smaller input ({'x'.join(map(str, fast_shape))})")
    p.add_argument("-o", "--out", default=os.path.join("out", "examples"), help="output folder")
    args = p.parse_args(argv)
    args.shape = fast_shape if args.fast or os.environ.get("ONNX2CAFFE_EXAMPLES_FAST") == "1" else shape
    os.makedirs(args.out, exist_ok=True)
    isolate_package_files(os.path.abspath(os.path.join(args.out, "package-files")))
    return args


def export_and_convert(spec: str, name: str, args, model_kwargs: dict | None = None) -> None:
    """`onnx2caffe export SPEC ... -o OUT/NAME.onnx`, then `onnx2caffe convert OUT/NAME.onnx -o OUT/NAME`."""
    kwargs = model_kwargs or {}
    shape = ",".join(map(str, args.shape))
    onnx_path = os.path.join(args.out, f"{name}.onnx")
    prefix = os.path.join(args.out, name)
    cli_args = " ".join(f"--model-arg {shlex.quote(f'{k}={v}')}" for k, v in kwargs.items())
    print(f"$ onnx2caffe export {spec} {cli_args} --input-shape {shape} -o {onnx_path}".replace("  ", " "))
    print(f"$ onnx2caffe convert {onnx_path} -o {prefix}")
    try:
        t0 = time.perf_counter()
        exported = export(spec, onnx_path, [args.shape], model_kwargs=kwargs)
        t1 = time.perf_counter()
        result = convert(exported.path, prefix)  # checks every runtime installed here
        t2 = time.perf_counter()
    except Onnx2CaffeError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    print(
        f"{name}: input {args.shape}, {len(result.net.layers)} Caffe layers -> {result.prototxt}, {result.caffemodel}"
    )
    print(f"export + simplify + check against PyTorch {t1 - t0:.1f}s, convert + verify {t2 - t1:.1f}s")
    print(format_report(result.report))
    worst = max(r["max_rel"] for r in result.report)
    print(
        f"agreement: worst max_rel {worst:.3g} over {len({r['runtime'] for r in result.report})} runtime(s)"
    )
