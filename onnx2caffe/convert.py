"""The conversion job: ONNX model -> checked Caffe model.

load (fixing dynamic input dimensions first when shapes are given, then onnx-simplifier) -> size limits
-> passes -> map every node (collecting every unsupported node into one ConversionError, writing nothing)
-> CaffeNet -> the check's memory estimate -> write prototxt, caffemodel, `prefix.names.json` and
`prefix.layers.json` (where each layer came from: onnx2caffe.origins) atomically
-> run a seeded random input through onnxruntime and each Caffe runtime -> per-output agreement report
(ToleranceError outside tolerance). limits.py documents each size limit and how it is estimated.

Written files: everything that can be known before writing (bad input, unsupported nodes, the size limits,
the check not fitting in memory) is refused with nothing written. Once written, the files are complete and
stay: when the check then fails (ToleranceError, exit 1) or cannot finish (no runtime, a runtime error,
out of memory: exit 2), the error names them and says they are unverified.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import os
import sys
import tempfile
import types
from collections.abc import Sequence
from typing import Any

import numpy as np
import onnx

from . import caffe_segments, limits, origins, progress
from .compare import DEFAULT_MAX_REL, DEFAULT_MIN_COSINE, compare_outputs
from .errors import (
    ConversionError,
    Onnx2CaffeError,
    ResourceError,
    RuntimeExecutionError,
    RuntimeUnavailableError,
    ToleranceError,
)
from .onnx_graph import OnnxGraph
from .onnx_io import SplitModel
from .registry import MapContext, NodeView, UnsupportedNodeError, lookup, mappers_for


@dataclasses.dataclass
class ConversionResult:
    net: Any  # CaffeNet
    report: list[dict]
    prototxt: str | None = None
    caffemodel: str | None = None
    names_json: str | None = None
    layers_json: str | None = None
    name_map: dict[str, str] = dataclasses.field(default_factory=dict)
    inputs: dict[str, tuple[int, ...]] = dataclasses.field(default_factory=dict)
    outputs: list[str] = dataclasses.field(default_factory=list)
    passes_applied: list[str] = dataclasses.field(default_factory=list)
    skipped: dict[str, str] = dataclasses.field(default_factory=dict)  # runtime -> why it was not used
    layers: dict | None = None  # where each Caffe layer came from (onnx2caffe.origins)

    @property
    def ok(self) -> bool:
        return all(r["ok"] for r in self.report)


def build_net(graph: OnnxGraph, name: str | None = None, layer_nodes: dict[str, str] | None = None):
    """Map every node of a prepared graph. Returns (CaffeNet, name map ONNX tensor -> Caffe blob).
    layer_nodes: a dict to fill with Caffe layer -> the node it was mapped from (onnx2caffe.origins).
    Raises ConversionError listing every unsupported node / attribute."""
    from . import op_mappers
    from .caffe_net import CaffeNet

    op_mappers.load_all()
    ctx = MapContext(graph)
    errors: list[UnsupportedNodeError] = []
    layers = []
    produced: set[str] = set()
    for t in graph.inputs:
        produced.add(ctx.blob(t))
    for node in graph.graph.node:
        opset = graph.node_opset(node)
        view = NodeView(node, opset)
        entry = lookup(node.op_type, opset, node.domain)
        if entry is None:
            others = mappers_for(node.op_type, node.domain)
            if others:
                ranges = ", ".join(e.opset_range for e in others)
                reason = f"no mapper at opset {opset} (supported opsets: {ranges})"
            else:
                reason = "no mapper for this op type (see `onnx2caffe ops`)"
            errors.append(UnsupportedNodeError(node.name, node.op_type, opset, reason, domain=view.domain))
            continue
        ctx.node = view
        budget = limits.node_budget(graph, node)
        try:
            with limits.address_space_budget(budget):
                out = entry.fn(view, ctx)
        except UnsupportedNodeError as exc:
            errors.append(exc)
            continue
        except MemoryError as exc:
            reason = (
                f"building its Caffe form needs more than the {limits.fmt_bytes(budget)} one node may use "
                f"({limits.memory_error_text(exc)}); a caffemodel holds at most "
                f"{limits.fmt_bytes(limits.CAFFEMODEL_LIMIT)}"
            )
            errors.append(UnsupportedNodeError(node.name, node.op_type, opset, reason, domain=view.domain))
            continue
        finally:
            ctx.node = None
        unhandled = view.unhandled_attrs()
        if unhandled:
            errors.append(
                UnsupportedNodeError(
                    node.name,
                    node.op_type,
                    opset,
                    "attribute(s) not handled by the mapper: " + ", ".join(unhandled),
                    domain=view.domain,
                )
            )
            continue
        out = list(out or [])
        tops = {t for layer in out for t in layer.top}
        for o in node.output:
            if o and (graph.consumers(o) or graph.is_graph_output(o)) and ctx.blob(o) not in tops:
                raise RuntimeError(
                    f"mapper {entry.fn.__module__}.{entry.fn.__name__} did not write output '{o}'"
                )
        for layer in out:
            for t in layer.top:
                if t in produced and t not in layer.bottom:
                    raise RuntimeError(f"blob {t!r} written twice (layer {layer.name!r})")
                produced.add(t)
        added = sum(int(np.size(b)) * 4 for layer in out for b in layer.blobs)
        if ctx.weight_bytes + added > limits.CAFFEMODEL_LIMIT:
            op = f"{view.domain}::{node.op_type}" if view.domain else node.op_type
            raise ConversionError(
                f"{graph.source}: node '{node.name}' ({op}, opset {opset}): "
                + limits.weights_message(added, ctx.weight_bytes)
            )
        ctx.weight_bytes += added
        layers.extend(out)
        if layer_nodes is not None:
            layer_nodes.update((layer.name, node.name) for layer in out)
    if errors:
        err = ConversionError(
            f"{graph.source}: cannot convert {len(errors)} node(s): " + "; ".join(str(e) for e in errors)
        )
        err.errors = errors
        raise err
    net = CaffeNet(name or graph.graph.name or "net")
    for t in graph.inputs:
        net.add_input(ctx.blob(t), graph.shape(t))
    for layer in layers:
        net.append(layer)
    name_map = {t: b for t, b in ctx.blob_map().items() if b in produced}
    for old, new in graph.aliases.items():
        while new in graph.aliases and graph.aliases[new] != new:
            new = graph.aliases[new]
        if new in name_map:
            name_map.setdefault(old, name_map[new])
    return net, name_map


OUTPUT_SUFFIXES = (".prototxt", ".caffemodel", ".names.json")


def write_outputs(
    net, name_map: dict[str, str], prefix: str, model=None, layers: dict | None = None
) -> tuple[str, str, str]:
    """Write prefix.prototxt, .caffemodel and .names.json (and .layers.json when `layers`, the record of
    onnx2caffe.origins, is given) as one set: every destination is checked first, each file is written to a
    temporary file beside its destination, and only when all are complete are they moved into place, so a
    failure (a destination that is a folder, a full disk, Ctrl-C) leaves none of them behind. `model`: the
    input (path), never overwritten. Returns the paths of the first three."""
    from .errors import OutputFileError
    from .fileio import write_files
    from .origins import SUFFIX, to_bytes

    dests = [prefix + ext for ext in OUTPUT_SUFFIXES] + ([prefix + SUFFIX] if layers is not None else [])
    if isinstance(model, (str, os.PathLike)):
        src = os.path.realpath(os.fspath(model))  # realpath: a symlinked input is its target
        if src in (os.path.realpath(d) for d in dests):
            raise OutputFileError(f"output {prefix} would overwrite the input model {src}")
    for d in dests:
        if os.path.isdir(d):
            raise OutputFileError(f"cannot write {d}: it is a folder")
    folder = os.path.dirname(os.path.abspath(prefix))
    if not os.path.isdir(folder):
        try:
            os.makedirs(folder, exist_ok=True)
        except OSError as exc:
            raise OutputFileError(f"cannot create output folder {folder}: {exc.strerror}") from exc
    # the caffemodel first: a process killed while writing it (the long part) leaves only that temp file
    order = [1, 0, 2] + ([3] if layers is not None else [])
    contents = {
        0: lambda f: f.write(net.prototxt_text().encode("utf-8")),
        1: lambda f: net.write_caffemodel_to(f, prefix + ".caffemodel"),
        2: lambda f: f.write((json.dumps(name_map, indent=1, ensure_ascii=False) + "\n").encode("utf-8")),
        3: lambda f: f.write(to_bytes(layers)),
    }
    write_files([(dests[i], contents[i]) for i in order])
    return prefix + ".prototxt", prefix + ".caffemodel", prefix + ".names.json"


def random_inputs(graph: OnnxGraph, seed: int = 0) -> dict[str, np.ndarray]:
    """Seeded standard-normal float32 inputs (negative values included, so sign-dependent layers are exercised)."""
    rng = np.random.default_rng(seed)
    # value for value rng.standard_normal(shape).astype(np.float32), without the float64 array
    return {t: limits.float32_normal(rng, graph.shape(t)) for t in graph.inputs}


def reference_outputs(
    model_bytes: bytes | str | os.PathLike | SplitModel, inputs: dict[str, np.ndarray], outputs: Sequence[str]
) -> dict:
    """Run the ONNX model (a SplitModel, serialized bytes, or the path of an .onnx file: onnxruntime then
    reads the file and its external data itself) on `inputs` with onnxruntime, on its unoptimised graph
    (ORT's fusions change rounding). A SplitModel's weights are fed to onnxruntime as inputs: the session
    holds no copy of them (onnx_io.run_onnxruntime)."""
    import onnxruntime as ort

    from .onnx_io import run_onnxruntime

    try:
        if isinstance(model_bytes, SplitModel):
            _, res = run_onnxruntime(model_bytes, inputs, list(outputs))
            return dict(zip(outputs, res, strict=True))
        if isinstance(model_bytes, os.PathLike):
            model_bytes = os.fspath(model_bytes)
        opts = ort.SessionOptions()
        # the unoptimised graph is the reference: ORT's fusions change rounding
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        opts.log_severity_level = 3
        sess = ort.InferenceSession(model_bytes, opts, providers=["CPUExecutionProvider"])
        res = sess.run(list(outputs), inputs)
    except Exception as exc:
        text = " ".join(str(exc).split())[:300]
        raise RuntimeExecutionError(f"onnxruntime cannot run the reference model: {text}") from exc
    return dict(zip(outputs, res, strict=True))


def _reference_model(split: SplitModel, renamed: bool) -> SplitModel:
    """The model as given (before fixing input shapes and before the passes), sharing its arrays, for
    onnxruntime; with unique node names when its nodes had to be named (onnxruntime refuses empty or
    repeated ones). A model with dynamic inputs is run as it is, on the fixed shapes' input."""
    from .onnx_graph import name_nodes

    if not renamed:
        return split
    skeleton = onnx.ModelProto()
    skeleton.CopyFrom(split.skeleton)  # weight-free: small
    name_nodes(skeleton)
    return SplitModel(skeleton, split.weights, split.source)


@contextlib.contextmanager
def _quiet_output():
    """Silence stdout and stderr, Python's and the file descriptors' (onnx-simplifier's C++ side prints its
    warnings straight to fd 2), for the duration of the block."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    try:
        with tempfile.TemporaryFile() as sink:
            os.dup2(sink.fileno(), 1)
            os.dup2(sink.fileno(), 2)
            try:
                with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
                    yield
            finally:
                os.dup2(saved[0], 1)
                os.dup2(saved[1], 2)
    finally:
        for fd in saved:
            os.close(fd)


def _needs_names(model: onnx.ModelProto) -> bool:
    names = [n.name for n in model.graph.node]
    return not all(names) or len(set(names)) != len(names)


def load_with_shapes(model, input_shapes) -> tuple[OnnxGraph, SplitModel]:
    """The graph to convert and the reference model for onnxruntime (sharing the graph's arrays: the weights
    are held once). With `input_shapes` (see onnx_graph.fix_input_shapes), the given dimensions are written
    into the model's inputs, then onnx-simplifier folds what they fixed (the Shape/Gather/Reshape chains of a
    dynamic export), as `onnx2caffe export` does; the reference stays the model as given (onnxruntime runs it
    on the fixed shapes), so the check also covers the fixing and the simplification."""
    from .onnx_graph import fix_input_shapes, load_split

    split, source = load_split(model)
    if not input_shapes:
        graph = OnnxGraph.load(split, detach_weights=True, source=source)
        return graph, _reference_model(split, graph.renamed_nodes)
    renamed = _needs_names(split.skeleton)
    fixed = onnx.ModelProto()
    fixed.CopyFrom(split.skeleton)  # weight-free: small
    work = SplitModel(fixed, split.weights, split.source)
    if fix_input_shapes(fixed, input_shapes, source):
        from .exporters.torch_export import ExportError, simplify_split

        # onnx-simplifier fails on what onnxruntime cannot run (custom ops, ...): the fixed model is then
        # converted as it is (the fold_constants pass folds the shape computations the fixed input makes
        # static), so the refusal names the nodes that have no Caffe form rather than the simplifier
        with progress.step("simplify"), contextlib.suppress(ExportError), _quiet_output():
            work = simplify_split(work)
    graph = OnnxGraph.load(work, detach_weights=True, source=source)
    del work, fixed
    return graph, _reference_model(split, renamed)


def runtime_objects(runtimes, caffe_root):
    """[(runtime, owned)] for names (started here, closed after) or runtime objects (borrowed)."""
    from .runtimes import available_runtimes, get_runtime

    if runtimes is None:
        names = available_runtimes()
        if not names:
            raise RuntimeUnavailableError(
                "no Caffe runtime available to check the model (build Caffe with `make caffe` or install "
                "opencv-python-headless<5), or convert with --no-check"
            )
        runtimes = names
    out = []
    try:
        for r in runtimes:
            if isinstance(r, str):
                out.append((get_runtime(r, caffe_root=caffe_root), True))
            else:
                out.append((r, False))
    except BaseException:
        for rt, owned in out:
            if owned:
                rt.close()
        raise
    return out


def convert(
    model: str | os.PathLike | onnx.ModelProto | SplitModel,
    output_prefix: str | os.PathLike | None,
    runtimes: Sequence[Any] | None = None,
    check: bool = True,
    seed: int = 0,
    caffe_root: str | os.PathLike | None = None,
    max_rel: float = DEFAULT_MAX_REL,
    min_cosine: float = DEFAULT_MIN_COSINE,
    passes: Sequence[str] | None = None,
    input_shapes: Sequence[Sequence[int]] | dict[str, Sequence[int]] | None = None,
    reference: tuple[dict[str, np.ndarray], dict[str, np.ndarray]] | None = None,
) -> ConversionResult:
    """Convert an ONNX model (file, ModelProto or SplitModel) to Caffe, write
    `output_prefix`.prototxt/.caffemodel/.names.json (nothing written when output_prefix is None) and, with
    check=True, compare every graph output of each runtime (names or runtime objects; None = every available
    one) with onnxruntime on a seeded random input.
    input_shapes: static shapes for the model's inputs (one per input in order, or by name), which fix its
    dynamic dimensions (see load_with_shapes).
    reference: (inputs, outputs) onnxruntime already computed for this very model (by ONNX name; `export`'s
    check): used as the reference when they are the inputs the check draws, instead of running it again.
    Raises ToleranceError (with `.result`) when an output is outside max_rel / min_cosine. Once the files are
    written, an error of the check (or running out of memory) says which files exist and that they are
    unverified; everything refused before that leaves nothing written."""
    written: list[str] = []
    try:
        return _convert(
            model, output_prefix, runtimes, check, seed, caffe_root, max_rel, min_cosine, passes, input_shapes,
            reference, written,
        )  # fmt: skip
    except Onnx2CaffeError as err:
        if written:
            err.args = (f"{err}; {_unverified(written)}",)
        raise
    except MemoryError as err:
        what = "the check" if written or not check else "the conversion"
        note = f"; {_unverified(written)}" if written else ""
        raise ResourceError(
            f"{what} ran out of memory ({limits.memory_error_text(err)}){note}; convert with --no-check or "
            "with a smaller input shape"
        ) from None


def _unverified(paths: Sequence[str]) -> str:
    return f"{', '.join(paths)} are written but UNVERIFIED (kept for inspection with `onnx2caffe verify`)"


def _reuse_reference(reference, feeds: dict[str, np.ndarray], outputs: Sequence[str]) -> dict | None:
    """The given (inputs, outputs) of onnxruntime when they were computed on exactly `feeds`, else None."""
    if reference is None:
        return None
    given_in, given_out = reference
    if given_out is None or set(given_in) != set(feeds) or any(o not in given_out for o in outputs):
        return None
    for name, x in feeds.items():
        y = given_in[name]
        if x.dtype != y.dtype or x.shape != y.shape or not np.array_equal(x, y):
            return None
    return {o: given_out[o] for o in outputs}


def _convert(
    model, output_prefix, runtimes, check, seed, caffe_root, max_rel, min_cosine, passes, input_shapes,
    reference_hint, written: list[str],
) -> ConversionResult:  # fmt: skip
    from .errors import OutputFileError
    from .passes import run_passes

    if output_prefix is not None and os.path.basename(os.fspath(output_prefix)) in ("", ".", ".."):
        raise OutputFileError(
            f"output prefix {os.fspath(output_prefix)!r} has no file name part, e.g. out/model"
        )
    with progress.step("load ONNX"):
        graph, reference = load_with_shapes(model, input_shapes)
    limits.check_tensor_sizes(graph)
    before = origins.snapshot(graph.graph.node)
    weights = sum(int(v.nbytes) for v in graph.constants.values())
    budget = limits.CAFFEMODEL_LIMIT + limits.CONST_COPIES * weights + limits.NODE_SLACK
    try:
        with limits.address_space_budget(budget), progress.step("graph passes"):
            applied = run_passes(graph, passes)
    except MemoryError as exc:
        raise ResourceError(
            f"{graph.source}: simplifying the graph needs more than {limits.fmt_bytes(budget)} "
            f"({limits.memory_error_text(exc)})"
        ) from None
    limits.check_weight_total(graph)
    prefix = os.fspath(output_prefix) if output_prefix is not None else None
    net_name = os.path.basename(prefix) if prefix else None
    layer_nodes: dict[str, str] = {}
    with progress.step("map to Caffe layers"):
        net, name_map = build_net(graph, net_name, layer_nodes)
    result = ConversionResult(
        net=net,
        report=[],
        name_map=name_map,
        inputs={name_map[t]: graph.shape(t) for t in graph.inputs},
        outputs=list(graph.outputs),
        passes_applied=applied,
        layers=origins.trace(before, graph, layer_nodes),
    )
    if check:  # before anything is written: a check that cannot fit in memory is refused up front
        from .runtimes import RUNTIME_NAMES

        names = [r if isinstance(r, str) else r.name for r in runtimes] if runtimes else list(RUNTIME_NAMES)
        caffe_bytes = sum(int(np.size(b)) * 4 for layer in net.layers for b in layer.blobs)
        blobs = segments = None
        if "pycaffe" in names:
            sized = limits.caffe_layer_bytes(net)  # Caffe's shape inference, once for both figures
            if sized is not None:
                blobs = sum(sized[0])
                segments = caffe_segments.smallest_peak(net, sized)
        est = limits.estimate_check_memory(graph, caffe_bytes, names, blobs, segments)
        limits.check_fits(est, graph.source)
    if prefix is not None:
        with progress.step("write Caffe files"):
            result.prototxt, result.caffemodel, result.names_json = write_outputs(
                net, name_map, prefix, model, result.layers
            )
        result.layers_json = prefix + origins.SUFFIX
        written.extend([result.prototxt, result.caffemodel, result.names_json, result.layers_json])
    if not check:
        return result
    feeds = random_inputs(graph, seed)
    refs = _reuse_reference(reference_hint, feeds, graph.outputs)
    if refs is None:
        with progress.step("onnxruntime reference"):
            refs = reference_outputs(reference, feeds, graph.outputs)
    del reference
    caffe_feeds = {name_map[t]: v for t, v in feeds.items()}
    out_blobs = [name_map[o] for o in graph.outputs]
    with tempfile.TemporaryDirectory(prefix="onnx2caffe-") as tmp:
        proto_path, model_path = result.prototxt, result.caffemodel
        if prefix is None:
            proto_path, model_path = net.save(os.path.join(tmp, "model"))
        auto = runtimes is None
        with progress.step("start Caffe runtimes"):
            rts = runtime_objects(runtimes, caffe_root)
        try:
            used_types = {layer.type for layer in net.layers}
            for rt, _ in rts:
                missing = sorted(used_types - set(rt.supported_layer_types()))
                if missing:
                    why = f"{rt.name} cannot load layer type(s) {', '.join(missing)}"
                    if not auto:
                        raise RuntimeUnavailableError(
                            f"{why}; check with another runtime (--runtime) or convert with --no-check"
                        )
                    result.skipped[rt.name] = why
                    continue
                with progress.step(f"check on {rt.name}"):
                    with rt.load(proto_path, model_path) as loaded:
                        outs = loaded.run(caffe_feeds, outputs=out_blobs)
                by_onnx = {o: outs.get(name_map[o]) for o in graph.outputs}
                rows = compare_outputs(refs, by_onnx, rt.name, max_rel, min_cosine)
                for row in rows:
                    row["blob"] = name_map[row["output"]]
                result.report.extend(rows)
        finally:
            for rt, owned in rts:
                if owned:
                    rt.close()
    if not result.report:
        raise RuntimeUnavailableError(
            "no available Caffe runtime can load the converted model: " + "; ".join(result.skipped.values())
        )
    bad = [r for r in result.report if not r["ok"]]
    if bad:
        r = bad[0]
        more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
        detail = r.get("note") or f"max_rel {r['max_rel']:.3g}, cosine {r['cosine']:.7f}"
        err = ToleranceError(
            f"{r['runtime']} output '{r['output']}' disagrees with onnxruntime: {detail} "
            f"(tolerance max_rel <= {max_rel:g}, cosine >= {min_cosine}){more}"
        )
        err.result = result
        raise err
    return result


def format_report(rows: list[dict]) -> str:
    lines = [f"{'runtime':<8} {'output':<24} {'max_abs':>10} {'max_rel':>10} {'cosine':>12}  ok"]
    for r in rows:
        lines.append(
            f"{r['runtime']:<8} {r['output']:<24} {r['max_abs']:>10.3g} {r['max_rel']:>10.3g} "
            f"{r['cosine']:>12.9f}  {'yes' if r['ok'] else 'NO ' + r.get('note', '')}"
        )
    return "\n".join(lines)


class _CallableModule(types.ModuleType):
    """Importing this module sets the package attribute `onnx2caffe.convert` to the module, shadowing the lazy
    `onnx2caffe.convert` function; making the module callable keeps `from onnx2caffe import convert` working
    in every import order."""

    def __call__(self, *args, **kwargs):
        return convert(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
