"""The exact building blocks shared by the composition mappers, in one import (no mapper is registered here):

- _layers: single layers and views (power, identity, eltwise / eltwise_nd, reshape / view, slice_range,
  silence, scale_bias, exact clamps, tidy);
- _permute: permute - any permutation of a static-shape blob as adjacent block swaps (Slice + Concat);
- _broadcast: repeat_axis / repeat_kept / broadcast_to (Concat copies), ones_like / filled_like,
  constant_blob (exact constant tensors from one shared exact 1);
- _reduce_axis: sum_axis / pool_axis over the middle axis of a (P, R, Q) view.

The compositions keep the batch: every intermediate blob has the ONNX tensor's axis 0 as its axis 0 whenever the
op leaves that axis in place (views are (N, ...); an op that moves or reduces axis 0 gets a leading unit axis
instead), so no data moves into or out of the batch axis, and views that keep axis 0 write it `dim: 0`.

Every helper returns `caffe_net.Layer`s of types that BVLC Caffe 1.0 and OpenCV's Caffe importer both register,
and says in its docstring why it is exact and what it costs.
"""

from __future__ import annotations

from ._broadcast import (
    broadcast_cost,
    broadcast_shape,
    broadcast_steps,
    broadcast_to,
    constant_blob,
    filled_like,
    ones_like,
    ones_scalar,
    repeat_axis,
    repeat_cost,
    repeat_kept,
)
from ._layers import (
    ELTWISE_MAX,
    ELTWISE_PROD,
    ELTWISE_SUM,
    clamp,
    constant_like,
    eltwise,
    eltwise_nd,
    fresh,
    identity,
    max_with,
    min_with,
    norm_axis,
    power,
    reshape,
    scale_bias,
    silence,
    slice_range,
    tidy,
    view,
)
from ._permute import MAX_PIECES, permute
from ._reduce_axis import SUM_SLICES, pool_axis, sum_axis

__all__ = [
    "ELTWISE_MAX",
    "ELTWISE_PROD",
    "ELTWISE_SUM",
    "MAX_PIECES",
    "SUM_SLICES",
    "broadcast_cost",
    "broadcast_shape",
    "broadcast_steps",
    "broadcast_to",
    "clamp",
    "constant_blob",
    "constant_like",
    "eltwise",
    "eltwise_nd",
    "filled_like",
    "fresh",
    "identity",
    "max_with",
    "min_with",
    "norm_axis",
    "ones_like",
    "ones_scalar",
    "permute",
    "pool_axis",
    "power",
    "repeat_axis",
    "repeat_cost",
    "repeat_kept",
    "reshape",
    "scale_bias",
    "silence",
    "slice_range",
    "sum_axis",
    "tidy",
    "view",
]
