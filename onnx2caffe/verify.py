"""The verify job: compare any ONNX model with any Caffe model on the same input.

The ONNX model runs in onnxruntime (the reference, unoptimised graph, as in convert's check) and the Caffe
model in each chosen Caffe runtime. ONNX tensors are paired with Caffe blobs through the converter's name map
(`<prefix>.names.json` beside the prototxt, or a given file). Without an entry, graph inputs and outputs are
paired by name (exact, then the converter's sanitised spelling), and outputs still unpaired by position among
the Caffe net's outputs when their counts and shapes agree (reported as such).

Per-layer mode also compares every Caffe blob that has an ONNX counterpart, in the Caffe net's layer order;
the intermediate ONNX tensors are obtained by adding them as outputs to a copy of the model (with the types
and shapes from ONNX shape inference where known). A blob that a later layer overwrites in place only
holds its last value after the forward pass, so only its last writer is compared. The first blob outside
tolerance, per runtime, is the first disagreement. Only the graph outputs decide `ok` (intermediate rows
are diagnostics: a blob paired by name alone may legitimately differ).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import onnx

from . import progress
from .compare import DEFAULT_MAX_REL, DEFAULT_MIN_COSINE, compare_outputs
from .errors import InputFileError

METHOD_MAP, METHOD_NAME, METHOD_SANITISED, METHOD_POSITION = "names map", "name", "sanitised name", "position"


@dataclasses.dataclass
class VerifyResult:
    model: str
    prototxt: str
    caffemodel: str
    names_file: str | None
    max_rel: float
    min_cosine: float
    runtimes: list[str]
    input_map: dict[str, str]  # ONNX input -> Caffe input blob
    input_sources: dict[str, str]  # ONNX input -> "random (seed 0)" / "file x.npy" / "image x.png"
    output_map: dict[str, str]  # ONNX output -> Caffe blob
    output_match: dict[str, str]  # ONNX output -> how it was paired (METHOD_*)
    outputs: list[dict]  # one row per (runtime, graph output)
    per_layer: list[dict] | None  # one row per (runtime, layer top), None without per-layer mode
    first_disagreement: dict[str, dict | None]  # runtime -> first per-layer row outside tolerance
    notes: list[str] = dataclasses.field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(r["ok"] for r in self.outputs)

    def to_json(self) -> dict:
        """A JSON-able dict (non-finite numbers become null). Rows: runtime, output (the ONNX tensor), blob,
        layer, type, shape (the Caffe blob's), max_abs, max_rel, cosine, ok (null: not compared), note."""
        return _jsonable(
            {
                "ok": self.ok,
                "model": self.model,
                "prototxt": self.prototxt,
                "caffemodel": self.caffemodel,
                "names_file": self.names_file,
                "tolerance": {"max_rel": self.max_rel, "min_cosine": self.min_cosine},
                "runtimes": self.runtimes,
                "inputs": [
                    {"onnx": t, "blob": b, "source": self.input_sources.get(t)}
                    for t, b in self.input_map.items()
                ],
                "output_match": [
                    {"onnx": t, "blob": b, "method": self.output_match[t]} for t, b in self.output_map.items()
                ],
                "outputs": self.outputs,
                "per_layer": self.per_layer,
                "first_disagreement": self.first_disagreement if self.per_layer is not None else None,
                "notes": self.notes,
            }
        )


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (float, np.floating)):
        v = float(value)
        return v if math.isfinite(v) else None
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    return value


# ------------------------------------------------------------------------------------------- name map


def default_names_file(prototxt: str, caffemodel: str | None = None) -> str | None:
    """`<prefix>.names.json` beside the prototxt (or the caffemodel) if it exists."""
    for path in (prototxt, caffemodel):
        if not path:
            continue
        base, ext = os.path.splitext(os.fspath(path))
        if ext.lower() not in (".prototxt", ".caffemodel", ".pbtxt", ".txt"):
            base = os.fspath(path)
        candidate = base + ".names.json"
        if os.path.isfile(candidate):
            return candidate
    return None


def load_names(path: str) -> dict[str, str]:
    """A names map file: a JSON object ONNX tensor name -> Caffe blob name. InputFileError when bad."""
    if not os.path.exists(path):
        raise InputFileError(f"{path}: no such file (names map)")
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        text = " ".join(str(exc).split())[:200]
        raise InputFileError(f"{path}: not a names map ({text})") from None
    if not isinstance(data, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in data.items()
    ):
        raise InputFileError(
            f"{path}: not a names map (expected a JSON object: ONNX tensor name -> Caffe blob name)"
        )
    return data


# ------------------------------------------------------------------------------------------- the Caffe side


class _NetInfo:
    """Layer order, blob writers and input shapes of a CaffeNet."""

    def __init__(self, net) -> None:
        self.net = net
        self.inputs: dict[str, tuple[int, ...]] = dict(net.inputs)
        self.outputs: list[str] = [b for b in net.outputs if b not in self.inputs]
        self.writers: dict[str, list[int]] = {}
        for i, layer in enumerate(net.layers):
            if layer.type == "Input":
                continue
            for t in layer.top:
                self.writers.setdefault(t, []).append(i)
        self.blobs: set[str] = set(self.writers) | set(self.inputs)

    def last_writer(self, blob: str):
        idx = self.writers.get(blob)
        return self.net.layers[idx[-1]] if idx else None


def _squeezed(shape: Sequence[int]) -> tuple[int, ...]:
    return tuple(d for d in shape if d != 1)


def _compatible(ref_shape: Sequence[int], out_shape: Sequence[int]) -> bool:
    """Same shape, or the same values laid out with extra/missing axes of size 1 (e.g. (1, 10) vs (1, 10, 1, 1),
    OpenCV's (n, 1) for a 1-D blob)."""
    ref_shape, out_shape = tuple(ref_shape), tuple(out_shape)
    if ref_shape == out_shape:
        return True
    return math.prod(ref_shape) == math.prod(out_shape) and _squeezed(ref_shape) == _squeezed(out_shape)


def _align(ref: np.ndarray, out: np.ndarray) -> tuple[np.ndarray, str | None]:
    """`out` reshaped to ref's shape when they are compatible (with a note unless it is OpenCV's 1-D form)."""
    if out.shape == ref.shape or not _compatible(ref.shape, out.shape):
        return out, None
    note = None
    if not (ref.ndim == 1 and out.shape == (ref.size, 1)):
        note = f"Caffe shape {tuple(out.shape)} compared as {tuple(ref.shape)}"
    return out.reshape(ref.shape), note


# ------------------------------------------------------------------------------------------- the job


def verify(
    model: str | os.PathLike | onnx.ModelProto,
    prototxt: str | os.PathLike,
    caffemodel: str | os.PathLike,
    runtimes: Sequence[Any] | str | None = None,
    names: str | os.PathLike | Mapping[str, str] | None = None,
    inputs: Mapping[str, np.ndarray] | None = None,
    seed: int = 0,
    input_files: Sequence[str] = (),
    images: Sequence[str] = (),
    mean: str | Sequence[float] | None = None,
    scale: float | str | None = None,
    pixel: str = "BGR",
    per_layer: bool = False,
    max_rel: float = DEFAULT_MAX_REL,
    min_cosine: float = DEFAULT_MIN_COSINE,
    caffe_root: str | os.PathLike | None = None,
) -> VerifyResult:
    """Compare an ONNX model with a Caffe model on one input (see the module docstring).

    runtimes: None (every available one), "all" (every one, each required), or runtime names / objects.
    names: a names map file or dict; None looks for `<prefix>.names.json` beside the prototxt.
    inputs: ready arrays by ONNX input name; otherwise input_files / images / seed (see onnx2caffe.inputs).
    Raises InputFileError (and other Onnx2CaffeErrors) for bad input; disagreement is `result.ok == False`.
    """
    from .caffe_net import CaffeNet
    from .convert import reference_outputs, runtime_objects
    from .inputs import prepare_inputs
    from .onnx_graph import OnnxGraph
    from .onnx_io import SplitModel
    from .registry import sanitize_name
    from .runtimes import RUNTIME_NAMES

    prototxt, caffemodel = os.fspath(prototxt), os.fspath(caffemodel)
    for kind, path in (("prototxt", prototxt), ("caffemodel", caffemodel)):
        if not os.path.isfile(path):
            raise InputFileError(f"{path}: no such file ({kind})")
    graph = OnnxGraph.load(model, detach_weights=True)  # the weights once, as arrays (see the reference)
    net = CaffeNet.load(prototxt, caffemodel)
    info = _NetInfo(net)
    if not info.inputs:
        raise InputFileError(f"{prototxt}: the Caffe net has no Input layer (nothing to feed)")
    notes: list[str] = []

    # ---- names map
    names_file = None
    if names is None:
        names_file = default_names_file(prototxt, caffemodel)
        name_map = load_names(names_file) if names_file else {}
    elif isinstance(names, Mapping):
        name_map = dict(names)
    else:
        names_file = os.fspath(names)
        name_map = load_names(names_file)
    onnx_order: dict[str, int] = {t: -1 for t in graph.inputs}
    for i, node in enumerate(graph.graph.node):
        for o in node.output:
            if o:
                onnx_order.setdefault(o, i)
    valid_map = {t: b for t, b in name_map.items() if t in onnx_order and b in info.blobs}
    if name_map and len(valid_map) < len(name_map):
        where = names_file or "the names map"
        notes.append(
            f"{where}: {len(name_map) - len(valid_map)} of {len(name_map)} entries name no ONNX tensor or Caffe "
            "blob of these models (ignored)"
        )

    def by_name(tensor: str, allowed) -> tuple[str | None, str | None]:
        if tensor in valid_map and valid_map[tensor] in allowed:
            return valid_map[tensor], METHOD_MAP
        if tensor in allowed:
            return tensor, METHOD_NAME
        s = sanitize_name(tensor)
        if s in allowed:
            return s, METHOD_SANITISED
        return None, None

    # ---- inputs: ONNX graph input -> Caffe input blob
    input_map: dict[str, str] = {}
    for t in graph.inputs:
        blob, _ = by_name(t, [b for b in info.inputs if b not in input_map.values()])
        if blob is not None:
            input_map[t] = blob
    rest_onnx = [t for t in graph.inputs if t not in input_map]
    rest_caffe = [b for b in info.inputs if b not in input_map.values()]
    if rest_onnx:
        if len(rest_onnx) == len(rest_caffe) and all(
            tuple(graph.shape(t)) == info.inputs[b] for t, b in zip(rest_onnx, rest_caffe, strict=True)
        ):
            input_map.update(zip(rest_onnx, rest_caffe, strict=True))
            notes.append(
                "inputs paired by position: "
                + ", ".join(f"{t} -> {b}" for t, b in zip(rest_onnx, rest_caffe, strict=True))
            )
        else:
            raise InputFileError(
                f"cannot pair ONNX input(s) {', '.join(map(repr, rest_onnx))} with the Caffe net's inputs "
                f"({', '.join(map(repr, rest_caffe)) or 'none left'}): names and shapes differ; give --names FILE"
            )
    for t, b in input_map.items():
        if tuple(graph.shape(t)) != info.inputs[b]:
            raise InputFileError(
                f"input shapes do not match: ONNX '{t}' is {tuple(graph.shape(t))}, Caffe '{b}' is {info.inputs[b]}"
            )
    if isinstance(inputs, Mapping) and inputs:
        feeds, sources = _given_inputs(graph, inputs, input_map)
    else:
        feeds, sources = prepare_inputs(
            graph,
            seed=seed,
            input_files=input_files,
            images=images,
            mean=mean,
            scale=scale,
            pixel=pixel,
            aliases={b: t for t, b in input_map.items()},
        )
    caffe_feeds = {input_map[t]: v for t, v in feeds.items()}

    # ---- outputs: ONNX graph output -> Caffe blob (position pairing waits for the Caffe shapes)
    output_map: dict[str, str] = {}
    output_match: dict[str, str] = {}
    for o in graph.outputs:
        blob, how = by_name(o, info.blobs)
        if blob is not None:
            output_map[o], output_match[o] = blob, how
    unpaired = [o for o in graph.outputs if o not in output_map]
    spare = [b for b in info.outputs if b not in output_map.values()]

    # ---- per-layer plan: (layer index, blob, ONNX tensor or None, note)
    plan: list[tuple[int, str, str | None, str | None]] = []
    if per_layer:
        plan = _per_layer_plan(net, info, valid_map, onnx_order, sanitize_name)

    # ---- reference
    wanted = list(graph.outputs)
    extra = []
    for _, _, t, _ in plan:
        if t is not None and t not in wanted and t not in extra and t not in feeds:
            extra.append(t)
    ref_model = graph.model
    if extra:
        ref_model = onnx.ModelProto()
        ref_model.CopyFrom(graph.model)
        known = {vi.name: vi for vi in ref_model.graph.value_info}
        for t in extra:
            vi = onnx.ValueInfoProto()
            if t in known:
                vi.CopyFrom(known[t])
            else:  # no inferred type: onnxruntime infers it itself
                vi.name = t
            ref_model.graph.output.append(vi)
    with progress.step("onnxruntime reference"):
        # as convert's check runs it (the weights fed as inputs): the same numbers as convert's report
        refs = reference_outputs(SplitModel(ref_model, graph.detached_weights()), feeds, wanted + extra)
    refs.update({t: v for t, v in feeds.items()})

    # ---- Caffe runtimes
    if isinstance(runtimes, str):
        runtimes = list(RUNTIME_NAMES) if runtimes == "all" else [runtimes]
    requested = list(dict.fromkeys(list(output_map.values()) + spare + [b for _, b, t, _ in plan if t]))
    results: dict[str, tuple[dict[str, np.ndarray], set[str]]] = {}
    rt_names: list[str] = []
    rts = runtime_objects(runtimes, caffe_root)
    try:
        for rt, _ in rts:
            with progress.step(f"check on {rt.name}"), rt.load(prototxt, caffemodel) as loaded:
                available = set(loaded.blob_names())
                ask = [b for b in requested if b in available]
                outs = loaded.run(caffe_feeds, outputs=ask)
            results[rt.name] = (outs, available)
            rt_names.append(rt.name)
    finally:
        for rt, owned in rts:
            if owned:
                rt.close()

    if unpaired:
        first = results[rt_names[0]][0]
        if len(unpaired) == len(spare) and all(
            b in first and _compatible(refs[o].shape, first[b].shape)
            for o, b in zip(unpaired, spare, strict=True)
        ):
            for o, b in zip(unpaired, spare, strict=True):
                output_map[o], output_match[o] = b, METHOD_POSITION
            notes.append(
                "outputs paired by position (no names map entry, no blob of the same name): "
                + ", ".join(f"{o} -> {b}" for o, b in zip(unpaired, spare, strict=True))
            )
        else:
            raise InputFileError(
                f"cannot pair ONNX output(s) {', '.join(map(repr, unpaired))} with Caffe blobs: no names map entry, "
                f"no blob of that name, and the Caffe net's {len(spare)} other output(s) "
                f"({', '.join(map(repr, spare)) or 'none'}) do not agree in count and shape; give --names FILE"
            )
    output_map = {o: output_map[o] for o in graph.outputs}

    # ---- comparisons
    out_rows: list[dict] = []
    layer_rows: list[dict] = []
    first_bad: dict[str, dict | None] = {}
    for rt_name in rt_names:
        outs, available = results[rt_name]
        for o, b in output_map.items():
            out_rows.append(
                _row(
                    rt_name,
                    o,
                    b,
                    info.last_writer(b),
                    refs[o],
                    outs.get(b),
                    max_rel,
                    min_cosine,
                    b in available,
                )
                | {"match": output_match[o]}
            )
        if not per_layer:
            continue
        first_bad[rt_name] = None
        for idx, blob, tensor, note in plan:
            layer = net.layers[idx]
            if tensor is None:
                layer_rows.append(_skipped_row(rt_name, blob, layer, note))
                continue
            if blob not in available:
                layer_rows.append(_skipped_row(rt_name, blob, layer, f"blob not available in {rt_name}"))
                continue
            row = _row(
                rt_name,
                tensor,
                blob,
                layer,
                refs[tensor],
                outs.get(blob),
                max_rel,
                min_cosine,
                blob in available,
            )
            layer_rows.append(row)
            if row["ok"] is False and first_bad[rt_name] is None:
                first_bad[rt_name] = row

    return VerifyResult(
        model=graph.source,
        prototxt=prototxt,
        caffemodel=caffemodel,
        names_file=names_file,
        max_rel=max_rel,
        min_cosine=min_cosine,
        runtimes=rt_names,
        input_map=input_map,
        input_sources=sources,
        output_map=output_map,
        output_match=output_match,
        outputs=out_rows,
        per_layer=layer_rows if per_layer else None,
        first_disagreement=first_bad,
        notes=notes,
    )


def _given_inputs(graph, inputs: Mapping[str, np.ndarray], input_map: dict[str, str]):
    """Arrays given by the caller (keys: ONNX input or Caffe input blob names), checked like .npy files."""
    spelling = {t: t for t in graph.inputs} | {b: t for t, b in input_map.items()}
    feeds: dict[str, np.ndarray] = {}
    for key, value in inputs.items():
        if key not in spelling:
            raise InputFileError(f"unknown input name {key!r} (inputs: {', '.join(graph.inputs)})")
        t = spelling[key]
        arr = np.asarray(value)
        if tuple(arr.shape) != tuple(graph.shape(t)):
            raise InputFileError(
                f"input '{t}': shape {tuple(arr.shape)} does not match {tuple(graph.shape(t))}"
            )
        feeds[t] = np.ascontiguousarray(arr, dtype=np.float32)
    missing = [t for t in graph.inputs if t not in feeds]
    if missing:
        raise InputFileError(f"missing input(s) {', '.join(map(repr, missing))}")
    return feeds, {t: "given array" for t in feeds}


def _per_layer_plan(net, info: _NetInfo, valid_map, onnx_order, sanitize_name):
    """[(layer index, blob, ONNX tensor or None, note)] for every top of every non-Input layer, in order."""
    if valid_map:
        candidates: dict[str, list[str]] = {}
        for t, b in valid_map.items():
            candidates.setdefault(b, []).append(t)
        # several tensors on one blob: aliases (same value) or in-place writers (the last value survives)
        pick = {b: max(ts, key=lambda t: onnx_order[t]) for b, ts in candidates.items()}
    else:
        sanitised: dict[str, str] = {}
        for t in onnx_order:
            sanitised.setdefault(sanitize_name(t), t)
        pick = {}
        for b in info.writers:
            t = b if b in onnx_order else sanitised.get(b)
            if t is not None:
                pick[b] = t
    plan = []
    for idx, layer in enumerate(net.layers):
        if layer.type == "Input":
            continue
        for blob in layer.top:
            writers = info.writers[blob]
            if writers[-1] != idx:
                later = net.layers[writers[-1]].name
                plan.append((idx, blob, None, f"overwritten in place by layer '{later}'"))
            elif blob not in pick:
                plan.append((idx, blob, None, "no ONNX counterpart"))
            elif not valid_map and len(writers) > 1:
                plan.append(
                    (idx, blob, None, "in-place blob paired by name only: ONNX counterpart ambiguous")
                )
            else:
                plan.append((idx, blob, pick[blob], None))
    return plan


def _row(rt, tensor, blob, layer, ref, out, max_rel, min_cosine, available) -> dict:
    row = {
        "runtime": rt,
        "output": tensor,
        "blob": blob,
        "layer": layer.name if layer is not None else None,
        "type": layer.type if layer is not None else "Input",
        "shape": list(np.shape(out)) if out is not None else None,
    }
    if out is None:
        note = f"blob not available in {rt}" if not available else "blob missing from the runtime's results"
        row.update(max_abs=math.inf, max_rel=math.inf, cosine=0.0, ok=False, note=note)
        return row
    out, note = _align(np.asarray(ref), np.asarray(out))
    (cmp,) = compare_outputs({tensor: ref}, {tensor: out}, rt, max_rel, min_cosine)
    row.update({k: v for k, v in cmp.items() if k not in ("runtime", "output")})
    if note and "note" not in row:
        row["note"] = note
    return row


def _skipped_row(rt, blob, layer, note) -> dict:
    return {
        "runtime": rt,
        "output": None,
        "blob": blob,
        "layer": layer.name,
        "type": layer.type,
        "shape": None,
        "max_abs": None,
        "max_rel": None,
        "cosine": None,
        "ok": None,
        "note": note,
    }


# ------------------------------------------------------------------------------------------- text output


def _fmt(v, spec: str) -> str:
    if v is None:
        return "-"
    return format(v, spec) if math.isfinite(v) else str(v)


def format_table(rows: list[dict], label: str = "blob/output") -> str:
    """The rows as an aligned table: runtime, blob/output, layer, type, shape, max_abs, max_rel, cosine, ok."""
    head = ["runtime", label, "layer", "type", "shape", "max_abs", "max_rel", "cosine", "ok"]
    cells = []
    for r in rows:
        name = r["blob"]
        if r.get("output") and r["output"] != r["blob"] and label != "blob":
            name = f"{r['output']} -> {r['blob']}"
        ok = "-" if r["ok"] is None else ("yes" if r["ok"] else "NO")
        if r.get("note"):
            ok += f" ({r['note']})"
        shape = "x".join(map(str, r["shape"])) if r.get("shape") is not None else "-"
        cells.append(
            [
                r["runtime"],
                name,
                r["layer"] or "-",
                r["type"] or "-",
                shape,
                _fmt(r["max_abs"], ".3g"),
                _fmt(r["max_rel"], ".3g"),
                _fmt(r["cosine"], ".9f"),
                ok,
            ]
        )
    widths = [max(len(h), *(len(c[i]) for c in cells)) if cells else len(h) for i, h in enumerate(head)]
    right = {5, 6, 7}

    def line(vals):
        parts = [
            v.rjust(w) if i in right else v.ljust(w)
            for i, (v, w) in enumerate(zip(vals, widths, strict=True))
        ]
        return "  ".join(parts).rstrip()

    return "\n".join([line(head)] + [line(c) for c in cells])


def format_result(result: VerifyResult) -> str:
    """The full terminal report."""
    lines = [f"verify {result.model} against {result.prototxt} + {result.caffemodel}"]
    lines.append(f"names map: {result.names_file or 'none (paired by name)'}")
    for t, b in result.input_map.items():
        shown = t if t == b else f"{t} -> {b}"
        lines.append(f"input {shown}: {result.input_sources.get(t, '?')}")
    lines.extend(f"note: {n}" for n in result.notes)
    lines.append("")
    lines.append("graph outputs:")
    lines.append(format_table(result.outputs))
    if result.per_layer is not None:
        lines.append("")
        lines.append("per layer (Caffe layer order):")
        lines.append(format_table(result.per_layer, label="blob"))
        for rt in result.runtimes:
            bad = result.first_disagreement.get(rt)
            compared = [r for r in result.per_layer if r["runtime"] == rt and r["ok"] is not None]
            if bad is None:
                lines.append(f"{rt}: all {len(compared)} compared blobs agree")
            else:
                lines.append(f"{rt}: first disagreement: {describe_row(bad)}")
    tol = f"max_rel <= {result.max_rel:g}, cosine >= {result.min_cosine}"
    n_bad = sum(1 for r in result.outputs if not r["ok"])
    if n_bad:
        lines.append(
            f"FAILED: {n_bad} of {len(result.outputs)} output comparison(s) outside tolerance ({tol})"
        )
    else:
        lines.append(f"OK: {len(result.outputs)} output comparison(s) within tolerance ({tol})")
    return "\n".join(lines)


def describe_row(row: dict) -> str:
    text = (
        f"layer '{row['layer']}' ({row['type']}), blob '{row['blob']}': max_abs {_fmt(row['max_abs'], '.3g')}, "
        f"max_rel {_fmt(row['max_rel'], '.3g')}, cosine {_fmt(row['cosine'], '.9f')}"
    )
    if row.get("note"):
        text += f" ({row['note']})"
    return text


def failure_message(result: VerifyResult) -> str:
    """One line for stderr when outputs disagree."""
    bad = [r for r in result.outputs if not r["ok"]]
    r = bad[0]
    detail = r.get("note") or f"max_rel {_fmt(r['max_rel'], '.3g')}, cosine {_fmt(r['cosine'], '.9f')}"
    more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
    msg = (
        f"{r['runtime']} output '{r['output']}' (blob '{r['blob']}') disagrees with onnxruntime: {detail} "
        f"(tolerance max_rel <= {result.max_rel:g}, cosine >= {result.min_cosine}){more}"
    )
    first = result.first_disagreement.get(r["runtime"]) if result.per_layer is not None else None
    if first is not None:
        msg += f"; first disagreeing layer '{first['layer']}' ({first['type']}), blob '{first['blob']}'"
    return msg
