"""Loading and analysing an ONNX model before conversion.

`OnnxGraph` wraps an `onnx.ModelProto` (a private copy) and keeps, after every change, the facts the passes and
mappers need: static shapes and dtypes of every tensor (ONNX shape inference with data propagation), the
constants (initializers and Constant outputs), producers/consumers, and the opset of every domain.

Memory. The weights are the bulk of a model, so they are copied as little as possible: the checker and shape
inference run on a weight-free copy of the model (initializers over a few KiB keep their name, type and dims,
not their data: shapes need no data, and data propagation only reads small shape tensors), each initializer
becomes one read-only numpy array once (re-used by later refreshes), and `OnnxGraph.load(...,
detach_weights=True)` keeps the big initializers only as those arrays, not in the ModelProto as well; a file's
large initializers are read straight from it into those arrays (onnx_io.read_split), so a model read from a
file is in memory once, not as protobuf bytes and arrays both.

Shapes. Inference runs from the graph inputs alone (the shapes a model declares for its outputs and in
value_info are removed first), so a static input fixes every shape its nodes compute even where the model
declares symbolic or unknown dimensions (e.g. a dynamic export whose input was set to a fixed size). What a
model declares is then checked against what inference computed: a static dimension that differs (or a
different rank) makes the model invalid and it is refused, naming the tensor and both shapes. A declared
shape is only used for a tensor that inference cannot fix. The reshaping ops (Reshape, Flatten, Squeeze, ...)
must keep the element count of their input; ONNX shape inference takes Reshape's target as given, so a
target holding more or fewer elements than the input is refused here, before any work is done.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
import onnx
from onnx import numpy_helper

from .errors import InputFileError

if TYPE_CHECKING:
    from .onnx_io import SplitModel

# Ops whose output holds exactly the elements of their first input (so their counts must be equal).
_SAME_COUNT_OPS = frozenset(
    {"Reshape", "Flatten", "Squeeze", "Unsqueeze", "Transpose", "DepthToSpace", "SpaceToDepth", "Identity"}
)

_FLOAT = onnx.TensorProto.FLOAT

PROTO_LIMIT = 2**31 - 1  # protobuf's limit on one serialized message (Caffe reads caffemodels with the same)

# Initializers at most this big keep their data in the weight-free copies the checker and shape inference
# see (data propagation reads shape tensors such as Reshape's shape input); integer tensors (shapes,
# indices) keep it up to the larger limit.
INLINE_BYTES = 4096
INLINE_INT_BYTES = 65536

_DATA_FIELDS = frozenset(
    {
        "raw_data",
        "float_data",
        "int32_data",
        "string_data",
        "int64_data",
        "double_data",
        "uint64_data",
        "external_data",
        "data_location",
    }
)


def _external_tensors(model: onnx.ModelProto) -> Iterator[onnx.TensorProto]:
    """Every tensor of the model (initializers, attribute tensors, subgraphs included) stored externally."""

    def walk(g: onnx.GraphProto) -> Iterator[onnx.TensorProto]:
        yield from g.initializer
        for n in g.node:
            for a in n.attribute:
                if a.HasField("t"):
                    yield a.t
                yield from a.tensors
                if a.HasField("g"):
                    yield from walk(a.g)
                for sub in a.graphs:
                    yield from walk(sub)

    for t in walk(model.graph):
        if t.data_location == onnx.TensorProto.EXTERNAL:
            yield t


def _fixed_nbytes(t: onnx.TensorProto) -> int | None:
    """The bytes the tensor's dims and type need, None for types without a fixed size per element."""
    if t.data_type in (onnx.TensorProto.STRING, onnx.TensorProto.UNDEFINED):
        return None
    dtype = np_dtype(t.data_type)
    if dtype is None or dtype.itemsize == 0:
        return None
    bits = {
        onnx.TensorProto.INT4: 4,
        onnx.TensorProto.UINT4: 4,
        getattr(onnx.TensorProto, "FLOAT4E2M1", -1): 4,
        getattr(onnx.TensorProto, "INT2", -2): 2,
        getattr(onnx.TensorProto, "UINT2", -3): 2,
        getattr(onnx.TensorProto, "FLOAT6E2M3", -4): 6,
        getattr(onnx.TensorProto, "FLOAT6E3M2", -5): 6,
    }.get(t.data_type)
    count = 1
    for d in t.dims:
        count *= int(d)
    if bits is not None:
        return (count * bits + 7) // 8
    return count * dtype.itemsize


def _check_external_data(model: onnx.ModelProto, path: str, file_size: int) -> None:
    """Before any external data is read: refuse a model that cannot fit one protobuf message (the ONNX file
    plus every external tensor over 2**31-1 bytes), and tensors whose `length` (or, without one, the rest of
    the data file after `offset`) disagrees with their shape. Malformed fields are left to onnx's loader."""
    base = os.path.dirname(os.path.abspath(path))
    total = file_size
    for t in _external_tensors(model):
        info = {e.key: e.value for e in t.external_data}
        location = info.get("location", "")
        try:
            offset = int(info.get("offset", "0"))
            length = int(info["length"]) if "length" in info else None
        except ValueError:
            continue
        if offset < 0 or (length is not None and length < 0):
            continue
        if length is None:
            data_path = os.path.normpath(os.path.join(base, location))
            inside = location and not os.path.isabs(location) and data_path.startswith(base + os.sep)
            try:
                st = os.stat(data_path) if inside else None
            except OSError:
                st = None
            if st is None or not _is_regular(st):
                continue
            length = max(st.st_size - offset, 0)
        total += length
        expected = _fixed_nbytes(t)
        if expected is not None and length != expected:
            dims = "x".join(str(d) for d in t.dims) or "scalar"
            kind = onnx.TensorProto.DataType.Name(t.data_type)
            raise InputFileError(
                f"{path}: tensor '{t.name}': its external data in {location} is {length} bytes, but its shape "
                f"({dims}, {kind}) needs {expected} bytes"
            )
    if total > PROTO_LIMIT:
        raise InputFileError(
            f"{path}: the model with its external data is {total} bytes, over protobuf's 2 GB "
            f"({PROTO_LIMIT}-byte) message limit (a caffemodel has the same limit)"
        )


def _is_regular(st: os.stat_result) -> bool:
    import stat

    return stat.S_ISREG(st.st_mode)


def _check_path(path: str) -> int:
    """The size of the ONNX file `path`; InputFileError when it is missing, a folder, empty or over 2 GB."""
    if not os.path.exists(path):
        raise InputFileError(f"{path}: no such file")
    if os.path.isdir(path):
        raise InputFileError(f"{path}: is a directory, expected an .onnx file")
    try:
        size = os.path.getsize(path)
    except OSError as exc:
        raise InputFileError(f"{path}: cannot read ({exc.strerror})") from exc
    if size == 0:
        raise InputFileError(f"{path}: empty file, expected an ONNX model")
    if size > 2**31 - 1:  # protobuf (and Caffe's caffemodel reader) cannot hold a message over 2 GB
        raise InputFileError(f"{path}: {size} bytes, over protobuf's 2 GB (2147483647-byte) message limit")
    return size


def _finish_loading(proto: onnx.ModelProto, path: str, size: int) -> None:
    """Check a model read from `path` and read its external data into it."""
    if not proto.HasField("graph") or proto.ir_version <= 0:
        raise InputFileError(f"{path}: not a valid ONNX model (no graph or IR version)")
    if any(True for _ in _external_tensors(proto)):
        _check_external_data(proto, path, size)
        try:
            onnx.external_data_helper.load_external_data_for_model(proto, os.path.dirname(path))
        except OSError as exc:
            raise InputFileError(f"{path}: cannot read its external data ({_one_line(exc)})") from exc
        except Exception as exc:  # bad offset/length fields, locations outside the model's folder, ...
            raise InputFileError(f"{path}: not a valid ONNX model ({_one_line(exc)})") from exc


def load_model(model: str | os.PathLike | onnx.ModelProto, copy: bool = True) -> tuple[onnx.ModelProto, str]:
    """Read an ONNX model (path or proto). Returns (the model, a name for messages): a private copy of a
    given proto (the proto itself with copy=False, for callers that never modify it)."""
    if isinstance(model, onnx.ModelProto):
        if not copy:
            return model, (model.graph.name or "<model>")
        dup = onnx.ModelProto()
        dup.CopyFrom(model)
        return dup, (model.graph.name or "<model>")
    path = os.fspath(model)
    size = _check_path(path)
    try:
        proto = onnx.load(path, load_external_data=False)
    except OSError as exc:
        raise InputFileError(f"{path}: cannot read ({exc})") from exc
    except Exception as exc:  # protobuf DecodeError, ...
        raise InputFileError(f"{path}: not a valid ONNX model ({_one_line(exc)})") from exc
    _finish_loading(proto, path, size)
    return proto, path


def load_split(model) -> tuple[SplitModel, str]:
    """Read an ONNX model (path, proto or SplitModel) as a SplitModel (see onnx_io): a file's large
    initializers are read straight into arrays (their bytes are in memory once, not twice). Returns (the
    model, a name for messages). Callers must not modify the result's skeleton (it may be the given one);
    a given proto is split into a new skeleton and arrays (one copy of its weights)."""
    from .onnx_io import SplitModel, read_split

    if isinstance(model, SplitModel):
        return model, (model.source or model.skeleton.graph.name or "<model>")
    if isinstance(model, onnx.ModelProto):
        return SplitModel.from_proto(model), (model.graph.name or "<model>")
    path = os.fspath(model)
    size = _check_path(path)
    try:
        split = read_split(path)
    except OSError as exc:
        raise InputFileError(f"{path}: cannot read ({exc})") from exc
    if split is None:  # nothing to stream, or something only onnx.load reads right
        proto, _ = load_model(path)
        return SplitModel.from_proto(proto), path
    _finish_loading(split.skeleton, path, size)
    return split, path


def _one_line(exc: BaseException, limit: int = 200) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _shape_of(type_proto: onnx.TypeProto) -> tuple[int, ...] | None:
    """Static shape of a tensor type, None when unknown or partly dynamic."""
    if not type_proto.HasField("tensor_type") or not type_proto.tensor_type.HasField("shape"):
        return None
    dims = []
    for d in type_proto.tensor_type.shape.dim:
        if not d.HasField("dim_value") or d.dim_value < 0:
            return None
        dims.append(int(d.dim_value))
    return tuple(dims)


def _dims_of(type_proto: onnx.TypeProto) -> list[int | str | None] | None:
    """The declared dimensions of a tensor type (int, symbolic name, or None for unknown), None without a
    shape field."""
    if not type_proto.HasField("tensor_type") or not type_proto.tensor_type.HasField("shape"):
        return None
    out: list[int | str | None] = []
    for d in type_proto.tensor_type.shape.dim:
        if d.HasField("dim_value"):
            out.append(int(d.dim_value))
        elif d.dim_param:
            out.append(d.dim_param)
        else:
            out.append(None)
    return out


def format_dims(dims: Iterable[int | str | None] | None) -> str:
    """(1, 3, H, ?) style text of a shape: numbers, symbolic names, '?' for unknown dimensions."""
    if dims is None:
        return "(unknown)"
    parts = ["?" if d is None else str(d) for d in dims]
    return "(" + ", ".join(parts) + ("," if len(parts) == 1 else "") + ")"


def _dims_conflict(declared: list | None, inferred: list | None) -> bool:
    """True when two shapes cannot describe the same tensor: different ranks, or a dimension static in both
    with different values. Symbolic and unknown dimensions agree with anything."""
    if declared is None or inferred is None:
        return False
    if len(declared) != len(inferred):
        return True
    return any(
        isinstance(a, int) and isinstance(b, int) and a != b for a, b in zip(declared, inferred, strict=True)
    )


def _count(shape: Iterable[int]) -> int:
    n = 1
    for d in shape:
        n *= int(d)
    return n


def infer_shapes(model: onnx.ModelProto, source: str, strict: bool = False) -> onnx.ModelProto:
    """ONNX shape inference (with data propagation) of a (weight-free) model, failures as InputFileError."""
    try:
        return onnx.shape_inference.infer_shapes(model, check_type=False, strict_mode=strict, data_prop=True)
    except Exception as exc:
        if strict:
            raise
        raise InputFileError(f"{source}: ONNX shape inference failed ({_one_line(exc)})") from exc


def _without_declared_shapes(model: onnx.ModelProto) -> None:
    """Remove, in place, what the model declares about its non-input tensors: value_info and the shapes of
    the graph outputs (their element types stay)."""
    del model.graph.value_info[:]
    for o in model.graph.output:
        if o.type.HasField("tensor_type"):
            o.type.tensor_type.ClearField("shape")


def input_shape_hint(source: str, graph: onnx.GraphProto) -> str:
    """How to give the dynamic inputs of `graph` fixed shapes: an example `--input-shape NAME=...` per
    dynamic input (static dimensions as they are, 1 for a dynamic first (batch) dimension, the dimension's
    name elsewhere, to be replaced by a number)."""
    init_names = {i.name for i in graph.initializer}
    specs = []
    for vi in graph.input:
        if vi.name in init_names or not vi.type.HasField("tensor_type"):
            continue
        dims = _dims_of(vi.type)
        if dims is not None and all(isinstance(d, int) and d > 0 for d in dims):
            continue
        if dims is None:
            dims = ["N", "C", "H", "W"]
        text = []
        for axis, d in enumerate(dims):
            if isinstance(d, int) and d > 0:
                text.append(str(d))
            elif axis == 0:
                text.append("1")
            else:
                text.append(d if isinstance(d, str) and d.isidentifier() else f"D{axis}")
        specs.append(f"--input-shape {vi.name}={','.join(text)}")
    return (
        f"fix it with --input-shape, e.g. `onnx2caffe convert {source} -o PREFIX {' '.join(specs)}` "
        "(numbers for the dynamic dimensions)"
    )


def fix_input_shapes(
    model: onnx.ModelProto, shapes: Sequence[Sequence[int]] | Mapping[str, Sequence[int]], source: str
) -> bool:
    """Give the graph inputs of `model` (in place) the static `shapes`: one per input in order, or by input
    name (a mapping, or shapes with a `name` attribute such as cli's NAME=1,3,224,224; any subset of inputs).
    A shape that contradicts the model (another rank, another value for a static dimension), an unknown name
    or a missing input raise InputFileError. The declared shapes of other tensors are left: inference
    recomputes them (see OnnxGraph). Returns True when a dimension changed."""
    g = model.graph
    init_names = {i.name for i in g.initializer}
    inputs = [vi for vi in g.input if vi.name not in init_names]
    names = [vi.name for vi in inputs]
    if isinstance(shapes, Mapping):
        wanted = {str(k): tuple(int(d) for d in v) for k, v in shapes.items()}
    else:
        shapes = list(shapes)
        named = [getattr(s, "name", None) for s in shapes]
        if any(named) and not all(named):
            raise InputFileError(
                "--input-shape: give every shape as NAME=DIMS or none (then one per input, in order)"
            )
        if all(named) and shapes:
            wanted = {}
            for n, s in zip(named, shapes, strict=True):
                if n in wanted:
                    raise InputFileError(f"--input-shape: input '{n}' is given twice")
                wanted[n] = tuple(int(d) for d in s)
        else:
            if len(shapes) != len(inputs):
                raise InputFileError(
                    f"{source}: {len(shapes)} --input-shape for {len(inputs)} input(s) "
                    f"({', '.join(names)}); give one per input in order, or NAME=DIMS"
                )
            wanted = {n: tuple(int(d) for d in s) for n, s in zip(names, shapes, strict=True)}
    unknown = [n for n in wanted if n not in names]
    if unknown:
        raise InputFileError(f"{source}: --input-shape {unknown[0]}=...: no input named '{unknown[0]}' "
                             f"(inputs: {', '.join(names)})")  # fmt: skip
    changed = False
    for vi in inputs:
        if vi.name not in wanted:
            continue
        shape = wanted[vi.name]
        if not shape or any(d <= 0 for d in shape):
            raise InputFileError(
                f"--input-shape {vi.name}={','.join(map(str, shape))}: dimensions must be > 0"
            )
        if not vi.type.HasField("tensor_type"):
            raise InputFileError(f"{source}: input '{vi.name}' is not a tensor")
        dims = _dims_of(vi.type)
        given = ",".join(map(str, shape))
        if dims is not None and len(dims) != len(shape):
            raise InputFileError(
                f"{source}: --input-shape {vi.name}={given} has {len(shape)} dimensions, input "
                f"'{vi.name}' has {len(dims)} {format_dims(dims)}"
            )
        for axis, (d, v) in enumerate(zip(dims or shape, shape, strict=True)):
            if isinstance(d, int) and d > 0 and d != v:
                raise InputFileError(
                    f"{source}: --input-shape {vi.name}={given}: dimension {axis} of input '{vi.name}' is "
                    f"fixed at {d} by the model {format_dims(dims)}"
                )
        if dims != list(shape):
            changed = True
            tensor_shape = vi.type.tensor_type.shape
            tensor_shape.Clear()
            for v in shape:
                tensor_shape.dim.add().dim_value = int(v)
    return changed


def np_dtype(elem_type: int) -> np.dtype | None:
    try:
        return np.dtype(onnx.helper.tensor_dtype_to_np_dtype(elem_type))
    except Exception:
        return None


def _is_large(t: onnx.TensorProto) -> bool:
    """True for an initializer whose data the weight-free copies leave out (computed from dims and type:
    reading the data or ByteSize() would copy it)."""
    nbytes = _fixed_nbytes(t)
    if nbytes is None:
        return False
    dtype = np_dtype(t.data_type)
    limit = INLINE_INT_BYTES if dtype is not None and dtype.kind in "iub" else INLINE_BYTES
    return nbytes > limit


def _copy_fields(dst, src, skip: Iterable[str] = ()) -> None:
    """Copy the set fields of message `src` into `dst`, except those named in `skip` (never read: reading a
    bytes field such as raw_data would copy the data)."""
    skip = set(skip)
    for fd in src.DESCRIPTOR.fields:
        if fd.name in skip:
            continue
        repeated = fd.is_repeated if hasattr(fd, "is_repeated") else fd.label == fd.LABEL_REPEATED
        if repeated:
            value = getattr(src, fd.name)
            if len(value):
                getattr(dst, fd.name).extend(value)
        elif src.HasField(fd.name):
            if fd.type == fd.TYPE_MESSAGE:
                getattr(dst, fd.name).CopyFrom(getattr(src, fd.name))
            else:
                setattr(dst, fd.name, getattr(src, fd.name))


def weight_free_copy(
    model: onnx.ModelProto, strip: set[str] | None = None, empty: bool = False
) -> onnx.ModelProto:
    """A copy of `model` whose initializers named in `strip` (default: the large ones) have no data: name,
    type and dims are kept (shape inference needs no more), or with empty=True dims [0] (a tensor the
    checker accepts without data). The weights themselves are never copied."""
    out = onnx.ModelProto()
    _copy_fields(out, model, skip=("graph",))
    g = out.graph
    _copy_fields(g, model.graph, skip=("initializer",))
    for init in model.graph.initializer:
        t = g.initializer.add()
        if (init.name in strip) if strip is not None else _is_large(init):
            _copy_fields(t, init, skip=_DATA_FIELDS)
            if empty:
                del t.dims[:]
                t.dims.append(0)
        else:
            t.CopyFrom(init)
    return out


def name_nodes(model: onnx.ModelProto) -> bool:
    """Give every node a unique non-empty name (generated from the op type where missing or repeated), as
    onnxruntime requires. Deterministic; returns True when a name changed."""
    nodes = model.graph.node
    seen = {n.name for n in nodes}
    used: set[str] = set()
    changed = False
    for i, n in enumerate(nodes):
        name = n.name
        if not name or name in used:
            base = name or f"{n.op_type}_{i}"
            candidate, k = base, 1
            while candidate in used or (candidate != name and candidate in seen):
                candidate = f"{base}_{k}"
                k += 1
            n.name = candidate
            changed = True
        used.add(n.name)
    return changed


def _check_text(model: onnx.ModelProto, source: str) -> None:
    """Refuse names that are not valid UTF-8: protobuf hands such proto2 string fields to Python as bytes."""

    def bad(value) -> bool:
        return isinstance(value, bytes)

    def show(value) -> str:
        return repr(value)[1:] if isinstance(value, bytes) else repr(value)

    def fail(what: str, value) -> None:
        raise InputFileError(f"{source}: {what} {show(value)} is not valid UTF-8 text")

    for imp in model.opset_import:
        if bad(imp.domain):
            fail("opset domain", imp.domain)
    g = model.graph
    if bad(g.name):
        fail("graph name", g.name)
    for kind, items in (
        ("graph input", g.input),
        ("graph output", g.output),
        ("value_info", g.value_info),
        ("initializer", g.initializer),
    ):
        for item in items:
            if bad(item.name):
                fail(f"{kind} name", item.name)
    for i, n in enumerate(g.node):
        label = f"node '{n.name}'" if not bad(n.name) else f"node {i}"
        if bad(n.name):
            fail(f"the name of node {i} ({n.op_type if not bad(n.op_type) else '?'})", n.name)
        if bad(n.op_type):
            fail(f"the op type of {label}", n.op_type)
        if bad(n.domain):
            fail(f"the domain of {label}", n.domain)
        for t in list(n.input) + list(n.output):
            if bad(t):
                fail(f"a tensor name of {label}", t)
        for a in n.attribute:
            if bad(a.name):
                fail(f"an attribute name of {label}", a.name)


def tensor_array(t: onnx.TensorProto, source: str, what: str = "initializer") -> np.ndarray:
    """numpy_helper.to_array with malformed data (size not matching the dims, unknown type) as
    InputFileError naming the tensor. Raw data gives a read-only view of one copy of the bytes."""
    try:
        return numpy_helper.to_array(t)
    except Exception as exc:
        dims = "x".join(str(d) for d in t.dims) or "scalar"
        try:
            kind = onnx.TensorProto.DataType.Name(t.data_type)
        except ValueError:
            kind = f"type {t.data_type}"
        raise InputFileError(
            f"{source}: {what} '{t.name}': its data does not match its shape {dims} of {kind} "
            f"({_one_line(exc, 120)})"
        ) from None


class OnnxGraph:
    """A validated ONNX model with static shapes. `refresh()` after editing `model.graph`.

    With `detached` (name -> array, see `load(detach_weights=True)`), those initializers are kept in
    `model.graph.initializer` with name, type and dims but no data: their values are `const(name)`, and
    `model` is not a complete ONNX model (serialize the original file or proto for onnxruntime instead)."""

    def __init__(
        self, model: onnx.ModelProto, source: str = "<model>", detached: dict[str, np.ndarray] | None = None
    ):
        _check_text(model, source)
        self.model = model
        self.source = source
        self._detached: dict[str, np.ndarray] = dict(detached or {})
        # ONNX tensor names removed by passes -> the tensor now holding the same value (for the name map).
        self.aliases: dict[str, str] = {}
        self.opsets = {}
        for imp in model.opset_import:
            domain = "" if imp.domain in ("", "ai.onnx") else imp.domain
            self.opsets[domain] = int(imp.version)
        if "" not in self.opsets:
            raise InputFileError(f"{source}: the model imports no default ONNX opset")
        self._name_nodes()
        self._checked = False  # the model as given is checked once, by the first refresh
        self._inference_problem: str | None = None
        self._check_inputs()
        self.refresh()

    # ------------------------------------------------------------------ construction
    @classmethod
    def load(
        cls,
        model: str | os.PathLike | onnx.ModelProto | SplitModel,
        detach_weights: bool = False,
        source: str | None = None,
    ) -> OnnxGraph:
        """Load, check and analyse a model (path, proto or SplitModel; a given model is never modified).

        detach_weights=True: the initializers over a few KiB are held only as numpy arrays (`const()`), not in
        `graph.model` too, which halves the memory a big model takes; `graph.model` is then weight-free. A
        file's large initializers are then read straight into those arrays (onnx_io.read_split), and a
        SplitModel's arrays are used as they are (shared, not copied).
        source: the name messages use (default: the path, or the graph name of a proto)."""
        if not detach_weights:
            from .onnx_io import SplitModel

            fresh = isinstance(model, SplitModel)
            if fresh:
                model = model.to_proto()
            proto, name = load_model(model, copy=not fresh)  # OnnxGraph edits its model: never the caller's
            held: dict[str, np.ndarray] = {}
        else:
            split, name = load_split(model)
            proto, held = split.skeleton, split.weights
        source = source or name
        _check_text(proto, source)
        large = {i.name for i in proto.graph.initializer if i.name in held or _is_large(i)}
        try:
            onnx.checker.check_model(weight_free_copy(proto, large, empty=True))
        except Exception as exc:
            raise InputFileError(f"{source}: invalid ONNX model ({_one_line(exc)})") from exc
        if not detach_weights:
            return cls(proto, source)
        # the checker saw the large initializers without data: their sizes are checked by tensor_array (the
        # arrays a SplitModel holds were read for their declared size)
        detached = {
            i.name: held[i.name] if i.name in held else tensor_array(i, source)
            for i in proto.graph.initializer
            if i.name in large
        }
        proto = weight_free_copy(proto, set(detached))  # drops the last reference to a model read from a file
        return cls(proto, source, detached)

    def _name_nodes(self) -> None:
        self.renamed_nodes = name_nodes(self.model)

    def _weight_free(self) -> onnx.ModelProto:
        g = self.model.graph
        strip = {i.name for i in g.initializer if i.name in self._detached or _is_large(i)}
        return weight_free_copy(self.model, strip)

    def refresh(self) -> None:
        """Re-run shape inference and rebuild every index from `self.model`.

        The first call checks the model as given: declared shapes against inferred ones, and the element
        counts of reshaping ops (InputFileError naming the tensor or node). Later calls (after passes) only
        re-infer."""
        g = self.model.graph
        # shape inference on a weight-free copy (the C++ side would otherwise copy every weight twice), from
        # the inputs alone: what the model declares is compared with it below, never trusted over it
        bare = self._weight_free()
        declared = {
            vi.name: _dims_of(vi.type) for vi in list(bare.graph.value_info) + list(bare.graph.output)
        }
        _without_declared_shapes(bare)
        inferred = infer_shapes(bare, self.source)
        del bare
        found = {vi.name: vi for vi in list(inferred.graph.value_info) + list(inferred.graph.output)}
        if not self._checked:
            for name, dims in declared.items():
                vi = found.get(name)
                if vi is not None and _dims_conflict(dims, _dims_of(vi.type)):
                    raise InputFileError(
                        f"{self.source}: tensor '{name}' is declared with shape {format_dims(dims)} but its "
                        f"inferred shape is {format_dims(_dims_of(vi.type))}: the model is invalid"
                    )
        # a declared shape stands in only where inference cannot fix a static shape; then inference runs
        # again with the declarations in place, so tensors computed from such a tensor get shapes too
        fallback = [
            n
            for n, dims in declared.items()
            if dims is not None
            and all(isinstance(d, int) for d in dims)
            and (n not in found or _shape_of(found[n].type) is None)
        ]
        if fallback:
            again = infer_shapes(self._weight_free(), self.source)
            for vi in list(again.graph.value_info) + list(again.graph.output):
                if (vi.name not in found or _shape_of(found[vi.name].type) is None) and _shape_of(
                    vi.type
                ) is not None:
                    found[vi.name] = vi
            del again
        # keep our own graph object (passes hold references to it), take over the inferred value_info
        outputs = {o.name for o in g.output}
        del g.value_info[:]
        g.value_info.extend(vi for name, vi in found.items() if name not in outputs)
        for dst in g.output:
            src = found.get(dst.name)
            if src is not None and (_shape_of(src.type) is not None or _dims_of(dst.type) is None):
                dst.CopyFrom(src)
        del inferred, found
        self.shapes: dict[str, tuple[int, ...] | None] = {}
        self.elem_types: dict[str, int] = {}
        for vi in list(g.input) + list(g.value_info) + list(g.output):
            shape = _shape_of(vi.type)
            if vi.name not in self.shapes or self.shapes[vi.name] is None:
                self.shapes[vi.name] = shape
            if vi.type.HasField("tensor_type") and vi.type.tensor_type.elem_type:
                self.elem_types.setdefault(vi.name, vi.type.tensor_type.elem_type)
        self.constants: dict[str, np.ndarray] = {}
        for init in g.initializer:
            if init.name in self._detached:
                arr = self._detached[init.name]
            else:
                arr = tensor_array(init, self.source)
            self.constants[init.name] = arr
            self.shapes[init.name] = tuple(int(d) for d in arr.shape)
            self.elem_types[init.name] = init.data_type
        for n in g.node:
            if n.op_type == "Constant" and n.domain in ("", "ai.onnx") and len(n.output) == 1:
                arr = _constant_node_value(n, self.source)
                if arr is not None:
                    self.constants[n.output[0]] = arr
                    self.shapes[n.output[0]] = tuple(int(d) for d in arr.shape)
        self.inputs: list[str] = self._graph_inputs()
        self.outputs: list[str] = [o.name for o in g.output]
        self.producers: dict[str, onnx.NodeProto] = {}
        self.consumer_map: dict[str, list[onnx.NodeProto]] = {}
        for n in g.node:
            for o in n.output:
                if o:
                    self.producers[o] = n
            for i in n.input:
                if i:
                    self.consumer_map.setdefault(i, []).append(n)
        self._inference_problem = None
        if not self._checked:
            self._check_element_counts()
            self._checked = True

    def _check_element_counts(self) -> None:
        """A reshaping node whose input and output hold different numbers of elements (e.g. a Reshape target
        of 12 billion elements for a 48-element input: ONNX shape inference takes the target as given)."""
        for n in self.model.graph.node:
            if n.op_type not in _SAME_COUNT_OPS or n.domain not in ("", "ai.onnx") or not n.input:
                continue
            if not n.output or not n.input[0] or not n.output[0]:
                continue
            src, dst = self.shapes.get(n.input[0]), self.shapes.get(n.output[0])
            if src is None or dst is None or _count(src) == _count(dst):
                continue
            raise InputFileError(
                f"{self.source}: node '{n.name}' ({n.op_type}) turns input '{n.input[0]}' of shape "
                f"{format_dims(src)} ({_count(src)} elements) into output '{n.output[0]}' of shape "
                f"{format_dims(dst)} ({_count(dst)} elements); a {n.op_type} keeps the element count: the "
                "model is invalid"
            )

    def inference_problem(self) -> str | None:
        """Why shape inference leaves some tensor without a shape, when ONNX's strict inference says
        (the first node it fails on, e.g. incompatible broadcast dimensions); None otherwise. Computed on
        demand (a mapper asking for an unknown shape), not on every refresh."""
        if self._inference_problem is None:
            bare = self._weight_free()
            _without_declared_shapes(bare)
            try:
                infer_shapes(bare, self.source, strict=True)
                self._inference_problem = ""
            except Exception as exc:
                text = _one_line(exc, 300).replace("[ShapeInferenceError] ", "")
                self._inference_problem = text.replace("Inference error(s): ", "")
        return self._inference_problem or None

    def _graph_inputs(self) -> list[str]:
        g = self.model.graph
        init_names = {i.name for i in g.initializer}
        return [i.name for i in g.input if i.name not in init_names]

    def _check_inputs(self) -> None:
        g = self.model.graph
        init_names = {i.name for i in g.initializer}
        if not self._graph_inputs():
            raise InputFileError(f"{self.source}: the graph has no inputs")
        for vi in g.input:
            if vi.name in init_names:
                continue
            t = vi.type
            if not t.HasField("tensor_type"):
                raise InputFileError(f"{self.source}: input '{vi.name}' is not a tensor")
            if t.tensor_type.elem_type != _FLOAT:
                name = onnx.TensorProto.DataType.Name(t.tensor_type.elem_type)
                raise InputFileError(
                    f"{self.source}: input '{vi.name}' is {name}; Caffe inputs are float32 "
                    "(export the model with float32 inputs)"
                )
            if not t.tensor_type.HasField("shape"):
                raise InputFileError(
                    f"{self.source}: input '{vi.name}' has no shape; {input_shape_hint(self.source, g)}"
                )
            dynamic = [
                (axis, d.dim_param)
                for axis, d in enumerate(t.tensor_type.shape.dim)
                if not d.HasField("dim_value") or d.dim_value <= 0
            ]
            if dynamic:
                what = ", ".join(f"{a} ('{p}')" if p else f"{a} (unknown)" for a, p in dynamic)
                raise InputFileError(
                    f"{self.source}: input '{vi.name}' has "
                    f"{'dynamic dimensions' if len(dynamic) > 1 else 'a dynamic dimension'} {what}; "
                    f"{input_shape_hint(self.source, g)}"
                )

    # ------------------------------------------------------------------ queries
    def detached_weights(self) -> dict[str, np.ndarray]:
        """The initializers held only as arrays (see `load(detach_weights=True)`): name -> array (shared).
        With `model` they make a SplitModel (onnx_io) that onnxruntime runs without a copy of them."""
        return dict(self._detached)

    @property
    def graph(self) -> onnx.GraphProto:
        return self.model.graph

    @property
    def nodes(self) -> list[onnx.NodeProto]:
        return list(self.model.graph.node)

    def opset(self, domain: str = "") -> int | None:
        return self.opsets.get("" if domain == "ai.onnx" else domain)

    def node_opset(self, node: onnx.NodeProto) -> int:
        return self.opset(node.domain) or 0

    def shape(self, name: str) -> tuple[int, ...] | None:
        return self.shapes.get(name)

    def dtype(self, name: str) -> np.dtype | None:
        if name in self.constants:
            return self.constants[name].dtype
        et = self.elem_types.get(name)
        return np_dtype(et) if et else None

    def const(self, name: str) -> np.ndarray | None:
        return self.constants.get(name) if name else None

    def is_const(self, name: str) -> bool:
        return bool(name) and name in self.constants

    def producer(self, name: str) -> onnx.NodeProto | None:
        return self.producers.get(name)

    def consumers(self, name: str) -> list[onnx.NodeProto]:
        return list(self.consumer_map.get(name, []))

    def is_graph_input(self, name: str) -> bool:
        return name in self.inputs

    def is_graph_output(self, name: str) -> bool:
        return name in self.outputs

    # ------------------------------------------------------------------ edits (callers refresh() afterwards)
    def set_initializer(self, name: str, value: np.ndarray) -> None:
        g = self.model.graph
        for i, init in enumerate(g.initializer):
            if init.name == name:
                del g.initializer[i]
                break
        g.initializer.append(numpy_helper.from_array(np.asarray(value), name))
        self._detached.pop(name, None)
        self.constants[name] = np.asarray(value)

    def remove_nodes(self, nodes: Iterable[onnx.NodeProto]) -> None:
        drop = {id(n) for n in nodes}
        g = self.model.graph
        for i in reversed(range(len(g.node))):
            if id(g.node[i]) in drop:
                del g.node[i]

    def rename_input_uses(self, old: str, new: str) -> None:
        """Make every node (and graph output list) that reads `old` read `new`."""
        for n in self.model.graph.node:
            for k, i in enumerate(n.input):
                if i == old:
                    n.input[k] = new

    def remove_unused_initializers(self) -> None:
        g = self.model.graph
        used = {i for n in g.node for i in n.input} | {o.name for o in g.output}
        for i in reversed(range(len(g.initializer))):
            if g.initializer[i].name not in used:
                name = g.initializer[i].name
                del g.initializer[i]
                self._detached.pop(name, None)
                for k in reversed(range(len(g.input))):
                    if g.input[k].name == name:
                        del g.input[k]


def _constant_node_value(node: onnx.NodeProto, source: str = "<model>") -> np.ndarray | None:
    for a in node.attribute:
        if a.name == "value":
            return tensor_array(a.t, source, f"the value of Constant node '{node.name}'")
        if a.name == "value_float":
            return np.array(a.f, dtype=np.float32)
        if a.name == "value_floats":
            return np.array(list(a.floats), dtype=np.float32)
        if a.name == "value_int":
            return np.array(a.i, dtype=np.int64)
        if a.name == "value_ints":
            return np.array(list(a.ints), dtype=np.int64)
    return None
