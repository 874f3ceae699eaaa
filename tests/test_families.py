"""The family zoo's CI subset (onnx2caffe/families.py): one net per family and per op group, end to end on real
Caffe and OpenCV at small inputs, plus the refused-op reporting, the records, the table and the runner.

Each CI net is exported as its users export it (onnx2caffe export with the net's module:callable, or ultralytics'
own exporter), converted and run on every installed runtime against onnxruntime with the zoo's tolerances
(cosine >= 0.99999 and max_rel <= 1e-4: float32 summation order differs between Caffe's BLAS, OpenCV and
onnxruntime, 1e-7 - 1e-5 relative on these nets; a wrong layer is off by 1e-2 or more). Package settings and
caches (ultralytics, torch hub, Hugging Face) go to a folder of this test session; nothing is downloaded.

Time: about 5-20 s per net on 2 cores (the export and pycaffe dominate), the whole module 2-4 minutes.
"""

from __future__ import annotations

import os
import sys
import textwrap

import pytest

pytest.importorskip("torch")
pytest.importorskip("torchvision")

from onnx2caffe import families, families_table  # noqa: E402
from onnx2caffe.families_models import FamilyNet, family_nets, get_net, isolate_package_files  # noqa: E402

pytestmark = pytest.mark.slow

FORK_TYPES = {"Permute", "Threshold", "Bias", "Reduction", "Clip", "ArgMax", "Interp", "Upsample", "ReLU6"}


@pytest.fixture(scope="module")
def package_dir(tmp_path_factory):
    """Settings and cache folders of the packages, inside this session's temporary folder."""
    folder = str(tmp_path_factory.mktemp("package-files"))
    before = {k: os.environ.get(k) for k in ("YOLO_CONFIG_DIR", "YOLO_OFFLINE", "TORCH_HOME", "HF_HOME")}
    for key in ("YOLO_CONFIG_DIR", "TORCH_HOME", "HF_HOME"):
        os.environ.pop(key, None)
    isolate_package_files(folder)
    yield folder
    for key, value in before.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def _check_verified(rec, caffe_runtimes, keep):
    assert sorted(rec["agreement"]) == sorted(rt.name for rt in caffe_runtimes)
    for rt, a in rec["agreement"].items():
        assert a["ok"], (rt, a)
        assert a["max_rel"] <= families.MAX_REL and a["cosine"] >= families.MIN_COSINE
    assert rec["caffe_layers"] > 0 and rec["parameters"] > 0
    assert not set(rec["caffe_layer_types"]) & FORK_TYPES  # standard BVLC layers OpenCV loads
    files = set(os.listdir(keep / rec["model"]))
    assert {f"{rec['model']}{ext}" for ext in (".onnx", ".prototxt", ".caffemodel")} <= files


@pytest.mark.parametrize("name", families.CI_NETS)
def test_ci_net(name, caffe_runtimes, package_dir, tmp_path):
    net = get_net(name)
    rec = families.run_net(
        name, shape=net.ci_shape, runtimes=caffe_runtimes, keep_dir=str(tmp_path), work_dir=package_dir
    )
    families_table.print_record(rec)
    assert rec["input_shape"] == list(net.ci_shape or net.shape)
    assert rec["exporter"] == net.exporter
    assert rec["outcome"] == "verified", rec.get("message")
    _check_verified(rec, caffe_runtimes, tmp_path)


def test_ultralytics_settings_stay_in_the_package_folder(caffe_runtimes, package_dir, tmp_path):
    """yolov8n through ultralytics' own exporter: verified, its ONNX unsimplified at ultralytics' default opset,
    and ultralytics' settings file in the package folder (set before ultralytics was imported)."""
    rec = families.run_net(
        "yolov8n.ultralytics",
        shape=(1, 3, 64, 64),
        runtimes=caffe_runtimes,
        keep_dir=str(tmp_path),
        work_dir=package_dir,
    )
    assert rec["outcome"] == "verified", rec.get("message")
    assert rec["exporter"] == "ultralytics" and rec["opset"] >= 17
    _check_verified(rec, caffe_runtimes, tmp_path)
    assert os.path.isfile(os.path.join(package_dir, "ultralytics", "Ultralytics", "settings.json"))
    assert os.path.isfile(os.path.join(package_dir, "export", "yolov8n.ultralytics", "yolov8n.onnx"))


SIN_MODULE = """
import torch
from torch import nn

class Sine(nn.Module):
    def forward(self, x):
        return torch.sin(x)

def sin_net(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), Sine(), nn.Conv2d(8, 4, 1))
"""


def test_refused_net_names_each_op_with_shapes_and_writes_nothing(tmp_path, package_dir):
    """Sin has no exact BVLC form: the record names it with its node, input shape and reason, the Caffe
    files are not written, and the table and the survey show it."""
    (tmp_path / "sin_mod.py").write_text(textwrap.dedent(SIN_MODULE))
    net = FamilyNet(
        "sin-net", "test nets", "torch", "sin_net", {}, (1, 3, 12, 10), module=str(tmp_path / "sin_mod.py")
    )
    keep = tmp_path / "keep"
    rec = families.run_net(net, runtimes=(), keep_dir=str(keep), work_dir=package_dir)
    assert rec["outcome"] == "refused"
    assert families_table.refused_ops(rec) == {"Sin": 1}
    (group,) = rec["refused"]
    assert group["input_shapes"] == [[1, 8, 12, 10]] and group["output_shapes"] == [[1, 8, 12, 10]]
    assert group["nodes"] and "Sin" in group["nodes"][0]
    assert "Sin (1)" in rec["message"]
    assert sorted(os.listdir(keep / "sin-net")) == ["sin-net.onnx"]  # nothing of Caffe written

    families.zoo.write_record(rec, str(tmp_path / "results"))
    (loaded,) = families_table.load_records(str(tmp_path / "results"))
    table = families_table.render_markdown([loaded])
    assert "## test nets" in table and "| sin-net |" in table and "Sin x1 [1x8x12x10]" in table
    survey = families_table.render_survey([loaded])
    assert "## Sin (1 nets)" in survey and f"- {group['reason']}" in survey
    assert "`in (1x8x12x10) -> (1x8x12x10)`: sin-net x1" in survey


def test_refusals_group_nodes_by_shape_and_attributes():
    """Two Transposes with the same perm and shape form one group (count 2); another perm is its own group."""
    import onnx
    from onnx import helper

    from onnx2caffe.convert import convert
    from onnx2caffe.errors import ConversionError

    nodes = [
        helper.make_node("Transpose", ["x"], ["a"], perm=[0, 3, 2, 1], name="t1"),
        helper.make_node("Transpose", ["x"], ["b"], perm=[0, 3, 2, 1], name="t2"),
        helper.make_node("Transpose", ["x"], ["c"], perm=[0, 2, 3, 1], name="t3"),
        helper.make_node("Sin", ["x"], ["d"], name="e1"),
    ]
    x = helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 2, 3, 4])
    shapes = {"a": [1, 4, 3, 2], "b": [1, 4, 3, 2], "c": [1, 3, 4, 2], "d": [1, 2, 3, 4]}
    outs = [helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, s) for n, s in shapes.items()]
    model = helper.make_model(
        helper.make_graph(nodes, "g", [x], outs), opset_imports=[helper.make_opsetid("", 13)]
    )
    model.ir_version = 8
    with pytest.raises(ConversionError) as info:
        convert(model, None, check=False)
    groups = families.refusal_details(model, info.value)
    sin = [g for g in groups if g["op"] == "Sin"]
    assert len(sin) == 1 and sin[0]["count"] == 1 and sin[0]["input_shapes"] == [[1, 2, 3, 4]]
    by_perm = {tuple(g["attributes"]["perm"]): g for g in groups if g["op"] == "Transpose"}
    for perm, g in by_perm.items():  # whichever Transposes a (future) mapper still refuses are grouped right
        assert g["count"] == {(0, 3, 2, 1): 2, (0, 2, 3, 1): 1}[perm]
        assert g["reason"] and g["input_shapes"] == [[1, 2, 3, 4]]


def test_run_all_writes_a_timeout_record(tmp_path):
    """A net killed by the per-net timeout gets a record (outcome timeout) and a non-zero status."""
    results = tmp_path / "results"
    status = families.main(
        ["run-all", "mtcnn-pnet", "--results", str(results), "--timeout", "1", "--work", str(tmp_path / "w")]
    )
    assert status == 1
    (rec,) = families_table.load_records(str(results))
    assert (
        rec["model"] == "mtcnn-pnet" and rec["outcome"] == "timeout" and "killed after 1 s" in rec["message"]
    )


def test_the_zoo_lists_every_family_once():
    nets = family_nets()
    names = [n.name for n in nets]
    assert len(names) == len(set(names))
    assert set(families.CI_NETS) <= set(names)
    fams = {n.family for n in nets}
    assert {"ultralytics", "segmentation_models_pytorch", "torchvision detection", "facenet-pytorch"} <= fams
    # every ultralytics net both through onnx2caffe export and through ultralytics' exporter
    yolo = {n.name for n in nets if n.family == "ultralytics"}
    assert all((n + ".ultralytics" in yolo) for n in yolo if not n.endswith(".ultralytics"))
    assert sum(1 for n in nets if n.family == "segmentation_models_pytorch") == 18
    with pytest.raises(KeyError, match="did you mean yolov8n"):
        get_net("yolov8")


def test_list_cli(capsys):
    assert families.main(["list", "--ci"]) == 0
    assert capsys.readouterr().out.split() == list(families.CI_NETS)


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))
