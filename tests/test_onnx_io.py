"""onnx2caffe/onnx_io.py: split models (weights as arrays) read, written and run exactly like whole models."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

from onnx2caffe.errors import InputFileError
from onnx2caffe.onnx_graph import OnnxGraph, load_split
from onnx2caffe.onnx_io import SplitModel, read_split, run_onnxruntime


def conv_model(extra_inits=(), doc: bool = False) -> onnx.ModelProto:
    """Conv (16x8x3x3 weights: 4.6 KB, over the 4 KiB line) -> Relu -> Gemm (10x1024 weights), plus a small
    bias; `extra_inits` are appended as they are."""
    rng = np.random.default_rng(0)
    w = rng.standard_normal((16, 8, 3, 3)).astype(np.float32)
    b = rng.standard_normal(16).astype(np.float32)
    fw = rng.standard_normal((10, 1024)).astype(np.float32)
    inits = [
        numpy_helper.from_array(w, "w"),
        numpy_helper.from_array(b, "b"),
        numpy_helper.from_array(fw, "fw"),
    ]
    if doc:
        inits[0].doc_string = "a doc string is field 12, after raw_data"
    inits.extend(extra_inits)
    nodes = [
        helper.make_node("Conv", ["x", "w", "b"], ["c"], name="conv", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"], name="relu"),
        helper.make_node("Flatten", ["r"], ["f"], name="flat"),
        helper.make_node("Gemm", ["f", "fw"], ["y"], name="fc", transB=1),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 10])],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)


def test_read_and_write_are_the_bytes_of_the_whole_model(tmp_path):
    big_int = numpy_helper.from_array(np.arange(20000, dtype=np.int64), "idx")  # 160 KB: over the int line
    half = numpy_helper.from_array(np.ones((64, 64), np.float16), "half")
    model = conv_model([big_int, half], doc=True)
    model.graph.node.append(helper.make_node("Identity", ["y"], ["y2"], name="id"))
    model.metadata_props.add(key="k", value="v")  # a ModelProto field after the graph
    data = model.SerializeToString()
    path = tmp_path / "m.onnx"
    path.write_bytes(data)
    split = read_split(path)
    assert split is not None
    assert sorted(split.weights) == ["fw", "half", "idx", "w"]  # "b" (64 bytes) stays in the skeleton
    for t in split.skeleton.graph.initializer:
        assert (t.HasField("raw_data")) == (t.name == "b")
    assert split.weights["half"].dtype == np.float16 and split.weights["idx"].dtype == np.int64
    np.testing.assert_array_equal(split.weights["w"], numpy_helper.to_array(model.graph.initializer[0]))
    assert not split.weights["w"].flags.writeable
    assert split.serialize() == data
    assert split.serialized_size() == len(data)
    assert split.to_proto().SerializeToString() == data
    assert SplitModel.from_proto(model).serialize() == data
    split.save(tmp_path / "out.onnx")
    assert (tmp_path / "out.onnx").read_bytes() == data


def test_unusual_files_are_left_to_onnx_load(tmp_path):
    """Whatever protobuf would parse differently from a field-by-field reading is read by onnx.load."""
    model = conv_model()
    data = model.SerializeToString()
    # a second graph field (field 7, length-delimited: key 0x3a): protobuf merges the two graphs
    other = helper.make_graph([], "other", [], []).SerializeToString()
    assert len(other) < 128
    twice = data + b"\x3a" + bytes([len(other)]) + other
    (tmp_path / "twice.onnx").write_bytes(twice)
    assert read_split(tmp_path / "twice.onnx") is None
    assert onnx.load(str(tmp_path / "twice.onnx")).graph.name == "other"  # merged, as read_split must not
    # a tensor whose raw data does not fit its dims: kept whole, then refused by OnnxGraph as before
    bad = conv_model()
    bad.graph.initializer[0].raw_data = bad.graph.initializer[0].raw_data[:-4]
    (tmp_path / "bad.onnx").write_bytes(bad.SerializeToString())
    split = read_split(tmp_path / "bad.onnx")
    assert "w" not in split.weights
    with pytest.raises(InputFileError, match="initializer 'w': its data does not match its shape 16x8x3x3"):
        OnnxGraph.load(tmp_path / "bad.onnx", detach_weights=True)


def test_external_data_is_read_as_before(tmp_path):
    model = conv_model()
    w, fw = (numpy_helper.to_array(model.graph.initializer[k]) for k in (0, 2))
    onnx.save(
        model, str(tmp_path / "ext.onnx"), save_as_external_data=True, location="ext.data", size_threshold=0
    )
    assert read_split(tmp_path / "ext.onnx") is None  # external tensors are onnx's to read
    split, _ = load_split(tmp_path / "ext.onnx")
    np.testing.assert_array_equal(split.weights["w"], w)
    g = OnnxGraph.load(tmp_path / "ext.onnx", detach_weights=True)
    np.testing.assert_array_equal(g.const("fw"), fw)


def test_graph_loaded_from_a_file_shares_the_streamed_arrays(tmp_path):
    model = conv_model()
    (tmp_path / "m.onnx").write_bytes(model.SerializeToString())
    split, _ = load_split(tmp_path / "m.onnx")
    g = OnnxGraph.load(split, detach_weights=True)
    assert g.const("w") is split.weights["w"]  # the arrays are held once
    assert not g.model.graph.initializer[0].HasField("raw_data")


def test_onnxruntime_gets_the_weights_as_inputs():
    model = conv_model()
    split = SplitModel.from_proto(model)
    data, feeds = split.runtime_model()
    assert sorted(feeds) == ["fw", "w"] and len(data) < 2000  # the weights are not in the serialized model
    x = np.random.default_rng(1).standard_normal((1, 8, 8, 8)).astype(np.float32)
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    whole = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    (expected,) = whole.run(None, {"x": x})
    names, (got,) = run_onnxruntime(split, {"x": x})
    assert names == ["y"]
    # float32 noise: the same kernels, weights read from an input instead of a (pre-packed) initializer
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5 * np.abs(expected).max())


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_mutated_files_read_like_onnx_load(tmp_path_factory, data):
    """read_split on a mutated file: either None, or a model equal to what onnx.load reads."""
    base = conv_model().SerializeToString()
    pos = data.draw(st.integers(0, len(base) - 1))
    value = data.draw(st.integers(0, 255))
    mutated = base[:pos] + bytes([value]) + base[pos + 1 :]
    path = tmp_path_factory.getbasetemp() / "mut.onnx"
    path.write_bytes(mutated)
    split = read_split(path)
    if split is None:
        return
    whole = onnx.ModelProto.FromString(mutated)  # read_split only accepts what protobuf parses
    assert split.serialize() == whole.SerializeToString()
