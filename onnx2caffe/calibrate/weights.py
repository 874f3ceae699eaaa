"""Weight scales of the quantisable Caffe layers, as the reference tools compute them.

Granularity (``per_channel=True``, the CLI's ``--group 1``): one scale per output channel for a
Convolution with group 1 and for InnerProduct; one per group for a grouped or depthwise Convolution
(caffe2ncnn turns every Caffe Convolution with group > 1 into ncnn's ConvolutionDepthWise, whose int8
path takes one weight scale per group, as ncnn2table writes). ``per_channel=False`` (``--group 0``):
one scale for the whole layer.

Rules by method family:

* ncnn (kl, minmax, percentile): ``127 / max|w|`` in float32; ``31 / max|w|`` (6 bits, ncnn's int8
  Winograd path) for a group-1 Convolution with a 3x3 kernel, stride 1 and dilation 1. A channel whose
  max|w| is 0 gets 1.0 (ncnn2table would write inf; 1.0 is ncnn's own fallback for all-zero Embed/MHA
  weights, and any scale quantises zeros exactly).
* aciq: as ncnn2table method=aciq, the range is clipped too: ``127 / aciq_clip(max|w|, n, 8)``, and
  ``31 / aciq_clip(max|w|, n, 6)`` under the 3x3 rule above, n = the weights per channel (per group);
  0 -> 1.0 as above.
* legacy (kl-legacy): as the Caffe-era tool, float64 ``127 / max|w|``; ``31 / max|w|`` for a Convolution
  whose kernel_size[0] is 3, stride[0] is 1 or unset, and group != num_output (dilation not checked);
  a channel with max|w| < 1e-4 gets 0 (the tool's value).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from onnx2caffe.calibrate.methods import aciq_clip

QUANT_LAYER_TYPES = ("Convolution", "ConvolutionDepthwise", "InnerProduct")
ZERO_WEIGHT_SCALE = 1.0  # ncnn families, for an all-zero channel
LEGACY_ZERO_LIMIT = 1e-4  # legacy family: max|w| below this -> scale 0

METHOD_FAMILY = {"kl": "ncnn", "minmax": "ncnn", "percentile": "ncnn", "aciq": "aciq", "kl-legacy": "legacy"}


@dataclass
class ConvGeometry:
    """What the weight rules need to know about a layer."""

    type: str
    num_output: int
    group: int = 1
    kernel: tuple[int, int] = (1, 1)
    stride: tuple[int, int] = (1, 1)
    dilation: tuple[int, int] = (1, 1)
    # the legacy tool's view: kernel_size[0], stride[0] (None when unset)
    legacy_kernel0: int | None = None
    legacy_stride0: int | None = None
    transpose: bool = False  # InnerProduct weight stored as (K, N)


def _pair(values, h: int, w: int, default: int) -> tuple[int, int]:
    if h or w:
        return int(h or default), int(w or default)
    vals = list(values)
    if not vals:
        return default, default
    return int(vals[0]), int(vals[1] if len(vals) > 1 else vals[0])


def geometry(layer_proto) -> ConvGeometry:
    """ConvGeometry from a caffe_pb2.LayerParameter of a quantisable layer."""
    if layer_proto.type == "InnerProduct":
        p = layer_proto.inner_product_param
        return ConvGeometry("InnerProduct", int(p.num_output), transpose=bool(p.transpose))
    p = layer_proto.convolution_param
    return ConvGeometry(
        layer_proto.type,
        int(p.num_output),
        group=int(p.group) if p.HasField("group") else 1,
        kernel=_pair(p.kernel_size, p.kernel_h, p.kernel_w, 1),
        stride=_pair(p.stride, p.stride_h, p.stride_w, 1),
        dilation=_pair(p.dilation, 0, 0, 1),
        legacy_kernel0=int(p.kernel_size[0]) if len(p.kernel_size) else None,
        legacy_stride0=int(p.stride[0]) if len(p.stride) else None,
    )


def is_depthwise_like(g: ConvGeometry) -> bool:
    """A Convolution that ncnn runs as ConvolutionDepthWise (group > 1), or the fork depthwise type."""
    return g.type != "InnerProduct" and (g.group > 1 or g.type == "ConvolutionDepthwise")


def six_bit(g: ConvGeometry, family: str) -> bool:
    """Whether the family's 6-bit rule (31 instead of 127) applies to this layer."""
    if family == "legacy":
        return (
            g.type == "Convolution"
            and g.legacy_kernel0 == 3
            and (g.legacy_stride0 is None or g.legacy_stride0 == 1)
            and g.group != g.num_output
        )
    return (
        g.type == "Convolution"
        and g.group == 1
        and g.kernel == (3, 3)
        and g.stride == (1, 1)
        and g.dilation == (1, 1)
    )


def weight_rows(weight: np.ndarray, g: ConvGeometry, per_channel: bool) -> np.ndarray:
    """The weights as a 2-D (units, values) float32 array: one row per scale to compute."""
    w = np.asarray(weight, dtype=np.float32)
    if g.type == "InnerProduct":
        w = w.reshape(-1, w.shape[-1]) if w.ndim > 2 else w
        w = w.T if g.transpose else w
        w = w.reshape(g.num_output, -1) if g.num_output else w.reshape(w.shape[0], -1)
    else:
        w = w.reshape(w.shape[0], -1)
    if not per_channel:
        return w.reshape(1, -1)
    if is_depthwise_like(g):
        groups = g.group if g.group > 1 else w.shape[0]
        return w.reshape(groups, -1)
    return w


def weight_scales(weight: np.ndarray, g: ConvGeometry, family: str, per_channel: bool = True) -> list[float]:
    """The scales of one layer's weight blob (see the module docstring for the rules)."""
    rows = weight_rows(weight, g, per_channel)
    absmax = np.max(np.abs(rows), axis=1) if rows.size else np.zeros(rows.shape[0], np.float32)
    bits6 = six_bit(g, family)
    if family == "legacy":
        q = 31.0 if bits6 else 127.0
        return [0.0 if float(a) < LEGACY_ZERO_LIMIT else q / float(a) for a in absmax]
    q = np.float32(31 if bits6 else 127)
    out = []
    for a in absmax:
        if a == 0:
            out.append(ZERO_WEIGHT_SCALE)
            continue
        if family == "aciq":
            thr = np.float32(aciq_clip(float(a), rows.shape[1], 6 if bits6 else 8))
        else:
            thr = np.float32(a)
        out.append(float(q / thr))
    return out
