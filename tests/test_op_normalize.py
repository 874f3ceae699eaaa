"""L2 normalisation: LpNormalization and F.normalize's ReduceL2 [+ Clip/Max] [+ Expand] + Div pattern (fused by the
fuse_l2_normalize pass) -> Eltwise / 1x1 Convolution (or InnerProduct) / Power composition, against onnxruntime
on Caffe and OpenCV."""

from __future__ import annotations

import io

import numpy as np
import onnx
import pytest
import torch
from onnx import helper
from onnx_testing import check_conversion, make_model

from onnx2caffe.onnx_graph import OnnxGraph
from onnx2caffe.passes import fuse_l2_normalize

# Sum of C squares in a different order, a sqrt, a reciprocal and a product (x * (1/n) instead of x / n): a few
# float32 ulp of outputs bounded by 1, so 1e-6 relative to the largest |output|; a wrong axis or a missing eps
# clamp is off by order 1 (or NaN).
MAX_REL = 1e-6
COS = 0.999999


def _pattern(shape, eps_form="clip", expand=True, opset=13, eps=1e-12):
    nodes, inits = [], {}
    if opset >= 18:
        inits["axes"] = np.array([1], np.int64)
        nodes.append(helper.make_node("ReduceL2", ["x", "axes"], ["n"], keepdims=1))
    else:
        nodes.append(helper.make_node("ReduceL2", ["x"], ["n"], axes=[1], keepdims=1))
    d = "n"
    if eps_form == "clip":
        inits["eps"] = np.array(eps, np.float32)
        nodes.append(helper.make_node("Clip", ["n", "eps", ""], ["c"]))
        d = "c"
    elif eps_form == "max":
        inits["eps"] = np.array(eps, np.float32)
        nodes.append(helper.make_node("Max", ["n", "eps"], ["c"]))
        d = "c"
    if expand:
        nodes.append(helper.make_node("Shape", ["x"], ["s"]))
        nodes.append(helper.make_node("Expand", [d, "s"], ["e"]))
        d = "e"
    nodes.append(helper.make_node("Div", ["x", d], ["y"]))
    return make_model(nodes, {"x": shape}, {"y": None}, initializers=inits, opset=opset)


def _types(net):
    return [layer.type for layer in net.layers]


@pytest.mark.parametrize("shape", [(2, 8, 5, 3), (3, 16)])
@pytest.mark.parametrize(
    ("eps_form", "expand", "opset"),
    [("clip", True, 13), ("clip", True, 18), ("max", False, 13), (None, False, 13), (None, True, 18)],
)
def test_f_normalize_pattern(tmp_path, shape, eps_form, expand, opset):
    model = _pattern(shape, eps_form, expand, opset)
    net = check_conversion(model, tmp_path, max_rel=MAX_REL, cos=COS)
    types = _types(net)
    assert "Normalize" not in types and "Reduction" not in types
    assert types.count("Convolution" if len(shape) == 4 else "InnerProduct") == 2
    assert ("Eltwise" in types) and types.count("Eltwise") == (3 if eps_form else 2)


def test_eps_clamp_is_active(tmp_path):
    # half of the pixels are scaled to norms far below eps, where the output is x / eps instead of x / ||x||
    mask = np.ones((1, 1, 4, 4), np.float32)
    mask[..., ::2, :] = 1e-16
    model = _pattern((1, 6, 4, 4), "clip", True, 13, eps=1e-12)
    g = model.graph
    g.node.insert(0, helper.make_node("Mul", ["x0", "mask"], ["x"]))
    g.initializer.append(onnx.numpy_helper.from_array(mask, "mask"))
    g.input[0].name = "x0"
    onnx.checker.check_model(model)
    check_conversion(model, tmp_path, max_rel=MAX_REL, cos=COS)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_torch_export(tmp_path):
    class Net(torch.nn.Module):
        def forward(self, x):
            return torch.nn.functional.normalize(x, dim=1)

    buf = io.BytesIO()
    torch.onnx.export(Net(), (torch.randn(1, 8, 6, 6),), buf, dynamo=False, opset_version=13)
    model = onnx.load_from_string(buf.getvalue())
    assert "ReduceL2" in [n.op_type for n in model.graph.node]
    net = check_conversion(model, tmp_path, max_rel=MAX_REL, cos=COS)
    assert "Div" not in _types(net)


@pytest.mark.parametrize(
    ("shape", "axis", "p"), [((2, 8, 5, 3), 1, 2), ((2, 8, 5, 3), 1, 1), ((3, 10), -1, 2), ((3, 10), 1, 1)]
)
def test_lp_normalization(tmp_path, shape, axis, p):
    node = helper.make_node("LpNormalization", ["x"], ["y"], axis=axis, p=p)
    model = make_model([node], {"x": shape}, {"y": None}, opset=13)
    check_conversion(model, tmp_path, max_rel=MAX_REL, cos=COS)


def test_not_fused_when_norm_is_shared():
    model = _pattern((1, 4, 3, 3), "clip", False, 13)
    model.graph.node.append(helper.make_node("Relu", ["n"], ["n2"]))
    model.graph.output.append(helper.make_tensor_value_info("n2", onnx.TensorProto.FLOAT, [1, 1, 3, 3]))
    graph = OnnxGraph.load(model)
    assert fuse_l2_normalize.run(graph) is False


def test_not_fused_on_other_axis():
    nodes = [
        helper.make_node("ReduceL2", ["x"], ["n"], axes=[2], keepdims=1),
        helper.make_node("Div", ["x", "n"], ["y"]),
    ]
    graph = OnnxGraph.load(make_model(nodes, {"x": (1, 4, 3, 3)}, {"y": None}, opset=13))
    assert fuse_l2_normalize.run(graph) is False
