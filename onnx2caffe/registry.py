"""The registry of per-op mappers (ONNX node -> Caffe layers) and the objects a mapper works with.

A mapper is a pure function `mapper(node: NodeView, ctx: MapContext) -> list[Layer]`, registered with
`@register(op_type, since=..., until=..., domain="")` for the opset range [since, until).
"""

from __future__ import annotations

import dataclasses
import re
import unicodedata
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper

from .errors import ConversionError, Onnx2CaffeError


class DuplicateMapperError(Onnx2CaffeError):
    """Two mappers registered for overlapping opset ranges of the same (domain, op_type)."""


class UnsupportedNodeError(ConversionError):
    """One ONNX node (or one of its attributes) has no exact Caffe form."""

    def __init__(
        self,
        node_name: str,
        op_type: str,
        opset: int | None,
        reason: str,
        attribute: str | None = None,
        value: Any = None,
        domain: str = "",
    ):
        self.node_name = node_name
        self.op_type = op_type
        self.opset = opset
        self.reason = reason
        self.attribute = attribute
        self.value = value
        self.domain = domain
        super().__init__(self._message())

    def _message(self) -> str:
        op = f"{self.domain}::{self.op_type}" if self.domain else self.op_type
        where = f"node '{self.node_name}' ({op}, opset {self.opset})"
        if self.attribute is not None:
            return f"{where}: attribute {self.attribute}={_short(self.value)}: {self.reason}"
        return f"{where}: {self.reason}"


def _short(value: Any, limit: int = 60) -> str:
    if isinstance(value, np.ndarray):
        text = np.array2string(value.ravel()[:8], separator=",") + ("..." if value.size > 8 else "")
    else:
        text = repr(value)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


@dataclasses.dataclass(frozen=True)
class MapperEntry:
    domain: str
    op_type: str
    since: int
    until: int | None
    fn: Callable
    layers: tuple[str, ...]
    notes: str

    def covers(self, opset: int) -> bool:
        return self.since <= opset and (self.until is None or opset < self.until)

    @property
    def opset_range(self) -> str:
        return f"{self.since}+" if self.until is None else f"{self.since}-{self.until - 1}"


_MAPPERS: dict[tuple[str, str], list[MapperEntry]] = {}


def _norm_domain(domain: str) -> str:
    return "" if domain in ("", "ai.onnx") else domain


def register(
    op_type: str,
    since: int = 1,
    until: int | None = None,
    domain: str = "",
    layers: Sequence[str] = (),
    notes: str | None = None,
) -> Callable[[Callable], Callable]:
    """Register a mapper for `op_type` at opsets [since, until). `layers` (the Caffe layer types it can emit)
    and `notes` (default: the first line of the docstring) feed `support_table()` / `onnx2caffe ops`."""
    domain = _norm_domain(domain)
    if until is not None and until <= since:
        raise ValueError(f"register({op_type!r}): empty opset range [{since}, {until})")

    def deco(fn: Callable) -> Callable:
        doc = (fn.__doc__ or "").strip().splitlines()
        entry = MapperEntry(
            domain,
            op_type,
            since,
            until,
            fn,
            tuple(layers),
            notes if notes is not None else (doc[0] if doc else ""),
        )
        entries = _MAPPERS.setdefault((domain, op_type), [])
        for other in entries:
            if other.fn is fn or (
                other.fn.__module__ == fn.__module__ and other.fn.__qualname__ == fn.__qualname__
            ):
                # the same function registered again (module re-import): replace silently
                if (other.since, other.until) == (since, until):
                    entries.remove(other)
                    break
            lo = max(other.since, since)
            hi = min(
                other.until if other.until is not None else 1 << 30, until if until is not None else 1 << 30
            )
            if lo < hi:
                raise DuplicateMapperError(
                    f"mapper {fn.__module__}.{fn.__qualname__} for {op_type} opsets {entry.opset_range} overlaps "
                    f"{other.fn.__module__}.{other.fn.__qualname__} (opsets {other.opset_range})"
                )
        entries.append(entry)
        entries.sort(key=lambda e: e.since)
        return fn

    return deco


def unregister(op_type: str, domain: str = "", fn: Callable | None = None) -> None:
    """Remove mappers (tests only)."""
    key = (_norm_domain(domain), op_type)
    if fn is None:
        _MAPPERS.pop(key, None)
    elif key in _MAPPERS:
        _MAPPERS[key] = [e for e in _MAPPERS[key] if e.fn is not fn]


def lookup(op_type: str, opset: int, domain: str = "") -> MapperEntry | None:
    for e in _MAPPERS.get((_norm_domain(domain), op_type), []):
        if e.covers(opset):
            return e
    return None


def mappers_for(op_type: str, domain: str = "") -> list[MapperEntry]:
    return list(_MAPPERS.get((_norm_domain(domain), op_type), []))


def all_mappers() -> list[MapperEntry]:
    return [e for key in sorted(_MAPPERS) for e in _MAPPERS[key]]


def support_table(load: bool = True) -> list[tuple[str, str, str, str]]:
    """Rows (op type, opset range, Caffe layers emitted, notes), sorted by op type, for every registered mapper."""
    if load:
        from . import op_mappers

        op_mappers.load_all()
    rows = []
    for e in all_mappers():
        op = f"{e.domain}::{e.op_type}" if e.domain else e.op_type
        rows.append((op, e.opset_range, ", ".join(e.layers), e.notes))
    return rows


def support_table_markdown(rows: list[tuple[str, str, str, str]] | None = None) -> str:
    rows = support_table() if rows is None else rows
    lines = ["| ONNX op | opsets | Caffe layers | notes |", "|---|---|---|---|"]
    for r in rows:
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in r) + " |")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------- NodeView

_MISSING = object()


def attribute_value(a: onnx.AttributeProto) -> Any:
    T = onnx.AttributeProto
    if a.type == T.FLOAT:
        return float(a.f)
    if a.type == T.INT:
        return int(a.i)
    if a.type == T.STRING:
        return a.s.decode("utf-8", "replace")
    if a.type == T.TENSOR:
        return numpy_helper.to_array(a.t)
    if a.type == T.FLOATS:
        return [float(v) for v in a.floats]
    if a.type == T.INTS:
        return [int(v) for v in a.ints]
    if a.type == T.STRINGS:
        return [s.decode("utf-8", "replace") for s in a.strings]
    if a.type == T.TENSORS:
        return [numpy_helper.to_array(t) for t in a.tensors]
    return onnx.helper.get_attribute_value(a)


class NodeView:
    """Read-only view of one ONNX node that records which attributes the mapper handled."""

    def __init__(self, node: onnx.NodeProto, opset: int):
        self.proto = node
        self.name: str = node.name
        self.op_type: str = node.op_type
        self.domain: str = _norm_domain(node.domain)
        self.opset: int = opset
        self.inputs: list[str] = list(node.input)
        self.outputs: list[str] = list(node.output)
        self._attrs = {a.name: a for a in node.attribute}
        self._handled: set[str] = set()
        self.ignored: dict[str, str] = {}

    def has_attr(self, name: str) -> bool:
        return name in self._attrs

    def attr(self, name: str, default: Any = None) -> Any:
        """The attribute's value (python int/float/str/list, np.ndarray for tensors), else `default`. Marks it handled."""
        self._handled.add(name)
        a = self._attrs.get(name)
        if a is None:
            return default
        return attribute_value(a)

    def ignore_attr(self, name: str, reason: str) -> None:
        """Deliberately ignore an attribute (e.g. `kernel_shape`, taken from the weight)."""
        self._handled.add(name)
        if name in self._attrs:
            self.ignored[name] = reason

    def reject(self, reason: str) -> None:
        raise UnsupportedNodeError(self.name, self.op_type, self.opset, reason, domain=self.domain)

    def reject_attr(self, name: str, value: Any, reason: str) -> None:
        raise UnsupportedNodeError(
            self.name, self.op_type, self.opset, reason, attribute=name, value=value, domain=self.domain
        )

    def unhandled_attrs(self) -> list[str]:
        return [n for n in self._attrs if n not in self._handled]

    def input(self, i: int) -> str:
        """Input i, "" when omitted (also beyond the end)."""
        return self.inputs[i] if i < len(self.inputs) else ""

    def output(self, i: int) -> str:
        return self.outputs[i] if i < len(self.outputs) else ""

    def __repr__(self) -> str:
        return f"NodeView({self.name!r}, {self.op_type}, opset {self.opset})"


# ---------------------------------------------------------------------------------------------- MapContext

_UNSAFE = re.compile(r"[\x00-\x20\x7f\"'\\]")


def sanitize_name(name: str) -> str:
    """A Caffe-safe name: whitespace, control characters, quotes and backslashes become '_'."""
    if isinstance(name, bytes):  # a proto2 string field that is not UTF-8 (OnnxGraph refuses those)
        name = name.decode("utf-8", "replace")
    out = _UNSAFE.sub("_", name)
    if not out.isascii():
        out = "".join("_" if unicodedata.category(c) in ("Cc", "Cs", "Zl", "Zp", "Zs") else c for c in out)
    return out or "_"


class MapContext:
    """What a mapper can ask about the graph, and the factory for Caffe layers and names."""

    def __init__(self, graph):  # graph: onnx_graph.OnnxGraph
        self.graph = graph
        self.node: NodeView | None = None
        self._used_blobs: set[str] = set()
        self._used_layers: set[str] = set()
        self._blob: dict[str, str] = {}
        self._layer_name: dict[str, str] = {}
        self._layer_names_taken: set[str] = set()
        # bytes of the Caffe blobs the mappers have returned so far (kept by build_net), for check_array
        self.weight_bytes = 0
        # blobs that compositions share across nodes (e.g. the exact constant 1 behind constant tensors), by
        # key; a blob recorded here is written by layers an earlier mapper returned (nodes map in graph order)
        self.memo: dict[str, str] = {}
        names = list(graph.inputs)
        for n in graph.graph.node:
            names.extend(o for o in n.output if o)
        for t in names:
            if t in self._blob:
                continue
            self._blob[t] = self._unique(sanitize_name(t), self._used_blobs)
        # Layer and blob names are separate namespaces in Caffe, but each graph input becomes an Input layer
        # named after its blob: reserve those layer names first, so a node named like an input (legal in
        # ONNX) gets a suffixed layer name instead of a duplicate.
        for t in graph.inputs:
            self._used_layers.add(self._blob[t])
        for n in graph.graph.node:
            self._layer_name[n.name] = self._unique(sanitize_name(n.name), self._used_layers)

    @staticmethod
    def _unique(base: str, *spaces: set[str]) -> str:
        name, k = base, 1
        while any(name in s for s in spaces):
            name = f"{base}_{k}"
            k += 1
        for s in spaces:
            s.add(name)
        return name

    # ---- tensors
    def _fail(self, reason: str):
        if self.node is not None:
            self.node.reject(reason)
        raise ConversionError(reason)

    def shape(self, tensor: str) -> tuple[int, ...]:
        """Static shape of any tensor; rejects the current node when it is unknown or dynamic."""
        shape = self.graph.shape(tensor)
        if shape is None:
            problem = self.graph.inference_problem() if hasattr(self.graph, "inference_problem") else None
            self._fail(
                f"the shape of tensor '{tensor}' is unknown or not static (shape inference could not fix it"
                + (f": {problem})" if problem else ")")
            )
        return shape

    def check_array(
        self, shape: Sequence[int], dtype=np.float32, what: str = "a weight", weight: bool = True
    ) -> int:
        """Call before allocating a large array of `shape` (e.g. a composition's kernel): rejects the current
        node, naming the size, when the array cannot be built or written. weight=True (the array becomes a
        Caffe blob): more elements than a Caffe blob holds, or the caffemodel (blobs returned so far plus
        this one, as float32) over protobuf's 2 GB limit. Any array: over the memory this node's mapper may
        allocate (limits.node_budget; convert also enforces it on Linux whatever the mapper does, but asking
        first gives the better message and no allocation at all). Returns the array's size in bytes."""
        from . import limits

        count = 1
        for d in shape:
            count *= int(d)
        nbytes = count * np.dtype(dtype).itemsize
        dims = "(" + ", ".join(str(int(d)) for d in shape) + ")"
        if weight and count > limits.BLOB_MAX_ELEMENTS:
            self._fail(
                f"{what} of shape {dims} has {count} elements, over the {limits.BLOB_MAX_ELEMENTS} a Caffe "
                "blob can hold"
            )
        if weight and self.weight_bytes + count * 4 > limits.CAFFEMODEL_LIMIT:
            self._fail(limits.weights_message(count * 4, self.weight_bytes, f"{what} of shape {dims}"))
        node = self.node.proto if self.node is not None else None
        budget = limits.node_budget(self.graph, node) if node is not None else limits.CAFFEMODEL_LIMIT
        if nbytes > budget:
            self._fail(
                f"{what} of shape {dims} takes {limits.fmt_bytes(nbytes)}, over the "
                f"{limits.fmt_bytes(budget)} building one node may use"
            )
        return nbytes

    def dtype(self, tensor: str) -> np.dtype | None:
        return self.graph.dtype(tensor)

    def const(self, tensor: str) -> np.ndarray | None:
        """np.ndarray for an initializer / Constant output (after constant folding), else None."""
        return self.graph.const(tensor)

    def is_const(self, tensor: str) -> bool:
        return self.graph.is_const(tensor)

    def const_input(self, node, index: int, what: str) -> np.ndarray | None:
        """The flattened value of an optional constant input of `node` (None when the input is omitted); a
        computed (non-constant) input is refused, naming it as `what`."""
        name = node.input(index)
        if not name:
            return None
        value = self.const(name)
        if value is None:
            node.reject(f"input '{what}' must be a constant (it is computed at run time)")
        return np.asarray(value).reshape(-1)

    def opset(self, domain: str = "") -> int | None:
        return self.graph.opset(domain)

    def blob(self, tensor: str) -> str:
        """The Caffe blob name of an ONNX tensor."""
        if not tensor:
            raise ValueError("blob() of an omitted optional input")
        if tensor not in self._blob:
            if self.graph.is_const(tensor):
                self._fail(f"input '{tensor}' is a constant; this mapper has no form for a constant operand")
            self._blob[tensor] = self._unique(sanitize_name(tensor), self._used_blobs)
        return self._blob[tensor]

    def blob_map(self) -> dict[str, str]:
        return dict(self._blob)

    def fresh(self, base: str) -> str:
        """A new unique name for an intermediate blob or an extra layer of a composition."""
        return self._unique(sanitize_name(base), self._used_blobs, self._used_layers)

    def layer_name(self, name: str) -> str:
        if name in self._layer_name:
            return self._layer_name[name]
        return sanitize_name(name)

    def layer(self, name: str, type: str, bottom: Sequence[str], top: Sequence[str], blobs=None, **params):
        """A caffe_net.Layer. `name` is a node name (mapped to its layer name) or a name from fresh()."""
        from .caffe_net import Layer

        lname = self.layer_name(name)
        if lname in self._layer_names_taken:
            raise ValueError(f"layer name {lname!r} used twice (use ctx.fresh() for extra layers)")
        self._layer_names_taken.add(lname)
        return Layer(lname, type, bottom=list(bottom), top=list(top), blobs=list(blobs or []), **params)
