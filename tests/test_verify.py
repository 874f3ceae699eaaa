"""`onnx2caffe verify`: pairing of ONNX tensors with Caffe blobs, per-layer diagnosis, inputs, exit codes.

One small model (conv -> relu -> maxpool -> conv -> relu -> flatten -> gemm, output name with a space so that
the converter sanitises it) is converted once per module; every test verifies it (or a modified copy) on the
Caffe runtimes installed here, in-process through onnx2caffe.cli.main, and twice through the console script.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import helper
from onnx_testing import make_model

from onnx2caffe.caffe_net import CaffeNet
from onnx2caffe.cli import main
from onnx2caffe.convert import convert
from onnx2caffe.errors import InputFileError
from onnx2caffe.inputs import load_image, load_npy
from onnx2caffe.runtimes import available_runtimes

OUT = "out put"  # sanitised to "out_put" by the converter
LAYERS = ["conv1", "relu1", "pool1", "conv2", "relu2", "flat", "fc"]


def _model(x_shape=(1, 3, 16, 16)) -> onnx.ModelProto:
    rng = np.random.default_rng(1)

    def w(*shape):
        return (rng.standard_normal(shape) * 0.3).astype(np.float32)

    h = x_shape[2] // 2
    nodes = [
        helper.make_node("Conv", ["input.1", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1], name="conv1"),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node("MaxPool", ["r1"], ["p1"], kernel_shape=[2, 2], strides=[2, 2], name="pool1"),
        helper.make_node("Conv", ["p1", "w2", "b2"], ["c2"], pads=[1, 1, 1, 1], name="conv2"),
        helper.make_node("Relu", ["c2"], ["r2"], name="relu2"),
        helper.make_node("Flatten", ["r2"], ["f"], name="flat"),
        helper.make_node("Gemm", ["f", "wf", "bf"], [OUT], transB=1, name="fc"),
    ]
    inits = {
        "w1": w(8, 3, 3, 3),
        "b1": w(8),
        "w2": w(8, 8, 3, 3),
        "b2": w(8),
        "wf": w(10, 8 * h * h),
        "bf": w(10),
    }
    return make_model(nodes, {"input.1": x_shape}, {OUT: None}, inits)


@pytest.fixture(scope="module")
def runtimes():
    names = available_runtimes()
    if os.environ.get("CI") and "pycaffe" not in names:
        pytest.fail("CI is set but real Caffe (pycaffe) is unavailable")
    if not names:
        pytest.skip("no Caffe runtime installed (pycaffe or opencv)")
    return names


@pytest.fixture(scope="module")
def converted(tmp_path_factory, runtimes):
    """(onnx path, prefix) of the converted model (names.json written beside it)."""
    d = tmp_path_factory.mktemp("verify")
    onnx.save(_model(), str(d / "m.onnx"))
    convert(str(d / "m.onnx"), str(d / "m"), check=False)
    assert (d / "m.names.json").is_file()
    return d / "m.onnx", d / "m"


def _args(onnx_path, prefix, *extra):
    return ["verify", str(onnx_path), f"{prefix}.prototxt", f"{prefix}.caffemodel", *extra]


def _run_json(capsys, *argv):
    rc = main(list(argv) + ["--json"])
    out = capsys.readouterr()
    return rc, json.loads(out.out), out.err


def _copy_without_names(prefix: Path, folder: Path) -> Path:
    folder.mkdir()
    for ext in (".prototxt", ".caffemodel"):
        shutil.copy(f"{prefix}{ext}", folder / f"m{ext}")
    return folder / "m"


# ------------------------------------------------------------------------------------------ agreement


def test_passes_with_names_json(converted, runtimes, capsys):
    onnx_path, prefix = converted
    rc = main(_args(onnx_path, prefix))
    out = capsys.readouterr().out
    assert rc == 0, out
    assert f"names map: {prefix}.names.json" in out
    for rt in runtimes:  # one table row per runtime, the output paired through the map
        assert any(
            line.startswith(rt) and "out put -> out_put" in line and "yes" in line
            for line in out.splitlines()
        )
    assert "OK: " in out


def test_passes_without_names_json_by_sanitised_name(converted, runtimes, capsys, tmp_path):
    onnx_path, prefix = converted
    bare = _copy_without_names(prefix, tmp_path / "bare")
    rc, doc, _ = _run_json(capsys, *_args(onnx_path, bare))
    assert rc == 0 and doc["ok"] is True
    assert doc["names_file"] is None
    assert doc["output_match"] == [{"onnx": OUT, "blob": "out_put", "method": "sanitised name"}]
    assert sorted(r["runtime"] for r in doc["outputs"]) == sorted(runtimes)
    # per-layer by name works too: every converted tensor kept its ONNX name
    rc, doc, _ = _run_json(capsys, *_args(onnx_path, bare, "--per-layer"))
    assert rc == 0
    assert all(r["ok"] is True for r in doc["per_layer"])


def test_same_numbers_as_convert_check(converted, runtimes, tmp_path):
    """seed 0 feeds the same input as convert's check: the metrics must be identical, not just close."""
    from onnx2caffe.verify import verify

    onnx_path, _ = converted
    rt = runtimes[-1]
    result = convert(str(onnx_path), str(tmp_path / "c"), runtimes=[rt], seed=3)
    ver = verify(str(onnx_path), tmp_path / "c.prototxt", tmp_path / "c.caffemodel", runtimes=[rt], seed=3)
    assert ver.ok and len(ver.outputs) == 1
    assert ver.outputs[0]["max_abs"] == result.report[0]["max_abs"]
    assert ver.outputs[0]["cosine"] == result.report[0]["cosine"]


def test_json_and_per_layer_lists_every_layer(converted, runtimes, capsys):
    onnx_path, prefix = converted
    rc, doc, err = _run_json(capsys, *_args(onnx_path, prefix, "--per-layer"))
    assert rc == 0 and err == ""
    assert doc["ok"] is True and doc["runtimes"] == runtimes
    assert doc["tolerance"] == {"max_rel": 1e-4, "min_cosine": 0.99999}
    assert doc["inputs"] == [{"onnx": "input.1", "blob": "input.1", "source": "random (seed 0)"}]
    for rt in runtimes:
        rows = [r for r in doc["per_layer"] if r["runtime"] == rt]
        assert [r["layer"] for r in rows] == LAYERS  # Caffe layer order, one row per top
        assert all(r["ok"] is True for r in rows), rows
        assert rows[0]["shape"] == [1, 8, 16, 16] and rows[-1]["shape"] == [1, 10]
        assert doc["first_disagreement"][rt] is None

    rc = main(_args(onnx_path, prefix, "--per-layer"))
    text = capsys.readouterr().out
    assert rc == 0
    table = text.split("per layer (Caffe layer order):\n", 1)[1].splitlines()
    assert table[0].split() == [
        "runtime",
        "blob",
        "layer",
        "type",
        "shape",
        "max_abs",
        "max_rel",
        "cosine",
        "ok",
    ]
    for rt in runtimes:
        rows = [line.split() for line in table if line.startswith(rt + " ")]
        assert [r[2] for r in rows] == LAYERS
        assert f"{rt}: all {len(LAYERS)} compared blobs agree" in text


def test_outputs_paired_by_position(converted, capsys, tmp_path):
    """A Caffe net whose output blob has another name: no map, no name match -> paired by position."""
    onnx_path, prefix = converted
    net = CaffeNet.load(f"{prefix}.prototxt", f"{prefix}.caffemodel")
    net.layer("fc").proto.top[0] = "logits"
    net.save(tmp_path / "renamed")
    rc = main(_args(onnx_path, tmp_path / "renamed"))
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "outputs paired by position" in out and "out put -> logits" in out


def test_in_place_blob(converted, capsys, tmp_path):
    """relu1 made in place on conv1's blob 'c1': only its last writer can be compared."""
    onnx_path, prefix = converted
    net = CaffeNet.load(f"{prefix}.prototxt", f"{prefix}.caffemodel")
    relu = net.layer("relu1").proto
    relu.top[0] = "c1"
    net.layer("pool1").proto.bottom[0] = "c1"
    net.save(tmp_path / "inplace")
    names = json.loads(Path(f"{prefix}.names.json").read_text())
    names["r1"] = "c1"
    (tmp_path / "inplace.names.json").write_text(json.dumps(names))
    rc, doc, _ = _run_json(capsys, *_args(onnx_path, tmp_path / "inplace", "--per-layer"))
    assert rc == 0
    rows = {r["layer"]: r for r in doc["per_layer"] if r["runtime"] == doc["runtimes"][0]}
    assert rows["conv1"]["ok"] is None and rows["conv1"]["note"] == "overwritten in place by layer 'relu1'"
    assert rows["relu1"]["ok"] is True and rows["relu1"]["output"] == "r1"  # the later ONNX tensor on 'c1'
    # without the map, 'c1' matches the ONNX tensor c1 (the conv output) by name: ambiguous, not compared
    os.remove(tmp_path / "inplace.names.json")
    rc, doc, _ = _run_json(capsys, *_args(onnx_path, tmp_path / "inplace", "--per-layer"))
    assert rc == 0
    rows = {r["layer"]: r for r in doc["per_layer"] if r["runtime"] == doc["runtimes"][0]}
    assert rows["relu1"]["ok"] is None and "ambiguous" in rows["relu1"]["note"]
    assert rows["pool1"]["ok"] is True


# ------------------------------------------------------------------------------------------ disagreement


def test_corrupted_weight_found_by_per_layer(converted, runtimes, capsys, tmp_path):
    onnx_path, prefix = converted
    net = CaffeNet.load(f"{prefix}.prototxt", f"{prefix}.caffemodel")
    w, b = net.layer("conv2").blobs
    w = w.copy()
    w[0, 0, 1, 1] += 1.0  # one weight of one filter: channel 0 of c2 changes by up to max|p1|
    net.layer("conv2").blobs = [w, b]
    net.save(tmp_path / "bad")
    shutil.copy(f"{prefix}.names.json", tmp_path / "bad.names.json")

    rc = main(_args(onnx_path, tmp_path / "bad"))
    captured = capsys.readouterr()
    assert rc == 1
    err = captured.err.strip().splitlines()
    assert (
        len(err) == 1 and err[0].startswith("onnx2caffe: error: ") and "disagrees with onnxruntime" in err[0]
    )
    assert "FAILED" in captured.out

    rc, doc, err = _run_json(capsys, *_args(onnx_path, tmp_path / "bad", "--per-layer"))
    assert rc == 1 and doc["ok"] is False
    assert "first disagreeing layer 'conv2' (Convolution), blob 'c2'" in err
    for rt in runtimes:
        first = doc["first_disagreement"][rt]
        assert (first["layer"], first["type"], first["blob"]) == ("conv2", "Convolution", "c2")
        # a weight change of 1.0 on inputs of order 1 is far outside max_rel 1e-4 (the intact model's is ~1e-6)
        assert first["max_rel"] > 1e-3 and first["ok"] is False
        rows = [r for r in doc["per_layer"] if r["runtime"] == rt]
        assert [r["ok"] for r in rows[:3]] == [True, True, True]  # everything before conv2 still agrees
        assert len(rows) == len(LAYERS)  # the rest of the table is still there

    rc = main(_args(onnx_path, tmp_path / "bad", "--per-layer"))
    out = capsys.readouterr().out
    assert rc == 1
    for rt in runtimes:
        assert f"{rt}: first disagreement: layer 'conv2' (Convolution), blob 'c2'" in out


def test_tighter_tolerance_fails(converted, capsys):
    onnx_path, prefix = converted
    # max_rel 0 demands bit-identical outputs, which float32 convolutions in another library never give
    assert main(_args(onnx_path, prefix, "--max-rel", "0")) == 1
    capsys.readouterr()


# ------------------------------------------------------------------------------------------ inputs


def test_npy_input(converted, capsys, tmp_path):
    onnx_path, prefix = converted
    x = np.random.default_rng(5).uniform(-2, 2, (3, 16, 16))  # float64, no batch axis: both accepted
    np.save(tmp_path / "x.npy", x)
    rc, doc, _ = _run_json(capsys, *_args(onnx_path, prefix, "--input", f"input.1={tmp_path / 'x.npy'}"))
    assert rc == 0 and doc["inputs"][0]["source"] == f"file {tmp_path / 'x.npy'}"
    loaded = load_npy(str(tmp_path / "x.npy"), (1, 3, 16, 16), "x")
    assert loaded.dtype == np.float32 and loaded.shape == (1, 3, 16, 16)
    np.testing.assert_array_equal(loaded[0], x.astype(np.float32))
    # a bare file name is enough for a single-input model
    assert main(_args(onnx_path, prefix, "--input", str(tmp_path / "x.npy"))) == 0
    capsys.readouterr()
    # the API takes arrays directly (by ONNX input or Caffe blob name): the same input gives the same numbers
    from onnx2caffe.verify import verify

    res = verify(str(onnx_path), f"{prefix}.prototxt", f"{prefix}.caffemodel", inputs={"input.1": loaded})
    by_rt = {r["runtime"]: r for r in doc["outputs"]}
    for r in res.outputs:
        assert r["max_abs"] == by_rt[r["runtime"]]["max_abs"] and r["cosine"] == by_rt[r["runtime"]]["cosine"]


def test_load_image_transform(tmp_path):
    cv2 = pytest.importorskip("cv2")
    img = np.empty((20, 24, 3), np.uint8)
    img[:] = (10, 20, 30)  # B, G, R
    cv2.imwrite(str(tmp_path / "c.png"), img)
    x = load_image(str(tmp_path / "c.png"), (2, 3, 16, 16), "x", mean=[1, 2, 3], scale=2.0, pixel="RGB")
    assert x.shape == (2, 3, 16, 16) and x.dtype == np.float32
    # constant image: resizing keeps the values exactly; (pixel - mean_bgr) * scale, then B,G,R -> R,G,B
    np.testing.assert_array_equal(x[:, 0], 54.0)  # (30 - 3) * 2
    np.testing.assert_array_equal(x[:, 1], 36.0)  # (20 - 2) * 2
    np.testing.assert_array_equal(x[:, 2], 18.0)  # (10 - 1) * 2
    bgr = load_image(str(tmp_path / "c.png"), (1, 3, 16, 16), "x")
    np.testing.assert_array_equal(bgr[0, :, 0, 0], [10, 20, 30])


def test_image_input(converted, capsys, tmp_path):
    cv2 = pytest.importorskip("cv2")
    onnx_path, prefix = converted
    img = np.random.default_rng(2).integers(0, 256, (37, 29, 3), dtype=np.uint8)
    cv2.imwrite(str(tmp_path / "i.png"), img)
    argv = _args(
        onnx_path, prefix, "--image", str(tmp_path / "i.png"), "--mean", "104,117,123", "--scale", "0.017"
    )
    rc, doc, _ = _run_json(capsys, *argv, "--pixel", "RGB")
    assert rc == 0 and doc["inputs"][0]["source"] == f"image {tmp_path / 'i.png'}"


# ------------------------------------------------------------------------------------------ bad input


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory, converted):
    d = tmp_path_factory.mktemp("bad")
    net = CaffeNet.load(f"{converted[1]}.prototxt", f"{converted[1]}.caffemodel")
    net.remove("fc")  # the net's only output is now 'f' (1, 512), the ONNX output is (1, 10)
    net.save(d / "nofc")
    (d / "garbage.bin").write_bytes(b"\x00\xff not a model \x12" * 20)
    (d / "garbage.json").write_text("{not json")
    (d / "list.json").write_text("[1, 2]")
    np.save(d / "wrong.npy", np.zeros((1, 3, 8, 8), np.float32))
    np.save(d / "text.npy", np.array(["a", "b"]))
    onnx.save(_model((1, 3, 8, 8)), str(d / "small.onnx"))
    return d


@pytest.mark.parametrize(
    "case,match",
    [
        ("missing_onnx", "no such file"),
        ("garbage_onnx", "not a valid ONNX model"),
        ("garbage_prototxt", "garbage.bin"),
        ("missing_caffemodel", "no such file (caffemodel)"),
        ("garbage_caffemodel", "garbage.bin"),
        ("garbage_names", "not a names map"),
        ("list_names", "not a names map"),
        ("unknown_input", "unknown input name 'nope'"),
        ("wrong_shape_npy", "shape (1, 3, 8, 8) does not match the input shape (1, 3, 16, 16)"),
        ("text_npy", "cannot be converted to float32"),
        ("garbage_npy", "not a readable .npy file"),
        ("garbage_image", "not an image OpenCV can read"),
        ("bad_mean", "--mean '1,x': expected numbers"),
        ("mean_count", "--mean: 2 values for an input with 3 channel(s)"),
        ("mean_without_image", "apply only to --image"),
        ("shape_mismatch", "input shapes do not match"),
        ("unpairable_output", "cannot pair ONNX output(s) 'out put' with Caffe blobs"),
    ],
)
def test_bad_input_exit_2(converted, bad_files, capsys, case, match):
    onnx_path, prefix = converted
    proto, model = f"{prefix}.prototxt", f"{prefix}.caffemodel"
    g = bad_files
    argv = {
        "missing_onnx": ["verify", str(g / "missing.onnx"), proto, model],
        "garbage_onnx": ["verify", str(g / "garbage.bin"), proto, model],
        "garbage_prototxt": ["verify", str(onnx_path), str(g / "garbage.bin"), model],
        "missing_caffemodel": ["verify", str(onnx_path), proto, str(g / "missing.caffemodel")],
        "garbage_caffemodel": ["verify", str(onnx_path), proto, str(g / "garbage.bin")],
        "garbage_names": _args(onnx_path, prefix, "--names", str(g / "garbage.json")),
        "list_names": _args(onnx_path, prefix, "--names", str(g / "list.json")),
        "unknown_input": _args(onnx_path, prefix, "--input", f"nope={g / 'wrong.npy'}"),
        "wrong_shape_npy": _args(onnx_path, prefix, "--input", f"input.1={g / 'wrong.npy'}"),
        "text_npy": _args(onnx_path, prefix, "--input", f"input.1={g / 'text.npy'}"),
        "garbage_npy": _args(onnx_path, prefix, "--input", f"input.1={g / 'garbage.bin'}"),
        "garbage_image": _args(onnx_path, prefix, "--image", str(g / "garbage.bin")),
        "bad_mean": _args(onnx_path, prefix, "--image", str(g / "garbage.bin"), "--mean", "1,x"),
        "mean_count": _args(onnx_path, prefix, "--image", str(g / "garbage.bin"), "--mean", "1,2"),
        "mean_without_image": _args(onnx_path, prefix, "--mean", "1,2,3"),
        "shape_mismatch": ["verify", str(g / "small.onnx"), proto, model],
        "unpairable_output": ["verify", str(onnx_path), str(g / "nofc.prototxt"), str(g / "nofc.caffemodel")],
    }[case]
    if case == "garbage_image":
        pytest.importorskip("cv2")
    rc = main(argv)
    captured = capsys.readouterr()
    assert rc == 2
    lines = captured.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("onnx2caffe: error: "), captured.err
    assert match in lines[0]
    assert captured.out == ""


def test_inputs_api_errors(tmp_path):
    with pytest.raises(InputFileError, match="no such file"):
        load_npy(str(tmp_path / "none.npy"), (1, 2), "x")
    with pytest.raises(InputFileError, match="1 or 3 channels"):
        load_image(str(tmp_path / "none.png"), (1, 4, 8, 8), "x")


# ------------------------------------------------------------------------------------------ console script


def _console_script() -> Path:
    script = Path(sys.executable).parent / "onnx2caffe"
    if not script.is_file():
        pytest.skip(f"console script {script} not installed (pip install -e .)")
    return script


def test_console_script(converted, bad_files, tmp_path):
    script = _console_script()
    onnx_path, prefix = converted
    env = dict(os.environ)
    ok = subprocess.run(
        [str(script), *_args(onnx_path, prefix, "--json")], capture_output=True, text=True, env=env
    )
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["ok"] is True
    bad = subprocess.run(
        [str(script), "verify", str(bad_files / "garbage.bin"), f"{prefix}.prototxt", f"{prefix}.caffemodel"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert bad.returncode == 2 and bad.stdout == ""
    assert "Traceback" not in bad.stderr
    assert bad.stderr.count("\n") == 1 and bad.stderr.startswith("onnx2caffe: error: ")
