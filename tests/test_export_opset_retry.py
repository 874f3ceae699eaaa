"""Without --opset, a TorchScript export that fails because an operator needs a newer opset than the default
13 is done again at the opset torch names (with a warning); with --opset the failure stands, as one line,
and the exporter's C++ dump of the IR graph stays off stdout."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from onnx2caffe.exporters.torch_export import ExportError, export_split, onnx_opset  # noqa: E402


class Attention(torch.nn.Module):
    def forward(self, x):
        return torch.nn.functional.scaled_dot_product_attention(x, x, x)  # opset 14+ in the exporter


def test_default_opset_moves_to_the_one_the_operator_needs(capfd):
    exported = export_split(Attention(), [(1, 2, 5, 8)], "torchscript")
    assert onnx_opset(exported.split.skeleton) == 14
    assert exported.warnings[0].startswith("opset 13 cannot express an operator of this model")
    assert "scaled_dot_product_attention" in exported.warnings[0]
    assert "exported at opset 14" in exported.warnings[0]
    assert capfd.readouterr().out == ""  # the failed first try's IR dump did not reach stdout


def test_an_explicit_opset_is_kept(capfd):
    with pytest.raises(ExportError, match="scaled_dot_product_attention.*version 14"):
        export_split(Attention(), [(1, 2, 5, 8)], "torchscript", 13)
    assert capfd.readouterr().out == ""
