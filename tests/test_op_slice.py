"""Split and Slice mappers -> Caffe Slice (+ Silence for unused pieces), against onnxruntime on Caffe and OpenCV."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import helper
from onnx_testing import check_conversion, make_model

from onnx2caffe.errors import ConversionError

# Slicing copies values: any difference at all is a bug, so the tolerance is zero.
EXACT = dict(max_rel=0.0, cos=0.999999)


def _types(net):
    return [layer.type for layer in net.layers]


@pytest.mark.parametrize(
    ("shape", "axis", "split", "opset"),
    [
        ((1, 6, 4, 4), 1, [2, 4], 11),
        ((1, 6, 4, 4), 1, [1, 2, 3], 13),
        ((1, 6, 4, 4), -1, [1, 3], 13),
        ((2, 5, 3), 0, [1, 1], 13),
        ((1, 6, 4, 4), 1, None, 13),  # equal parts (3 outputs)
        ((1, 7, 4, 4), 1, None, 18),  # num_outputs=3: 3, 3, 1
        ((1, 6, 4, 4), 2, [1, 1, 2], 18),
    ],
)
def test_split(tmp_path, shape, axis, split, opset):
    n = 3 if split is None else len(split)
    outs = [f"y{i}" for i in range(n)]
    inits = {}
    attrs = {"axis": axis}
    inputs = ["x"]
    if split is not None:
        if opset >= 13:
            inits["split"] = np.array(split, dtype=np.int64)
            inputs.append("split")
        else:
            attrs["split"] = split
    elif opset >= 18:
        attrs["num_outputs"] = n
    node = helper.make_node("Split", inputs, outs, **attrs)
    model = make_model([node], {"x": shape}, {o: None for o in outs}, initializers=inits, opset=opset)
    net = check_conversion(model, tmp_path, **EXACT)
    assert _types(net) == ["Input", "Slice"]


def test_split_unused_piece_is_silenced(tmp_path):
    # y1 feeds nothing: it must go to a Silence layer, not become a net output
    nodes = [
        helper.make_node("Split", ["x"], ["a", "b", "c"], axis=1),
        helper.make_node("Relu", ["a"], ["y0"]),
        helper.make_node("Relu", ["c"], ["y2"]),
    ]
    model = make_model(nodes, {"x": (1, 6, 3, 3)}, {"y0": None, "y2": None}, opset=13)
    net = check_conversion(model, tmp_path, **EXACT)
    assert "Silence" in _types(net)
    assert sorted(net.outputs) == ["y0", "y2"]


SLICES = [
    # (shape, starts, ends, axes, steps)
    ((1, 8, 5, 5), [2], [6], [1], None),
    ((1, 8, 5, 5), [0], [4], [1], [1]),  # ShuffleNetV2 channel split: first half
    ((1, 8, 5, 5), [4], [8], [1], None),  # second half
    ((1, 8, 5, 5), [1, -3], [-1, 2**62], [2, 3], None),  # two axes, negative start, huge end
    ((1, 8, 5, 5), [-100], [100], [-1], None),  # clamped to the whole axis: a copy
    ((2, 10), [3], [-2], [1], [1]),
    ((2, 3, 10), [0, 0], [1, 3], [0, 1], None),  # one real cut (axis 0), axis 1 whole
]


@pytest.mark.parametrize("opset", [9, 13])
@pytest.mark.parametrize(("shape", "starts", "ends", "axes", "steps"), SLICES)
def test_slice(tmp_path, opset, shape, starts, ends, axes, steps):
    if opset < 10:
        if steps is not None:
            pytest.skip("steps do not exist before opset 10")
        attrs = {"starts": starts, "ends": ends}
        if axes is not None:
            attrs["axes"] = axes
        node = helper.make_node("Slice", ["x"], ["y"], **attrs)
        inits = {}
    else:
        inits = {"starts": np.array(starts, np.int64), "ends": np.array(ends, np.int64)}
        inputs = ["x", "starts", "ends"]
        if axes is not None or steps is not None:
            inits["axes"] = np.array(axes if axes is not None else range(len(starts)), np.int64)
            inputs.append("axes")
        if steps is not None:
            inits["steps"] = np.array(steps, np.int64)
            inputs.append("steps")
        node = helper.make_node("Slice", inputs, ["y"])
    model = make_model([node], {"x": shape}, {"y": None}, initializers=inits, opset=opset)
    net = check_conversion(model, tmp_path, **EXACT)
    assert net.outputs == ["y"]  # off-cuts are silenced
    cut_axes = sum(1 for layer in net.layers if layer.type == "Slice")
    assert cut_axes <= len(starts)


def test_slice_axes_default(tmp_path):
    inits = {"starts": np.array([1, 2], np.int64), "ends": np.array([3, 5], np.int64)}
    node = helper.make_node("Slice", ["x", "starts", "ends"], ["y"])
    model = make_model([node], {"x": (4, 6, 3)}, {"y": None}, initializers=inits, opset=13)
    net = check_conversion(model, tmp_path, **EXACT)
    assert _types(net).count("Slice") == 2 and _types(net).count("Silence") == 1


def _slice_model(shape, starts, ends, axes, steps, opset=13):
    inits = {
        "starts": np.array(starts, np.int64),
        "ends": np.array(ends, np.int64),
        "axes": np.array(axes, np.int64),
        "steps": np.array(steps, np.int64),
    }
    node = helper.make_node("Slice", ["x", "starts", "ends", "axes", "steps"], ["y"])
    return make_model([node], {"x": shape}, {"y": None}, initializers=inits, opset=opset)


BIG = 2**62
STEPPED = [
    # (shape, starts, ends, axes, steps)
    ((1, 3, 8, 8), [0, 0], [BIG, BIG], [2, 3], [2, 2]),  # Focus: x[..., ::2, ::2]
    ((1, 3, 8, 8), [1, 0], [BIG, BIG], [2, 3], [2, 2]),  # x[..., 1::2, ::2]
    ((1, 3, 9, 7), [1, 1], [BIG, BIG], [2, 3], [2, 3]),  # odd sizes, different strides
    ((1, 3, 9, 7), [2, -1], [8, 0], [2, 3], [3, -2]),  # a step and a negative step
    ((1, 8, 4, 4), [1], [BIG], [1], [3]),  # channels
    ((2, 6, 5), [0, 4], [BIG, -BIG], [0, 1], [1, -1]),  # rank 3 flip
    ((1, 3, 5, 6), [-1], [-BIG], [3], [-1]),  # torch.flip of W
    ((1, 3, 5, 6), [3, -1], [1, -BIG], [2, 3], [-1, -2]),
    ((1, 2, 3, 4, 6), [0, 5], [BIG, 0], [2, 4], [2, -2]),  # rank 5
    ((1, 3, 8, 8), [1, 2, 0], [7, BIG, 5], [1, 2, 3], [1, 2, 1]),  # cuts and a step
]


@pytest.mark.parametrize("opset", [10, 13])
@pytest.mark.parametrize(("shape", "starts", "ends", "axes", "steps"), STEPPED)
def test_slice_steps(tmp_path, opset, shape, starts, ends, axes, steps):
    """Steps > 1 (a crop and a stride-s kernel-1 pooling) and negative steps (reversed by Slice + Concat): copies."""
    model = _slice_model(shape, starts, ends, axes, steps, opset)
    net = check_conversion(model, tmp_path, **EXACT)
    assert set(_types(net)) <= {"Input", "Slice", "Silence", "Pooling", "Concat", "Reshape", "Power"}
    assert net.outputs == ["y"]


def test_focus(tmp_path):
    """YOLOv5's Focus: four stepped slices concatenated on channels (space to depth)."""
    nodes, inits = [], {}
    for k, (h, w) in enumerate([(0, 0), (1, 0), (0, 1), (1, 1)]):
        inits[f"s{k}"] = np.array([h, w], np.int64)
        nodes.append(helper.make_node("Slice", ["x", f"s{k}", "e", "ax", "st"], [f"p{k}"]))
    inits.update(
        e=np.array([BIG, BIG], np.int64), ax=np.array([2, 3], np.int64), st=np.array([2, 2], np.int64)
    )
    nodes.append(helper.make_node("Concat", [f"p{k}" for k in range(4)], ["y"], axis=1))
    model = make_model(nodes, {"x": (1, 3, 16, 16)}, {"y": None}, initializers=inits, opset=13)
    net = check_conversion(model, tmp_path, **EXACT)
    assert _types(net).count("Pooling") == 4


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.parametrize("dynamo", [False, True])
@pytest.mark.parametrize("what", ["focus", "flip", "every_third_channel"])
def test_torch_stepped_slices(tmp_path, what, dynamo):
    import io

    import onnx
    import torch

    class Net(torch.nn.Module):
        def forward(self, x):
            if what == "focus":
                return torch.cat(
                    [x[..., ::2, ::2], x[..., 1::2, ::2], x[..., ::2, 1::2], x[..., 1::2, 1::2]], 1
                )
            if what == "flip":
                return torch.flip(x, [3]) + 1
            return x[:, ::3] * 2

    x = torch.randn(1, 6, 8, 10)
    if dynamo:
        model = torch.onnx.export(Net().eval(), (x,), dynamo=True, verbose=False).model_proto
    else:
        buf = io.BytesIO()
        torch.onnx.export(Net().eval(), (x,), buf, dynamo=False, opset_version=13)
        model = onnx.load_from_string(buf.getvalue())
    check_conversion(model, tmp_path, **EXACT)


@pytest.mark.parametrize(
    ("starts", "ends", "steps", "reason"),
    [([5], [2], [1], "empty"), ([2], [5], [-1], "empty")],
)
def test_slice_refused(tmp_path, starts, ends, steps, reason):
    model = _slice_model((1, 8, 2, 2), starts, ends, [1], steps)
    from onnx2caffe import convert

    with pytest.raises(ConversionError, match=reason):
        convert(model, None, check=False)
