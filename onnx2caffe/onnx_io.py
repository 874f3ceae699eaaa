"""ONNX models whose weights are held as numpy arrays: read, write and run them without copying the weights.

Why. The weights are nearly all of a model's bytes, and protobuf keeps them inside the ModelProto: every
ParseFromString, SerializeToString or CopyFrom copies all of them (VGG-16: 553 MB each time), and
onnxruntime given serialized bytes parses them and copies them again into its own tensors. A *split model*
keeps the protobuf part small:

* the skeleton: the ModelProto with each large initializer reduced to its header (name, type, dims, any other
  non-data field): the weight-free form OnnxGraph works on;
* the weights: one numpy array per large initializer, holding its data.

What each part does with it:

``read_split(path)``
    parses the file's protobuf structure itself (only the keys and lengths of the model's, graph's and
    initializers' fields), hands protobuf the file minus the raw data of the large initializers, and reads
    that data straight from the file into the arrays: the weights are in memory once, never also as bytes
    (``onnx.load`` + ``numpy_helper.to_array`` holds them twice). Anything it does not stream the same way
    protobuf would parse it (external data, data in typed fields, repeated fields, malformed wire format,
    ...) makes it return None, and the caller reads the file with onnx.load as before.
``SplitModel.write_to(f)`` / ``save(path)``
    write exactly the bytes of ``to_proto().SerializeToString()``: protobuf serializes the small messages
    (fields in field-number order, unknown fields last, as protobuf does), the arrays are written from their
    own memory between them.
``SplitModel.runtime_model()``
    the serialized skeleton with the large float initializers declared as graph inputs instead, and the
    arrays to feed them: onnxruntime then builds its session without a copy of the weights (it reads input
    buffers in place), in about no time.

Large means what OnnxGraph strips from its weight-free copies (onnx_graph.INLINE_BYTES: over 4 KiB, integer
tensors over 64 KiB); only tensors with raw data of a plain numpy type are held as arrays.
"""

from __future__ import annotations

import io
import mmap
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import BinaryIO

import numpy as np
import onnx

_T = onnx.TensorProto
# element types whose raw data is a plain little-endian numpy array (numpy_helper.to_array reads them so)
PLAIN_TYPES: dict[int, np.dtype] = {
    _T.FLOAT: np.dtype("<f4"),
    _T.UINT8: np.dtype("u1"),
    _T.INT8: np.dtype("i1"),
    _T.UINT16: np.dtype("<u2"),
    _T.INT16: np.dtype("<i2"),
    _T.INT32: np.dtype("<i4"),
    _T.INT64: np.dtype("<i8"),
    _T.BOOL: np.dtype("?"),
    _T.FLOAT16: np.dtype("<f2"),
    _T.DOUBLE: np.dtype("<f8"),
    _T.UINT32: np.dtype("<u4"),
    _T.UINT64: np.dtype("<u8"),
}
FLOAT_TYPES = frozenset({_T.FLOAT, _T.FLOAT16, _T.DOUBLE})

# field numbers (onnx.proto)
_MODEL_GRAPH = 7
_GRAPH_INITIALIZER = 5
_T_DIMS, _T_DATA_TYPE, _T_NAME, _T_RAW_DATA = 1, 2, 8, 9
# TensorProto fields that hold data another way, or say where it is: a tensor using one is not streamed
# (data_location = DEFAULT, as onnx's external-data loader leaves it, is allowed)
_T_OTHER_DATA = frozenset({3, 4, 5, 6, 7, 10, 11, 13})  # segment, *_data, external_data
_T_DATA_LOCATION = 14
_VARINT, _I64, _LEN, _I32 = 0, 1, 2, 5


# --------------------------------------------------------------------------------------------- helpers


def _large_limit(dtype: np.dtype) -> int:
    from .onnx_graph import INLINE_BYTES, INLINE_INT_BYTES

    return INLINE_INT_BYTES if dtype.kind in "iub" else INLINE_BYTES


def streamable(t: onnx.TensorProto) -> bool:
    """True for an initializer a split model holds as an array: large, raw data of a plain type, nothing
    else that holds or places data (reading raw_data would copy it: only its presence is checked)."""
    dtype = PLAIN_TYPES.get(t.data_type)
    if dtype is None or not t.HasField("raw_data") or t.HasField("segment") or t.data_location != _T.DEFAULT:
        return False
    if t.external_data or t.float_data or t.int32_data or t.string_data or t.int64_data:
        return False
    if t.double_data or t.uint64_data:
        return False
    count = 1
    for d in t.dims:
        if d < 0:
            return False
        count *= int(d)
    return count * dtype.itemsize > _large_limit(dtype)


def _native(a: np.ndarray) -> np.ndarray:
    """A little-endian array in this machine's byte order (numpy_helper does the same swap)."""
    if sys.byteorder == "big" and a.dtype.byteorder == "<":
        return a.astype(a.dtype.newbyteorder("="))
    return a


def _varint_bytes(value: int) -> bytes:
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _key(field_number: int, wire_type: int) -> bytes:
    return _varint_bytes((field_number << 3) | wire_type)


def _set_fields(msg) -> list:
    """The descriptors of the fields set in `msg` (without reading their values: a proto2 string holding
    invalid UTF-8 would not decode)."""
    out = []
    for fd in msg.DESCRIPTOR.fields:
        repeated = fd.is_repeated if hasattr(fd, "is_repeated") else fd.label == fd.LABEL_REPEATED
        if len(getattr(msg, fd.name)) if repeated else msg.HasField(fd.name):
            out.append(fd)
    return out


def _fields_split(msg, number: int) -> tuple[bytes, bytes]:
    """(the serialized fields of `msg` numbered below `number`, those above it and its unknown fields). The
    whole message serializes as lo + (field `number`) + hi: protobuf writes known fields in field-number order
    and unknown fields last. Found by serializing copies with fields cleared (ClearField keeps unknown
    fields, of the message and of its sub-messages alike)."""
    fields = _set_fields(msg)

    def without(drop) -> bytes:
        m = type(msg)()
        m.CopyFrom(msg)
        for fd in fields:
            if drop(fd.number):
                m.ClearField(fd.name)
        return m.SerializeToString()

    whole = without(lambda n: n == number)
    lo_unknown = without(lambda n: n >= number)  # fields below `number`, then the unknown fields
    unknown = without(lambda n: True)
    lo = lo_unknown[: len(lo_unknown) - len(unknown)]
    if not whole.startswith(lo) or not lo_unknown.endswith(unknown):  # not protobuf's usual layout
        raise ValueError("unexpected field order in a serialized message")
    return lo, whole[len(lo) :]


# --------------------------------------------------------------------------------------------- the model


@dataclass
class SplitModel:
    """An ONNX model as a weight-free skeleton plus the arrays of its large initializers (see the module
    docstring). `weights` keys are initializer names of the skeleton whose data fields are empty."""

    skeleton: onnx.ModelProto
    weights: dict[str, np.ndarray] = field(default_factory=dict)
    source: str | None = None  # a name for messages (the file it was read from or is written to)

    @classmethod
    def from_proto(cls, model: onnx.ModelProto) -> SplitModel:
        """Split a whole model (left unchanged): the large raw-data initializers become arrays (one copy of
        their bytes), the rest is copied into the skeleton."""
        from .onnx_graph import weight_free_copy

        names = [t.name for t in model.graph.initializer if streamable(t)]
        if len(set(names)) != len(names):  # repeated names: keep the model whole
            names = []
        weights = {}
        for t in model.graph.initializer:
            if t.name in weights or t.name not in names:
                continue
            dtype = PLAIN_TYPES[t.data_type]
            arr = np.frombuffer(t.raw_data, dtype=dtype)  # a read-only view of one copy of the bytes
            if arr.size != _count(t.dims):
                names.remove(t.name)  # malformed: left whole, for OnnxGraph to refuse with its message
                continue
            weights[t.name] = _native(arr.reshape(tuple(int(d) for d in t.dims)))
        return cls(weight_free_copy(model, set(weights)), weights)

    @property
    def nbytes(self) -> int:
        return sum(int(a.nbytes) for a in self.weights.values())

    def to_proto(self) -> onnx.ModelProto:
        """The whole model (a copy of the skeleton with the data put back: copies the weights)."""
        out = onnx.ModelProto()
        out.CopyFrom(self.skeleton)
        for t in out.graph.initializer:
            a = self.weights.get(t.name)
            if a is not None:
                t.raw_data = _le_bytes(a)
        return out

    # ---------------------------------------------------------------- writing
    def _parts(self) -> Iterator[bytes | np.ndarray]:
        """The serialized model as a sequence of byte strings and arrays (written as their raw bytes)."""
        model_lo, model_hi = _fields_split(self.skeleton, _MODEL_GRAPH)
        g = self.skeleton.graph
        has_graph = self.skeleton.HasField("graph")
        graph_lo, graph_hi = _fields_split(g, _GRAPH_INITIALIZER)
        inits: list[list[bytes | np.ndarray]] = []
        for t in g.initializer:
            a = self.weights.get(t.name)
            if a is None:
                inits.append(
                    [_key(_GRAPH_INITIALIZER, _LEN) + _varint_bytes(t.ByteSize()), t.SerializeToString()]
                )
                continue
            t_lo, t_hi = _fields_split(t, _T_RAW_DATA)
            a = _le_array(a)
            raw_head = _key(_T_RAW_DATA, _LEN) + _varint_bytes(a.nbytes)
            size = len(t_lo) + len(raw_head) + a.nbytes + len(t_hi)
            inits.append([_key(_GRAPH_INITIALIZER, _LEN) + _varint_bytes(size) + t_lo + raw_head, a, t_hi])
        graph_size = len(graph_lo) + len(graph_hi) + sum(_part_len(p) for parts in inits for p in parts)
        yield model_lo
        if has_graph:
            yield _key(_MODEL_GRAPH, _LEN) + _varint_bytes(graph_size) + graph_lo
            for parts in inits:
                yield from parts
            yield graph_hi
        yield model_hi

    def serialized_size(self) -> int:
        return sum(_part_len(p) for p in self._parts())

    def write_to(self, f: BinaryIO) -> int:
        """Write the serialized model (the bytes of to_proto().SerializeToString()); returns the size."""
        n = 0
        for p in self._parts():
            if isinstance(p, np.ndarray):
                if p.nbytes:
                    f.write(memoryview(p).cast("B"))
                n += p.nbytes
            else:
                f.write(p)
                n += len(p)
        return n

    def serialize(self) -> bytes:
        """The serialized model as one bytes object (a copy of the weights: for small models and tests)."""
        import io

        buf = io.BytesIO()
        self.write_to(buf)
        return buf.getvalue()

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the model to `path` atomically (fileio.atomic_write), refusing more than protobuf's 2 GB."""
        from .errors import OutputFileError
        from .fileio import atomic_write, preallocate
        from .onnx_graph import PROTO_LIMIT

        size = self.serialized_size()
        if size > PROTO_LIMIT:
            raise OutputFileError(
                f"cannot write {os.fspath(path)} as a single .onnx file: {size} bytes, over protobuf's 2 GB "
                f"({PROTO_LIMIT}-byte) message limit"
            )
        with atomic_write(path) as f:
            preallocate(f, size)
            self.write_to(f)

    # ---------------------------------------------------------------- onnxruntime
    def runtime_model(self) -> tuple[bytes, dict[str, np.ndarray]]:
        """(serialized model, inputs to feed): the large float initializers become graph inputs of the same
        type and shape, fed from the arrays, so onnxruntime holds no copy of them; other large initializers
        (integer tensors) keep their data inside the model."""
        from onnx import helper

        out = onnx.ModelProto()
        out.CopyFrom(self.skeleton)
        g = out.graph
        declared = {vi.name for vi in g.input}
        feeds: dict[str, np.ndarray] = {}
        keep = []
        for t in g.initializer:
            a = self.weights.get(t.name)
            if a is None:
                keep.append(t)
            elif t.data_type in FLOAT_TYPES:
                feeds[t.name] = np.ascontiguousarray(a)
                if t.name not in declared:
                    g.input.append(helper.make_tensor_value_info(t.name, t.data_type, list(t.dims)))
            else:
                t.raw_data = _le_bytes(a)
                keep.append(t)
        if feeds:
            kept = []
            for t in keep:
                c = onnx.TensorProto()
                c.CopyFrom(t)
                kept.append(c)
            del g.initializer[:]
            g.initializer.extend(kept)
        return out.SerializeToString(), feeds


def _count(dims) -> int:
    n = 1
    for d in dims:
        n *= int(d)
    return n


def _le_array(a: np.ndarray) -> np.ndarray:
    """`a` as C-contiguous little-endian data (no copy in the usual case)."""
    if a.dtype.byteorder == ">" or (a.dtype.byteorder == "=" and sys.byteorder == "big"):
        a = a.astype(a.dtype.newbyteorder("<"))
    return np.ascontiguousarray(a)


def _le_bytes(a: np.ndarray) -> bytes:
    return _le_array(a).tobytes()


def _part_len(p: bytes | np.ndarray) -> int:
    return int(p.nbytes) if isinstance(p, np.ndarray) else len(p)


# --------------------------------------------------------------------------------------------- reading


class _Unstreamable(Exception):
    """The file uses something read_split leaves to onnx.load (it is not necessarily invalid)."""


def _varint(buf, pos: int, end: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= end:
            raise _Unstreamable
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result, pos
        shift += 7
        if shift >= 64:
            raise _Unstreamable


def _fields(buf, start: int, end: int) -> Iterator[tuple[int, int, int, int, int]]:
    """(field number, wire type, start of the field's key, start of its value, end of the field) for each
    field of the message buf[start:end]; a varint's value is decoded by the caller from its start."""
    pos = start
    while pos < end:
        fstart = pos
        key, pos = _varint(buf, pos, end)
        number, wire = key >> 3, key & 7
        if number == 0 or key >= 1 << 32:
            raise _Unstreamable
        if wire == _VARINT:
            vstart = pos
            _, pos = _varint(buf, pos, end)
        elif wire == _I64:
            vstart, pos = pos, pos + 8
        elif wire == _I32:
            vstart, pos = pos, pos + 4
        elif wire == _LEN:
            n, vstart = _varint(buf, pos, end)
            pos = vstart + n
        else:  # groups: not used by onnx.proto
            raise _Unstreamable
        if pos > end:
            raise _Unstreamable
        yield number, wire, fstart, vstart, pos


@dataclass
class _Stream:
    name: str
    dtype: np.dtype
    dims: tuple[int, ...]
    offset: int
    nbytes: int


def _scan_tensor(buf, start: int, end: int) -> tuple[bytes, _Stream] | None:
    """(the tensor's bytes without its raw_data field, where that data is) for a streamable initializer,
    else None (the tensor is kept whole)."""
    dims: list[int] = []
    data_type = 0
    name = None
    raw = None
    for number, wire, fstart, vstart, vend in _fields(buf, start, end):
        if number == _T_RAW_DATA:
            if wire != _LEN or raw is not None:
                return None
            raw = (fstart, vstart, vend)
        elif number in _T_OTHER_DATA:
            return None
        elif number == _T_DATA_LOCATION:
            if wire != _VARINT or _varint(buf, vstart, vend)[0] != _T.DEFAULT:
                return None
        elif number == _T_DIMS:
            if wire == _VARINT:
                dims.append(_varint(buf, vstart, vend)[0])
            elif wire == _LEN:
                pos = vstart
                while pos < vend:
                    d, pos = _varint(buf, pos, vend)
                    dims.append(d)
            else:
                return None
        elif number == _T_DATA_TYPE:
            if wire != _VARINT:
                return None
            data_type = _varint(buf, vstart, vend)[0]
        elif number == _T_NAME:
            if wire != _LEN or name is not None:
                return None
            try:
                name = bytes(buf[vstart:vend]).decode("utf-8")
            except UnicodeDecodeError:
                return None
    dtype = PLAIN_TYPES.get(data_type)
    if raw is None or name is None or dtype is None or any(d >= 1 << 63 for d in dims):
        return None
    nbytes = _count(dims) * dtype.itemsize
    fstart, vstart, vend = raw
    if vend - vstart != nbytes or nbytes <= _large_limit(dtype):
        return None  # small, or a size that does not match: left whole (OnnxGraph refuses the latter)
    head = bytes(buf[start:fstart]) + bytes(buf[vend:end])
    return head, _Stream(name, dtype, tuple(dims), vstart, nbytes)


def _scan_graph(buf, start: int, end: int, streams: list[_Stream], names: set[str]) -> bytes:
    parts = []
    for number, wire, fstart, vstart, vend in _fields(buf, start, end):
        found = _scan_tensor(buf, vstart, vend) if number == _GRAPH_INITIALIZER and wire == _LEN else None
        if found is None:
            parts.append(bytes(buf[fstart:vend]))
            continue
        head, s = found
        if s.name in names:
            raise _Unstreamable  # initializers with one name: onnx.load's path refuses them properly
        names.add(s.name)
        streams.append(s)
        parts.append(_key(_GRAPH_INITIALIZER, _LEN) + _varint_bytes(len(head)) + head)
    return b"".join(parts)


def _scan_model(buf, size: int) -> tuple[bytes, list[_Stream]]:
    parts = []
    streams: list[_Stream] = []
    graphs = 0
    for number, wire, fstart, vstart, vend in _fields(buf, 0, size):
        if number != _MODEL_GRAPH:
            parts.append(bytes(buf[fstart:vend]))
            continue
        graphs += 1
        if wire != _LEN or graphs > 1:  # protobuf would merge repeated graph fields: leave that to it
            raise _Unstreamable
        graph = _scan_graph(buf, vstart, vend, streams, set())
        parts.append(_key(_MODEL_GRAPH, _LEN) + _varint_bytes(len(graph)) + graph)
    return b"".join(parts), streams


def _skeleton(buf, size: int) -> tuple[onnx.ModelProto, list[_Stream]] | None:
    try:
        skeleton_bytes, streams = _scan_model(buf, size)
    except _Unstreamable:
        return None
    if not streams:
        return None
    try:
        return onnx.ModelProto.FromString(skeleton_bytes), streams
    except Exception:
        return None


def _finish(a: np.ndarray, s: _Stream) -> np.ndarray:
    a = _native(a.reshape(s.dims))
    a.flags.writeable = False
    return a


def read_split(path: str | os.PathLike[str]) -> SplitModel | None:
    """The model in `path` as a SplitModel, reading the data of its large initializers straight into arrays;
    None when the file holds no such initializer or uses something this reader leaves to onnx.load (see the
    module docstring). OSError propagates; the caller has checked that `path` is a non-empty file."""
    path = os.fspath(path)
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size == 0:
            return None
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
            found = _skeleton(mm, size)
        if found is None:
            return None
        skeleton, streams = found
        weights = {}
        for s in streams:
            arr = np.empty(s.nbytes // s.dtype.itemsize, dtype=s.dtype)
            f.seek(s.offset)
            view = memoryview(arr).cast("B")
            got = 0
            while got < s.nbytes:
                k = f.readinto(view[got:])
                if not k:
                    return None  # the file shrank under us: onnx.load reports what it finds
                got += k
            del view
            weights[s.name] = _finish(arr, s)
    return SplitModel(skeleton, weights, path)


def split_bytes(data: bytes) -> SplitModel | None:
    """A serialized model (as read_split reads a file) as a SplitModel: the large initializers' data copied
    into arrays of their own (aligned, so the bytes can be dropped); None as for read_split."""
    found = _skeleton(data, len(data))
    if found is None:
        return None
    skeleton, streams = found
    src = memoryview(data)
    weights = {}
    for s in streams:
        arr = np.empty(s.nbytes // s.dtype.itemsize, dtype=s.dtype)
        memoryview(arr).cast("B")[:] = src[s.offset : s.offset + s.nbytes]
        weights[s.name] = _finish(arr, s)
    return SplitModel(skeleton, weights)


class CapturedBytes(io.RawIOBase):
    """A write-only file object that keeps what is written to it without copying it: torch's TorchScript
    exporter writes the serialized model with one write() of a bytes object, which is kept as it is (writing
    it to a file and reading it back would pass the weights through the page cache twice)."""

    def __init__(self) -> None:
        super().__init__()
        self.parts: list[bytes] = []

    def writable(self) -> bool:
        return True

    def write(self, b) -> int:
        self.parts.append(b if type(b) is bytes else bytes(b))
        return len(self.parts[-1])

    def getvalue(self) -> bytes:
        return self.parts[0] if len(self.parts) == 1 else b"".join(self.parts)


# --------------------------------------------------------------------------------------------- onnxruntime


def graph_inputs(model: onnx.ModelProto) -> list[str]:
    """The inputs a caller feeds: graph inputs that are not initializers."""
    inits = {t.name for t in model.graph.initializer}
    return [vi.name for vi in model.graph.input if vi.name not in inits]


def run_onnxruntime(
    model: SplitModel, feeds: dict[str, np.ndarray], outputs: list[str] | None = None
) -> tuple[list[str], list[np.ndarray]]:
    """Run `model` once with onnxruntime on its unoptimised graph (ORT_DISABLE_ALL: ORT's fusions would
    change the rounding of the reference); returns (output names, arrays), all outputs when `outputs` is
    None. The large float weights are fed as inputs (SplitModel.runtime_model), so the session holds no
    copy of them; should onnxruntime refuse that form, the whole model is run instead (then a copy). Errors
    propagate as onnxruntime raises them."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    opts.log_severity_level = 3
    providers = ["CPUExecutionProvider"]
    data, extra = model.runtime_model()
    try:
        sess = ort.InferenceSession(data, opts, providers=providers)
        names = list(outputs) if outputs is not None else [o.name for o in sess.get_outputs()]
        return names, sess.run(names, {**feeds, **extra})
    except Exception:
        if not extra:
            raise
    del data, extra
    sess = ort.InferenceSession(model.to_proto().SerializeToString(), opts, providers=providers)
    names = list(outputs) if outputs is not None else [o.name for o in sess.get_outputs()]
    return names, sess.run(names, feeds)
