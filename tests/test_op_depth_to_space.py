"""DepthToSpace / SpaceToDepth (and the pixel (un)shuffle the fuse_pixel_shuffle pass finds) against onnxruntime on
Caffe and OpenCV: both modes, several block sizes and channel counts, the op and the exporters' forms."""

from __future__ import annotations

import io

import numpy as np
import onnx
import pytest
from onnx import helper
from onnx_testing import check_conversion, make_model

from onnx2caffe.onnx_graph import OnnxGraph
from onnx2caffe.passes import run_passes
from onnx2caffe.passes.fuse_pixel_shuffle import reference

# DepthToSpace: every output is 1 * x plus exact zeros (one-hot kernel): exact for finite inputs.
# SpaceToDepth: copies. Any difference is a bug.
EXACT = dict(max_rel=0.0, cos=0.999999)


def _types(net):
    return [layer.type for layer in net.layers]


@pytest.mark.parametrize("mode", ["DCR", "CRD"])
@pytest.mark.parametrize(
    ("shape", "r"), [((1, 4, 3, 5), 2), ((2, 18, 4, 3), 3), ((1, 9, 5, 5), 3), ((1, 32, 2, 2), 4)]
)
def test_depth_to_space(tmp_path, mode, shape, r):
    node = helper.make_node("DepthToSpace", ["x"], ["y"], blocksize=r, mode=mode)
    model = make_model([node], {"x": shape}, {"y": None}, opset=13)
    net = check_conversion(model, tmp_path, **EXACT)
    assert _types(net).count("Deconvolution") == 1
    regrouped = mode == "DCR" and shape[1] > r * r
    assert ("Concat" in _types(net)) == regrouped


def test_depth_to_space_opset1(tmp_path):
    node = helper.make_node("DepthToSpace", ["x"], ["y"], blocksize=2)  # DCR, no mode attribute
    model = make_model([node], {"x": (1, 8, 3, 4)}, {"y": None}, opset=9)
    check_conversion(model, tmp_path, **EXACT)


@pytest.mark.parametrize(("shape", "r"), [((1, 3, 4, 6), 2), ((2, 2, 6, 9), 3), ((1, 1, 8, 8), 4)])
def test_space_to_depth(tmp_path, shape, r):
    node = helper.make_node("SpaceToDepth", ["x"], ["y"], blocksize=r)
    model = make_model([node], {"x": shape}, {"y": None}, opset=13)
    net = check_conversion(model, tmp_path, **EXACT)
    assert _types(net).count("Pooling") == r * r and "Deconvolution" not in _types(net)


def _shuffle_model(op, mode, shape, r, opset=13):
    """The exporters' 6-D Reshape-Transpose-Reshape form of DepthToSpace / SpaceToDepth."""
    n, c, h, w = shape
    if op == "DepthToSpace":
        co = c // (r * r)
        mid = (n, r, r, co, h, w) if mode == "DCR" else (n, co, r, r, h, w)
        perm = (0, 3, 4, 1, 5, 2) if mode == "DCR" else (0, 1, 4, 2, 5, 3)
        out = (n, co, h * r, w * r)
    else:
        mid = (n, c, h // r, r, w // r, r)
        perm = (0, 3, 5, 1, 2, 4) if mode == "DCR" else (0, 1, 3, 5, 2, 4)
        out = (n, c * r * r, h // r, w // r)
    nodes = [
        helper.make_node("Relu", ["x"], ["a"]),
        helper.make_node("Reshape", ["a", "s1"], ["b"]),
        helper.make_node("Transpose", ["b"], ["t"], perm=list(perm)),
        helper.make_node("Reshape", ["t", "s2"], ["c"]),
        helper.make_node("Relu", ["c"], ["y"]),
    ]
    inits = {"s1": np.array(mid, np.int64), "s2": np.array(out, np.int64)}
    return make_model(nodes, {"x": shape}, {"y": None}, initializers=inits, opset=opset)


@pytest.mark.parametrize("mode", ["DCR", "CRD"])
@pytest.mark.parametrize(
    ("op", "shape", "r"),
    [
        ("DepthToSpace", (1, 8, 3, 5), 2),
        ("DepthToSpace", (1, 27, 4, 4), 3),
        ("SpaceToDepth", (2, 3, 6, 4), 2),
    ],
)
def test_fuse_pixel_shuffle(tmp_path, op, mode, shape, r):
    model = _shuffle_model(op, mode, shape, r)
    g = OnnxGraph.load(model)
    assert "fuse_pixel_shuffle" in run_passes(g)
    fused = [n for n in g.graph.node if n.domain == "onnx2caffe"]
    assert [(n.op_type, onnx.helper.get_attribute_value(n.attribute[1]).decode()) for n in fused] == [
        (op, mode)
    ]
    net = check_conversion(model, tmp_path, **EXACT)
    assert "Transpose" not in _types(net)


def test_fuse_pixel_shuffle_leaves_other_transposes():
    # a 6-D transpose that moves values differently (H and W swapped) is not a pixel shuffle
    model = _shuffle_model("DepthToSpace", "CRD", (1, 8, 3, 3), 2)
    for n in model.graph.node:
        if n.op_type == "Transpose":
            n.attribute[0].ints[:] = [0, 1, 5, 2, 4, 3]
    g = OnnxGraph.load(model)
    run_passes(g, ["fuse_pixel_shuffle"])
    assert "Transpose" in [n.op_type for n in g.graph.node]


def test_reference_matches_onnxruntime():
    import onnxruntime as ort

    x = np.random.default_rng(0).standard_normal((2, 18, 3, 4)).astype(np.float32)
    for mode in ("DCR", "CRD"):
        node = helper.make_node("DepthToSpace", ["x"], ["y"], blocksize=3, mode=mode)
        model = make_model([node], {"x": x.shape}, {"y": None}, opset=13)
        got = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(
            None, {"x": x}
        )
        np.testing.assert_array_equal(got[0], reference("DepthToSpace", mode, x, 3))


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.parametrize(("dynamo", "opset"), [(False, 9), (False, 13), (True, 18)])
@pytest.mark.parametrize("module", ["PixelShuffle(2)", "PixelUnshuffle(2)", "PixelShuffle(3)"])
def test_torch_pixel_shuffle_export(tmp_path, module, dynamo, opset):
    import torch

    m = eval(f"torch.nn.{module}").eval()  # noqa: S307 - a fixed list of layer constructors
    x = torch.randn(1, 36, 6, 6)  # divisible by 2*2 and 3*3
    if dynamo:
        model = torch.onnx.export(m, (x,), dynamo=True, verbose=False).model_proto
    else:
        buf = io.BytesIO()
        torch.onnx.export(m, (x,), buf, dynamo=False, opset_version=opset)
        model = onnx.load_from_string(buf.getvalue())
    net = check_conversion(model, tmp_path, **EXACT)
    assert "Transpose" not in _types(net)
