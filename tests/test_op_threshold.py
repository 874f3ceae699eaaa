"""F.threshold (Greater/LessOrEqual/... + Where, fused by the fuse_threshold pass) -> Caffe Threshold + Power +
Eltwise, against onnxruntime on real Caffe. OpenCV's Caffe importer has no Threshold layer: the test records that
it refuses the model (and that its runtime does not list the layer type)."""

from __future__ import annotations

import numpy as np
import pytest
from caffe_runtimes import shared_runtime
from onnx import helper
from onnx_testing import check_conversion, make_model

from onnx2caffe import convert
from onnx2caffe.errors import ConversionError, RuntimeExecutionError
from onnx2caffe.onnx_graph import OnnxGraph
from onnx2caffe.passes import fuse_threshold

# The mask is exactly 0 or 1, so keep * x, v - v * keep and their sum are exact: bit-identical outputs.
EXACT = dict(max_rel=0.0, cos=0.999999)


def _model(cmp, x_first, select_x_if_true, t, v, shape=(2, 3, 4, 5)):
    inits = {"t": np.array(t, np.float32), "v": np.array(v, np.float32)}
    cmp_in = ["x", "t"] if x_first else ["t", "x"]
    where_in = ["c", "x", "v"] if select_x_if_true else ["c", "v", "x"]
    nodes = [helper.make_node(cmp, cmp_in, ["c"]), helper.make_node("Where", where_in, ["y"])]
    return make_model(nodes, {"x": shape}, {"y": None}, initializers=inits, opset=13)


def _pycaffe():
    return shared_runtime("pycaffe")  # skips when real Caffe is not built here


CASES = [
    ("Greater", True, True, 0.5, -2.0),  # the brief's form: Where(x > t, x, v)
    ("LessOrEqual", True, False, 0.5, -2.0),  # torch dynamo's export of F.threshold(x, 0.5, -2)
    ("Greater", True, True, 0.0, 0.0),
    ("Less", True, True, -0.3, 1.5),
    ("GreaterOrEqual", True, False, 0.25, 7.0),
    ("Greater", False, True, 0.1, 3.0),  # t > x
    ("LessOrEqual", False, True, -0.2, 0.0),  # t <= x
]


@pytest.mark.parametrize(("cmp", "x_first", "x_if_true", "t", "v"), CASES)
def test_threshold(tmp_path, cmp, x_first, x_if_true, t, v):
    model = _model(cmp, x_first, x_if_true, t, v)
    net = check_conversion(model, tmp_path, runtimes=[_pycaffe()], **EXACT)
    types = [layer.type for layer in net.layers]
    assert types.count("Threshold") == 1 and "Where" not in types


def test_pass_canonical_form():
    model = _model("Greater", True, True, 0.0, -1.0)
    graph = OnnxGraph.load(model)
    assert fuse_threshold.run(graph)
    node = graph.graph.node[0]
    assert node.domain == "onnx2caffe" and node.op_type == "ThresholdSelect"
    attrs = {a.name: a for a in node.attribute}
    assert attrs["compare"].s == b"gt" and attrs["value"].f == -1.0


def test_opencv_cannot_load_threshold(tmp_path):
    opencv = shared_runtime("opencv")
    assert "Threshold" not in opencv.supported_layer_types()
    result = convert(_model("Greater", True, True, 0.5, -2.0), str(tmp_path / "m"), check=False)
    x = np.zeros((2, 3, 4, 5), np.float32)
    # OpenCV creates layers lazily: the unknown type surfaces at load or at the first forward pass
    with pytest.raises(RuntimeExecutionError, match="Threshold"):
        with opencv.load(result.prototxt, result.caffemodel) as loaded:
            loaded.run({"x": x})


def test_not_fused_without_constants():
    nodes = [
        helper.make_node("Greater", ["x", "z"], ["c"]),
        helper.make_node("Where", ["c", "x", "z"], ["y"]),
    ]
    model = make_model(nodes, {"x": (1, 4), "z": (1, 4)}, {"y": None}, opset=13)
    assert fuse_threshold.run(OnnxGraph.load(model)) is False
    with pytest.raises(ConversionError):
        convert(model, None, check=False)


@pytest.mark.parametrize("cmp", ["Greater", "GreaterOrEqual", "Less", "LessOrEqual"])
def test_values_equal_to_threshold(tmp_path, cmp):
    # Relu makes about half of the values exactly 0 == t: strict and non-strict comparisons must differ there
    inits = {"t": np.array(0.0, np.float32), "v": np.array(5.0, np.float32)}
    nodes = [
        helper.make_node("Relu", ["x"], ["r"]),
        helper.make_node(cmp, ["r", "t"], ["c"]),
        helper.make_node("Where", ["c", "r", "v"], ["y"]),
    ]
    model = make_model(nodes, {"x": (1, 4, 6, 6)}, {"y": None}, initializers=inits, opset=13)
    check_conversion(model, tmp_path, runtimes=[_pycaffe()], **EXACT)
