"""The ncnn int8 calibration table: text, and its atomic writer.

Layout (what ncnn2int8 reads): every ``<layer>_param_0 s1 s2 ...`` weight line first, then every
``<layer> s`` activation line (the scale of the layer's bottom blob, keyed by the layer's name), one
line each, no blank line (ncnn2int8 stops at the first blank line).

Number formats: ``ncnn`` writes each value as C's ``%f`` followed by a space (ncnn2table, trailing space
included); ``legacy`` joins Python ``str()`` floats with single spaces and no trailing space (the
Caffe-era tool).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from onnx2caffe.fileio import write_bytes_atomic

STYLES = ("ncnn", "legacy")


def _values(values: Sequence[float], style: str) -> str:
    if style == "ncnn":
        return "".join(f"{float(v):f} " for v in values)  # C printf("%f ")
    return " ".join(repr(float(v)) for v in values)


def table_text(
    weights: Sequence[tuple[str, Sequence[float]]], activations: Sequence[tuple[str, float]], style: str
) -> str:
    """The table's text. weights: (layer name, scales) in layer order; activations: (layer name, scale)."""
    if style not in STYLES:
        raise ValueError(f"unknown table style {style!r}")
    sep = " "
    lines = [f"{name}_param_0{sep}{_values(scales, style)}" for name, scales in weights]
    lines += [f"{name}{sep}{_values([scale], style)}" for name, scale in activations]
    for name, _ in list(weights) + list(activations):
        if not name or any(c.isspace() for c in name):
            raise ValueError(f"layer name {name!r} cannot be written in an ncnn table (whitespace)")
    return "".join(line + "\n" for line in lines)


def write_table(
    path: str | os.PathLike[str],
    weights: Sequence[tuple[str, Sequence[float]]],
    activations: Sequence[tuple[str, float]],
    style: str,
) -> None:
    """Write the table atomically (OutputFileError naming the path on failure)."""
    write_bytes_atomic(path, table_text(weights, activations, style).encode("utf-8"))
