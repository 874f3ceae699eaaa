"""The "opencv" runtime: OpenCV's Caffe importer (cv2.dnn.readNetFromCaffe), in-process, on the plain
CPU backend (DNN_BACKEND_OPENCV / DNN_TARGET_CPU) with layer fusion disabled, so that every blob is
computed by its own layer and can be read back.

Blob names. OpenCV names a layer's outputs by the layer, not by Caffe's top names, so we map every
Caffe blob to (OpenCV layer, output index) ourselves, from the prototxt: a blob's value after the
forward pass is the output of the LAST layer writing it (in-place layers such as ReLU with top ==
bottom overwrite their input in Caffe), and a multi-top layer (Slice) yields all its outputs through
Net.forwardAndRetrieve. Measured with OpenCV 4.x: the importer keeps Caffe layer names except for
Convolution, which it names after its (first) top; Input layers become the net's inputs. The mapping
finds each prototxt layer in the OpenCV net by its name, else by its first top; layers the importer
drops leave their blobs with the previous writer's value.

supported_layer_types(): OpenCV has no public list of its layer registry. We probe each candidate type
name with a two-layer prototxt (an Input and one layer of that type, no parameters) and ask OpenCV to
instantiate the layer: an unregistered type fails with "Can't create layer ... of type ...", while a
registered one either builds or fails on its missing parameters. Cached per process; ~60 types in
about 0.2 s.
"""

from __future__ import annotations

import contextlib
import functools
import re
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np

from onnx2caffe.errors import RuntimeExecutionError, RuntimeUnavailableError
from onnx2caffe.runtimes.base import LoadedModel, Runtime, as_float32_inputs, check_files, check_inputs

HOW_TO_GET = "install it with `pip install 'onnx2caffe[opencv]'` (opencv-python-headless>=4.8,<5)"

# Candidate Caffe layer types probed by supported_layer_types(): every BVLC type, the SSD additions
# and the fork types that converters commonly emit.
CANDIDATE_LAYER_TYPES = (
    # BVLC
    "AbsVal", "Accuracy", "ArgMax", "BNLL", "BatchNorm", "BatchReindex", "Bias", "Clip", "Concat",
    "ContrastiveLoss", "Convolution", "Crop", "Data", "Deconvolution", "Dropout", "DummyData", "ELU",
    "Eltwise", "Embed", "EuclideanLoss", "Exp", "Filter", "Flatten", "HDF5Data", "HDF5Output",
    "HingeLoss", "Im2col", "ImageData", "InfogainLoss", "InnerProduct", "Input", "LRN", "LSTM",
    "LSTMUnit", "Log", "MVN", "MemoryData", "MultinomialLogisticLoss", "PReLU", "Parameter", "Pooling",
    "Power", "Python", "RNN", "ReLU", "Reduction", "Reshape", "SPP", "Scale", "Sigmoid",
    "SigmoidCrossEntropyLoss", "Silence", "Slice", "Softmax", "SoftmaxWithLoss", "Split", "Swish",
    "TanH", "Threshold", "Tile", "WindowData",
    # SSD
    "AnnotatedData", "DetectionEvaluate", "DetectionOutput", "MultiBoxLoss", "Normalize", "Permute",
    "PriorBox", "SmoothL1Loss", "VideoData",
    # forks (the brocolli-caffe tree that `make caffe` builds has most of these)
    "Axpy", "BatchNormKyle", "BilinearInterpolate", "HardSigmoid", "HardSwish", "Interp", "MaxUnPool",
    "PSROIPooling", "Pad", "PixelShuffle", "Proposal", "ReLU6", "Resize", "ShuffleChannel", "Unsqueeze",
    "Upsample",
)  # fmt: skip

_CV_ERROR_PREFIX = re.compile(r"^OpenCV\([^)]*\)\s+\S+:\d+: error: \([^)]*\)\s*")


def _cv2():
    try:
        import cv2
    except ImportError as e:
        raise RuntimeUnavailableError(
            f"opencv runtime unavailable: cannot import cv2 ({e}); " + HOW_TO_GET
        ) from None
    if not hasattr(cv2, "dnn") or not hasattr(cv2.dnn, "readNetFromCaffe"):
        raise RuntimeUnavailableError(
            f"opencv runtime unavailable: OpenCV {getattr(cv2, '__version__', '?')} has no Caffe importer "
            "(cv2.dnn.readNetFromCaffe; removed in OpenCV 5); " + HOW_TO_GET
        )
    return cv2


def cv_error_message(err: BaseException) -> str:
    """OpenCV's exception text without its 'OpenCV(4.x) /path/file.cpp:123: error: (-2:...)' prefix."""
    lines = [ln.strip() for ln in str(err).strip().splitlines() if ln.strip()]
    text = " ".join(lines)
    return _CV_ERROR_PREFIX.sub("", text) or type(err).__name__


@contextlib.contextmanager
def _quiet(cv2) -> Iterator[None]:
    """Silence OpenCV's C++ logger (its "[ERROR:0@...] getLayerShapesRecursively ..." lines on stderr
    repeat what the cv2.error we report says), restoring the previous level afterwards."""
    log = getattr(getattr(cv2, "utils", None), "logging", None)
    if log is None or not hasattr(log, "setLogLevel"):
        yield
        return
    previous = log.getLogLevel()
    log.setLogLevel(log.LOG_LEVEL_SILENT)
    try:
        yield
    finally:
        log.setLogLevel(previous)


# Layer types whose learned blobs must come from the caffemodel (Scale/Bias only with one bottom).
_WEIGHTED = {"Convolution", "Deconvolution", "InnerProduct", "BatchNorm", "PReLU", "Embed"}


def diagnose_weights(prototxt: Path, caffemodel: Path | None) -> str | None:
    """After OpenCV refused a model: the first layer whose caffemodel blobs contradict the prototxt (or that
    has none although it needs them), as a message naming the layer and the caffemodel; None when no such
    layer is found (or the files cannot be read here)."""
    if caffemodel is None:
        return None
    try:
        from google.protobuf import text_format

        from onnx2caffe.caffe_net import blob_problem, read_caffemodel
        from onnx2caffe.proto import caffe_pb2

        net = caffe_pb2.NetParameter()
        text_format.Parse(prototxt.read_text(encoding="utf-8"), net, allow_unknown_field=True)
        blobs = read_caffemodel(caffemodel).blobs()
    except Exception:
        return None
    for lp in net.layer:
        if lp.name in blobs and blobs[lp.name]:
            why = blob_problem(lp, blobs[lp.name])
            if why:
                return f"{caffemodel.name}: layer {lp.name!r} ({lp.type}): {why}"
        elif lp.type in _WEIGHTED or (lp.type in ("Scale", "Bias") and len(lp.bottom) == 1):
            return f"{caffemodel.name}: layer {lp.name!r} ({lp.type}) has no weights in it"
    return None


def _failure(what: str, prototxt: Path, caffemodel: Path | None, err: BaseException) -> RuntimeExecutionError:
    message = f"opencv: {what} {prototxt} failed: {cv_error_message(err)}"
    found = diagnose_weights(prototxt, caffemodel)
    return RuntimeExecutionError(f"{message} ({found})" if found else message)


@functools.cache
def _probe_layer_types(cv_version: str) -> frozenset[str]:
    cv2 = _cv2()
    supported = {"Input"}  # handled by the importer itself (becomes the net input)
    with tempfile.TemporaryDirectory(prefix="onnx2caffe-probe-") as tmp, _quiet(cv2):
        path = Path(tmp) / "probe.prototxt"
        for layer_type in CANDIDATE_LAYER_TYPES:
            if layer_type == "Input":
                continue
            path.write_text(
                'layer { name: "data" type: "Input" top: "data" '
                "input_param { shape { dim: 1 dim: 3 dim: 4 dim: 4 } } }\n"
                f'layer {{ name: "probe" type: "{layer_type}" bottom: "data" top: "probe" }}\n'
            )
            try:
                net = cv2.dnn.readNetFromCaffe(str(path))
                for name in net.getLayerNames():
                    net.getLayer(net.getLayerId(name))  # instantiates the layer
            except cv2.error as e:
                if "Can't create layer" in str(e):
                    continue
            supported.add(layer_type)
    return frozenset(supported)


class OpenCVRuntime(Runtime):
    name = "opencv"

    def __init__(self) -> None:
        self._cv2 = _cv2()
        self.version = self._cv2.__version__

    def supported_layer_types(self) -> frozenset[str]:
        return _probe_layer_types(self.version)

    def load(self, prototxt: str | Path, caffemodel: str | Path | None = None) -> OpenCVModel:
        proto_path, model_path = check_files(self.name, prototxt, caffemodel)
        return OpenCVModel(self._cv2, proto_path, model_path)


def _read_layers(prototxt: Path) -> tuple[list[str], list[tuple[str, list[str], list[str], bool]]]:
    """(legacy net inputs, [(name, bottoms, tops, is_input_layer)]) from the prototxt, with our own
    caffe_pb2 (unknown fork fields are skipped: only names and connections matter here)."""
    from google.protobuf import text_format

    from onnx2caffe.proto import caffe_pb2

    net = caffe_pb2.NetParameter()
    try:
        text_format.Parse(prototxt.read_text(encoding="utf-8"), net, allow_unknown_field=True)
    except (text_format.ParseError, UnicodeDecodeError, OSError) as e:
        raise RuntimeExecutionError(f"opencv: cannot parse {prototxt}: {e}") from None
    layers = [(lp.name, list(lp.bottom), list(lp.top), lp.type == "Input") for lp in net.layer]
    for v1 in net.layers:  # V1 format: type is an enum; its INPUT-less nets use net.input
        layers.append((v1.name, list(v1.bottom), list(v1.top), False))
    return list(net.input), layers


class OpenCVModel(LoadedModel):
    def __init__(self, cv2, prototxt: Path, caffemodel: Path | None) -> None:
        super().__init__(prototxt, caffemodel)
        self._cv2 = cv2
        legacy_inputs, layers = _read_layers(prototxt)
        try:
            with _quiet(cv2):
                if caffemodel is None:
                    net = cv2.dnn.readNetFromCaffe(str(prototxt))
                else:
                    net = cv2.dnn.readNetFromCaffe(str(prototxt), str(caffemodel))
                net.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
                net.setPreferableTarget(cv2.dnn.DNN_TARGET_CPU)
                net.enableFusion(False)
        except cv2.error as e:
            message = f"opencv: cannot load {prototxt}: {cv_error_message(e)}"
            found = diagnose_weights(prototxt, caffemodel)
            raise RuntimeExecutionError(f"{message} ({found})" if found else message) from None
        self._net = net

        # blob -> ("", input name) for net inputs, or (OpenCV layer name, output index): last writer wins.
        cv_layers = set(net.getLayerNames())
        claimed: set[str] = set()
        self._order: dict[str, int] = {}  # OpenCV layer name -> position in the net
        where: dict[str, tuple[str, int | str]] = {}
        self._inputs: list[str] = list(legacy_inputs)
        produced: list[str] = []
        for name in legacy_inputs:
            where[name] = ("", name)
            produced.append(name)
        for name, _bottoms, tops, is_input in layers:
            if is_input:
                for t in tops:
                    where[t] = ("", t)
                    self._inputs.append(t)
                    produced.append(t)
                continue
            if name in cv_layers and name not in claimed:
                cv_name = name
            elif tops and tops[0] in cv_layers and tops[0] not in claimed:
                cv_name = tops[0]
            else:
                continue  # dropped by the importer (or not in the TEST net)
            claimed.add(cv_name)
            self._order[cv_name] = len(self._order)
            for i, t in enumerate(tops):
                where[t] = (cv_name, i)
                produced.append(t)
        self._where = where
        self._blobs = list(dict.fromkeys(produced))
        # Caffe's net outputs: the blobs still "available" after the last layer (a layer's bottoms stop
        # being available, its tops become available), sorted by name as Caffe's std::set has them.
        available = set(legacy_inputs)
        for _, bottoms, tops, _ in layers:
            available.difference_update(bottoms)
            available.update(tops)
        self._outputs = sorted(b for b in available if b in where)

    def run(
        self, inputs: Mapping[str, np.ndarray], outputs: Sequence[str] | None = None
    ) -> dict[str, np.ndarray]:
        cv2 = self._cv2
        arrays = as_float32_inputs(inputs)
        check_inputs(f"opencv: {self.prototxt.name}", arrays, self._inputs)
        wanted = (
            list(self._outputs)
            if outputs is None
            else ([outputs] if isinstance(outputs, str) else list(outputs))
        )
        bad = [n for n in wanted if n not in self._where]
        if bad:
            raise RuntimeExecutionError(
                f"opencv: {self.prototxt.name} has no blob named {', '.join(map(repr, bad))} "
                f"(blobs: {', '.join(self._blobs[:50])}{' ...' if len(self._blobs) > 50 else ''})"
            )
        layer_names = list(dict.fromkeys(self._where[n][0] for n in wanted if self._where[n][0]))
        by_layer = {}
        try:
            with _quiet(cv2):
                for segment in self._segments(layer_names, wanted):
                    for name, arr in arrays.items():
                        self._net.setInput(arr, name)
                    by_layer.update(zip(segment, self._net.forwardAndRetrieve(segment), strict=True))
        except cv2.error as e:
            raise _failure("running", self.prototxt, self.caffemodel, e) from None
        result = {}
        for n in wanted:
            layer, index = self._where[n]
            if not layer:
                result[n] = arrays[str(index)].copy()
            else:
                outs = by_layer[layer]
                if int(index) >= len(outs):
                    raise RuntimeExecutionError(
                        f"opencv: {self.prototxt.name}: layer {layer!r} gave {len(outs)} output(s), "
                        f"blob {n!r} is its output {index}"
                    )
                result[n] = np.array(outs[int(index)], dtype=np.float32, copy=True)
        return result

    def _segments(self, layer_names: list[str], wanted: Sequence[str]) -> list[list[str]]:
        """The requested layers split into forward passes. OpenCV keeps only output 0 of each requested layer
        out of its buffer reuse: a later layer may overwrite a requested layer's output 1, 2, ... (measured:
        the second top of Slice layers came back wrong when blobs after them were requested too). So every
        layer whose output > 0 is wanted ends a pass (a pass stops at its last requested layer), and the
        layers before it in network order go with it."""
        late = {self._where[n][0] for n in wanted if self._where[n][0] and int(self._where[n][1]) > 0}
        if not late:
            return [layer_names] if layer_names else []
        ordered = sorted(layer_names, key=self._order.__getitem__)
        segments, current = [], []
        for name in ordered:
            current.append(name)
            if name in late:
                segments.append(current)
                current = []
        if current:
            segments.append(current)
        return segments

    def close(self) -> None:
        self._net = None
