"""Caffe's blob shapes, layer by layer, as Caffe's own Reshape() methods compute them.

ncnn has no batch axis and a layer's parameters there are written per sample, so the converter needs every
Caffe blob's shape: to write explicit sizes (Reshape, Crop, Interp), to check that a layer keeps its samples
apart, and to give the ncnn runtime's results back in Caffe's layout. Each function below follows the
corresponding Caffe layer (pooling's rounding included); tests compare them with real Caffe's blob shapes.

`infer(layer_type, lp, bottoms, blobs)` returns the top shapes; `ShapeError` says why a layer cannot be
shaped (a message naming the field, the caller adds the layer).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

Shape = tuple[int, ...]


class ShapeError(Exception):
    """The layer cannot be shaped (bad or unsupported parameters for these inputs)."""


def canonical_axis(axis: int, rank: int, what: str = "axis") -> int:
    """Caffe's CanonicalAxisIndex: a negative axis counts from the end."""
    a = int(axis)
    if a < 0:
        a += rank
    if not 0 <= a < rank:
        raise ShapeError(f"{what} {axis} out of range for a {rank}-D blob")
    return a


def _same(lp, bottoms, blobs) -> list[Shape]:
    return [bottoms[0]]


def _input(lp, bottoms, blobs) -> list[Shape]:
    shapes = [tuple(int(d) for d in s.dim) for s in lp.input_param.shape]
    n = len(lp.top)
    if len(shapes) == 1:
        return shapes * n
    if len(shapes) != n:
        raise ShapeError(f"{len(shapes)} input_param shapes for {n} tops")
    return shapes


def _memory_data(lp, bottoms, blobs) -> list[Shape]:
    p = lp.memory_data_param
    shape = (int(p.batch_size), int(p.channels), int(p.height), int(p.width))
    return [shape] + [(int(p.batch_size),)] * (len(lp.top) - 1)


def _pair(repeated, h, w, has_h, has_w, default: int, what: str) -> tuple[int, int]:
    if has_h or has_w:
        if not (has_h and has_w):
            raise ShapeError(f"{what}_h and {what}_w must be given together")
        return int(h), int(w)
    vals = [int(v) for v in repeated]
    if not vals:
        return default, default
    if len(vals) == 1:
        return vals[0], vals[0]
    if len(vals) == 2:
        return vals[0], vals[1]
    raise ShapeError(f"{len(vals)} values of {what} (2-D convolution needs 1 or 2)")


def conv_geometry(lp) -> dict:
    """kernel, stride, pad, dilation as (h, w) pairs, group, num_output, bias_term of a (De)Convolution."""
    p = lp.convolution_param
    kernel = _pair(
        p.kernel_size, p.kernel_h, p.kernel_w, p.HasField("kernel_h"), p.HasField("kernel_w"), 0, "kernel"
    )
    stride = _pair(
        p.stride, p.stride_h, p.stride_w, p.HasField("stride_h"), p.HasField("stride_w"), 1, "stride"
    )
    pad = _pair(p.pad, p.pad_h, p.pad_w, p.HasField("pad_h"), p.HasField("pad_w"), 0, "pad")
    dil = [int(v) for v in p.dilation]
    if len(dil) > 2:
        raise ShapeError(f"{len(dil)} values of dilation (2-D convolution needs 1 or 2)")
    dilation = (dil[0], dil[-1]) if dil else (1, 1)
    if min(kernel) <= 0:
        raise ShapeError(f"kernel {kernel[0]}x{kernel[1]} (must be positive)")
    if min(stride) <= 0 or min(dilation) <= 0:
        raise ShapeError("stride and dilation must be positive")
    group = int(p.group) if p.HasField("group") else 1
    if lp.type in ("ConvolutionDepthwise", "DepthwiseConvolution"):
        group = int(p.num_output)
    return {
        "kernel": kernel,
        "stride": stride,
        "pad": pad,
        "dilation": dilation,
        "group": max(group, 1),
        "num_output": int(p.num_output),
        "bias_term": bool(p.bias_term),
        "axis": int(p.axis),
    }


def _conv(lp, bottoms, blobs) -> list[Shape]:
    g = conv_geometry(lp)
    out = []
    for s in bottoms:
        if len(s) != 4:
            raise ShapeError(f"{len(s)}-D input; ncnn's {lp.type} is 2-D (needs N, C, H, W)")
        if g["axis"] != 1:
            raise ShapeError(f"axis {g['axis']} (only the channel axis 1 is supported)")
        n, c, h, w = s
        if c % g["group"] or g["num_output"] % g["group"]:
            raise ShapeError(
                f"group {g['group']} does not divide {c} input / {g['num_output']} output channels"
            )
        size = []
        for x, k, st, p, d in zip((h, w), g["kernel"], g["stride"], g["pad"], g["dilation"], strict=True):
            ext = d * (k - 1) + 1
            if lp.type == "Deconvolution":
                size.append(st * (x - 1) + ext - 2 * p)
            else:
                size.append((x + 2 * p - ext) // st + 1)
        if min(size) <= 0:
            raise ShapeError(f"output size {size[0]}x{size[1]} from a {h}x{w} input")
        out.append((n, g["num_output"], size[0], size[1]))
    return out


def _inner_product(lp, bottoms, blobs) -> list[Shape]:
    p = lp.inner_product_param
    s = bottoms[0]
    axis = canonical_axis(p.axis, len(s))
    return [s[:axis] + (int(p.num_output),)]


def pool_geometry(lp, shape: Shape) -> dict:
    p = lp.pooling_param
    if len(shape) != 4:
        raise ShapeError(f"{len(shape)}-D input (Pooling needs N, C, H, W)")
    h, w = shape[2], shape[3]
    if p.global_pooling:
        return {
            "global": True,
            "kernel": (h, w),
            "stride": (1, 1),
            "pad": (0, 0),
            "out": (1, 1),
            "ceil": True,
        }
    if p.HasField("kernel_h") or p.HasField("kernel_w"):
        kernel = (int(p.kernel_h), int(p.kernel_w))
    elif p.HasField("kernel_size"):
        kernel = (int(p.kernel_size), int(p.kernel_size))
    else:
        raise ShapeError("no kernel_size (and not global_pooling)")
    pad = (int(p.pad_h), int(p.pad_w)) if (p.HasField("pad_h") or p.HasField("pad_w")) else (int(p.pad),) * 2
    if p.HasField("stride_h") or p.HasField("stride_w"):
        stride = (int(p.stride_h), int(p.stride_w))
    else:
        stride = (int(p.stride),) * 2
    if min(kernel) <= 0 or min(stride) <= 0:
        raise ShapeError("kernel and stride must be positive")
    if pad[0] >= kernel[0] or pad[1] >= kernel[1]:
        raise ShapeError(f"pad {pad} not smaller than kernel {kernel}")
    ceil = not (p.HasField("round_mode") and p.round_mode == 1) and p.ceil_mode
    out = []
    for x, k, st, pd in zip((h, w), kernel, stride, pad, strict=True):
        span = x + 2 * pd - k
        if span < 0:
            raise ShapeError(f"kernel {kernel} larger than the padded {h}x{w} input")
        o = (-(-span // st) if ceil else span // st) + 1
        if (pad[0] or pad[1]) and (o - 1) * st >= x + pd:
            o -= 1  # the last window must start inside the input or its left padding
        out.append(o)
    return {"global": False, "kernel": kernel, "stride": stride, "pad": pad, "out": tuple(out), "ceil": ceil}


def _pooling(lp, bottoms, blobs) -> list[Shape]:
    s = bottoms[0]
    g = pool_geometry(lp, s)
    return [(s[0], s[1]) + g["out"]] * len(lp.top)


def _eltwise(lp, bottoms, blobs) -> list[Shape]:
    if any(b != bottoms[0] for b in bottoms):
        raise ShapeError(f"inputs of different shapes {sorted(set(bottoms))}")
    return [bottoms[0]]


def _concat(lp, bottoms, blobs) -> list[Shape]:
    p = lp.concat_param
    rank = len(bottoms[0])
    axis = int(p.concat_dim) if p.HasField("concat_dim") else canonical_axis(p.axis, rank)
    out = list(bottoms[0])
    for b in bottoms[1:]:
        if len(b) != rank or any(b[i] != out[i] for i in range(rank) if i != axis):
            raise ShapeError(f"inputs {bottoms} do not agree outside axis {axis}")
        out[axis] += b[axis]
    return [tuple(out)]


def concat_axis(lp, rank: int) -> int:
    p = lp.concat_param
    return int(p.concat_dim) if p.HasField("concat_dim") else canonical_axis(p.axis, rank)


def slice_axis(lp, rank: int) -> int:
    p = lp.slice_param
    if p.HasField("axis") or not p.HasField("slice_dim"):
        return canonical_axis(p.axis, rank)
    return int(p.slice_dim)


def slice_sizes(lp, shape: Shape) -> list[int]:
    axis = slice_axis(lp, len(shape))
    dim = shape[axis]
    points = [int(v) for v in lp.slice_param.slice_point]
    n = len(lp.top)
    if points:
        if len(points) != n - 1:
            raise ShapeError(f"{len(points)} slice_point(s) for {n} tops")
        edges = [0, *points, dim]
        sizes = [b - a for a, b in zip(edges, edges[1:], strict=False)]
        if min(sizes) <= 0:
            raise ShapeError(f"slice points {points} do not cut {dim} into non-empty increasing pieces")
        return sizes
    if dim % n:
        raise ShapeError(f"{dim} not divisible into {n} equal slices")
    return [dim // n] * n


def _slice(lp, bottoms, blobs) -> list[Shape]:
    s = bottoms[0]
    axis = slice_axis(lp, len(s))
    return [s[:axis] + (k,) + s[axis + 1 :] for k in slice_sizes(lp, s)]


def _split(lp, bottoms, blobs) -> list[Shape]:
    return [bottoms[0]] * len(lp.top)


def _reshape(lp, bottoms, blobs) -> list[Shape]:
    s = bottoms[0]
    p = lp.reshape_param
    dims = [int(d) for d in p.shape.dim]
    rank = len(s)
    start = int(p.axis)
    start = start + rank + 1 if start < 0 else start
    if not 0 <= start <= rank:
        raise ShapeError(f"axis {p.axis} out of range")
    num_axes = int(p.num_axes)
    end = rank if num_axes == -1 else start + num_axes
    if num_axes < -1 or end > rank:
        raise ShapeError(f"num_axes {num_axes} out of range")
    new = []
    infer = None
    for i, d in enumerate(dims):
        if d == 0:
            if start + i >= rank:
                raise ShapeError(f"dim {i} copies axis {start + i} that the input does not have")
            new.append(s[start + i])
        elif d == -1:
            if infer is not None:
                raise ShapeError("more than one -1 dim")
            infer = i
            new.append(1)
        elif d < -1:
            raise ShapeError(f"dim {d}")
        else:
            new.append(d)
    out = list(s[:start]) + new + list(s[end:])
    total = math.prod(s)
    known = math.prod(out)
    if infer is not None:
        if known == 0 or total % known:
            raise ShapeError(f"cannot infer a dim: {total} elements into {out}")
        out[start + infer] = total // known
    if math.prod(out) != total:
        raise ShapeError(f"{s} ({total} elements) cannot become {tuple(out)}")
    return [tuple(out)]


def _flatten(lp, bottoms, blobs) -> list[Shape]:
    s = bottoms[0]
    p = lp.flatten_param
    a = canonical_axis(p.axis, len(s))
    e = canonical_axis(p.end_axis, len(s), "end_axis")
    if e < a:
        raise ShapeError(f"end_axis {p.end_axis} before axis {p.axis}")
    return [s[:a] + (math.prod(s[a : e + 1]),) + s[e + 1 :]]


def _tile(lp, bottoms, blobs) -> list[Shape]:
    s = bottoms[0]
    a = canonical_axis(lp.tile_param.axis, len(s))
    if lp.tile_param.tiles <= 0:
        raise ShapeError("tiles must be positive")
    out = list(s)
    out[a] *= int(lp.tile_param.tiles)
    return [tuple(out)]


def crop_offsets(lp, shape: Shape, ref: Shape) -> tuple[int, list[int]]:
    """(start axis, offsets for every axis from it) of a Crop layer."""
    p = lp.crop_param
    a = canonical_axis(p.axis, len(shape))
    n = len(shape) - a
    offs = [int(v) for v in p.offset]
    if not offs:
        offs = [0] * n
    elif len(offs) == 1:
        offs = offs * n
    elif len(offs) != n:
        raise ShapeError(f"{len(offs)} offsets for {n} cropped axes")
    for i, o in enumerate(offs):
        if o + ref[a + i] > shape[a + i]:
            raise ShapeError(f"crop of axis {a + i}: offset {o} + size {ref[a + i]} > {shape[a + i]}")
    return a, offs


def _crop(lp, bottoms, blobs) -> list[Shape]:
    s, ref = bottoms
    if len(ref) != len(s):
        raise ShapeError(f"reference blob of rank {len(ref)} for a rank-{len(s)} input")
    a, _ = crop_offsets(lp, s, ref)
    return [s[:a] + ref[a:]]


def _argmax(lp, bottoms, blobs) -> list[Shape]:
    s = bottoms[0]
    p = lp.argmax_param
    k = int(p.top_k)
    if p.HasField("axis"):
        a = canonical_axis(p.axis, len(s))
        out = list(s)
        out[a] = k
        return [tuple(out)]
    if k > math.prod(s[1:]):
        raise ShapeError(f"top_k {k} larger than the {math.prod(s[1:])} values per sample")
    return [(s[0], 2 if p.out_max_val else 1, k)]


def _reduction(lp, bottoms, blobs) -> list[Shape]:
    s = bottoms[0]
    a = canonical_axis(lp.reduction_param.axis, len(s))
    return [s[:a]]


def permute_order(lp, rank: int) -> list[int]:
    order: list[int] = []
    for v in lp.permute_param.order:
        v = int(v)
        if not 0 <= v < rank or v in order:
            raise ShapeError(
                f"permute order {list(lp.permute_param.order)} is not a permutation of {rank} axes"
            )
        order.append(v)
    order += [i for i in range(rank) if i not in order]
    return order


def _permute(lp, bottoms, blobs) -> list[Shape]:
    s = bottoms[0]
    return [tuple(s[i] for i in permute_order(lp, len(s)))]


def prior_box_ratios(lp) -> list[float]:
    """SSD's aspect ratio list: 1, then each given ratio not already present (within 1e-6), and its
    inverse when flip."""
    p = lp.prior_box_param
    ratios = [1.0]
    for ar in p.aspect_ratio:
        if any(abs(ar - r) < 1e-6 for r in ratios):
            continue
        ratios.append(float(ar))
        if p.flip:
            ratios.append(1.0 / float(ar))
    return ratios


def _prior_box(lp, bottoms, blobs) -> list[Shape]:
    s = bottoms[0]
    p = lp.prior_box_param
    if len(s) != 4:
        raise ShapeError("feature map must be N, C, H, W")
    if not p.min_size:
        raise ShapeError("no min_size")
    n = len(prior_box_ratios(lp)) * len(p.min_size) + len(p.max_size)
    return [(1, 2, s[2] * s[3] * n * 4)]


def interp_size(lp, shape: Shape) -> tuple[int, int]:
    """Output H, W of PSPNet's Interp layer."""
    p = lp.interp_param
    if p.pad_beg or p.pad_end:
        raise ShapeError("pad_beg / pad_end (cropping inside Interp) are not supported")
    h, w = shape[2], shape[3]
    zoom, shrink = int(p.zoom_factor), int(p.shrink_factor)
    has_zoom, has_shrink = p.HasField("zoom_factor"), p.HasField("shrink_factor")
    if has_zoom and has_shrink:
        h, w = (h - 1) // shrink + 1, (w - 1) // shrink + 1
        h, w = h + (h - 1) * (zoom - 1), w + (w - 1) * (zoom - 1)
    elif has_zoom:
        h, w = h + (h - 1) * (zoom - 1), w + (w - 1) * (zoom - 1)
    elif has_shrink:
        h, w = (h - 1) // shrink + 1, (w - 1) // shrink + 1
    elif p.height and p.width:
        h, w = int(p.height), int(p.width)
    elif len(lp.bottom) != 2:
        raise ShapeError("no zoom_factor, shrink_factor or height/width")
    if h <= 0 or w <= 0:
        raise ShapeError(f"output size {h}x{w}")
    return h, w


def _interp(lp, bottoms, blobs) -> list[Shape]:
    s = bottoms[0]
    if len(s) != 4:
        raise ShapeError("Interp needs N, C, H, W")
    if len(bottoms) == 2:
        h, w = bottoms[1][2], bottoms[1][3]
    else:
        h, w = interp_size(lp, s)
    return [(s[0], s[1], h, w)]


def upsample_size(lp, shape: Shape) -> tuple[int, int]:
    p = lp.upsample_param
    if p.dims_num != 4:
        raise ShapeError(f"dims_num {p.dims_num} (only the 4-D, H and W, upsampling)")
    if p.HasField("upsample_h") or p.HasField("upsample_w"):
        return int(p.upsample_h), int(p.upsample_w)
    if not p.HasField("scale") and not (p.HasField("scale_h") and p.HasField("scale_w")):
        raise ShapeError("no scale (the forks' Upsample layers disagree on its default)")
    sh = int(p.scale_h) if p.HasField("scale_h") else int(p.scale)
    sw = int(p.scale_w) if p.HasField("scale_w") else int(p.scale)
    return shape[2] * sh, shape[3] * sw


def _upsample(lp, bottoms, blobs) -> list[Shape]:
    s = bottoms[0]
    if len(s) != 4:
        raise ShapeError("Upsample needs N, C, H, W")
    h, w = upsample_size(lp, s)
    return [(s[0], s[1], h, w)]


def _detection_output(lp, bottoms, blobs) -> list[Shape]:
    return [(1, 1, -1, 7)]  # the number of detections is known only when it runs


def _parameter(lp, bottoms, blobs) -> list[Shape]:
    return [tuple(int(d) for d in lp.parameter_param.shape.dim)]


def _embed(lp, bottoms, blobs) -> list[Shape]:
    return [bottoms[0] + (int(lp.embed_param.num_output),)]


def _silence(lp, bottoms, blobs) -> list[Shape]:
    return []


_INFER: dict[str, Callable] = {
    "Input": _input,
    "MemoryData": _memory_data,
    "Convolution": _conv,
    "ConvolutionDepthwise": _conv,
    "DepthwiseConvolution": _conv,
    "Deconvolution": _conv,
    "InnerProduct": _inner_product,
    "Pooling": _pooling,
    "Eltwise": _eltwise,
    "Concat": _concat,
    "Slice": _slice,
    "Split": _split,
    "Reshape": _reshape,
    "Flatten": _flatten,
    "Tile": _tile,
    "Crop": _crop,
    "ArgMax": _argmax,
    "Reduction": _reduction,
    "Permute": _permute,
    "PriorBox": _prior_box,
    "DetectionOutput": _detection_output,
    "Interp": _interp,
    "Upsample": _upsample,
    "Parameter": _parameter,
    "Embed": _embed,
    "Silence": _silence,
}
for _t in (
    "ReLU", "PReLU", "ELU", "Sigmoid", "TanH", "AbsVal", "BNLL", "Exp", "Log", "Power", "Threshold",
    "Dropout", "Clip", "ReLU6", "Swish", "BatchNorm", "Scale", "Bias", "Softmax", "MVN", "LRN",
    "Normalize", "ShuffleChannel",
):  # fmt: skip
    _INFER[_t] = _same


def infer(lp, bottoms: Sequence[Shape], blobs) -> list[Shape]:
    """Top shapes of layer `lp` (a LayerParameter of the fork superset) given its bottom shapes."""
    fn = _INFER.get(lp.type)
    if fn is None:
        raise ShapeError(f"no shape rule for layer type {lp.type}")
    return [tuple(int(d) for d in s) for s in fn(lp, [tuple(b) for b in bottoms], blobs)]
