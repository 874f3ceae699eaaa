"""Transpose (adjacent block swaps) and the channel shuffle fusion, on real Caffe and OpenCV.

Both are pure data movement, so the Caffe outputs must equal onnxruntime's bit for bit: max_rel 0.
"""

from __future__ import annotations

import numpy as np
import pytest
from onnx import helper
from onnx_testing import check_conversion, make_model

from onnx2caffe.convert import convert
from onnx2caffe.errors import ConversionError

EXACT = 0.0  # copies only: any difference is a bug
COS = 0.99999


@pytest.mark.parametrize(
    "shape, perm",
    [
        ((1, 2, 6, 3, 4), [0, 2, 1, 3, 4]),  # ShuffleNet's transpose on its own (5-D blobs)
        ((2, 3, 4, 5), [0, 2, 3, 1]),  # NCHW -> NHWC: swap of C with the run (H, W)
        ((2, 3, 4, 5), [0, 3, 1, 2]),  # NHWC -> NCHW
        ((3, 4, 5), [1, 0, 2]),  # leading axes swapped
        ((6, 7), [1, 0]),  # matrix transpose (perm attribute)
        ((1, 8, 1, 5), [0, 2, 1, 3]),  # only a unit axis moves: plain Reshape
    ],
)
def test_transpose_block_swaps(tmp_path, shape, perm):
    model = make_model(
        [helper.make_node("Transpose", ["x"], ["y"], perm=perm)], inputs={"x": shape}, outputs={"y": None}
    )
    net = check_conversion(model, tmp_path, max_rel=EXACT, cos=COS)
    assert "Permute" not in {layer.type for layer in net.layers}


def test_transpose_default_perm_reverses(tmp_path):
    model = make_model(
        [helper.make_node("Transpose", ["x"], ["y"])], inputs={"x": (5, 3)}, outputs={"y": None}
    )
    check_conversion(model, tmp_path, max_rel=EXACT, cos=COS)


def test_transpose_general_perm_refused(tmp_path):
    model = make_model(
        [helper.make_node("Transpose", ["x"], ["y"], perm=[0, 3, 2, 1], name="t")],
        inputs={"x": (1, 2, 3, 4)},
        outputs={"y": None},
    )
    with pytest.raises(ConversionError) as err:
        convert(model, str(tmp_path / "m"), check=False)
    assert "Transpose" in str(err.value) and "perm" in str(err.value)
    assert not list(tmp_path.iterdir())  # nothing written


def test_transpose_too_many_pieces_refused(tmp_path):
    model = make_model(
        [helper.make_node("Transpose", ["x"], ["y"], perm=[1, 0])],
        inputs={"x": (100, 80)},
        outputs={"y": None},
    )
    with pytest.raises(ConversionError, match="Slice pieces"):
        convert(model, None, check=False)


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
    # the fused form: Relu, Reshape, Slice, g Reshapes, Concat, Reshape back; no 5-D blob
    assert types.count("Slice") == 1 and types.count("Concat") == 1
    assert types.count("Reshape") == g + 2
    slice_layer = next(layer for layer in net.layers if layer.type == "Slice")
    assert len(slice_layer.top) == g


def test_channel_shuffle_pass_keeps_shared_intermediates(tmp_path):
    """The transposed tensor is also a graph output: no fusion, the Transpose mapper handles it."""
    model = _shuffle_model(1, 8, 2, 2, 2)
    model.graph.output.append(helper.make_tensor_value_info("b", 1, [1, 4, 2, 2, 2]))
    result = convert(model, None, runtimes=[], check=False)
    assert "fuse_channel_shuffle" not in result.passes_applied
