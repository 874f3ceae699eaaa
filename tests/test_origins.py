"""PREFIX.layers.json (onnx2caffe.origins): every Caffe layer belongs to exactly one composition, in the
prototxt's order; the nodes a pass fused or folded are found behind the node that took them; names.json keeps
its format; the reader refuses what is not a layers file."""

from __future__ import annotations

import io
import json

import numpy as np
import onnx
import pytest
from report_cases import report_model

from onnx2caffe import origins
from onnx2caffe.caffe_net import CaffeNet
from onnx2caffe.convert import convert
from onnx2caffe.errors import InputFileError


def _check_cover(prefix):
    record = origins.load(f"{prefix}.layers.json")
    net = CaffeNet.load(f"{prefix}.prototxt")
    listed = [ly for c in record["compositions"] for ly in c["layers"]]
    assert listed == [ly.name for ly in net.layers if ly.type != "Input"]  # each once, in prototxt order
    names = json.loads(open(f"{prefix}.names.json", encoding="utf-8").read())
    assert isinstance(names, dict) and all(isinstance(v, str) for v in names.values())
    return record


def test_layers_file_of_folded_and_removed_nodes(tmp_path):
    onnx.save(report_model(), str(tmp_path / "m.onnx"))
    result = convert(str(tmp_path / "m.onnx"), str(tmp_path / "m"), check=False)
    assert result.layers_json == f"{tmp_path / 'm'}.layers.json"
    record = _check_cover(tmp_path / "m")
    by_node = {c["node"]: c for c in record["compositions"]}
    assert by_node["conv1"]["onnx_nodes"] == [["pad0", "Pad"], ["conv1", "Conv"]]
    assert by_node["conv2"]["onnx_nodes"] == [["copy", "Identity"], ["conv2", "Conv"]]
    assert "pad0" not in by_node and "copy" not in by_node
    assert len(by_node["norm"]["layers"]) > 1
    assert record["removed"] == []
    assert origins.by_layer(record)[by_node["norm"]["layers"][-1]].size == len(by_node["norm"]["layers"])


def test_layers_file_of_a_fused_layer_norm(tmp_path):
    """torch's opset-13 LayerNorm is nine nodes; fuse_layer_norm makes one onnx2caffe::LayerNorm of them."""
    torch = pytest.importorskip("torch")

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = torch.nn.Linear(6, 6)
            self.ln = torch.nn.LayerNorm(6)

        def forward(self, x):
            return self.ln(self.fc(x))

    buf = io.BytesIO()
    torch.onnx.export(Net().eval(), torch.randn(2, 6), buf, dynamo=False, opset_version=13)
    model = onnx.load_from_string(buf.getvalue())
    ops_in = [n.op_type for n in model.graph.node]
    result = convert(model, str(tmp_path / "ln"), check=False)
    assert "fuse_layer_norm" in result.passes_applied
    record = _check_cover(tmp_path / "ln")
    (ln,) = [c for c in record["compositions"] if c["op"] == "onnx2caffe::LayerNorm"]
    behind = sorted(op for _, op in ln["onnx_nodes"])
    assert {"ReduceMean", "Sub", "Pow", "Sqrt", "Div"} <= set(behind)
    # every input-model node (but Constants) is behind some composition or listed as removed
    covered = [op for c in record["compositions"] for _, op in c["onnx_nodes"]] + [
        op for _, op in record["removed"]
    ]
    assert sorted(covered) == sorted(op for op in ops_in if op != "Constant")


def test_trace_of_an_unchanged_graph():
    class G:  # the post-pass graph as trace() sees it
        def __init__(self, model):
            self.graph = model.graph
            self.inputs = [i.name for i in model.graph.input]
            self.constants = {i.name: np.zeros(1) for i in model.graph.initializer}

    model = report_model()
    before = origins.snapshot(model.graph.node)
    rec = origins.trace(before, G(model), {"L1": "conv1", "L2": "conv1", "L3": "fc"})
    by_node = {c["node"]: c for c in rec["compositions"]}
    assert [c["node"] for c in rec["compositions"]] == [n.name for n in model.graph.node]
    assert by_node["conv1"]["layers"] == ["L1", "L2"] and by_node["fc"]["layers"] == ["L3"]
    assert all(c["onnx_nodes"] == [[c["node"], c["op"]]] for c in rec["compositions"])
    assert json.loads(origins.to_bytes(rec)) == rec


@pytest.mark.parametrize(
    "content",
    [
        "not json",
        "[]",
        json.dumps({"format": "onnx2caffe-layers", "version": 1, "compositions": [{"node": 1}]}),
        json.dumps({"format": "other", "version": 1, "compositions": []}),
    ],
)
def test_load_refuses_what_is_not_a_layers_file(tmp_path, content):
    path = tmp_path / "x.layers.json"
    path.write_text(content)
    with pytest.raises(InputFileError, match="x.layers.json: not a layers file"):
        origins.load(str(path))


def test_load_refuses_a_newer_version(tmp_path):
    path = tmp_path / "x.layers.json"
    path.write_text(json.dumps({"format": "onnx2caffe-layers", "version": 99, "compositions": []}))
    with pytest.raises(InputFileError, match="version 99 is newer"):
        origins.load(str(path))
