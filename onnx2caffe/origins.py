"""Where each Caffe layer came from: the ONNX node it was mapped from and the nodes of the input model behind it.

Layer names alone do not say this reliably: ctx.fresh() derives a composition's extra layer names from the
node name, sanitised and made unique, and a pass may replace several nodes by one (fuse_layer_norm, ...).
So the converter records it while it maps (build_net: layer -> node mapped) and traces the passes' work on
the graph (`trace`), and writes the result beside the names map as `PREFIX.layers.json`. names.json keeps
its format (ONNX tensor -> Caffe blob, nothing else), so scripts reading it are unaffected.

A "composition" is one mapped node and the Caffe layers its mapper returned (one layer for a plain Conv, a
few for GELU or LayerNorm, none for a Reshape that only renames). Its `onnx_nodes` are the nodes of the input
model (as loaded, before the passes) it stands for: walking back from the node's outputs in the input graph
until a tensor the passes kept. An unchanged node stands for itself; a node a pass made from several
(LayerNorm from ReduceMean, Sub, Pow, ...) for all of them; a node that absorbed another (a Pad folded into a
Conv, an Identity removed before it) for both. Constant nodes are left out (they are weights, not steps).
Input-model nodes no composition stands for (folded constants, dead code) are listed as `removed`.

File format (JSON): {"format": "onnx2caffe-layers", "version": 1, "compositions": [{"node", "op", "layers",
"onnx_nodes": [[name, op], ...]}, ...] in mapping order, "removed": [[name, op], ...]}. op is the op type,
prefixed with its domain when it has one (onnx2caffe::LayerNorm).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from .errors import InputFileError

FORMAT = "onnx2caffe-layers"
VERSION = 1
SUFFIX = ".layers.json"


@dataclass(frozen=True)
class NodeRecord:
    name: str
    op: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]


def op_label(node) -> str:
    """The op type of an onnx.NodeProto, with its domain when it is not the default one."""
    domain = node.domain if node.domain not in ("", "ai.onnx") else ""
    return f"{domain}::{node.op_type}" if domain else node.op_type


def snapshot(nodes: Iterable) -> list[NodeRecord]:
    """The nodes of a graph as they are now (names and tensors only: cheap to keep across the passes)."""
    return [
        NodeRecord(n.name, op_label(n), tuple(i for i in n.input if i), tuple(o for o in n.output if o))
        for n in nodes
    ]


def trace(before: list[NodeRecord], graph, layer_nodes: Mapping[str, str]) -> dict:
    """The layers record (see the module docstring). before: snapshot of the input graph taken before the
    passes; graph: the OnnxGraph after them (the one mapped); layer_nodes: Caffe layer -> node mapped, in the
    order build_net appended the layers."""
    after = snapshot(graph.graph.node)
    kept: set[str] = set(graph.inputs) | set(graph.constants)
    for n in after:
        kept.update(n.outputs)
    producer = {o: n for n in before for o in n.outputs}
    layers_of: dict[str, list[str]] = {}
    for layer, node in layer_nodes.items():
        layers_of.setdefault(node, []).append(layer)
    covered: set[str] = set()
    compositions = []
    for n in after:
        own = set(n.outputs)
        seen: dict[str, NodeRecord] = {}
        stack = [producer[o] for o in n.outputs if o in producer]
        while stack:
            m = stack.pop()
            if m.name in seen:
                continue
            seen[m.name] = m
            for t in m.inputs:
                if t in kept and t not in own:
                    continue
                p = producer.get(t)
                if p is not None:
                    stack.append(p)
        order = {m.name: i for i, m in enumerate(before)}
        origin = sorted(seen.values(), key=lambda m: order[m.name])
        covered.update(m.name for m in origin)
        compositions.append(
            {
                "node": n.name,
                "op": n.op,
                "layers": layers_of.get(n.name, []),
                "onnx_nodes": [[m.name, m.op] for m in origin if m.op != "Constant"],
            }
        )
    removed = [[m.name, m.op] for m in before if m.name not in covered and m.op != "Constant"]
    return {"format": FORMAT, "version": VERSION, "compositions": compositions, "removed": removed}


def to_bytes(record: dict) -> bytes:
    """The record as JSON text, one composition (and one removed node) per line."""

    def one(v) -> str:
        return json.dumps(v, ensure_ascii=False)

    head = ", ".join(f"{one(k)}: {one(v)}" for k, v in record.items() if k not in ("compositions", "removed"))
    parts = [f"{{{head},"]
    for key in ("compositions", "removed"):
        items = record.get(key, [])
        body = ",\n".join("  " + one(x) for x in items)
        parts.append(f" {one(key)}: [\n{body}\n ]" if items else f" {one(key)}: []")
        parts.append(",\n" if key == "compositions" else "\n")
    return ("".join([parts[0] + "\n"] + parts[1:]) + "}\n").encode("utf-8")


# ------------------------------------------------------------------------------------------- reading


def default_layers_file(prototxt: str, names_file: str | None = None) -> str | None:
    """`X.layers.json` beside a names map `X.names.json`, else `<prefix>.layers.json` beside the prototxt."""
    candidates = []
    if names_file and names_file.endswith(".names.json"):
        candidates.append(names_file[: -len(".names.json")] + SUFFIX)
    base, ext = os.path.splitext(os.fspath(prototxt))
    candidates.append((base if ext else os.fspath(prototxt)) + SUFFIX)
    for c in candidates:
        if os.path.isfile(c):
            return c
    return None


def load(path: str) -> dict:
    """A layers record from a file; InputFileError (one line, naming the file) when it is not one."""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        text = " ".join(str(exc).split())[:200]
        raise InputFileError(f"{path}: not a layers file ({text})") from None
    ok = (
        isinstance(data, dict)
        and data.get("format") == FORMAT
        and isinstance(data.get("compositions"), list)
        and all(
            isinstance(c, dict)
            and isinstance(c.get("node"), str)
            and isinstance(c.get("op"), str)
            and isinstance(c.get("layers"), list)
            and all(isinstance(x, str) for x in c["layers"])
            and isinstance(c.get("onnx_nodes"), list)
            and all(_is_pair(x) for x in c["onnx_nodes"])
            for c in data["compositions"]
        )
        and all(_is_pair(x) for x in data.get("removed", []))
    )
    if not ok:
        raise InputFileError(
            f"{path}: not a layers file (expected {FORMAT} JSON as `onnx2caffe convert` writes)"
        )
    if data.get("version", 0) > VERSION:
        raise InputFileError(
            f"{path}: layers file version {data.get('version')} is newer than this onnx2caffe reads ({VERSION})"
        )
    return data


def _is_pair(x) -> bool:
    return isinstance(x, list) and len(x) == 2 and all(isinstance(s, str) for s in x)


@dataclass
class LayerOrigin:
    node: str | None  # the node mapped (None: unknown)
    op: str | None  # its op type
    onnx_nodes: list[tuple[str, str]]  # input-model nodes behind it: (name, op)
    size: int  # how many Caffe layers the composition has (0: unknown)
    index: int  # position of the composition in mapping order (-1: unknown)


def by_layer(record: dict) -> dict[str, LayerOrigin]:
    """Caffe layer name -> its origin."""
    out: dict[str, LayerOrigin] = {}
    for i, c in enumerate(record["compositions"]):
        origin = LayerOrigin(c["node"], c["op"], [tuple(p) for p in c["onnx_nodes"]], len(c["layers"]), i)
        for layer in c["layers"]:
            out[layer] = origin
    return out


def from_tensors(nodes: Iterable, layer_tensor: Mapping[str, str]) -> dict[str, LayerOrigin]:
    """Without a layers file: a layer whose blob was paired with an ONNX tensor came from that tensor's
    producer (a composition's layers writing intermediate blobs stay unknown). nodes: the ONNX graph's
    nodes; layer_tensor: Caffe layer -> the ONNX tensor its blob was paired with."""
    producer = {o: n for n in nodes for o in n.output if o}
    out: dict[str, LayerOrigin] = {}
    for layer, t in layer_tensor.items():
        n = producer.get(t)
        if n is not None:
            out[layer] = LayerOrigin(n.name, op_label(n), [(n.name, op_label(n))], 0, -1)
    return out
