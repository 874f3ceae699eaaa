"""Graph passes: each keeps onnxruntime's outputs identical and simplifies what the mappers see."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import helper
from onnx_testing import check_conversion, make_model

from onnx2caffe.onnx_graph import OnnxGraph
from onnx2caffe.passes import PASS_NAMES, run_passes

TOL = 1e-5  # conv/pool float32 noise


def _ort(model, feeds):
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    return sess.run(None, feeds)


def _passed(model, names=None):
    g = OnnxGraph.load(model)
    applied = run_passes(g, names)
    onnx.checker.check_model(g.model)
    # the pass result computes exactly what the original computes
    feeds = {i: np.random.default_rng(0).standard_normal(g.shape(i)).astype(np.float32) for i in g.inputs}
    for a, b in zip(_ort(model, feeds), _ort(g.model, feeds), strict=True):
        np.testing.assert_array_equal(a, b)
    return g, applied


def _ops(g):
    return [n.op_type for n in g.graph.node]


def test_order():
    # constants are folded first (the other passes read constant pads, biases, scalars), dead nodes go last;
    # fusions added later sit in between
    core = [
        "fold_constants",
        "eliminate_identity",
        "fuse_matmul_add",
        "fold_pad_into_conv_pool",
        "remove_dead_nodes",
    ]
    assert [n for n in PASS_NAMES if n in core] == core
    assert PASS_NAMES[0] == "fold_constants" and PASS_NAMES[-1] == "remove_dead_nodes"


def test_fold_constants_shape_chain(tmp_path):
    # TorchScript-style flatten: Reshape(x, Concat(Gather(Shape(x), 0), [-1]))
    nodes = [
        helper.make_node("Shape", ["x"], ["s"]),
        helper.make_node(
            "Constant", [], ["i0"], value=helper.make_tensor("i0", onnx.TensorProto.INT64, [], [0])
        ),
        helper.make_node("Gather", ["s", "i0"], ["n"], axis=0),
        helper.make_node("Unsqueeze", ["n", "ax"], ["n1"]),
        helper.make_node("Concat", ["n1", "m1"], ["shape"], axis=0),
        helper.make_node("Reshape", ["x", "shape"], ["y"]),
    ]
    inits = {"ax": np.array([0], np.int64), "m1": np.array([-1], np.int64)}
    model = make_model(nodes, {"x": (2, 3, 4)}, {"y": (2, 12)}, inits)
    g, applied = _passed(model)
    assert "fold_constants" in applied
    assert _ops(g) == ["Reshape"]
    np.testing.assert_array_equal(g.const(g.graph.node[0].input[1]), [2, -1])
    check_conversion(model, tmp_path, max_rel=0.0)


def test_fold_constants_reaches_a_fixed_point(tmp_path):
    """A Shape reads a tensor whose shape inference can only fix once an earlier shape subgraph is folded
    (ONNX data propagation stops at an int64 Div, as in ultralytics' unsimplified DFL head)."""

    def half_reshape(src, axis, tail, out):
        k = f"{out}_"
        return [
            helper.make_node("Shape", [src], [k + "s"]),
            helper.make_node("Gather", [k + "s", "idx" + str(axis)], [k + "d"], axis=0),
            helper.make_node("Div", [k + "d", "two"], [k + "h"]),
            helper.make_node("Concat", ["lead" + str(axis), k + "h", tail], [k + "shape"], axis=0),
            helper.make_node("Reshape", [src, k + "shape"], [out]),
        ]

    nodes = (
        half_reshape("x", 1, "t1", "y")
        + half_reshape("y", 2, "t2", "z")
        + [helper.make_node("Relu", ["z"], ["r"])]
    )
    inits = {
        "two": np.array([2], np.int64),
        "idx1": np.array([1], np.int64),
        "idx2": np.array([2], np.int64),
        "lead1": np.array([1, 2], np.int64),
        "t1": np.array([6], np.int64),
        "lead2": np.array([1, 2, 2], np.int64),
        "t2": np.array([6], np.int64),
    }
    model = make_model(nodes, {"x": (1, 8, 6)}, {"r": (1, 2, 2, 2, 6)}, inits)
    g, applied = _passed(model)
    assert "fold_constants" in applied
    assert _ops(g) == ["Reshape", "Reshape", "Relu"]
    assert g.shape("r") == (1, 2, 2, 2, 6)
    check_conversion(model, tmp_path, max_rel=0.0)


def test_eliminate_identity_and_dropout(tmp_path):
    nodes = [
        helper.make_node("Identity", ["x"], ["a"]),
        helper.make_node("Relu", ["a"], ["b"], name="relu"),
        helper.make_node("Dropout", ["b"], ["c", "mask"]),
        helper.make_node("Identity", ["c"], ["y"]),
    ]
    model = make_model(nodes, {"x": (2, 3)}, {"y": None})
    g, _ = _passed(model)
    assert _ops(g) == ["Relu"]
    assert list(g.graph.node[0].input) == ["x"] and list(g.graph.node[0].output) == ["y"]
    net = check_conversion(model, tmp_path, max_rel=0.0)
    assert [layer.type for layer in net.layers] == ["Input", "ReLU"]
    names = (tmp_path / "model.names.json").read_text()
    assert '"a": "x"' in names and '"b": "y"' in names


def _pad(pads, producer="Relu"):
    nodes = []
    src = "x"
    if producer:
        nodes.append(helper.make_node(producer, ["x"], ["r"]))
        src = "r"
    nodes.append(helper.make_node("Pad", [src, "pads"], ["p"], mode="constant"))
    return nodes, {"pads": np.array(pads, np.int64)}


@pytest.mark.parametrize(
    "pads", [[0, 0, 1, 1, 0, 0, 1, 1], [0, 0, 0, 0, 0, 0, 1, 1], [0, 0, 2, 0, 0, 0, 1, 3]]
)
def test_fold_pad_into_conv(tmp_path, pads):
    nodes, inits = _pad(pads, producer=None)
    nodes.append(helper.make_node("Conv", ["p", "w"], ["y"], strides=[2, 2]))
    inits["w"] = np.random.default_rng(0).standard_normal((4, 3, 3, 3)).astype(np.float32)
    model = make_model(nodes, {"x": (1, 3, 9, 10)}, {"y": None}, inits)
    g, _ = _passed(model, ["fold_pad_into_conv_pool"])
    assert _ops(g) == ["Conv"]
    check_conversion(model, tmp_path, max_rel=TOL)


def test_fold_pad_into_avgpool_counts_the_zeros(tmp_path):
    nodes, inits = _pad([0, 0, 1, 0, 0, 0, 1, 2], producer=None)
    nodes.append(helper.make_node("AveragePool", ["p"], ["y"], kernel_shape=[3, 3], strides=[2, 2]))
    model = make_model(nodes, {"x": (1, 3, 9, 8)}, {"y": None}, inits)
    g, _ = _passed(model, ["fold_pad_into_conv_pool"])
    assert _ops(g) == ["AveragePool"]
    check_conversion(model, tmp_path, max_rel=TOL)


def test_fold_pad_into_maxpool_needs_non_negative_input(tmp_path):
    nodes, inits = _pad([0, 0, 1, 1, 0, 0, 1, 1], producer="Relu")
    nodes.append(helper.make_node("MaxPool", ["p"], ["y"], kernel_shape=[3, 3], strides=[2, 2]))
    model = make_model(nodes, {"x": (1, 3, 9, 9)}, {"y": None}, inits)
    g, _ = _passed(model, ["fold_pad_into_conv_pool"])
    assert _ops(g) == ["Relu", "MaxPool"]
    check_conversion(model, tmp_path, max_rel=TOL)

    # without the Relu the zeros could win the max over negative inputs: not folded
    nodes, inits = _pad([0, 0, 1, 1, 0, 0, 1, 1], producer=None)
    nodes.append(helper.make_node("MaxPool", ["p"], ["y"], kernel_shape=[3, 3], strides=[2, 2]))
    model = make_model(nodes, {"x": (1, 3, 9, 9)}, {"y": None}, inits)
    g, applied = _passed(model, ["fold_pad_into_conv_pool"])
    assert _ops(g) == ["Pad", "MaxPool"] and not applied
    check_conversion(model, tmp_path, max_rel=0.0)  # a standalone Pad, then the pool: copies and max only


@pytest.mark.parametrize(
    "pads,value,mode",
    [
        ([0, 1, 0, 0, 0, 0, 0, 0], 0.0, "constant"),
        ([0, 0, 1, 1, 0, 0, 1, 1], 1.0, "constant"),
        ([0, 0, 1, 1, 0, 0, 1, 1], 0.0, "reflect"),
    ],
)
def test_pad_not_folded(tmp_path, pads, value, mode):
    nodes = [
        helper.make_node("Pad", ["x", "pads", "v"], ["p"], mode=mode),
        helper.make_node("Conv", ["p", "w"], ["y"]),
    ]
    inits = {
        "pads": np.array(pads, np.int64),
        "v": np.array(value, np.float32),
        "w": np.ones((2, 4 if pads[1] else 3, 3, 3), np.float32),
    }
    model = make_model(nodes, {"x": (1, 3, 6, 6)}, {"y": None}, inits)
    g, applied = _passed(model, ["fold_pad_into_conv_pool"])
    assert _ops(g) == ["Pad", "Conv"] and not applied
    # the standalone Pad mapper takes what the pass leaves
    net = check_conversion(model, tmp_path, max_rel=TOL)
    assert "Concat" in [layer.type for layer in net.layers]


def test_remove_dead_nodes():
    nodes = [helper.make_node("Relu", ["x"], ["y"]), helper.make_node("Sigmoid", ["x"], ["unused"])]
    model = make_model(nodes, {"x": (2, 3)}, {"y": None})
    g, applied = _passed(model)
    assert _ops(g) == ["Relu"] and applied == ["remove_dead_nodes"]


# ------------------------------------------------------------------------------------------ sink_channels_last


def _channels_last_block(variant: str):
    """ConvNeXt's block between Transposes: LayerNorm over C, Linear (C -> 4C), GELU, Linear (4C -> C), * gamma."""
    rng = np.random.default_rng(0)
    c = 8
    inits = {
        "g": rng.standard_normal(c).astype(np.float32),
        "b": rng.standard_normal(c).astype(np.float32),
        "w1": rng.standard_normal((c, 4 * c)).astype(np.float32),
        "b1": rng.standard_normal(4 * c).astype(np.float32),
        "w2": rng.standard_normal((4 * c, c)).astype(np.float32),
        "b2": rng.standard_normal(c).astype(np.float32),
        "gamma": rng.standard_normal(c).astype(np.float32),
    }
    nodes = [
        helper.make_node("Transpose", ["x"], ["t"], perm=[0, 2, 3, 1]),
        helper.make_node("LayerNormalization", ["t", "g", "b"], ["ln"], axis=-1, epsilon=1e-6),
    ]
    if variant == "matmul":  # 4-D MatMul + Add
        nodes += [
            helper.make_node("MatMul", ["ln", "w1"], ["h"]),
            helper.make_node("Add", ["h", "b1"], ["hb"]),
            helper.make_node("Relu", ["hb"], ["a"]),
            helper.make_node("MatMul", ["a", "w2"], ["o"]),
            helper.make_node("Add", ["b2", "o"], ["ob"]),
        ]
    else:  # flattened to (N * H * W, C) around Gemm layers, as TorchScript writes nn.Linear
        inits["flat"] = np.array([-1, c], np.int64)
        inits["back"] = np.array([2, 5, 6, c], np.int64)
        nodes += [
            helper.make_node("Reshape", ["ln", "flat"], ["f"]),
            helper.make_node("Gemm", ["f", "w1", "b1"], ["h"]),
            helper.make_node("Relu", ["h"], ["a"]),
            helper.make_node("Gemm", ["a", "w2", "b2"], ["o"]),
            helper.make_node("Reshape", ["o", "back"], ["ob"]),
        ]
    nodes += [
        helper.make_node("Mul", ["ob", "gamma"], ["s"]),
        helper.make_node("Transpose", ["s"], ["y"], perm=[0, 3, 1, 2]),
    ]
    return nodes, inits


@pytest.mark.parametrize("variant", ["matmul", "gemm"])
def test_sink_channels_last(tmp_path, variant):
    nodes, inits = _channels_last_block(variant)
    model = make_model(nodes, {"x": (2, 8, 5, 6)}, {"y": None}, initializers=inits, opset=17)
    g = OnnxGraph.load(model)
    assert "sink_channels_last" in run_passes(g)
    ops = _ops(g)
    assert "Transpose" not in ops and "Reshape" not in ops
    assert ops == ["LayerNorm", "Conv", "Relu", "Conv", "Mul"] or ops == [
        "LayerNorm",
        "Conv",
        "Add",
        "Relu",
        "Conv",
        "Add",
        "Mul",
    ]
    net = check_conversion(model, tmp_path, max_rel=1e-5, cos=0.999999)
    assert "Slice" not in [layer.type for layer in net.layers]  # no materialised transposes


def test_sink_channels_last_leaves_spatial_ops():
    """A Softmax over W between the Transposes mixes positions: the block stays channels-last."""
    nodes, inits = _channels_last_block("matmul")
    nodes.insert(5, helper.make_node("Softmax", ["a"], ["a2"], axis=2))
    nodes[6] = helper.make_node("MatMul", ["a2", "w2"], ["o"])
    model = make_model(nodes, {"x": (2, 8, 5, 6)}, {"y": None}, initializers=inits, opset=17)
    g = OnnxGraph.load(model)
    assert "sink_channels_last" not in run_passes(g)
    assert _ops(g).count("Transpose") == 2
