"""`onnx2caffe verify`: compare any ONNX model with any Caffe model on the same input."""

from __future__ import annotations

import argparse

HELP = "compare an ONNX model with a Caffe model (outputs, or every layer) on the same input"

DESCRIPTION = """\
Run MODEL (.onnx) in onnxruntime and PROTOTXT + CAFFEMODEL in the Caffe runtime(s) on the same input and
compare them: max_abs, max_rel (max abs error / max |reference|) and cosine similarity, per graph output.

Pairing ONNX tensors with Caffe blobs: the name map the converter writes (PREFIX.names.json, looked for
beside the prototxt; --names FILE to give one), else the same name (exact, then with the converter's
sanitising of unsafe characters), else, for outputs, by position among the Caffe net's outputs when
their counts and shapes agree (the report says so).

--per-layer also compares every Caffe blob that has an ONNX counterpart, in the Caffe layer order, and
names the first layer outside tolerance. Only the graph outputs decide the exit status.

Input: seeded random (the same as `convert --seed`), --input NAME=FILE.npy, or --image [NAME=]FILE
(resized to the input's H x W, then (pixel - mean) * scale, as Caffe's transform_param does).

Exit status: 0 within tolerance, 1 outside, 2 for bad input (files, shapes, names).
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", metavar="MODEL", help="the ONNX file (the reference)")
    parser.add_argument("prototxt", metavar="PROTOTXT", help="the Caffe net definition")
    parser.add_argument("caffemodel", metavar="CAFFEMODEL", help="the Caffe weights")
    parser.add_argument(
        "--runtime",
        choices=("pycaffe", "opencv", "ncnn", "all"),
        default=None,
        help="Caffe runtime(s); 'all' requires pycaffe and opencv; ncnn runs the model converted to ncnn, only when named (default: every available Caffe runtime)",
    )
    parser.add_argument(
        "--names", metavar="FILE", default=None, help="names map ONNX tensor -> Caffe blob (JSON object)"
    )
    parser.add_argument(
        "--per-layer", action="store_true", help="compare every layer's blob and name the first disagreement"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the random input (default 0)")
    parser.add_argument(
        "--input",
        action="append",
        default=[],
        metavar="NAME=FILE.npy",
        help="an input from a .npy file (repeat for several inputs; NAME may be left out for one input)",
    )
    parser.add_argument(
        "--image", action="append", default=[], metavar="[NAME=]FILE", help="an input from an image file"
    )
    parser.add_argument("--mean", metavar="B,G,R", default=None, help="mean subtracted from --image pixels")
    parser.add_argument(
        "--scale", metavar="S", default=None, help="factor applied after the mean (default 1)"
    )
    parser.add_argument(
        "--pixel", choices=("BGR", "RGB"), default="BGR", help="channel order the model expects (default BGR)"
    )
    parser.add_argument("--max-rel", type=float, default=None, help="tolerance on max_rel (default 1e-4)")
    parser.add_argument(
        "--min-cosine", type=float, default=None, help="tolerance on cosine (default 0.99999)"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON document instead of the table")
    parser.add_argument(
        "--caffe-root", metavar="DIR", default=None, help="Caffe built by `make caffe` (default: see README)"
    )


def run(args: argparse.Namespace) -> int:
    import json

    from onnx2caffe.compare import DEFAULT_MAX_REL, DEFAULT_MIN_COSINE
    from onnx2caffe.errors import ToleranceError
    from onnx2caffe.verify import failure_message, format_result, verify

    result = verify(
        args.model,
        args.prototxt,
        args.caffemodel,
        runtimes=args.runtime,
        names=args.names,
        seed=args.seed,
        input_files=args.input,
        images=args.image,
        mean=args.mean,
        scale=args.scale,
        pixel=args.pixel,
        per_layer=args.per_layer,
        max_rel=DEFAULT_MAX_REL if args.max_rel is None else args.max_rel,
        min_cosine=DEFAULT_MIN_COSINE if args.min_cosine is None else args.min_cosine,
        caffe_root=args.caffe_root,
    )
    if args.json:
        print(json.dumps(result.to_json(), indent=1, allow_nan=False))
    else:
        print(format_result(result))
    if not result.ok:
        raise ToleranceError(failure_message(result))
    return 0
