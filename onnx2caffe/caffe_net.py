"""In-memory Caffe network: layers with parameters and weights, read from and written to Caffe files.

* ``.prototxt``: the text format of a ``NetParameter`` without blobs, inputs as ``Input`` layers.
* ``.caffemodel``: a binary ``NetParameter`` holding, per layer with weights, only ``name``, ``type`` and
  ``blobs`` (Caffe copies weights into the net built from the prototxt by layer name; leaving the other
  fields out avoids clashes between the parameter field numbers of Caffe forks).

The blob part of the binary format is encoded and decoded here directly (tags, varint lengths, raw
little-endian float32 payloads streamed to/from numpy buffers) because going through protobuf repeated
fields costs a Python object per float. Everything else goes through the generated ``caffe_pb2``.
"""

from __future__ import annotations

import io
import math
import os
import unicodedata
from collections.abc import Iterable, Sequence
from typing import Any, BinaryIO

import numpy as np
from google.protobuf import json_format, text_format
from google.protobuf.message import DecodeError, Message

from onnx2caffe.errors import InputFileError, InvalidNameError, OutputFileError
from onnx2caffe.fileio import atomic_write, preallocate, write_bytes_atomic
from onnx2caffe.proto import caffe_pb2

__all__ = [
    "CaffeNet",
    "Caffemodel",
    "CaffemodelLayer",
    "Layer",
    "read_caffemodel",
    "read_prototxt",
    "validate_name",
]

# Caffe reads a binary proto through a CodedInputStream limited to INT_MAX bytes.
PROTO_SIZE_LIMIT = 2**31 - 1

_NET_FIELDS = caffe_pb2.NetParameter.DESCRIPTOR.fields_by_name
_LAYER_FIELDS = caffe_pb2.LayerParameter.DESCRIPTOR.fields_by_name
_BLOB_FIELDS = caffe_pb2.BlobProto.DESCRIPTOR.fields_by_name
_HAS_V1 = hasattr(caffe_pb2, "V1LayerParameter") and "layers" in _NET_FIELDS

F_NET_NAME = _NET_FIELDS["name"].number
F_NET_LAYER = _NET_FIELDS["layer"].number
F_NET_LAYERS_V1 = _NET_FIELDS["layers"].number if _HAS_V1 else None
F_LAYER_NAME = _LAYER_FIELDS["name"].number
F_LAYER_TYPE = _LAYER_FIELDS["type"].number
F_LAYER_BLOBS = _LAYER_FIELDS["blobs"].number
if _HAS_V1:
    _V1_FIELDS = caffe_pb2.V1LayerParameter.DESCRIPTOR.fields_by_name
    F_V1_NAME = _V1_FIELDS["name"].number
    F_V1_TYPE = _V1_FIELDS["type"].number
    F_V1_BLOBS = _V1_FIELDS["blobs"].number
F_BLOB_SHAPE = _BLOB_FIELDS["shape"].number
F_BLOB_DATA = _BLOB_FIELDS["data"].number
F_BLOB_DOUBLE_DATA = _BLOB_FIELDS["double_data"].number
_F_BLOB_LEGACY = {_BLOB_FIELDS[n].number: i for i, n in enumerate(("num", "channels", "height", "width"))}

# Wire types.
_VARINT, _FIXED64, _LEN, _SGROUP, _EGROUP, _FIXED32 = 0, 1, 2, 3, 4, 5

# V1LayerParameter.LayerType enum names -> layer type strings of the current format.
_V1_TYPE_NAMES = {
    "NONE": "",
    "ABSVAL": "AbsVal",
    "ACCURACY": "Accuracy",
    "ARGMAX": "ArgMax",
    "BNLL": "BNLL",
    "CONCAT": "Concat",
    "CONTRASTIVE_LOSS": "ContrastiveLoss",
    "CONVOLUTION": "Convolution",
    "DATA": "Data",
    "DECONVOLUTION": "Deconvolution",
    "DROPOUT": "Dropout",
    "DUMMY_DATA": "DummyData",
    "EUCLIDEAN_LOSS": "EuclideanLoss",
    "ELTWISE": "Eltwise",
    "EXP": "Exp",
    "FLATTEN": "Flatten",
    "HDF5_DATA": "HDF5Data",
    "HDF5_OUTPUT": "HDF5Output",
    "HINGE_LOSS": "HingeLoss",
    "IM2COL": "Im2col",
    "IMAGE_DATA": "ImageData",
    "INFOGAIN_LOSS": "InfogainLoss",
    "INNER_PRODUCT": "InnerProduct",
    "LRN": "LRN",
    "MEMORY_DATA": "MemoryData",
    "MULTINOMIAL_LOGISTIC_LOSS": "MultinomialLogisticLoss",
    "MVN": "MVN",
    "POOLING": "Pooling",
    "POWER": "Power",
    "RELU": "ReLU",
    "SIGMOID": "Sigmoid",
    "SIGMOID_CROSS_ENTROPY_LOSS": "SigmoidCrossEntropyLoss",
    "SILENCE": "Silence",
    "SOFTMAX": "Softmax",
    "SOFTMAX_LOSS": "SoftmaxWithLoss",
    "SPLIT": "Split",
    "SLICE": "Slice",
    "TANH": "TanH",
    "WINDOW_DATA": "WindowData",
    "THRESHOLD": "Threshold",
}


def _is_repeated(fd: Any) -> bool:
    rep = getattr(fd, "is_repeated", None)
    if rep is not None:
        return bool(rep)
    return fd.label == fd.LABEL_REPEATED


def _varint(value: int) -> bytes:
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _key(field: int, wire_type: int) -> bytes:
    return _varint((field << 3) | wire_type)


_KEY_NET_LAYER = _key(F_NET_LAYER, _LEN)
_KEY_LAYER_BLOB = _key(F_LAYER_BLOBS, _LEN)
_KEY_BLOB_SHAPE = _key(F_BLOB_SHAPE, _LEN)
_KEY_BLOB_DATA = _key(F_BLOB_DATA, _LEN)


# --------------------------------------------------------------------------------------------- names

# Unicode categories refused in names: control characters (C0, DEL, C1: newline, NUL, tab, ...), lone
# surrogates (not encodable as UTF-8) and the line/paragraph separators that line-based tools split on.
_BAD_CATEGORIES = frozenset({"Cc", "Cs", "Zl", "Zp"})


def validate_name(value: Any, what: str, layer: str | None = None, *, allow_empty: bool = False) -> str:
    """Return ``value`` as a str if it can be written safely as a layer/blob name, else InvalidNameError.

    Spaces, quotes, slashes, backslashes and any printable Unicode are fine (the prototxt escapes them).
    Refused: empty names, control characters (newline, NUL, tab, DEL, ...), text that is not valid UTF-8.
    """
    where = f"layer {layer!r}: " if layer is not None else ""
    if isinstance(value, (bytes, bytearray)):
        try:
            value = bytes(value).decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidNameError(f"{where}{what} {bytes(value)!r} is not valid UTF-8") from None
    if not isinstance(value, str):
        raise InvalidNameError(f"{where}{what} must be a string, not {type(value).__name__}")
    if not value:
        if allow_empty:
            return value
        raise InvalidNameError(f"{where}{what} is empty")
    if value.isascii() and value.isprintable():
        return value
    for ch in value:
        if unicodedata.category(ch) in _BAD_CATEGORIES:
            raise InvalidNameError(
                f"{where}{what} {value!r} contains U+{ord(ch):04X}, which cannot be written safely"
            )
    return value


def _validate_layer_proto(proto: caffe_pb2.LayerParameter) -> None:
    name = proto.name
    validate_name(name, "layer name")
    validate_name(proto.type, "layer type", name)
    for b in proto.bottom:
        validate_name(b, "bottom name", name)
    for t in proto.top:
        validate_name(t, "top name", name)


def _has_phase_rules(proto: caffe_pb2.LayerParameter) -> bool:
    return len(proto.include) > 0 or len(proto.exclude) > 0


# --------------------------------------------------------------------------------------------- params


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


_RESERVED_PARAMS = frozenset({"name", "type", "bottom", "top", "blobs"})


def _apply_params(proto: caffe_pb2.LayerParameter, params: dict[str, Any]) -> None:
    plain: dict[str, Any] = {}
    for key, value in params.items():
        fd = _LAYER_FIELDS.get(key)
        if fd is None or key in _RESERVED_PARAMS:
            raise ValueError(f"layer {proto.name!r}: LayerParameter has no settable field {key!r}")
        if isinstance(value, Message):
            if _is_repeated(fd):
                getattr(proto, key).append(value)
            else:
                getattr(proto, key).CopyFrom(value)
        elif (
            _is_repeated(fd)
            and isinstance(value, (list, tuple))
            and value
            and all(isinstance(v, Message) for v in value)
        ):
            getattr(proto, key).extend(value)
        else:
            plain[key] = _jsonable(value)
    if plain:
        try:
            json_format.ParseDict(plain, proto)
        except (json_format.ParseError, TypeError, ValueError) as err:
            msg = " ".join(str(err).split())
            raise ValueError(f"layer {proto.name!r}: bad parameters: {msg}") from None


def _as_name_list(value: str | Iterable[str] | None) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, (str, bytes)):
        return [value]
    return list(value)


def _as_blob(value: Any) -> np.ndarray:
    return np.asarray(value, dtype=np.float32, order="C")


# --------------------------------------------------------------------------------------------- Layer


class Layer:
    """One Caffe layer: a ``caffe_pb2.LayerParameter`` without blobs plus its weights as float32 arrays.

    Blobs are kept as C-contiguous float32 arrays; an array already in that form is kept as it is (shared,
    not copied), anything else is converted.
    """

    __slots__ = ("proto", "_blobs")

    def __init__(
        self,
        name: str,
        type: str,
        bottom: str | Iterable[str] | None = (),
        top: str | Iterable[str] | None = (),
        blobs: Iterable[Any] | None = (),
        **params: Any,
    ) -> None:
        name = validate_name(name, "layer name")
        proto = caffe_pb2.LayerParameter()
        proto.name = name
        proto.type = validate_name(type, "layer type", name)
        proto.bottom.extend(validate_name(b, "bottom name", name) for b in _as_name_list(bottom))
        proto.top.extend(validate_name(t, "top name", name) for t in _as_name_list(top))
        _apply_params(proto, params)
        self.proto = proto
        self.blobs = [] if blobs is None else list(blobs)

    @classmethod
    def from_proto(cls, proto: caffe_pb2.LayerParameter) -> Layer:
        """A Layer from a LayerParameter (copied; blobs in it become numpy arrays)."""
        layer = cls.__new__(cls)
        p = caffe_pb2.LayerParameter()
        p.CopyFrom(proto)
        p.ClearField("blobs")
        _validate_layer_proto(p)
        layer.proto = p
        layer.blobs = [_blob_from_proto(b, p.name, p.type, i) for i, b in enumerate(proto.blobs)]
        return layer

    @property
    def name(self) -> str:
        return self.proto.name

    @property
    def type(self) -> str:
        return self.proto.type

    @property
    def bottom(self) -> list[str]:
        return list(self.proto.bottom)

    @property
    def top(self) -> list[str]:
        return list(self.proto.top)

    @property
    def blobs(self) -> list[np.ndarray]:
        return self._blobs

    @blobs.setter
    def blobs(self, value: Iterable[Any]) -> None:
        if isinstance(value, np.ndarray):
            raise TypeError(f"layer {self.proto.name!r}: blobs must be a list of arrays, not one array")
        self._blobs = [_as_blob(b) for b in value]

    def __repr__(self) -> str:
        shapes = ", ".join(str(tuple(b.shape)) for b in self._blobs)
        return f"Layer({self.name!r}, {self.type!r}, bottom={self.bottom}, top={self.top}, blobs=[{shapes}])"


# --------------------------------------------------------------------------------------------- CaffeNet


class CaffeNet:
    """An ordered list of layers with a name; reads and writes .prototxt/.caffemodel files."""

    def __init__(self, name: str = "") -> None:
        self.name = validate_name(name, "net name", allow_empty=True)
        self._layers: list[Layer] = []
        self._names: set[str] = set()
        self._names_len = 0

    # ----- building

    @property
    def layers(self) -> list[Layer]:
        """The layers in order (the net's own list; prefer append/remove to edit it)."""
        return self._layers

    def _sync_names(self) -> None:
        self._names = {layer.name for layer in self._layers}
        self._names_len = len(self._layers)

    def append(self, layer: Layer) -> Layer:
        """Add an existing Layer at the end (InvalidNameError for bad or duplicate names)."""
        if not isinstance(layer, Layer):
            raise TypeError(f"expected a Layer, got {type(layer).__name__}")
        _validate_layer_proto(layer.proto)
        name = layer.name
        if self._names_len != len(self._layers) or name in self._names:
            self._sync_names()
        if name in self._names:
            # Caffe's train/test prototxts carry variants of one layer for different phases.
            if not (
                _has_phase_rules(layer.proto)
                and all(_has_phase_rules(x.proto) for x in self._layers if x.name == name)
            ):
                raise InvalidNameError(f"layer {name!r}: duplicate layer name")
        self._layers.append(layer)
        self._names.add(name)
        self._names_len = len(self._layers)
        return layer

    def add_layer(
        self,
        name: str,
        type: str,
        bottom: str | Iterable[str] | None = (),
        top: str | Iterable[str] | None = (),
        blobs: Iterable[Any] | None = (),
        **params: Any,
    ) -> Layer:
        """Create a Layer (same arguments as Layer(...)), append it and return it."""
        return self.append(Layer(name, type, bottom, top, blobs, **params))

    def add_input(self, name: str, shape: Sequence[int]) -> Layer:
        """Add an ``Input`` layer named ``name`` with top ``name`` and ``input_param.shape``."""
        dims = [int(d) for d in shape]
        return self.add_layer(name, "Input", [], [name], input_param={"shape": [{"dim": dims}]})

    def remove(self, name: str) -> Layer:
        """Remove the layer called ``name`` and return it (KeyError if missing)."""
        for i, layer in enumerate(self._layers):
            if layer.name == name:
                del self._layers[i]
                self._sync_names()
                return layer
        raise KeyError(name)

    # ----- queries

    def layer(self, name: str) -> Layer:
        """The layer called ``name`` (the first one if phase variants share it); KeyError if missing."""
        for layer in self._layers:
            if layer.name == name:
                return layer
        raise KeyError(name)

    @property
    def inputs(self) -> dict[str, tuple[int, ...]]:
        """Input blob name -> shape, from the ``Input`` layers."""
        result: dict[str, tuple[int, ...]] = {}
        for layer in self._layers:
            if layer.type != "Input":
                continue
            shapes = layer.proto.input_param.shape
            for i, top in enumerate(layer.proto.top):
                if len(shapes) == 1:
                    result[top] = tuple(shapes[0].dim)
                elif i < len(shapes):
                    result[top] = tuple(shapes[i].dim)
        return result

    @property
    def outputs(self) -> list[str]:
        """Tops that no later layer consumes, in order of first appearance."""
        order: dict[str, None] = {}
        live: set[str] = set()
        for layer in self._layers:
            for b in layer.proto.bottom:
                live.discard(b)
            for t in layer.proto.top:
                live.add(t)
                order.setdefault(t, None)
        return [t for t in order if t in live]

    def __len__(self) -> int:
        return len(self._layers)

    def __iter__(self):
        return iter(self._layers)

    def __repr__(self) -> str:
        return f"CaffeNet({self.name!r}, {len(self._layers)} layers)"

    # ----- conversion

    def validate(self) -> None:
        """Check every name again (layers may have been edited through .proto) and their uniqueness."""
        validate_name(self.name, "net name", allow_empty=True)
        seen: dict[str, bool] = {}
        for layer in self._layers:
            _validate_layer_proto(layer.proto)
            rules = _has_phase_rules(layer.proto)
            if layer.name in seen and not (rules and seen[layer.name]):
                raise InvalidNameError(f"layer {layer.name!r}: duplicate layer name")
            seen[layer.name] = seen.get(layer.name, True) and rules
        self._sync_names()

    def to_proto(self, with_blobs: bool = False) -> caffe_pb2.NetParameter:
        """The net as a NetParameter; with_blobs=True also copies the weights into it."""
        net = caffe_pb2.NetParameter()
        net.name = self.name
        for layer in self._layers:
            lp = net.layer.add()
            lp.CopyFrom(layer.proto)
            lp.ClearField("blobs")
            if with_blobs:
                for blob in layer.blobs:
                    a = np.asarray(blob, dtype="<f4", order="C")
                    lp.blobs.add().MergeFromString(_blob_header(a)[1] + a.tobytes())
        return net

    @classmethod
    def from_proto(cls, net_param: caffe_pb2.NetParameter) -> CaffeNet:
        """A CaffeNet from a NetParameter (V1 layers and net-level inputs are upgraded to Input layers)."""
        upgraded = caffe_pb2.NetParameter()
        upgraded.CopyFrom(net_param)
        _upgrade_net(upgraded, "NetParameter")
        net = cls(upgraded.name)
        for lp in upgraded.layer:
            net.append(Layer.from_proto(lp))
        return net

    # ----- files

    def prototxt_text(self) -> str:
        """The .prototxt content (text format, UTF-8 kept readable, no blobs)."""
        self.validate()
        return text_format.MessageToString(self.to_proto(), as_utf8=True)

    def write_prototxt(self, path: str | os.PathLike[str], *, fsync: bool = False) -> None:
        """Write the .prototxt atomically."""
        write_bytes_atomic(path, self.prototxt_text().encode("utf-8"), fsync=fsync)

    def write_caffemodel(self, path: str | os.PathLike[str], *, fsync: bool = False) -> None:
        """Write the .caffemodel atomically: name, type and blobs of each layer that has blobs."""
        with atomic_write(path, fsync=fsync) as f:
            self.write_caffemodel_to(f, path)

    def write_caffemodel_to(self, f: BinaryIO, path: str | os.PathLike[str] = "<caffemodel>") -> None:
        """Write the .caffemodel into the open binary file `f` (at its start); `path` names it in errors
        (OutputFileError when the model is over the 2 GB limit, raised before anything is written)."""
        self.validate()
        head = caffe_pb2.NetParameter()
        head.name = self.name
        net_head = head.SerializeToString()
        plan: list[tuple[bytes, list[tuple[bytes, np.ndarray]]]] = []
        total = len(net_head)
        for layer in self._layers:
            if not layer.blobs:
                continue
            lp = caffe_pb2.LayerParameter()
            lp.name = layer.name
            lp.type = layer.type
            body = lp.SerializeToString()
            body_len = len(body)
            parts = []
            for blob in layer.blobs:
                a = np.asarray(blob, dtype="<f4", order="C")
                outer, _ = _blob_header(a)
                parts.append((outer, a))
                body_len += len(outer) + a.nbytes
            layer_head = _KEY_NET_LAYER + _varint(body_len) + body
            plan.append((layer_head, parts))
            total += len(layer_head) + body_len - len(body)
        if total > PROTO_SIZE_LIMIT:
            raise OutputFileError(
                f"cannot write {os.fspath(path)}: the caffemodel would be {total} bytes, over the "
                f"{PROTO_SIZE_LIMIT}-byte limit of Caffe's protobuf reader"
            )
        preallocate(f, total)
        f.write(net_head)
        for layer_head, parts in plan:
            f.write(layer_head)
            for outer, a in parts:
                f.write(outer)
                _write_blob_data(f, a)
        if f.tell() != total:  # the precomputed lengths are part of the format: never keep a wrong file
            raise RuntimeError(
                f"internal error writing {os.fspath(path)}: {f.tell()} bytes, expected {total}"
            )

    def save(self, prefix: str | os.PathLike[str], *, fsync: bool = False) -> tuple[str, str]:
        """Write ``prefix.prototxt`` and ``prefix.caffemodel``; return both paths."""
        prefix = os.fspath(prefix)
        proto_path, model_path = prefix + ".prototxt", prefix + ".caffemodel"
        self.write_prototxt(proto_path, fsync=fsync)
        self.write_caffemodel(model_path, fsync=fsync)
        return proto_path, model_path

    @classmethod
    def load(
        cls, prototxt_path: str | os.PathLike[str], caffemodel_path: str | os.PathLike[str] | None = None
    ) -> CaffeNet:
        """Read a .prototxt and optionally attach the blobs of a .caffemodel by layer name.

        Caffemodel layers whose name is not in the prototxt are ignored, as Caffe does.
        """
        net_param = read_prototxt(prototxt_path)
        try:
            net = cls.from_proto(net_param)
        except InvalidNameError as err:
            raise InvalidNameError(f"{os.fspath(prototxt_path)}: {err}") from None
        if caffemodel_path is not None:
            model = read_caffemodel(caffemodel_path)
            by_name: dict[str, list[Layer]] = {}
            for layer in net._layers:
                by_name.setdefault(layer.name, []).append(layer)
            for ml in model.layers:
                for target in by_name.get(ml.name, ()):
                    target.blobs = [
                        _fix_legacy_shape(target.type, i, blob) if legacy else blob
                        for i, (blob, legacy) in enumerate(zip(ml.blobs, ml.legacy_shape, strict=True))
                    ]
                    # Caffe refuses blobs that cannot belong to the declared layer; so do we, by name
                    why = blob_problem(target.proto, target.blobs) if target.blobs else None
                    if why:
                        raise InputFileError(
                            f"{os.fspath(caffemodel_path)}: layer {target.name!r} ({target.type}): {why}"
                        )
        return net


def _spatial(values: Sequence[int], h: int, w: int, n: int, default: int | None) -> list[int] | None:
    if h or w:
        return [h, w]
    vals = list(values)
    if not vals:
        return None if default is None else [default] * n
    return vals * n if len(vals) == 1 else vals


def blob_problem(lp, blobs: list[np.ndarray]) -> str | None:
    """Why the blobs cannot belong to layer `lp` (a LayerParameter) as the prototxt declares it, or None.
    Only what the layer's own parameters decide (no input shapes): output count, kernel size, blob count."""
    shapes = [tuple(int(d) for d in b.shape) for b in blobs]
    t = lp.type
    if t in ("Convolution", "Deconvolution"):
        cp = lp.convolution_param
        want = 1 + (1 if cp.bias_term else 0)
        if len(blobs) != want:
            return f"{len(blobs)} blob(s), the layer needs {want}"
        w = shapes[0]
        if len(w) < 3:
            return f"weights of shape {w}, expected N-D convolution weights"
        n = len(w) - 2
        kernel = _spatial(cp.kernel_size, cp.kernel_h, cp.kernel_w, n, None)
        outs = w[0] if t == "Convolution" else w[1] * max(int(cp.group), 1)
        if outs != cp.num_output:
            return f"weights of shape {w}, but num_output is {cp.num_output}"
        if kernel is not None and list(w[2:]) != kernel:
            return f"weights of shape {w}, but the kernel is {'x'.join(map(str, kernel))}"
        if want == 2 and blobs[1].size != cp.num_output:
            return f"bias of shape {shapes[1]}, but num_output is {cp.num_output}"
    elif t == "InnerProduct":
        ip = lp.inner_product_param
        want = 1 + (1 if ip.bias_term else 0)
        if len(blobs) != want:
            return f"{len(blobs)} blob(s), the layer needs {want}"
        w = shapes[0]
        rows = (w[-1] if ip.transpose else w[-2]) if len(w) >= 2 else None
        if rows != ip.num_output:
            return f"weights of shape {w}, but num_output is {ip.num_output}"
        if want == 2 and blobs[1].size != ip.num_output:
            return f"bias of shape {shapes[1]}, but num_output is {ip.num_output}"
    elif t == "BatchNorm":
        if len(blobs) != 3:
            return f"{len(blobs)} blob(s), BatchNorm needs 3 (mean, variance, scale factor)"
        if blobs[0].size != blobs[1].size or blobs[2].size != 1:
            return f"blobs of shapes {shapes}, expected mean and variance of one size and a 1-element factor"
    return None


# --------------------------------------------------------------------------------------------- writing


def _blob_header(a: np.ndarray) -> tuple[bytes, bytes]:
    """(bytes before the data of a LayerParameter.blobs field, the same for a bare BlobProto)."""
    shape = caffe_pb2.BlobShape()
    shape.dim.extend(int(d) for d in a.shape)
    shape_bytes = shape.SerializeToString()
    inner = _KEY_BLOB_SHAPE + _varint(len(shape_bytes)) + shape_bytes
    if a.nbytes:
        inner += _KEY_BLOB_DATA + _varint(a.nbytes)
    return _KEY_LAYER_BLOB + _varint(len(inner) + a.nbytes) + inner, inner


def _write_blob_data(f: BinaryIO, a: np.ndarray) -> None:
    """Write the raw little-endian float32 bytes of a C-contiguous array (no copy)."""
    if a.nbytes:
        f.write(a.data)


# --------------------------------------------------------------------------------------------- reading


class _WireReader:
    """Reads protobuf wire format from a file object, tracking the byte offset for error messages."""

    __slots__ = ("f", "path", "size", "pos")

    def __init__(self, f: BinaryIO, path: str, size: int) -> None:
        self.f = f
        self.path = path
        self.size = size
        self.pos = 0

    def fail(self, what: str) -> InputFileError:
        return InputFileError(f"{self.path}: {what}")

    def _truncated(self, start: int, need: int) -> InputFileError:
        return self.fail(
            f"truncated at byte {self.size} (a field at byte {start} needs {need} more bytes, "
            f"{self.size - self.pos} remain); not a complete caffemodel"
        )

    def check_len(self, n: int, start: int, end: int) -> None:
        if self.pos + n > end:
            if end >= self.size:
                raise self._truncated(start, n)
            raise self.fail(
                f"field at byte {start} ({n} bytes) overruns its message, which ends at byte {end}"
            )

    def read(self, n: int, start: int, end: int) -> bytes:
        self.check_len(n, start, end)
        data = self.f.read(n)
        if len(data) != n:
            self.pos += len(data)
            raise self._truncated(start, n)
        self.pos += n
        return data

    def readinto(self, buf: np.ndarray, start: int, end: int) -> None:
        n = buf.nbytes
        self.check_len(n, start, end)
        view = memoryview(buf).cast("B")
        got = 0
        while got < n:
            k = self.f.readinto(view[got:])
            if not k:
                self.pos += got
                raise self._truncated(start, n)
            got += k
        self.pos += n

    def skip(self, n: int, start: int, end: int) -> None:
        self.check_len(n, start, end)
        self.f.seek(n, io.SEEK_CUR)
        self.pos += n

    def varint(self, end: int) -> int:
        start = self.pos
        result = 0
        shift = 0
        while True:
            if self.pos >= end:
                if end >= self.size:
                    raise self.fail(f"truncated at byte {self.size} (in a varint starting at byte {start})")
                raise self.fail(f"varint at byte {start} overruns its message, which ends at byte {end}")
            b = self.f.read(1)
            if not b:
                raise self.fail(f"truncated at byte {self.pos} (in a varint starting at byte {start})")
            self.pos += 1
            c = b[0]
            result |= (c & 0x7F) << shift
            if c < 0x80:
                return result
            shift += 7
            if shift >= 70:
                raise self.fail(f"invalid varint at byte {start}")

    def key(self, end: int) -> tuple[int, int, int]:
        """(start offset, field number, wire type)."""
        start = self.pos
        key = self.varint(end)
        field, wire_type = key >> 3, key & 7
        if field == 0 or key >= 1 << 32:
            raise self.fail(f"invalid field number at byte {start}; not a caffemodel")
        if wire_type in (_SGROUP, _EGROUP):
            raise self.fail(f"unsupported group field at byte {start}")
        if wire_type not in (_VARINT, _FIXED64, _LEN, _FIXED32):
            raise self.fail(f"invalid wire type {wire_type} at byte {start}; not a caffemodel")
        return start, field, wire_type

    def field(self, start: int, field: int, wire_type: int, end: int) -> tuple[bytes, Any]:
        """Read the value of a field whose key was just read: (raw bytes incl. key, value)."""
        key = _key(field, wire_type)
        if wire_type == _VARINT:
            value = self.varint(end)
            return key + _varint(value), value
        if wire_type == _FIXED64:
            data = self.read(8, start, end)
            return key + data, data
        if wire_type == _FIXED32:
            data = self.read(4, start, end)
            return key + data, data
        n = self.varint(end)
        data = self.read(n, start, end)
        return key + _varint(n) + data, data

    def skip_field(self, start: int, wire_type: int, end: int) -> None:
        if wire_type == _VARINT:
            self.varint(end)
        elif wire_type == _FIXED64:
            self.skip(8, start, end)
        elif wire_type == _FIXED32:
            self.skip(4, start, end)
        else:
            self.skip(self.varint(end), start, end)


class CaffemodelLayer:
    """One layer of a .caffemodel: name, type, blobs, and its other fields (parsed on demand)."""

    __slots__ = ("name", "type", "blobs", "legacy_shape", "v1", "_raw", "_path")

    def __init__(
        self,
        name: str,
        type: str,
        blobs: list[np.ndarray],
        legacy_shape: list[bool],
        v1: bool,
        raw: bytes,
        path: str,
    ) -> None:
        self.name = name
        self.type = type
        self.blobs = blobs
        self.legacy_shape = legacy_shape  # per blob: shape came from num/channels/height/width
        self.v1 = v1
        self._raw = raw
        self._path = path

    def params(self) -> Message:
        """The layer's non-blob fields as a LayerParameter (V1LayerParameter for V1 layers)."""
        msg = caffe_pb2.V1LayerParameter() if self.v1 else caffe_pb2.LayerParameter()
        try:
            msg.ParseFromString(self._raw)
        except DecodeError as err:
            raise InputFileError(
                f"{self._path}: layer {self.name!r}: cannot parse its parameters: {err}"
            ) from None
        return msg

    def __repr__(self) -> str:
        return f"CaffemodelLayer({self.name!r}, {self.type!r}, {[tuple(b.shape) for b in self.blobs]})"


class Caffemodel:
    """Contents of a .caffemodel: net name, layers (with blobs) and the other net-level fields."""

    __slots__ = ("path", "name", "layers", "_raw")

    def __init__(self, path: str, name: str, layers: list[CaffemodelLayer], raw: bytes) -> None:
        self.path = path
        self.name = name
        self.layers = layers
        self._raw = raw

    def net_param(self) -> caffe_pb2.NetParameter:
        """The net-level fields other than layers (name, input, state, ...)."""
        msg = caffe_pb2.NetParameter()
        try:
            msg.ParseFromString(self._raw)
        except DecodeError as err:
            raise InputFileError(f"{self.path}: cannot parse the net-level fields: {err}") from None
        return msg

    def blobs(self) -> dict[str, list[np.ndarray]]:
        """Layer name -> blobs (a later layer of the same name wins, as in Caffe's copy)."""
        return {layer.name: layer.blobs for layer in self.layers}


def read_caffemodel(path: str | os.PathLike[str]) -> Caffemodel:
    """Read a binary .caffemodel (V2 ``layer`` and V1 ``layers``); InputFileError on bad files."""
    path = os.fspath(path)
    try:
        f = open(path, "rb")
    except OSError as err:
        raise InputFileError(f"cannot read {path}: {err.strerror or err}") from None
    with f:
        try:
            size = os.fstat(f.fileno()).st_size
            if size == 0:
                raise InputFileError(f"{path}: the file is empty")
            return _parse_net(_WireReader(f, path, size))
        except OSError as err:
            raise InputFileError(f"cannot read {path}: {err.strerror or err}") from None


def _parse_net(r: _WireReader) -> Caffemodel:
    rest = bytearray()
    layers: list[CaffemodelLayer] = []
    name = ""
    end = r.size
    while r.pos < end:
        start, field, wt = r.key(end)
        if wt == _LEN and (field == F_NET_LAYER or (field == F_NET_LAYERS_V1 and _HAS_V1)):
            n = r.varint(end)
            r.check_len(n, start, end)
            layers.append(_parse_layer(r, r.pos + n, start, v1=field != F_NET_LAYER))
        else:
            raw, value = r.field(start, field, wt, end)
            rest += raw
            if field == F_NET_NAME and wt == _LEN:
                name = _decode_str(r, value, "net name", start)
    return Caffemodel(r.path, name, layers, bytes(rest))


def _decode_str(r: _WireReader, value: bytes, what: str, start: int) -> str:
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        raise r.fail(f"{what} at byte {start} is not valid UTF-8") from None


def _v1_type_name(value: int) -> str:
    try:
        enum_name = caffe_pb2.V1LayerParameter.LayerType.Name(value)
    except ValueError:
        return f"V1_TYPE_{value}"
    return _V1_TYPE_NAMES.get(enum_name, enum_name)


def _parse_layer(r: _WireReader, end: int, layer_start: int, v1: bool) -> CaffemodelLayer:
    f_name, f_type, f_blobs = (
        (F_V1_NAME, F_V1_TYPE, F_V1_BLOBS) if v1 else (F_LAYER_NAME, F_LAYER_TYPE, F_LAYER_BLOBS)
    )
    name: str | None = None
    type_ = ""
    raw_blobs: list[tuple[np.ndarray, tuple[int, ...] | None, bool, int]] = []
    rest = bytearray()
    while r.pos < end:
        start, field, wt = r.key(end)
        if field == f_blobs and wt == _LEN:
            n = r.varint(end)
            r.check_len(n, start, end)
            raw_blobs.append((*_parse_blob(r, r.pos + n), start))
            continue
        raw, value = r.field(start, field, wt, end)
        rest += raw
        if field == f_name and wt == _LEN:
            name = _decode_str(r, value, "layer name", start)
        elif field == f_type:
            if v1 and wt == _VARINT:
                type_ = _v1_type_name(value)
            elif not v1 and wt == _LEN:
                type_ = _decode_str(r, value, "layer type", start)
    if name is None:
        raise r.fail(f"the layer at byte {layer_start} has no name")
    blobs = []
    legacy = []
    for i, (data, shape, is_legacy, start) in enumerate(raw_blobs):
        if shape is None:
            shape = (data.size,)
        if any(d < 0 for d in shape):
            raise r.fail(f"layer {name!r}: blob {i} (byte {start}) has a negative dimension {shape}")
        count = math.prod(shape)
        if count != data.size:
            raise r.fail(
                f"layer {name!r}: blob {i} (byte {start}) has shape {shape} ({count} values) "
                f"but holds {data.size} values"
            )
        blobs.append(data.reshape(shape))
        legacy.append(is_legacy)
    return CaffemodelLayer(name, type_, blobs, legacy, v1, bytes(rest), r.path)


def _signed64(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


def _parse_blob(r: _WireReader, end: int) -> tuple[np.ndarray, tuple[int, ...] | None, bool]:
    shape: tuple[int, ...] | None = None
    legacy: list[int | None] = [None, None, None, None]
    floats: list[np.ndarray] = []
    doubles: list[np.ndarray] = []
    while r.pos < end:
        start, field, wt = r.key(end)
        if field == F_BLOB_DATA and wt == _LEN:
            n = r.varint(end)
            if n % 4:
                raise r.fail(f"packed float data at byte {start} has {n} bytes, not a multiple of 4")
            buf = np.empty(n // 4, dtype="<f4")
            r.readinto(buf, start, end)
            floats.append(buf)
        elif field == F_BLOB_DATA and wt == _FIXED32:
            floats.append(np.frombuffer(r.read(4, start, end), dtype="<f4"))
        elif field == F_BLOB_DOUBLE_DATA and wt == _LEN:
            n = r.varint(end)
            if n % 8:
                raise r.fail(f"packed double data at byte {start} has {n} bytes, not a multiple of 8")
            buf = np.empty(n // 8, dtype="<f8")
            r.readinto(buf, start, end)
            doubles.append(buf)
        elif field == F_BLOB_DOUBLE_DATA and wt == _FIXED64:
            doubles.append(np.frombuffer(r.read(8, start, end), dtype="<f8"))
        elif field == F_BLOB_SHAPE and wt == _LEN:
            data = r.read(r.varint(end), start, end)
            msg = caffe_pb2.BlobShape()
            try:
                msg.ParseFromString(data)
            except DecodeError:
                raise r.fail(f"invalid blob shape at byte {start}") from None
            shape = tuple(int(d) for d in msg.dim)
        elif field in _F_BLOB_LEGACY and wt == _VARINT:
            legacy[_F_BLOB_LEGACY[field]] = _signed64(r.varint(end))
        else:
            r.skip_field(start, wt, end)
    # Caffe prefers double_data when present, and the legacy 4-D dims over `shape`.
    chunks = doubles if doubles else floats
    if not chunks:
        data = np.empty(0, dtype=np.float32)
    elif len(chunks) == 1:
        data = chunks[0]
    else:
        data = np.concatenate(chunks)
    if data.dtype != np.float32:
        data = data.astype(np.float32)
    is_legacy = any(v is not None for v in legacy)
    if is_legacy:
        shape = tuple(v or 0 for v in legacy)
    return data, shape, is_legacy


def _blob_from_proto(bp: caffe_pb2.BlobProto, layer: str, layer_type: str, index: int) -> np.ndarray:
    raw = bp.SerializeToString()
    r = _WireReader(io.BytesIO(raw), f"<blob {index} of layer {layer!r}>", len(raw))
    data, shape, legacy = _parse_blob(r, len(raw))
    if shape is None:
        shape = (data.size,)
    if math.prod(shape) != data.size:
        raise InputFileError(
            f"layer {layer!r}: blob {index} has shape {shape} ({math.prod(shape)} values) but holds {data.size}"
        )
    blob = data.reshape(shape)
    return _fix_legacy_shape(layer_type, index, blob) if legacy else blob


def _fix_legacy_shape(layer_type: str, index: int, blob: np.ndarray) -> np.ndarray:
    """Legacy (num, channels, height, width) blobs padded with leading 1s -> the shapes Caffe uses now."""
    s = blob.shape
    if len(s) != 4:
        return blob
    if layer_type == "InnerProduct" and index == 0 and s[:2] == (1, 1):
        return blob.reshape(s[2], s[3])
    if layer_type in ("InnerProduct", "Convolution", "Deconvolution") and index == 1 and s[:3] == (1, 1, 1):
        return blob.reshape(s[3])
    return blob


# --------------------------------------------------------------------------------------------- prototxt


def parse_prototxt_file(path: str, message: Any) -> Any:
    """Read the text-format protobuf at `path` into `message` (a NetParameter of this or a superset proto)
    and return it; InputFileError naming the file (and ``line:column`` for syntax errors) otherwise."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as err:
        raise InputFileError(f"cannot read {path}: {err.strerror or err}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        raise InputFileError(f"{path}:{line}: not valid UTF-8 text (is it a binary file?)") from None
    try:
        text_format.Parse(text, message)
    except text_format.ParseError as err:
        msg = str(err)
        line, col = err.GetLine(), err.GetColumn()
        prefix = f"{line}:{col} : "
        if msg.startswith(prefix):
            msg = msg[len(prefix) :]
        where = f"{path}:{line}:{col}" if line is not None else path
        raise InputFileError(f"{where}: {' '.join(msg.split())}") from None
    except (ValueError, TypeError) as err:
        raise InputFileError(f"{path}: {' '.join(str(err).split())}") from None
    return message


def read_prototxt(path: str | os.PathLike[str]) -> caffe_pb2.NetParameter:
    """Parse a .prototxt into a NetParameter (V1 layers and net-level inputs upgraded).

    InputFileError with ``file:line:column`` on syntax errors.
    """
    path = os.fspath(path)
    net = parse_prototxt_file(path, caffe_pb2.NetParameter())
    _upgrade_net(net, path)
    return net


def _upgrade_net(net: caffe_pb2.NetParameter, where: str) -> None:
    """In place: V1 ``layers`` -> ``layer``; net-level ``input`` fields -> Input layers."""
    if _HAS_V1 and len(net.layers):
        if len(net.layer):
            raise InputFileError(f"{where}: mixes V1 'layers' and current 'layer' entries")
        for v1 in net.layers:
            _upgrade_v1_layer(v1, net.layer.add(), where)
        net.ClearField("layers")
    if len(net.input):
        inputs = list(net.input)
        if len(net.input_shape) == len(inputs):
            shapes = [list(s.dim) for s in net.input_shape]
        elif len(net.input_dim) == 4 * len(inputs):
            dims = list(net.input_dim)
            shapes = [dims[4 * i : 4 * i + 4] for i in range(len(inputs))]
        else:
            raise InputFileError(
                f"{where}: {len(inputs)} net inputs need as many input_shape entries or 4 input_dim "
                f"values each (found {len(net.input_shape)} input_shape, {len(net.input_dim)} input_dim)"
            )
        taken = {lp.name for lp in net.layer}
        new_layers = []
        for blob, shape in zip(inputs, shapes, strict=True):
            lp = caffe_pb2.LayerParameter()
            lp.name = blob if blob not in taken else blob + "_input"
            lp.type = "Input"
            lp.top.append(blob)
            lp.input_param.shape.add().dim.extend(shape)
            new_layers.append(lp)
        old = list(net.layer)
        net.ClearField("layer")
        net.layer.extend(new_layers + old)
        for name in ("input", "input_shape", "input_dim"):
            net.ClearField(name)


def _upgrade_v1_layer(v1: Any, lp: caffe_pb2.LayerParameter, where: str) -> None:
    layer_fields = _LAYER_FIELDS
    param_names = list(v1.param)
    lrs = list(v1.blobs_lr)
    decays = list(v1.weight_decay)
    modes = list(v1.blob_share_mode)
    for fd, value in v1.ListFields():
        fname = fd.name
        if fname in ("param", "blobs_lr", "weight_decay", "blob_share_mode"):
            continue
        if fname == "type":
            lp.type = _v1_type_name(value)
        elif fname in ("name", "bottom", "top", "include", "exclude", "loss_weight", "blobs"):
            target = getattr(lp, fname)
            if fname == "name":
                lp.name = value
            elif fname in ("bottom", "top", "loss_weight"):
                target.extend(value)
            else:
                for item in value:
                    target.add().CopyFrom(item)
        elif (
            fname in layer_fields
            and fd.message_type is not None
            and layer_fields[fname].message_type is not None
            and layer_fields[fname].message_type.full_name == fd.message_type.full_name
        ):
            getattr(lp, fname).CopyFrom(value)
        else:
            raise InputFileError(
                f"{where}: V1 layer {v1.name!r}: field {fname!r} has no current-format equivalent "
                "(upgrade the file with Caffe's upgrade_net_proto_text)"
            )
    for i in range(max(len(param_names), len(lrs), len(decays), len(modes))):
        spec = lp.param.add()
        if i < len(param_names):
            spec.name = param_names[i]
        if i < len(lrs):
            spec.lr_mult = lrs[i]
        if i < len(decays):
            spec.decay_mult = decays[i]
        if i < len(modes):
            spec.share_mode = modes[i]
