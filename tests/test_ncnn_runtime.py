"""The ncnn runtime behind the common Runtime interface: convert and verify (--per-layer) with --runtime ncnn,
blob access, errors, and what runs by default."""

from __future__ import annotations

import numpy as np
import pytest
from caffe_runtimes import shared_runtime
from onnx import helper
from onnx_testing import make_model

from onnx2caffe.cli import main
from onnx2caffe.errors import RuntimeExecutionError, RuntimeUnavailableError
from onnx2caffe.runtimes import ALL_RUNTIME_NAMES, RUNTIME_NAMES, get_runtime

pytest.importorskip("ncnn")


def _onnx(tmp_path):
    rng = np.random.default_rng(0)
    nodes = [
        helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("MaxPool", ["r"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Flatten", ["p"], ["f"]),
        helper.make_node("Gemm", ["f", "fw", "fb"], ["y"], transB=1),
    ]
    init = {
        "w": rng.standard_normal((4, 3, 3, 3)).astype(np.float32),
        "b": rng.standard_normal(4).astype(np.float32),
        "fw": rng.standard_normal((5, 4 * 4 * 4)).astype(np.float32),
        "fb": rng.standard_normal(5).astype(np.float32),
    }
    model = make_model(nodes, {"x": (1, 3, 8, 8)}, {"y": None}, init)
    import onnx

    path = tmp_path / "m.onnx"
    onnx.save(model, path)
    return str(path)


def test_ncnn_is_opt_in():
    assert RUNTIME_NAMES == ("pycaffe", "opencv") and "ncnn" in ALL_RUNTIME_NAMES
    with pytest.raises(RuntimeUnavailableError, match="pycaffe, opencv, ncnn"):
        get_runtime("tensorrt")


def test_convert_and_verify_per_layer_on_ncnn(tmp_path, capsys):
    onnx_path = _onnx(tmp_path)
    prefix = str(tmp_path / "m")
    assert main(["convert", onnx_path, "-o", prefix, "--runtime", "ncnn"]) == 0
    out = capsys.readouterr().out
    assert "ncnn     y" in out and "pycaffe" not in out
    assert (
        main(
            [
                "verify",
                onnx_path,
                prefix + ".prototxt",
                prefix + ".caffemodel",
                "--runtime",
                "ncnn",
                "--per-layer",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    # every Caffe blob with an ONNX counterpart, read back from ncnn by its Caffe name
    assert "ncnn: all 5 compared blobs agree" in out, out
    assert "OK: 1 output comparison(s)" in out


def test_blob_access_and_errors(tmp_path):
    onnx_path = _onnx(tmp_path)
    prefix = str(tmp_path / "m")
    assert main(["convert", onnx_path, "-o", prefix, "--no-check"]) == 0
    rt = shared_runtime("ncnn")
    model = rt.load(prefix + ".prototxt", prefix + ".caffemodel")
    assert model.input_names() == ["x"] and model.output_names() == ["y"]
    assert {"x", "c", "r", "p", "y"} <= set(model.blob_names())
    x = np.random.default_rng(1).standard_normal((1, 3, 8, 8)).astype(np.float32)
    out = model.run({"x": x}, ["c", "r", "y"])
    assert out["c"].shape == (1, 4, 8, 8) and out["y"].shape == (1, 5)
    np.testing.assert_array_equal(out["r"], np.maximum(out["c"], 0))
    with pytest.raises(RuntimeExecutionError, match="no blob named 'nope'"):
        model.run({"x": x}, ["nope"])
    with pytest.raises(RuntimeExecutionError, match="missing input"):
        model.run({}, ["y"])
    folder = model.folder
    model.close()
    model.close()
    with pytest.raises(RuntimeExecutionError, match="was closed"):
        model.run({"x": x})
    import os

    assert not os.path.exists(folder)  # the converted files go with the model
    with pytest.raises(RuntimeExecutionError, match="no such file"):
        rt.load(str(tmp_path / "none.prototxt"), prefix + ".caffemodel")
