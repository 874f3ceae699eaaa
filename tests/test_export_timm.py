"""`onnx2caffe export timm:NAME`: timm models with random weights (pretrained=False, never a download), model
arguments passed to timm.create_model, one-line errors for unknown names and for pretrained=True, and the
one-step `convert timm:NAME` checked on the Caffe runtimes.

Hugging Face's cache and its offline switch point into the test folder, so a download attempt would fail the
test instead of reaching the network."""

from __future__ import annotations

import onnx
import pytest

pytest.importorskip("torch")
timm = pytest.importorskip("timm")

from onnx2caffe import cli  # noqa: E402
from onnx2caffe.errors import Onnx2CaffeError  # noqa: E402
from onnx2caffe.export import export  # noqa: E402


@pytest.fixture(autouse=True)
def _offline(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))


def _dims(value_info) -> list[int]:
    return [d.dim_value for d in value_info.type.tensor_type.shape.dim]


def test_timm_name_through_the_cli(tmp_path, capsys):
    out = tmp_path / "m.onnx"
    rc = cli.main(
        [
            "export",
            "timm:resnet18.a1_in1k",
            "--input-shape",
            "1,1,32,32",
            "--model-arg",
            "num_classes=7",
            "--model-arg",
            "in_chans=1",
            "-o",
            str(out),
        ]
    )
    assert rc == 0
    assert "exported timm:resnet18.a1_in1k (torchscript exporter, opset 13" in capsys.readouterr().out
    model = onnx.load(str(out))
    assert _dims(model.graph.input[0]) == [1, 1, 32, 32]  # in_chans reached create_model
    assert _dims(model.graph.output[0]) == [1, 7]  # num_classes too
    assert not (tmp_path / "hf" / "hub").exists()  # nothing fetched


def test_timm_random_weights_differ_from_seed_to_seed():
    import torch

    torch.manual_seed(0)
    a = export("timm:mobilenetv3_small_050", None, [(1, 3, 32, 32)]).model
    torch.manual_seed(1)
    b = export("timm:mobilenetv3_small_050", None, [(1, 3, 32, 32)]).model
    wa = {t.name: onnx.numpy_helper.to_array(t) for t in a.graph.initializer}
    wb = {t.name: onnx.numpy_helper.to_array(t) for t in b.graph.initializer}
    assert wa.keys() == wb.keys()
    assert any(x.size > 16 and not (x == wb[k]).all() for k, x in wa.items())


def test_convert_timm_in_one_step(tmp_path, caffe_runtimes, capsys):
    if not caffe_runtimes:
        pytest.skip("no Caffe runtime installed")
    prefix = tmp_path / "mnv3"
    rc = cli.main(
        [
            "convert",
            "timm:mobilenetv3_small_050",
            "--input-shape",
            "1,3,64,64",
            "--model-arg",
            "num_classes=10",
            "-o",
            str(prefix),
        ]
    )
    out = capsys.readouterr().out
    assert rc == 0, out
    for ext in (".onnx", ".prototxt", ".caffemodel"):
        assert (tmp_path / f"mnv3{ext}").is_file()
    assert "check vs PyTorch" in out
    for rt in caffe_runtimes:  # the report's row per runtime and output, within tolerance
        rows = [line.split() for line in out.splitlines() if line.startswith(rt.name + " ")]
        assert rows and all(row[-1] == "yes" for row in rows), out


@pytest.mark.parametrize(
    "model, kwargs, pattern",
    [
        ("timm:resnet1", {}, r"unknown timm model 'resnet1' \(did you mean resnet1"),
        ("timm:", {}, r"unknown timm model ''"),
        ("timm:resnet18", {"pretrained": True}, r"random weights \(pretrained=False.*--weights"),
        ("timm:resnet18", {"no_such_arg": 3}, r"building timm model 'resnet18' failed: TypeError"),
    ],
)
def test_timm_errors_are_one_line(tmp_path, model, kwargs, pattern):
    with pytest.raises(Onnx2CaffeError, match=pattern) as info:
        export(model, tmp_path / "o.onnx", [(1, 3, 32, 32)], model_kwargs=kwargs)
    assert "\n" not in str(info.value)
    assert not (tmp_path / "o.onnx").exists()


def test_cli_help_names_timm(capsys):
    with pytest.raises(SystemExit):
        cli.main(["export", "--help"])
    assert "timm:NAME" in capsys.readouterr().out
