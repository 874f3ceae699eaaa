"""``onnx2caffe export``: PyTorch model -> simplified, checked ONNX file.

Found by the ``onnx2caffe`` dispatcher (onnx2caffe/cli.py) by its file name: HELP, DESCRIPTION,
``add_arguments(parser)`` and ``run(args)``. Only light imports at top level; torch loads inside run().
"""

from __future__ import annotations

import argparse
import ast
import sys
from typing import Any

HELP = "export a PyTorch model to a simplified ONNX file checked against PyTorch"

DESCRIPTION = """\
Export a PyTorch model to ONNX with fixed input shapes, simplify it with onnx-simplifier, and check the
simplified graph against PyTorch with onnxruntime on a seeded random input (max relative error 1e-4).
The .onnx file holds its weights inline and is written only when the check passes.

--no-simplify writes the graph as the exporter made it: its Identity and Constant nodes, shape computations
and (dynamo) unfused BatchNormalization stay; `convert` folds some of them itself, but the Caffe model can
get more layers, or nodes that only simplification would have removed are refused.
--no-check skips the comparison with PyTorch: an exporter mistake then goes unnoticed (`convert` compares
Caffe with the ONNX graph, never with PyTorch). The check costs one onnxruntime run of the model.

MODEL is one of:
  torchvision:NAME         a torchvision model, randomly initialised (weights=None), e.g. torchvision:resnet18
  timm:NAME                a timm model, randomly initialised (timm.create_model(NAME, pretrained=False); never
                           downloads), e.g. timm:mobilenetv3_large_100; --model-arg goes to create_model
                           (num_classes=10, in_chans=1, ...); real weights with --weights
  module.path:callable     a function or class returning an nn.Module (importable from the current folder;
                           path/to/file.py:callable works too)
  FILE                     a TorchScript file (torch.jit.load)

Exporters:
  torchscript (default)    the legacy tracer (dynamo=False): opsets 7-20, 13 unless --opset is given. It is
                           the default because its graphs map onto fewer, simpler Caffe layers (e.g. global
                           average pooling is GlobalAveragePool + Flatten, not ReduceMean + Reshape) at the
                           low opsets Caffe-era tools expect, and it also exports TorchScript files.
                           PyTorch deprecates it; if it is ever removed or fails on a model, use dynamo.
  dynamo                   torch.export based, PyTorch's default and supported path going forward; writes
                           opset 18 or newer only (default 18); lower opsets are refused.
"""


def _shape(text: str) -> tuple[int, ...]:
    from onnx2caffe.errors import Onnx2CaffeError
    from onnx2caffe.inputs import parse_input_shape

    try:
        return parse_input_shape(text)  # NAME=DIMS is for `convert` of an ONNX file (run_export refuses it)
    except Onnx2CaffeError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _model_arg(text: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip().isidentifier():
        raise argparse.ArgumentTypeError(
            f"bad model argument {text!r}: expected KEY=VALUE, e.g. num_classes=10"
        )
    try:
        parsed = ast.literal_eval(value)
    except (ValueError, SyntaxError):
        parsed = value  # a plain string
    return key.strip(), parsed


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = DESCRIPTION
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument(
        "model",
        metavar="MODEL",
        help="torchvision:NAME, timm:NAME, module.path:callable or a TorchScript file",
    )
    add_export_options(parser, required=True)
    parser.add_argument("-o", "--output", required=True, metavar="OUT.onnx", help="the ONNX file to write")
    parser.add_argument(
        "--no-check",
        action="store_true",
        help="do not compare the ONNX graph with PyTorch (an exporter mistake then goes unnoticed)",
    )
    from onnx2caffe import progress

    progress.add_arguments(parser)


def add_export_options(parser: argparse.ArgumentParser, required: bool) -> None:
    """The export options (all but MODEL and -o); `onnx2caffe convert` reuses them for its one-step form."""
    parser.add_argument(
        "--input-shape",
        dest="input_shapes",
        metavar="N,C,H,W",
        type=_shape,
        action="append",
        required=required,
        help="static shape of an input, e.g. 1,3,224,224; repeat once per input, in order (`convert` of an "
        "ONNX file also takes NAME=1,3,224,224)",
    )
    parser.add_argument(
        "--exporter",
        choices=("torchscript", "dynamo"),
        default=None,
        help="torchscript (default: opsets 7-20, graphs that map to fewer Caffe layers) or dynamo "
        "(PyTorch's default, the supported path going forward; opset 18+)",
    )
    parser.add_argument(
        "--opset",
        type=int,
        default=None,
        help="ONNX opset (default: 13 with torchscript, or the newer one an operator of the model needs, e.g. 14 for scaled_dot_product_attention; 18 with dynamo)",
    )
    parser.add_argument(
        "--weights",
        metavar="CKPT",
        default=None,
        help="checkpoint to load (a state dict, or a dict with a 'state_dict'/'model' entry), "
        "read with torch.load(weights_only=True)",
    )
    parser.add_argument(
        "--unsafe-load",
        action="store_true",
        help="read --weights with weights_only=False (runs pickled code from the file: trusted files only)",
    )
    parser.add_argument(
        "--model-arg",
        dest="model_args",
        metavar="KEY=VALUE",
        type=_model_arg,
        action="append",
        default=[],
        help="keyword argument for the model builder, e.g. aux_logits=False; repeatable",
    )
    parser.add_argument(
        "--no-simplify",
        action="store_true",
        help="keep the graph as the exporter wrote it (no onnx-simplifier; see the description)",
    )
    if required:  # `convert` has its own --seed
        parser.add_argument(
            "--seed", type=int, default=0, help="seed of the random input used for the check (default 0)"
        )


def run(args: argparse.Namespace) -> int:
    """Run the export; prints the check. Errors propagate as Onnx2CaffeError (one-line messages)."""
    run_export(args, args.output, check=not args.no_check)
    return 0


def run_export(args: argparse.Namespace, output: str, check: bool = True, background: bool = False):
    """Export args.model to `output` with the export options in `args`; prints the check; returns the
    ExportResult (see onnx2caffe/export.py)."""
    from onnx2caffe.export import export
    from onnx2caffe.exporters.torch_export import ExportError

    for s in args.input_shapes or ():
        if getattr(s, "name", None):
            raise ExportError(
                f"--input-shape {s.name}=...: a PyTorch model takes its input shapes in order, without names"
            )
    result = export(
        args.model,
        output,
        args.input_shapes,
        exporter=args.exporter,
        opset=args.opset,
        weights=args.weights,
        unsafe_load=args.unsafe_load,
        model_kwargs=dict(args.model_args),
        seed=args.seed,
        simplify=not args.no_simplify,
        check=check,
        background=background,
    )
    for w in result.warnings:
        print(f"warning: {w}", file=sys.stderr)
    shapes = " ".join(",".join(map(str, s)) for s in result.input_shapes)
    simplified = "" if not args.no_simplify else ", not simplified"
    print(
        f"exported {args.model} ({result.exporter} exporter, opset {result.opset}, input {shapes}{simplified}) "
        f"-> {result.path}"
    )
    for r in result.report:
        print(
            f"  check vs PyTorch (onnxruntime, seed {args.seed}) {r['output']}: max_abs {r['max_abs']:.3g}  "
            f"max_rel {r['max_rel']:.3g}  cosine {r['cosine']:.8f}"
        )
    if not check:
        print("  not checked against PyTorch (--no-check)")
    return result
