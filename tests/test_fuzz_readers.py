"""Fuzzing the readers with mutated valid files: the prototxt and caffemodel readers of
onnx2caffe.caffe_net, the ONNX loader (onnx2caffe.onnx_graph.OnnxGraph.load), and the whole conversion of a
mutated ONNX model (convert without check, nothing written). A mutation is a short list of bit flips,
truncations, byte insertions, deletions and chunk duplications. Every outcome must be a success or an
Onnx2CaffeError subclass with a one-line message: never another exception.

Profiles (tests/fuzz_profiles.py): "ci" (default) a bounded derandomised run; HYPOTHESIS_PROFILE=fuzz
(`make fuzz`) many more. The number of executions per target is printed at the end of the module.
"""

from __future__ import annotations

import collections

import numpy as np
import onnx
import pytest
from fuzz_profiles import fuzz_settings
from hypothesis import event, given
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

from onnx2caffe.caffe_net import CaffeNet, read_caffemodel, read_prototxt
from onnx2caffe.errors import Onnx2CaffeError

COUNTS: collections.Counter = collections.Counter()


@pytest.fixture(scope="module", autouse=True)
def _report_counts(request):
    yield
    tr = request.config.pluginmanager.get_plugin("terminalreporter")
    if tr is not None and COUNTS:
        tr.write_line("fuzz executions: " + ", ".join(f"{k} {v}" for k, v in sorted(COUNTS.items())))


# --------------------------------------------------------------------------------------------- mutations


@st.composite
def mutations(draw, size: int):
    """A list of (op, position, payload) applied in order to a byte string of about `size` bytes."""
    ops = []
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "flip", "truncate", "insert", "delete", "duplicate", "set"]))
        pos = draw(st.integers(0, max(0, size - 1)))
        if op == "flip":
            ops.append((op, pos, draw(st.integers(0, 7))))
        elif op == "insert":
            ops.append((op, pos, draw(st.binary(min_size=1, max_size=8))))
        elif op == "set":  # interesting byte values: varint continuation, 0, 0xff, field keys
            ops.append((op, pos, draw(st.sampled_from([0x00, 0x7F, 0x80, 0xFF, 0x08, 0x0A, 0x12, 0x3A]))))
        else:
            ops.append((op, pos, draw(st.integers(1, 64))))
    return ops


def mutate(data: bytes, ops) -> bytes:
    b = bytearray(data)
    for op, pos, arg in ops:
        if not b:
            break
        pos = pos % len(b)
        if op == "flip":
            b[pos] ^= 1 << arg
        elif op == "set":
            b[pos] = arg
        elif op == "truncate":
            del b[pos:]
        elif op == "insert":
            b[pos:pos] = arg
        elif op == "delete":
            del b[pos : pos + arg]
        elif op == "duplicate":
            b[pos:pos] = b[pos : pos + arg]
    return bytes(b)


def _clean(err: Onnx2CaffeError) -> None:
    msg = str(err)
    assert msg and "\n" not in msg, repr(msg)


def attempt(target: str, fn) -> None:
    """Run fn(); success and Onnx2CaffeError are fine (counted); any other exception fails the test."""
    COUNTS[target] += 1
    try:
        fn()
    except Onnx2CaffeError as err:
        _clean(err)
        event(f"{target}: {type(err).__name__}")
    else:
        event(f"{target}: accepted")


# --------------------------------------------------------------------------------------------- seeds


def seed_net() -> CaffeNet:
    rng = np.random.default_rng(0)
    net = CaffeNet("seed")
    net.add_input("data", (1, 3, 8, 8))
    net.add_layer(
        "conv1", "Convolution", ["data"], ["conv1"],
        blobs=[rng.standard_normal((4, 3, 3, 3)), rng.standard_normal(4)],
        convolution_param={"num_output": 4, "kernel_size": [3], "pad": [1]},
    )  # fmt: skip
    net.add_layer(
        "bn1", "BatchNorm", ["conv1"], ["conv1"],
        blobs=[rng.random(4), rng.random(4) + 0.5, np.ones(1)], batch_norm_param={"use_global_stats": True},
    )  # fmt: skip
    net.add_layer("relu1", "ReLU", ["conv1"], ["conv1"], relu_param={"negative_slope": 0.1})
    net.add_layer(
        "pool1", "Pooling", ["conv1"], ["pool1"], pooling_param={"pool": "MAX", "kernel_size": 2, "stride": 2}
    )
    net.add_layer(
        "fc", "InnerProduct", ["pool1"], ["fc"], blobs=[rng.standard_normal((5, 64)), rng.standard_normal(5)],
        inner_product_param={"num_output": 5},
    )  # fmt: skip
    net.add_layer("prob", "Softmax", ["fc"], ["prob"])
    return net


@pytest.fixture(scope="module")
def caffe_seed(tmp_path_factory):
    d = tmp_path_factory.mktemp("fuzz_seed")
    proto, model = seed_net().save(str(d / "seed"))
    return open(proto, "rb").read(), open(model, "rb").read()


def seed_onnx() -> bytes:
    rng = np.random.default_rng(0)
    inits = {
        "w": rng.standard_normal((4, 3, 3, 3)).astype(np.float32),
        "b": rng.standard_normal(4).astype(np.float32),
        "scale": rng.random(4).astype(np.float32) + 0.5,
        "bias": rng.standard_normal(4).astype(np.float32),
        "mean": rng.standard_normal(4).astype(np.float32),
        "var": rng.random(4).astype(np.float32) + 0.5,
        "fcw": rng.standard_normal((5, 112)).astype(np.float32),
        "fcb": rng.standard_normal(5).astype(np.float32),
    }
    nodes = [
        helper.make_node("Conv", ["x", "w", "b"], ["c"], name="conv", pads=[1, 1, 1, 1], kernel_shape=[3, 3]),
        helper.make_node("BatchNormalization", ["c", "scale", "bias", "mean", "var"], ["n"], name="bn"),
        helper.make_node("LeakyRelu", ["n"], ["r"], name="act", alpha=0.1),
        helper.make_node("MaxPool", ["r"], ["p"], name="pool", kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("AveragePool", ["x"], ["q"], name="avg", kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Concat", ["p", "q"], ["cat"], name="cat", axis=1),
        helper.make_node("Sigmoid", ["cat"], ["s"], name="sig"),
        helper.make_node("Mul", ["cat", "s"], ["m"], name="mul"),
        helper.make_node("Flatten", ["m"], ["f"], name="flat", axis=1),
        helper.make_node("Gemm", ["f", "fcw", "fcb"], ["y"], name="fc", transB=1),
    ]
    graph = helper.make_graph(
        nodes,
        "seed",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 5])],
        [numpy_helper.from_array(v, k) for k, v in inits.items()],
    )
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
    onnx.checker.check_model(m)
    return m.SerializeToString()


SEED_ONNX = seed_onnx()


def test_seeds_are_valid(caffe_seed, tmp_path):
    """The unmutated seeds read and convert (so rejections come from the mutations)."""
    from onnx2caffe.convert import convert
    from onnx2caffe.onnx_graph import OnnxGraph

    proto, model = caffe_seed
    (tmp_path / "s.prototxt").write_bytes(proto)
    (tmp_path / "s.caffemodel").write_bytes(model)
    net = CaffeNet.load(tmp_path / "s.prototxt", tmp_path / "s.caffemodel")
    assert [layer.name for layer in net.layers] == [layer.name for layer in seed_net().layers]
    (tmp_path / "s.onnx").write_bytes(SEED_ONNX)
    assert len(OnnxGraph.load(tmp_path / "s.onnx").nodes) == 10
    assert convert(str(tmp_path / "s.onnx"), None, check=False).net.layers


# --------------------------------------------------------------------------------------------- targets


@fuzz_settings("reader")
@given(data=st.data())
def test_fuzz_prototxt_reader(caffe_seed, tmp_path_factory, data):
    proto = caffe_seed[0]
    mutated = mutate(proto, data.draw(mutations(len(proto))))
    path = tmp_path_factory.getbasetemp() / "fuzz.prototxt"
    path.write_bytes(mutated)
    attempt("prototxt", lambda: read_prototxt(path))
    attempt("prototxt+CaffeNet", lambda: CaffeNet.load(path))


@fuzz_settings("reader")
@given(data=st.data())
def test_fuzz_caffemodel_reader(caffe_seed, tmp_path_factory, data):
    model = caffe_seed[1]
    mutated = mutate(model, data.draw(mutations(len(model))))
    base = tmp_path_factory.getbasetemp()
    path = base / "fuzz.caffemodel"
    path.write_bytes(mutated)
    (base / "fuzz_ok.prototxt").write_bytes(caffe_seed[0])

    def read():
        m = read_caffemodel(path)
        for layer in m.layers:
            layer.params()
        m.net_param()

    attempt("caffemodel", read)
    attempt("caffemodel+CaffeNet", lambda: CaffeNet.load(base / "fuzz_ok.prototxt", path))


@fuzz_settings("reader")
@given(data=st.data())
def test_fuzz_onnx_loader(tmp_path_factory, data):
    from onnx2caffe.onnx_graph import OnnxGraph

    mutated = mutate(SEED_ONNX, data.draw(mutations(len(SEED_ONNX))))
    path = tmp_path_factory.getbasetemp() / "fuzz.onnx"
    path.write_bytes(mutated)
    attempt("onnx", lambda: OnnxGraph.load(path))


@fuzz_settings("reader")
@given(data=st.data())
def test_fuzz_onnx_convert(tmp_path_factory, data):
    """The whole mapping of a mutated model (attributes, shapes, initializers changed by the mutation)."""
    from onnx2caffe.convert import convert

    mutated = mutate(SEED_ONNX, data.draw(mutations(len(SEED_ONNX))))
    path = tmp_path_factory.getbasetemp() / "fuzz_convert.onnx"
    path.write_bytes(mutated)
    attempt("onnx convert", lambda: convert(str(path), None, check=False))


# --------------------------------------------------------------------------------------------- regressions
# Minimised failures found by the fuzzers above.


def _with_raw_name(old: bytes, new: bytes) -> bytes:
    """SEED_ONNX with one name's bytes replaced (same length, so no length prefix changes)."""
    assert len(old) == len(new) and SEED_ONNX.count(old) >= 1
    return SEED_ONNX.replace(old, new, 1)


@pytest.mark.parametrize(
    "old,new",
    [(b"avg", b"\xffvg"), (b"sig", b"s\xc3\x28")],  # a node name that is not UTF-8 (proto2 keeps it as bytes)
)
def test_regression_non_utf8_node_name(tmp_path, old, new):
    """Found by test_fuzz_onnx_convert (one bit flip in a node name). protobuf hands a proto2 string field
    holding invalid UTF-8 to Python as bytes; MapContext (onnx2caffe/registry.py, sanitize_name) then
    crashed with "TypeError: cannot use a string pattern on a bytes-like object". Must be a clean
    InputFileError/ConversionError (or a successful conversion with a sanitised name)."""
    from onnx2caffe.convert import convert

    path = tmp_path / "name.onnx"
    path.write_bytes(_with_raw_name(old, new))
    try:
        convert(str(path), None, check=False)
    except Onnx2CaffeError as err:
        _clean(err)
