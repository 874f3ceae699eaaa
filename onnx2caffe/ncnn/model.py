"""The in-memory ncnn model: layers with parameters and weights, the .param text and the .bin bytes.

File formats (ncnn's docs/developer-guide/param-and-model-file-structure.md):

* ``.param``: the magic ``7767517``, ``<layer count> <blob count>``, then one line per layer:
  ``type name bottom_count top_count bottoms... tops... key=value...``. Integer keys 0..31; a value is an
  int or a float (ncnn tells them apart by a ``.`` or an ``e`` in the text); an array is written
  ``-233xx=n,v1,...,vn`` (key -23300 - id). ncnn reads each value into a 16-byte buffer with its own
  decimal parser, so a float is written with 9 significant digits in exponent form (at most 15
  characters, e.g. ``-1.23456789e-05``): that round-trips every finite float32 exactly through ncnn's
  parser (caffe2ncnn's ``%e`` keeps 7 digits and can move a value by an ulp or more).
* ``.bin``: the weights of each layer in the order its load_model() reads them. A "tagged" blob (convolution
  and inner-product weights: ncnn's ModelBin type 0) starts with a 4-byte storage tag: 0 for float32,
  0x01306B47 for float16, 0x000D4B38 for int8, and is padded to 4 bytes; untagged blobs are raw float32.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from onnx2caffe.fileio import preallocate, write_files

MAGIC = 7767517
TAG_FP32 = 0x00000000
TAG_FP16 = 0x01306B47
TAG_INT8 = 0x000D4B38


@dataclass
class Weight:
    """One blob in the .bin: data (float32, float16 or int8) and whether a storage tag precedes it."""

    data: np.ndarray
    tagged: bool = False

    @property
    def nbytes(self) -> int:
        n = self.data.nbytes + (4 if self.tagged else 0)
        return (n + 3) // 4 * 4

    def tag(self) -> int:
        kind = self.data.dtype
        if kind == np.float32:
            return TAG_FP32
        if kind == np.float16:
            return TAG_FP16
        if kind == np.int8:
            return TAG_INT8
        raise TypeError(f"no ncnn storage tag for {kind}")


@dataclass
class NcnnLayer:
    type: str
    name: str
    bottoms: list[str]
    tops: list[str]
    params: dict[int, Any] = field(default_factory=dict)
    weights: list[Weight] = field(default_factory=list)
    caffe_layer: str | None = None  # the Caffe layer this ncnn layer comes from (None: inserted Split)


@dataclass
class BlobInfo:
    """Where a Caffe blob lives in the ncnn net: the ncnn blob name, the Caffe shape (with the batch axis),
    the shape of the ncnn Mat holding one sample (outer to inner: (w,), (h, w), (c, h, w) or (c, d, h, w);
    it may differ from the Caffe shape without its batch axis, with the same values in the same order) and
    the Caffe layer that wrote it."""

    ncnn: str
    caffe_shape: tuple[int, ...]
    ncnn_shape: tuple[int, ...]
    layer: str | None
    layer_type: str | None


def format_float(v: float) -> str:
    f = float(np.float32(v))
    if not math.isfinite(f):
        raise ValueError(f"non-finite parameter value {v}")
    return f"{f:.8e}"


def format_value(v: Any) -> str:
    if isinstance(v, (bool, np.bool_)):
        return str(int(v))
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    return format_float(v)


def format_param(key: int, value: Any) -> str:
    if isinstance(value, (list, tuple, np.ndarray)):
        vals = list(value)
        return f"{-23300 - key}={len(vals)}" + "".join("," + format_value(v) for v in vals)
    return f"{key}={format_value(value)}"


@dataclass
class NcnnModel:
    """An ncnn net converted from a Caffe model.

    layers: in order. blobs: every Caffe blob (its last value, as Caffe holds it after a forward pass)
    -> BlobInfo. inputs: Caffe input blob -> Caffe shape. batch: the Caffe net's batch size (ncnn runs one
    sample at a time). int8: names of the quantised layers; requantized: ncnn blob -> the int8 scale of a
    blob that ncnn keeps as int8 (a fused requantize: its extracted values are scale * x).
    """

    layers: list[NcnnLayer]
    blobs: dict[str, BlobInfo]
    inputs: dict[str, tuple[int, ...]]
    batch: int
    source: str = ""
    notes: list[str] = field(default_factory=list)
    int8: list[str] = field(default_factory=list)
    requantized: dict[str, float] = field(default_factory=dict)

    def blob_count(self) -> int:
        names: set[str] = set()
        for layer in self.layers:
            names.update(layer.bottoms)
            names.update(layer.tops)
        return len(names)

    def param_text(self) -> str:
        lines = [str(MAGIC), f"{len(self.layers)} {self.blob_count()}"]
        for layer in self.layers:
            parts = [
                f"{layer.type:<16}",
                f"{layer.name:<16}",
                str(len(layer.bottoms)),
                str(len(layer.tops)),
                *layer.bottoms,
                *layer.tops,
            ]
            parts += [format_param(k, v) for k, v in layer.params.items()]
            lines.append(" ".join(parts))
        return "\n".join(lines) + "\n"

    def bin_size(self) -> int:
        return sum(w.nbytes for layer in self.layers for w in layer.weights)

    def bin_pieces(self) -> Iterator[memoryview | bytes]:
        """The .bin as a sequence of byte buffers (arrays are not copied)."""
        for layer in self.layers:
            for w in layer.weights:
                data = w.data
                if data.dtype.byteorder == ">" or not data.flags.c_contiguous:
                    data = np.ascontiguousarray(data, dtype=data.dtype.newbyteorder("<"))
                if w.tagged:
                    yield int(w.tag()).to_bytes(4, "little")
                if data.size:
                    yield memoryview(data).cast("B")
                pad = (-(data.nbytes + (4 if w.tagged else 0))) % 4
                if pad:
                    yield b"\0" * pad

    def bin_bytes(self) -> bytes:
        return b"".join(bytes(p) for p in self.bin_pieces())

    def weight_reads(self) -> list[tuple[str, int]]:
        """(layer name, bytes) of every read ncnn's loader makes, in order: a tagged blob is read as its
        4-byte tag then its padded data."""
        reads = []
        for layer in self.layers:
            for w in layer.weights:
                if w.tagged:
                    reads.append((layer.name, 4))
                    reads.append((layer.name, w.nbytes - 4))
                else:
                    reads.append((layer.name, w.nbytes))
        return reads

    def write(self, param_path: str | os.PathLike, bin_path: str | os.PathLike) -> None:
        """Write both files as one set: each to a temporary file beside its destination, then both renamed;
        on any failure (a destination that is a folder, a full disk, Ctrl-C) neither is left behind."""
        write_files(
            [
                (os.fspath(bin_path), self._write_bin),
                (os.fspath(param_path), lambda f: f.write(self.param_text().encode("utf-8"))),
            ]
        )

    def _write_bin(self, f) -> None:
        preallocate(f, self.bin_size())
        for piece in self.bin_pieces():
            f.write(piece)
