"""`onnx2caffe ncnn`: any Caffe model -> ncnn .param + .bin (caffe2ncnn), int8 with a table (ncnn2int8)."""

from __future__ import annotations

import argparse

HELP = "convert a Caffe model to ncnn (.param + .bin), int8 with a calibration table"

DESCRIPTION = """\
Write PREFIX.param and PREFIX.bin for PROTOTXT + CAFFEMODEL (ours or hand-written, BVLC or the common
fork layers: Permute, Normalize, PriorBox, DetectionOutput, Interp, Upsample, ReLU6, ShuffleChannel), as
Tencent's caffe2ncnn does: its layer types and parameter ids, ConvolutionDepthWise for grouped
convolutions, the batch axis dropped, Split layers where a blob feeds several layers, ncnn's weight tags.
Layer names and blob names stay the Caffe names; a blob rewritten in place (a ReLU after a Convolution)
keeps its name for its final value, as in Caffe, and its earlier values are named <blob>_<layer>.

Where caffe2ncnn's mapping differs from what Caffe computes, the value Caffe computes is written (pooling
windows and AVE divisors, Crop sizes, Scale over other axes, 9-digit floats). A layer ncnn cannot express
stops the conversion with its name, type and reason, and nothing is written.

--table TABLE (from `onnx2caffe calibrate`, ncnn2table or the Caffe-era tool) quantises as ncnn2int8
does: int8 weights with the table's per-channel (per-group for ConvolutionDepthWise) scales for every
Convolution, ConvolutionDepthWise and InnerProduct whose activation line is in the table, the activation
scale as the layer's bottom blob int8 scale, requantize fused between consecutive convolutions, and the
weights of the other layers stored as float16 (--fp32-rest keeps them float32). A table line naming a
layer the net lacks, a layer without its weight or activation line, a wrong number of weight scales, or a
scale that is zero, negative, NaN or infinite is an error, and nothing is written.

Exit status: 0 written; 2 bad input (files, table, a layer ncnn cannot express).
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("prototxt", metavar="PROTOTXT", help="the Caffe net definition")
    parser.add_argument("caffemodel", metavar="CAFFEMODEL", help="the Caffe weights")
    parser.add_argument(
        "-o",
        "--output",
        required=True,
        metavar="PREFIX",
        help="output prefix: writes PREFIX.param and PREFIX.bin",
    )
    parser.add_argument("--table", metavar="TABLE", default=None, help="int8 calibration table: quantise")
    parser.add_argument(
        "--fp32-rest",
        action="store_true",
        help="with --table: keep the weights of the layers left in float as float32 (ncnn2int8: float16)",
    )
    parser.add_argument("--quiet", action="store_true", help="print nothing when done")


def run(args: argparse.Namespace) -> int:
    import os

    from onnx2caffe.errors import InputFileError, OutputFileError
    from onnx2caffe.ncnn import caffe_to_ncnn

    prefix = args.output
    if os.path.basename(prefix) in ("", ".", ".."):
        raise OutputFileError(f"output prefix {prefix!r} has no file name part, e.g. out/model")
    param_path, bin_path = prefix + ".param", prefix + ".bin"
    inputs = {os.path.realpath(p) for p in (args.prototxt, args.caffemodel, args.table) if p}
    for out in (param_path, bin_path):
        if os.path.realpath(out) in inputs:
            raise OutputFileError(f"output {out} would overwrite an input file")
    if args.fp32_rest and not args.table:
        raise InputFileError("--fp32-rest only applies with --table")
    model = caffe_to_ncnn(args.prototxt, args.caffemodel, table=args.table, fp16_rest=not args.fp32_rest)
    folder = os.path.dirname(os.path.abspath(prefix))
    if not os.path.isdir(folder):
        try:
            os.makedirs(folder, exist_ok=True)
        except OSError as exc:
            raise OutputFileError(f"cannot create output folder {folder}: {exc.strerror}") from None
    model.write(param_path, bin_path)
    if not args.quiet:
        types = sorted({layer.type for layer in model.layers})
        extra = f", int8: {len(model.int8)} layers" if args.table else ""
        print(
            f"wrote {param_path}, {bin_path} ({len(model.layers)} layers, {model.blob_count()} blobs, "
            f"{model.bin_size() / 2**20:.2f} MiB{extra}); ncnn types: {' '.join(types)}"
        )
        for note in model.notes:
            print(f"note: {note}")
    return 0
