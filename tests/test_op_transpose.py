"""Transpose (any permutation, planned as adjacent block swaps) and the channel shuffle fusion, on real Caffe and
OpenCV.

Both are pure data movement, so the Caffe outputs must equal onnxruntime's bit for bit: max_rel 0 on random data,
and bitwise equality (inf, NaN, -0.0 included) on special values.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from onnx import helper
from onnx2caffe.op_mappers import _permute
from onnx_testing import check_conversion, make_model, runtimes_here

from onnx2caffe.convert import convert
from onnx2caffe.errors import ConversionError

EXACT = 0.0  # copies only: any difference is a bug
COS = 0.99999


def _model(shape, perm, name="t"):
    attrs = {} if perm is None else {"perm": list(perm)}
    return make_model(
        [helper.make_node("Transpose", ["x"], ["y"], name=name, **attrs)],
        inputs={"x": shape},
        outputs={"y": None},
    )


@pytest.mark.parametrize(
    "shape, perm",
    [
        ((1, 2, 6, 3, 4), [0, 2, 1, 3, 4]),  # ShuffleNet's transpose on its own (5-D blobs)
        ((2, 3, 4, 5), [0, 2, 3, 1]),  # NCHW -> NHWC: swap of C with the run (H, W)
        ((2, 3, 4, 5), [0, 3, 1, 2]),  # NHWC -> NCHW
        ((3, 4, 5), [1, 0, 2]),  # leading axes swapped
        ((6, 7), [1, 0]),  # matrix transpose (perm attribute)
        ((1, 8, 1, 5), [0, 2, 1, 3]),  # only a unit axis moves: plain Reshape
        ((2, 64, 3, 3), [0, 3, 2, 1]),  # MTCNN RNet/ONet before Flatten + Gemm: two swaps
        (
            (1, 2, 100, 100),
            [0, 1, 3, 2],
        ),  # attention map (YOLO11 / YOLOv10): 100 pieces, was refused (limit 64)
        ((1, 2, 32, 100), [0, 1, 3, 2]),  # q^T of the same attention
        ((1, 3, 85, 20, 20), [0, 1, 3, 4, 2]),  # YOLO head (N, anchors, 5 + classes, H, W) -> (..., H, W, 85)
        ((1, 4, 16, 21), [0, 2, 1, 3]),  # DFL (N, 4, 16, anchors) -> (N, 16, 4, anchors)
        ((1, 3, 2, 2, 5, 6), [0, 1, 4, 2, 5, 3]),  # pixel shuffle (N, C, r, r, H, W) -> (N, C, H, r, W, r)
        ((1, 3, 5, 2, 6, 2), [0, 1, 3, 5, 2, 4]),  # its inverse (space to depth)
        ((2, 3, 2, 4, 2, 3), [5, 3, 1, 4, 0, 2]),  # a 6-D permutation touching every axis
        ((3, 1, 4, 1, 5), [4, 1, 2, 0, 3]),  # unit axes mixed in
    ],
)
def test_transpose(tmp_path, shape, perm):
    net = check_conversion(_model(shape, perm), tmp_path, max_rel=EXACT, cos=COS)
    types = {layer.type for layer in net.layers}
    assert types <= {"Input", "Reshape", "Slice", "Concat"}, types


@pytest.mark.parametrize("perm", list(itertools.permutations(range(4))))
def test_every_4d_permutation(tmp_path, perm):
    check_conversion(_model((2, 3, 4, 5), perm), tmp_path, max_rel=EXACT, cos=COS)


@pytest.mark.parametrize("perm", list(itertools.permutations(range(3))))
def test_every_3d_permutation(tmp_path, perm):
    check_conversion(_model((3, 4, 5), perm), tmp_path, max_rel=EXACT, cos=COS)


def test_transpose_default_perm_reverses(tmp_path):
    check_conversion(_model((5, 3, 4), None), tmp_path, max_rel=EXACT, cos=COS)


@pytest.mark.parametrize(
    "shape, pieces",
    [
        ((600, 700), 2),  # min side 600 > 512 pieces: factored into two swaps (e.g. 600 = 24 * 25)
        ((521, 523), 3),  # both sides prime and > 512: one entry cut off, 520 factored
    ],
)
def test_large_swaps_are_decomposed(tmp_path, shape, pieces):
    net = check_conversion(_model(shape, [1, 0]), tmp_path, max_rel=EXACT, cos=COS)
    slices = [layer for layer in net.layers if layer.type == "Slice"]
    assert len(slices) >= pieces
    assert max(len(layer.top) for layer in slices) <= _permute.MAX_PIECES


def test_special_values_bit_exact(tmp_path):
    """inf, -inf, NaN and -0.0 travel unchanged (a permutation-matrix product would turn 0 * inf into NaN)."""
    shape, perm = (2, 5, 3, 4), (0, 3, 2, 1)
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape).astype(np.float32)
    x.flat[::7] = np.inf
    x.flat[1::7] = -np.inf
    x.flat[2::7] = np.nan
    x.flat[3::7] = -0.0
    result = convert(_model(shape, perm), str(tmp_path / "m"), check=False)
    want = np.transpose(x, perm)
    for rt in runtimes_here():
        with rt.load(result.prototxt, result.caffemodel) as loaded:
            got = loaded.run({result.name_map["x"]: x}, outputs=[result.name_map["y"]])[result.name_map["y"]]
        assert got.tobytes() == want.tobytes(), rt.name


@pytest.mark.parametrize(
    "dims, order, swaps",
    [
        ((2, 3), (1, 0), 1),
        ((2, 3, 4), (2, 1, 0), 2),  # (0, 3, 2, 1) after merging N away: reverse of 3 axes
        ((2, 3, 4, 5), (3, 2, 1, 0), 3),
        ((2, 3, 4, 5, 6, 7), (5, 4, 3, 2, 1, 0), 4),  # reversing r axes takes r // 2 + 1 block swaps
        ((4, 5, 6), (1, 2, 0), 1),  # a rotation is one block swap
    ],
)
def test_plan_swap_count(dims, order, swaps):
    """A rank-r permutation needs at most r - 1 block swaps (each swap can put one more axis in place); the
    search finds the fewer swaps where they exist."""
    _, steps = _permute.plan(dims, order)
    assert _permute.count(steps)["swaps"] == swaps


def test_normalize_merges_and_drops_unit_axes():
    assert _permute.normalize((1, 64, 3, 3), (0, 3, 2, 1)) == ([64, 3, 3], [2, 1, 0])
    assert _permute.normalize((2, 3, 4, 5), (0, 2, 3, 1)) == ([2, 3, 20], [0, 2, 1])
    assert _permute.normalize((2, 1, 3, 4), (3, 0, 1, 2)) == ([6, 4], [1, 0])


def test_transpose_bad_perm_refused(tmp_path):
    model = _model((1, 2, 3, 4), [0, 1, 3, 2])
    model.graph.node[0].attribute[0].ints[:] = [0, 1, 2, 2]  # after the checker: ONNX would refuse it
    with pytest.raises(ConversionError, match="perm"):
        convert(model, str(tmp_path / "m"), check=False)
    assert not list(tmp_path.iterdir())  # nothing written


def _shuffle_model(n, c, h, w, g):
    shape5 = np.array([n, g, c // g, h, w], np.int64)
    shape4 = np.array([n, c, h, w], np.int64)
    nodes = [
        helper.make_node("Relu", ["x"], ["r"]),
        helper.make_node("Reshape", ["r", "s5"], ["a"]),
        helper.make_node("Transpose", ["a"], ["b"], perm=[0, 2, 1, 3, 4]),
        helper.make_node("Reshape", ["b", "s4"], ["y"]),
    ]
    return make_model(
        nodes, inputs={"x": (n, c, h, w)}, outputs={"y": None}, initializers={"s5": shape5, "s4": shape4}
    )


@pytest.mark.parametrize("n, c, h, w, g", [(1, 8, 3, 3, 2), (2, 12, 4, 5, 3), (1, 16, 1, 1, 4)])
def test_channel_shuffle_fused(tmp_path, n, c, h, w, g):
    model = _shuffle_model(n, c, h, w, g)
    net = check_conversion(model, tmp_path, max_rel=EXACT, cos=COS)
    types = [layer.type for layer in net.layers]
    # the fused form: Relu, Reshape view, one Slice into the smaller side, one Concat, Reshape back
    assert types.count("Slice") == 1 and types.count("Concat") == 1
    assert types.count("Reshape") == 2
    slice_layer = next(layer for layer in net.layers if layer.type == "Slice")
    assert len(slice_layer.top) == min(g, c // g)


def test_channel_shuffle_pass_keeps_shared_intermediates(tmp_path):
    """The transposed tensor is also a graph output: no fusion, the Transpose mapper handles it."""
    model = _shuffle_model(1, 8, 2, 2, 2)
    model.graph.output.append(helper.make_tensor_value_info("b", 1, [1, 4, 2, 2, 2]))
    result = convert(model, None, runtimes=[], check=False)
    assert "fuse_channel_shuffle" not in result.passes_applied
