"""`onnx2caffe calibrate`: an ncnn int8 calibration table from any Caffe model and a folder of images."""

from __future__ import annotations

import argparse
import os

HELP = "int8 calibration table for ncnn (caffe2ncnn / ncnn2int8) from a Caffe model and images"
DESCRIPTION = """\
Writes an ncnn int8 calibration table for a Caffe model (.prototxt + .caffemodel, any origin): one
`<layer>_param_0 s1 s2 ...` weight line per Convolution / InnerProduct layer, then one `<layer> s`
line with the activation scale (127 / threshold) of that layer's bottom blob.

Images (every file under --images; .npy files are taken as already preprocessed (C,H,W) inputs) are
decoded with OpenCV, resized to the net's input size, normalised as (x - mean) * norm and run through
the net on a real Caffe runtime. Unreadable files are reported and skipped.

Methods (activation thresholds):
  kl          ncnn2table method=kl: 2048-bin histogram of |x|, KL search over 128 target bins
  kl-legacy   the Caffe-era caffe-int8-convert-tool-dev-weight.py (its histogram, merging and
              threshold quirks); table written in its number format (Python floats, no trailing space)
  aciq        ncnn2table method=aciq: Gaussian clipping from absmax and the blob's element count
  minmax      threshold = max |x|
  percentile  threshold = the --percentile of |x| (upper edge of its histogram bin)

Weight scales (--group 1: per output channel; per group for grouped/depthwise convolutions, as ncnn's
ConvolutionDepthWise takes them; --group 0: one per layer):
  kl, minmax, percentile  as ncnn2table: 127/max|w|; 31/max|w| (6-bit) for group-1 3x3 convolutions
                          with stride 1 and dilation 1; an all-zero channel gets 1.0
  aciq                    as ncnn2table method=aciq: 127 (31 under the same 3x3 rule) / the ACIQ clip
                          of max|w|; an all-zero channel gets 1.0
  kl-legacy               as the Caffe-era tool: 127/max|w|; 31/max|w| for Convolution with
                          kernel_size 3, stride 1 (or unset) and group != num_output; max|w| < 1e-4 -> 0
A bottom blob that is 0 on every image gets activation scale 1.0 (with a warning).

--method all writes one table per method from the same forward passes: --output out/net.table gives
out/net-kl.table, out/net-kl-legacy.table, out/net-aciq.table, out/net-minmax.table and
out/net-percentile.table.

--evaluate DIR measures what int8 costs on ncnn itself: the Caffe model converted to ncnn (as caffe2ncnn)
and quantised from each table (as ncnn2int8), run in int8 and in float32 on the held-out images under DIR
(preprocessed as the calibration images). Per net output: mean and worst cosine and max_rel of int8 vs
float32, top-1 agreement when the output is a class score (a Softmax, or 2-D with 100+ values), and the layer
whose int8 output drifts most from its input. --json prints everything as one JSON document.
--runtime ncnn calibrates on ncnn float32 itself (as ncnn2table does) instead of a Caffe runtime.

Exit status: 0 done; 2 bad input (missing files, no usable image, no quantisable layer, no runtime).
"""


def _size(text: str) -> tuple[int, int]:
    parts = text.replace("x", ",").split(",")
    try:
        h, w = (int(p) for p in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected H,W (two integers), got {text!r}") from None
    if h <= 0 or w <= 0:
        raise argparse.ArgumentTypeError(f"sizes must be positive, got {text!r}")
    return h, w


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from onnx2caffe.calibrate.methods import DEFAULT_PERCENTILE

    parser.add_argument("--proto", required=True, help="deploy .prototxt")
    parser.add_argument("--model", required=True, help=".caffemodel with the weights")
    parser.add_argument("--images", required=True, help="folder of calibration images (or .npy inputs)")
    parser.add_argument("--output", required=True, help="the table to write (atomically)")
    parser.add_argument(
        "--mean", type=float, nargs=3, default=[0.0, 0.0, 0.0], metavar=("B", "G", "R"),
        help="per-channel mean subtracted, in the net's channel order (default 0 0 0)",
    )  # fmt: skip
    parser.add_argument(
        "--norm", type=float, nargs="+", default=[1.0], metavar="S",
        help="scale applied after the mean: one value, or one per channel (default 1)",
    )  # fmt: skip
    parser.add_argument("--group", type=int, choices=(0, 1), default=1, help="1: per-channel weight scales")
    parser.add_argument("--gpu", type=int, choices=(0, 1), default=0, help="1: run on a GPU (if available)")
    parser.add_argument(
        "--runtime", choices=("pycaffe", "opencv", "ncnn"), default=None,
        help="runtime computing the activations (default: pycaffe if it starts here, else opencv)",
    )  # fmt: skip
    parser.add_argument(
        "--method", choices=("kl", "kl-legacy", "aciq", "minmax", "percentile", "all"), default="kl",
        help="activation threshold method, or all of them (one table each; default kl)",
    )  # fmt: skip
    parser.add_argument(
        "--percentile", type=float, default=DEFAULT_PERCENTILE, metavar="P",
        help=f"for --method percentile (default {DEFAULT_PERCENTILE})",
    )  # fmt: skip
    parser.add_argument("--pixel", choices=("BGR", "RGB"), default="BGR", help="channel order fed to the net")
    parser.add_argument(
        "--size", type=_size, default=None, metavar="H,W", help="input size (default: the net's)"
    )
    parser.add_argument(
        "--report", action="store_true", help="print threshold, scale, clipped share, KL per layer"
    )
    parser.add_argument(
        "--workers", type=int, default=None, metavar="N", help="image decoding threads (default: CPUs, max 8)"
    )
    parser.add_argument(
        "--cache-mb", type=float, default=1024.0, metavar="MB",
        help="memory for keeping pass-1 activations so pass 2 needs no second forward (default 1024)",
    )  # fmt: skip
    parser.add_argument("--quiet", action="store_true", help="no progress output")
    ev = parser.add_argument_group("int8 quality on ncnn (held-out images)")
    ev.add_argument(
        "--evaluate", metavar="DIR", default=None, help="compare int8 with float32 ncnn on these images"
    )
    ev.add_argument("--eval-limit", type=int, default=None, metavar="N", help="use at most N held-out images")
    ev.add_argument(
        "--fp32-rest", action="store_true",
        help="keep the float layers' weights float32 in the int8 model (ncnn2int8 stores them as float16)",
    )  # fmt: skip
    ev.add_argument(
        "--class-outputs", default=None, metavar="BLOB,...",
        help="the outputs that are class scores, for top-1 agreement ('' for none; default: Softmax outputs "
        "and 2-D outputs of 100 or more values)",
    )  # fmt: skip
    ev.add_argument("--json", action="store_true", help="print the results as one JSON document")


def table_paths(output: str, methods: list[str]) -> dict[str, str]:
    """method -> table path: `output` itself for one method, `<stem>-<method><ext>` for several."""
    if len(methods) == 1:
        return {methods[0]: output}
    stem, ext = os.path.splitext(output)
    return {m: f"{stem}-{m}{ext}" for m in methods}


def run(args: argparse.Namespace) -> int:
    import json
    import sys

    from onnx2caffe.calibrate.job import METHODS, Config, format_report, open_runtime, run_calibrations
    from onnx2caffe.errors import InputFileError, RuntimeUnavailableError

    if not 0 < args.percentile <= 100:
        raise InputFileError(f"--percentile must be in (0, 100], got {args.percentile}")
    if args.workers is not None and args.workers < 1:
        raise InputFileError(f"--workers must be at least 1, got {args.workers}")
    if args.eval_limit is not None and args.eval_limit < 1:
        raise InputFileError(f"--eval-limit must be at least 1, got {args.eval_limit}")
    if args.evaluate is not None and not os.path.isdir(args.evaluate):
        raise InputFileError(f"held-out image folder {args.evaluate} not found")
    for flag in ("json", "fp32_rest", "eval_limit", "class_outputs"):
        if getattr(args, flag) not in (None, False) and args.evaluate is None:
            raise InputFileError(f"--{flag.replace('_', '-')} only applies with --evaluate")
    methods = list(METHODS) if args.method == "all" else [args.method]
    outputs = table_paths(args.output, methods)
    rt = open_runtime(args.runtime)
    try:
        if args.gpu == 1:
            raise RuntimeUnavailableError(
                f"--gpu 1: the {rt.name} runtime here has no GPU mode (CPU-only build); use --gpu 0"
            )
        cfg = Config(
            proto=args.proto,
            model=args.model,
            images=args.images,
            output=args.output,
            mean=tuple(args.mean),
            norm=tuple(args.norm),
            group=args.group,
            method=methods[0],
            percentile=args.percentile,
            pixel=args.pixel,
            size=args.size,
            runtime=rt.name,
            workers=args.workers or min(8, os.cpu_count() or 1),
            report=args.report,
            cache_mb=args.cache_mb,
            progress=not args.quiet,
        )
        results = run_calibrations(cfg, outputs, runtime=rt)
    finally:
        rt.close()
    say = sys.stderr if args.json else sys.stdout
    for m, result in results.items():
        if args.report:
            print(format_report(result), file=say)
        skipped = f", {result.images_skipped} skipped" if result.images_skipped else ""
        print(
            f"wrote {outputs[m]}: {len(result.layers)} layers, {result.images_used} images{skipped}, "
            f"method {m}, runtime {result.runtime}, {result.seconds['total']:.1f} s",
            file=say,
        )
    if args.evaluate is None:
        return 0
    from onnx2caffe.calibrate.evaluate import evaluate, format_evaluation

    ev = evaluate(
        args.proto,
        args.model,
        outputs,
        args.evaluate,
        mean=tuple(args.mean),
        norm=tuple(args.norm),
        pixel=args.pixel,
        size=args.size,
        limit=args.eval_limit,
        fp16_rest=not args.fp32_rest,
        progress=not args.quiet,
        class_outputs=None if args.class_outputs is None else [c for c in args.class_outputs.split(",") if c],
    )
    if args.json:
        print(json.dumps({"tables": outputs, "evaluation": ev.to_json()}, indent=1, allow_nan=False))
    else:
        print(format_evaluation(ev))
    return 0
