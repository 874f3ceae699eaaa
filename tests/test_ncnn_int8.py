"""int8: `onnx2caffe ncnn --table` quantises as ncnn2int8 does, and ncnn runs the result in int8.

The strongest check available without ncnn2int8 itself: ncnn's runtime quantises float32 weights on its own
when a layer carries int8 parameters (Convolution/ConvolutionDepthWise/InnerProduct load_model), with its
own rounding. Our int8 weights must give bit-identical outputs to that. Plus: the file layout ncnn reads,
requantize fusion, float16 storage of the float layers, and every malformed table refused in one line with
nothing written.
"""

from __future__ import annotations

import ncnn_cases
import numpy as np
import pytest
from ncnn_cases import conv, layer, rnd, write_case
from test_ncnn_layers import CountingReader

from onnx2caffe.cli import main
from onnx2caffe.errors import InputFileError
from onnx2caffe.ncnn import caffe_to_ncnn
from onnx2caffe.ncnn.model import TAG_FP16, TAG_INT8
from onnx2caffe.ncnn.quantize import round_int8
from onnx2caffe.runtimes.ncnn import NcnnRuntime, as_mat

ncnn = pytest.importorskip("ncnn")


def _net(tmp_path, name="q"):
    """conv (group 1, 3x3) -> ReLU -> depthwise (group 6) -> conv 1x1 (requantize: depthwise -> conv
    directly) -> split into two convs (requantize through a Split) -> Eltwise -> global pool -> fc, plus a
    Deconvolution that stays in float. The same weights whatever ran before."""
    ncnn_cases.RNG = np.random.default_rng(42)
    parts = [
        conv("c1", "data", "c1", 6, 4, extra="pad: 1"),
        layer("r1", "ReLU", "c1", "c1"),
        conv("dw", "c1", "dw", 6, 6, group=6, extra="pad: 1"),
        conv("pw", "dw", "pw", 8, 6, k=1),
        conv("b1", "pw", "b1", 8, 8, k=1),
        conv("b2", "pw", "b2", 8, 8, k=3, extra="pad: 1"),
        layer("sum", "Eltwise", ["b1", "b2"], "sum"),
        (layer("up", "Deconvolution", "sum", "up", "convolution_param { num_output: 2 kernel_size: 2 stride: 2 }"), {"up": [rnd(8, 2, 2, 2), rnd(2)]}),
        layer("gp", "Pooling", "sum", "gp", "pooling_param { pool: AVE global_pooling: true }"),
        (layer("fc", "InnerProduct", "gp", "fc", "inner_product_param { num_output: 5 }"), {"fc": [rnd(5, 8), rnd(5)]}),
    ]  # fmt: skip
    texts, blobs = [], {}
    for p in parts:
        texts.append(p[0] if isinstance(p, tuple) else p)
        if isinstance(p, tuple):
            blobs.update(p[1])
    return write_case(tmp_path, name, "\n".join(texts), blobs, (1, 4, 10, 10))


QUANT = {"c1": 6, "dw": 6, "pw": 8, "b1": 8, "b2": 8, "fc": 5}


def _table(tmp_path, weights=None, acts=None, style="ncnn", name="t.table", extra=""):
    rng = np.random.default_rng(7)
    weights = weights or {n: list(rng.uniform(20, 200, k)) for n, k in QUANT.items()}
    acts = acts or {n: [float(rng.uniform(5, 40))] for n in QUANT}
    if style == "ncnn":
        fmt = lambda vs: "".join(f"{v:f} " for v in vs)  # noqa: E731
    else:
        fmt = lambda vs: " ".join(repr(float(v)) for v in vs)  # noqa: E731
    text = "".join(f"{n}_param_0 {fmt(v)}\n" for n, v in weights.items())
    text += "".join(f"{n} {fmt(v)}\n" for n, v in acts.items()) + extra
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def _run(param, binf, x, blobs):
    net = ncnn.Net()
    net.opt = NcnnRuntime().option()
    assert net.load_param(str(param)) == 0 and net.load_model(str(binf)) == 0
    ex = net.create_extractor()
    ex.input("data", as_mat(ncnn, x))
    out = {}
    for b in blobs:
        ret, mat = ex.extract(b)
        assert ret == 0, b
        out[b] = np.array(mat).copy()
    return out


def test_int8_weights_equal_ncnn_own_quantisation(tmp_path):
    p, m = _net(tmp_path)
    table = _table(tmp_path)
    ours = caffe_to_ncnn(p, m, table=table, fp16_rest=False)
    # the same net with float32 weights and the int8 parameters: ncnn quantises the weights at load time
    theirs = caffe_to_ncnn(p, m, table=table, fp16_rest=False)
    fp32 = {ly.name: ly.weights[0] for ly in caffe_to_ncnn(p, m).layers if ly.weights}
    for ly in theirs.layers:
        if ly.name in theirs.int8:
            ly.weights[0] = fp32[ly.name]
    assert sorted(ours.int8) == sorted(QUANT)
    for model, stem in ((ours, "ours"), (theirs, "theirs")):
        model.write(tmp_path / f"{stem}.param", tmp_path / f"{stem}.bin")
    x = np.random.default_rng(1).standard_normal((4, 10, 10)).astype(np.float32)
    blobs = ["c1", "dw", "pw", "b1", "b2", "sum", "up", "fc"]
    a = _run(tmp_path / "ours.param", tmp_path / "ours.bin", x, blobs)
    b = _run(tmp_path / "theirs.param", tmp_path / "theirs.bin", x, blobs)
    for name in blobs:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)
    # and int8 really ran: the result is not the float32 one (how close it is: the calibrated test below)
    f = _run_fp32(tmp_path, p, m, x, ["fc"])
    assert not np.array_equal(a["fc"], f["fc"])


def _run_fp32(tmp_path, p, m, x, blobs):
    caffe_to_ncnn(p, m).write(tmp_path / "f.param", tmp_path / "f.bin")
    return _run(tmp_path / "f.param", tmp_path / "f.bin", x, blobs)


def test_int8_file_layout(tmp_path):
    p, m = _net(tmp_path)
    table = _table(tmp_path)
    model = caffe_to_ncnn(p, m, table=table)
    by = {ly.name: ly for ly in model.layers}
    assert by["c1"].params[8] == 2 and by["fc"].params[8] == 2 and by["b1"].params[8] == 2
    assert by["dw"].params[8] == 101  # 1 (per-group scales) + 100: requantized straight into pw
    assert by["pw"].params[8] == 102  # through a Split whose consumers are all int8 convolutions
    assert by["b2"].params[8] == 2  # its consumer is an Eltwise: no requantize
    w = by["c1"].weights
    assert w[0].data.dtype == np.int8 and w[0].tagged and w[0].tag() == TAG_INT8
    assert [x.data.size for x in w] == [6 * 4 * 9, 6, 6, 1]  # weights, bias, weight scales, bottom scale
    assert by["dw"].weights[-1].data.size == 1 and len(by["dw"].weights) == 5  # + the top scale
    assert by["up"].weights[0].data.dtype == np.float16 and by["up"].weights[0].tag() == TAG_FP16
    assert by["up"].weights[1].data.dtype == np.float32  # biases stay float32, as ncnn2int8 writes them
    # ncnn reads exactly these pieces
    model.write(tmp_path / "q.param", tmp_path / "q.bin")
    data = (tmp_path / "q.bin").read_bytes()
    net = ncnn.Net()
    assert net.load_param(str(tmp_path / "q.param")) == 0
    reader = CountingReader(data)
    assert net.load_model(reader) == 0
    assert reader.reads == [n for _, n in model.weight_reads()] and reader.pos == len(data)
    # --fp32-rest
    kept = caffe_to_ncnn(p, m, table=table, fp16_rest=False)
    assert {ly.name: ly for ly in kept.layers}["up"].weights[0].data.dtype == np.float32


def _calibrated_table(tmp_path, p, m, x):
    """Scales from the float32 net itself (weights: 127 / max|w| per channel; activations: 127 / max|x| of
    the layer's input on x), so that int8 is a fair approximation."""
    model = caffe_to_ncnn(p, m)
    by = {ly.name: ly for ly in model.layers}
    bottoms = {"c1": "data", "dw": "c1", "pw": "dw", "b1": "pw", "b2": "pw", "fc": "gp"}
    with NcnnRuntime().load(p, m) as f:
        act = f.run({"data": x}, [b for b in bottoms.values() if b != "data"])
    act["data"] = x
    weights, acts = {}, {}
    for n, k in QUANT.items():
        w = by[n].weights[0].data.reshape(k, -1)
        weights[n] = list(127 / np.abs(w).max(axis=1))
        acts[n] = [127 / float(np.abs(act[bottoms[n]]).max())]
    return _table(tmp_path, weights=weights, acts=acts, name="calibrated.table")


def test_int8_runtime_and_requantized_blobs(tmp_path):
    """The runtime runs the int8 model (use_int8_inference) and gives blobs kept in int8 back in float."""
    p, m = _net(tmp_path)
    x = np.random.default_rng(2).standard_normal((1, 4, 10, 10)).astype(np.float32)
    table = _calibrated_table(tmp_path, p, m, x)
    with NcnnRuntime(table=table).load(p, m) as q, NcnnRuntime().load(p, m) as f:
        assert q.ncnn_model.requantized  # dw's output is int8 in ncnn
        names = ["c1", "dw", "pw", "sum", "fc"]
        a, b = q.run({"data": x}, names), f.run({"data": x}, names)
    for n in names:
        cos = float(np.dot(a[n].ravel(), b[n].ravel()) / np.linalg.norm(a[n]) / np.linalg.norm(b[n]))
        assert a[n].shape == b[n].shape and 0.99 < cos < 1 - 1e-9, (n, cos)


def test_rounding_is_ncnn_simd_rounding():
    v = np.array(
        [0.5, -0.5, 1.5, 2.5, -2.5, 126.6, 200, -300, 0.49999997, np.float32(0.5) - np.float32(2**-25)],
        np.float32,
    )
    assert round_int8(v).tolist() == [1, -1, 2, 3, -3, 127, 127, -127, 1, 1]


def test_table_styles_and_single_scale(tmp_path):
    p, m = _net(tmp_path)
    ncnn_style = caffe_to_ncnn(p, m, table=_table(tmp_path, style="ncnn", name="a"))
    legacy = caffe_to_ncnn(p, m, table=_table(tmp_path, style="legacy", name="b"))
    assert sorted(ncnn_style.int8) == sorted(legacy.int8) == sorted(QUANT)
    # CRLF line ends; everything after the first blank line is ignored, as ncnn2int8 does
    t = tmp_path / "c"
    t.write_bytes(
        open(_table(tmp_path, name="c0"), "rb").read().replace(b"\n", b"\r\n") + b"\r\nnot a line at all\n"
    )
    assert sorted(caffe_to_ncnn(p, m, table=str(t)).int8) == sorted(QUANT)
    # one weight scale per layer: every channel gets it (ConvolutionDepthWise keeps one, int8_scale_term 2)
    single = _table(tmp_path, weights={n: [50.0] for n in QUANT}, name="d")
    model = caffe_to_ncnn(p, m, table=single)
    by = {ly.name: ly for ly in model.layers}
    assert by["c1"].weights[2].data.tolist() == [50.0] * 6
    assert by["dw"].params[8] in (2, 102) and by["dw"].weights[2].data.tolist() == [50.0]


def test_zero_weight_scale_only_for_zero_channels(tmp_path):
    p, m = _net(tmp_path)
    weights = {n: [60.0] * k for n, k in QUANT.items()}
    weights["fc"][0] = 0.0
    with pytest.raises(InputFileError, match=r"weight scale 0 for channel 0 of layer 'fc'"):
        caffe_to_ncnn(p, m, table=_table(tmp_path, weights=weights, name="z"))


BAD_TABLES = [
    ("extra layer", dict(extra="ghost 3.0\n"), "layer 'ghost', which the net does not have"),
    ("not quantisable", dict(extra="r1 3.0\n"), "'r1' is a ReLU"),
    ("missing weight", dict(drop_w="b2"), "no line for b2 (weight)"),
    ("missing activation", dict(drop_a="fc"), "no line for fc (activation)"),
    ("zero activation", dict(act=("pw", "0")), "activation scale 0.0 of layer 'pw'"),
    ("negative activation", dict(act=("pw", "-2")), "activation scale -2.0 of layer 'pw'"),
    ("nan activation", dict(act=("pw", "nan")), "activation scale nan of layer 'pw'"),
    ("inf weight", dict(w=("c1", "inf")), "weight scale inf of layer 'c1'"),
    ("negative weight", dict(w=("c1", "-1")), "weight scale -1.0 of layer 'c1'"),
    ("wrong count", dict(count=("fc", 3)), "3 weight scales for layer 'fc', which has 5 output channels"),
    ("two activations", dict(act=("fc", "2 3")), "2 activation scales for layer 'fc'"),
    ("not a number", dict(act=("fc", "abc")), "'abc' is not a number"),
    ("duplicate", dict(extra="fc 3.0\n"), "second activation line for layer 'fc'"),
    ("other param", dict(extra="fc_param_1 3.0\n"), "_param_0"),
]


@pytest.mark.parametrize("case", BAD_TABLES, ids=[c[0] for c in BAD_TABLES])
def test_bad_tables_are_one_line_errors(case, tmp_path, capsys):
    _, how, message = case
    p, m = _net(tmp_path)
    rng = np.random.default_rng(3)
    weights = {n: [f"{x:f}" for x in rng.uniform(20, 200, k)] for n, k in QUANT.items()}
    acts = {n: ["12.5"] for n in QUANT}
    if "drop_w" in how:
        del weights[how["drop_w"]]
    if "drop_a" in how:
        del acts[how["drop_a"]]
    if "act" in how:
        acts[how["act"][0]] = how["act"][1].split()
    if "w" in how:
        weights[how["w"][0]][0] = how["w"][1]
    if "count" in how:
        weights[how["count"][0]] = weights[how["count"][0]][: how["count"][1]]
    text = "".join(f"{n}_param_0 {' '.join(v)}\n" for n, v in weights.items())
    text += "".join(f"{n} {' '.join(v)}\n" for n, v in acts.items()) + how.get("extra", "")
    table = tmp_path / "bad.table"
    table.write_text(text)
    out = tmp_path / "o" / "net"
    assert main(["ncnn", p, m, "--table", str(table), "-o", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("onnx2caffe: error: ") and message in err[0], err
    assert str(table) in err[0]
    assert not (tmp_path / "o").exists()


def test_cli_int8(tmp_path, capsys):
    p, m = _net(tmp_path)
    out = tmp_path / "int8"
    assert main(["ncnn", p, m, "--table", _table(tmp_path), "-o", str(out)]) == 0
    said = capsys.readouterr().out
    assert "int8: 6 layers" in said and "requantize fused" in said
    text = (tmp_path / "int8.param").read_text()
    assert " 8=2" in text and " 8=101" in text
