"""`onnx2caffe ncnn` and onnx2caffe.ncnn: names, Split layers, the .param text, refusals, and the CLI.
Layer numerics against real Caffe are in test_ncnn_layers.py, int8 in test_ncnn_int8.py."""

from __future__ import annotations

import numpy as np
import pytest
from caffe_runtimes import shared_runtime
from ncnn_cases import conv, layer, write_case

from onnx2caffe.cli import main
from onnx2caffe.errors import InputFileError
from onnx2caffe.ncnn import NcnnUnsupportedError, caffe_to_ncnn
from onnx2caffe.ncnn.model import format_float

ncnn = pytest.importorskip("ncnn")


def _net(tmp_path, *parts, shape=(1, 4, 6, 6), name="net"):
    texts, blobs = [], {}
    for p in parts:
        if isinstance(p, tuple):
            texts.append(p[0])
            blobs.update(p[1])
        else:
            texts.append(p)
    return write_case(tmp_path, name, "\n".join(texts), blobs, shape)


def _lines(model):
    return [line.split() for line in model.param_text().splitlines()[2:]]


def test_in_place_names_splits_and_header(tmp_path):
    """conv1 -> ReLU in place -> two consumers: the ReLU's output keeps the Caffe name, the convolution's is
    renamed <blob>_<layer>; a Split feeds the two consumers; an input rewritten in place keeps its name."""
    p, m = _net(
        tmp_path,
        layer("pre", "Power", "data", "data", "power_param { scale: 2 }"),
        conv("conv1", "data", "conv1", 3, 4, extra="pad: 1"),
        layer("relu1", "ReLU", "conv1", "conv1"),
        layer("a", "Sigmoid", "conv1", "a"),
        layer("b", "TanH", "conv1", "b"),
    )
    model = caffe_to_ncnn(p, m)
    text = model.param_text().splitlines()
    assert text[0] == "7767517"
    assert text[1] == f"{len(model.layers)} {model.blob_count()}"
    rows = {r[1]: r for r in _lines(model)}
    assert rows["data"][:5] == ["Input", "data", "0", "1", "data"]
    assert rows["pre"][4:6] == ["data", "data_pre"]  # the input keeps its name for the input
    assert rows["conv1"][4:6] == ["data_pre", "conv1_conv1"]
    assert rows["relu1"][4:6] == ["conv1_conv1", "conv1"]
    assert (
        rows["splitncnn_0"][:8]
        == ["Split", "splitncnn_0", "1", "2", "conv1", "conv1_splitncnn_0", "conv1_splitncnn_1"][:8]
    )
    assert rows["a"][4] == "conv1_splitncnn_0" and rows["b"][4] == "conv1_splitncnn_1"
    assert model.blobs["conv1"].ncnn == "conv1" and model.blobs["data"].ncnn == "data_pre"
    assert model.inputs == {"data": (1, 4, 6, 6)}


def test_caffe2ncnn_parameters(tmp_path):
    """Parameter ids and values as caffe2ncnn writes them, field by field."""
    p, m = _net(
        tmp_path,
        conv(
            "c", "data", "c", 6, 4, kh=3, kw=1, extra="pad_h: 1 pad_w: 0 stride_h: 2 stride_w: 1 dilation: 1"
        ),
        conv("dw", "c", "dw", 6, 6, group=6, extra="pad: 1", bias=False),
        layer("pool", "Pooling", "dw", "pool", "pooling_param { pool: MAX kernel_size: 3 stride: 2 pad: 1 }"),
        layer("sm", "Softmax", "pool", "sm"),
        layer("cat", "Concat", ["sm", "pool"], "cat", "concat_param { axis: 2 }"),
        layer(
            "el", "Eltwise", ["cat", "cat"], "el", "eltwise_param { operation: SUM coeff: 0.5 coeff: 0.25 }"
        ),
        layer("lrn", "LRN", "el", "lrn", "lrn_param { local_size: 5 alpha: 0.0001 beta: 0.75 k: 2 }"),
    )
    model = caffe_to_ncnn(p, m)
    rows = {r[1]: r for r in _lines(model)}

    def params(name):
        r = rows[name]
        nb, nt = int(r[2]), int(r[3])
        return dict(kv.split("=") for kv in r[4 + nb + nt :])

    assert rows["c"][0] == "Convolution"
    assert params("c") == {
        "0": "6",
        "1": "1",
        "11": "3",
        "2": "1",
        "3": "1",
        "13": "2",
        "4": "0",
        "14": "1",
        "5": "1",
        "6": str(6 * 4 * 3),
    }
    assert rows["dw"][0] == "ConvolutionDepthWise"
    assert params("dw") == {"0": "6", "1": "3", "2": "1", "3": "1", "4": "1", "5": "0", "6": "54", "7": "6"}
    assert params("pool") == {"0": "0", "1": "3", "2": "2", "3": "1"}
    assert params("sm") == {"0": "0", "1": "1"}
    assert params("cat") == {"0": "1"}
    assert params("el") == {"0": "1", "-23301": "2,5.00000000e-01,2.50000000e-01"}
    assert params("lrn") == {
        "0": "0",
        "1": "5",
        "2": "9.99999975e-05",
        "3": "7.50000000e-01",
        "4": "2.00000000e+00",
    }
    # the .bin: the convolution's tagged float32 weights then the bias, as caffemodel holds them
    data = model.bin_bytes()
    conv_blobs = [x for x in model.layers if x.name == "c"][0].weights
    assert data[:4] == b"\0\0\0\0"
    assert (
        np.frombuffer(data[4 : 4 + conv_blobs[0].data.nbytes], "<f4").tolist() == conv_blobs[0].data.tolist()
    )


def test_float_format_round_trips_through_ncnn_parser():
    """9 significant digits in at most 15 characters: ncnn's 16-byte value buffer and decimal parser give back
    the same float32 (emulated here the way paramdict.cpp parses)."""

    def ncnn_parse(text):
        sign = -1.0 if text.startswith("-") else 1.0
        mant, _, exp = text.lstrip("+-").partition("e")
        whole, _, frac = mant.partition(".")
        v = float(int(whole or 0)) + (int(frac) / 10 ** len(frac) if frac else 0.0)
        e = int(exp or 0)
        v = v * 10.0**e if e >= 0 else v / 10.0 ** (-e)
        return np.float32(sign * v)

    rng = np.random.default_rng(0)
    values = np.concatenate(
        [
            rng.standard_normal(2000),
            10.0 ** rng.uniform(-30, 30, 2000),
            [1 / 3, 0.1, 1e-10, 3.4e38, -2.5e-38, 0.0],
        ]
    ).astype(np.float32)
    for v in values:
        s = format_float(v)
        assert len(s) <= 15 and ("." in s or "e" in s)
        assert ncnn_parse(s) == v, (v, s)
    with pytest.raises(ValueError):
        format_float(float("inf"))


def test_depthwise_type_names_are_grouped_convolutions(tmp_path):
    """The forks' ConvolutionDepthwise / DepthwiseConvolution types become ConvolutionDepthWise with group =
    num_output, the same layer as a Caffe Convolution with group = channels."""
    a = conv("dw", "data", "dw", 4, 4, group=4, extra="pad: 1")
    fork = (a[0].replace('type: "Convolution"', 'type: "DepthwiseConvolution"').replace("group: 4", ""), a[1])
    p1, m1 = _net(tmp_path, a, name="a")
    p2, m2 = _net(tmp_path, fork, name="b")
    l1, l2 = caffe_to_ncnn(p1, m1).layers[1], caffe_to_ncnn(p2, m2).layers[1]
    assert (l1.type, l1.params) == (l2.type, l2.params) == ("ConvolutionDepthWise", l1.params)
    assert l1.params[7] == 4


def test_clip_and_test_time_dropout_scaling(tmp_path):
    """Clip (late BVLC) and Dropout with scale_train: false (late BVLC): no runtime here has them, so
    against their definitions."""
    p, m = _net(
        tmp_path,
        layer("clip", "Clip", "data", "clip", "clip_param { min: -0.5 max: 0.25 }"),
        layer("drop", "Dropout", "data", "drop", "dropout_param { dropout_ratio: 0.25 scale_train: false }"),
    )
    x = np.random.default_rng(3).standard_normal((1, 4, 6, 6)).astype(np.float32)
    with shared_runtime("ncnn").load(p, m) as nm:
        out = nm.run({"data": x}, ["clip", "drop"])
    np.testing.assert_array_equal(out["clip"], np.clip(x, -0.5, 0.25))
    np.testing.assert_array_equal(out["drop"], x * np.float32(0.75))


def test_batch_runs_sample_by_sample_and_new_shapes(tmp_path):
    p, m = _net(
        tmp_path,
        conv("c", "data", "c", 3, 4, extra="pad: 1"),
        layer("g", "Pooling", "c", "g", "pooling_param { pool: AVE global_pooling: true }"),
        shape=(2, 4, 6, 6),
    )
    rng = np.random.default_rng(5)
    with shared_runtime("ncnn").load(p, m) as nm, shared_runtime("pycaffe").load(p, m) as cm:
        assert nm.input_names() == ["data"] and nm.output_names() == ["g"]
        for shape in ((2, 4, 6, 6), (3, 4, 9, 7)):
            x = rng.standard_normal(shape).astype(np.float32)
            ours, ref = nm.run({"data": x}), cm.run({"data": x})
            assert ours["g"].shape == ref["g"].shape == (shape[0], 3, 1, 1)
            np.testing.assert_allclose(ours["g"], ref["g"], rtol=1e-5, atol=1e-6)


REFUSALS = [
    ("python", layer("py", "Python", "data", "py", 'python_param { module: "m" layer: "L" }'), "py", "Python layer"),
    ("embed", layer("emb", "Embed", "data", "emb", "embed_param { num_output: 2 input_dim: 3 }"), "emb", "integer indices"),
    ("unknown", layer("weird", "Foo", "data", "weird"), "weird", "no ncnn layer for Caffe type 'Foo'"),
    ("batch_axis", layer("sm", "Softmax", "data", "sm", "softmax_param { axis: 0 }"), "sm", "batch axis"),
    ("five_d", layer("r", "Reshape", "data", "r", "reshape_param { shape { dim: 1 dim: 2 dim: 2 dim: 3 dim: 12 dim: 1 } }"), "r", "at most 4 axes"),
    ("mask_pool", layer("p", "Pooling", "data", ["p", "mask"], "pooling_param { pool: MAX kernel_size: 2 stride: 2 }"), "p", "mask"),
    ("stochastic", layer("p", "Pooling", "data", "p", "pooling_param { pool: STOCHASTIC kernel_size: 2 stride: 2 }"), "p", "STOCHASTIC"),
    ("loss", layer("l", "SoftmaxWithLoss", ["data", "data"], "l"), "l", "loss layer"),
]  # fmt: skip


@pytest.mark.parametrize("case", REFUSALS, ids=[c[0] for c in REFUSALS])
def test_unsupported_layers_are_refused_by_name(case, tmp_path, capsys):
    _, text, name, why = case
    # a good layer after the bad one is not reported again, a second bad one is
    p, m = _net(
        tmp_path, text, layer("fine", "ReLU", "data", "fine"), layer("also_bad", "Python", "fine", "x")
    )
    with pytest.raises(NcnnUnsupportedError) as err:
        caffe_to_ncnn(p, m)
    msg = str(err.value)
    assert f"'{name}'" in msg and why in msg and "'also_bad' (Python)" in msg and "'fine'" not in msg
    assert [n for n, _, _ in err.value.layers] == [name, "also_bad"]
    # the CLI: one line on stderr, exit 2, nothing written
    out = tmp_path / "out" / "net"
    assert main(["ncnn", p, m, "-o", str(out)]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("onnx2caffe: error: ") and name in lines[0]
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())


def test_cli_writes_both_files_atomically(tmp_path, capsys):
    p, m = _net(tmp_path, conv("c", "data", "c", 3, 4), layer("r", "ReLU", "c", "c"))
    out = tmp_path / "sub" / "model"
    assert main(["ncnn", p, m, "-o", str(out)]) == 0
    said = capsys.readouterr().out
    assert "wrote" in said and "Convolution" in said
    assert (tmp_path / "sub" / "model.param").read_text().startswith("7767517\n")
    assert (tmp_path / "sub" / "model.bin").stat().st_size == 4 + (3 * 4 * 9 + 3) * 4
    assert sorted(x.name for x in (tmp_path / "sub").iterdir()) == ["model.bin", "model.param"]
    # a destination that is a folder: error, and the other file is not written either
    (tmp_path / "d.param").mkdir()
    assert main(["ncnn", p, m, "-o", str(tmp_path / "d")]) == 2
    assert not (tmp_path / "d.bin").exists()
    assert "it is a folder" in capsys.readouterr().err
    # never over an input
    assert main(["ncnn", p, m, "-o", p[: -len(".prototxt")] + ".caffemodel" + "x"]) == 0
    assert (
        main(["ncnn", p, m, "-o", str(tmp_path / "net.caffemodel")[: -len(".caffemodel")]]) == 0
    )  # net.param/bin
    assert main(["ncnn", p, m, "--fp32-rest", "-o", str(tmp_path / "z")]) == 2
    assert "--fp32-rest only applies with --table" in capsys.readouterr().err


def test_bad_files_are_one_line_errors(tmp_path, capsys):
    p, m = _net(tmp_path, conv("c", "data", "c", 3, 4))
    bad = tmp_path / "bad.prototxt"
    bad.write_text('layer { name: "x" type: "Input" top: "x" foo_param { } }')
    for args in ([str(bad), m], [p, str(tmp_path / "missing.caffemodel")]):
        assert main(["ncnn", *args, "-o", str(tmp_path / "o")]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("onnx2caffe: error:")
    with pytest.raises(InputFileError, match="not produced by any earlier layer"):
        p2, m2 = _net(tmp_path, layer("r", "ReLU", "nothing", "r"), name="dangling")
        caffe_to_ncnn(p2, m2)
    assert not list(tmp_path.glob("o.*"))
