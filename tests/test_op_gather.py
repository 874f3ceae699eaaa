"""Gather (constant indices), Expand, Where (constant condition) on real Caffe and OpenCV vs onnxruntime, and the
fold_expand_into_eltwise pass. Gather and Expand are copies: bit-exact (max_rel 0); Where is exact for finite
inputs (x * 1 + 0 and x * 0 + c)."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import helper
from onnx_testing import check_conversion, make_model

from onnx2caffe.convert import convert
from onnx2caffe.errors import ConversionError
from onnx2caffe.onnx_graph import OnnxGraph
from onnx2caffe.passes import run_passes

EXACT = dict(max_rel=0.0, cos=0.999999)


def _types(net):
    return [layer.type for layer in net.layers if layer.type != "Input"]


@pytest.mark.parametrize(
    "shape,axis,indices",
    [
        ((3, 2, 4, 5), 0, np.array(0)),  # qkv[0] of a fused projection
        ((3, 2, 4, 5), 0, np.array(-1)),  # qkv[2], negative index
        ((1, 7, 8), 1, np.array(0)),  # the class token x[:, 0]
        ((2, 6, 5), 1, np.array([2, 0, 1, 1, 5])),  # runs, repeats, out of order
        ((2, 6, 5), 2, np.array([[4, 3], [0, 1]])),  # 2-D indices
        ((4, 6), 1, np.arange(6)),  # the whole axis in order: a view
        ((2, 1, 3), 1, np.array([0, 0, 0])),  # repeats of a unit axis
    ],
)
def test_gather_constant_indices(tmp_path, shape, axis, indices):
    model = make_model(
        [helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Gather", ["r", "i"], ["y"], axis=axis)],
        {"x": shape},
        {"y": None},
        initializers={"i": indices.astype(np.int64)},
    )
    net = check_conversion(model, tmp_path, **EXACT)
    assert set(_types(net)) <= {"ReLU", "Slice", "Concat", "Reshape", "Silence", "Power"}
    if indices.ndim == 0:  # one Slice, the unused pieces silenced, one Reshape dropping the axis
        assert _types(net)[1:] == ["Slice", "Silence", "Reshape"] or _types(net)[1:] == ["Slice", "Reshape"]


@pytest.mark.parametrize("case", ["computed_indices", "embedding", "out_of_range"])
def test_gather_refused(case):
    inits = {"i": np.array([0, 7], np.int64)} if case == "out_of_range" else {}
    nodes = [helper.make_node("Gather", ["x", "i"], ["y"], axis=1, name="g")]
    inputs = {"x": (2, 5, 3)}
    if case == "computed_indices":
        inputs["i"] = (2,)
        nodes = [
            helper.make_node("Cast", ["i"], ["ii"], to=7),
            helper.make_node("Gather", ["x", "ii"], ["y"], axis=1, name="g"),
        ]
    if case == "embedding":
        inits = {"x": np.zeros((10, 4), np.float32)}
        inputs = {"i": (3,)}
        nodes = [
            helper.make_node("Cast", ["i"], ["ii"], to=7),
            helper.make_node("Gather", ["x", "ii"], ["y"], name="g"),
        ]
    model = make_model(nodes, inputs, {"y": None}, initializers=inits)
    with pytest.raises(ConversionError) as info:
        convert(model, None, check=False)
    msg = str(info.value)
    assert "node 'g' (Gather" in msg
    assert {
        "computed_indices": "indices are computed at run time",
        "embedding": "Caffe's Embed layer is not loadable by OpenCV",
        "out_of_range": "index out of range for axis 1 of size 5",
    }[case] in msg


@pytest.mark.parametrize(
    "in_shape,out_shape",
    [((3, 1), (2, 3, 4)), ((1, 4, 1, 5), (2, 4, 3, 5)), ((5,), (5,)), ((2, 1, 1), (2, 64, 48))],
)
def test_expand(tmp_path, in_shape, out_shape):
    model = make_model(
        [helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Expand", ["r", "s"], ["y"])],
        {"x": in_shape},
        {"y": None},
        initializers={"s": np.array(out_shape, np.int64)},
    )
    net = check_conversion(model, tmp_path, **EXACT)
    assert set(_types(net)) <= {"ReLU", "Concat", "Reshape", "Power"}


def test_expand_feeding_div_is_folded(tmp_path):
    """F.normalize over the last axis: ReduceL2 -> Clip -> Expand -> Div: the Div broadcasts the norm itself (a
    two-bottom Scale), no Concat copies."""
    nodes = [
        helper.make_node("ReduceL2", ["x"], ["n"], axes=[-1], keepdims=1),
        helper.make_node("Clip", ["n", "eps"], ["c"]),
        helper.make_node("Expand", ["c", "s"], ["e"]),
        helper.make_node("Div", ["x", "e"], ["y"]),
    ]
    shape = (1, 3, 10, 8)
    inits = {"eps": np.array(1e-12, np.float32), "s": np.array(shape, np.int64)}
    model = make_model(nodes, {"x": shape}, {"y": None}, initializers=inits)
    g = OnnxGraph.load(model)
    assert "fold_expand_into_eltwise" in run_passes(g)
    assert "Expand" not in [n.op_type for n in g.graph.node]
    net = check_conversion(model, tmp_path, max_rel=1e-6, cos=0.999999)
    assert "Concat" not in _types(net)


def test_expand_kept_when_it_grows_the_output(tmp_path):
    """Expand to a shape larger than the Add's other operand: the Add's output shape needs it, it stays."""
    nodes = [helper.make_node("Expand", ["x", "s"], ["e"]), helper.make_node("Add", ["e", "z"], ["y"])]
    model = make_model(
        nodes, {"x": (3, 1), "z": (1, 4)}, {"y": None}, initializers={"s": np.array([2, 3, 4], np.int64)}
    )
    g = OnnxGraph.load(model)
    run_passes(g)
    assert "Expand" in [n.op_type for n in g.graph.node]
    check_conversion(model, tmp_path, **EXACT)


@pytest.mark.parametrize("case", ["masked_fill", "two_activations", "broadcast_condition", "all_true"])
def test_where_constant_condition(tmp_path, case):
    rng = np.random.default_rng(1)
    shape = (2, 3, 4, 5)
    if case == "broadcast_condition":
        cond = rng.random((4, 5)) > 0.5
    elif case == "all_true":
        cond = np.ones(shape, bool)
    else:
        cond = rng.random(shape) > 0.5
    inits = {"c": cond}
    inputs = {"x": shape}
    if case == "masked_fill":
        inits["b"] = np.array(-100.0, np.float32)
        node = helper.make_node("Where", ["c", "b", "x"], ["y"])
    else:
        inputs["z"] = (1, 3, 4, 1)  # broadcast to the output
        node = helper.make_node("Where", ["c", "x", "z"], ["y"])
    model = make_model([node], inputs, {"y": None}, initializers=inits, opset=13)
    net = check_conversion(model, tmp_path, **EXACT)
    if case == "all_true":
        assert _types(net) == ["Power", "Silence"]  # a copy; the unselected input silenced


def test_where_computed_condition_refused():
    nodes = [
        helper.make_node("Greater", ["x", "z"], ["c"]),
        helper.make_node("Where", ["c", "x", "z"], ["y"], name="w"),
    ]
    model = make_model(nodes, {"x": (2, 3), "z": (2, 3)}, {"y": None})
    with pytest.raises(
        ConversionError, match="node 'w' \\(Where, opset 13\\): the condition is computed at run"
    ):
        convert(model, None, check=False)


def test_shape_arithmetic_folds_into_a_constant_mask(tmp_path):
    """Swin's shifted-window mask as an exporter writes it: int64 arithmetic on Shape(x) (Gather, Range, Mod,
    Equal), a ScatterND into a zero tensor, a Where on it - constant once shapes are static: folded before
    mapping, so only the masked Add of the activation remains (Scale with the folded mask as its bias)."""
    i64 = np.int64
    inits = {
        "two": np.array(2, i64),
        "zero": np.array(0, i64),
        "one": np.array(1, i64),
        "three": np.array(3, i64),
        "idx": np.array([[0, 0], [1, 1]], i64),
        "upd": np.array([1.0, 2.0], np.float32),
        "base": np.zeros((4, 6), np.float32),
        "neg": np.array(-100.0, np.float32),
        "zf": np.array(0.0, np.float32),
    }
    nodes = [
        helper.make_node("Shape", ["x"], ["s"]),
        helper.make_node("Gather", ["s", "three"], ["w"], axis=0),  # W = 6
        helper.make_node("Range", ["zero", "w", "one"], ["r"]),
        helper.make_node("Mod", ["r", "two"], ["odd"]),
        helper.make_node("Cast", ["odd"], ["oddf"], to=1),
        helper.make_node("ScatterND", ["base", "idx", "upd"], ["grid"]),
        helper.make_node("Add", ["grid", "oddf"], ["ids"]),
        helper.make_node("Equal", ["ids", "zf"], ["same"]),
        helper.make_node("Where", ["same", "zf", "neg"], ["mask"]),
        helper.make_node("Add", ["x", "mask"], ["y"]),
    ]
    model = make_model(nodes, {"x": (2, 3, 4, 6)}, {"y": None}, initializers=inits, opset=13)
    g = OnnxGraph.load(model)
    run_passes(g)
    assert [n.op_type for n in g.graph.node] == ["Add"]
    net = check_conversion(model, tmp_path, **EXACT)
    assert _types(net) == ["Scale"]
