"""`onnx2caffe calibrate --evaluate`: int8 vs float32 on ncnn, per output and per layer, for one or all methods.

On a small net (random weights, generated images) for the mechanics, and on MTCNN's P/R/O-Net with the real
weights facenet-pytorch ships and scikit-image's bundled LFW faces (examples/ncnn_int8.py in its fast mode).
"""

from __future__ import annotations

import importlib.util
import json
import os

import numpy as np
import pytest
from test_calibrate_cli import calibrate, small_net, write_images

from onnx2caffe.calibrate.evaluate import _cosine, evaluate
from onnx2caffe.runtimes.ncnn import NcnnRuntime

pytest.importorskip("ncnn")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
METHODS = ["kl", "kl-legacy", "aciq", "minmax", "percentile"]


@pytest.fixture
def setup(tmp_path):
    rng = np.random.default_rng(0)
    net, (proto, model) = small_net(tmp_path, rng)
    cal = write_images(tmp_path / "cal", rng, n=8, corrupt=False)
    held = write_images(tmp_path / "held", rng, n=4, corrupt=True)
    return proto, model, cal, held


def test_all_methods_one_run_json(setup, tmp_path, capsys):
    proto, model, cal, held = setup
    out = tmp_path / "t.table"
    rc = calibrate(
        proto, model, cal, out, "--method", "all", "--runtime", "ncnn", "--evaluate", str(held), "--json"
    )
    assert rc == 0
    cap = capsys.readouterr()
    doc = json.loads(cap.out)
    assert "wrote" in cap.err and "wrote" not in cap.out  # the JSON alone on stdout
    assert doc["tables"] == {m: str(tmp_path / f"t-{m}.table") for m in METHODS}
    for m in METHODS:
        assert (tmp_path / f"t-{m}.table").is_file()
    ev = doc["evaluation"]
    assert ev["n_images"] == 4 and len(ev["skipped"]) == 1 and "broken.png" in ev["skipped"][0]
    assert [me["method"] for me in ev["methods"]] == METHODS
    for me in ev["methods"]:
        assert me["int8_layers"] == 3
        (o,) = me["outputs"]
        assert o["blob"] == "fc" and o["shape"] == [1, 10]
        assert 0.9 < o["cosine_worst"] <= o["cosine_mean"] < 1.0
        assert 0 < o["max_rel_mean"] <= o["max_rel_worst"]
        assert o["top1_agreement"] is None  # 10 values from an InnerProduct: not taken for class scores
        assert {d["layer"] for d in me["layers"]} >= {"conv1", "relu1", "dw", "fc"}
        assert me["worst_layer"]["drift"] == max(d["drift"] for d in me["layers"])
        assert me["worst_blob"]["cosine_mean"] == min(d["cosine_mean"] for d in me["layers"])


def test_numbers_are_the_runtime_numbers(setup, tmp_path):
    """The evaluation's cosine for an output is the cosine of the int8 and the float32 runtime outputs,
    averaged over the images; a table that clips every activation hard scores worse than a calibrated one."""
    proto, model, cal, held = setup
    good = tmp_path / "good.table"
    assert calibrate(proto, model, cal, good, "--method", "minmax") == 0
    bad = tmp_path / "bad.table"
    lines = good.read_text().splitlines()
    # activation scales x 50: thresholds at 1/50 of the range, nearly everything clipped
    bad.write_text(
        "\n".join(ln if "_param_" in ln else f"{ln.split()[0]} {float(ln.split()[1]) * 50}" for ln in lines)
        + "\n"
    )
    ev = evaluate(str(proto), str(model), {"good": str(good), "bad": str(bad)}, str(held),
                  mean=(104.0, 117.0, 123.0), norm=(0.017,), class_outputs=["fc"])  # fmt: skip
    g, b = ev.methods
    assert g.outputs[0].cosine_mean > b.outputs[0].cosine_mean + 0.01
    assert g.outputs[0].class_axis == 1 and g.outputs[0].top1_agreement is not None
    # recompute the first method's mean cosine through the runtime's public run()
    from onnx2caffe.calibrate.images import Preprocess, list_inputs, load_input

    pre = Preprocess(3, 16, 16, (104.0, 117.0, 123.0), (0.017,))
    cos = []
    with NcnnRuntime().load(proto, model) as f, NcnnRuntime(table=str(good)).load(proto, model) as q:
        for path in list_inputs(held):
            if path.name == "broken.png":
                continue
            x = load_input(path, pre)
            cos.append(_cosine(f.run({"data": x})["fc"], q.run({"data": x})["fc"]))
    assert g.outputs[0].cosine_mean == pytest.approx(float(np.mean(cos)), abs=1e-12)


def test_evaluate_needs_its_flags(setup, tmp_path, capsys):
    proto, model, cal, held = setup
    out = tmp_path / "t.table"
    assert calibrate(proto, model, cal, out, "--json") == 2
    assert "--json only applies with --evaluate" in capsys.readouterr().err
    assert calibrate(proto, model, cal, out, "--evaluate", str(tmp_path / "nowhere")) == 2
    assert "held-out image folder" in capsys.readouterr().err
    assert not out.exists()


def _example():
    spec = importlib.util.spec_from_file_location(
        "ncnn_int8_example", os.path.join(ROOT, "examples", "ncnn_int8.py")
    )
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.slow
def test_mtcnn_real_weights_int8(tmp_path, capsys):
    """MTCNN with its real weights, LFW faces: PyTorch -> Caffe (checked on the Caffe runtimes) -> ncnn float32
    (checked against onnxruntime) -> int8 (kl). The face probabilities survive int8: mean cosine >= 0.999 and
    the face/non-face decision agrees on >= 95% of the held-out images or positions. About 30 s."""
    pytest.importorskip("facenet_pytorch")
    pytest.importorskip("skimage")
    ex = _example()
    records = {}
    for net in ("pnet", "rnet", "onet"):
        records[net] = ex.run_net(net, str(tmp_path), 40, "kl", None)
    said = capsys.readouterr().out
    assert said.count("OK: ") == 3  # the three ncnn float32 verifications
    prob = {"pnet": "output1", "rnet": "output1", "onet": "output2"}
    for net, rec in records.items():
        (me,) = rec["evaluation"]["methods"]
        outs = {o["blob"]: o for o in me["outputs"]}
        p = outs[prob[net]]
        assert p["class_axis"] == 1 and p["cosine_mean"] >= 0.999 and p["top1_agreement"] >= 0.95, (net, p)
        for o in outs.values():
            assert o["cosine_mean"] >= 0.97, (net, o)
        for suffix in ("-fp32.param", "-fp32.bin", "-int8.param", "-int8.bin", ".table"):
            assert (tmp_path / net / f"{net}{suffix}").is_file()
        assert " 8=2" in (tmp_path / net / f"{net}-int8.param").read_text()
