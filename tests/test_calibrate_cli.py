"""End to end: `onnx2caffe calibrate` on small Caffe nets (built with onnx2caffe.caffe_net) and generated
PNG images, on both Caffe runtimes."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from onnx2caffe.caffe_net import CaffeNet
from onnx2caffe.calibrate import methods as M
from onnx2caffe.calibrate.weights import geometry, weight_scales
from onnx2caffe.cli import main

MEAN = (104.0, 117.0, 123.0)
NORM = 0.017


def small_net(tmp_path, rng):
    net = CaffeNet("calib")
    net.add_input("data", (1, 3, 16, 16))
    w = lambda *s: (rng.standard_normal(s) * 0.2).astype(np.float32)  # noqa: E731
    net.add_layer("conv1", "Convolution", ["data"], ["conv1"], blobs=[w(8, 3, 3, 3), w(8)],
                  convolution_param={"num_output": 8, "kernel_size": [3], "pad": [1]})  # fmt: skip
    net.add_layer("relu1", "ReLU", ["conv1"], ["conv1"])
    net.add_layer("dw", "Convolution", ["conv1"], ["dw"], blobs=[w(8, 1, 3, 3), w(8)],
                  convolution_param={"num_output": 8, "kernel_size": [3], "pad": [1], "group": 8, "stride": [2]})  # fmt: skip
    net.add_layer("relu2", "ReLU", ["dw"], ["dw"])
    net.add_layer("fc", "InnerProduct", ["dw"], ["fc"], blobs=[w(10, 8 * 8 * 8), w(10)],
                  inner_product_param={"num_output": 10})  # fmt: skip
    return net, net.save(tmp_path / "net")


def write_images(folder, rng, n=5, corrupt=True):
    folder.mkdir()
    for i in range(n):
        cv2.imwrite(str(folder / f"img{i}.png"), rng.integers(0, 256, (20 + i, 24, 3), dtype=np.uint8))
    if corrupt:
        (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    return folder


def preprocess(path, h=16, w=16):
    img = cv2.resize(cv2.imread(str(path)), (w, h), interpolation=cv2.INTER_LINEAR)
    return ((img.astype(np.float32) - np.float32(MEAN)) * np.float32(NORM)).transpose(2, 0, 1)


def read_table(path):
    lines = path.read_text().split("\n")
    assert lines[-1] == "" and "" not in lines[:-1]  # newline-terminated, no blank line
    return [ln.split(" ") for ln in lines[:-1]]


def calibrate(proto, model, images, out, *extra):
    argv = ["calibrate", "--proto", str(proto), "--model", str(model), "--images", str(images),
            "--output", str(out), "--mean", *map(str, MEAN), "--norm", str(NORM), "--quiet", *extra]  # fmt: skip
    return main(argv)


@pytest.fixture(params=["pycaffe", "opencv"])
def runtime_name(request):
    from caffe_runtimes import shared_runtime

    shared_runtime(request.param)  # skips when the runtime is not installed here
    return request.param


def test_end_to_end_kl(tmp_path, runtime_name, capsys):
    rng = np.random.default_rng(0)
    net, (proto, model) = small_net(tmp_path, rng)
    images = write_images(tmp_path / "imgs", rng)
    out = tmp_path / "out.table"
    assert calibrate(proto, model, images, out, "--runtime", runtime_name, "--report") == 0
    cap = capsys.readouterr()
    assert "broken.png" in cap.err and "cannot decode" in cap.err
    assert "5 images, 1 skipped" in cap.out and "clipped" in cap.out
    rows = read_table(out)
    assert [r[0] for r in rows] == ["conv1_param_0", "dw_param_0", "fc_param_0", "conv1", "dw", "fc"]
    assert all(r[-1] == "" for r in rows)  # ncnn2table's trailing space
    for r, name in zip(rows[:3], ["conv1", "dw", "fc"], strict=True):
        ly = net.layer(name)
        expect = [f"{s:f}" for s in weight_scales(ly.blobs[0], geometry(ly.proto), "ncnn")]
        assert r[1:-1] == expect
    assert len(rows[1]) - 2 == 8  # depthwise: one scale per group
    # conv1 reads the input itself: recompute its KL scale independently from the images
    xs = [preprocess(p) for p in sorted(images.glob("img*.png"))]
    absmax = max(float(np.abs(x).max()) for x in xs)
    hist = sum(M.ncnn_histogram(x, absmax) for x in xs)
    assert rows[3][1] == f"{M.kl_ncnn(hist, absmax).scale:f}"


def test_runtimes_agree_minmax(tmp_path):
    from caffe_runtimes import shared_runtime

    for name in ("pycaffe", "opencv"):
        shared_runtime(name)
    rng = np.random.default_rng(1)
    _, (proto, model) = small_net(tmp_path, rng)
    images = write_images(tmp_path / "imgs", rng, corrupt=False)
    tables = {}
    for name in ("pycaffe", "opencv"):
        out = tmp_path / f"{name}.table"
        assert calibrate(proto, model, images, out, "--runtime", name, "--method", "minmax") == 0
        tables[name] = read_table(out)
    a, b = tables["pycaffe"], tables["opencv"]
    assert a[:3] == b[:3]  # weights: same file, same arithmetic
    for ra, rb in zip(a[3:], b[3:], strict=True):
        # activations: float32 convolutions summed in different orders; 1e-4 relative is ~1000 ulps
        assert float(ra[1]) == pytest.approx(float(rb[1]), rel=1e-4)


def test_inplace_overwrite_is_seen_by_each_reader(tmp_path, capsys):
    # convA reads c1 before the in-place ReLU, convB after it: each must get its own version
    net = CaffeNet("inplace")
    net.add_input("data", (1, 3, 8, 8))
    neg = -np.eye(3, dtype=np.float32).reshape(3, 3, 1, 1)
    net.add_layer("c1", "Convolution", ["data"], ["c1"], blobs=[neg], convolution_param={"num_output": 3, "kernel_size": [1], "bias_term": False})  # fmt: skip
    ones = np.ones((2, 3, 1, 1), np.float32)
    net.add_layer("convA", "Convolution", ["c1"], ["a"], blobs=[ones], convolution_param={"num_output": 2, "kernel_size": [1], "bias_term": False})  # fmt: skip
    net.add_layer("relu", "ReLU", ["c1"], ["c1"])
    net.add_layer("convB", "Convolution", ["c1"], ["b"], blobs=[ones], convolution_param={"num_output": 2, "kernel_size": [1], "bias_term": False})  # fmt: skip
    proto, model = net.save(tmp_path / "net")
    rng = np.random.default_rng(2)
    images = write_images(tmp_path / "imgs", rng, n=3, corrupt=False)
    out = tmp_path / "t.table"
    argv = ["calibrate", "--proto", str(proto), "--model", str(model), "--images", str(images),
            "--output", str(out), "--method", "minmax", "--runtime", "opencv", "--quiet"]  # fmt: skip
    assert main(argv) == 0
    rows = {r[0]: r for r in read_table(out)}
    pix = max(float(cv2.resize(cv2.imread(str(p)), (8, 8)).max()) for p in images.iterdir())
    assert rows["convA"][1] == f"{np.float32(127) / np.float32(pix):f}"  # pre-ReLU: |-pixels|
    assert rows["convB"][1] == f"{M.ZERO_BLOB_SCALE:f}"  # post-ReLU: all zero
    assert "is 0 on every calibration image" in capsys.readouterr().err


def test_legacy_method_format_and_npy_inputs(tmp_path):
    rng = np.random.default_rng(3)
    _, (proto, model) = small_net(tmp_path, rng)
    folder = tmp_path / "npy"
    folder.mkdir()
    for i in range(3):
        np.save(folder / f"x{i}.npy", rng.standard_normal((3, 16, 16)).astype(np.float32))
    np.save(folder / "wrong.npy", np.zeros((3, 8, 8), np.float32))
    out = tmp_path / "legacy.table"
    argv = ["calibrate", "--proto", str(proto), "--model", str(model), "--images", str(folder),
            "--output", str(out), "--method", "kl-legacy", "--runtime", "opencv", "--quiet"]  # fmt: skip
    assert main(argv) == 0
    text = out.read_text()
    lines = text.splitlines()
    assert len(lines) == 6 and not any(ln.endswith(" ") for ln in lines)
    x0 = np.stack([np.load(folder / f"x{i}.npy") for i in range(3)])
    absmax = float(np.abs(x0).max())
    hist = sum(M.legacy_histogram(x, absmax) for x in x0)
    assert lines[3] == "conv1 " + repr(M.kl_legacy(hist, absmax).scale)


@pytest.mark.parametrize("method", ["aciq", "percentile"])
def test_other_methods_run(tmp_path, method):
    rng = np.random.default_rng(4)
    _, (proto, model) = small_net(tmp_path, rng)
    images = write_images(tmp_path / "imgs", rng, n=3, corrupt=False)
    out = tmp_path / "t.table"
    assert (
        calibrate(proto, model, images, out, "--runtime", "opencv", "--method", method, "--group", "0") == 0
    )
    rows = read_table(out)
    assert all(len(r) == 3 for r in rows)  # --group 0: one weight scale per layer
    vals = [float(v) for r in rows for v in r[1:-1]]
    assert all(np.isfinite(vals)) and all(v > 0 for v in vals)


def test_bad_inputs(tmp_path, capsys):
    rng = np.random.default_rng(5)
    _, (proto, model) = small_net(tmp_path, rng)
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "a.jpg").write_bytes(b"nope")
    (bad / "b.png").write_text("also not an image")
    out = tmp_path / "t.table"
    assert calibrate(proto, model, bad, out, "--runtime", "opencv") == 2
    err = capsys.readouterr().err
    assert "none of the 2 files" in err and not out.exists()
    assert calibrate(tmp_path / "missing.prototxt", model, bad, out, "--runtime", "opencv") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "missing.prototxt" in err[0]
    assert calibrate(proto, model, tmp_path / "nodir", out, "--runtime", "opencv") == 2
    assert calibrate(proto, model, bad, out, "--runtime", "opencv", "--gpu", "1") == 2
    assert "no GPU mode" in capsys.readouterr().err
    # a net without Convolution / InnerProduct
    net = CaffeNet("plain")
    net.add_input("data", (1, 3, 8, 8))
    net.add_layer("relu", "ReLU", ["data"], ["r"])
    p2, m2 = net.save(tmp_path / "plain")
    assert calibrate(p2, m2, bad, out, "--runtime", "opencv") == 2
    assert "no quantisable layer" in capsys.readouterr().err
