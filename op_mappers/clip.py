"""Clip -> exact compositions of ReLU / Power / Eltwise MAX (OpenCV has no Clip layer; ReLU6 is a fork layer).

max(x, lo): ReLU when lo == 0, else Eltwise MAX with a constant blob made by Power(scale=0, shift=lo).
min(x, hi) = -max(-x, -hi): negation by Power(scale=-1) is exact, so the whole composition is bit-exact.
"""

from __future__ import annotations

from onnx2caffe.registry import register

from ._compose import clamp

_LAYERS = ("ReLU", "Power", "Eltwise")


def _bound(node, ctx, index: int, what: str) -> float | None:
    value = ctx.const_input(node, index, what)
    if value is None:
        return None
    if value.size != 1:
        node.reject(f"input '{what}' must be a scalar, got {value.size} values")
    return float(value[0])


@register("Clip", since=1, until=11, layers=_LAYERS)
def clip_v1(node, ctx):
    """Clip with min/max attributes (opset < 11), e.g. ReLU6 = ReLU then min(., 6)."""
    node.ignore_attr("consumed_inputs", "legacy in-place hint of opset 1; no effect on values")
    lo, hi = node.attr("min", None), node.attr("max", None)
    return clamp(ctx, node, ctx.blob(node.input(0)), ctx.blob(node.output(0)), lo, hi)


@register("Clip", since=11, layers=_LAYERS)
def clip_v11(node, ctx):
    """Clip with constant min/max inputs (opset 11+), e.g. ReLU6 = ReLU then min(., 6)."""
    lo, hi = _bound(node, ctx, 1, "min"), _bound(node, ctx, 2, "max")
    return clamp(ctx, node, ctx.blob(node.input(0)), ctx.blob(node.output(0)), lo, hi)
