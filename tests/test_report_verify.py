"""`verify --html`: the page's content (verdict, input, per-layer rows with their ONNX origin, the first layer
outside tolerance), its rendering in headless Chromium (no console error, no request, 1280 px, printable,
sortable table), and bad input (one line, nothing written).

One small model with a fused Pad (fold_pad_into_conv_pool), an Identity the passes remove and a
LayerNormalization (a composition of several Caffe layers) is converted once per module."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import onnx
import pytest
from bad_inputs._util import assert_clean_error, files_under, run_cli
from chromium import assert_renders
from report_cases import report_model

from onnx2caffe.caffe_net import CaffeNet
from onnx2caffe.convert import convert
from onnx2caffe.runtimes import available_runtimes


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
    d = tmp_path_factory.mktemp("report_verify")
    onnx.save(report_model(), str(d / "m.onnx"))
    convert(str(d / "m.onnx"), str(d / "m"), check=False)
    return d / "m.onnx", d / "m"


def _verify(capsys, onnx_path, prefix, html, *extra):
    return run_cli(
        capsys, "verify", onnx_path, f"{prefix}.prototxt", f"{prefix}.caffemodel", "--html", html, *extra
    )


DATA = "JSON.parse(document.getElementById('report-data').textContent)"


def test_verify_page(browser, converted, runtimes, capsys, tmp_path):
    onnx_path, prefix = converted
    html = tmp_path / "new" / "folder" / "report.html"  # created, as convert creates its output folder
    rc, out, err = _verify(capsys, onnx_path, prefix, html, "--per-layer")
    assert rc == 0, err
    assert f"wrote {html}" in out
    rep = assert_renders(
        browser,
        html,
        {
            "data": DATA,
            "verdict": "document.querySelector('.verdict').textContent",
            "rows": "document.querySelectorAll('#layers tbody tr').length",
            "charts": "document.querySelectorAll('figure svg').length",
        },
    )
    v = rep.values
    assert v["verdict"].startswith(f"OK: {len(runtimes)} output comparison(s) within tolerance")
    assert v["charts"] == 1
    data = v["data"]
    net = CaffeNet.load(f"{prefix}.prototxt")
    tops = [(ly.name, t) for ly in net.layers if ly.type != "Input" for t in ly.top]
    assert [(r["layer"], r["blob"]) for r in data["layers"]] == tops  # one row per blob, in layer order
    assert v["rows"] == len(tops)
    assert data["layers_file"] == f"{prefix}.layers.json"
    assert data["inputs"] == [{"onnx": "x", "blob": "x", "source": "random (seed 0)", "shape": [1, 3, 8, 8]}]
    by_layer = {r["layer"]: r for r in data["layers"]}
    # the Pad folded into conv1 and the Identity removed before conv2 are shown with the node that took them
    assert by_layer["conv1"]["onnx_nodes"] == [["pad0", "Pad"], ["conv1", "Conv"]]
    assert by_layer["conv2"]["onnx_nodes"] == [["copy", "Identity"], ["conv2", "Conv"]]
    norm = [r for r in data["layers"] if r["node"] == "norm"]
    assert len(norm) > 1 and all(r["op"] == "LayerNormalization" for r in norm)
    assert all(r["composition_size"] == len(norm) for r in norm)
    assert sorted(by_layer["fc"]["results"]) == sorted(runtimes)
    assert all(v["ok"] is not False for r in data["layers"] for v in r["results"].values())


def test_verify_page_table_sorts(browser, converted, capsys, tmp_path):
    """Clicking the max_rel header sorts the rows by that value (descending on the second click), with the
    rows that were not compared last; clicking the layer header sorts by name."""
    onnx_path, prefix = converted
    html = tmp_path / "r.html"
    assert _verify(capsys, onnx_path, prefix, html, "--per-layer")[0] == 0
    heads = "Array.from(document.querySelectorAll('#layers thead th'))"
    rel = f"{heads}.findIndex(th => th.textContent.startsWith('max_rel'))"
    read = f"Array.from(document.querySelectorAll('#layers tbody tr')).map(r => r.cells[{rel}].getAttribute('data-v'))"
    click = f"{heads}[{rel}].click()"
    names = "Array.from(document.querySelectorAll('#layers tbody tr')).map(r => r.cells[1].textContent)"
    by_name = f"{heads}.find(th => th.textContent.startsWith('layer')).click()"
    rep = browser.open_page(
        html,
        expressions={
            "before": read, "c1": click, "asc": read, "c2": click, "desc": read, "c3": by_name, "names": names,
        },
    )  # fmt: skip
    assert rep.console_errors == []

    def values(keys):  # a row not compared has no value (null): it must come after the compared ones
        nums = [float(k) for k in keys if k is not None]
        assert keys[: len(nums)] == [k for k in keys if k is not None], "compared rows first"
        return nums

    asc, desc = values(rep.values["asc"]), values(rep.values["desc"])
    assert len(asc) >= 4 and asc == sorted(asc) and desc == sorted(desc, reverse=True)
    assert len(asc) < len(rep.values["asc"])  # some rows are not compared (a composition's inner blobs)
    assert sorted(asc) == sorted(float(k) for k in rep.values["before"] if k is not None)
    assert (
        rep.values["names"] == sorted(rep.values["names"], key=str.lower)
        and len(set(rep.values["names"])) > 4
    )


def test_verify_page_failing(browser, converted, runtimes, capsys, tmp_path):
    """A wrong weight: exit 1 with the usual one line, and the page names conv2 as the first layer outside
    tolerance of every runtime (the row marked, the chart annotated)."""
    onnx_path, prefix = converted
    net = CaffeNet.load(f"{prefix}.prototxt", f"{prefix}.caffemodel")
    w, b = net.layer("conv2").blobs
    w = w.copy()
    w[0, 0, 1, 1] += 1.0
    net.layer("conv2").blobs = [w, b]
    net.save(tmp_path / "bad")
    for ext in (".names.json", ".layers.json"):
        shutil.copy(f"{prefix}{ext}", tmp_path / f"bad{ext}")
    html = tmp_path / "bad.html"
    rc, _, err = _verify(capsys, onnx_path, tmp_path / "bad", html, "--per-layer")
    assert_clean_error(rc, err, "disagrees with onnxruntime", code=1)
    rep = assert_renders(
        browser,
        html,
        {
            "data": DATA,
            "verdict": "document.querySelector('.verdict').textContent",
            "first": "Array.from(document.querySelectorAll('#layers tr.first')).map(r => r.cells[1].textContent)",
            "svg": "document.querySelector('figure svg').textContent",
        },
    )
    assert rep.values["verdict"].startswith("FAILED: ")
    for rt in runtimes:
        assert f"{rt}: first layer outside tolerance #" in rep.values["verdict"]
        assert f"{rt}: first outside tolerance" in rep.values["svg"]
    assert rep.values["first"] == ["conv2"]
    pos = rep.values["data"]["first_position"]
    assert set(pos) == set(runtimes) and len(set(pos.values())) == 1


def test_verify_page_without_layers_file_and_image_input(browser, converted, capsys, tmp_path):
    """Without layers.json (a model converted by an older onnx2caffe, or by hand) the compared layers still
    name their node: the producer of the ONNX tensor their blob was paired with. The input section shows the
    image and its preprocessing."""
    import cv2

    onnx_path, prefix = converted
    for ext in (".prototxt", ".caffemodel", ".names.json"):
        shutil.copy(f"{prefix}{ext}", tmp_path / f"m{ext}")
    img = tmp_path / "in.png"
    cv2.imwrite(str(img), (np.arange(12 * 10 * 3) % 255).astype(np.uint8).reshape(12, 10, 3))
    html = tmp_path / "old.html"
    rc, _, err = _verify(
        capsys, onnx_path, tmp_path / "m", html, "--per-layer", "--image", img, "--mean", "100,110,120",
        "--scale", "0.02", "--pixel", "RGB",
    )  # fmt: skip
    assert rc == 0, err
    rep = assert_renders(
        browser, html, {"data": DATA, "input": "document.querySelector('table').textContent"}
    )
    data = rep.values["data"]
    assert data["layers_file"] is None
    by_layer = {r["layer"]: r for r in data["layers"]}
    assert by_layer["conv2"]["onnx_nodes"] == [["conv2", "Conv"]] and by_layer["conv2"]["op"] == "Conv"
    assert by_layer["fc"]["node"] == "fc"
    assert data["inputs"][0]["source"] == f"image {img}"
    text = rep.values["input"]
    assert "resized to 8x8" in text and "mean 100,110,120" in text and "scale 0.02" in text and "RGB" in text


def test_verify_page_without_per_layer(browser, converted, capsys, tmp_path):
    onnx_path, prefix = converted
    html = tmp_path / "short.html"
    rc, _, err = _verify(capsys, onnx_path, prefix, html, "--json")
    assert rc == 0, err
    rep = assert_renders(browser, html, {"text": "document.body.textContent"})
    assert "--per-layer" in rep.values["text"] and "Graph outputs" in rep.values["text"]


# ------------------------------------------------------------------------------------------ bad input


@pytest.mark.parametrize("where", ["folder", "under a file"])
def test_verify_html_destination_refused_first(converted, capsys, tmp_path, where):
    """An --html path that cannot be written is refused before verify runs: one line, exit 2, nothing."""
    onnx_path, prefix = converted
    out = tmp_path / "out"
    out.mkdir()
    if where == "under a file":
        (out / "afile").write_text("x")
    html = out if where == "folder" else out / "afile" / "r.html"
    rc, stdout, err = _verify(capsys, onnx_path, prefix, html, "--per-layer")
    assert_clean_error(rc, err, str(html))
    assert stdout == "" and files_under(out) == ([] if where == "folder" else ["afile"])


def test_verify_html_corrupt_layers_file(converted, capsys, tmp_path):
    onnx_path, prefix = converted
    for ext in (".prototxt", ".caffemodel", ".names.json"):
        shutil.copy(f"{prefix}{ext}", tmp_path / f"m{ext}")
    (tmp_path / "m.layers.json").write_text(json.dumps({"format": "something else"}))
    rc, _, err = _verify(capsys, onnx_path, tmp_path / "m", tmp_path / "r.html", "--per-layer")
    assert_clean_error(rc, err, "m.layers.json", "not a layers file")
    assert not (tmp_path / "r.html").exists()
    assert not [n for n in os.listdir(tmp_path) if n.endswith(".tmp")]


def test_verify_page_escapes_names(browser, runtimes, capsys, tmp_path):
    """Node and tensor names are text, never markup: names that would be an image request or a script if
    pasted into the page unescaped render as themselves (no request, no console error)."""
    from onnx import helper
    from onnx_testing import make_model

    bad_node = '<img src="x.png" onerror="console.error(1)">'
    bad_tensor = "</script><script>console.error(2)</script>"
    rng = np.random.default_rng(0)
    nodes = [
        helper.make_node("Conv", ["x", "w"], [bad_tensor], name=bad_node, pads=[1, 1, 1, 1]),
        helper.make_node("Relu", [bad_tensor], ["y"], name="r&amp;"),
    ]
    model = make_model(
        nodes, {"x": (1, 2, 4, 4)}, {"y": None}, {"w": rng.standard_normal((2, 2, 3, 3)).astype(np.float32)}
    )
    onnx.save(model, str(tmp_path / "m.onnx"))
    convert(str(tmp_path / "m.onnx"), str(tmp_path / "m"), check=False)
    html = tmp_path / "names.html"
    rc, _, err = _verify(capsys, tmp_path / "m.onnx", tmp_path / "m", html, "--per-layer")
    assert rc == 0, err
    rep = assert_renders(
        browser, html, {"text": "document.getElementById('layers').textContent", "data": DATA}
    )
    assert bad_node in rep.values["text"] and "r&amp;" in rep.values["text"]
    assert rep.values["data"]["layers"][0]["node"] == bad_node
