"""int8 quantisation of an NcnnModel from a calibration table, as ncnn's tools/quantize/ncnn2int8 does.

The table (onnx2caffe calibrate, ncnn2table, or the Caffe-era tool): ``<layer>_param_0 s1 ... sN`` weight
lines and ``<layer> s`` activation lines, values separated by spaces, read up to the first blank line
(what ncnn2int8 reads; a key containing ``_param_`` is a weight line). Both number styles parse.

For each Convolution, ConvolutionDepthWise and InnerProduct (the layers ncnn2int8 quantises):

* weights: ``clamp(round(w * s), -127, 127)`` in float32 with ``s`` the scale of the weight's output
  channel (Convolution, InnerProduct) or group (ConvolutionDepthWise); the rounding is ncnn's SIMD one,
  ``trunc(w * s + copysign(0.5, w * s))`` in float32 (its scalar tail, ``round()``, differs only at
  |w * s| = 0.49999997). Stored with the int8 tag 0x000D4B38, padded to 4 bytes.
* parameter 8 (int8_scale_term): 2 for Convolution and InnerProduct, 1 for ConvolutionDepthWise (2 when
  the table gives one scale for all groups); after the bias come the weight scales and the bottom blob's
  scale (the layer's activation line).
* requantize: a convolution whose output feeds only int8 convolutions (directly, or through a Split into
  nothing but int8 convolutions) gets +100 and the consumer's input scale as its output scale; ncnn then
  passes that blob on in int8.
* the other layers' tagged weights (convolutions left in float, Deconvolution) are stored as float16 when
  ``fp16_rest`` (ncnn2int8 runs with storage_type 1); numpy's round-to-nearest-even, as ncnn's F16C path.

A table must match the net: every line names a quantisable layer of the net, every quantisable layer has
both lines, a weight line has one scale per output channel (per group for ConvolutionDepthWise) or a
single scale for the whole layer (repeated for every channel, as per-layer tables mean), an activation
line has one value, and every scale is finite and positive. A weight scale of 0 is accepted only for a
channel whose weights are all below 1e-4 in magnitude (the Caffe-era tool's rule; ncnn then outputs the
bias there). Anything else is an InputFileError naming the table, the line and the layer.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field

import numpy as np

from onnx2caffe.errors import InputFileError
from onnx2caffe.ncnn.model import NcnnLayer, NcnnModel, Weight

QUANT_TYPES = ("Convolution", "ConvolutionDepthWise", "InnerProduct")
ZERO_WEIGHT_LIMIT = 1e-4


@dataclass
class Table:
    path: str
    weights: dict[str, list[float]] = field(default_factory=dict)  # layer -> weight scales
    activations: dict[str, list[float]] = field(default_factory=dict)  # layer -> activation scale(s)
    lines: dict[tuple[str, str], int] = field(default_factory=dict)  # (kind, layer) -> line number


def read_table(path: str | os.PathLike) -> Table:
    """Parse a table as ncnn2int8 reads it; InputFileError naming the file and line for malformed lines."""
    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as err:
        raise InputFileError(f"cannot read table {path}: {err.strerror or err}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise InputFileError(f"{path}: not a text file (calibration table expected)") from None
    table = Table(path)
    for no, raw in enumerate(text.split("\n"), start=1):
        line = raw.split("\r")[0]
        tokens = [t for t in line.split(" ") if t]
        if not tokens:
            break  # ncnn2int8 stops at the first blank line
        key, values = tokens[0], tokens[1:]
        if not values:
            raise InputFileError(f"{path}:{no}: {key!r} has no scale")
        try:
            scales = [float(v) for v in values]
        except ValueError:
            bad = next(v for v in values if not _is_float(v))
            raise InputFileError(f"{path}:{no}: {bad!r} is not a number (line for {key!r})") from None
        if "_param_" in key:
            layer, _, index = key.rpartition("_param_")
            if index != "0":
                raise InputFileError(
                    f"{path}:{no}: {key!r}: Caffe layers have one weight blob to quantise (_param_0)"
                )
            kind, store = "weight", table.weights
        else:
            layer, kind, store = key, "activation", table.activations
        if layer in store:
            raise InputFileError(
                f"{path}:{no}: second {kind} line for layer {layer!r} (first on line {table.lines[(kind, layer)]})"
            )
        store[layer] = scales
        table.lines[(kind, layer)] = no
    if not table.weights and not table.activations:
        raise InputFileError(f"{path}: empty calibration table")
    return table


def _is_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def quant_rows(layer: NcnnLayer) -> int:
    """How many weight scales the layer takes: output channels, or groups for ConvolutionDepthWise."""
    if layer.type == "ConvolutionDepthWise":
        return int(layer.params.get(7, 1))
    return int(layer.params[0])


def round_int8(v: np.ndarray) -> np.ndarray:
    """ncnn's float -> int8 (its SIMD path): trunc(v + copysign(0.5, v)) in float32, clamped to +-127."""
    v = np.asarray(v, np.float32)
    adj = v + np.copysign(np.float32(0.5), v).astype(np.float32)
    return np.clip(np.trunc(adj), -127, 127).astype(np.int8)


def quantize_weights(w: np.ndarray, scales: np.ndarray) -> np.ndarray:
    """Per-row int8 weights: rows of w (one per scale) times their scale, rounded like ncnn."""
    rows = np.asarray(w, np.float32).reshape(len(scales), -1)
    return round_int8(rows * np.asarray(scales, np.float32)[:, None]).reshape(-1)


def _check_table(model: NcnnModel, table: Table) -> None:
    path = table.path
    by_name = {layer.name: layer for layer in model.layers}
    quant = {layer.name: layer for layer in model.layers if layer.type in QUANT_TYPES}
    for (kind, name), no in sorted(table.lines.items(), key=lambda kv: kv[1]):
        if name not in by_name:
            raise InputFileError(f"{path}:{no}: {kind} line for layer {name!r}, which the net does not have")
        if name not in quant:
            raise InputFileError(
                f"{path}:{no}: layer {name!r} is a {by_name[name].type}; only Convolution, ConvolutionDepthWise "
                "and InnerProduct layers are quantised"
            )
    missing = [
        f"{name} ({kind})"
        for name in quant
        for kind, store in (("weight", table.weights), ("activation", table.activations))
        if name not in store
    ]
    if missing:
        more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        raise InputFileError(
            f"{path}: no line for {', '.join(missing[:5])}{more}: every quantisable layer needs both"
        )
    for name, layer in quant.items():
        n = quant_rows(layer)
        ws = table.weights[name]
        no = table.lines[("weight", name)]
        if len(ws) not in (1, n):
            what = "groups" if layer.type == "ConvolutionDepthWise" else "output channels"
            raise InputFileError(
                f"{path}:{no}: {len(ws)} weight scales for layer {name!r}, which has {n} {what}"
            )
        bad = [s for s in ws if not (math.isfinite(s) and s >= 0)]
        if bad:
            raise InputFileError(
                f"{path}:{no}: weight scale {bad[0]} of layer {name!r} (must be finite and positive)"
            )
        if any(s == 0 for s in ws):
            w = layer.weights[0].data.reshape(n, -1) if len(ws) == n else layer.weights[0].data.reshape(1, -1)
            for i, s in enumerate(ws):
                if s == 0 and np.max(np.abs(w[i])) >= ZERO_WEIGHT_LIMIT:
                    raise InputFileError(
                        f"{path}:{no}: weight scale 0 for channel {i} of layer {name!r}, whose weights reach "
                        f"{float(np.max(np.abs(w[i]))):.4g} (0 is only for all-zero channels)"
                    )
        act = table.activations[name]
        no = table.lines[("activation", name)]
        if len(act) != 1:
            raise InputFileError(
                f"{path}:{no}: {len(act)} activation scales for layer {name!r} (ncnn reads one)"
            )
        if not (math.isfinite(act[0]) and act[0] > 0):
            raise InputFileError(
                f"{path}:{no}: activation scale {act[0]} of layer {name!r} (must be finite and positive)"
            )


def quantize(model: NcnnModel, table: Table, fp16_rest: bool = True) -> NcnnModel:
    """Quantise `model` in place (see the module docstring); returns it."""
    _check_table(model, table)
    bottom_scale: dict[str, float] = {}
    for layer in model.layers:
        if layer.type not in QUANT_TYPES:
            continue
        n = quant_rows(layer)
        ws = table.weights[layer.name]
        single = len(ws) == 1 and n > 1
        if single and layer.type != "ConvolutionDepthWise":
            ws = ws * n  # one scale for the layer: every output channel gets it
        scales = np.asarray(ws, np.float32)
        w = layer.weights[0]
        q = (
            quantize_weights(w.data, scales)
            if len(scales) == n
            else quantize_weights(w.data, np.repeat(scales, n))
        )
        layer.weights[0] = Weight(q, tagged=True)
        act = np.float32(table.activations[layer.name][0])
        layer.weights.append(Weight(scales, tagged=False))
        layer.weights.append(Weight(np.asarray([act], np.float32), tagged=False))
        if layer.type == "ConvolutionDepthWise":
            layer.params[8] = 2 if single else 1
        else:
            layer.params[8] = 2
        bottom_scale[layer.name] = float(act)
        model.int8.append(layer.name)
    _fuse_requantize(model, bottom_scale)
    for layer in model.layers:  # a Split passes the int8 Mat on: its copies hold int8 values too
        if layer.type == "Split" and layer.bottoms[0] in model.requantized:
            for t in layer.tops:
                model.requantized[t] = model.requantized[layer.bottoms[0]]
    if fp16_rest:
        int8 = set(model.int8)
        for layer in model.layers:
            if layer.name in int8:
                continue
            for w in layer.weights:
                if w.tagged and w.data.dtype == np.float32:
                    w.data = w.data.astype(np.float16)
    return model


def _fuse_requantize(model: NcnnModel, bottom_scale: dict[str, float]) -> None:
    layers = model.layers
    conv = ("Convolution", "ConvolutionDepthWise")

    def int8(layer: NcnnLayer) -> bool:
        return layer.type in conv and layer.name in bottom_scale

    def fuse(producer: NcnnLayer, consumer: NcnnLayer) -> None:
        scale = bottom_scale[consumer.name]
        producer.params[8] = int(producer.params[8]) + 100
        producer.weights.append(Weight(np.asarray([scale], np.float32), tagged=False))
        model.requantized[producer.tops[0]] = scale
        model.notes.append(
            f"requantize fused: {producer.name} -> {consumer.name} (int8 blob {producer.tops[0]})"
        )

    fused: set[str] = set()
    for i, producer in enumerate(layers):
        if not int8(producer):
            continue
        top = producer.tops[0]
        j = next(
            (k for k in range(i + 1, len(layers)) if layers[k].type in conv and layers[k].bottoms == [top]),
            None,
        )
        if j is not None and int8(layers[j]):
            fuse(producer, layers[j])
            fused.add(producer.name)
    for i, producer in enumerate(layers):
        if not int8(producer) or producer.name in fused:
            continue
        top = producer.tops[0]
        split = next(
            (
                k
                for k in range(i + 1, len(layers))
                if layers[k].type == "Split" and layers[k].bottoms == [top]
            ),
            None,
        )
        if split is None:
            continue
        consumers = []
        for t in layers[split].tops:
            k = next(
                (
                    k
                    for k in range(split + 1, len(layers))
                    if layers[k].type in conv and layers[k].bottoms == [t]
                ),
                None,
            )
            if k is None or not int8(layers[k]):
                break
            consumers.append(layers[k])
        else:
            first = layers[split].tops[0]
            consumer = next(layer for layer in layers if first in layer.bottoms)
            fuse(producer, consumer)
