"""Bad Caffe files given to `onnx2caffe verify` and `onnx2caffe calibrate` (--proto/--model/--images): one
clean stderr line naming the file (and the line, layer or byte where it applies), exit 2, nothing written."""

from __future__ import annotations

import os

import numpy as np
import pytest

from ._util import assert_clean_error, files_under, run_cli, run_script, save, tiny_model


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """tiny_model as ONNX + its converted prototxt/caffemodel/names.json (no runtime check needed here)."""
    from onnx2caffe.convert import convert

    d = tmp_path_factory.mktemp("caffe_files")
    onnx_path = save(tiny_model(), d / "m.onnx")
    res = convert(onnx_path, str(d / "m"), check=False)
    return {"dir": d, "onnx": onnx_path, "prototxt": res.prototxt, "caffemodel": res.caffemodel}


def _verify(capsys, c, prototxt=None, caffemodel=None, *extra):
    return run_cli(
        capsys, "verify", c["onnx"], prototxt or c["prototxt"], caffemodel or c["caffemodel"], *extra
    )


def test_verify_reference_sanity(capsys, converted, caffe_runtimes):
    """The unmodified files verify fine (exit 0), so the failures below come from the damage."""
    rc, out, err = _verify(capsys, converted)
    assert rc == 0, err
    assert "OK" in out


PROTOTXT_DAMAGE = {
    "unbalanced_brace": lambda t: t.replace("}", "", 1),
    "extra_brace": lambda t: t + "}\n",
    "unterminated_string": lambda t: t.replace('name: "', 'name: "oops', 1).replace('"\n', "\n", 1),
    "unknown_field": lambda t: t.replace("layer {", "layer {\n  no_such_field: 3", 1),
    "bad_enum": lambda t: t.replace("layer {", "layer {\n  phase: SOMETIMES", 1),
    "number_as_text": lambda t: t.replace("dim: 8", "dim: eight", 1),
    "truncated": lambda t: t[: len(t) // 2],
}


@pytest.mark.parametrize("damage", sorted(PROTOTXT_DAMAGE))
def test_verify_prototxt_syntax_error(capsys, converted, tmp_path, damage):
    text = open(converted["prototxt"], encoding="utf-8").read()
    bad = tmp_path / "bad.prototxt"
    bad.write_text(PROTOTXT_DAMAGE[damage](text), encoding="utf-8")
    rc, out, err = _verify(capsys, converted, prototxt=bad)
    line = assert_clean_error(rc, err, "bad.prototxt")
    if damage not in ("truncated", "extra_brace"):
        assert "bad.prototxt:" in line, f"no line number: {line}"  # file:line[:col]
    assert files_under(tmp_path) == ["bad.prototxt"]


def test_verify_binary_as_prototxt(capsys, converted):
    rc, _, err = _verify(capsys, converted, prototxt=converted["caffemodel"])
    assert_clean_error(rc, err, "m.caffemodel")


@pytest.mark.parametrize("keep", [0, 1, 2, 0.5, -1])
def test_verify_truncated_caffemodel(capsys, converted, tmp_path, keep):
    data = open(converted["caffemodel"], "rb").read()
    n = (
        keep
        if isinstance(keep, int) and keep >= 0
        else (len(data) - 1 if keep == -1 else int(len(data) * keep))
    )
    bad = tmp_path / "cut.caffemodel"
    bad.write_bytes(data[:n])
    rc, _, err = _verify(capsys, converted, caffemodel=bad)
    assert_clean_error(rc, err, "cut.caffemodel")


def test_verify_text_as_caffemodel(capsys, converted):
    rc, _, err = _verify(capsys, converted, caffemodel=converted["prototxt"])
    assert_clean_error(rc, err, "m.prototxt")


@pytest.mark.parametrize("which", ["prototxt", "caffemodel", "onnx"])
def test_verify_missing_file(capsys, converted, tmp_path, which):
    args = dict(prototxt=converted["prototxt"], caffemodel=converted["caffemodel"])
    c = dict(converted)
    c[which] = str(tmp_path / f"missing.{which}")
    rc, _, err = run_cli(capsys, "verify", c["onnx"], c["prototxt"], c["caffemodel"])
    assert_clean_error(rc, err, f"missing.{which}")
    del args


def _mismatched_caffemodel(path, shape=(4, 3, 5, 5)):
    """A caffemodel whose layer 'conv' has weights of `shape` (the prototxt says 4x3x3x3)."""
    from onnx2caffe.caffe_net import CaffeNet

    net = CaffeNet("m")
    net.add_input("x", (1, 3, 8, 8))
    net.add_layer("conv", "Convolution", ["x"], ["c"], blobs=[np.ones(shape, np.float32)])
    net.write_caffemodel(path)
    return path


@pytest.mark.parametrize("shape", [(4, 3, 5, 5), (4, 3, 3), (8, 3, 3, 3)])
def test_verify_blob_shapes_do_not_match_prototxt(capsys, converted, tmp_path, shape, caffe_runtimes):
    bad = _mismatched_caffemodel(str(tmp_path / "shape.caffemodel"), shape)
    rc, _, err = _verify(capsys, converted, caffemodel=bad)
    assert_clean_error(rc, err, "conv")


def test_verify_caffemodel_without_weights_opencv_stderr_one_line(converted, tmp_path):
    """A caffemodel cut at a field boundary (3 bytes: just the net name) is a valid, empty NetParameter.
    verify with OpenCV must fail with exactly one stderr line: OpenCV's C++ logger must not add its own
    '[ERROR:0@...] global net_impl.cpp ... getLayerShapesRecursively' lines (onnx2caffe/runtimes/opencv.py
    should silence cv2's logging, e.g. cv2.utils.logging.setLogLevel(LOG_LEVEL_SILENT), while loading)."""
    pytest.importorskip("cv2")
    data = open(converted["caffemodel"], "rb").read()
    empty = tmp_path / "empty.caffemodel"
    empty.write_bytes(data[:3])
    from onnx2caffe.caffe_net import read_caffemodel

    assert read_caffemodel(empty).layers == []  # really a valid message without layers
    rc, _, err = run_script(
        "verify", converted["onnx"], converted["prototxt"], empty, "--runtime", "opencv", cwd=tmp_path
    )
    assert_clean_error(rc, err)


def test_verify_blob_shape_mismatch_opencv_names_layer(converted, tmp_path):
    """OpenCV's refusal of mismatching weights should name the layer or the caffemodel. Today the message
    is "opencv: running m.prototxt failed: weightShape[i + 2] == kernel_size[i] in function 'finalize'",
    naming neither the layer 'conv' nor shape.caffemodel (onnx2caffe/runtimes/opencv.py)."""
    pytest.importorskip("cv2")
    bad = _mismatched_caffemodel(str(tmp_path / "shape.caffemodel"), (4, 3, 5, 5))
    rc, _, err = run_script(
        "verify", converted["onnx"], converted["prototxt"], bad, "--runtime", "opencv", cwd=tmp_path
    )
    line = assert_clean_error(rc, err)
    assert "shape.caffemodel" in line or "'conv'" in line, line


def test_library_load_blob_shape_mismatch(converted, tmp_path):
    """CaffeNet.load attaches a caffemodel's blobs by layer name; blobs that cannot belong to the layer the
    prototxt declares (a Convolution with num_output 4 and a 3x3 kernel given 4x3x5x5 weights) are refused
    with InputFileError naming the file and the layer, as Caffe refuses them."""
    from onnx2caffe.caffe_net import CaffeNet
    from onnx2caffe.errors import InputFileError

    bad = _mismatched_caffemodel(str(tmp_path / "shape.caffemodel"))
    with pytest.raises(InputFileError, match="conv"):
        CaffeNet.load(converted["prototxt"], bad)


@pytest.mark.parametrize("name", ["pycaffe", "opencv"])
def test_runtime_load_blob_shape_mismatch(converted, tmp_path, name):
    """Both runtimes refuse mismatching blobs with a one-line RuntimeExecutionError, at load (pycaffe: the
    worker dies on Caffe's CHECK) or at the first run (OpenCV builds lazily); the runtime stays usable."""
    from caffe_runtimes import shared_runtime

    from onnx2caffe.errors import RuntimeExecutionError

    rt = shared_runtime(name)
    bad = _mismatched_caffemodel(str(tmp_path / "shape.caffemodel"))
    with pytest.raises(RuntimeExecutionError) as info:
        with rt.load(converted["prototxt"], bad) as m:
            m.run({"x": np.zeros((1, 3, 8, 8), np.float32)})
    assert "\n" not in str(info.value)
    with rt.load(converted["prototxt"], converted["caffemodel"]) as m:
        out = m.run({"x": np.zeros((1, 3, 8, 8), np.float32)})
    assert list(out.values())[0].shape == (1, 4, 8, 8)


def test_verify_names_json_corrupt(capsys, converted, tmp_path):
    bad = tmp_path / "names.json"
    bad.write_text('{"x": "x", ')
    rc, _, err = _verify(capsys, converted, None, None, "--names", bad)
    assert_clean_error(rc, err, "names.json")


# ------------------------------------------------------------------------------------------- calibrate


def _calibrate(capsys, c, images, table, proto=None, model=None, *extra):
    return run_cli(
        capsys,
        "calibrate",
        "--proto",
        proto or c["prototxt"],
        "--model",
        model or c["caffemodel"],
        "--images",
        images,
        "--output",
        table,
        "--quiet",
        *extra,
    )


@pytest.fixture
def images(tmp_path):
    import cv2

    d = tmp_path / "images"
    d.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        cv2.imwrite(str(d / f"img{i}.png"), rng.integers(0, 256, (8, 8, 3), dtype=np.uint8))
    return d


def test_calibrate_reference_sanity(capsys, converted, images, tmp_path, caffe_runtimes):
    rc, out, err = _calibrate(capsys, converted, images, tmp_path / "t.table")
    assert rc == 0, err
    assert (tmp_path / "t.table").read_text().startswith("conv_param_0 ")


def test_calibrate_all_images_corrupt(capsys, converted, tmp_path, caffe_runtimes):
    d = tmp_path / "images"
    d.mkdir()
    rng = np.random.default_rng(1)
    (d / "a.jpg").write_bytes(rng.integers(0, 256, 500, dtype=np.uint8).tobytes())
    (d / "b.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)  # a PNG signature, then nothing
    (d / "c.png").write_bytes(b"")
    (d / "d.npy").write_bytes(b"\x93NUMPY garbage")
    table = tmp_path / "t.table"
    rc, _, err = _calibrate(capsys, converted, d, table)
    line = assert_clean_error(rc, err, "images")
    assert "none of the" in line or "no usable" in line or "image" in line
    assert not table.exists() and not [n for n in os.listdir(tmp_path) if n.endswith(".tmp")]


def test_calibrate_empty_image_folder(capsys, converted, tmp_path, caffe_runtimes):
    (tmp_path / "none").mkdir()
    table = tmp_path / "t.table"
    rc, _, err = _calibrate(capsys, converted, tmp_path / "none", table)
    assert_clean_error(rc, err, "none")
    assert not table.exists()


def test_calibrate_prototxt_syntax_error(capsys, converted, images, tmp_path, caffe_runtimes):
    bad = tmp_path / "bad.prototxt"
    bad.write_text(open(converted["prototxt"]).read().replace("}", "", 1))
    table = tmp_path / "t.table"
    rc, _, err = _calibrate(capsys, converted, images, table, proto=bad)
    assert_clean_error(rc, err, "bad.prototxt")
    assert not table.exists()


def test_calibrate_truncated_caffemodel(capsys, converted, images, tmp_path, caffe_runtimes):
    bad = tmp_path / "cut.caffemodel"
    bad.write_bytes(open(converted["caffemodel"], "rb").read()[:-10])
    table = tmp_path / "t.table"
    rc, _, err = _calibrate(capsys, converted, images, table, model=bad)
    assert_clean_error(rc, err, "cut.caffemodel")
    assert not table.exists()


def test_calibrate_blob_shape_mismatch(capsys, converted, images, tmp_path, caffe_runtimes):
    bad = _mismatched_caffemodel(str(tmp_path / "shape.caffemodel"))
    table = tmp_path / "t.table"
    rc, _, err = _calibrate(capsys, converted, images, table, model=bad)
    assert_clean_error(rc, err, "conv")
    assert not table.exists()
