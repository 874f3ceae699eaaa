"""Caffe model -> NcnnModel: the graph-level part of caffe2ncnn (naming, shapes, Split layers).

Per Caffe layer (TEST phase, in order): the Caffe top shapes (shapes.py), a check that the layer keeps the
samples of the batch apart (ncnn runs one sample at a time: every blob must keep the batch as its first
axis), then the layer's translator (layers.py) emits one or more ncnn layers through a LayerContext.

Blob names. A blob keeps its Caffe name for the value Caffe holds in it after a forward pass, so a user
extracts the same blob by the same name. Caffe layers that work in place (top == bottom: ReLU after a
Convolution, ...) write several values into one Caffe blob; ncnn needs one name per value, so the earlier
values are renamed ``<blob>_<layer that wrote them>`` (caffe2ncnn names the in-place layer's output that
way; here the last value keeps the plain name instead). A net input rewritten in place keeps its name for
the input, and the later values are renamed. Blobs made up here are named ``<blob>_ncnn_<what>``.

ncnn shapes. Each ncnn blob carries the shape of the Mat ncnn makes for one sample. The canonical shape is
the Caffe shape without its batch axis ((C, H, W) for N, C, H, W; (C,) for N, C; ...); some ncnn layers
produce another shape with the same values in the same order (global pooling and InnerProduct give 1-D
Mats). Layers that depend on the layout ask for the canonical shape (LayerContext.canon) and get an ncnn
Reshape when needed.

Split layers. An ncnn blob is consumed by one layer; where a blob feeds several, a Split named
``splitncnn_<k>`` gives one copy per consumer, named ``<blob>_splitncnn_<i>`` (as caffe2ncnn does).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from onnx2caffe.errors import ConversionError, InputFileError
from onnx2caffe.ncnn.model import BlobInfo, NcnnLayer, NcnnModel, Weight
from onnx2caffe.ncnn.reader import CaffeModel
from onnx2caffe.ncnn.shapes import ShapeError, infer

MAX_NAME = 255  # ncnn reads names with %255s


class NcnnUnsupportedError(ConversionError):
    """Some Caffe layers have no exact ncnn form; `.layers` lists (name, type, reason)."""

    def __init__(self, message: str, layers: list[tuple[str, str, str]]) -> None:
        super().__init__(message)
        self.layers = layers


class Refuse(Exception):
    """A translator's refusal: args[0] is the reason."""


@dataclass
class BlobRef:
    ncnn: str
    caffe_shape: tuple[int, ...]
    ncnn_shape: tuple[int, ...]
    batched: bool = True  # the Caffe shape starts with the batch axis (see Builder.build)


def canonical(caffe_shape: Sequence[int], batched: bool = True) -> tuple[int, ...]:
    """The ncnn shape of one sample of a Caffe blob: the Caffe shape without the batch axis (all of it for
    a blob without one)."""
    s = tuple(int(d) for d in (caffe_shape[1:] if batched else caffe_shape))
    if not s:
        return (1,)
    if len(s) > 4:
        raise Refuse(f"{len(caffe_shape)}-D blob (ncnn Mats hold at most 4 axes per sample)")
    return s


def reshape_params(shape: Sequence[int]) -> dict[int, int]:
    """ncnn Reshape / MemoryData / Input keys for an ncnn shape (outer to inner)."""
    s = list(shape)
    if len(s) == 1:
        return {0: s[0]}
    if len(s) == 2:
        return {0: s[1], 1: s[0]}
    if len(s) == 3:
        return {0: s[2], 1: s[1], 2: s[0]}
    return {0: s[3], 1: s[2], 11: s[1], 2: s[0]}


class Names:
    """Unique ncnn names (layers and blobs have separate namespaces in ncnn)."""

    def __init__(self, taken: set[str]) -> None:
        self.taken = set(taken)

    def fresh(self, base: str) -> str:
        name = base
        k = 1
        while name in self.taken:
            name = f"{base}_{k}"
            k += 1
        self.taken.add(name)
        return name


class LayerContext:
    """What a translator sees of one Caffe layer, and how it emits ncnn layers."""

    def __init__(self, builder: Builder, layer, lp, bottoms: list[BlobRef], top_shapes, top_names) -> None:
        self.b = builder
        self.layer = layer
        self.lp = lp
        self.name = layer.name
        self.type = layer.type
        self.bottoms = bottoms
        self.top_shapes = [tuple(s) for s in top_shapes]
        self.top_names = list(top_names)
        self.top_ncnn_shapes: list[tuple[int, ...] | None] = [None] * len(top_names)
        self.batch = builder.batch
        self.top_batched = [builder.batch != 1 or not s or s[0] == 1 for s in self.top_shapes]
        self._layer_names_used = 0

    # ----- helpers for translators

    @property
    def blobs(self) -> list[np.ndarray]:
        return self.layer.blobs

    def refuse(self, reason: str):
        raise Refuse(reason)

    def need_blobs(self, n: int, what: str = "") -> None:
        if len(self.layer.blobs) < n:
            self.refuse(f"{len(self.layer.blobs)} weight blob(s) in the caffemodel, needs {n}{what}")

    def tmp(self, base: str, tag: str) -> str:
        return self.b.blob_names.fresh(f"{base}_ncnn_{tag}")

    def layer_name(self, tag: str | None = None) -> str:
        if tag is None:
            return self.b.layer_names.fresh(self.name)
        return self.b.layer_names.fresh(f"{self.name}_ncnn_{tag}")

    def emit(
        self,
        type: str,
        bottoms: Sequence[str],
        tops: Sequence[str],
        params: dict[int, Any] | None = None,
        weights: Sequence[Weight] = (),
        tag: str | None = None,
    ) -> NcnnLayer:
        """Add an ncnn layer named after this Caffe layer (tag: a suffix for helper layers)."""
        layer = NcnnLayer(
            type,
            self.layer_name(tag),
            list(bottoms),
            list(tops),
            dict(params or {}),
            list(weights),
            caffe_layer=self.name,
        )
        self.b.out.append(layer)
        return layer

    def as_shape(self, i: int, shape: Sequence[int]) -> str:
        """The ncnn blob of bottom i with the given ncnn shape (an ncnn Reshape when it differs)."""
        ref = self.bottoms[i]
        shape = tuple(int(d) for d in shape)
        if math.prod(shape) != math.prod(ref.ncnn_shape):
            raise AssertionError(f"reshape {ref.ncnn_shape} -> {shape}")
        if tuple(ref.ncnn_shape) == shape:
            return ref.ncnn
        key = (ref.ncnn, shape)
        if key not in self.b.reshaped:
            name = self.tmp(ref.ncnn, "reshape")
            self.emit("Reshape", [ref.ncnn], [name], reshape_params(shape), tag="reshape")
            self.b.reshaped[key] = name
        return self.b.reshaped[key]

    def canon(self, i: int) -> str:
        """The ncnn blob of bottom i in its canonical shape (see the module docstring)."""
        ref = self.bottoms[i]
        return self.as_shape(i, canonical(ref.caffe_shape, ref.batched))

    def top_canonical(self, i: int) -> tuple[int, ...]:
        """The canonical ncnn shape of top i."""
        return canonical(self.top_shapes[i], self.top_batched[i])

    def set_shape(self, i: int, ncnn_shape: Sequence[int]) -> None:
        """Top i's ncnn Mat shape when it is not the canonical one."""
        self.top_ncnn_shapes[i] = tuple(int(d) for d in ncnn_shape)

    def caffe_axis(self, axis: int, rank: int, what: str = "axis") -> int:
        """A Caffe axis (negative from the end) as an ncnn axis of the canonical shape: Caffe axis - 1.
        The batch axis has no ncnn counterpart."""
        a = int(axis)
        if a < 0:
            a += rank
        if not 0 <= a < rank:
            self.refuse(f"{what} {axis} out of range for a {rank}-D blob")
        if a == 0:
            self.refuse(f"{what} 0 is the batch axis, which ncnn does not have")
        return a - 1


def _writers(model: CaffeModel) -> dict[str, list[int]]:
    w: dict[str, list[int]] = {}
    for i, layer in enumerate(model.layers):
        for t in layer.top:
            w.setdefault(t, []).append(i)
    return w


INPUT_TYPES = ("Input", "MemoryData")
# layers that only see their input's values in order, so a blob without a batch axis (shape (C,) in a net of
# batch 1) can feed them; Scale / Bias only as the factor (second input)
BATCHLESS_OK = frozenset(
    "Reshape Split Silence Eltwise Scale Bias ReLU PReLU ELU Sigmoid TanH AbsVal BNLL Exp Log Power Threshold "
    "Dropout Clip ReLU6 Swish".split()
)


class Builder:
    def __init__(self, model: CaffeModel) -> None:
        self.model = model
        self.out: list[NcnnLayer] = []
        self.reshaped: dict[tuple[str, tuple[int, ...]], str] = {}
        caffe_blobs = {b for layer in model.layers for b in list(layer.top) + list(layer.bottom)}
        self.blob_names = Names(caffe_blobs)
        self.layer_names = Names(set())
        self.writers = _writers(model)
        self.batch = self._batch()

    def _batch(self) -> int:
        sizes = set()
        for layer in self.model.layers:
            if layer.type in INPUT_TYPES:
                lp = self.model.params(layer)
                try:
                    shapes = infer(lp, [], layer.blobs)
                except ShapeError:
                    continue
                sizes.update(s[0] for s in shapes if s)
        return max(sizes) if sizes else 1  # inputs of another batch size are refused in build()

    def _top_name(self, blob: str, version: int, layer) -> str:
        writers = self.writers[blob]
        first = self.model.layers[writers[0]]
        if first.type in INPUT_TYPES:
            keep = version == 0
        else:
            keep = version == len(writers) - 1
        if keep:
            self.blob_names.taken.add(blob)
            return blob
        return self.blob_names.fresh(f"{blob}_{layer.name}")

    def build(self) -> NcnnModel:
        from onnx2caffe.ncnn.layers import TRANSLATORS, refusal

        state: dict[str, BlobRef] = {}
        version: dict[str, int] = {}
        poisoned: set[str] = set()
        errors: list[tuple[str, str, str]] = []
        final: dict[str, BlobInfo] = {}
        inputs: dict[str, tuple[int, ...]] = {}
        for layer in self.model.layers:
            lp = self.model.params(layer)
            if any(b in poisoned for b in layer.bottom):
                poisoned.update(layer.top)  # follows from an earlier refusal: not reported again
                continue
            missing = [b for b in layer.bottom if b not in state]
            if missing:
                raise InputFileError(
                    f"{self.model.prototxt}: layer {layer.name!r}: bottom {missing[0]!r} is not produced by any "
                    "earlier layer"
                )
            try:
                for n in [layer.name, *layer.top, *layer.bottom]:
                    if not n or any(c.isspace() for c in n) or len(n.encode()) > MAX_NAME:
                        raise Refuse(
                            f"name {n!r} cannot be written in an ncnn .param (whitespace or > 255 bytes)"
                        )
                translator = TRANSLATORS.get(layer.type)
                if translator is None:
                    raise Refuse(refusal(layer.type))
                bottoms = [state[b] for b in layer.bottom]
                try:
                    top_shapes = infer(lp, [b.caffe_shape for b in bottoms], layer.blobs)
                except ShapeError as err:
                    raise Refuse(str(err)) from None
                for t, s in zip(layer.top, top_shapes, strict=True):
                    if layer.type in INPUT_TYPES and s and s[0] != self.batch:
                        raise Refuse(
                            f"input {t!r} has batch size {s[0]} and another input {self.batch}; ncnn runs one "
                            "sample of every input at a time"
                        )
                    if s and s[0] != self.batch and self.batch != 1:
                        raise Refuse(
                            f"top {t!r} has shape {s}: the layer mixes the samples of the batch (axis 0 of size "
                            f"{self.batch}), and ncnn has no batch axis"
                        )
                unbatched = [b for b, ref in zip(layer.bottom, bottoms, strict=True) if not ref.batched]
                if unbatched and (
                    layer.type not in BATCHLESS_OK
                    or (layer.type in ("Scale", "Bias") and not bottoms[0].batched)
                ):
                    raise Refuse(
                        f"input {unbatched[0]!r} of shape {state[unbatched[0]].caffe_shape} has no batch axis (a "
                        f"net of batch 1 squeezed it away), and {layer.type} works on axes that ncnn counts from it"
                    )
                names = [self._top_name(t, version.get(t, 0), layer) for t in layer.top]
                ctx = LayerContext(self, layer, lp, bottoms, top_shapes, names)
                translator(ctx)
            except Refuse as r:
                errors.append((layer.name, layer.type, str(r.args[0])))
                poisoned.update(layer.top)
                continue
            for i, (t, name, s) in enumerate(zip(layer.top, ctx.top_names, ctx.top_shapes, strict=True)):
                ncnn_shape = ctx.top_ncnn_shapes[i]
                if ncnn_shape is None:
                    ncnn_shape = ctx.top_canonical(i)
                state[t] = BlobRef(name, s, ncnn_shape, ctx.top_batched[i])
                version[t] = version.get(t, 0) + 1
                final[t] = BlobInfo(name, s, ncnn_shape, layer.name, layer.type)
                if layer.type in INPUT_TYPES and version[t] == 1:
                    inputs[t] = s
        if errors:
            detail = "; ".join(f"layer {n!r} ({t}): {why}" for n, t, why in errors)
            raise NcnnUnsupportedError(
                f"{self.model.prototxt}: ncnn cannot express {len(errors)} layer(s): {detail}", errors
            )
        layers = insert_splits(self.out, self.layer_names, self.blob_names)
        return NcnnModel(layers, final, inputs, self.batch, source=self.model.prototxt)


def insert_splits(layers: list[NcnnLayer], layer_names: Names, blob_names: Names) -> list[NcnnLayer]:
    """A Split after the producer of every blob with several consumers; consumers read its copies."""
    consumers: dict[str, int] = {}
    for layer in layers:
        for b in layer.bottoms:
            consumers[b] = consumers.get(b, 0) + 1
    multi = {b for b, n in consumers.items() if n > 1}
    if not multi:
        return layers
    copies = {b: [blob_names.fresh(f"{b}_splitncnn_{i}") for i in range(consumers[b])] for b in sorted(multi)}
    used: dict[str, int] = {}
    out: list[NcnnLayer] = []
    k = 0
    for layer in layers:
        new_bottoms = []
        for b in layer.bottoms:
            if b in multi:
                i = used.get(b, 0)
                used[b] = i + 1
                new_bottoms.append(copies[b][i])
            else:
                new_bottoms.append(b)
        layer.bottoms = new_bottoms
        out.append(layer)
        for t in layer.tops:
            if t in multi:
                out.append(NcnnLayer("Split", layer_names.fresh(f"splitncnn_{k}"), [t], copies[t]))
                k += 1
    return out
