"""Loading and analysing an ONNX model before conversion.

`OnnxGraph` wraps an `onnx.ModelProto` (a private copy) and keeps, after every change, the facts the passes and
mappers need: static shapes and dtypes of every tensor (ONNX shape inference with data propagation), the
constants (initializers and Constant outputs), producers/consumers, and the opset of every domain.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

import numpy as np
import onnx
from onnx import numpy_helper

from .errors import InputFileError

EXPORT_HINT = "export with a fixed input shape, e.g. `onnx2caffe export --input-shape 1,3,224,224`"

_FLOAT = onnx.TensorProto.FLOAT


def load_model(model: str | os.PathLike | onnx.ModelProto) -> tuple[onnx.ModelProto, str]:
    """Read an ONNX model (path or proto). Returns (a private copy of the model, a name for messages)."""
    if isinstance(model, onnx.ModelProto):
        copy = onnx.ModelProto()
        copy.CopyFrom(model)
        return copy, (model.graph.name or "<model>")
    path = os.fspath(model)
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
    try:
        proto = onnx.load(path)
    except OSError as exc:
        raise InputFileError(f"{path}: cannot read ({exc})") from exc
    except Exception as exc:  # protobuf DecodeError, external data errors, ...
        raise InputFileError(f"{path}: not a valid ONNX model ({_one_line(exc)})") from exc
    if not proto.HasField("graph") or proto.ir_version <= 0:
        raise InputFileError(f"{path}: not a valid ONNX model (no graph or IR version)")
    return proto, path


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


def np_dtype(elem_type: int) -> np.dtype | None:
    try:
        return np.dtype(onnx.helper.tensor_dtype_to_np_dtype(elem_type))
    except Exception:
        return None


class OnnxGraph:
    """A validated ONNX model with static shapes. `refresh()` after editing `model.graph`."""

    def __init__(self, model: onnx.ModelProto, source: str = "<model>"):
        self.model = model
        self.source = source
        # ONNX tensor names removed by passes -> the tensor now holding the same value (for the name map).
        self.aliases: dict[str, str] = {}
        self.opsets = {}
        for imp in model.opset_import:
            domain = "" if imp.domain in ("", "ai.onnx") else imp.domain
            self.opsets[domain] = int(imp.version)
        if "" not in self.opsets:
            raise InputFileError(f"{source}: the model imports no default ONNX opset")
        self._name_nodes()
        self.refresh()
        self._check_inputs()

    # ------------------------------------------------------------------ construction
    @classmethod
    def load(cls, model: str | os.PathLike | onnx.ModelProto) -> OnnxGraph:
        proto, source = load_model(model)
        try:
            onnx.checker.check_model(proto)
        except Exception as exc:
            raise InputFileError(f"{source}: invalid ONNX model ({_one_line(exc)})") from exc
        return cls(proto, source)

    def _name_nodes(self) -> None:
        """Give every node a unique non-empty name (generated from the op type where missing or repeated)."""
        seen: set[str] = set()
        for n in self.model.graph.node:
            seen.add(n.name)
        used: set[str] = set()
        for i, n in enumerate(self.model.graph.node):
            name = n.name
            if not name or name in used:
                base = name or f"{n.op_type}_{i}"
                candidate, k = base, 1
                while candidate in used or (candidate != name and candidate in seen):
                    candidate = f"{base}_{k}"
                    k += 1
                n.name = candidate
            used.add(n.name)

    def refresh(self) -> None:
        """Re-run shape inference and rebuild every index from `self.model`."""
        try:
            inferred = onnx.shape_inference.infer_shapes(
                self.model, check_type=False, strict_mode=False, data_prop=True
            )
        except Exception as exc:
            raise InputFileError(f"{self.source}: ONNX shape inference failed ({_one_line(exc)})") from exc
        # keep our own graph object (passes hold references to it), take over the inferred value_info
        del self.model.graph.value_info[:]
        self.model.graph.value_info.extend(inferred.graph.value_info)
        for dst, src in zip(self.model.graph.output, inferred.graph.output, strict=False):
            if not dst.type.HasField("tensor_type") or not dst.type.tensor_type.HasField("shape"):
                dst.CopyFrom(src)
        g = self.model.graph
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
            arr = numpy_helper.to_array(init)
            self.constants[init.name] = arr
            self.shapes[init.name] = tuple(int(d) for d in arr.shape)
            self.elem_types[init.name] = init.data_type
        for n in g.node:
            if n.op_type == "Constant" and n.domain in ("", "ai.onnx") and len(n.output) == 1:
                arr = _constant_node_value(n)
                if arr is not None:
                    self.constants[n.output[0]] = arr
                    self.shapes[n.output[0]] = tuple(int(d) for d in arr.shape)
        init_names = {i.name for i in g.initializer}
        self.inputs: list[str] = [i.name for i in g.input if i.name not in init_names]
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

    def _check_inputs(self) -> None:
        g = self.model.graph
        init_names = {i.name for i in g.initializer}
        if not self.inputs:
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
                raise InputFileError(f"{self.source}: input '{vi.name}' has no shape; {EXPORT_HINT}")
            for axis, d in enumerate(t.tensor_type.shape.dim):
                if not d.HasField("dim_value") or d.dim_value <= 0:
                    label = f"'{d.dim_param}'" if d.dim_param else "unknown"
                    raise InputFileError(
                        f"{self.source}: input '{vi.name}' has a dynamic dimension {axis} ({label}); {EXPORT_HINT}"
                    )

    # ------------------------------------------------------------------ queries
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
                for k in reversed(range(len(g.input))):
                    if g.input[k].name == name:
                        del g.input[k]


def _constant_node_value(node: onnx.NodeProto) -> np.ndarray | None:
    for a in node.attribute:
        if a.name == "value":
            return numpy_helper.to_array(a.t)
        if a.name == "value_float":
            return np.array(a.f, dtype=np.float32)
        if a.name == "value_floats":
            return np.array(list(a.floats), dtype=np.float32)
        if a.name == "value_int":
            return np.array(a.i, dtype=np.int64)
        if a.name == "value_ints":
            return np.array(list(a.ints), dtype=np.int64)
    return None
