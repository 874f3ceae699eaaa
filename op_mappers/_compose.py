"""The exact building blocks shared by the composition mappers, in one import (no mapper is registered here):

- _layers: single layers and views (power, identity, eltwise / eltwise_nd, reshape / view, slice_range,
  silence, scale_bias, exact clamps, tidy);
- _permute: permute - any permutation of a static-shape blob as adjacent block swaps (Slice + Concat);
- _broadcast: repeat_axis / broadcast_to (Concat copies), ones_like / filled_like, constant_blob (exact constant
  tensors from one shared exact 1);
- _reduce_axis: sum_axis / pool_axis over the middle axis of a (P, R, Q) view.

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
    "reshape",
    "scale_bias",
    "silence",
    "slice_range",
    "sum_axis",
    "tidy",
    "view",
]
