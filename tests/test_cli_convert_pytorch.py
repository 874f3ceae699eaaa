"""`onnx2caffe convert` straight from a PyTorch model: the export job then the convert job, no third path."""

import os

import pytest

from onnx2caffe.cli import main

pytest.importorskip("torchvision")


def test_convert_from_torchvision_name_exports_then_converts(tmp_path, capsys):
    prefix = str(tmp_path / "r18")
    rc = main(
        ["convert", "torchvision:resnet18", "--input-shape", "1,3,32,32", "-o", prefix, "--runtime", "opencv"]
    )
    out = capsys.readouterr().out
    assert rc == 0
    # the exported ONNX file is kept beside the Caffe files, and both checks were printed
    for ext in (".onnx", ".prototxt", ".caffemodel", ".names.json"):
        assert os.path.getsize(prefix + ext) > 0
    assert "check vs PyTorch" in out and "opencv" in out


def test_pytorch_model_without_input_shape_is_one_line_error(tmp_path, capsys):
    rc = main(["convert", "torchvision:resnet18", "-o", str(tmp_path / "x")])
    err = capsys.readouterr().err
    assert rc == 2
    assert err.count("\n") == 1 and "--input-shape" in err
    assert not list(tmp_path.iterdir())
