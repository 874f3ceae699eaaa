"""onnx2caffe/simplify.py: onnx-simplifier with the layer weights kept out of it makes the same model, byte for
byte, as onnx-simplifier on the whole model; weights it could read by value go to it whole."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from onnx2caffe.onnx_io import SplitModel
from onnx2caffe.simplify import _load_simplifier, simplify_split, stub_candidates

C = 16  # 16x16x3x3 float32 weights: 9.2 KB, over the 4 KiB line, so they are held as arrays
RNG = np.random.default_rng(0)


def arr(*shape, value=None) -> np.ndarray:
    if value is not None:
        return np.full(shape, value, np.float32)
    return RNG.standard_normal(shape).astype(np.float32)


def model(
    nodes, inits: dict[str, np.ndarray], out_shape=(1, C, 8, 8), in_shape=(1, C, 8, 8)
) -> onnx.ModelProto:
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(in_shape))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, list(out_shape))],
        [numpy_helper.from_array(v, k) for k, v in inits.items()],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)


def conv(x, w, y, name, b=None):
    return helper.make_node("Conv", [x, w] + ([b] if b else []), [y], name=name, pads=[1, 1, 1, 1])


def onnxsim_whole(m: onnx.ModelProto) -> bytes:
    out, ok = _load_simplifier()(m)
    assert ok
    return out.SerializeToString()


CASES = {
    # name: (model, the weights expected as stubs)
    "plain chain, Identity and Dropout removed": (
        lambda: model(
            [
                conv("x", "w1", "c1", "conv1", "b1"),
                helper.make_node("Relu", ["c1"], ["r1"], name="relu"),
                helper.make_node("Dropout", ["r1"], ["d1"], name="drop"),
                conv("d1", "w2", "c2", "conv2"),
                helper.make_node("Identity", ["c2"], ["y"], name="id"),
            ],
            {"w1": arr(C, C, 3, 3), "b1": arr(C), "w2": arr(C, C, 3, 3)},
        ),
        {"w1", "w2"},
    ),
    "Conv then BatchNormalization (fuse_bn_into_conv)": (
        lambda: model(
            [
                conv("x", "w1", "c1", "conv1"),
                helper.make_node("BatchNormalization", ["c1", "s", "b", "m", "v"], ["n"], name="bn"),
                conv("n", "w2", "y", "conv2"),
            ],
            {
                "w1": arr(C, C, 3, 3),
                "s": arr(C),
                "b": arr(C),
                "m": arr(C),
                "v": arr(C, value=1.5),
                "w2": arr(C, C, 3, 3),
            },
        ),
        set(),  # w2 too: a BatchNormalization right before a layer could be folded into it
    ),
    "Conv then Add of a constant (fuse_add_bias_into_conv)": (
        lambda: model(
            [conv("x", "w1", "c1", "conv1"), helper.make_node("Add", ["c1", "bias"], ["y"], name="add")],
            {"w1": arr(C, C, 3, 3), "bias": arr(1, C, 1, 1)},
        ),
        set(),
    ),
    "Mul by a constant before a Conv": (
        lambda: model(
            [helper.make_node("Mul", ["x", "k"], ["m"], name="mul"), conv("m", "w1", "y", "conv1")],
            {"k": arr(1, C, 1, 1), "w1": arr(C, C, 3, 3)},
        ),
        set(),
    ),
    "MatMul then Add (fuse_matmul_add_bias_into_gemm)": (
        lambda: model(
            [
                helper.make_node("MatMul", ["x", "w"], ["mm"], name="mm"),
                helper.make_node("Add", ["mm", "b"], ["y"], name="add"),
            ],
            {"w": arr(128, 64), "b": arr(64)},
            in_shape=(4, 128),
            out_shape=(4, 64),
        ),
        set(),
    ),
    "three MatMul on one input (fuse_qkv)": (
        lambda: model(
            [
                helper.make_node("MatMul", ["x", "wq"], ["q"], name="q"),
                helper.make_node("MatMul", ["x", "wk"], ["k"], name="k"),
                helper.make_node("MatMul", ["x", "wv"], ["v"], name="v"),
                helper.make_node("Add", ["q", "k"], ["qk"], name="a1"),
                helper.make_node("Add", ["qk", "v"], ["y"], name="a2"),
            ],
            {"wq": arr(64, 64), "wk": arr(64, 64), "wv": arr(64, 64)},
            in_shape=(4, 64),
            out_shape=(4, 64),
        ),
        set(),
    ),
    "equal weights (eliminate_duplicate_initializer)": (
        lambda: model(
            [
                conv("x", "w1", "c1", "conv1"),
                helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
                conv("r1", "w2", "c2", "conv2"),
                helper.make_node("Relu", ["c2"], ["r2"], name="relu2"),
                conv("r2", "w3", "y", "conv3"),
            ],
            {"w1": arr(C, C, 3, 3, value=0.5), "w2": arr(C, C, 3, 3, value=0.5), "w3": arr(C, C, 3, 3)},
        ),
        {"w3"},
    ),
    "two layers in a row (a fusion of the two would read both)": (
        lambda: model(
            [conv("x", "w1", "c1", "conv1"), conv("c1", "w2", "y", "conv2")],
            {"w1": arr(C, C, 3, 3), "w2": arr(C, C, 3, 3)},
        ),
        set(),
    ),
    "Transpose of a weight (constant folding)": (
        lambda: model(
            [
                helper.make_node("Transpose", ["w"], ["wt"], name="t", perm=[1, 0]),
                helper.make_node("MatMul", ["x", "wt"], ["y"], name="mm"),
            ],
            {"w": arr(64, 128)},
            in_shape=(4, 128),
            out_shape=(4, 64),
        ),
        set(),
    ),
    "a Conv on a constant (constant folding)": (
        lambda: model(
            [
                helper.make_node("Conv", ["c", "w1"], ["k"], name="const_conv", pads=[1, 1, 1, 1]),
                helper.make_node("Add", ["x", "k"], ["a"], name="add"),
                helper.make_node("Relu", ["a"], ["r"], name="relu"),
                conv("r", "w2", "y", "conv2"),
            ],
            {"c": arr(1, C, 8, 8), "w1": arr(C, C, 3, 3), "w2": arr(C, C, 3, 3)},
        ),
        {"w2"},
    ),
    "a weight shared by two Conv and read by an Identity": (
        lambda: model(
            [
                conv("x", "w1", "c1", "conv1"),
                helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
                conv("r1", "w1", "c2", "conv2"),
                helper.make_node("Relu", ["c2"], ["r2"], name="relu2"),
                helper.make_node("Identity", ["w2"], ["w2i"], name="id"),
                conv("r2", "w2i", "y", "conv3"),
            ],
            {"w1": arr(C, C, 3, 3), "w2": arr(C, C, 3, 3)},
        ),
        {"w1"},
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_same_bytes_as_onnxsim_on_the_whole_model(case):
    build, expected_stubs = CASES[case]
    m = build()
    onnx.checker.check_model(m)
    split = SplitModel.from_proto(m)
    assert stub_candidates(split) == expected_stubs
    got = simplify_split(split)
    assert got.serialize() == onnxsim_whole(m)
    for name in expected_stubs & set(got.weights):
        assert got.weights[name] is split.weights[name]  # the stubs' arrays come back, not copies


def test_a_torchvision_net_is_simplified_to_the_same_bytes():
    torch = pytest.importorskip("torch")
    torchvision = pytest.importorskip("torchvision")
    import io
    import warnings

    from onnx2caffe.exporters.torch_export import randomize_batchnorm

    torch.manual_seed(0)
    net = randomize_batchnorm(torchvision.models.get_model("squeezenet1_1", weights=None)).eval()
    f = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (torch.randn(1, 3, 64, 64),), f, dynamo=False, opset_version=13)
    m = onnx.load_from_string(f.getvalue())
    split = SplitModel.from_proto(m)
    assert len(stub_candidates(split)) > 10
    assert simplify_split(split).serialize() == onnxsim_whole(m)


def test_the_simplifier_is_imported_without_onnxsims_package_init():
    """onnxsim 0.8's package __init__ imports torch (seconds, a GB): `convert X.onnx --input-shape` needs only
    the simplifier; the package still works whole for whoever imports it afterwards."""
    code = (
        "import sys\n"
        "from onnx2caffe.simplify import _load_simplifier\n"
        "f = _load_simplifier()\n"
        "assert 'torch' not in sys.modules, 'torch imported'\n"
        "import onnxsim\n"
        "assert onnxsim.simplify is f\n"
        "print('ok')\n"
    )
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    assert p.stdout.strip() == "ok"


def test_native_messages_of_the_simplifier_are_kept_off_the_terminal(capfd):
    """onnxsim's C++ core writes its 'failed to run ... skip' lines to file descriptor 2; they are collected
    (for an error message) instead of reaching the user's terminal."""
    from onnx2caffe.simplify import _native_stderr

    lines: list[str] = []
    with _native_stderr(lines):
        os.write(2, b'WARNING: failed to run "Reshape" op, skip...\nsecond\n')
    os.write(2, b"after\n")
    assert lines == ['WARNING: failed to run "Reshape" op, skip...', "second"]
    assert capfd.readouterr().err == "after\n"
