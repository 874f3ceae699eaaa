"""A CI subset of the torchvision zoo (onnx2caffe/zoo.py): one net per architectural family, end to end on real
Caffe and OpenCV, and the five transformer families (ConvNeXt, Swin, Swin-V2, ViT, MaxViT) at reduced sizes.

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


def _maxvit_small():
    """maxvit_t's architecture (stem 64, blocks [64, 128, 256, 512] x [2, 2, 5, 2], head dim 32) at 64x64: its
    partition size 7 needs a multiple of 224 (features of 112 / 56 / 28 / 14 / 7), so 2 here (32 / 16 / 8 / 4 /
    2): the same ops (MBConv, block and grid attention with relative position bias, Einsum, GELU)."""
    import torch
    from torchvision.models.maxvit import MaxVit

    torch.manual_seed(0)
    model = MaxVit(
        input_size=(64, 64),
        stem_channels=64,
        partition_size=2,
        block_channels=[64, 128, 256, 512],
        block_layers=[2, 2, 5, 2],
        head_dim=32,
        stochastic_depth_prob=0.2,
    )
    return zoo.prepare_model(model, 0)


# the five transformer families at reduced sizes: ConvNeXt 64 (stride 32), Swin / Swin-V2 112 (window 7 / 8 with
# padding), ViT-B/16 built for 64x64 (4x4 patches + the class token; its image size is a constructor argument;
# exported by TorchScript at opset 17 - scaled_dot_product_attention needs 14 - where `make zoo` falls back to
# the slower dynamo exporter), MaxViT-T's layers at 64x64 (see _maxvit_small)
TRANSFORMERS = [
    ("convnext_tiny", 64, None),
    ("swin_t", 112, None),
    ("swin_v2_t", 112, None),
    ("vit_b_16", 64, {"image_size": 64}),
    ("maxvit_t", 64, "small"),
]


@pytest.mark.parametrize("name, size, variant", TRANSFORMERS, ids=[n for n, _, _ in TRANSFORMERS])
def test_zoo_transformer_verified(name, size, variant, caffe_runtimes, tmp_path):
    """GELU (Erf) fused and composed, LayerNorm, attention MatMuls / Einsum, Softmax, Gather, Expand, window
    shifts (Slice + Concat), relative position bias: converted and verified on both runtimes."""
    t0 = time.perf_counter()
    kwargs = {"model": _maxvit_small()} if variant == "small" else {"model_kwargs": variant}
    if name == "vit_b_16":
        kwargs.update(exporter="torchscript", opset=17)
    rec = zoo.run_model(name, size=size, runtimes=caffe_runtimes, keep_dir=str(tmp_path), **kwargs)
    wall = time.perf_counter() - t0
    print(
        f"\n{name} {size}x{size}: {wall:.1f}s "
        + ", ".join(f"{k} {zoo._fmt_time(v)}s" for k, v in rec["times"].items())
        + f" | {rec.get('caffe_layers')} layers | "
        + ", ".join(f"{rt} {zoo._fmt_agree(a)}" for rt, a in rec["agreement"].items())
    )
    assert rec["outcome"] == "verified", rec.get("message")
    for a in rec["agreement"].values():
        assert a["ok"] and a["max_rel"] <= zoo.MAX_REL and a["cosine"] >= zoo.MIN_COSINE
    assert sorted(rec["agreement"]) == _runtime_names(caffe_runtimes)
    # every GELU fused: one Exp each, no Erf composition (its Sigmoid selectors)
    n_gelu = rec["onnx_ops"].get("Erf", 0)
    assert n_gelu > 0 and rec["caffe_layer_types"]["Exp"] == n_gelu
    assert "Sigmoid" not in rec["caffe_layer_types"] or name == "maxvit_t"  # MaxViT's SE gates are Sigmoids
    assert not set(rec["caffe_layer_types"]) & {"Permute", "Threshold", "Bias", "Reduction", "Clip", "ArgMax"}


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
        "deploy": {"caffe_ms": 31.2, "onnx_ms": 30.1, "ratio": 31.2 / 30.1, "repeat": 5},
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
    assert "| 5.0e-07 / 0.9999999 | 31 / 30 (1.0x) |" in text
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


def test_zoo_deploy_speed(tmp_path):
    """OpenCV's forward timed for the Caffe files and the ONNX file (in a child process: an OpenCV crash on a
    file becomes a note); a file OpenCV cannot load is an error entry, not an exception."""
    pytest.importorskip("cv2")
    import numpy as np
    import onnx
    from onnx import helper, numpy_helper

    from onnx2caffe.convert import convert

    w = numpy_helper.from_array(
        np.random.default_rng(0).standard_normal((4, 3, 3, 3)).astype(np.float32), "w"
    )
    graph = helper.make_graph(
        [
            helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
            helper.make_node("Relu", ["c"], ["y"]),
        ],
        "g",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, (1, 3, 16, 16))],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, (1, 4, 16, 16))],
        [w],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    onnx.save(model, tmp_path / "m.onnx")
    result = convert(model, str(tmp_path / "m"), check=False)
    d = zoo.deploy_speed_isolated(
        str(tmp_path / "m.onnx"), result.prototxt, result.caffemodel, (1, 3, 16, 16), 2
    )
    assert (
        d["caffe_ms"] > 0 and d["onnx_ms"] > 0 and d["ratio"] == pytest.approx(d["caffe_ms"] / d["onnx_ms"])
    )
    (tmp_path / "bad.onnx").write_bytes(b"not an onnx file")
    d = zoo.deploy_speed_isolated(
        str(tmp_path / "bad.onnx"), result.prototxt, result.caffemodel, (1, 3, 16, 16), 1
    )
    assert "error" in d
