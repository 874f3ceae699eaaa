"""`convert --html`: what was converted (per op type, with the nodes the passes folded in), the passes, the
agreement table, a refused model's nodes and reasons (the page the only file written), a check outside
tolerance, --no-check; rendering in headless Chromium; a bad destination refused before any work."""

from __future__ import annotations

import os

import onnx
import pytest
from bad_inputs._util import assert_clean_error, files_under, run_cli
from chromium import assert_renders
from onnx import helper
from onnx_testing import make_model
from report_cases import report_model

from onnx2caffe.runtimes import available_runtimes

DATA = "JSON.parse(document.getElementById('report-data').textContent)"
VERDICT = "document.querySelector('.verdict').textContent"


@pytest.fixture(scope="module")
def runtimes():
    names = available_runtimes()
    if os.environ.get("CI") and "pycaffe" not in names:
        pytest.fail("CI is set but real Caffe (pycaffe) is unavailable")
    if not names:
        pytest.skip("no Caffe runtime installed (pycaffe or opencv)")
    return names


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    d = tmp_path_factory.mktemp("report_convert")
    onnx.save(report_model(), str(d / "m.onnx"))
    return d / "m.onnx"


def test_convert_page(browser, model_path, runtimes, capsys, tmp_path):
    html = tmp_path / "convert.html"
    rc, out, err = run_cli(capsys, "convert", model_path, "-o", tmp_path / "m", "--html", html)
    assert rc == 0, err
    assert f"wrote {html}" in out
    rep = assert_renders(browser, html, {"data": DATA, "verdict": VERDICT})
    assert rep.values["verdict"].startswith("CONVERTED AND VERIFIED")
    data = rep.values["data"]
    ops = {r["op"]: r for r in data["ops"]}
    assert ops["Conv"]["nodes"] == 2 and ops["Conv"]["caffe_layers"] == {"Convolution": 2}
    # the Pad and the Identity are not lost: they are behind the Conv nodes that took them
    assert ops["Conv"]["from_ops"] == {"Conv": 2, "Pad": 1, "Identity": 1}
    assert "Pad" not in ops and "Identity" not in ops
    ln = ops["LayerNormalization"]
    assert ln["nodes"] == 1 and sum(ln["caffe_layers"].values()) > 1 and ln["notes"]
    assert sum(sum(r["caffe_layers"].values()) for r in data["ops"]) == data["caffe_layers"]
    applied = {p["name"] for p in data["passes"] if p["applied"]}
    assert {"fold_pad_into_conv_pool", "eliminate_identity"} <= applied
    assert sorted(r["runtime"] for r in data["agreement"]) == sorted(runtimes)
    assert all(r["ok"] for r in data["agreement"])
    assert [os.path.basename(f["path"]) for f in data["files"]] == [
        "m.prototxt",
        "m.caffemodel",
        "m.names.json",
        "m.layers.json",
    ]


def test_convert_page_refused(browser, capsys, tmp_path):
    """Two nodes without a Caffe form: exit 2 with the usual one line naming both, and the page, the only
    file written, lists each with its reason."""
    nodes = [
        helper.make_node("Relu", ["x"], ["r"], name="ok_relu"),
        helper.make_node("Sin", ["r"], ["e"], name="the_sin"),
        helper.make_node("Hardmax", ["e"], ["h"], name="the_hardmax"),
    ]
    path = tmp_path / "bad.onnx"
    onnx.save(make_model(nodes, {"x": (1, 4)}, {"h": None}), str(path))
    out = tmp_path / "out"
    out.mkdir()
    html = out / "refused.html"
    rc, _, err = run_cli(capsys, "convert", path, "-o", out / "m", "--html", html)
    assert_clean_error(rc, err, "the_sin", "the_hardmax")
    assert files_under(out) == ["refused.html"]
    rep = assert_renders(
        browser,
        html,
        {
            "data": DATA,
            "verdict": VERDICT,
            "rows": "Array.from(document.querySelectorAll('table')[0].tBodies[0].rows).map(r => r.cells[0].textContent)",
        },
    )
    assert rep.values["verdict"].startswith("REFUSED: 2 node(s)")
    assert sorted(rep.values["rows"]) == ["the_hardmax", "the_sin"]
    refusals = {r["node"]: r for r in rep.values["data"]["refusals"]}
    assert refusals["the_sin"]["op"] == "Sin" and refusals["the_sin"]["reason"]
    assert rep.values["data"]["input_ops"] == {"Relu": 1, "Sin": 1, "Hardmax": 1}


def test_convert_page_outside_tolerance_and_no_check(browser, model_path, runtimes, capsys, tmp_path):
    """A tolerance no float32 conversion meets: exit 1, the page written with the rows outside it. Then
    --no-check: the page says the files are not checked."""
    html = tmp_path / "tight.html"
    rc, _, err = run_cli(
        capsys, "convert", model_path, "-o", tmp_path / "m", "--max-rel", "1e-30", "--html", html
    )
    assert_clean_error(rc, err, "disagrees with onnxruntime", code=1)
    rep = assert_renders(
        browser, html, {"data": DATA, "verdict": VERDICT, "bad": "document.querySelectorAll('tr.bad').length"}
    )
    assert rep.values["verdict"].startswith("OUTSIDE TOLERANCE") and "UNVERIFIED" in rep.values["verdict"]
    assert rep.values["bad"] >= 1
    assert rep.values["data"]["status"] == "outside tolerance"

    html = tmp_path / "nocheck.html"
    rc, _, err = run_cli(capsys, "convert", model_path, "-o", tmp_path / "n", "--no-check", "--html", html)
    assert rc == 0, err
    rep = assert_renders(browser, html, {"verdict": VERDICT})
    assert rep.values["verdict"].startswith("WRITTEN, NOT CHECKED")


def test_convert_html_destination_refused_first(model_path, capsys, tmp_path):
    out = tmp_path / "out"
    (out / "page.html").mkdir(parents=True)
    rc, stdout, err = run_cli(capsys, "convert", model_path, "-o", out / "m", "--html", out / "page.html")
    assert_clean_error(rc, err, "page.html", "folder")
    assert stdout == "" and files_under(out) == [] and os.path.isdir(out / "page.html")
