"""The unrolling machinery shared by the LSTM, GRU and RNN mappers (rnn.py); no mapper is registered here.

A recurrent node is unrolled over its static sequence length into standard layers that BVLC Caffe 1.0 and
OpenCV both load. Per direction:
- the input projection of every step at once: one InnerProduct (axis 2) per gate group on X, whose bias holds
  every bias that onnxruntime adds outside the recurrent product, then one Slice along the time axis;
- the state lives in blobs shaped like one time step of X, (1, N, H) for layout 0 and (N, 1, H) for layout 1,
  so the recurrent InnerProduct (axis 2) and the Eltwise layers of a step need no Reshape;
- Y is one Concat of the steps' states along the time axis (directions interleaved per step) and a Reshape;
  Y_h / Y_c are the last states (a Concat over the directions when bidirectional); the reverse direction reads
  the projected steps in reverse order and writes its states at their own time index, so nothing is reversed.
A constant initial state becomes a blob through an InnerProduct with zero weights whose bias is the state (0 * x
sums to 0 for finite x, + bias is exact); an initial state that is an activation is sliced per direction; an
omitted or all-zero one drops the recurrent terms of the first step (R * 0 = 0 exactly).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from ._compose import ELTWISE_PROD, ELTWISE_SUM, fresh, reshape

LAYERS = ("InnerProduct", "Slice", "Eltwise", "Sigmoid", "TanH", "ReLU", "Concat", "Reshape", "Silence")

# ONNX activation name -> Caffe layer type (exact one-layer forms; ONNX names are case-sensitive, onnxruntime
# also accepts lower case)
_ACTIVATIONS = {"sigmoid": "Sigmoid", "tanh": "TanH", "relu": "ReLU"}


@dataclasses.dataclass
class Spec:
    """A recurrent node's static description after every attribute was checked."""

    T: int
    N: int
    I: int  # noqa: E741 - the ONNX name of the input size
    H: int
    directions: list[str]  # "forward" / "reverse", one per direction
    time_axis: int  # 0 for layout 0 (T, N, I), 1 for layout 1 (N, T, I)
    W: np.ndarray  # (D, G*H, I) float32
    R: np.ndarray  # (D, G*H, H) float32
    B: np.ndarray  # (D, 2*G*H) float32 (zeros when omitted)
    activations: list[list[str]]  # per direction, Caffe layer types
    initial: dict  # input index -> ("zero" | "const" | "blob", value) per direction

    @property
    def step_shape(self) -> tuple[int, int]:
        return (1, self.N) if self.time_axis == 0 else (self.N, 1)


def parse(node, ctx, gates: int, default_acts: list[str], state_inputs: tuple[int, ...]) -> Spec:
    """Check the attributes and inputs common to LSTM, GRU and RNN; reject what has no exact form."""
    x = node.input(0)
    shape = ctx.shape(x)
    if len(shape) != 3:
        node.reject(f"X must have rank 3, got shape {shape}")
    layout = int(node.attr("layout", 0))
    if layout not in (0, 1):
        node.reject_attr("layout", layout, "must be 0 or 1")
    T, N, I = (shape[0], shape[1], shape[2]) if layout == 0 else (shape[1], shape[0], shape[2])  # noqa: E741
    W, R = ctx.const(node.input(1)), ctx.const(node.input(2))
    if W is None or R is None:
        node.reject("the weights W and R must be constants")
    W, R = np.asarray(W, np.float32), np.asarray(R, np.float32)
    direction = node.attr("direction", "forward")
    if direction not in ("forward", "reverse", "bidirectional"):
        node.reject_attr("direction", direction, "unknown direction")
    dirs = ["forward", "reverse"] if direction == "bidirectional" else [direction]
    D = len(dirs)
    if R.ndim != 3 or R.shape[0] != D or R.shape[1] % gates or R.shape[1] != gates * R.shape[2]:
        node.reject(f"R has shape {R.shape}, expected ({D}, {gates}*hidden_size, hidden_size)")
    H = R.shape[2]
    hidden = node.attr("hidden_size", None)
    if hidden is not None and int(hidden) != H:
        node.reject_attr("hidden_size", hidden, f"differs from the weight shapes (hidden size {H})")
    if W.shape != (D, gates * H, I):
        node.reject(f"W has shape {W.shape}, expected {(D, gates * H, I)}")
    B = ctx.const_input(node, 3, "B")
    if B is None:
        B = np.zeros((D, 2 * gates * H), np.float32)
    elif B.size != D * 2 * gates * H:
        node.reject(f"B has {B.size} values, expected {D * 2 * gates * H}")
    B = np.asarray(B, np.float32).reshape(D, 2 * gates * H)
    clip = node.attr("clip", None)
    if clip is not None:
        node.reject_attr("clip", clip, "clipping the gate pre-activations is not mapped (no layer per step)")
    for name in ("activation_alpha", "activation_beta"):
        value = node.attr(name, None)
        if value is not None:
            node.reject_attr(name, value, "only activations without parameters are mapped")
    names = node.attr("activations", None)
    names = default_acts * D if names is None else list(names)
    if len(names) != len(default_acts) * D:
        node.reject_attr("activations", names, f"expected {len(default_acts)} per direction")
    acts = []
    for d in range(D):
        chosen = names[d * len(default_acts) : (d + 1) * len(default_acts)]
        for n in chosen:
            if n.lower() not in _ACTIVATIONS:
                node.reject_attr(
                    "activations", names, f"{n} has no exact one-layer Caffe form (Sigmoid, Tanh, Relu have)"
                )
        acts.append([_ACTIVATIONS[n.lower()] for n in chosen])
    lens = node.input(4)
    if lens:
        value = ctx.const(lens)
        if value is None:
            node.reject(
                "sequence_lens is computed at run time; only the full length for every entry is mapped"
            )
        value = np.asarray(value).reshape(-1)
        if value.size != N or np.any(value != T):
            node.reject(
                f"sequence_lens {value.tolist()} differs from the sequence length {T} for some batch entry "
                "(padded steps would need a per-entry mask)"
            )
    initial = {}
    for index in state_inputs:
        initial[index] = _initial_state(node, ctx, index, D, N, H, layout)
    return Spec(T, N, I, H, dirs, layout, W, R, B, acts, initial)


def _initial_state(node, ctx, index: int, D: int, N: int, H: int, layout: int):
    """Per direction ("zero", None), ("const", (N, H) array) or ("blob", blob name of the whole input)."""
    name = node.input(index)
    what = "initial_h" if index == 5 else "initial_c"
    if not name:
        return [("zero", None)] * D
    want = (D, N, H) if layout == 0 else (N, D, H)
    value = ctx.const(name)
    if value is None:
        if ctx.shape(name) != want:
            node.reject(f"{what} has shape {ctx.shape(name)}, expected {want}")
        return [("blob", ctx.blob(name))] * D
    value = np.asarray(value, np.float32)
    if value.size != D * N * H:
        node.reject(f"{what} has shape {value.shape}, expected {want}")
    value = value.reshape(want)
    per_dir = value if layout == 0 else value.transpose(1, 0, 2)
    return [("zero", None) if not np.any(per_dir[d]) else ("const", per_dir[d]) for d in range(D)]


class Unroller:
    """Emits the layers of one recurrent node; every extra layer and blob is named from the node's name."""

    def __init__(self, ctx, node, spec: Spec):
        self.ctx, self.node, self.spec = ctx, node, spec
        self.layers: list = []
        self.unused: list[str] = []
        self._pieces: dict = {}

    # ---- one layer each
    def add(self, type_: str, bottoms, tag: str, top: str | None = None, blobs=None, **params) -> str:
        """One layer with one top; the layer and (unless given) its top get the same fresh name."""
        name = fresh(self.ctx, self.node, tag)
        top = top or name
        self.layers.append(self.ctx.layer(name, type_, list(bottoms), [top], blobs=blobs, **params))
        return top

    def ip(self, bottom: str, weight: np.ndarray, bias, tag: str, top: str | None = None) -> str:
        """InnerProduct over the last axis of a rank-3 blob: top = bottom @ weight.T (+ bias)."""
        p = {"num_output": int(weight.shape[0]), "axis": 2}
        blobs = [np.ascontiguousarray(weight, np.float32)]
        if bias is None:
            p["bias_term"] = False
        else:
            blobs.append(np.asarray(bias, np.float32).reshape(-1))
        return self.add("InnerProduct", [bottom], tag, top, blobs=blobs, inner_product_param=p)

    def sum(self, a: str, b: str, tag: str, top: str | None = None, minus: bool = False) -> str:
        p = {"operation": ELTWISE_SUM}
        if minus:
            p["coeff"] = [1.0, -1.0]  # a - b: the coefficients +-1 are exact, one rounding like a subtraction
        return self.add("Eltwise", [a, b], tag, top, eltwise_param=p)

    def prod(self, a: str, b: str, tag: str, top: str | None = None) -> str:
        return self.add("Eltwise", [a, b], tag, top, eltwise_param={"operation": ELTWISE_PROD})

    def act(self, type_: str, bottom: str, tag: str, top: str | None = None) -> str:
        return self.add(type_, [bottom], tag, top)

    def split(self, bottom: str, axis: int, sizes: list[int], tag: str, tops=None) -> list[str]:
        """Slice `bottom` along `axis` into pieces of the given sizes (tops default to fresh names)."""
        if len(sizes) == 1:
            return [bottom]
        points = np.cumsum(sizes)[:-1].tolist()
        name = fresh(self.ctx, self.node, tag)
        tops = list(tops) if tops is not None else [fresh(self.ctx, self.node, f"{tag}{k}") for k in sizes]
        if len(tops) != len(sizes):
            raise ValueError("one top per piece")
        self.layers.append(
            self.ctx.layer(name, "Slice", [bottom], tops, slice_param={"axis": axis, "slice_point": points})
        )
        return tops

    # ---- the plumbing of a whole node
    def project(self, d: int, rows: slice, bias: np.ndarray, tag: str) -> list[str]:
        """The input projection X @ W[d, rows].T + bias of every step, then one blob per time step."""
        s = self.spec
        x = self.ctx.blob(self.node.input(0))
        full = self.ip(x, s.W[d, rows], bias, f"d{d}_{tag}_proj")
        pieces = self.split(full, s.time_axis, [1] * s.T, f"d{d}_{tag}_t")
        return pieces

    def initial(self, index: int, d: int, source: str, width: int) -> str | None:
        """Direction d's initial state from input `index` as a blob (None for zero). `source`: a projected step
        (width `width` on its last axis), which gives a constant state its batch axis."""
        s = self.spec
        kind, value = s.initial[index][d]
        if kind == "zero":
            return None
        if kind == "blob":
            if len(s.directions) == 1:
                return value
            if (index, value) not in self._pieces:
                self._pieces[index, value] = self.split(value, s.time_axis, [1, 1], f"init{index}_d")
            return self._pieces[index, value][d]
        tag = f"d{d}_init{index}"
        if np.all(value == value[0:1]):
            # one row for every batch entry: the bias of a zero-weight InnerProduct
            return self.ip(source, np.zeros((s.H, width), np.float32), value[0], tag)
        # rows differ per batch entry: view the step as (1, N*width), produce (1, N*H), restore the step shape
        flat = fresh(self.ctx, self.node, f"{tag}_flat")
        self.layers.append(reshape(self.ctx, flat, source, flat, (1, s.N * width)))
        rows = self.add(
            "InnerProduct",
            [flat],
            f"{tag}_rows",
            blobs=[np.zeros((s.N * s.H, s.N * width), np.float32), value.reshape(-1)],
            inner_product_param={"num_output": s.N * s.H},
        )
        state = fresh(self.ctx, self.node, tag)
        self.layers.append(reshape(self.ctx, state, rows, state, (*s.step_shape, s.H)))
        return state

    def output_blob(self, index: int) -> str | None:
        """The Caffe blob of output `index` when something reads it, else None."""
        name = self.node.output(index)
        if not name:
            return None
        g = self.ctx.graph
        if g.consumers(name) or g.is_graph_output(name):
            return self.ctx.blob(name)
        return None

    def finish(self, states: list[list[str]], finals: dict[int, list[str]]) -> list:
        """Assemble Y from states[d][t] and Y_h / Y_c (output index -> last state per direction)."""
        s = self.spec
        D = len(s.directions)
        ta = s.time_axis
        y = self.output_blob(0)
        if y is not None:
            steps = [states[d][t] for t in range(s.T) for d in range(D)]
            shape = (s.T, D, s.N, s.H) if ta == 0 else (s.N, s.T, D, s.H)
            if len(steps) == 1:
                self.layers.append(reshape(self.ctx, fresh(self.ctx, self.node, "Y"), steps[0], y, shape))
            else:
                joined = fresh(self.ctx, self.node, "Y_steps")
                self.layers.append(
                    self.ctx.layer(joined, "Concat", steps, [joined], concat_param={"axis": ta})
                )
                self.layers.append(reshape(self.ctx, fresh(self.ctx, self.node, "Y"), joined, y, shape))
        for index, lasts in finals.items():
            top = self.output_blob(index)
            if top is None or lasts[0] == top:
                continue
            p = {"concat_param": {"axis": ta}}
            name = fresh(self.ctx, self.node, f"out{index}")
            self.layers.append(self.ctx.layer(name, "Concat", lasts, [top], **p))
        # a last state nothing reads (Y_h when only Y_c is used, ...) goes to the Silence layer
        used = {b for layer in self.layers for b in layer.bottom}
        outputs = {self.output_blob(i) for i in range(len(self.node.outputs))}
        self.unused += [
            b for lasts in finals.values() for b in lasts if b and b not in used and b not in outputs
        ]
        if self.unused:
            name = fresh(self.ctx, self.node, "silence")
            self.layers.append(self.ctx.layer(name, "Silence", list(dict.fromkeys(self.unused)), []))
        return self.layers

    def last_top(self, d: int, index: int) -> str | None:
        """The name the last step of direction d gives its state of output `index`: the output blob itself
        when the node has one direction (Y_h / Y_c is then that state), else a fresh name."""
        if len(self.spec.directions) == 1:
            return self.output_blob(index)
        return None


def step_order(spec: Spec, d: int) -> list[int]:
    return list(range(spec.T)) if spec.directions[d] == "forward" else list(range(spec.T - 1, -1, -1))
