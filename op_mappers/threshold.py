"""onnx2caffe::ThresholdSelect (made by the fuse_threshold pass from F.threshold's Greater/LessOrEqual + Where)
-> Caffe Threshold (m = x > t ? 1 : 0) composed exactly with Power and Eltwise.

    lt / ge compare -x > -t instead (negation is exact); le / ge keep where the mask is 0: keep = 1 - m
    y = keep * x + (1 - keep) * v        (keep is 0 or 1, so every product and sum is exact)

OpenCV's Caffe importer has no Threshold layer: models with this node run on real Caffe only.
"""

from __future__ import annotations

from onnx2caffe.registry import register

from ._compose import ELTWISE_PROD, ELTWISE_SUM, eltwise, fresh, power

DOMAIN = "onnx2caffe"


@register("ThresholdSelect", since=1, domain=DOMAIN, layers=("Threshold", "Power", "Eltwise"))
def threshold_select(node, ctx):
    """y = x where (x op threshold) else value (F.threshold), via Caffe Threshold (not in OpenCV)."""
    op = node.attr("compare", "gt")
    t = float(node.attr("threshold", 0.0))
    v = float(node.attr("value", 0.0))
    if op not in ("gt", "ge", "lt", "le"):
        node.reject_attr("compare", op, "expected gt, ge, lt or le")
    x, y = ctx.blob(node.input(0)), ctx.blob(node.output(0))
    layers = []
    probe, limit = x, t
    if op in ("lt", "ge"):  # x < t  <=>  -x > -t
        probe, limit = fresh(ctx, node, "neg"), -t
        layers.append(power(ctx, probe, x, probe, scale=-1.0))
    mask = fresh(ctx, node, "mask")
    params = {"threshold_param": {"threshold": limit}} if limit != 0.0 else {}
    layers.append(ctx.layer(mask, "Threshold", [probe], [mask], **params))
    keep = mask
    if op in ("le", "ge"):
        keep = fresh(ctx, node, "keep")
        layers.append(power(ctx, keep, mask, keep, scale=-1.0, shift=1.0))
    if v == 0.0:
        layers.append(eltwise(ctx, node.name, [x, keep], y, ELTWISE_PROD))
        return layers
    kept = fresh(ctx, node, "kept")
    layers.append(eltwise(ctx, kept, [x, keep], kept, ELTWISE_PROD))
    fill = fresh(ctx, node, "fill")
    layers.append(power(ctx, fill, keep, fill, scale=-v, shift=v))  # v - v * keep: v or exactly 0
    layers.append(eltwise(ctx, node.name, [kept, fill], y, ELTWISE_SUM))
    return layers
