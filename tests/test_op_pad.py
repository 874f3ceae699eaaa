"""Pad -> Slice + Concat copies per padded axis (a Power for the constant), against onnxruntime on Caffe and OpenCV:
every mode, positive / negative / mixed pads, any axis and rank, the attribute (opset 2) and input (11, 18 axes,
19 wrap) signatures; and the refusals."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import helper
from onnx_testing import check_conversion, make_model

from onnx2caffe import convert
from onnx2caffe.errors import ConversionError

# Padding copies values (the constant is written exactly): any difference is a bug.
EXACT = dict(max_rel=0.0, cos=0.999999)

SHAPE = (2, 3, 5, 7)


def _types(net):
    return [layer.type for layer in net.layers]


def _pad_model(pads, mode="constant", value=None, shape=SHAPE, axes=None, opset=13):
    inits = {"pads": np.array(pads, np.int64)}
    inputs = ["x", "pads"]
    if value is not None or axes is not None:
        inputs.append("value" if value is not None else "")
        if value is not None:
            inits["value"] = np.array(value, np.float32)
    if axes is not None:
        inputs.append("axes")
        inits["axes"] = np.array(axes, np.int64)
    node = helper.make_node("Pad", inputs, ["y"], mode=mode)
    return make_model([node], {"x": shape}, {"y": None}, initializers=inits, opset=opset)


PADS_4D = [
    [0, 0, 1, 1, 0, 0, 1, 1],  # symmetric H, W
    [0, 0, 0, 0, 0, 0, 1, 1],  # ZeroPad2d((0, 1, 0, 1)) as in YOLOv3-tiny
    [0, 0, 2, 0, 0, 0, 1, 3],  # asymmetric
    [0, 0, -1, 2, 0, 0, 1, -3],  # crop and pad on one axis
    [0, 1, 0, 0, 1, 0, 0, 0],  # channels and batch
    [0, 0, 4, 6, 0, 0, 4, 6],  # reflect up to length - 1
]


@pytest.mark.parametrize("pads", PADS_4D)
@pytest.mark.parametrize("mode", ["constant", "reflect", "edge", "wrap"])
def test_pad_modes(tmp_path, pads, mode):
    opset = 19 if mode == "wrap" else 13
    model = _pad_model(pads, mode, shape=SHAPE, opset=opset)
    net = check_conversion(model, tmp_path, **EXACT)
    assert set(_types(net)) <= {"Input", "Slice", "Concat", "Power", "Silence"}


@pytest.mark.parametrize("value", [0.0, -1.5, 3.25])
@pytest.mark.parametrize("pads", [[0, 0, 1, 2, 0, 0, 3, 0], [0, 0, -2, 1, 0, 0, 0, -1]])
def test_pad_constant_values(tmp_path, value, pads):
    net = check_conversion(_pad_model(pads, value=value), tmp_path, **EXACT)
    assert ("Power" in _types(net)) == (max(pads) > 0)


def test_pad_only_crops(tmp_path):
    net = check_conversion(_pad_model([0, 0, -1, -2, 0, 0, 0, -3], "reflect"), tmp_path, **EXACT)
    assert [t for t in _types(net) if t != "Silence"] == ["Input", "Slice", "Slice"]


@pytest.mark.parametrize(
    ("shape", "pads", "mode"),
    [
        ((2, 9), [1, 2, 0, 3], "reflect"),  # rank 2
        ((2, 3, 8), [0, 0, 2, 0, 0, 3], "edge"),  # rank 3 (1-D nets)
        ((1, 2, 3, 4, 5), [0, 0, 1, 1, 2, 0, 0, 1, 1, 2], "reflect"),  # rank 5
        ((1, 2, 3, 4, 5), [0, 0, 1, 0, 2, 0, 0, -1, 1, 0], "constant"),
    ],
)
def test_pad_ranks(tmp_path, shape, pads, mode):
    check_conversion(_pad_model(pads, mode, shape=shape), tmp_path, **EXACT)


@pytest.mark.parametrize(("axes", "pads"), [([2, 3], [1, 0, 2, 1]), ([-1], [3, -2]), ([1], [0, 2])])
@pytest.mark.parametrize("mode", ["constant", "edge"])
def test_pad_opset18_axes(tmp_path, axes, pads, mode):
    model = _pad_model(pads, mode, value=2.0 if mode == "constant" else None, axes=axes, opset=18)
    check_conversion(model, tmp_path, **EXACT)


@pytest.mark.parametrize("mode", ["constant", "reflect", "edge"])
def test_pad_opset2_attributes(tmp_path, mode):
    node = helper.make_node("Pad", ["x"], ["y"], mode=mode, pads=[0, 0, 1, 2, 0, 0, 2, 1], value=0.5)
    model = make_model([node], {"x": SHAPE}, {"y": None}, opset=9)
    check_conversion(model, tmp_path, **EXACT)


def test_yolov3_tiny_zero_pad_before_max_pool(tmp_path):
    # ZeroPad2d((0, 1, 0, 1)) then a stride-1 MaxPool k2 on a LeakyReLU output (negative values: the pad cannot
    # become the pool's own -inf padding, so the Pad stays a layer)
    nodes = [
        helper.make_node("LeakyRelu", ["x"], ["a"], alpha=0.1),
        helper.make_node("Pad", ["a", "pads"], ["p"], mode="constant"),
        helper.make_node("MaxPool", ["p"], ["y"], kernel_shape=[2, 2], strides=[1, 1]),
    ]
    inits = {"pads": np.array([0, 0, 0, 0, 0, 0, 1, 1], np.int64)}
    model = make_model(nodes, {"x": (1, 4, 13, 13)}, {"y": None}, initializers=inits, opset=13)
    net = check_conversion(model, tmp_path, **EXACT)
    assert "Concat" in _types(net)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.filterwarnings("ignore:Constant folding:UserWarning")
@pytest.mark.parametrize("dynamo", [False, True])
@pytest.mark.parametrize(
    "layer",
    [
        "ReflectionPad2d(3)",
        "ReplicationPad2d((1, 2, 0, 3))",
        "ZeroPad2d((0, 1, 0, 1))",
        "ConstantPad1d(2, 1.5)",
    ],
)
def test_torch_pad_export(tmp_path, layer, dynamo):
    import io

    import onnx
    import torch

    module = eval(f"torch.nn.{layer}").eval()  # noqa: S307 - a fixed list of layer constructors
    x = torch.randn(1, 3, 8, 10) if "1d" not in layer else torch.randn(1, 3, 10)
    if dynamo:
        model = torch.onnx.export(module, (x,), dynamo=True, verbose=False).model_proto
    else:
        buf = io.BytesIO()
        torch.onnx.export(module, (x,), buf, dynamo=False, opset_version=13)
        model = onnx.load_from_string(buf.getvalue())
    check_conversion(model, tmp_path, **EXACT)


@pytest.mark.parametrize(
    ("pads", "mode", "match"),
    [
        ([0, 0, 5, 0, 0, 0, 0, 0], "reflect", "exceed"),  # more than length - 1
        ([0, 0, -3, 0, 0, 0, -2, 0], "constant", "nothing"),  # crops everything
    ],
)
def test_pad_refused(pads, mode, match):
    model = _pad_model(pads, mode)
    with pytest.raises(ConversionError, match=match):
        convert(model, None, check=False)


def test_pad_computed_pads_refused():
    nodes = [helper.make_node("Shape", ["x"], ["s"]), helper.make_node("Pad", ["x", "s"], ["y"])]
    model = make_model(nodes, {"x": (1, 1, 2, 2)}, {"y": None}, opset=13)
    with pytest.raises(ConversionError):
        convert(model, None, check=False)
