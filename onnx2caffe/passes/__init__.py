"""Graph passes run on the ONNX graph before mapping, in this fixed order.

Each pass is a module with NAME, DESCRIPTION and `run(graph: OnnxGraph) -> bool` (True when it changed the
graph; the caller then refreshes shapes). A pass only makes changes that keep the graph's outputs exactly
equal (it never trades accuracy for a simpler graph), with one stated exception: demote_float64 computes
float32 -> float64 -> float32 islands in float32 (each op and constant within 2^-24 relative; see its module).
"""

from __future__ import annotations

from . import (
    demote_float64,
    eliminate_identity,
    fold_constants,
    fold_expand_into_eltwise,
    fold_pad_into_conv_pool,
    fold_transpose_into_gemm,
    fold_transpose_into_matmul,
    fuse_channel_shuffle,
    fuse_gelu,
    fuse_group_norm,
    fuse_l2_normalize,
    fuse_layer_norm,
    fuse_matmul_add,
    fuse_pixel_shuffle,
    fuse_threshold,
    fuse_transposed_layer_norm,
    remove_dead_nodes,
    remove_softplus_threshold,
    sink_channels_last,
)

PASSES = (
    fold_constants,
    eliminate_identity,
    demote_float64,
    remove_softplus_threshold,
    fuse_gelu,
    fuse_layer_norm,
    fuse_transposed_layer_norm,
    fuse_group_norm,
    fuse_matmul_add,
    sink_channels_last,
    fold_transpose_into_gemm,
    fold_transpose_into_matmul,
    fold_pad_into_conv_pool,
    fuse_l2_normalize,
    fold_expand_into_eltwise,
    fuse_threshold,
    fuse_channel_shuffle,
    fuse_pixel_shuffle,
    remove_dead_nodes,
)

PASS_NAMES = tuple(p.NAME for p in PASSES)


def run_passes(graph, names=None) -> list[str]:
    """Run the passes (all, or those named, always in the fixed order) on `graph` (an OnnxGraph), in place.
    Returns the names of the passes that changed something."""
    if names is not None:
        unknown = set(names) - set(PASS_NAMES)
        if unknown:
            raise ValueError(
                f"unknown pass(es): {', '.join(sorted(unknown))}; known: {', '.join(PASS_NAMES)}"
            )
    changed = []
    for p in PASSES:
        if names is not None and p.NAME not in names:
            continue
        if p.run(graph):
            graph.refresh()
            changed.append(p.NAME)
    return changed
