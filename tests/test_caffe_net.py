"""Tests of the Caffe model library: onnx2caffe/caffe_net.py and onnx2caffe/fileio.py."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import textwrap
import unicodedata
from pathlib import Path

import numpy as np
import pytest
from google.protobuf import text_format
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from onnx2caffe import caffe_net as cn
from onnx2caffe.caffe_net import CaffeNet, Layer, read_caffemodel, read_prototxt
from onnx2caffe.errors import InputFileError, InvalidNameError, OutputFileError
from onnx2caffe.fileio import atomic_write
from onnx2caffe.proto import caffe_pb2

REPO = Path(__file__).resolve().parents[1]

# Names that must survive prototxt escaping unchanged.
ODD_NAMES = [
    'conv "quoted" name',
    "it's/a\\path",
    "tab-free spaces  and  more",
    "ünïcödé/卷积/😀",
    "semi;colon{brace}#hash",
]


def build_net(seed: int = 0) -> CaffeNet:
    rng = np.random.default_rng(seed)
    net = CaffeNet('odd "net" name/é')
    net.add_input("data", (2, 3, 8, 8))
    net.add_input("aux in", (2, 4))
    n0, n1, n2, n3, n4 = ODD_NAMES
    net.add_layer(
        n0,
        "Convolution",
        ["data"],
        [n1],
        blobs=[rng.standard_normal((4, 3, 3, 3)), rng.standard_normal(4)],
        convolution_param={"num_output": 4, "kernel_size": [3], "pad": [1], "stride": [1], "group": 1},
    )
    net.add_layer(
        "bn",
        "BatchNorm",
        n1,
        n1,
        blobs=[rng.random(4), rng.random(4) + 0.5, np.ones(1)],
        batch_norm_param={"eps": 1e-5, "use_global_stats": True},
    )
    net.add_layer(
        "scale", "Scale", n1, n1, blobs=[rng.random(4), rng.random(4)], scale_param={"bias_term": True}
    )
    net.add_layer("relu", "ReLU", n1, n1, relu_param={"negative_slope": 0.1})
    net.add_layer(
        n2, "Pooling", n1, "pool", pooling_param={"pool": "AVE", "kernel_size": 2, "stride": 2, "pad": 0}
    )
    net.add_layer(
        n3,
        "InnerProduct",
        "pool",
        "ip",
        blobs=[rng.standard_normal((5, 64)), rng.standard_normal(5)],
        inner_product_param={"num_output": 5},
        param=[{"lr_mult": 1.0, "decay_mult": 1.0}, {"lr_mult": 2.0, "decay_mult": 0.0}],
    )
    net.add_layer(n4, "Concat", ["ip", "aux in"], "cat", concat_param={"axis": 1})
    eltwise = caffe_pb2.EltwiseParameter(operation=caffe_pb2.EltwiseParameter.SUM, coeff=[0.5, -1.25])
    net.add_layer("sum", "Eltwise", ["cat", "cat"], "sum", eltwise_param=eltwise)
    net.add_layer("reshape", "Reshape", "sum", "r", reshape_param={"shape": {"dim": [0, -1, 1, 1]}})
    # Odd blob shapes: a 0-axis scalar, an empty blob, a 5-D blob; NaN/inf/-0 values must survive too.
    special = np.array([np.nan, np.inf, -np.inf, -0.0, 1e-45, 3.4028235e38], dtype=np.float32)
    net.add_layer(
        "odd blobs",
        "Python",
        "r",
        "out",
        blobs=[np.float32(2.5), np.zeros((0,)), rng.standard_normal((1, 2, 1, 3, 2)), special],
        python_param={"module": "m", "layer": "L", "param_str": 'x="1"\n'},
    )
    net.add_layer("prob", "Softmax", "out", "prob", softmax_param={"axis": 1})
    return net


def assert_same_net(a: CaffeNet, b: CaffeNet) -> None:
    assert a.name == b.name
    assert [layer.name for layer in a.layers] == [layer.name for layer in b.layers]
    for la, lb in zip(a.layers, b.layers, strict=True):
        assert la.proto == lb.proto, la.name
        assert len(la.blobs) == len(lb.blobs), la.name
        for x, y in zip(la.blobs, lb.blobs, strict=True):
            assert y.dtype == np.float32 and x.shape == y.shape
            # Exact: float32 in, float32 bytes out; compare bit patterns so NaN and -0.0 count too.
            assert x.tobytes() == y.tobytes(), la.name


# ------------------------------------------------------------------------------------------ round trip


def test_round_trip_is_byte_identical(tmp_path):
    net = build_net()
    p1, m1 = net.save(tmp_path / "a")
    assert (p1, m1) == (str(tmp_path / "a.prototxt"), str(tmp_path / "a.caffemodel"))
    back = CaffeNet.load(p1, m1)
    assert_same_net(net, back)
    p2, m2 = back.save(tmp_path / "b")
    assert Path(p1).read_bytes() == Path(p2).read_bytes()
    assert Path(m1).read_bytes() == Path(m2).read_bytes()
    # A third generation through from_proto(to_proto(with_blobs=True)) gives the same bytes as well.
    third = CaffeNet.from_proto(back.to_proto(with_blobs=True))
    p3, m3 = third.save(tmp_path / "c")
    assert Path(p1).read_bytes() == Path(p3).read_bytes()
    assert Path(m1).read_bytes() == Path(m3).read_bytes()


def test_prototxt_is_readable_text_without_blobs(tmp_path):
    net = build_net()
    path = tmp_path / "n.prototxt"
    net.write_prototxt(path)
    text = path.read_text(encoding="utf-8")
    parsed = text_format.Parse(text, caffe_pb2.NetParameter())
    assert all(len(lp.blobs) == 0 for lp in parsed.layer)
    assert [lp.name for lp in parsed.layer][:2] == ["data", "aux in"]
    assert parsed.layer[0].type == "Input" and list(parsed.layer[0].input_param.shape[0].dim) == [2, 3, 8, 8]
    assert "pool: AVE" in text and "ünïcödé/卷积/😀" in text  # enum names, UTF-8 kept readable
    assert r'name: "conv \"quoted\" name"' in text
    assert not parsed.input and not parsed.input_dim  # inputs are Input layers, not legacy fields


def test_caffemodel_holds_only_name_type_blobs(tmp_path):
    net = build_net()
    path = tmp_path / "n.caffemodel"
    net.write_caffemodel(path)
    # Decode with protobuf itself (independent of our reader).
    parsed = caffe_pb2.NetParameter.FromString(path.read_bytes())
    with_blobs = [layer for layer in net.layers if layer.blobs]
    assert parsed.name == net.name
    assert [lp.name for lp in parsed.layer] == [layer.name for layer in with_blobs]
    for lp, layer in zip(parsed.layer, with_blobs, strict=True):
        assert {fd.name for fd, _ in lp.ListFields()} == {"name", "type", "blobs"}
        assert lp.type == layer.type
        for bp, blob in zip(lp.blobs, layer.blobs, strict=True):
            assert tuple(bp.shape.dim) == blob.shape
            assert np.array(bp.data, dtype=np.float32).tobytes() == blob.tobytes()
            assert len(bp.double_data) == 0 and not bp.HasField("num")


def test_layer_api():
    w = np.arange(24, dtype=np.float64).reshape(2, 3, 2, 2)
    layer = Layer(
        "c", "Convolution", "x", "y", blobs=[w], convolution_param={"num_output": 2, "kernel_size": [2]}
    )
    assert layer.bottom == ["x"] and layer.top == ["y"] and layer.type == "Convolution"
    assert layer.blobs[0].dtype == np.float32 and layer.blobs[0].flags.c_contiguous
    assert not layer.proto.blobs and layer.proto.convolution_param.num_output == 2
    pool = Layer(
        "p", "Pooling", ["y"], ["z"], pooling_param=caffe_pb2.PoolingParameter(pool=1, kernel_size=3)
    )
    assert pool.proto.pooling_param.pool == caffe_pb2.PoolingParameter.AVE
    with pytest.raises(ValueError, match="no settable field 'not_a_field'"):
        Layer("q", "ReLU", "a", "a", not_a_field={})
    with pytest.raises(ValueError, match="layer 'q'"):
        Layer("q", "ReLU", "a", "a", relu_param={"slope": 1})

    net = CaffeNet("n")
    net.add_input("data", (1, 3, 4, 4))
    net.add_layer("conv", "Convolution", "data", "conv", convolution_param={"num_output": 2})
    net.add_layer("relu", "ReLU", "conv", "conv")
    net.add_layer("split", "Slice", "conv", ["a", "b"], slice_param={"axis": 1})
    net.add_layer("use_a", "AbsVal", "a", "a2")
    assert net.inputs == {"data": (1, 3, 4, 4)}
    assert net.outputs == ["b", "a2"]
    assert net.layer("relu").type == "ReLU"
    with pytest.raises(KeyError):
        net.layer("missing")
    assert net.remove("use_a").name == "use_a"
    assert net.outputs == ["a", "b"]
    net.add_layer("use_a", "AbsVal", "a", "a2")  # the name is free again after remove
    assert [layer.name for layer in net.layers][-1] == "use_a"


# ------------------------------------------------------------------------------------------ names


@pytest.mark.parametrize(
    "bad",
    ["", "a\nb", "nul\x00", "tab\there", "del\x7f", "c1\x85", "line\u2028sep", "\ud800", b"\xff\xfe"],
    ids=["empty", "newline", "nul", "tab", "del", "c1", "u2028", "surrogate", "bad-utf8"],
)
def test_bad_names_rejected(bad):
    with pytest.raises(InvalidNameError, match="layer name"):
        Layer(bad, "ReLU", "x", "x")
    # In a bottom/top the error names the layer it belongs to.
    with pytest.raises(InvalidNameError, match="layer 'good': top name"):
        Layer("good", "ReLU", "x", [bad])
    with pytest.raises(InvalidNameError, match="layer 'good': bottom name"):
        CaffeNet().add_layer("good", "ReLU", [bad], "x")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=st.text(min_size=0, max_size=12))
def test_any_name_round_trips_or_is_rejected(name):
    try:
        layer = Layer(name, "ReLU", [name], [name])
    except InvalidNameError as err:
        assert "\n" not in str(err)
        bad = {"Cc", "Cs", "Zl", "Zp"}
        assert name == "" or any(unicodedata.category(ch) in bad for ch in name)
        return
    net = CaffeNet()
    net.append(layer)
    text = net.prototxt_text()
    reference = CaffeNet()
    reference.add_layer("x", "ReLU", "x", "x")
    assert text.count("\n") == reference.prototxt_text().count("\n")  # no raw line break leaked
    back = CaffeNet.from_proto(text_format.Parse(text, caffe_pb2.NetParameter()))
    assert back.layers[0].name == name and back.layers[0].bottom == [name] and back.layers[0].top == [name]
    assert back.prototxt_text() == text


def test_long_file_name(tmp_path):
    path = tmp_path / ("ü" * 120 + ".caffemodel")  # 251 bytes: the temp name must not exceed NAME_MAX
    build_net().write_caffemodel(path)
    assert read_caffemodel(path).name == build_net().name


def test_bytes_names_decoded_and_duplicates_rejected(tmp_path):
    net = CaffeNet()
    layer = net.add_layer("ü".encode(), "ReLU", [b"x"], [b"x"])
    assert layer.name == "ü" and layer.bottom == ["x"]
    with pytest.raises(InvalidNameError, match="duplicate layer name"):
        net.add_layer("ü", "Sigmoid", "x", "x")
    # A name edited through .proto afterwards is caught when writing.
    net.add_layer("other", "ReLU", "x", "x")
    net.layer("other").proto.name = "ü"
    with pytest.raises(InvalidNameError, match="duplicate"):
        net.write_prototxt(tmp_path / "d.prototxt")
    net.layer("ü").proto.top[0] = "bad\nname"
    with pytest.raises(InvalidNameError, match="top name"):
        net.write_caffemodel(tmp_path / "d.caffemodel")
    assert not list(tmp_path.iterdir())


def test_phase_variants_may_share_a_name(tmp_path):
    text = textwrap.dedent(
        """
        layer { name: "data" type: "Input" top: "data" include { phase: TRAIN }
                input_param { shape { dim: 1 dim: 2 } } }
        layer { name: "data" type: "Input" top: "data" include { phase: TEST }
                input_param { shape { dim: 3 dim: 2 } } }
        layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip" inner_product_param { num_output: 1 } }
        """
    )
    path = tmp_path / "phases.prototxt"
    path.write_text(text)
    net = CaffeNet.load(path)
    assert [layer.name for layer in net.layers] == ["data", "data", "ip"]
    dup = tmp_path / "dup.prototxt"
    dup.write_text(text.replace("include { phase: TEST }", ""))
    with pytest.raises(InvalidNameError, match=r"dup\.prototxt: layer 'data': duplicate"):
        CaffeNet.load(dup)


# ------------------------------------------------------------------------------------------ atomicity


def _leftovers(folder: Path, keep: set[str]) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name not in keep)


@pytest.mark.parametrize("exc", [RuntimeError("boom"), KeyboardInterrupt()], ids=["error", "interrupt"])
def test_failed_caffemodel_write_keeps_old_file(tmp_path, monkeypatch, exc):
    path = tmp_path / "m.caffemodel"
    path.write_bytes(b"old content")
    calls = []

    def failing(f, a):
        calls.append(a.shape)
        if len(calls) == 3:
            f.write(a.data[: a.nbytes // 2])  # half a blob is on disk when it fails
            raise exc
        f.write(a.data)

    monkeypatch.setattr(cn, "_write_blob_data", failing)
    with pytest.raises(type(exc)):
        build_net().write_caffemodel(path)
    assert len(calls) == 3
    assert path.read_bytes() == b"old content"
    assert _leftovers(tmp_path, {"m.caffemodel"}) == []


def test_failed_write_of_new_file_leaves_nothing(tmp_path):
    target = tmp_path / "new.prototxt"
    with pytest.raises(KeyboardInterrupt), atomic_write(target) as f:
        f.write(b"partial")
        raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []


def test_successful_write_replaces_and_keeps_mode(tmp_path):
    target = tmp_path / "x.prototxt"
    target.write_text("old")
    os.chmod(target, 0o640)
    build_net().write_prototxt(target)
    assert target.read_text(encoding="utf-8").startswith("name:")
    assert (os.stat(target).st_mode & 0o777) == 0o640
    assert _leftovers(tmp_path, {"x.prototxt"}) == []


def test_unwritable_destinations(tmp_path):
    net = build_net()
    missing = tmp_path / "no such folder" / "m.caffemodel"
    with pytest.raises(OutputFileError, match="no such folder/m.caffemodel"):
        net.write_caffemodel(missing)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(OutputFileError, match="file/m.prototxt"):
        net.write_prototxt(blocker / "m.prototxt")
    (tmp_path / "dir.caffemodel").mkdir()
    with pytest.raises(OutputFileError, match="dir.caffemodel: it is a folder"):
        net.write_caffemodel(tmp_path / "dir.caffemodel")
    assert _leftovers(tmp_path, {"file", "dir.caffemodel"}) == []


def test_over_protobuf_limit_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(cn, "PROTO_SIZE_LIMIT", 1000)
    with pytest.raises(OutputFileError, match="over the 1000-byte limit"):
        build_net().write_caffemodel(tmp_path / "big.caffemodel")
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------------------------------ bad inputs


def test_truncated_caffemodel(tmp_path):
    net = build_net()
    good = tmp_path / "good.caffemodel"
    net.write_caffemodel(good)
    data = good.read_bytes()
    full = [(layer.name, [b.tobytes() for b in layer.blobs]) for layer in read_caffemodel(good).layers]
    cut_path = tmp_path / "cut.caffemodel"
    errors = 0
    cuts = range(1, len(data), max(1, len(data) // 500))  # ~500 cut points keep this under a second
    for cut in cuts:
        cut_path.write_bytes(data[:cut])
        try:
            model = read_caffemodel(cut_path)
        except InputFileError as err:
            errors += 1
            assert str(cut_path) in str(err)
            continue
        # A cut exactly between two layers is a valid, shorter file: it must hold a prefix of the layers.
        got = [(layer.name, [b.tobytes() for b in layer.blobs]) for layer in model.layers]
        assert got == full[: len(got)], cut
    assert errors >= len(cuts) - len(full) - 1  # at most one valid cut per layer boundary
    # A cut inside a blob's float data names the end of the file.
    cut = len(data) - 10
    cut_path.write_bytes(data[:cut])
    with pytest.raises(InputFileError, match=rf"cut\.caffemodel: truncated at byte {cut}\b"):
        CaffeNet.load(_write_prototxt(net, tmp_path), cut_path)


def _write_prototxt(net: CaffeNet, folder: Path) -> Path:
    path = folder / "net.prototxt"
    net.write_prototxt(path)
    return path


def test_garbage_caffemodels(tmp_path):
    net = build_net()
    proto = _write_prototxt(net, tmp_path)
    bad = tmp_path / "bad.caffemodel"
    rng = np.random.default_rng(1)
    cases = {
        "empty": b"",
        "text": proto.read_bytes(),
        "random": rng.integers(0, 256, 4096, dtype=np.uint8).tobytes(),
        "huge length": b"\xa2\x06\xff\xff\xff\xff\x0f",  # field 100, length 4 GiB in a 7-byte file
        "group": b"\x0b\x0c",
        "bad varint": b"\x0a" + b"\xff" * 11,
    }
    for what, content in cases.items():
        bad.write_bytes(content)
        with pytest.raises(InputFileError, match=r"bad\.caffemodel") as info:
            CaffeNet.load(proto, bad)
        assert "\n" not in str(info.value), what
    with pytest.raises(InputFileError, match="cannot read .*missing.caffemodel"):
        CaffeNet.load(proto, tmp_path / "missing.caffemodel")


def test_corrupted_caffemodel_never_leaks_other_errors(tmp_path):
    net = build_net()
    good = tmp_path / "good.caffemodel"
    net.write_caffemodel(good)
    data = bytearray(good.read_bytes())
    rng = np.random.default_rng(2)
    path = tmp_path / "fuzz.caffemodel"
    for _ in range(300):
        mutated = bytearray(data)
        for pos in rng.integers(0, len(data), 3):
            mutated[pos] = int(rng.integers(0, 256))
        path.write_bytes(bytes(mutated))
        try:
            read_caffemodel(path)
        except InputFileError:
            pass  # anything else (DecodeError, ValueError, MemoryError, ...) fails the test


def test_shape_and_data_disagree(tmp_path):
    netp = caffe_pb2.NetParameter()
    lp = netp.layer.add(name="ip", type="InnerProduct")
    lp.blobs.add(data=[1.0] * 5).shape.dim.extend([2, 3])
    path = tmp_path / "m.caffemodel"
    path.write_bytes(netp.SerializeToString())
    with pytest.raises(
        InputFileError, match=r"layer 'ip': blob 0 .* shape \(2, 3\) \(6 values\) but holds 5"
    ):
        read_caffemodel(path)


def test_prototxt_errors(tmp_path):
    path = tmp_path / "bad.prototxt"
    path.write_text('name: "x"\nlayer {\n  name: "a"\n  type: "ReLU"\n  bogus_field: 3\n}\n')
    with pytest.raises(InputFileError, match=r"bad\.prototxt:5:3: .*bogus_field"):
        CaffeNet.load(path)
    path.write_text('layer {\n  name: "a"\n  type: "ReLU"\n')  # unclosed brace
    with pytest.raises(InputFileError, match=r'bad\.prototxt:3:\d+: Expected "}"'):  # at the last token
        read_prototxt(path)
    path.write_bytes(b'name: "x"\nlayer { name: "\xff" }\n')
    with pytest.raises(InputFileError, match=r"bad\.prototxt:2: not valid UTF-8"):
        read_prototxt(path)
    with pytest.raises(InputFileError, match="cannot read .*nope.prototxt"):
        CaffeNet.load(tmp_path / "nope.prototxt")
    path.write_text('layer { name: "a\\nb" type: "ReLU" }\n')
    with pytest.raises(InvalidNameError, match=r"bad\.prototxt: layer name 'a\\nb'"):
        CaffeNet.load(path)


# ------------------------------------------------------------------------------------------ other encodings


def _varint(n: int) -> bytes:
    out = b""
    while n >= 0x80:
        out += bytes([(n & 0x7F) | 0x80])
        n >>= 7
    return out + bytes([n])


def _len_field(field: int, payload: bytes) -> bytes:
    return _varint(field << 3 | 2) + _varint(len(payload)) + payload


def test_reader_handles_other_encodings(tmp_path):
    values = np.array([1.5, -2.0, 3.25, 0.0, 7.0, -1e-3], dtype=np.float32)
    # Unpacked float data (field 5, wire type 5, one key per value) and shape via a BlobShape.
    shape = _len_field(1, b"".join(_varint(d) for d in (2, 3)))
    unpacked = _len_field(7, shape) + b"".join(_varint(5 << 3 | 5) + struct.pack("<f", v) for v in values)
    # An unknown field inside the layer and at net level, which the reader must skip.
    layer_a = (
        _len_field(1, b"a") + _len_field(2, b"Scale") + _len_field(7, unpacked) + _varint(5000 << 3) + b"\x01"
    )
    netp = caffe_pb2.NetParameter()
    # double_data with legacy num/channels/height/width dims.
    lb = netp.layer.add(name="b", type="Scale")
    lb.blobs.add(num=1, channels=2, height=1, width=3, double_data=values.astype(np.float64).tolist())
    # The same blob twice: Caffe's copy takes the last layer of a name.
    lc = netp.layer.add(name="c", type="Scale")
    lc.blobs.add(data=[9.0]).shape.dim.append(1)
    lc2 = netp.layer.add(name="c", type="Scale")
    lc2.blobs.add(data=[4.0]).shape.dim.append(1)
    content = _len_field(100, layer_a) + _varint(77 << 3 | 1) + b"\x00" * 8 + netp.SerializeToString()
    path = tmp_path / "enc.caffemodel"
    path.write_bytes(content)
    model = read_caffemodel(path)
    blobs = model.blobs()
    assert blobs["a"][0].shape == (2, 3) and blobs["a"][0].tobytes() == values.tobytes()
    assert blobs["b"][0].shape == (1, 2, 1, 3) and blobs["b"][0].dtype == np.float32
    assert np.array_equal(blobs["b"][0].ravel(), values)
    assert model.layers[1].legacy_shape == [True]
    assert blobs["c"][0].tolist() == [4.0]
    assert model.layers[0].params().name == "a"


def test_v1_prototxt_and_caffemodel(tmp_path):
    proto = tmp_path / "v1.prototxt"
    proto.write_text(
        textwrap.dedent(
            """
            name: "old"
            input: "data"
            input_dim: 1 input_dim: 4 input_dim: 1 input_dim: 1
            layers { name: "ip" type: INNER_PRODUCT bottom: "data" top: "ip"
                     blobs_lr: 1 blobs_lr: 2 weight_decay: 1 weight_decay: 0
                     inner_product_param { num_output: 3 } }
            layers { name: "relu" type: RELU bottom: "ip" top: "ip" }
            layers { name: "prob" type: SOFTMAX bottom: "ip" top: "prob" }
            """
        )
    )
    w = np.arange(12, dtype=np.float32).reshape(3, 4)
    b = np.array([1, 2, 3], dtype=np.float32)
    netp = caffe_pb2.NetParameter(name="old")
    v1 = netp.layers.add(name="ip", type=caffe_pb2.V1LayerParameter.INNER_PRODUCT)
    v1.blobs.add(num=1, channels=1, height=3, width=4, data=w.ravel().tolist())
    v1.blobs.add(num=1, channels=1, height=1, width=3, data=b.tolist())
    netp.layers.add(name="not in prototxt", type=caffe_pb2.V1LayerParameter.CONVOLUTION).blobs.add(data=[1.0])
    model = tmp_path / "v1.caffemodel"
    model.write_bytes(netp.SerializeToString())
    net = CaffeNet.load(proto, model)
    assert [(layer.name, layer.type) for layer in net.layers] == [
        ("data", "Input"),
        ("ip", "InnerProduct"),
        ("relu", "ReLU"),
        ("prob", "Softmax"),
    ]
    assert net.inputs == {"data": (1, 4, 1, 1)}
    ip = net.layer("ip")
    assert [(p.lr_mult, p.decay_mult) for p in ip.proto.param] == [(1, 1), (2, 0)]
    assert ip.proto.inner_product_param.num_output == 3
    # Legacy 4-D shapes become the shapes Caffe uses for InnerProduct today.
    assert ip.blobs[0].shape == (3, 4) and np.array_equal(ip.blobs[0], w)
    assert ip.blobs[1].shape == (3,) and np.array_equal(ip.blobs[1], b)
    assert read_caffemodel(model).layers[0].type == "InnerProduct"


def test_unknown_caffemodel_layers_are_ignored(tmp_path):
    net = build_net()
    _, model = net.save(tmp_path / "full")
    small = CaffeNet(net.name)
    small.add_input("data", (2, 3, 8, 8))
    small.append(Layer.from_proto(net.layer("bn").proto))
    small.layers[-1].proto.bottom[0] = "data"
    small.layers[-1].proto.top[0] = "data"
    proto = tmp_path / "small.prototxt"
    small.write_prototxt(proto)
    loaded = CaffeNet.load(proto, model)
    assert [layer.name for layer in loaded.layers] == ["data", "bn"]
    assert all(
        x.tobytes() == y.tobytes()
        for x, y in zip(loaded.layer("bn").blobs, net.layer("bn").blobs, strict=True)
    )


# ------------------------------------------------------------------------------------------ real Caffe


def _caffe_python() -> tuple[str, str] | None:
    root = Path(os.environ.get("ONNX2CAFFE_CAFFE_ROOT", REPO / ".caffe"))
    python = root / "venv" / "bin" / "python"
    if python.exists() and list((root / "src" / "python" / "caffe").glob("_caffe*.so")):
        return str(python), str(root / "src" / "python")
    return None


CAFFE_SCRIPT = r"""
import json, sys
import numpy as np
import caffe
proto, model, saved, npz = sys.argv[1:5]
net = caffe.Net(proto, model, caffe.TEST)
arrays, names = {}, []
for name, blobs in net.params.items():
    names.append([name, len(blobs)])
    for j, blob in enumerate(blobs):
        arrays["p%d_%d" % (len(names) - 1, j)] = blob.data
np.savez(npz, **arrays)
net.save(saved)
print(json.dumps(names))
"""


def caffe_net_for_real_caffe() -> CaffeNet:
    """Layers that BVLC Caffe runs on CPU, odd names included (spaces, quotes, unicode)."""
    rng = np.random.default_rng(3)
    net = CaffeNet("real caffe")
    net.add_input("data", (1, 3, 6, 6))
    conv = 'conv "1"/ü'
    net.add_layer(
        conv,
        "Convolution",
        "data",
        "c 1",
        blobs=[rng.standard_normal((4, 3, 3, 3)), rng.standard_normal(4)],
        convolution_param={"num_output": 4, "kernel_size": [3], "pad": [1]},
    )
    net.add_layer(
        "bn\\x",
        "BatchNorm",
        "c 1",
        "c 1",
        blobs=[rng.random(4), rng.random(4) + 0.5, np.ones(1)],
        batch_norm_param={"use_global_stats": True},
    )
    net.add_layer(
        "scale", "Scale", "c 1", "c 1", blobs=[rng.random(4), rng.random(4)], scale_param={"bias_term": True}
    )
    net.add_layer("relu", "ReLU", "c 1", "c 1")
    net.add_layer(
        "pool", "Pooling", "c 1", "pool", pooling_param={"pool": "MAX", "kernel_size": 2, "stride": 2}
    )
    net.add_layer(
        "ip",
        "InnerProduct",
        "pool",
        "ip",
        blobs=[rng.standard_normal((5, 36)), rng.standard_normal(5)],
        inner_product_param={"num_output": 5},
    )
    net.add_layer("prob", "Softmax", "ip", "prob")
    return net


def test_real_caffe_reads_ours_and_we_read_caffes(tmp_path):
    found = _caffe_python()
    if found is None:
        pytest.skip("real Caffe not built (make caffe, or set ONNX2CAFFE_CAFFE_ROOT)")
    python, pythonpath = found
    net = caffe_net_for_real_caffe()
    proto, model = net.save(tmp_path / "ours")
    saved = tmp_path / "saved by caffe.caffemodel"
    npz = tmp_path / "params.npz"
    env = dict(os.environ, PYTHONPATH=pythonpath, GLOG_minloglevel="2")
    env.pop("PYTHONHOME", None)
    proc = subprocess.run(
        [python, "-c", CAFFE_SCRIPT, proto, model, str(saved), str(npz)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    names = json.loads(proc.stdout.strip().splitlines()[-1])
    with_blobs = [layer for layer in net.layers if layer.blobs]
    assert [n for n, _ in names] == [layer.name for layer in with_blobs]
    with np.load(npz) as params:
        for i, layer in enumerate(with_blobs):
            assert names[i][1] == len(layer.blobs)
            for j, blob in enumerate(layer.blobs):
                got = params[f"p{i}_{j}"]
                assert got.dtype == np.float32 and got.shape == blob.shape
                assert got.tobytes() == blob.tobytes()  # exact: Caffe copies the float32 bytes

    # Caffe's own file holds every layer with all its parameters; our reader takes it as it is.
    model_back = read_caffemodel(saved)
    by_name = model_back.blobs()
    for layer in with_blobs:
        assert [b.tobytes() for b in by_name[layer.name]] == [b.tobytes() for b in layer.blobs]
    conv = next(ml for ml in model_back.layers if ml.type == "Convolution")
    assert conv.params().convolution_param.num_output == 4
    back = CaffeNet.load(proto, saved)
    assert_same_net(net, back)
    # Our prototxt + Caffe's caffemodel, written again, is byte-identical to ours.
    _, model2 = back.save(tmp_path / "again")
    assert Path(model2).read_bytes() == Path(model).read_bytes()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-q"]))
