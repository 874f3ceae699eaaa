"""The PyTorch -> Caffe pipeline at the cost of a bare export (issue 11): the same files as before, PyTorch run once,
the export's onnxruntime run re-used by convert, and export's --no-simplify / --no-check."""

from __future__ import annotations

import io
import warnings

import numpy as np
import onnx
import pytest

torch = pytest.importorskip("torch")

from onnx2caffe.exporters import torch_export  # noqa: E402
from onnx2caffe.exporters.torch_export import torch_to_onnx  # noqa: E402

from onnx2caffe import cli  # noqa: E402
from onnx2caffe.export import export  # noqa: E402
from onnx2caffe.simplify import _load_simplifier  # noqa: E402

SHAPE = (1, 3, 16, 16)


# Also written out as a module for the command line tests (`file.py:build`).
COUNTED = """
import torch

from onnx2caffe.exporters.torch_export import randomize_batchnorm


class Counted(torch.nn.Module):
    \"\"\"A small CNN counting its forward calls; its two zero biases make the TorchScript exporter write an
    Identity node (it shares equal tensors), which onnx-simplifier removes.\"\"\"

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.body = torch.nn.Sequential(
            torch.nn.Conv2d(3, 32, 3, padding=1),
            torch.nn.BatchNorm2d(32),
            torch.nn.ReLU(),
            torch.nn.Conv2d(32, 32, 3, padding=1),
            torch.nn.ReLU(),
            torch.nn.Conv2d(32, 32, 3, padding=1),
            torch.nn.ReLU(),
            torch.nn.AdaptiveAvgPool2d(1),
            torch.nn.Flatten(),
            torch.nn.Linear(32, 10),
        )
        with torch.no_grad():
            self.body[3].bias.zero_()
            self.body[5].bias.zero_()
        randomize_batchnorm(self)
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        return self.body(x)


def build():
    return Counted().eval()
"""
_namespace: dict = {}
exec(compile(COUNTED, "<Counted>", "exec"), _namespace)
Counted = _namespace["Counted"]


def old_pipeline_bytes(model) -> bytes:
    """What export wrote before issue 11: export named, onnx.load, onnx-simplifier on the whole model."""
    x = torch.from_numpy(torch_export.random_inputs([SHAPE], 0)[0])
    f = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model, (x,), f, dynamo=False, opset_version=13, input_names=["input"], output_names=["output"],
            do_constant_folding=True,
        )  # fmt: skip
    simplified, ok = _load_simplifier()(onnx.load_from_string(f.getvalue()))
    assert ok
    return simplified.SerializeToString()


def test_the_onnx_file_is_the_one_the_old_pipeline_wrote(tmp_path):
    model = Counted().eval()
    expected = old_pipeline_bytes(model)
    model.calls = 0
    res = export(model, tmp_path / "m.onnx", [SHAPE])
    assert (tmp_path / "m.onnx").read_bytes() == expected
    assert res.model.SerializeToString() == expected
    assert model.calls == 1  # the traced forward is the check's reference: PyTorch runs once
    assert res.report and all(r["ok"] for r in res.report)
    assert not [p for p in tmp_path.iterdir() if p.name != "m.onnx"]  # the exporter's temporary file is gone


def test_the_reference_is_pytorchs_output():
    """The traced forward's outputs equal an eager forward's, and a wrong reference is caught."""
    model = Counted().eval()
    x = torch_export.random_inputs([SHAPE], 0)
    exported = torch_export.export_split(model, [SHAPE], example_inputs=x)
    with torch.no_grad():
        eager = model(torch.from_numpy(x[0])).numpy()
    np.testing.assert_array_equal(exported.torch_outputs[0], eager)
    with pytest.raises(torch_export.ToleranceError, match="disagrees with PyTorch"):
        torch_export.check_outputs([eager + 1.0], exported.split, x)


@pytest.mark.parametrize("kind", ["same tensor twice", "input returned"])
def test_outputs_the_exporter_must_name_itself(kind):
    class Odd(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)

        def forward(self, x):
            y = self.conv(x)
            return (y, y) if kind == "same tensor twice" else (y, x)

    torch.manual_seed(0)
    res = torch_to_onnx(Odd().eval(), [SHAPE])
    assert [o.name for o in res.model.graph.output] == ["output0", "output1"]
    assert [r["output"] for r in res.report] == ["output0", "output1"] and all(r["ok"] for r in res.report)


def test_dynamo_runs_the_model_once_before_export():
    model = Counted().eval()
    res = torch_to_onnx(model, [SHAPE], exporter="dynamo")
    assert res.report and all(r["ok"] for r in res.report)


# ----------------------------------------------------------------------------------- --no-simplify, --no-check


def _write_module(folder) -> str:
    (folder / "countednet.py").write_text(COUNTED)
    return f"{folder / 'countednet.py'}:build"


def test_no_simplify_keeps_the_exporters_graph(tmp_path, capsys):
    model = _write_module(tmp_path)
    shape = ",".join(map(str, SHAPE))
    assert cli.main(["export", model, "--input-shape", shape, "-o", str(tmp_path / "s.onnx")]) == 0
    assert (
        cli.main(["export", model, "--input-shape", shape, "-o", str(tmp_path / "n.onnx"), "--no-simplify"])
        == 0
    )
    out = capsys.readouterr().out
    assert out.count("check vs PyTorch") == 2 and "not simplified" in out
    simplified = [n.op_type for n in onnx.load(str(tmp_path / "s.onnx")).graph.node]
    raw = [n.op_type for n in onnx.load(str(tmp_path / "n.onnx")).graph.node]
    assert "Identity" in raw and "Identity" not in simplified
    assert len(raw) > len(simplified)


def test_no_check_skips_the_comparison_with_pytorch(tmp_path, capsys, monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("the check ran")

    monkeypatch.setattr(torch_export, "check_outputs", fail)
    model = _write_module(tmp_path)
    shape = ",".join(map(str, SHAPE))
    rc = cli.main(["export", model, "--input-shape", shape, "-o", str(tmp_path / "m.onnx"), "--no-check"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "not checked against PyTorch (--no-check)" in out and "check vs PyTorch" not in out
    assert onnx.load(str(tmp_path / "m.onnx")).graph.output[0].name == "output"


def test_export_options_are_refused_for_an_onnx_file(tmp_path, capsys):
    (tmp_path / "m.onnx").write_bytes(b"x")
    rc = cli.main(["convert", str(tmp_path / "m.onnx"), "-o", str(tmp_path / "o"), "--no-simplify"])
    assert rc == 2 and "--no-simplify: only for PyTorch models" in capsys.readouterr().err


def test_convert_reuses_the_exports_onnxruntime_run(tmp_path, capsys, monkeypatch):
    """One step from PyTorch: the export's check already ran onnxruntime on the seeded input the Caffe check
    uses; convert takes those outputs instead of running onnxruntime again (an ONNX file runs it)."""
    from onnx2caffe import convert as convert_module

    calls = []
    real = convert_module.reference_outputs

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(convert_module, "reference_outputs", counting)
    model = _write_module(tmp_path)
    shape = ",".join(map(str, SHAPE))
    prefix = str(tmp_path / "m")
    rc = cli.main(["convert", model, "--input-shape", shape, "-o", prefix, "--runtime", "opencv"])
    out = capsys.readouterr().out
    assert rc == 0 and "opencv" in out and calls == []
    rc = cli.main(["convert", prefix + ".onnx", "-o", str(tmp_path / "again"), "--runtime", "opencv"])
    assert rc == 0 and calls == [1]
    again = capsys.readouterr().out
    # the same model, input and reference: the same agreement table
    assert out.split("check against onnxruntime")[1] == again.split("check against onnxruntime")[1]


def test_one_step_convert_writes_the_exported_onnx_while_converting(tmp_path, capsys):
    """convert PYTORCH writes the .onnx in a thread while it maps and writes the Caffe files (and graph passes
    rewrite the model it converts): the file is byte for byte what `export` writes."""
    model = _write_module(tmp_path)
    shape = ",".join(map(str, SHAPE))
    assert cli.main(["export", model, "--input-shape", shape, "-o", str(tmp_path / "alone.onnx")]) == 0
    assert cli.main(["convert", model, "--input-shape", shape, "-o", str(tmp_path / "m"), "--no-check"]) == 0
    assert (tmp_path / "m.onnx").read_bytes() == (tmp_path / "alone.onnx").read_bytes()
    assert (tmp_path / "m.caffemodel").stat().st_size > 0
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary file left


def test_a_failed_background_onnx_write_leaves_no_caffe_files(tmp_path, capsys, monkeypatch):
    from onnx2caffe import fileio

    def full_disk(f, size):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(fileio, "preallocate", full_disk)
    model = _write_module(tmp_path)
    shape = ",".join(map(str, SHAPE))
    rc = cli.main(["convert", model, "--input-shape", shape, "-o", str(tmp_path / "m"), "--no-check"])
    err = capsys.readouterr().err
    assert rc != 0
    assert err.strip().splitlines()[-1].startswith("onnx2caffe: error: cannot write") and "m.onnx" in err
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("m.")) == []
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
