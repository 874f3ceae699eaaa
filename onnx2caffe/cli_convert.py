"""`onnx2caffe convert`: ONNX model -> Caffe prototxt + caffemodel, checked on the Caffe runtimes."""

from __future__ import annotations

import argparse
import contextlib
import os

HELP = "convert an ONNX model to Caffe and check it against onnxruntime"

DESCRIPTION = """\
Convert MODEL (.onnx) to PREFIX.prototxt + PREFIX.caffemodel, plus PREFIX.names.json (ONNX tensor name ->
Caffe blob name) and PREFIX.layers.json (the ONNX node(s) each Caffe layer came from). Then a seeded random
input is run through onnxruntime and the Caffe runtime(s); each graph output must agree within max_rel <=
1e-4 (max abs error / max |reference|) and cosine >= 0.99999.

Input shapes must be static. An ONNX file with dynamic dimensions (e.g. exported with dynamic axes) takes
--input-shape: one per input in order (1,3,320,320) or by name (images=1,3,320,320); the dimensions are
fixed, shapes re-inferred and the graph simplified with onnx-simplifier, then converted and checked against
the model as given. A shape that contradicts a static dimension of the model is refused.

Refused before anything is written (exit 2, one line): invalid models (a declared shape contradicting the
inferred one, a Reshape changing the element count), unsupported nodes (all listed), a tensor over Caffe's
2**31-1 elements per blob, weights over the caffemodel's 2 GB protobuf limit, a node whose Caffe form
needs more memory than one node may use, and a check that would not fit in the available memory (use
--no-check or a smaller input shape).

Once written, the four files are complete and stay. If the check then fails (exit 1: outside tolerance)
or cannot finish (exit 2: no runtime, a runtime error, out of memory), the error names the files and says
they are UNVERIFIED; they are kept for inspection with `onnx2caffe verify`. With --no-check they are written
unchecked.

--html FILE also writes one self-contained HTML page: per ONNX op type the nodes and the Caffe layers they
became, the passes applied, the agreement table; for a refused model, every refused node with its reason
(then the page is the only file written).

One step from PyTorch: when MODEL is a PyTorch model (torchvision:NAME, module.path:callable, or a TorchScript
file with --input-shape), it is first exported exactly as `onnx2caffe export` does (same options) to
PREFIX.onnx, then that file is converted.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from onnx2caffe.cli_export import add_export_options

    parser.add_argument(
        "model",
        metavar="MODEL",
        help="the ONNX file, or a PyTorch model (torchvision:NAME, module.path:callable)",
    )
    parser.add_argument(
        "-o", "--output", required=True, metavar="PREFIX", help="output prefix, e.g. out/resnet18"
    )
    parser.add_argument(
        "--runtime",
        choices=("pycaffe", "opencv", "ncnn", "all"),
        default=None,
        help="Caffe runtime(s) to check with; 'all' requires pycaffe and opencv; ncnn runs the model converted to ncnn, only when named (default: every available Caffe runtime)",
    )
    parser.add_argument("--no-check", action="store_true", help="only convert and write, do not run anything")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random check input (default 0)")
    parser.add_argument(
        "--caffe-root", metavar="DIR", default=None, help="Caffe built by `make caffe` (default: see README)"
    )
    parser.add_argument("--max-rel", type=float, default=None, help="tolerance on max_rel (default 1e-4)")
    parser.add_argument(
        "--min-cosine", type=float, default=None, help="tolerance on cosine (default 0.99999)"
    )
    parser.add_argument("--html", metavar="FILE", default=None, help="also write an HTML report page")
    from onnx2caffe import progress

    progress.add_arguments(parser)
    group = parser.add_argument_group(
        "one step from PyTorch (as `onnx2caffe export`); --input-shape also fixes an ONNX file's dynamic inputs"
    )
    add_export_options(group, required=False)


def _is_onnx_file(path: str) -> bool:
    """An existing file that is not a zip archive (TorchScript files are), or a missing *.onnx path."""
    import os
    import zipfile

    if os.path.isfile(path):
        try:
            return not zipfile.is_zipfile(path)
        except OSError:
            return True
    return path.lower().endswith(".onnx") or os.path.exists(path)


def _is_pytorch_model(args: argparse.Namespace) -> bool:
    """MODEL names a PyTorch model rather than an ONNX file."""
    import os

    if _is_onnx_file(args.model):
        return False
    if args.input_shapes:
        return True
    if os.path.exists(args.model):
        return False
    head, sep, _ = args.model.partition(":")
    return bool(sep) and (head == "torchvision" or head.replace(".", "").replace("_", "").isalnum())


def run(args: argparse.Namespace) -> int:
    from onnx2caffe.compare import DEFAULT_MAX_REL, DEFAULT_MIN_COSINE
    from onnx2caffe.convert import convert, format_report
    from onnx2caffe.errors import ConversionError, ToleranceError
    from onnx2caffe.runtimes import RUNTIME_NAMES

    if args.html:
        from onnx2caffe.report.html import check_destination

        check_destination(args.html)
    model = page_model = args.model
    reference = None
    if _is_pytorch_model(args):
        from onnx2caffe.cli_export import run_export
        from onnx2caffe.errors import InputFileError

        if not args.input_shapes:
            raise InputFileError(
                f"{args.model}: a PyTorch model needs --input-shape, e.g. --input-shape 1,3,224,224"
            )
        # the .onnx is written in a thread while the Caffe files are made (waited for below)
        exported = run_export(args, args.output + ".onnx", background=True)
        pending = exported.pending
        # the model just written, as the export holds it (no re-reading), with the check's onnxruntime
        # outputs as the reference (the same model, the same seeded input)
        model = exported.split
        model.source = page_model = exported.path
        if exported.onnx_outputs is not None:
            reference = (exported.inputs, exported.onnx_outputs)
        del exported
        input_shapes = None
    else:
        pending = None
        _refuse_export_options(args)
        input_shapes = args.input_shapes
    runtimes = None
    if args.runtime == "all":
        runtimes = list(RUNTIME_NAMES)
    elif args.runtime:
        runtimes = [args.runtime]
    try:
        try:
            result = convert(
                model,
                args.output,
                runtimes=runtimes,
                check=not args.no_check,
                seed=args.seed,
                caffe_root=args.caffe_root,
                max_rel=DEFAULT_MAX_REL if args.max_rel is None else args.max_rel,
                min_cosine=DEFAULT_MIN_COSINE if args.min_cosine is None else args.min_cosine,
                input_shapes=input_shapes,
                reference=reference,
            )
        except BaseException:
            if pending is not None:  # the .onnx complete (or its temporary file gone) before any report
                pending.wait(raise_error=False)
            raise
        if pending is not None:
            try:
                pending.wait()
            except BaseException:  # no .onnx: no Caffe files either (as when the export's write came first)
                for path in (result.prototxt, result.caffemodel, result.names_json, result.layers_json):
                    if path:
                        with contextlib.suppress(OSError):
                            os.remove(path)
                raise
    except ToleranceError as err:
        result = getattr(err, "result", None)
        if result is not None:
            _print_result(result, args, format_report)
            _write_html(args, page_model, result, err)
        raise
    except ConversionError as err:
        if getattr(err, "errors", None):  # refused nodes: the page lists them
            _write_html(args, page_model, None, err)
        raise
    _print_result(result, args, format_report)
    _write_html(args, page_model, result, None)
    return 0


def _write_html(args, model, result, error) -> None:
    if not args.html:
        return
    from onnx2caffe.report import convert_page

    size = convert_page.write(
        args.html, model, args.output, result, error, seed=args.seed, checked=not args.no_check
    )
    print(f"wrote {args.html} ({size // 1024} KB)")


def _refuse_export_options(args: argparse.Namespace) -> None:
    """The PyTorch export options mean nothing for an ONNX file: refuse them rather than ignore them."""
    from onnx2caffe.errors import InputFileError

    given = [
        opt
        for opt, value in (
            ("--exporter", args.exporter),
            ("--opset", args.opset),
            ("--weights", args.weights),
            ("--unsafe-load", args.unsafe_load or None),
            ("--model-arg", args.model_args or None),
            ("--no-simplify", args.no_simplify or None),
        )
        if value is not None
    ]
    if given:
        raise InputFileError(
            f"{args.model}: {', '.join(given)}: only for PyTorch models, not for an ONNX file"
        )


def _print_result(result, args, format_report) -> None:
    print(
        f"wrote {result.prototxt}, {result.caffemodel}, {result.names_json}, {result.layers_json} "
        f"({len(result.net.layers)} layers)"
    )
    if result.report:
        print(f"check against onnxruntime (seed {args.seed}):")
        print(format_report(result.report))
    for why in result.skipped.values():
        print(f"not checked: {why}")
