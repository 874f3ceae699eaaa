"""How much int8 loses on ncnn: the float32 and the int8 ncnn model on held-out images, compared.

For each table (one per calibration method), every held-out image goes through the float32 ncnn model (the
Caffe model converted as caffe2ncnn does) and through the int8 one (quantised from the table as ncnn2int8
does), both on the ncnn runtime itself, with the same preprocessing as the calibration. Per net output:
the mean and the worst, over the images, of the cosine similarity and of max_rel (max |int8 - fp32| /
max |fp32|) of the int8 output against the float32 one, and, when the output is a class score, the share of
positions whose top-1 class agrees. A class score is, unless the caller names the outputs, a Softmax output
(classes along its axis) or a 2-D output (N, K) with K >= 100 (the logits of a classifier, from an
InnerProduct or a pooled Flatten; fewer values are more likely a regression: boxes, landmarks).

Per layer: the mean cosine of every ncnn blob, and each Caffe layer's drift: how much lower its output's
cosine is than its inputs' (the worst input's). The layer with the largest drift is where int8 loses most;
the blob with the lowest cosine is where the loss has piled up most (usually an output).

Everything is kept as data (Evaluation.to_json()) for scripts and for a report page.
"""

from __future__ import annotations

import math
import os
import sys
import time
from dataclasses import asdict, dataclass, field

import numpy as np

from onnx2caffe.calibrate.images import BadInput, Preprocess, list_inputs, load_input
from onnx2caffe.errors import InputFileError


@dataclass
class OutputQuality:
    blob: str
    shape: list[int]
    layer_type: str | None
    class_axis: int | None  # None: not a class score
    cosine_mean: float
    cosine_worst: float
    max_rel_mean: float
    max_rel_worst: float
    top1_agreement: float | None  # share of positions whose arg-max agrees (class scores only)


@dataclass
class LayerDrift:
    layer: str  # the Caffe layer
    type: str  # its ncnn type
    blob: str  # its output (ncnn name)
    cosine_mean: float
    cosine_worst: float
    drift: float  # min cosine of its inputs - cosine of its output (means over the images)


@dataclass
class MethodEvaluation:
    method: str
    table: str
    int8_layers: int
    requantized: int
    outputs: list[OutputQuality]
    layers: list[LayerDrift]  # in net order
    worst_layer: LayerDrift | None  # the largest drift
    worst_blob: LayerDrift | None  # the lowest cosine
    seconds: float = 0.0


@dataclass
class Evaluation:
    prototxt: str
    caffemodel: str
    images: str
    n_images: int
    skipped: list[str]
    preprocess: dict
    fp16_rest: bool
    methods: list[MethodEvaluation] = field(default_factory=list)

    def to_json(self) -> dict:
        return _finite(asdict(self))


def _finite(v):
    if isinstance(v, dict):
        return {k: _finite(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_finite(x) for x in v]
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    a = np.asarray(a, np.float64).ravel()
    b = np.asarray(b, np.float64).ravel()
    na, nb = float(np.linalg.norm(a)), float(np.linalg.norm(b))
    if na == 0 and nb == 0:
        return 1.0
    if na == 0 or nb == 0:
        return 0.0
    return float(np.dot(a, b) / (na * nb))


def _max_rel(ref: np.ndarray, out: np.ndarray) -> float:
    ref = np.asarray(ref, np.float64)
    scale = float(np.max(np.abs(ref))) if ref.size else 0.0
    diff = float(np.max(np.abs(ref - np.asarray(out, np.float64)))) if ref.size else 0.0
    return diff / scale if scale > 0 else (0.0 if diff == 0 else math.inf)


MIN_LOGITS = 100


def class_axis(caffe, info, named: bool | None = None) -> int | None:
    """The class axis of a net output, or None (see the module docstring). named: True/False when the
    caller said whether this output is a class score."""
    shape = info.caffe_shape
    if named is False:
        return None
    if info.layer_type == "Softmax":
        lp = caffe.params(next(ly for ly in caffe.layers if ly.name == info.layer))
        a = int(lp.softmax_param.axis)
        return a + len(shape) if a < 0 else a
    if len(shape) == 2 and (shape[1] >= MIN_LOGITS or (named and shape[1] > 1)):
        return 1
    if named:
        return 1 if len(shape) >= 2 else 0
    return None


def _top1(ref: np.ndarray, out: np.ndarray, axis: int) -> float:
    return float(np.mean(np.argmax(ref, axis=axis) == np.argmax(out, axis=axis)))


def _input_preprocess(caffe, size, mean, norm, pixel) -> tuple[str, Preprocess]:
    inputs = caffe.net.inputs
    if len(inputs) != 1:
        raise InputFileError(
            f"the net has {len(inputs)} inputs; the evaluation needs exactly one image input"
        )
    name, shape = next(iter(inputs.items()))
    if len(shape) != 4 or shape[0] != 1:
        raise InputFileError(f"input {name!r} has shape {tuple(shape)}; the evaluation needs (1, C, H, W)")
    _, c, h, w = (int(d) for d in shape)
    if size is not None:
        h, w = size
    return name, Preprocess(c, h, w, tuple(mean), tuple(norm), pixel)


def evaluate(
    prototxt: str,
    caffemodel: str,
    tables: dict[str, str],
    images: str,
    *,
    mean=(0.0, 0.0, 0.0),
    norm=(1.0,),
    pixel: str = "BGR",
    size: tuple[int, int] | None = None,
    limit: int | None = None,
    fp16_rest: bool = True,
    num_threads: int | None = 1,
    progress: bool = False,
    class_outputs: list[str] | None = None,
) -> Evaluation:
    """Compare the int8 ncnn model of every table (method -> table path) with the float32 one on the images
    under `images` (files as `onnx2caffe calibrate` reads them; at most `limit`). class_outputs: the outputs
    that are class scores (default: the rule in the module docstring; [] for none)."""
    from onnx2caffe.ncnn.quantize import read_table
    from onnx2caffe.runtimes.ncnn import NcnnRuntime

    if not os.path.isdir(images):
        raise InputFileError(f"held-out image folder {images} not found")
    paths = list_inputs(images)
    if limit is not None:
        paths = paths[:limit]
    if not paths:
        raise InputFileError(f"held-out image folder {images} holds no files")
    parsed = {m: read_table(t) for m, t in tables.items()}
    fp32 = NcnnRuntime(num_threads=num_threads).load(prototxt, caffemodel)
    handles = {}
    try:
        for m, t in parsed.items():
            handles[m] = NcnnRuntime(table=t, fp16_rest=fp16_rest, num_threads=num_threads).load(
                prototxt, caffemodel
            )
        caffe = fp32.caffe
        in_name, pre = _input_preprocess(caffe, size, mean, norm, pixel)
        model = fp32.ncnn_model
        outputs = fp32.output_names()
        out_info = {o: model.blobs[o] for o in outputs}
        if class_outputs is not None:
            unknown = sorted(set(class_outputs) - set(outputs))
            if unknown:
                raise InputFileError(
                    f"no net output named {', '.join(unknown)} (outputs: {', '.join(outputs)})"
                )
        named = {o: (None if class_outputs is None else o in class_outputs) for o in outputs}
        axes = {o: class_axis(caffe, out_info[o], named[o]) for o in outputs}
        layers = [ly for ly in model.layers if ly.caffe_layer is not None and ly.tops]
        all_blobs = list(dict.fromkeys(t for ly in model.layers for t in ly.tops))
        input_blobs = {model.blobs[n].ncnn for n in model.inputs}
        acc = {
            m: {"out": {o: [] for o in outputs}, "blob": {b: [] for b in all_blobs}, "t": 0.0} for m in tables
        }
        used, skipped = 0, []
        for i, path in enumerate(paths):
            try:
                x = load_input(path, pre)
            except BadInput as e:
                skipped.append(str(e))
                continue
            used += 1
            ref = fp32.run_ncnn_blobs({in_name: x}, all_blobs)
            for m, h in handles.items():
                t0 = time.perf_counter()
                got = h.run_ncnn_blobs({in_name: x}, all_blobs)
                a = acc[m]
                for o in outputs:
                    info = out_info[o]
                    r = ref[info.ncnn].reshape(info.caffe_shape)
                    q = got[info.ncnn].reshape(info.caffe_shape)
                    top1 = _top1(r, q, axes[o]) if axes[o] is not None else None
                    a["out"][o].append((_cosine(r, q), _max_rel(r, q), top1))
                for b in all_blobs:
                    a["blob"][b].append(_cosine(ref[b], got[b]))
                a["t"] += time.perf_counter() - t0
            if progress:
                print(f"\revaluating: {i + 1}/{len(paths)}", end="", file=sys.stderr, flush=True)
        if progress:
            print(file=sys.stderr)
        if not used:
            raise InputFileError(f"none of the {len(paths)} files in {images} is a usable input")
        ev = Evaluation(
            prototxt, caffemodel, images, used, skipped,
            {"channels": pre.channels, "height": pre.height, "width": pre.width, "mean": list(pre.mean),
             "norm": list(pre.norm), "pixel": pre.pixel},
            fp16_rest,
        )  # fmt: skip
        for m, h in handles.items():
            a = acc[m]
            outs = []
            for o in outputs:
                rows = a["out"][o]
                cos = [r[0] for r in rows]
                rel = [r[1] for r in rows]
                top = [r[2] for r in rows if r[2] is not None]
                info = out_info[o]
                outs.append(
                    OutputQuality(
                        o, list(info.caffe_shape), info.layer_type, axes[o], float(np.mean(cos)), float(np.min(cos)),
                        float(np.mean(rel)), float(np.max(rel)), float(np.mean(top)) if top else None,
                    )
                )  # fmt: skip
            mean_cos = {b: float(np.mean(v)) for b, v in a["blob"].items()}
            worst_cos = {b: float(np.min(v)) for b, v in a["blob"].items()}
            drifts = []
            for ly in layers:
                into = [mean_cos.get(b, 1.0) if b not in input_blobs else 1.0 for b in ly.bottoms] or [1.0]
                top = min(ly.tops, key=lambda t: mean_cos[t])
                drifts.append(
                    LayerDrift(
                        ly.caffe_layer, ly.type, top, mean_cos[top], worst_cos[top], min(into) - mean_cos[top]
                    )
                )
            qm = h.ncnn_model
            ev.methods.append(
                MethodEvaluation(
                    m, tables[m], len(qm.int8), len(qm.notes), outs, drifts,
                    max(drifts, key=lambda d: d.drift) if drifts else None,
                    min(drifts, key=lambda d: d.cosine_mean) if drifts else None,
                    a["t"],
                )
            )  # fmt: skip
        return ev
    finally:
        fp32.close()
        for h in handles.values():
            h.close()


def _f(v, spec=".6f") -> str:
    return "-" if v is None else format(v, spec)


def format_evaluation(ev: Evaluation) -> str:
    """The terminal report: per method and output, then the comparison of the methods."""
    lines = [
        f"int8 vs float32 on ncnn: {ev.prototxt}, {ev.n_images} held-out image(s) from {ev.images}"
        + (f" ({len(ev.skipped)} skipped)" if ev.skipped else "")
        + ("; float layers stored as float16 (as ncnn2int8)" if ev.fp16_rest else "")
    ]
    head = [
        "method",
        "output",
        "cos mean",
        "cos worst",
        "max_rel mean",
        "max_rel worst",
        "top-1",
        "most drift (layer: drift)",
    ]
    rows = []
    for me in ev.methods:
        w = me.worst_layer
        drift = f"{w.layer} ({w.type}): {w.drift:.2e}" if w else "-"
        for i, o in enumerate(me.outputs):
            rows.append(
                [
                    me.method if i == 0 else "",
                    o.blob,
                    _f(o.cosine_mean),
                    _f(o.cosine_worst),
                    _f(o.max_rel_mean, ".4f"),
                    _f(o.max_rel_worst, ".4f"),
                    "-" if o.top1_agreement is None else f"{100 * o.top1_agreement:.1f}%",
                    drift if i == 0 else "",
                ]
            )
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(head)]
    for r in [head, *rows]:
        lines.append("  ".join(c.ljust(wd) for c, wd in zip(r, widths, strict=True)).rstrip())
    if len(ev.methods) > 1:
        best = {}
        for o in ev.methods[0].outputs:
            scores = [
                (me.outputs[[x.blob for x in me.outputs].index(o.blob)].cosine_mean, me.method)
                for me in ev.methods
            ]
            best[o.blob] = max(scores)[1]
        lines.append("best method by mean cosine: " + ", ".join(f"{b}: {m}" for b, m in best.items()))
    return "\n".join(lines)
