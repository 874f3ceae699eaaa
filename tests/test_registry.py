"""The mapper registry: duplicate ranges, attribute accounting, collected errors, the support table."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import helper
from onnx_testing import make_model

from onnx2caffe.cli import main
from onnx2caffe.convert import convert
from onnx2caffe.errors import ConversionError
from onnx2caffe.registry import (
    DuplicateMapperError,
    NodeView,
    UnsupportedNodeError,
    all_mappers,
    lookup,
    register,
    support_table,
    unregister,
)

DOMAIN = "onnx2caffe.test"


@pytest.fixture
def test_op():
    yield "TestOp"
    unregister("TestOp", DOMAIN)


def _custom_model(attrs: dict):
    node = helper.make_node("TestOp", ["x"], ["y"], name="custom", domain=DOMAIN, **attrs)
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 2, 3, 3])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 2, 3, 3])],
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 13), helper.make_opsetid(DOMAIN, 1)]
    )
    model.ir_version = 8
    return model


def test_duplicate_registration_raises(test_op):
    @register(test_op, since=1, until=5, domain=DOMAIN)
    def first(node, ctx):
        return []

    @register(test_op, since=5, domain=DOMAIN)  # adjacent range: fine
    def second(node, ctx):
        return []

    with pytest.raises(DuplicateMapperError, match="overlaps"):

        @register(test_op, since=7, until=9, domain=DOMAIN)
        def third(node, ctx):
            return []

    assert lookup(test_op, 4, DOMAIN).fn is first
    assert lookup(test_op, 5, DOMAIN).fn is second and lookup(test_op, 99, DOMAIN).fn is second


def test_unhandled_attribute_detected(test_op, tmp_path):
    @register(test_op, since=1, domain=DOMAIN, layers=("ReLU",))
    def mapper(node, ctx):
        node.attr("used")
        node.ignore_attr("ignored", "not relevant")
        return [ctx.layer(node.name, "ReLU", [ctx.blob(node.inputs[0])], [ctx.blob(node.outputs[0])])]

    ok = convert(_custom_model({"used": 1, "ignored": 2}), None, check=False)
    assert [layer.type for layer in ok.net.layers] == ["Input", "ReLU"]
    with pytest.raises(
        ConversionError,
        match=r"node 'custom' \(onnx2caffe.test::TestOp, opset 1\): attribute\(s\) not handled by the mapper: surprise",
    ):
        convert(_custom_model({"used": 1, "surprise": 3}), str(tmp_path / "m"), check=False)
    assert not list(tmp_path.iterdir())


def test_node_view_reject_attr():
    node = helper.make_node("Conv", ["x", "w"], ["y"], name="c1", auto_pad="SAME_UPPER")
    view = NodeView(node, 11)
    assert view.attr("auto_pad") == "SAME_UPPER" and view.attr("group", 1) == 1
    with pytest.raises(UnsupportedNodeError) as info:
        view.reject_attr("auto_pad", "SAME_UPPER", "no")
    err = info.value
    assert (err.node_name, err.op_type, err.opset, err.attribute, err.value) == (
        "c1",
        "Conv",
        11,
        "auto_pad",
        "SAME_UPPER",
    )
    assert str(err) == "node 'c1' (Conv, opset 11): attribute auto_pad='SAME_UPPER': no"


def test_every_unsupported_node_listed_and_nothing_written(tmp_path):
    nodes = [
        helper.make_node("Relu", ["x"], ["a"], name="ok"),
        helper.make_node("Sin", ["a"], ["b"], name="sin_node"),
        helper.make_node("Relu", ["b"], ["c"], name="ok2"),
        helper.make_node("MatMul", ["c", "z"], ["y"], name="matmul_node"),
    ]
    # the product of two activations is refused above MAX_PRODUCT entries (here 2 x 8192 x 8192)
    model = make_model(nodes, {"x": (2, 8192), "z": (8192, 8192)}, {"y": None})
    with pytest.raises(ConversionError) as info:
        convert(model, str(tmp_path / "out" / "m"))
    msg = str(info.value)
    assert "cannot convert 2 node(s)" in msg
    assert (
        "node 'sin_node' (Sin, opset 13): Sin (e.g. in rotated-box decodes) has no exact Caffe form: no BVLC"
        in msg
    )
    assert "node 'matmul_node' (MatMul, opset 13): the product of two activations" in msg
    assert "\n" not in msg
    assert [e.node_name for e in info.value.errors] == ["sin_node", "matmul_node"]
    assert not (tmp_path / "out").exists()


def test_support_table_lists_every_mapper(capsys):
    rows = support_table()
    entries = all_mappers()
    assert len(rows) == len(entries) > 20
    for (op, opsets, layers, notes), e in zip(rows, entries, strict=True):
        assert op.endswith(e.op_type) and opsets == e.opset_range
        if e.domain != DOMAIN:
            # a refusal mapper (op_mappers/refused.py) emits no layer; its notes give the reason
            assert layers or notes.startswith("refused: "), f"{op}: register(..., layers=...) missing"
            assert notes, f"{op}: no docstring / notes"
    for op in (
        "Conv",
        "MaxPool",
        "AveragePool",
        "Gemm",
        "MatMul",
        "BatchNormalization",
        "Add",
        "Concat",
        "Reshape",
    ):
        assert any(r[0] == op for r in rows)
    assert main(["ops"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("| ONNX op | opsets | Caffe layers | notes |")
    assert out.count("\n") == len(rows) + 2
    assert "| Conv | 1+ | Convolution, Slice, Silence, Reshape |" in out


def test_constant_operand_rejected_by_blob(test_op, tmp_path):
    # a mapper asking for the blob of a constant input rejects the node (no Caffe constant layer; mappers that
    # accept constants, e.g. Concat, read them with ctx.const and build them with _compose.constant_blob)
    @register(test_op, since=1, domain=DOMAIN, layers=("Eltwise",))
    def mapper(node, ctx):
        bottoms = [ctx.blob(t) for t in node.inputs]
        return [ctx.layer(node.name, "Eltwise", bottoms, [ctx.blob(node.outputs[0])])]

    model = _custom_model({})
    model.graph.node[0].input.append("c")
    model.graph.initializer.append(onnx.numpy_helper.from_array(np.ones((1, 2, 3, 3), np.float32), "c"))
    with pytest.raises(ConversionError, match="node 'custom' .*: input 'c' is a constant"):
        convert(model, None, check=False)
