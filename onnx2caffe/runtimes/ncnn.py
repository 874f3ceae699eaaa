"""The "ncnn" runtime: a Caffe model run on Tencent ncnn (the `ncnn` wheel's Python bindings), in-process.

load(prototxt, caffemodel) converts the Caffe model with onnx2caffe.ncnn (what caffe2ncnn does; with a
calibration table, what ncnn2int8 does) into a temporary folder, and ncnn loads the .param/.bin from
there with its own readers. The folder goes when the model is closed.

Blobs. run(..., outputs=[...]) takes Caffe blob names and returns arrays in Caffe's shapes: a Caffe blob's
value after a forward pass (in-place layers included) is the ncnn blob of the same name (see
onnx2caffe.ncnn.builder), and ncnn's Mat for one sample (no batch axis; global pooling and InnerProduct
give 1-D Mats) holds the same values in the same order, so it is reshaped to the Caffe shape. A blob that
int8 inference keeps in int8 (a requantized convolution output) is divided by its scale. DetectionOutput's
rows (label, score, box; ncnn sorts them by score) are given back in Caffe's layout (1, 1, K, 7) with
image id 0 and Caffe's order (by label, then score); no detection gives Caffe's single row of -1.

Batch. ncnn has no batch axis: an input of N samples runs the net N times and the results are stacked.
The converter refuses nets that mix samples (Concat on axis 0, ...). A new input shape converts the model
again for that shape (Reshape, Crop and Interp sizes are written explicitly).

Options: float16/bfloat16 storage and arithmetic are off (ncnn enables fp16 on CPUs that have it, which is
not what a float32 check or an int8-vs-float32 measure wants); light mode is off so that every blob of
a forward pass can be read; Winograd and im2col-GEMM convolution stay
on (ncnn's defaults, within float32 noise of direct convolution); int8 inference is on (it only applies to
layers whose weights are int8).
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
import weakref
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from onnx2caffe.errors import RuntimeExecutionError, RuntimeUnavailableError
from onnx2caffe.runtimes.base import LoadedModel, Runtime, as_float32_inputs, check_files, check_inputs

HOW_TO_GET = "install it with `pip install 'onnx2caffe[ncnn]'` (the ncnn wheel)"


def _ncnn():
    try:
        import ncnn
    except ImportError as e:
        raise RuntimeUnavailableError(
            f"ncnn runtime unavailable: cannot import ncnn ({e}); " + HOW_TO_GET
        ) from None
    return ncnn


class NcnnRuntime(Runtime):
    """ncnn, float32 or (with `table`) int8 as ncnn2int8 quantises. fp16_rest: with a table, store the
    float layers' weights as float16 like ncnn2int8 does. num_threads: ncnn's thread count (default 1:
    ncnn's OpenMP threads keep spinning after each layer, which starves the numpy work done between runs
    here (measured: a 20-image R-Net evaluation took 17 s with 2 threads on 2 busy cores, 2 s with 1);
    give more for big nets on an idle machine)."""

    def __init__(
        self,
        table: str | os.PathLike | None = None,
        fp16_rest: bool = True,
        num_threads: int | None = 1,
    ) -> None:
        self._ncnn = _ncnn()
        self.table = None
        if table is not None:
            from onnx2caffe.ncnn.quantize import Table, read_table

            self.table = table if isinstance(table, Table) else read_table(table)
        self.name = "ncnn-int8" if table is not None else "ncnn"
        self.fp16_rest = fp16_rest
        self.num_threads = num_threads

    def supported_layer_types(self) -> frozenset[str]:
        from onnx2caffe.ncnn import SUPPORTED_TYPES

        return frozenset(SUPPORTED_TYPES)

    def load(self, prototxt: str | Path, caffemodel: str | Path | None = None) -> NcnnModelHandle:
        proto_path, model_path = check_files(self.name, prototxt, caffemodel)
        return NcnnModelHandle(self, proto_path, model_path)

    def option(self):
        opt = self._ncnn.Option()
        for name in (
            "use_fp16_storage",
            "use_fp16_packed",
            "use_fp16_arithmetic",
            "use_bf16_storage",
            "use_bf16_packed",
        ):
            if hasattr(opt, name):
                setattr(opt, name, False)
        opt.use_int8_inference = True
        opt.lightmode = False  # keep every blob: several can be read from one forward pass
        opt.use_vulkan_compute = False
        if self.num_threads:
            opt.num_threads = int(self.num_threads)
        return opt


class NcnnModelHandle(LoadedModel):
    """A Caffe model converted to ncnn and loaded; `ncnn_model` is the NcnnModel for the declared input
    shapes (the .param/.bin ncnn loaded are in `folder` while the model is open)."""

    def __init__(self, runtime: NcnnRuntime, prototxt: Path, caffemodel: Path | None) -> None:
        super().__init__(prototxt, caffemodel)
        from onnx2caffe.ncnn import load_caffe_model

        self._rt = runtime
        self.folder = tempfile.mkdtemp(prefix="onnx2caffe-ncnn-")
        self._finalizer = weakref.finalize(self, shutil.rmtree, self.folder, True)
        self._nets: dict[tuple, tuple] = {}
        self._closed = False
        try:
            self.caffe = load_caffe_model(prototxt, caffemodel)
            self.ncnn_model = self._variant(None, None)[1]
        except Exception:
            self.close()
            raise
        self._declared = tuple(sorted(self.ncnn_model.inputs.items()))
        self._nets[self._declared] = self._nets.pop(None)
        m = self.ncnn_model
        self._inputs = list(m.inputs)
        self._blobs = list(m.blobs)
        consumed = {b for layer in self.caffe.layers for b in layer.bottom}
        self._outputs = [b for b in self.caffe.net.outputs if b not in consumed and b not in m.inputs]

    def _variant(self, key: tuple, shapes: dict | None):
        """(ncnn.Net, NcnnModel) for input shapes `key` (converted and loaded once per shape)."""
        if key in self._nets:
            return self._nets[key]
        from onnx2caffe.ncnn import NcnnUnsupportedError, convert_model
        from onnx2caffe.ncnn.reader import with_input_shapes

        model = self.caffe if shapes is None else with_input_shapes(self.caffe, shapes)
        try:
            ncnn_model = convert_model(model, self._rt.table, fp16_rest=self._rt.fp16_rest)
        except NcnnUnsupportedError as err:
            exc = RuntimeExecutionError(f"{self._rt.name}: cannot load {self.prototxt}: {err}")
            exc.unsupported = err.layers
            raise exc from None
        stem = os.path.join(self.folder, f"net{len(self._nets)}")
        ncnn_model.write(stem + ".param", stem + ".bin")
        ncnn = self._rt._ncnn
        net = ncnn.Net()
        net.opt = self._rt.option()
        if net.load_param(stem + ".param") != 0 or net.load_model(stem + ".bin") != 0:
            raise RuntimeExecutionError(
                f"{self._rt.name}: ncnn cannot load the model converted from {self.prototxt}"
            )
        self._nets[key] = (net, ncnn_model)
        return self._nets[key]

    def run(
        self, inputs: Mapping[str, np.ndarray], outputs: Sequence[str] | None = None
    ) -> dict[str, np.ndarray]:
        if self._closed:
            raise RuntimeExecutionError(f"{self._rt.name}: model {self.prototxt} was closed")
        arrays = as_float32_inputs(inputs)
        check_inputs(self._rt.name, arrays, self._inputs)
        wanted = (
            list(self._outputs)
            if outputs is None
            else ([outputs] if isinstance(outputs, str) else list(outputs))
        )
        wanted = list(dict.fromkeys(wanted))
        bad = [n for n in wanted if n not in self._blobs]
        if bad:
            raise RuntimeExecutionError(
                f"{self._rt.name}: {self.prototxt.name} has no blob named {', '.join(map(repr, bad))}"
            )
        batch = {a.shape[0] if a.ndim else 1 for a in arrays.values()}
        if len(batch) != 1:
            raise RuntimeExecutionError(f"{self._rt.name}: inputs with different batch sizes {sorted(batch)}")
        n = batch.pop()
        shapes = {k: tuple(v.shape) for k, v in arrays.items()}
        key = tuple(sorted(shapes.items()))
        net, model = self._variant(key, None if key == self._declared else shapes)
        results: dict[str, list[np.ndarray]] = {w: [] for w in wanted}
        ncnn = self._rt._ncnn
        for i in range(n):
            ex = net.create_extractor()
            for name, arr in arrays.items():
                sample = arr[i] if arr.ndim > 1 else arr[i : i + 1]
                shape = model.blobs[name].ncnn_shape
                ex.input(model.blobs[name].ncnn, as_mat(ncnn, sample.reshape(shape)))
            for w in wanted:
                info = model.blobs[w]
                ret, mat = ex.extract(info.ncnn)
                if ret != 0:
                    raise RuntimeExecutionError(
                        f"{self._rt.name}: ncnn failed computing blob {w!r} (layer {info.layer!r}, {info.layer_type})"
                    )
                results[w].append(self._caffe_sample(model, info, mat, whole=n == 1))
        out = {}
        for w, parts in results.items():
            info = model.blobs[w]
            if info.layer_type == "DetectionOutput":
                out[w] = parts[0]
            else:
                out[w] = np.stack(parts).reshape(info.caffe_shape)
        return out

    def run_ncnn_blobs(self, inputs: Mapping[str, np.ndarray], blobs: Sequence[str]) -> dict[str, np.ndarray]:
        """One sample (inputs of batch 1, Caffe input names): the ncnn blobs named `blobs` (any ncnn blob of
        `ncnn_model`, in-place versions and helper blobs included) as float32 arrays of their Mat's shape;
        a blob kept in int8 is divided by its scale."""
        arrays = as_float32_inputs(inputs)
        ncnn = self._rt._ncnn
        shapes = {k: tuple(v.shape) for k, v in arrays.items()}
        key = tuple(sorted(shapes.items()))
        net, model = self._variant(key, None if key == self._declared else shapes)
        ex = net.create_extractor()
        for name, arr in arrays.items():
            info = model.blobs[name]
            ex.input(info.ncnn, as_mat(ncnn, arr.reshape(info.ncnn_shape)))
        out = {}
        for b in blobs:
            ret, mat = ex.extract(b)
            if ret != 0:
                raise RuntimeExecutionError(f"{self._rt.name}: ncnn failed computing blob {b!r}")
            a = np.array(mat, dtype=np.float32, copy=True)
            scale = model.requantized.get(b)
            out[b] = a / np.float32(scale) if scale else a
        return out

    @staticmethod
    def _caffe_sample(model, info, mat, whole: bool = False) -> np.ndarray:
        a = np.array(mat, dtype=np.float32, copy=True)
        if info.layer_type == "DetectionOutput":
            return detections_to_caffe(a)
        scale = model.requantized.get(info.ncnn)
        if scale:
            a = a / np.float32(scale)
        want = math.prod(info.caffe_shape[1:])
        if whole and a.size != want and a.size == math.prod(info.caffe_shape):
            # a blob without a batch axis in a net of batch 1 (an Expand or Concat over axis 0 made it):
            # ncnn holds all of it (the builder refuses such a blob when the batch is larger)
            return a.reshape(info.caffe_shape)
        if a.size != want:
            raise RuntimeExecutionError(
                f"ncnn gave {a.size} values for blob {info.ncnn!r} ({info.layer_type}), Caffe's shape "
                f"{info.caffe_shape} holds {want} per sample"
            )
        return a.reshape(info.caffe_shape[1:])

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._nets.clear()
            self._finalizer()


def as_mat(ncnn, a: np.ndarray):
    """An ncnn Mat holding a copy of `a`. ncnn.Mat(array) wraps the array with channels packed
    back to back, but ncnn's layers assume each channel starts at a 16-byte boundary (channel_range views
    recompute that stride): clone() gives the Mat ncnn's own allocation and layout."""
    return ncnn.Mat(np.ascontiguousarray(a, dtype=np.float32)).clone()


def detections_to_caffe(rows: np.ndarray) -> np.ndarray:
    """ncnn DetectionOutput rows (label, score, x1, y1, x2, y2), sorted by score -> Caffe's (1, 1, K, 7)
    (image id, label, score, x1, y1, x2, y2), by label then score, or one row of -1 with image id 0."""
    rows = np.asarray(rows, np.float32).reshape(-1, 6) if rows.size else np.zeros((0, 6), np.float32)
    if not len(rows):
        out = np.full((1, 7), -1, np.float32)
        out[0, 0] = 0
        return out.reshape(1, 1, 1, 7)
    order = np.lexsort((-rows[:, 1], rows[:, 0]))
    rows = rows[order]
    out = np.concatenate([np.zeros((len(rows), 1), np.float32), rows], axis=1)
    return out.reshape(1, 1, -1, 7)
