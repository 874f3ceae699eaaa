"""Caffe building blocks that move or resample values along one axis (used by Resize, Pad, Slice, DepthToSpace).

Every block works on a blob of any rank with a static shape and returns (layers, result blob, new shape); `finish`
then gives the result the ONNX output's blob name.
- `view`: a Reshape (Caffe and OpenCV share the data, no copy);
- `gather`: output[o] = input[index[o]] along an axis, or a constant: one Slice into the runs the output needs and
  one Concat of them in order (a run may be listed twice). Copies only, bit-exact for any input; constants come
  from a Power(scale=0, shift=value) of a one-element-thick slice (exact in Caffe, 0 * x + value in OpenCV, so
  finite inputs there);
- `pick`: output[o] = input[start + stride * o] along one or two spatial axes: a crop (Slice) to exactly
  (count - 1) * stride + 1 elements, then AVE Pooling with kernel 1 and that stride. Each output is one input
  divided by a window of 1, so the copy is bit-exact (inf and NaN too); the crop keeps Caffe's and OpenCV's output
  sizes equal (both round up when the last window would start beyond the input);
- `flip`: reverse an axis (a gather with descending indices);
- `repeat`: each slice along an axis repeated k times (nearest upsampling): one Concat of k references to a
  (P, n, 1, R) view, copies of whole rows;
- `matrix`: output = M @ input along an axis: InnerProduct(axis=last) on the last axis, else a 1x1 Convolution on
  a (P, D, R, 1) view whose channel axis is the resampled one.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from ._compose import fresh, identity, reshape, silence

Shape = tuple[int, ...]


def prod(values) -> int:
    return int(math.prod(values))


def view(ctx, node, bottom: str, shape: Sequence[int], new_shape: Sequence[int], tag: str = "view"):
    """bottom reshaped to new_shape (no layer when equal). -> (layers, blob)."""
    if tuple(shape) == tuple(new_shape):
        return [], bottom
    top = fresh(ctx, node, tag)
    return [reshape(ctx, top, bottom, top, new_shape)], top


def finish(ctx, node, layers: list, blob: str, top: str) -> list:
    """Make `top` hold the result `blob`: rename the output of the layer that produced it (when no later layer
    reads it), else append an exact copy (Power)."""
    if blob == top:
        return layers
    for k in range(len(layers) - 1, -1, -1):
        if blob in layers[k].top:
            if any(blob in later.bottom for later in layers[k + 1 :]):
                break
            tops = layers[k].proto.top
            tops[list(tops).index(blob)] = top
            return layers
    return layers + [identity(ctx, fresh(ctx, node, "copy"), blob, top)]


# ------------------------------------------------------------------------------------------ gather
def runs(index: Sequence[int | None]) -> list[tuple[int, int] | None]:
    """index split into maximal ascending-contiguous runs (start, end); None for a constant element."""
    out: list[tuple[int, int] | None] = []
    for i in index:
        if i is None:
            out.append(None)
        elif out and out[-1] is not None and out[-1][1] == i:
            out[-1] = (out[-1][0], i + 1)
        else:
            out.append((i, i + 1))
    return out


def gather(
    ctx, node, bottom: str, shape: Sequence[int], axis: int, index: Sequence[int | None], value: float = 0.0
):
    """output[..., o, ...] = bottom[..., index[o], ...] along `axis` (None: the constant `value`).
    -> (layers, top, new_shape). Copies only (see the module docstring)."""
    n = shape[axis]
    new_shape = tuple(shape[:axis]) + (len(index),) + tuple(shape[axis + 1 :])
    pieces = runs(index)
    if pieces == [(0, n)]:
        return [], bottom, new_shape
    const = any(p is None for p in pieces)
    cuts = {0, n}
    for p in pieces:
        if p is not None:
            cuts.update(p)
    if const:
        cuts.add(1)  # a one-thick slice to make the constant from
    cuts = sorted(cuts)
    layers: list = []
    if len(cuts) > 2:
        atoms = [fresh(ctx, node, f"ax{axis}_{a}_{b}") for a, b in zip(cuts, cuts[1:], strict=False)]
        layers.append(
            ctx.layer(
                fresh(ctx, node, f"cut{axis}"),
                "Slice",
                [bottom],
                atoms,
                slice_param={"axis": axis, "slice_point": cuts[1:-1]},
            )
        )
    else:
        atoms = [bottom]
    atom_at = {a: blob for a, blob in zip(cuts, atoms, strict=False)}
    bottoms: list[str] = []
    const_blob = None
    for p in pieces:
        if p is None:
            if const_blob is None:
                const_blob = fresh(ctx, node, f"const{axis}")
                p_param = {"scale": 0.0}
                if value != 0.0:
                    p_param["shift"] = float(value)
                layers.append(ctx.layer(const_blob, "Power", [atom_at[0]], [const_blob], power_param=p_param))
            bottoms.append(const_blob)
            continue
        a = p[0]
        while a < p[1]:
            bottoms.append(atom_at[a])
            a = cuts[cuts.index(a) + 1]
    used = set(bottoms) | ({atom_at[0]} if const_blob else set())
    unused = [b for b in atoms if b not in used and b != bottom]
    if len(bottoms) == 1:
        blob = bottoms[0]
    else:
        blob = fresh(ctx, node, f"gather{axis}")
        layers.append(ctx.layer(blob, "Concat", bottoms, [blob], concat_param={"axis": axis}))
    return layers + silence(ctx, node, unused), blob, new_shape


def flip(ctx, node, bottom: str, shape: Sequence[int], axis: int):
    """bottom reversed along `axis` (one Slice into single entries, one Concat in reverse order)."""
    return gather(ctx, node, bottom, shape, axis, list(range(shape[axis] - 1, -1, -1)))


def crop(ctx, node, bottom: str, shape: Sequence[int], axis: int, start: int, end: int):
    """bottom[start:end] along axis. -> (layers, blob, new_shape)."""
    return gather(ctx, node, bottom, shape, axis, list(range(start, end)))


def replicate_pad(ctx, node, bottom: str, shape: Sequence[int], axis: int, before: int, after: int):
    """bottom with its first slice repeated `before` times in front and its last `after` times behind."""
    n = shape[axis]
    index = [0] * before + list(range(n)) + [n - 1] * after
    return gather(ctx, node, bottom, shape, axis, index)


# ------------------------------------------------------------------------------------------ pick
def pick(ctx, node, bottom: str, shape: Sequence[int], picks: dict[int, tuple[int, int, int]]):
    """output = bottom[..., start::stride][:count] on each picked axis {axis: (start, stride, count)} of a 4-D blob
    (axes 2 and 3: one pooling) or any axis of any blob (through a (P, 1, D, R) view). -> (layers, top, shape)."""
    shape = tuple(shape)
    layers: list = []
    cur, cur_shape = bottom, shape
    spatial = len(shape) == 4 and set(picks) <= {2, 3}
    if not spatial:  # one axis at a time on a view with the axis at position 2
        for axis, p in sorted(picks.items()):
            out_shape = cur_shape[:axis] + (p[2],) + cur_shape[axis + 1 :]
            v = (prod(cur_shape[:axis]), 1, cur_shape[axis], prod(cur_shape[axis + 1 :]))
            more, blob = view(ctx, node, cur, cur_shape, v)
            more2, blob, vshape = pick(ctx, node, blob, v, {2: p})
            more3, blob = view(ctx, node, blob, vshape, out_shape, "unview")
            layers += more + more2 + more3
            cur, cur_shape = blob, out_shape
        return layers, cur, cur_shape
    strides = [1, 1]
    for axis in (2, 3):
        if axis not in picks:
            continue
        start, stride, count = picks[axis]
        end = start + (count - 1) * stride + 1
        if (start, end) != (0, cur_shape[axis]):
            more, cur, cur_shape = crop(ctx, node, cur, cur_shape, axis, start, end)
            layers += more
        strides[axis - 2] = stride
    if strides != [1, 1]:
        out = fresh(ctx, node, "pick")
        p = {"pool": "AVE", "kernel_size": 1}
        if strides[0] == strides[1]:
            p["stride"] = strides[0]
        else:
            p["stride_h"], p["stride_w"] = strides
        layers.append(ctx.layer(out, "Pooling", [cur], [out], pooling_param=p))
        cur = out
        cur_shape = cur_shape[:2] + tuple((cur_shape[2 + i] - 1) // strides[i] + 1 for i in range(2))
    return layers, cur, cur_shape


def repeat(ctx, node, bottom: str, shape: Sequence[int], axis: int, times: int):
    """Each slice along `axis` repeated `times` times in place (nearest upsampling by an integer factor): a Concat
    of `times` references to a (P, n, 1, R) view along its third axis, copies of whole rows."""
    shape = tuple(shape)
    n = shape[axis]
    v = (prod(shape[:axis]), n, 1, prod(shape[axis + 1 :]))
    out_shape = shape[:axis] + (n * times,) + shape[axis + 1 :]
    layers, blob = view(ctx, node, bottom, shape, v)
    top = fresh(ctx, node, f"repeat{axis}")
    layers.append(ctx.layer(top, "Concat", [blob] * times, [top], concat_param={"axis": 2}))
    more, blob = view(ctx, node, top, (v[0], n, times, v[3]), out_shape, "unview")
    return layers + more, blob, out_shape


# ------------------------------------------------------------------------------------------ matrix
def matrix(ctx, node, bottom: str, shape: Sequence[int], axis: int, m: np.ndarray):
    """output = m @ bottom along `axis` (m: (n_out, n_in)). -> (layers, top, new_shape).
    Cost: n_in multiply-adds per output element."""
    shape = tuple(shape)
    n_out, n_in = m.shape
    assert shape[axis] == n_in
    out_shape = shape[:axis] + (n_out,) + shape[axis + 1 :]
    w = np.ascontiguousarray(m, dtype=np.float32)
    if axis == len(shape) - 1:
        out = fresh(ctx, node, f"matrix{axis}")
        param = {"num_output": n_out, "bias_term": False, "axis": axis}
        return (
            [ctx.layer(out, "InnerProduct", [bottom], [out], blobs=[w], inner_product_param=param)],
            out,
            out_shape,
        )
    v = (
        (prod(shape[:axis]), n_in, prod(shape[axis + 1 :]), 1)
        if not (len(shape) == 4 and axis == 1)
        else shape
    )
    layers, blob = view(ctx, node, bottom, shape, v)
    conv = fresh(ctx, node, f"matrix{axis}")
    param = {"num_output": n_out, "bias_term": False, "kernel_size": [1]}
    layers.append(
        ctx.layer(
            conv, "Convolution", [blob], [conv], blobs=[w.reshape(n_out, n_in, 1, 1)], convolution_param=param
        )
    )
    vout = (v[0], n_out, v[2], v[3])
    more, blob = view(ctx, node, conv, vout, out_shape, "unview")
    return layers + more, blob, out_shape
