"""The calibration job: Caffe model + images -> ncnn int8 table.

1. Read the prototxt and caffemodel (onnx2caffe.caffe_net); the quantisable layers are the TEST-phase
   Convolution (plain, grouped, depthwise) and InnerProduct layers; their weight scales come from the
   caffemodel (weights.py).
2. The blobs to observe are those layers' bottom blobs. A blob that an in-place layer (ReLU, Scale...)
   overwrites after a quantisable layer has read it would come back with the later value, so in that
   case the net is run from a rewritten prototxt (a temporary copy where in-place tops get new names,
   weights unchanged) and the exact version each layer reads is requested.
3. Pass 1: one forward per image requesting only those blobs: absmax per blob (and the element count,
   for aciq). The activations are kept in memory while they fit in ``cache_mb``.
4. Pass 2 (methods that need a histogram, or --report): the 2048-bin histograms, from the cached
   activations, or from a second forward for the images that did not fit. With a large enough cache
   the whole job costs one forward per image.
5. Thresholds (methods.py), then the table (table.py), written atomically.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from onnx2caffe.calibrate import methods as M
from onnx2caffe.calibrate.images import BadInput, Preprocess, iter_inputs, list_inputs
from onnx2caffe.calibrate.table import write_table
from onnx2caffe.calibrate.weights import METHOD_FAMILY, QUANT_LAYER_TYPES, geometry, weight_scales
from onnx2caffe.errors import InputFileError, RuntimeUnavailableError

METHODS = ("kl", "kl-legacy", "aciq", "minmax", "percentile")
_TEST = 1  # caffe_pb2.Phase.TEST


@dataclass
class Config:
    proto: str
    model: str
    images: str
    output: str
    mean: tuple[float, ...] = (0.0, 0.0, 0.0)
    norm: tuple[float, ...] = (1.0,)
    group: int = 1
    method: str = "kl"
    percentile: float = M.DEFAULT_PERCENTILE
    pixel: str = "BGR"
    size: tuple[int, int] | None = None
    runtime: str | None = None
    workers: int = 2
    report: bool = False
    cache_mb: float = 1024.0
    progress: bool = True


@dataclass
class QuantLayer:
    name: str
    type: str
    blob: str  # the bottom blob as named in the prototxt
    run_blob: str  # the name to request from the runtime (differs after the in-place rewrite)
    weight_scales: list[float] = field(default_factory=list)


@dataclass
class BlobStats:
    absmax: float = 0.0
    numel: int = 0  # elements per image (ncnn's stat.total)
    hist: np.ndarray | None = None  # ncnn binning, non-zero |x|
    zeros: int = 0
    legacy_hist: np.ndarray | None = None


@dataclass
class LayerResult:
    layer: QuantLayer
    absmax: float
    threshold: float
    scale: float
    kl: float | None
    clipped: float | None


@dataclass
class Result:
    layers: list[LayerResult]
    images_used: int
    images_skipped: int
    seconds: dict[str, float]
    runtime: str
    style: str


# --------------------------------------------------------------------------------------------- model


def _in_test_phase(proto) -> bool:
    if len(proto.include):
        return any((not r.HasField("phase")) or r.phase == _TEST for r in proto.include)
    return not any(r.HasField("phase") and r.phase == _TEST for r in proto.exclude)


def find_quant_layers(net, family: str, per_channel: bool) -> tuple[list[QuantLayer], object | None]:
    """The quantisable layers with their weight scales, and the NetParameter to run (None: the
    original prototxt is exact)."""
    layers = [ly for ly in net.layers if _in_test_phase(ly.proto)]
    quant: list[QuantLayer] = []
    version: dict[str, int] = {}
    reads: list[tuple[QuantLayer, int]] = []
    for ly in layers:
        if ly.type in QUANT_LAYER_TYPES:
            if not ly.bottom:
                raise InputFileError(f"layer {ly.name!r} ({ly.type}) has no bottom blob")
            if not ly.blobs:
                raise InputFileError(f"layer {ly.name!r} ({ly.type}) has no weights in the caffemodel")
            if any(c.isspace() for c in ly.name):
                raise InputFileError(f"layer {ly.name!r}: names with whitespace cannot go into an ncnn table")
            g = geometry(ly.proto)
            q = QuantLayer(ly.name, ly.type, ly.bottom[0], ly.bottom[0])
            q.weight_scales = weight_scales(ly.blobs[0], g, family, per_channel)
            quant.append(q)
            reads.append((q, version.get(ly.bottom[0], 0)))
        for t in ly.top:
            version[t] = version.get(t, -1) + 1
    if not any(v != version.get(q.blob, 0) for q, v in reads):
        return quant, None
    # rewrite: every re-definition of a blob gets a fresh name, readers follow
    param = net.to_proto()
    del param.layer[:]
    taken = {t for ly in layers for t in list(ly.top) + list(ly.bottom)}
    current: dict[str, str] = {}
    seen: dict[str, int] = {}
    qi = 0
    for ly in layers:
        lp = param.layer.add()
        lp.CopyFrom(ly.proto)
        lp.ClearField("blobs")
        bottoms = [current.get(b, b) for b in lp.bottom]
        if ly.type in QUANT_LAYER_TYPES:
            quant[qi].run_blob = bottoms[0]
            qi += 1
        tops = []
        for t in lp.top:
            n = seen.get(t, -1) + 1
            seen[t] = n
            new = t
            if n > 0:
                new = f"{t}__v{n}"
                while new in taken:
                    new += "_"
                taken.add(new)
            current[t] = new
            tops.append(new)
        del lp.bottom[:]
        lp.bottom.extend(bottoms)
        del lp.top[:]
        lp.top.extend(tops)
    return quant, param


def _input_shape(net, size: tuple[int, int] | None) -> tuple[str, tuple[int, int, int, int]]:
    inputs = net.inputs
    if len(inputs) != 1:
        raise InputFileError(
            f"the net has {len(inputs)} inputs ({', '.join(inputs) or 'no Input layer'}); calibration "
            "needs exactly one image input"
        )
    name, shape = next(iter(inputs.items()))
    if len(shape) != 4:
        raise InputFileError(f"input {name!r} has shape {tuple(shape)}; calibration needs (N, C, H, W)")
    _, c, h, w = (int(d) for d in shape)
    if size is not None:
        h, w = size
    return name, (1, c, h, w)


# --------------------------------------------------------------------------------------------- progress


class Progress:
    """tqdm when installed, else a one-line counter on stderr."""

    def __init__(self, total: int, desc: str, enabled: bool) -> None:
        self.total, self.desc, self.enabled, self.n = total, desc, enabled, 0
        self._bar = None
        self._last = 0.0
        if enabled:
            try:
                from tqdm import tqdm

                self._bar = tqdm(total=total, desc=desc, unit="img", file=sys.stderr)
            except ImportError:
                self._bar = None

    def update(self) -> None:
        self.n += 1
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.update(1)
            return
        now = time.monotonic()
        if now - self._last >= 0.2 or self.n == self.total:
            self._last = now
            print(f"\r{self.desc}: {self.n}/{self.total}", end="", file=sys.stderr, flush=True)

    def write(self, msg: str) -> None:
        """A message on its own line, keeping the counter readable."""
        if self.enabled and self._bar is None and self.n:
            print("\r\033[K", end="", file=sys.stderr)
        print(msg, file=sys.stderr, flush=True)
        self._last = 0.0

    def close(self) -> None:
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.close()
        else:
            print(file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------- job


def open_runtime(name: str | None):
    """The runtime called name; None: pycaffe if it starts here, else opencv."""
    from onnx2caffe.runtimes import get_runtime

    if name is not None:
        return get_runtime(name)
    try:
        return get_runtime("pycaffe")
    except RuntimeUnavailableError as first:
        try:
            return get_runtime("opencv")
        except RuntimeUnavailableError as second:
            raise RuntimeUnavailableError(f"no Caffe runtime: {first}; {second}") from None


def _check_files(cfg: Config) -> list[Path]:
    for what, p in (("prototxt", cfg.proto), ("caffemodel", cfg.model)):
        if not os.path.isfile(p):
            raise InputFileError(f"{what} {p} not found")
    if not os.path.isdir(cfg.images):
        raise InputFileError(f"image folder {cfg.images} not found")
    paths = list_inputs(cfg.images)
    if not paths:
        raise InputFileError(f"image folder {cfg.images} holds no files")
    return paths


def run_calibration(cfg: Config, runtime=None, warn: Callable[[str], None] | None = None) -> Result:
    """Run the whole job and write cfg.output. runtime: an open Runtime to use (else one is opened
    and closed here)."""
    return run_calibrations(cfg, {cfg.method: cfg.output}, runtime, warn)[cfg.method]


def run_calibrations(
    cfg: Config,
    outputs: dict[str, str],
    runtime=None,
    warn: Callable[[str], None] | None = None,
) -> dict[str, Result]:
    """One table per method (outputs: method -> table path) from one set of forward passes: the blob
    statistics are gathered once with what every method needs, then each method's thresholds and weight
    scales are computed and its table written. Returns method -> Result."""
    from dataclasses import replace

    from onnx2caffe.caffe_net import CaffeNet

    warn = warn or (lambda msg: print(f"onnx2caffe: warning: {msg}", file=sys.stderr))
    methods = list(outputs)
    for m in methods:
        if m not in METHODS:
            raise ValueError(f"unknown method {m!r}")
    t_start = time.perf_counter()
    paths = _check_files(cfg)
    net = CaffeNet.load(cfg.proto, cfg.model)
    quants = {}
    rewritten = None
    for m in methods:
        quants[m], rewritten = find_quant_layers(net, METHOD_FAMILY[m], cfg.group == 1)
    quant = quants[methods[0]]
    if not quant:
        raise InputFileError(
            f"{cfg.proto}: no quantisable layer (Convolution or InnerProduct with weights) in the TEST net"
        )
    in_name, in_shape = _input_shape(net, cfg.size)
    pre = Preprocess(in_shape[1], in_shape[2], in_shape[3], tuple(cfg.mean), tuple(cfg.norm), cfg.pixel)
    blobs = list(dict.fromkeys(q.run_blob for q in quant))

    own_rt = runtime is None
    rt = open_runtime(cfg.runtime) if own_rt else runtime
    seconds: dict[str, float] = {"setup": 0.0, "pass1": 0.0, "pass2": 0.0, "thresholds": 0.0}
    try:
        with tempfile.TemporaryDirectory(prefix="onnx2caffe-calib-") as tmp:
            proto = cfg.proto
            if rewritten is not None:
                from google.protobuf import text_format

                proto = os.path.join(tmp, "calibration.prototxt")
                Path(proto).write_text(text_format.MessageToString(rewritten, as_utf8=True), encoding="utf-8")
            model = rt.load(proto, cfg.model)
            try:
                missing = [b for b in blobs if b not in set(model.blob_names())]
                if missing:
                    raise InputFileError(f"the {rt.name} runtime cannot return blob(s) {', '.join(missing)}")
                seconds["setup"] = time.perf_counter() - t_start
                stats, used, skipped, secs = _collect(model, in_name, blobs, paths, pre, cfg, warn, methods)
                seconds.update(secs)
            finally:
                model.close()
    finally:
        if own_rt:
            rt.close()

    out: dict[str, Result] = {}
    for m in methods:
        t0 = time.perf_counter()
        mcfg = replace(cfg, method=m, output=outputs[m])
        results = []
        per_blob: dict[str, tuple[M.Threshold, float | None]] = {}
        for q in quants[m]:
            if q.run_blob not in per_blob:
                per_blob[q.run_blob] = _threshold(stats[q.run_blob], mcfg, q, warn)
            th, clipped = per_blob[q.run_blob]
            results.append(LayerResult(q, stats[q.run_blob].absmax, th.threshold, th.scale, th.kl, clipped))
        family = METHOD_FAMILY[m]
        style = "legacy" if family == "legacy" else "ncnn"
        write_table(
            outputs[m],
            [(r.layer.name, r.layer.weight_scales) for r in results],
            [(r.layer.name, r.scale) for r in results],
            style,
        )
        secs = dict(seconds)
        secs["thresholds"] = time.perf_counter() - t0
        secs["total"] = time.perf_counter() - t_start
        out[m] = Result(results, used, skipped, secs, rt.name, style)
    return out


def _threshold(st: BlobStats, cfg: Config, q: QuantLayer, warn) -> tuple[M.Threshold, float | None]:
    if st.absmax <= 0:
        warn(
            f"blob {q.blob!r} (input of {q.name!r}) is 0 on every calibration image; "
            f"activation scale {M.ZERO_BLOB_SCALE}"
        )
        return M.Threshold(127.0 / M.ZERO_BLOB_SCALE, M.ZERO_BLOB_SCALE), (
            0.0 if st.hist is not None else None
        )
    m = cfg.method
    if m == "kl":
        th = M.kl_ncnn(st.hist, st.absmax)
    elif m == "kl-legacy":
        th = M.kl_legacy(st.legacy_hist, st.absmax)
    elif m == "aciq":
        th = M.aciq(st.absmax, st.numel)
    elif m == "minmax":
        th = M.minmax(st.absmax)
    else:
        th = M.percentile(st.hist, st.zeros, st.absmax, cfg.percentile)
    clipped = M.clipped_share(st.hist, st.zeros, st.absmax, th.threshold) if st.hist is not None else None
    return th, clipped


@dataclass
class _Kept:
    """One blob of one image, as pass 2 needs it: the values (float32, 1-D) and how many zeros the blob
    had. mode "abs": |x|, without the zeros when `packed` (else with them); "pos": the x > 0 only (the
    legacy histogram drops negatives and counts zeros in bin 0); "signed": the non-zero x when
    `packed`, else all of x."""

    values: np.ndarray
    zeros: int
    packed: bool


# a blob is packed (its zeros dropped) when at least this share of it is zero: ReLU outputs halve
_PACK_ZEROS = 0.25


def _keep(a: np.ndarray, mode: str) -> tuple[_Kept, float]:
    """What pass 2 needs of one blob, and its absmax."""
    v = a.ravel()
    if not v.size:
        return _Kept(np.zeros(0, np.float32), 0, True), 0.0
    nnz = int(np.count_nonzero(v))
    zeros = v.size - nnz
    pack = zeros >= _PACK_ZEROS * v.size
    if mode == "pos":
        absmax = max(float(v.max()), -float(v.min()))
        return _Kept(v[v > 0], zeros, True), absmax
    if pack:
        v = v[v != 0]
    if mode == "abs":
        v = np.abs(v)
        return _Kept(v, zeros, pack), float(v.max()) if v.size else 0.0
    absmax = max(float(v.max()), -float(v.min())) if v.size else 0.0
    return _Kept(v, zeros, pack), absmax


def _ncnn_counts(k: _Kept, absmax: float, signed: bool) -> np.ndarray:
    """ncnn's bins of the non-zero |x|: int(|x| / absmax * 2048) in float32 (x 2048 is exact), capped at
    2047 (the value 2048 exactly, |x| == absmax, is folded into bin 2047)."""
    v = np.divide(np.abs(k.values) if signed else k.values, np.float32(absmax))
    np.multiply(v, np.float32(M.NUM_BINS), out=v)
    counts = np.bincount(v.astype(np.intp), minlength=M.NUM_BINS + 1)
    counts[M.NUM_BINS - 1] += counts[M.NUM_BINS]
    counts = counts[: M.NUM_BINS]
    if not k.packed:  # the zeros are still there, in bin 0: ncnn skips them
        counts[0] -= k.zeros
    return counts


def _collect(model, in_name: str, blobs: Sequence[str], paths, pre, cfg: Config, warn, methods=None):
    """Pass 1 (absmax per blob; the activations kept in memory while they fit in cfg.cache_mb) and
    pass 2 (histograms: from memory, else from a second forward). The forward of the next image runs in
    a helper thread while this one works on the previous image's blobs (the runtimes release the GIL
    while the net runs: OpenCV in its C++ code, pycaffe waiting on its worker process)."""
    stats = {b: BlobStats() for b in blobs}
    methods = methods or [cfg.method]
    need_ncnn_hist = any(m in ("kl", "percentile") for m in methods) or cfg.report
    need_legacy_hist = "kl-legacy" in methods
    need_pass2 = need_ncnn_hist or need_legacy_hist
    mode = "signed" if need_ncnn_hist and need_legacy_hist else ("pos" if need_legacy_hist else "abs")
    budget = cfg.cache_mb * 2**20 if need_pass2 else 0
    cache: dict[int, dict[str, _Kept]] = {}
    cached_bytes = 0
    good: list[int] = []
    skipped = 0
    wanted = list(blobs)

    def observe(i: int, outs: dict[str, np.ndarray]) -> None:
        nonlocal cached_bytes
        good.append(i)
        kept = {}
        for b in blobs:
            a = outs[b]
            st = stats[b]
            st.numel = int(a.size)
            if need_pass2:
                kept[b], absmax = _keep(a, mode)
            else:
                absmax = float(np.max(np.abs(a))) if a.size else 0.0
            st.absmax = max(st.absmax, absmax)
        size = sum(k.values.nbytes for k in kept.values())
        if need_pass2 and cached_bytes + size <= budget:
            cache[i] = kept
            cached_bytes += size

    t0 = time.perf_counter()
    bar = Progress(len(paths), "pass 1/2 (ranges)" if need_pass2 else "pass 1/1 (ranges)", cfg.progress)
    try:
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="calib-forward") as fwd:
            pending = None
            for i, _path, x in iter_inputs(paths, pre, cfg.workers):
                bar.update()
                if isinstance(x, BadInput):
                    if cfg.progress:
                        bar.write(f"onnx2caffe: warning: skipping {x}")
                    else:
                        warn(f"skipping {x}")
                    skipped += 1
                    continue
                nxt = (i, fwd.submit(model.run, {in_name: x}, outputs=wanted))
                if pending is not None:
                    observe(pending[0], pending[1].result())
                pending = nxt
            if pending is not None:
                observe(pending[0], pending[1].result())
    finally:
        bar.close()
    t1 = time.perf_counter()
    if not good:
        raise InputFileError(f"none of the {len(paths)} files in {cfg.images} is a usable calibration input")

    if need_pass2:
        for st in stats.values():
            if st.absmax > 0:
                st.hist = np.zeros(M.NUM_BINS, np.int64) if need_ncnn_hist else None
                st.legacy_hist = np.zeros(M.NUM_BINS, np.int64) if need_legacy_hist else None

        def accumulate(kept: dict[str, _Kept]) -> None:
            for b in blobs:
                st = stats[b]
                if st.absmax <= 0:
                    continue
                k = kept[b]
                if st.hist is not None:
                    st.hist += _ncnn_counts(k, st.absmax, mode == "signed")
                    st.zeros += k.zeros
                if st.legacy_hist is not None:
                    # np.histogram over [0, absmax] of the signed blob: negatives fall outside, zeros in bin 0
                    pos = k.values if mode == "pos" else k.values[k.values > 0]
                    st.legacy_hist += M.legacy_histogram(pos, np.float32(st.absmax))
                    st.legacy_hist[0] += k.zeros

        bar = Progress(len(good), "pass 2/2 (histograms)", cfg.progress)
        try:
            rest = [i for i in good if i not in cache]
            for i in [i for i in good if i in cache]:
                accumulate(cache.pop(i))
                bar.update()
            if rest:
                with ThreadPoolExecutor(max_workers=1, thread_name_prefix="calib-forward") as fwd:
                    pending = None
                    for _, _path, x in iter_inputs([paths[i] for i in rest], pre, cfg.workers):
                        if isinstance(x, BadInput):  # readable in pass 1: the file changed meanwhile
                            raise InputFileError(f"{x} (it was readable in pass 1)")
                        nxt = fwd.submit(model.run, {in_name: x}, outputs=wanted)
                        if pending is not None:
                            accumulate({b: _keep(a, mode)[0] for b, a in pending.result().items()})
                            bar.update()
                        pending = nxt
                    if pending is not None:
                        accumulate({b: _keep(a, mode)[0] for b, a in pending.result().items()})
                        bar.update()
        finally:
            bar.close()
    t2 = time.perf_counter()
    return stats, len(good), skipped, {"pass1": t1 - t0, "pass2": t2 - t1}


def format_report(result: Result) -> str:
    """Per layer: bottom blob, absmax, threshold, scale, share of values clipped, KL value."""
    rows = [("layer", "blob", "absmax", "threshold", "scale", "clipped", "KL")]
    for r in result.layers:
        rows.append(
            (
                r.layer.name,
                r.layer.blob,
                f"{r.absmax:.6g}",
                f"{r.threshold:.6g}",
                f"{r.scale:.6g}",
                "-" if r.clipped is None else f"{100 * r.clipped:.4f}%",
                "-" if r.kl is None else f"{r.kl:.6g}",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows)
