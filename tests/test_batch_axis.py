"""The compositions keep the batch as axis 0: no data moves into or out of axis 0 of any intermediate blob.

Two consequences are checked on real runtimes:
- ncnn (and other batch-less Caffe consumers) run the converted net: the ncnn writer refuses a layer whose blob
  has anything but the batch in axis 0, so a net it converts proves the principle layer by layer;
- a net converted at batch 1 runs at batch 3 on Caffe and OpenCV: every Reshape copies the batch (`dim: 0`)
  instead of writing its size, so reshaping the input blob reshapes the whole net, and the batch-3 outputs agree
  with onnxruntime's on the same model at batch 3.
"""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
from onnx import helper
from onnx2caffe.op_mappers._layers import tidy
from onnx_testing import check_conversion, check_ncnn, make_model, ncnn_runtimes, runtimes_here

from onnx2caffe.caffe_net import CaffeNet, Layer

RNG = np.random.default_rng(7)


def _f(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


# (id, nodes, inputs without the batch, initializers, tolerance: max |caffe - onnxruntime| / max |onnxruntime|)
# Tolerances are the per-op tests' (copies are exact; sums in another order: float32 noise).
GAMMA, BETA = _f(8), _f(8)
CASES = [
    (
        "transpose_nhwc",
        [helper.make_node("Transpose", ["x"], ["y"], perm=[0, 2, 3, 1])],
        [(3, 4, 5)],
        {},
        0.0,
    ),
    (
        "transpose_5d",
        [helper.make_node("Transpose", ["x"], ["y"], perm=[0, 3, 4, 1, 2])],
        [(2, 3, 4, 5)],
        {},
        0.0,
    ),
    (
        "resize_linear",
        [helper.make_node("Resize", ["x", "", "s"], ["y"], mode="linear")],
        [(3, 6, 8)],
        {"s": np.array([1, 1, 2, 2], np.float32)},
        2e-6,
    ),
    (
        "resize_nearest",
        [helper.make_node("Resize", ["x", "", "s"], ["y"], mode="nearest")],
        [(3, 4, 5)],
        {"s": np.array([1, 1, 2, 3], np.float32)},
        0.0,
    ),
    (
        "matmul_attention",
        [
            helper.make_node("Transpose", ["a"], ["at"], perm=[0, 1, 3, 2]),
            helper.make_node("MatMul", ["at", "b"], ["y"]),
        ],
        [(2, 4, 5), (2, 4, 6)],
        {},
        1e-5,
    ),
    (
        "matmul_constant_left",
        [helper.make_node("MatMul", ["w", "x"], ["y"])],
        [(3, 10, 6)],
        {"w": _f(7, 10)},
        1e-5,
    ),
    (
        "layer_norm",
        [helper.make_node("LayerNormalization", ["x", "g", "b"], ["y"], axis=-1, epsilon=1e-5)],
        [(6, 8)],
        {"g": GAMMA, "b": BETA},
        1e-5,
    ),
    (
        "layer_norm_4d",
        [helper.make_node("LayerNormalization", ["x", "g"], ["y"], axis=2)],
        [(4, 5, 6)],
        {"g": _f(5, 6)},
        1e-5,
    ),
    ("reduce_mean_c", [helper.make_node("ReduceMean", ["x"], ["y"], axes=[1])], [(4, 5, 6)], {}, 1e-6),
    ("log_softmax", [helper.make_node("LogSoftmax", ["x"], ["y"], axis=1)], [(70, 3)], {}, 1e-5),
]


def _model(nodes, shapes, inits, batch):
    names = sorted(
        {i for n in nodes for i in n.input if i and i not in inits} - {o for n in nodes for o in n.output}
    )
    inputs = {name: (batch, *shape) for name, shape in zip(names, shapes, strict=True)}
    return make_model(nodes, inputs, {"y": None}, inits, opset=17)


@pytest.mark.parametrize("name, nodes, shapes, inits, tol", CASES, ids=[c[0] for c in CASES])
def test_batch_kept(tmp_path, name, nodes, shapes, inits, tol):
    model = _model(nodes, shapes, inits, 1)
    check_conversion(model, tmp_path, max_rel=max(tol, 1e-6))
    # ncnn runs one sample at a time: it converts the net only if every blob keeps the batch as axis 0
    if ncnn_runtimes():
        assert check_ncnn(model, max(tol, 1e-6)) is not None, f"ncnn refused {name}"
    # every Reshape copies the batch axis
    net = CaffeNet.load(tmp_path / "model.prototxt")
    for layer in net.layers:
        if layer.type == "Reshape":
            assert layer.proto.reshape_param.shape.dim[0] == 0, (layer.name, layer.proto.reshape_param)
    # the net converted at batch 1 runs at batch 3 on Caffe and OpenCV, as onnxruntime does the model at batch 3
    model3 = _model(nodes, shapes, inits, 3)
    feeds = {i.name: _f(*(d.dim_value for d in i.type.tensor_type.shape.dim)) for i in model3.graph.input}
    want = ort.InferenceSession(model3.SerializeToString(), providers=["CPUExecutionProvider"]).run(
        None, feeds
    )[0]
    for rt in runtimes_here():
        with rt.load(tmp_path / "model.prototxt", tmp_path / "model.caffemodel") as m:
            got = m.run(feeds)
        (out,) = got.values()
        assert out.shape == want.shape, (rt.name, out.shape, want.shape)
        err = float(np.max(np.abs(out - want))) / float(np.max(np.abs(want)))
        assert err <= tol, (rt.name, err)


@pytest.mark.parametrize("first, merged", [([6, 4], [6, 2, 2]), ([0, 4], [0, 2, 2])])
def test_tidy_merges_views_keeping_the_batch_copy_right(first, merged):
    """A Reshape of a Reshape reads the first one's bottom after tidy(); its `dim: 0` copied the first one's axis
    0, so it becomes the size the first one wrote (an explicit size stays explicit, a copy stays a copy)."""

    class Ctx:
        @staticmethod
        def blob(name):
            return name

    class Node:
        outputs = ["y"]

    r1 = Layer("r1", "Reshape", bottom=["x"], top=["v"], reshape_param={"shape": {"dim": first}})
    r2 = Layer("r2", "Reshape", bottom=["v"], top=["y"], reshape_param={"shape": {"dim": [0, 2, 2]}})
    layers = tidy(Ctx(), Node(), [r1, r2])
    assert [layer.name for layer in layers] == ["r2"]
    assert list(r2.proto.bottom) == ["x"] and list(r2.proto.reshape_param.shape.dim) == merged
