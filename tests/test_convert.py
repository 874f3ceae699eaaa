"""The convert job and CLI: input validation, outputs written, report, exit codes."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import helper
from onnx_testing import make_model

from onnx2caffe.cli import main
from onnx2caffe.compare import metrics
from onnx2caffe.convert import convert
from onnx2caffe.errors import InputFileError, ToleranceError
from onnx2caffe.onnx_graph import OnnxGraph


def _conv_model(x_shape=(1, 3, 8, 8), dim_param=None):
    w = np.random.default_rng(0).standard_normal((4, 3, 3, 3)).astype(np.float32)
    model = make_model(
        [
            helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
            helper.make_node("Relu", ["c"], ["y"]),
        ],
        {"x": x_shape},
        {"y": None},
        {"w": w},
    )
    if dim_param:
        model.graph.input[0].type.tensor_type.shape.dim[0].dim_param = dim_param
    return model


@pytest.mark.parametrize(
    "content,match",
    [
        (None, "no such file"),
        (b"", "empty file"),
        (b"\xff\xfe garbage \x00\x01" * 10, "not a valid ONNX model"),
    ],
)
def test_bad_files(tmp_path, content, match):
    path = tmp_path / "m.onnx"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(InputFileError, match=match) as info:
        OnnxGraph.load(str(path))
    assert str(path) in str(info.value)


def test_truncated_file(tmp_path):
    data = _conv_model().SerializeToString()
    path = tmp_path / "t.onnx"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputFileError, match=f"{path}: (not a valid|invalid) ONNX model"):
        OnnxGraph.load(str(path))


def test_dynamic_input_rejected():
    with pytest.raises(
        InputFileError, match="input 'x' has a dynamic dimension 0 \\('batch'\\).*--input-shape x=1,3,8,8"
    ):
        OnnxGraph.load(_conv_model(dim_param="batch"))


def test_integer_input_rejected():
    graph = helper.make_graph(
        [helper.make_node("Cast", ["x"], ["y"], to=onnx.TensorProto.FLOAT)],
        "g",
        [helper.make_tensor_value_info("x", onnx.TensorProto.INT64, [1, 3])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 3])],
    )
    with pytest.raises(InputFileError, match="input 'x' is INT64; Caffe inputs are float32"):
        OnnxGraph.load(helper.make_model(graph))


def test_node_names_unique_and_non_empty():
    nodes = [
        helper.make_node("Relu", ["x"], ["a"], name="n"),
        helper.make_node("Relu", ["a"], ["b"], name="n"),
    ]
    nodes.append(helper.make_node("Relu", ["b"], ["y"]))
    g = OnnxGraph.load(make_model(nodes, {"x": (2,)}, {"y": None}))
    names = [n.name for n in g.graph.node]
    assert len(set(names)) == 3 and all(names)


def test_convert_writes_files_and_report(tmp_path, caffe_runtimes):
    result = convert(_conv_model(), str(tmp_path / "sub" / "net"), runtimes=caffe_runtimes, seed=3)
    assert result.prototxt == str(tmp_path / "sub" / "net.prototxt")
    assert (tmp_path / "sub" / "net.caffemodel").stat().st_size > 4 * 108
    names = json.loads((tmp_path / "sub" / "net.names.json").read_text())
    assert names == {"x": "x", "c": "c", "y": "y"}
    assert {r["runtime"] for r in result.report} == {rt.name for rt in caffe_runtimes}
    for r in result.report:
        # conv of 27 products: float32 noise well below the default tolerance
        assert r["ok"] and r["max_rel"] < 1e-5 and r["cosine"] > 0.99999


def test_metrics():
    ref = np.array([1.0, -2.0, 4.0], np.float32)
    m = metrics(ref, ref + np.array([0.0, 0.0, 0.4], np.float32))
    assert m["max_abs"] == pytest.approx(0.4, rel=1e-6) and m["max_rel"] == pytest.approx(0.1, rel=1e-6)
    assert 0.99 < m["cosine"] < 1.0
    assert metrics(np.zeros(3), np.zeros(3)) == {"max_abs": 0.0, "max_rel": 0.0, "cosine": 1.0}
    assert metrics(ref, np.array([1.0, np.nan, 4.0]))["max_rel"] == float("inf")


def test_tolerance_error_exit_code(tmp_path, caffe_runtimes):
    # max_rel 0 cannot hold for a convolution summed in another order
    with pytest.raises(ToleranceError) as info:
        convert(_conv_model(), str(tmp_path / "m"), runtimes=caffe_runtimes, max_rel=0.0)
    assert info.value.exit_code == 1 and info.value.result.report


def test_cli_convert(tmp_path, capsys):
    model_path = tmp_path / "m.onnx"
    onnx.save(_conv_model(), str(model_path))
    rc = main(["convert", str(model_path), "-o", str(tmp_path / "out" / "m"), "--runtime", "opencv"])
    out = capsys.readouterr().out
    assert rc == 0
    assert "opencv" in out and (tmp_path / "out" / "m.prototxt").exists()
    rc = main(
        [
            "convert",
            str(model_path),
            "-o",
            str(tmp_path / "o2" / "m"),
            "--runtime",
            "opencv",
            "--max-rel",
            "0",
        ]
    )
    captured = capsys.readouterr()
    assert rc == 1 and captured.err.startswith("onnx2caffe: error: opencv output 'y' disagrees")


def test_cli_errors_one_line(tmp_path, capsys):
    rc = main(["convert", str(tmp_path / "missing.onnx"), "-o", str(tmp_path / "x")])
    err = capsys.readouterr().err
    assert rc == 2 and err == f"onnx2caffe: error: {tmp_path / 'missing.onnx'}: no such file\n"
    model_path = tmp_path / "dyn.onnx"
    onnx.save(_conv_model(dim_param="N"), str(model_path))
    rc = main(["convert", str(model_path), "-o", str(tmp_path / "x"), "--no-check"])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "dynamic dimension" in err and "Traceback" not in err
    assert not list(tmp_path.glob("x*"))
