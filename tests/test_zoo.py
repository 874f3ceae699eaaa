"""A CI subset of the torchvision zoo (onnx2caffe/zoo.py): one net per architectural family, end to end on real
Caffe and OpenCV, plus one transformer that must be refused with the ops named and nothing written.

Families: plain residual (resnet18), grouped conv (resnext50_32x4d), depthwise + inverted residuals
(mobilenet_v2), channel shuffle (shufflenet_v2_x0_5), SE + SiLU (efficientnet_b0, regnet_y_400mf), HardSwish
/ HardSigmoid (mobilenet_v3_small), BatchNorm kept between concatenations (densenet121), ceil-mode pooling
(googlenet, squeezenet1_0), ReduceMean pooling (mnasnet0_5), bilinear upsampling (lraspp_mobilenet_v3_large).
Inputs are 112x112 (128 for LR-ASPP: its 8x8 and 16x16 features upsample by the integer factors 2 and 8) to keep
CI short; the nets and their ops are the same as at 224. Each net is also checked on ncnn float32 (the Caffe
model converted by onnx2caffe.ncnn) when the ncnn wheel is installed, with the same tolerances.

Tolerances are the zoo's (and the converter's defaults): max |caffe - onnxruntime| <= 1e-4 * max |onnxruntime|
and cosine >= 0.99999. Different float32 summation orders (Caffe BLAS, OpenCV, onnxruntime MLAS) give 1e-7 -
1e-5 relative on these nets; a wrong layer gives 1e-2 or more. Each test prints its timings (run with -s).
"""

from __future__ import annotations

import os
import time

import pytest

pytest.importorskip("torch")
pytest.importorskip("torchvision")

from onnx_testing import ncnn_runtimes  # noqa: E402

from onnx2caffe import zoo  # noqa: E402

pytestmark = pytest.mark.slow

NETS = [
    ("resnet18", 112),
    ("resnext50_32x4d", 112),
    ("mobilenet_v2", 112),
    ("shufflenet_v2_x0_5", 112),
    ("efficientnet_b0", 112),
    ("regnet_y_400mf", 112),
    ("mobilenet_v3_small", 112),
    ("densenet121", 112),
    ("googlenet", 112),
    ("squeezenet1_0", 112),
    ("mnasnet0_5", 112),
    ("lraspp_mobilenet_v3_large", 128),
]


def _runtime_names(rts):
    return sorted(rt.name for rt in rts)


@pytest.mark.parametrize("name, size", NETS, ids=[n for n, _ in NETS])
def test_zoo_net_verified(name, size, caffe_runtimes, tmp_path):
    runtimes = list(caffe_runtimes) + ncnn_runtimes()
    t0 = time.perf_counter()
    rec = zoo.run_model(name, size=size, runtimes=runtimes, keep_dir=str(tmp_path))
    wall = time.perf_counter() - t0
    print(
        f"\n{name} {size}x{size}: {wall:.1f}s "
        + ", ".join(f"{k} {zoo._fmt_time(v)}s" for k, v in rec["times"].items())
        + " | "
        + ", ".join(f"{rt} {zoo._fmt_agree(a)}" for rt, a in rec["agreement"].items())
    )
    assert rec["outcome"] == "verified", rec.get("message")
    assert sorted(rec["agreement"]) == _runtime_names(runtimes)
    for a in rec["agreement"].values():
        assert a["ok"] and a["max_rel"] <= zoo.MAX_REL and a["cosine"] >= zoo.MIN_COSINE
    assert rec["caffe_layers"] > 0 and rec["parameters"] > 0
    assert rec["input_shape"] == [1, 3, size, size]
    for step in ("export", "simplify", "convert", "verify"):
        assert step in rec["times"]
    files = set(os.listdir(tmp_path / name))
    assert {f"{name}.prototxt", f"{name}.caffemodel"} <= files
    # only standard layer types that OpenCV also loads
    assert not set(rec["caffe_layer_types"]) & {"Permute", "Threshold", "Bias", "Reduction", "Clip", "ArgMax"}


def test_zoo_shufflenet_uses_channel_shuffle(caffe_runtimes):
    """The channel shuffle is fused (no 5-D blobs): one Slice into 2 groups + one Concat per shuffle."""
    rec = zoo.run_model("shufflenet_v2_x0_5", size=64, runtimes=caffe_runtimes)
    assert rec["outcome"] == "verified", rec.get("message")
    assert rec["onnx_ops"]["Transpose"] == 16
    assert rec["caffe_layer_types"]["Concat"] >= 16 + 16  # the shuffle joins + the branch joins


def test_zoo_transformer_refused(tmp_path):
    """Swin-T uses GELU (Erf), which has no exact Caffe form: the refusal names it and says why, and no Caffe
    file is written. Its LayerNorms (ReduceMean over the last axis, Pow, Sqrt, Div) are fused and converted, its
    attention MatMuls, Softmax and Transposes composed."""
    rec = zoo.run_model("swin_t", size=112, runtimes=[], keep_dir=str(tmp_path))
    assert rec["outcome"] == "refused", rec.get("message")
    ops = rec["refused_ops"]
    assert ops["Erf"]["count"] >= 1 and "no BVLC Caffe layer computes erf" in ops["Erf"]["reason"]
    assert not {"Pow", "Sqrt", "ReduceMean", "Div", "MatMul", "Softmax", "Transpose"} & set(ops), sorted(ops)
    assert "Erf" in rec["message"]
    assert sorted(os.listdir(tmp_path / "swin_t")) == ["swin_t.onnx"]  # the export only


def test_zoo_record_and_table(tmp_path):
    """Records round-trip through JSON lines and render into the generated table."""
    verified = {
        "model": "resnet18",
        "task": "classification",
        "input_shape": [1, 3, 224, 224],
        "parameters": 11689512,
        "caffe_layers": 53,
        "agreement": {
            "pycaffe": {"max_rel": 3e-7, "cosine": 1.0, "max_abs": 1e-6, "ok": True},
            "opencv": {"max_rel": 5e-7, "cosine": 0.9999999, "max_abs": 2e-6, "ok": True},
        },
        "times": {"export": 4.0, "simplify": 1.0, "convert": 0.5, "verify": {"pycaffe": 1.0, "opencv": 0.5}},
        "outcome": "verified",
    }
    refused = {
        "model": "vit_b_16",
        "task": "classification",
        "input_shape": [1, 3, 224, 224],
        "agreement": {},
        "times": {},
        "outcome": "refused",
        "refused_ops": {"Erf": {"count": 12, "reason": "no mapper", "node": "n"}},
    }
    for rec in (verified, refused):
        path = zoo.write_record(rec, str(tmp_path))
        with open(path, encoding="utf-8") as f:
            assert len(f.read().strip().splitlines()) == 1
    records = zoo.load_records(str(tmp_path))
    assert [r["model"] for r in records] == ["resnet18", "vit_b_16"]
    text = zoo.render_markdown(records)
    assert text.startswith(zoo.TABLE_HEADER)
    assert "do not edit by hand" in text.lower()
    assert "| resnet18 | 1x3x224x224 | 11.7 | 53 | 3.0e-07 / 1.0000000 |" in text
    assert "Erf x12: no mapper" in text
    assert "1 refused" in text and "1 verified" in text and "pycaffe 1" in text
    s = zoo.summary(records)
    assert s["worst"]["opencv"]["max_rel"] == 5e-7


def test_zoo_model_list():
    names = zoo.zoo_models()
    assert len(names) == len(set(names)) >= 80
    for n in ("resnet18", "vgg16", "inception_v3", *zoo.SEGMENTATION):
        assert n in names
    assert zoo.input_size("inception_v3") == 299 and zoo.input_size("resnet18") == 224
