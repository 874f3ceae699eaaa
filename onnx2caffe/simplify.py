"""onnx-simplifier, run on a graph whose large layer weights stay out of it.

onnx-simplifier (onnxsim) serializes the whole model into its C++ core, converts it to its IR and back in
every round of its fixed point, and returns a whole new model: 7.6 s and 2.3 GB over the model itself for
VGG-16 on a 2-core machine, where the graph changes by ten Identity nodes. Most weights are the weight or
bias of a Conv, ConvTranspose, Gemm or MatMul, and onnxsim reads those by value only in a few rewrites,
recognisable from the graph. So (simplify_split):

1. stubs: each large float initializer whose every use is the weight or bias (input 1 or 2) of such a layer,
   in a position no rewrite reads by value (below), becomes a graph input of the same type and shape;
   everything else (small tensors, other large tensors) goes to onnxsim with its data as before;
2. onnxsim simplifies that graph (a few KiB for VGG-16: 0.03 s);
3. the stubs become initializers again, in the positions they had, holding the same arrays (nothing is
   copied); a stub no node uses any more is dropped, as onnxsim drops unused initializers. If a stub is then
   used in any other way than it was, the stubs are abandoned and onnxsim runs on the whole model.

With no value to read, onnxsim treats a stub as any activation, and the rewrites that do not read values
(removing Identity, Dropout, folding shape computations, fusing Pad into Conv, ...) make the same graph.
The result is the graph onnxsim makes from the whole model, initializers in the same order:
tests/test_simplify.py compares both, byte for byte, on nets and on each pattern below.

Positions where onnxsim could read a layer's weights, each keeping them out of the stubs:
* constant folding: a layer whose data input (input 0) is constant: initializers, Constant, Shape of a
  static tensor, and what is computed from those only;
* fusions into the layer: a consumer of its output, or the producer of its data input, that has a constant
  operand and is not a plain data-movement op (BatchNormalization after a Conv, an Add of a bias after a
  Conv or a MatMul, a Mul by a constant before or after it, ...);
* several MatMul / Gemm reading one tensor (fuse_qkv concatenates their weights);
* equal initializers (eliminate_duplicate_initializer keeps one): the arrays are compared;
* a model with subgraphs (If, Loop, Scan): no stubs at all.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
import warnings
from collections import defaultdict
from typing import Any

import numpy as np
import onnx
from onnx import helper

from .native_output import captured_fd
from .onnx_io import FLOAT_TYPES, SplitModel, _le_bytes

LAYERS = frozenset({"Conv", "ConvTranspose", "Gemm", "MatMul"})
# ops whose constant operands are shapes, indices, pads or clip bounds: no rewrite folds them into a layer
DATA_MOVEMENT = frozenset(
    {
        "Reshape", "Flatten", "Squeeze", "Unsqueeze", "Transpose", "Slice", "Pad", "Resize", "Upsample",
        "Concat", "Split", "Gather", "Expand", "Tile", "Clip", "Identity", "Dropout", "Relu", "LeakyRelu",
        "Sigmoid", "Tanh", "HardSigmoid", "HardSwish", "MaxPool", "AveragePool", "GlobalAveragePool",
        "GlobalMaxPool", "Softmax", "LogSoftmax", "Shape", "Cast",
    }
)  # fmt: skip
_DEFAULT_DOMAINS = ("", "ai.onnx")
# ops with no inputs that onnxsim may fold (constant sources)
_CONSTANT_SOURCES = frozenset({"Constant", "ConstantOfShape"})


class SimplifyError(Exception):
    """onnx-simplifier failed or reported that its own check failed (the message says which)."""


# --------------------------------------------------------------------------------------------- import


def _load_simplifier():
    """onnxsim.onnx_simplifier.simplify without running the onnxsim package's __init__ when that can be
    avoided: onnxsim 0.8 imports its whole toolbox there, torch included (about 6 s and 1 GB), where only
    the simplifier module is needed. The package is registered as a module whose missing attributes run
    the real __init__ on first use (after this import), so code importing onnxsim later gets all of it."""
    module = sys.modules.get("onnxsim.onnx_simplifier")
    if module is not None and hasattr(module, "simplify"):
        return module.simplify
    if "onnxsim" not in sys.modules:
        spec = importlib.util.find_spec("onnxsim")
        if spec is None:
            raise ImportError("onnxsim")
        if spec.submodule_search_locations is not None and spec.loader is not None:
            package = _LazyPackage(spec)
            sys.modules["onnxsim"] = package
            try:
                return importlib.import_module("onnxsim.onnx_simplifier").simplify
            except Exception:
                pass  # the whole package below, reusing what was imported
            finally:
                package._armed = True
    return importlib.import_module("onnxsim").simplify


class _LazyPackage(types.ModuleType):
    """A package module with its name, path and spec but not yet its __init__. Once armed, asking it for
    a name it does not have runs the __init__ (into this module) first."""

    def __init__(self, spec) -> None:
        super().__init__(spec.name)
        self.__spec__ = spec
        self.__path__ = list(spec.submodule_search_locations)
        self.__file__ = spec.origin
        self.__loader__ = spec.loader
        self.__package__ = spec.name
        self._armed = False  # while our own import runs, missing names are plain AttributeErrors
        self._done = False

    def __getattr__(self, name: str) -> Any:
        state = self.__dict__
        if name.startswith("__") or not state.get("_armed") or state.get("_done"):
            raise AttributeError(name)
        self._done = True
        self.__spec__.loader.exec_module(self)
        return getattr(self, name)


def _native_stderr(lines: list[str]):
    """onnxsim's C++ core prints a "WARNING: failed to run ... skip" line to descriptor 2 for each node it
    tries and fails to fold (179 lines for torchvision's swin_t, whose shape arithmetic it cannot evaluate);
    the nodes stay in the graph and convert's own constant folding handles them, so the lines only bury the
    report. They are kept for the error message when onnxsim fails."""
    return captured_fd(2, lines)


def _run_onnxsim(model: onnx.ModelProto) -> onnx.ModelProto:
    try:
        simplify = _load_simplifier()
    except ImportError:
        raise SimplifyError("onnx-simplifier is not installed: pip install onnxsim") from None
    except Exception as err:  # a broken installation
        raise SimplifyError(f"onnx-simplifier cannot be imported: {type(err).__name__}: {err}") from None
    native: list[str] = []
    try:
        with warnings.catch_warnings(), _native_stderr(native):
            warnings.simplefilter("ignore")
            simplified, ok = simplify(model)
    except Exception as err:
        text = " ".join(str(err).split()) or type(err).__name__
        last = f" (its last message: {native[-1][:200]})" if native else ""
        raise SimplifyError(f"onnx-simplifier failed: {type(err).__name__}: {text[:400]}{last}") from None
    if not ok:
        raise SimplifyError("onnx-simplifier's check of the simplified model failed")
    return simplified


# --------------------------------------------------------------------------------------------- analysis


def _has_subgraphs(g: onnx.GraphProto) -> bool:
    return any(a.HasField("g") or len(a.graphs) for n in g.node for a in n.attribute)


def _constant_tensors(g: onnx.GraphProto) -> set[str]:
    """Tensors onnxsim may treat as constants: initializers, Constant outputs, Shape/Size outputs (inputs
    have static shapes after export) and outputs of nodes whose inputs are all constant."""
    const = {t.name for t in g.initializer}
    for n in g.node:  # nodes are in topological order in a valid model
        inputs = [i for i in n.input if i]
        if (
            n.op_type in _CONSTANT_SOURCES
            or n.op_type in ("Shape", "Size")
            or (inputs and all(i in const for i in inputs))
            or (not inputs and not n.op_type.startswith("Random"))
        ):
            const.update(o for o in n.output if o)
    return const


def stub_candidates(split: SplitModel) -> set[str]:
    """The weights of `split` that onnxsim cannot read by value (see the module docstring)."""
    g = split.skeleton.graph
    if _has_subgraphs(g):
        return set()
    inits = {t.name: t for t in g.initializer}
    cands = {n for n, t in inits.items() if n in split.weights and t.data_type in FLOAT_TYPES}
    if not cands:
        return set()
    declared = {vi.name for vi in g.input} | {o.name for o in g.output}
    cands -= declared
    const = _constant_tensors(g)
    producers: dict[str, onnx.NodeProto] = {}
    consumers: dict[str, list[onnx.NodeProto]] = defaultdict(list)
    for n in g.node:
        for o in n.output:
            if o:
                producers[o] = n
        for i in set(n.input):
            if i:
                consumers[i].append(n)

    def plain(n: onnx.NodeProto) -> bool:
        """No constant operand, or only the shape/index/bound operands of a data-movement op."""
        if n.domain not in _DEFAULT_DOMAINS:
            return False
        return n.op_type in DATA_MOVEMENT or not any(i in const for i in n.input if i)

    def layer_ok(n: onnx.NodeProto) -> bool:
        if n.domain not in _DEFAULT_DOMAINS or n.op_type not in LAYERS or not n.input:
            return False
        data = n.input[0]
        if not data or data in const:
            return False
        p = producers.get(data)
        if p is not None and not plain(p):
            return False
        if n.op_type in ("Gemm", "MatMul"):
            readers = [c for c in consumers.get(data, []) if c.op_type in ("Gemm", "MatMul")]
            if len(readers) > 1:
                return False
        return all(plain(c) for o in n.output if o for c in consumers.get(o, []))

    safe = set()
    for name in cands:
        uses = consumers.get(name, [])
        if uses and all(
            layer_ok(n) and all(k in (1, 2) for k, i in enumerate(n.input) if i == name) for n in uses
        ):
            safe.add(name)
    return safe - _duplicates(split, safe)


def _duplicates(split: SplitModel, names: set[str]) -> set[str]:
    """The names in `names` whose array equals another large tensor of the model (initializer or Constant)."""
    groups: dict[tuple, list[tuple[str, np.ndarray]]] = defaultdict(list)
    for name, a in split.weights.items():
        groups[(a.dtype.str, a.shape)].append((name, a))
    for n in split.skeleton.graph.node:
        if n.op_type == "Constant" and n.domain in _DEFAULT_DOMAINS:
            for attr in n.attribute:
                if attr.name == "value" and attr.HasField("t") and attr.t.HasField("raw_data"):
                    key = None
                    try:
                        a = onnx.numpy_helper.to_array(attr.t)
                        key = (a.dtype.str, a.shape)
                    except Exception:
                        pass
                    if key in groups:
                        groups[key].append((f"Constant:{n.name}", a))
    dup: set[str] = set()
    for members in groups.values():
        if len(members) < 2 or not any(name in names for name, _ in members):
            continue
        for i, (na, a) in enumerate(members):
            for nb, b in members[i + 1 :]:
                if (na in names or nb in names) and _equal(a, b):
                    dup.update((na, nb))
    return dup & names


def _equal(a: np.ndarray, b: np.ndarray) -> bool:
    fa, fb = a.reshape(-1), b.reshape(-1)
    head = min(fa.size, 64)
    if not np.array_equal(fa[:head], fb[:head]):
        return False
    return bool(np.array_equal(fa, fb))


# --------------------------------------------------------------------------------------------- simplify


def simplify_split(split: SplitModel) -> SplitModel:
    """`split` simplified by onnx-simplifier (see the module docstring); the given model is unchanged and
    the result shares its arrays. Raises SimplifyError."""
    stubs = stub_candidates(split)
    if stubs:
        result = _simplify_with_stubs(split, stubs)
        if result is not None:
            return result
    return SplitModel.from_proto(_run_onnxsim(split.to_proto()))


def _simplify_with_stubs(split: SplitModel, stubs: set[str]) -> SplitModel | None:
    src = split.skeleton
    order = {t.name: k for k, t in enumerate(src.graph.initializer)}
    model = onnx.ModelProto()
    model.CopyFrom(src)
    g = model.graph
    kept = []
    for t in g.initializer:
        if t.name in stubs:
            continue
        c = onnx.TensorProto()
        c.CopyFrom(t)
        a = split.weights.get(t.name)
        if a is not None:  # a large tensor onnxsim may read: it goes with its data
            c.raw_data = _le_bytes(a)
        kept.append(c)
    headers = {t.name: t for t in src.graph.initializer if t.name in stubs}
    del g.initializer[:]
    g.initializer.extend(kept)
    inputs = [vi.name for vi in g.input]
    for name in sorted(stubs, key=order.__getitem__):
        t = headers[name]
        g.input.append(helper.make_tensor_value_info(name, t.data_type, list(t.dims)))
    out = _run_onnxsim(model)
    del model, kept

    og = out.graph
    if [vi.name for vi in og.input if vi.name not in stubs] != inputs:
        return None
    used = set()
    for n in og.node:
        for k, i in enumerate(n.input):
            if i in stubs:
                if n.op_type not in LAYERS or n.domain not in _DEFAULT_DOMAINS or k not in (1, 2):
                    return None  # used otherwise than before: onnxsim on the whole model decides
                used.add(i)
    if any(o.name in stubs for o in og.output) or any(t.name in stubs for t in og.initializer):
        return None
    keep_inputs = [vi for vi in og.input if vi.name not in stubs]
    del og.input[:]
    og.input.extend(keep_inputs)
    for vi in list(og.value_info):
        if vi.name in stubs:
            return None
    inits = list(og.initializer) + [headers[name] for name in used]
    position = {id(t): order.get(t.name, len(order) + k) for k, t in enumerate(inits)}
    inits.sort(key=lambda t: position[id(t)])
    copies = []
    for t in inits:
        c = onnx.TensorProto()
        c.CopyFrom(t)
        copies.append(c)
    del og.initializer[:]
    og.initializer.extend(copies)
    result = SplitModel.from_proto(out)  # large initializers onnxsim returned with data become arrays
    weights = dict(result.weights)
    for name in used:
        weights[name] = split.weights[name]
    return SplitModel(result.skeleton, weights)


def simplify_model(model: onnx.ModelProto) -> onnx.ModelProto:
    """onnx-simplifier on a whole model, with the weights kept out of it where possible (simplify_split)."""
    return simplify_split(SplitModel.from_proto(model)).to_proto()
