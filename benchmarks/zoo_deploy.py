"""Benchmark: deploy cost of the torchvision zoo's nets on OpenCV - Caffe layers, and one forward of the converted
Caffe files against the ONNX file they come from (cv2.dnn, default backend and target, one thread).

For each model (default: the five transformer families' smallest members) the zoo pipeline runs (export,
simplify, convert, verify on OpenCV; onnx2caffe/zoo.py) with the files kept under --work/<model>/, then
zoo.deploy_speed times both nets alternately (median of --repeat forwards each, after a warm-up) in this one run
and prints the ratio Caffe / ONNX. `make zoo` records the same measurement (5 runs) for every model in
docs/zoo.md; this script repeats it with more runs for the models asked.

    .venv/bin/python benchmarks/zoo_deploy.py [--models convnext_tiny,swin_t] [--repeat 10] [--size 224]
"""

from __future__ import annotations

import argparse
import sys

DEFAULT = ("convnext_tiny", "swin_t", "swin_v2_t", "vit_b_16", "maxvit_t")


def main(argv=None) -> int:
    from onnx2caffe import zoo

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default=",".join(DEFAULT))
    ap.add_argument("--repeat", type=int, default=10)
    ap.add_argument("--size", type=int, default=None, help="input size (default: the zoo's, 224)")
    ap.add_argument("--work", default="out/zoo_deploy")
    args = ap.parse_args(argv)
    rows = []
    for name in [m for m in args.models.split(",") if m]:
        rec = zoo.run_model(
            name, size=args.size, runtimes=["opencv"], keep_dir=args.work, deploy_repeat=args.repeat
        )
        d = rec.get("deploy") or {}
        if rec["outcome"] != "verified" or "error" in d:
            rows.append((name, rec.get("caffe_layers", ""), None, None, rec.get("message") or d.get("error")))
        else:
            rows.append((name, rec["caffe_layers"], d["caffe_ms"], d["onnx_ms"], ""))
        r = rows[-1]
        line = f"{r[0]:24s} {r[1]!s:>6} layers"
        if r[2] is not None:
            line += f"  Caffe {r[2]:8.1f} ms  ONNX {r[3]:8.1f} ms  ratio {r[2] / r[3]:5.2f}x"
        else:
            line += f"  {r[4]}"
        print(line, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
