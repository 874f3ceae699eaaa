"""`calibrate --html`: per quantised layer the |x| histogram and the thresholds of the chosen and the other
methods, rendered in headless Chromium; the other methods' thresholds are the ones those methods write when
chosen; a bad destination is refused before any work."""

from __future__ import annotations

import numpy as np
import pytest
from bad_inputs._util import assert_clean_error, files_under, run_cli
from chromium import assert_renders
from test_calibrate_cli import MEAN, NORM, read_table, small_net, write_images

DATA = "JSON.parse(document.getElementById('report-data').textContent)"


@pytest.fixture(scope="module")
def runtime_name():
    from caffe_runtimes import shared_runtime

    for name in ("pycaffe", "opencv"):
        try:
            shared_runtime(name)
            return name
        except pytest.skip.Exception:
            continue
    pytest.skip("no Caffe runtime installed (pycaffe or opencv)")


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    d = tmp_path_factory.mktemp("report_calibrate")
    rng = np.random.default_rng(0)
    _, (proto, model) = small_net(d, rng)
    images = write_images(d / "imgs", rng, n=4, corrupt=False)
    return proto, model, images


def _calibrate(capsys, setup, runtime, out, *extra):
    proto, model, images = setup
    return run_cli(
        capsys, "calibrate", "--proto", proto, "--model", model, "--images", images, "--output", out,
        "--mean", *map(str, MEAN), "--norm", str(NORM), "--quiet", "--runtime", runtime, *extra,
    )  # fmt: skip


def test_calibrate_page(browser, setup, runtime_name, capsys, tmp_path):
    html = tmp_path / "calib.html"
    rc, out, err = _calibrate(capsys, setup, runtime_name, tmp_path / "kl.table", "--html", html)
    assert rc == 0, err
    assert f"wrote {html}" in out
    rep = assert_renders(
        browser,
        html,
        {
            "data": DATA,
            "charts": "document.querySelectorAll('.grid figure svg').length",
            "rows": "Array.from(document.querySelectorAll('#layers tbody tr')).map(r => r.cells[1].textContent)",
        },
    )
    data = rep.values["data"]
    assert rep.values["rows"] == ["conv1", "dw", "fc"]
    assert rep.values["charts"] == len(data["blobs"]) == 3
    assert data["images_used"] == 4 and data["methods"] == ["kl"]
    table = {r[0]: float(r[1]) for r in read_table(tmp_path / "kl.table") if not r[0].endswith("_param_0")}
    for row in data["layers"]:
        kl = row["by_method"]["kl"]
        assert kl["scale"] == pytest.approx(table[row["layer"]], rel=1e-6)  # the page shows what was written
        assert kl["kl"] is not None and 0 <= kl["clipped"] < 1
        blob = data["blobs"][row["run_blob"]]
        assert set(blob["thresholds"]) == {"kl", "aciq", "minmax", "percentile"}
        assert blob["thresholds"]["minmax"] == pytest.approx(row["absmax"]) and blob["clipped"]["minmax"] == 0
        assert len(blob["hist"]) == 256 and sum(blob["hist"]) > 0
        assert row["weight_scales"]["count"] == 8 if row["layer"] != "fc" else 10


def test_other_methods_match_their_own_tables(setup, runtime_name, capsys, tmp_path):
    """Chosen aciq: the page's kl and minmax thresholds are those `--method kl` / `--method minmax` write."""
    html = tmp_path / "aciq.html"
    assert (
        _calibrate(capsys, setup, runtime_name, tmp_path / "aciq.table", "--method", "aciq", "--html", html)[
            0
        ]
        == 0
    )
    import json
    import re

    text = html.read_text(encoding="utf-8")
    data = json.loads(re.search(r'id="report-data">(.*?)</script>', text, re.S).group(1))
    assert data["methods"] == ["aciq"]
    for method in ("kl", "minmax"):
        assert (
            _calibrate(capsys, setup, runtime_name, tmp_path / f"{method}.table", "--method", method)[0] == 0
        )
        scales = {
            r[0]: float(r[1])
            for r in read_table(tmp_path / f"{method}.table")
            if not r[0].endswith("_param_0")
        }
        for row in data["layers"]:
            t = data["blobs"][row["run_blob"]]["thresholds"][method]
            assert 127.0 / t == pytest.approx(scales[row["layer"]], rel=1e-6), (method, row["layer"])


def test_calibrate_html_destination_refused_first(setup, runtime_name, capsys, tmp_path):
    (tmp_path / "page.html").mkdir()
    rc, out, err = _calibrate(
        capsys, setup, runtime_name, tmp_path / "t.table", "--html", tmp_path / "page.html"
    )
    assert_clean_error(rc, err, "page.html", "folder")
    assert out == "" and files_under(tmp_path) == []


def test_calibrate_page_with_int8_evaluation(browser, setup, runtime_name, capsys, tmp_path):
    """--method all --evaluate: the page leads with what int8 costs on ncnn per method (from the evaluation
    calibrate printed), draws 1 - cosine along the ncnn layers, and sorts the layers by their largest drift."""
    pytest.importorskip("ncnn")
    proto, model, images = setup
    held = tmp_path / "held"
    held.mkdir()
    for p in sorted(images.iterdir())[:2]:
        (held / p.name).write_bytes(p.read_bytes())
    html = tmp_path / "eval.html"
    rc, out, err = _calibrate(
        capsys,
        setup,
        runtime_name,
        tmp_path / "t.table",
        "--method",
        "all",
        "--evaluate",
        held,
        "--html",
        html,
    )
    assert rc == 0, err
    rep = assert_renders(
        browser,
        html,
        {
            "data": DATA,
            "heads": "Array.from(document.querySelectorAll('#layers thead th')).map(th => th.textContent)",
            "order": "Array.from(document.querySelectorAll('#layers tbody tr')).map(r => r.cells[1].textContent)",
            "charts": "document.querySelectorAll('figure svg').length",
        },
    )
    data = rep.values["data"]
    methods = ["kl", "kl-legacy", "aciq", "minmax", "percentile"]
    assert data["methods"] == methods
    ev = data["evaluation"]
    assert [m["method"] for m in ev["methods"]] == methods and ev["n_images"] == 2
    assert rep.values["charts"] == len(data["blobs"]) + 1  # the histograms and the int8 chart
    assert [h for h in rep.values["heads"] if h.startswith("int8 drift")] == [
        f"int8 drift {m}" for m in methods
    ]
    # the rows in order of the largest drift over the methods, as the evaluation measured it
    drift = {m["method"]: {d["layer"]: d["drift"] for d in m["layers"]} for m in ev["methods"]}
    cost = {r["layer"]: max(drift[m].get(r["layer"]) or 0.0 for m in methods) for r in data["layers"]}
    assert rep.values["order"] == sorted(cost, key=lambda n: -cost[n])
    # the thresholds shown are the ones each method's table holds
    for m in methods:
        table = tmp_path / f"t-{m}.table"
        scales = {r[0]: float(r[1]) for r in read_table(table) if not r[0].endswith("_param_0")}
        for row in data["layers"]:
            assert 127.0 / row["by_method"][m]["threshold"] == pytest.approx(scales[row["layer"]], rel=1e-6)
