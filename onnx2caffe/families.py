"""The family zoo, one net at a time: build -> export -> convert -> verify on pycaffe and OpenCV -> JSON record.

The nets (detectors, segmenters, text recognisers, super-resolution, face and attention nets; see
onnx2caffe/families_models.py) are built from the packages people take them from, with random weights or the
weights a package ships, and exported the way their users export them:

- ``torchscript`` / ``dynamo``: ``onnx2caffe export`` with the net's ``module:callable`` (TorchScript exporter at
  opset 13, or dynamo at opset 18), simplified and checked against PyTorch; when the TorchScript exporter fails
  the dynamo exporter is tried and the record says so;
- ``ultralytics``: ultralytics' own ONNX exporter (``YOLO(...).export(format="onnx", simplify=False)``), its
  default opset, converted as written (unsimplified).

Then ``convert`` (no check) and each Caffe runtime against onnxruntime on a seeded random input, with the zoo's
tolerances (onnx2caffe/zoo.py: cosine >= 0.99999 and max_rel <= 1e-4). A refused net's record lists every
refused node with its reason, input shapes and attributes, grouped (the shapes a mapper has to cover).

    python -m onnx2caffe.families list [--ci]
    python -m onnx2caffe.families run NAME... [--results out/families] [--keep DIR] [--ci] [--exporter dynamo]
    python -m onnx2caffe.families run-all [--timeout 1800] [--skip-existing] ...   # one process per net
    python -m onnx2caffe.families table [--results out/families] [-o docs/families.md]
    python -m onnx2caffe.families survey [--results ...] [-o families-survey.md]  # refused ops, grouped

Rendering the records is in onnx2caffe/families_table.py.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import io
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from onnx2caffe import zoo
from onnx2caffe.families_models import (
    FamilyNet,
    family_nets,
    get_net,
    isolate_package_files,
    package_version,
)

MAX_REL = zoo.MAX_REL
MIN_COSINE = zoo.MIN_COSINE
RUNTIMES = zoo.RUNTIMES
DEFAULT_RESULTS = os.path.join("out", "families")
GOOD_OUTCOMES = ("verified", "refused")
# The CI subset (tests/test_families.py, at each net's ci_shape): one net per family and per op group that the
# family examples (examples/, run by tests/test_examples.py) do not already cover; together they cover every family
# and every new op group of issue 9.
CI_NETS = (
    "yolo11n.ultralytics",
    "yolov8n-seg",
    "yolov3-tinyu.ultralytics",
    "smp-fpn-mobilenet_v2",
    "smp-manet-resnet18",
    "fcos_resnet50_fpn",
    "inception_resnet_v1",
    "crnn-gru",
)


@contextlib.contextmanager
def _chdir(path: str) -> Iterator[None]:
    old = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(old)


def _one_line(err: BaseException, limit: int = 600) -> str:
    return zoo._one_line(err, limit)


# ------------------------------------------------------------------------------------------------ refusals


def _attr_value(attr) -> Any:
    import onnx

    value = onnx.helper.get_attribute_value(attr)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, (list, tuple)):
        value = [v.decode("utf-8", "replace") if isinstance(v, bytes) else v for v in value]
        return value if len(value) <= 16 else value[:16] + ["..."]
    if isinstance(value, onnx.TensorProto):
        arr = onnx.numpy_helper.to_array(value)
        return arr.tolist() if arr.size <= 16 else f"tensor{list(arr.shape)}"
    if isinstance(value, (int, float, str)):
        return value
    return type(value).__name__


def refusal_details(model, err) -> list[dict[str, Any]]:
    """Every refused node of ``err`` (a ConversionError) grouped by (op, reason, input shapes, attributes): what a
    mapper must cover. ``model``: the ONNX model that was converted; it is re-read and the converter's passes are
    run so the shapes are those the mappers saw. Constant inputs of up to 16 values are listed."""
    from onnx2caffe.onnx_graph import OnnxGraph
    from onnx2caffe.passes import run_passes

    graph = OnnxGraph.load(model)
    run_passes(graph)
    nodes = {n.name: n for n in graph.nodes}
    groups: dict[tuple, dict[str, Any]] = {}
    for e in getattr(err, "errors", []) or []:
        node = nodes.get(e.node_name)
        shapes: list[Any] = []
        consts: dict[str, Any] = {}
        attrs: dict[str, Any] = {}
        out_shapes: list[Any] = []
        if node is not None:
            for i, name in enumerate(node.input):
                if not name:
                    shapes.append(None)
                    continue
                shape = graph.shape(name)
                shapes.append(list(shape) if shape is not None else None)
                value = graph.const(name)
                if value is not None and value.size <= 16:
                    consts[str(i)] = np.asarray(value).tolist()
            out_shapes = [list(s) if (s := graph.shape(o)) is not None else None for o in node.output]
            attrs = {a.name: _attr_value(a) for a in node.attribute}
        op = f"{e.domain}::{e.op_type}" if getattr(e, "domain", "") else e.op_type
        reason = str(e.reason)
        if e.attribute is not None:
            reason = f"attribute {e.attribute}: {reason}"
        key = (op, reason, repr(shapes), repr(sorted(attrs.items())), repr(sorted(consts.items())))
        g = groups.setdefault(
            key,
            {
                "op": op,
                "reason": reason,
                "input_shapes": shapes,
                "output_shapes": out_shapes,
                "attributes": attrs,
                "const_inputs": consts,
                "count": 0,
                "nodes": [],
            },
        )
        g["count"] += 1
        if len(g["nodes"]) < 3:
            g["nodes"].append(e.node_name)
    return sorted(groups.values(), key=lambda g: (g["op"], -g["count"]))


# ------------------------------------------------------------------------------------------------ one net


def _export_torch(net: FamilyNet, shape, exporter: str, seed: int, record: dict) -> tuple[Any, Any]:
    """``onnx2caffe export``'s steps, each timed: build (module:callable), export, simplify, check vs PyTorch."""
    from onnx2caffe.exporters.torch_export import (
        ExportError,
        check_against_torch,
        export_onnx,
        load_model,
        onnx_opset,
        random_inputs,
        simplify,
    )

    times = record["times"]
    t0 = time.perf_counter()
    model = load_model(net.spec, model_kwargs={**net.kwargs, "seed": seed})
    times["build"] = time.perf_counter() - t0
    record["parameters"] = sum(int(p.numel()) for p in model.parameters())
    inputs = random_inputs([shape], seed)
    t0 = time.perf_counter()
    try:
        proto, _ = export_onnx(model, [shape], exporter=exporter, example_inputs=inputs)
    except ExportError as err:
        if exporter != "torchscript":
            raise
        record["export_note"] = f"torchscript exporter failed ({_one_line(err, 200)}); used dynamo"
        exporter = "dynamo"
        t0 = time.perf_counter()
        proto, _ = export_onnx(model, [shape], exporter=exporter, example_inputs=inputs)
    times["export"] = time.perf_counter() - t0
    record["exporter"] = exporter
    record["opset"] = onnx_opset(proto)
    t0 = time.perf_counter()
    proto = simplify(proto)
    times["simplify"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    checks = check_against_torch(model, proto, inputs)
    times["check_torch"] = time.perf_counter() - t0
    record["torch_vs_onnx_max_rel"] = max(c.max_rel for c in checks)
    return proto, inputs


def _export_ultralytics(net: FamilyNet, shape, seed: int, folder: str, record: dict):
    """ultralytics' own exporter, as its users call it: ``YOLO(cfg).export(format="onnx")`` with its default
    opset and ``simplify=False``; the file is read back as written."""
    import onnx

    from onnx2caffe.exporters.torch_export import onnx_opset
    from onnx2caffe.families_models import ultralytics_yolo_object

    times = record["times"]
    t0 = time.perf_counter()
    yolo = ultralytics_yolo_object(net.kwargs["cfg"], seed)
    times["build"] = time.perf_counter() - t0
    record["parameters"] = sum(int(p.numel()) for p in yolo.model.parameters())
    t0 = time.perf_counter()
    os.makedirs(folder, exist_ok=True)
    log = io.StringIO()  # its progress lines
    with _chdir(folder), contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
        try:
            path = yolo.export(
                format="onnx", imgsz=list(shape[2:]), simplify=False, device="cpu", batch=shape[0]
            )
        except Exception as err:  # ultralytics raises plain exceptions
            from onnx2caffe.exporters.torch_export import ExportError

            raise ExportError(
                f"ultralytics' exporter failed: {type(err).__name__}: {_one_line(err, 300)}"
            ) from None
    times["export"] = time.perf_counter() - t0
    proto = onnx.load(os.path.join(folder, path) if not os.path.isabs(path) else path)
    record["exporter"] = "ultralytics"
    record["opset"] = onnx_opset(proto)
    return proto


def run_net(
    name: str | FamilyNet,
    shape: Sequence[int] | None = None,
    runtimes: Sequence[Any] = RUNTIMES,
    keep_dir: str | None = None,
    seed: int = 0,
    exporter: str | None = None,
    work_dir: str | None = None,
) -> dict[str, Any]:
    """Run one family net through the pipeline; returns its record (never raises for a model-side failure).

    shape: another input shape (the CI subset's smaller one); exporter: "dynamo" to export a torch net with the
    dynamo exporter (record name NAME.dynamo); runtimes: names or runtime objects (see zoo.run_model); keep_dir:
    keep the .onnx and Caffe files under keep_dir/<name>/; work_dir: where packages keep their settings and
    caches (isolate_package_files) and ultralytics writes its export (default: a temporary folder)."""
    from onnx2caffe.errors import ConversionError, Onnx2CaffeError

    net = name if isinstance(name, FamilyNet) else get_net(name)
    exporter = exporter or net.exporter
    if exporter not in ("torchscript", "dynamo", "ultralytics"):
        raise ValueError(f"unknown exporter {exporter!r}")
    if (exporter == "ultralytics") != (net.exporter == "ultralytics"):
        raise ValueError(f"{net.name}: exporter {exporter!r} does not apply (its exporter is {net.exporter})")
    shape = tuple(int(d) for d in (shape or net.shape))
    record_name = net.name if exporter == net.exporter else f"{net.name}.{exporter}"
    record: dict[str, Any] = {
        "model": record_name,
        "family": net.family,
        "source": package_version(net.package),
        "spec": " ".join([net.spec, *(f"{k}={v}" for k, v in net.kwargs.items())]),
        "weights": net.weights,
        "input_shape": list(shape),
        "times": {},
        "agreement": {},
        "outcome": "error",
    }
    t_all = time.perf_counter()
    with contextlib.ExitStack() as stack:
        if work_dir is None:
            work_dir = stack.enter_context(tempfile.TemporaryDirectory(prefix="onnx2caffe-families-"))
        isolate_package_files(work_dir)
        proto = None
        try:
            record["failed_step"] = "export-failed"
            if exporter == "ultralytics":
                proto = _export_ultralytics(
                    net, shape, seed, os.path.join(work_dir, "export", record_name), record
                )
            else:
                proto, _ = _export_torch(net, shape, exporter, seed, record)
            record["onnx_ops"] = dict(
                sorted(collections.Counter(n.op_type for n in proto.graph.node).items())
            )
            _convert_and_verify(record, proto, shape, runtimes, keep_dir, seed)
        except ConversionError as err:
            record["outcome"] = "refused"
            record["refused"] = refusal_details(proto, err)
            ops = collections.Counter()
            for g in record["refused"]:
                ops[g["op"]] += g["count"]
            record["message"] = (
                f"cannot convert {sum(ops.values())} node(s); ops without an exact standard-Caffe form: "
                + ", ".join(f"{op} ({n})" for op, n in sorted(ops.items()))
            )
        except Onnx2CaffeError as err:
            record["outcome"] = record.get("failed_step", "error")
            record["message"] = _one_line(err)
        except Exception as err:  # a crash in a library: keep going with the next net, but say what happened
            record["outcome"] = record.get("failed_step", "error")
            record["message"] = f"{type(err).__name__}: {_one_line(err)}"
        finally:
            record.pop("failed_step", None)
            record["times"]["total"] = time.perf_counter() - t_all
    return record


def _convert_and_verify(record, proto, shape, runtimes, keep_dir, seed):
    import onnx

    from onnx2caffe.convert import convert

    times = record["times"]
    with contextlib.ExitStack() as stack:
        if keep_dir is None:
            folder = stack.enter_context(tempfile.TemporaryDirectory(prefix="onnx2caffe-families-"))
        else:
            folder = os.path.join(keep_dir, record["model"])
            os.makedirs(folder, exist_ok=True)
            onnx.save(proto, os.path.join(folder, record["model"] + ".onnx"))
        prefix = os.path.join(folder, record["model"])
        record["failed_step"] = "convert-failed"
        t0 = time.perf_counter()
        try:
            result = convert(proto, prefix, check=False, seed=seed)
        finally:
            times["convert"] = time.perf_counter() - t0
        zoo.record_and_verify(record, result, proto, seed, runtimes)
    zoo.set_outcome(record)


# ------------------------------------------------------------------------------------------------ entry point


def _names(args_models: Sequence[str], ci: bool) -> list[str]:
    if args_models:
        return list(args_models)
    return list(CI_NETS) if ci else [n.name for n in family_nets()]


def _shape_for(name: str, ci: bool, size: int | None):
    net = get_net(name)
    shape = net.ci_shape if ci and net.ci_shape else net.shape
    if size:
        shape = (*shape[:2], size, size)
    return shape


def _run_all(args) -> int:
    """Each net in its own process (memory freed between nets) under a timeout; a net killed by the timeout
    gets a record saying so."""
    names = _names(args.models, args.ci)
    status = 0
    for name in names:
        if args.exporter and get_net(name).exporter == "ultralytics":
            continue  # ultralytics' own exporter has no dynamo form
        rec_name = name if args.exporter in (None, get_net(name).exporter) else f"{name}.{args.exporter}"
        if args.skip_existing and os.path.exists(zoo.record_path(args.results, rec_name)):
            print(f"{rec_name}: record exists, skipped")
            continue
        cmd = [sys.executable, "-m", "onnx2caffe.families", "run", name, "--results", args.results]
        for flag, value in (("--keep", args.keep), ("--exporter", args.exporter), ("--size", args.size)):
            if value:
                cmd += [flag, str(value)]
        cmd += ["--runtimes", args.runtimes, "--work", args.work] + (["--ci"] if args.ci else [])
        t0 = time.perf_counter()
        try:
            proc = subprocess.run(cmd, timeout=args.timeout)
            if proc.returncode != 0:
                status = 1
        except subprocess.TimeoutExpired:
            net = get_net(name)
            zoo.write_record(
                {
                    "model": rec_name,
                    "family": net.family,
                    "source": package_version(net.package),
                    "input_shape": list(_shape_for(name, args.ci, args.size)),
                    "times": {"total": time.perf_counter() - t0},
                    "agreement": {},
                    "outcome": "timeout",
                    "message": f"killed after {args.timeout} s",
                },
                args.results,
            )
            print(f"{rec_name}: timeout after {args.timeout} s")
            status = 1
        sys.stdout.flush()
    return status


def main(argv: list[str] | None = None) -> int:
    from onnx2caffe import families_table

    parser = argparse.ArgumentParser(
        prog="python -m onnx2caffe.families", description=__doc__.split("\n\n")[0]
    )
    sub = parser.add_subparsers(dest="cmd", required=True)
    p_list = sub.add_parser("list", help="the family nets, in table order")
    p_list.add_argument("--ci", action="store_true", help="only the CI subset")
    for cmd in ("run", "run-all"):
        p = sub.add_parser(cmd, help="export, convert and verify nets; one record each")
        p.add_argument("models", nargs="+" if cmd == "run" else "*")
        p.add_argument("--results", default=DEFAULT_RESULTS)
        p.add_argument(
            "--keep", default=None, metavar="DIR", help="keep the .onnx and Caffe files under DIR/"
        )
        p.add_argument("--ci", action="store_true", help="the CI subset's smaller input shapes")
        p.add_argument("--size", type=int, default=None, help="input height and width")
        p.add_argument("--exporter", choices=("torchscript", "dynamo"), default=None)
        p.add_argument("--runtimes", default=",".join(RUNTIMES))
        p.add_argument(
            "--work", default=os.path.join("out", "families-work"), help="package settings, caches, exports"
        )
        if cmd == "run-all":
            p.add_argument("--timeout", type=int, default=1800, help="seconds per net")
            p.add_argument("--skip-existing", action="store_true")
    for cmd in ("table", "survey"):
        t = sub.add_parser(
            cmd, help="render the records as Markdown" + (" (refused ops grouped)" if cmd == "survey" else "")
        )
        t.add_argument("--results", nargs="+", default=[DEFAULT_RESULTS])
        t.add_argument(
            "-o", "--output", default=os.path.join("docs", "families.md") if cmd == "table" else None
        )
    args = parser.parse_args(argv)
    if args.cmd == "list":
        print("\n".join(_names([], args.ci)))
        return 0
    if args.cmd in ("table", "survey"):
        records = [r for d in args.results for r in families_table.load_records(d)]
        text = (
            families_table.render_markdown(records)
            if args.cmd == "table"
            else families_table.render_survey(records)
        )
        if args.output:
            families_table.write_text(args.output, text)
            print(f"wrote {args.output}")
        else:
            print(text)
        return 0
    if args.cmd == "run-all":
        return _run_all(args)
    runtimes = [r for r in args.runtimes.split(",") if r]
    os.makedirs(args.work, exist_ok=True)
    isolate_package_files(os.path.abspath(args.work))
    status = 0
    for name in args.models:
        exporter = args.exporter if get_net(name).exporter != "ultralytics" else None
        rec = run_net(
            name,
            shape=_shape_for(name, args.ci, args.size),
            runtimes=runtimes,
            keep_dir=args.keep,
            exporter=exporter,
            work_dir=os.path.abspath(args.work),
        )
        zoo.write_record(rec, args.results)
        families_table.print_record(rec)
        sys.stdout.flush()
        if rec["outcome"] not in GOOD_OUTCOMES:
            status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())
