"""ReduceSum, ReduceMean, ReduceMax, ReduceMin, ReduceL1, ReduceL2, ReduceSumSquare, ReduceLogSumExp over any axes
(attribute or constant input, keepdims 0/1, noop_with_empty_axes) -> Pooling / ones InnerProduct or Convolution
per run of reduced axes, with exact element-wise steps around them.

Caffe's Reduction layer is not loadable by OpenCV (and reduces only trailing axes), so the reduction is composed.
The reduced axes are grouped into runs of neighbouring axes (unit axes join any run); the blob is viewed as
(P, R, Q) for each run in turn (no data moves) and reduced over R:
- sum (_compose.sum_axis): InnerProduct with a (1, R) ones weight when Q == 1, else the R slices added by one
  Eltwise SUM (R <= 64) or a ones Convolution 1x1 - each term is exact (x * 1 or x itself), only the order of
  the float32 additions differs from onnxruntime: |error| <= (R - 1) 2^-24 sum |x|;
- mean: Pooling AVE with an (R, 1) window over (P, 1, R, Q) (sum, then one division by R per run); a 4-D
  tensor reduced over H, W is one global Pooling;
- max: Pooling MAX the same way (exact; Caffe's pooling starts from -FLT_MAX and skips NaN, so a window of
  only NaN or -inf gives -FLT_MAX); min = -max(-x) (negation is exact).
L1 = sum(|x|) (AbsVal, exact), SumSquare = sum(x^2) (Power 2: one rounding per square, as onnxruntime),
L2 = sqrt(sum(x^2)) (Power 0.5: correctly rounded like sqrt), LogSumExp = m + log(sum(exp(x - m))) with m the
max broadcast back by Concat copies (exact) - the same max-shifted algorithm as onnxruntime (finite for any
finite input); exp and log are float32 library calls (a few ulp). A keepdims=0 output is a final Reshape.
"""

from __future__ import annotations

import math

import numpy as np

from onnx2caffe.registry import register

from ._compose import (
    ELTWISE_SUM,
    broadcast_to,
    eltwise_nd,
    fresh,
    identity,
    pool_axis,
    power,
    reshape,
    sum_axis,
    tidy,
    view,
)

_LAYERS = ("Pooling", "InnerProduct", "Convolution", "Reshape", "Power", "AbsVal", "Eltwise", "Exp", "Log")


def _axes(node, ctx, rank: int, input_since: int) -> list[int] | None:
    """The sorted reduced axes; None for the identity (empty axes with noop_with_empty_axes)."""
    noop = 0
    if node.opset >= input_since:
        noop = int(node.attr("noop_with_empty_axes", 0))
        values = ctx.const_input(node, 1, "axes")
        axes = None if values is None else [int(a) for a in values]
    else:
        axes = node.attr("axes", None)
        axes = None if axes is None else [int(a) for a in axes]
    if not axes:
        if noop:
            return None
        axes = list(range(rank))
    out = sorted({a + rank if a < 0 else a for a in axes})
    if any(not 0 <= a < rank for a in out):
        node.reject_attr("axes", axes, f"out of range for a rank-{rank} input")
    return out


def _runs(shape, axes) -> list[tuple[int, int]]:
    """[start, end) runs of neighbouring reduced axes (unit axes join a run; runs of only unit axes dropped)."""
    runs, start = [], None
    for i in range(len(shape) + 1):
        inside = i < len(shape) and (i in axes or shape[i] == 1)
        if inside and start is None:
            start = i
        elif not inside and start is not None:
            if any(a in axes and shape[a] != 1 for a in range(start, i)):
                runs.append((start, i))
            start = None
    return runs


def _reduce(node, ctx, kind: str, input_since: int = 18):
    """kind: sum, mean, max, min, l1, l2, sumsq, logsumexp."""
    x, y = node.input(0), node.output(0)
    dtype = ctx.dtype(x)
    if dtype is not None and dtype != np.float32:
        node.reject(f"{dtype} input (Caffe blobs are float32)")
    shape = tuple(ctx.shape(x))
    out_shape = tuple(ctx.shape(y))
    node.attr("keepdims", 1)  # the output shape (from shape inference) applies it
    if not shape:
        node.reject("a rank-0 (scalar) input has no Caffe blob form")
    if not out_shape:
        node.reject("a rank-0 (scalar) output (every axis reduced, keepdims 0) has no Caffe blob form")
    axes = _axes(node, ctx, len(shape), input_since)
    src, top = ctx.blob(x), ctx.blob(y)
    # noop_with_empty_axes: no reduction, but onnxruntime still applies the element-wise steps (L2: sqrt(x^2))
    runs = [] if axes is None else _runs(shape, axes)
    layers: list = []
    cur, cur_shape = src, shape  # the blob and its real shape

    def elementwise(tag, make):
        nonlocal cur
        out = fresh(ctx, node, tag)
        layers.append(make(out))
        cur = out

    # 4-D mean / max over exactly H, W: one global Pooling (no views)
    if kind in ("mean", "max") and len(shape) == 4 and axes == [2, 3] and not (shape[2] == shape[3] == 1):
        method = "AVE" if kind == "mean" else "MAX"
        mid = top if out_shape == (shape[0], shape[1], 1, 1) else fresh(ctx, node, "pool")
        layers.append(
            ctx.layer(
                node.name, "Pooling", [src], [mid], pooling_param={"pool": method, "global_pooling": True}
            )
        )
        if mid != top:
            layers.append(reshape(ctx, fresh(ctx, node, "squeeze"), mid, top, out_shape))
        return layers

    if kind == "min":
        elementwise("neg", lambda o: power(ctx, o, cur, o, scale=-1.0))
    elif kind == "l1":
        elementwise("abs", lambda o: ctx.layer(o, "AbsVal", [cur], [o]))
    elif kind in ("l2", "sumsq"):
        elementwise("square", lambda o: power(ctx, o, cur, o, power=2.0))

    def reduce_runs(blob, blob_shape, how: str, tag: str):
        logical_now = list(shape)
        for start, end in runs:
            P = math.prod(logical_now[:start])
            R = math.prod(logical_now[start:end])
            Q = math.prod(logical_now[end:])
            if how == "sum":
                more, blob, blob_shape = sum_axis(ctx, node, blob, blob_shape, P, R, Q, None, tag)
            else:
                more, blob, blob_shape = pool_axis(ctx, node, blob, blob_shape, P, R, Q, how, None, tag)
            layers.extend(more)
            logical_now[start:end] = [1] * (end - start)
        return blob, blob_shape, tuple(logical_now)

    if kind == "logsumexp":
        if not runs:
            return [identity(ctx, node.name, src, top)]
        m, m_shape, kept = reduce_runs(cur, cur_shape, "MAX", "max")
        more, m_full = view(ctx, node, m, m_shape, kept, "max_kept")
        layers.extend(more)
        more, m_b = broadcast_to(ctx, node, m_full, kept, shape, "max_bcast")
        layers.extend(more)
        shifted = fresh(ctx, node, "shifted")
        layers.extend(eltwise_nd(ctx, node, [cur, m_b], shifted, shape, ELTWISE_SUM, [1.0, -1.0], shifted))
        e = fresh(ctx, node, "exp")
        layers.append(ctx.layer(e, "Exp", [shifted], [e]))
        s, s_shape, _ = reduce_runs(e, shape, "sum", "sum")
        lg = fresh(ctx, node, "log")
        more, s_v = view(ctx, node, s, s_shape, kept, "sum_kept")
        layers.extend(more)
        layers.append(ctx.layer(lg, "Log", [s_v], [lg]))
        done = fresh(ctx, node, "lse")
        layers.extend(eltwise_nd(ctx, node, [lg, m_full], done, kept, ELTWISE_SUM, None, done))
        cur, cur_shape = done, kept
    else:
        how = {
            "sum": "sum",
            "l1": "sum",
            "l2": "sum",
            "sumsq": "sum",
            "mean": "AVE",
            "max": "MAX",
            "min": "MAX",
        }
        cur, cur_shape, _ = reduce_runs(cur, cur_shape, how[kind], kind)
        if kind == "min":
            elementwise("unneg", lambda o: power(ctx, o, cur, o, scale=-1.0))
        elif kind == "l2":
            elementwise("sqrt", lambda o: power(ctx, o, cur, o, power=0.5))
    if cur == src:  # nothing reduced and no element-wise step: a copy
        layers.append(identity(ctx, node.name, src, top))
    else:
        layers.append(reshape(ctx, fresh(ctx, node, "out"), cur, top, out_shape))
    return tidy(ctx, node, layers)


@register(
    "ReduceSum",
    since=1,
    layers=_LAYERS,
    notes="per run of reduced axes a ones InnerProduct (last axes), Slice + Eltwise SUM (<= 64 terms) or ones "
    "Convolution 1x1 (middle axes); sum order differs: |err| <= R 2^-24 sum|x|",
)
def reduce_sum(node, ctx):
    """ReduceSum over any axes -> ones InnerProduct / Convolution 1x1 per run of reduced axes."""
    return _reduce(node, ctx, "sum", input_since=13)


@register(
    "ReduceMean",
    since=1,
    layers=_LAYERS,
    notes="Pooling AVE per run of reduced axes ((R, 1) window on a (P, 1, R, Q) view; 4-D H,W: global Pooling); "
    "sum order differs, one division per run",
)
def reduce_mean(node, ctx):
    """ReduceMean over any axes -> Pooling AVE per run of reduced axes (global Pooling for 4-D H,W)."""
    return _reduce(node, ctx, "mean")


@register(
    "ReduceMax",
    since=1,
    layers=_LAYERS,
    notes="Pooling MAX per run of reduced axes; exact (NaN skipped, all -inf / NaN gives -FLT_MAX)",
)
def reduce_max(node, ctx):
    """ReduceMax over any axes -> Pooling MAX per run of reduced axes (exact)."""
    return _reduce(node, ctx, "max")


@register("ReduceMin", since=1, layers=_LAYERS, notes="-max(-x): Power -1, Pooling MAX, Power -1; exact")
def reduce_min(node, ctx):
    """ReduceMin over any axes -> -max(-x) with Pooling MAX (exact)."""
    return _reduce(node, ctx, "min")


@register(
    "ReduceL1",
    since=1,
    layers=_LAYERS,
    notes="AbsVal (exact) + the ReduceSum sums (|err| <= R 2^-24 sum|x|)",
)
def reduce_l1(node, ctx):
    """ReduceL1 -> AbsVal + sums (exact terms, reordered sum)."""
    return _reduce(node, ctx, "l1")


@register(
    "ReduceL2",
    since=1,
    layers=_LAYERS,
    notes="Power 2 + sums + Power 0.5 (squares and sqrt rounded like onnxruntime; sum order differs)",
)
def reduce_l2(node, ctx):
    """ReduceL2 -> Power 2, sums, Power 0.5."""
    return _reduce(node, ctx, "l2")


@register(
    "ReduceSumSquare",
    since=1,
    layers=_LAYERS,
    notes="Power 2 (rounded once, as onnxruntime) + the ReduceSum sums (|err| <= R 2^-24 sum x^2)",
)
def reduce_sum_square(node, ctx):
    """ReduceSumSquare -> Power 2 + sums."""
    return _reduce(node, ctx, "sumsq")


@register(
    "ReduceLogSumExp",
    since=1,
    layers=_LAYERS + ("Concat",),
    notes="m + log(sum(exp(x - m))) with m = Pooling MAX broadcast back by Concat copies (stable, like "
    "onnxruntime); exp/log a few ulp, sum order differs",
)
def reduce_log_sum_exp(node, ctx):
    """ReduceLogSumExp -> max-shifted exp / sum / log / + max."""
    return _reduce(node, ctx, "logsumexp")
