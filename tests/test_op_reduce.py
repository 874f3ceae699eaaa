"""ReduceSum / Mean / Max / Min / L1 / L2 / SumSquare / LogSumExp over any axes on real Caffe and OpenCV vs
onnxruntime: axes as attribute and as input (ReduceSum from opset 13, the others from 18), keepdims 0 and 1,
noop_with_empty_axes, runs of axes at the start, middle and end, unit axes inside runs, ranks 2 to 6."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import helper
from onnx_testing import check_conversion, make_model

from onnx2caffe.convert import convert
from onnx2caffe.errors import ConversionError

OPS = [
    "ReduceSum",
    "ReduceMean",
    "ReduceMax",
    "ReduceMin",
    "ReduceL1",
    "ReduceL2",
    "ReduceSumSquare",
    "ReduceLogSumExp",
]
# Max / Min select a value: exact. The others sum up to 120 terms in another order than onnxruntime (plus one
# division for Mean, exp/log for LogSumExp): |error| <= R 2^-24 sum|terms|, a few 1e-7 of the largest output
# for the standard-normal inputs here (measured <= 2.3e-7 on both runtimes); 2e-6 is float32 noise with margin.
TOL = {op: 2e-6 for op in OPS} | {"ReduceMax": 0.0, "ReduceMin": 0.0}


def _node(op, axes, keepdims, opset, inits, noop=None):
    attrs = {"keepdims": keepdims}
    if noop is not None:
        attrs["noop_with_empty_axes"] = noop
    input_since = 13 if op == "ReduceSum" else 18
    if opset >= input_since:
        inputs = ["x"]
        if axes is not None:
            inits["axes"] = np.array(axes, np.int64)
            inputs.append("axes")
        return helper.make_node(op, inputs, ["y"], **attrs)
    if axes is not None:
        attrs["axes"] = list(axes)
    return helper.make_node(op, ["x"], ["y"], **attrs)


def _check(tmp_path, op, shape, axes, keepdims=1, opset=13, noop=None, scale=1.0):
    inits = {}
    node = _node(op, axes, keepdims, opset, inits, noop)
    nodes = [node]
    if scale != 1.0:
        inits["k"] = np.float32(scale)
        nodes = [helper.make_node("Mul", ["x0", "k"], ["x"]), node]
        model = make_model(nodes, {"x0": shape}, {"y": None}, inits, opset=opset)
    else:
        model = make_model(nodes, {"x": shape}, {"y": None}, inits, opset=opset)
    return check_conversion(model, tmp_path, max_rel=TOL[op])


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize(
    "shape, axes",
    [
        ((2, 3, 4, 5), [1]),  # CBAM channel pooling (N, 1, H, W)
        ((2, 3, 4, 5), [2, 3]),  # global pooling
        ((2, 3, 4, 5), [1, 3]),  # two runs
        ((4, 2, 3, 5), [0]),  # FPN-style sum of stacked branches
        ((2, 3, 4, 5), [-1]),  # last axis (LayerNorm's mean)
        ((2, 1, 4, 5), [1, 2]),  # a unit axis inside the run
        ((2, 3, 4, 5, 6), [1]),  # selective kernel: sum over the 5-D branch axis
        ((4, 5, 6), [0, 2]),
        ((7, 9), [0]),
        ((2, 3, 2, 2, 3, 2), [1, 2, 4]),
    ],
)
def test_reduce_axes(tmp_path, op, shape, axes):
    # keepdims=0 only changes the final Reshape: tested for every op, on every shape, in the next test
    _check(tmp_path, op, shape, axes, 1)


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize(
    "shape, axes", [((2, 3, 4, 5), [1, 3]), ((4, 2, 3, 5), [0]), ((2, 3, 2, 2, 3, 2), [1, 2, 4])]
)
def test_reduce_keepdims_0(tmp_path, op, shape, axes):
    _check(tmp_path, op, shape, axes, 0)


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize(
    "opset", [11, 13, 18]
)  # ReduceSum takes axes as an input from 13, the others from 18
def test_reduce_axes_input_and_attribute(tmp_path, op, opset):
    _check(tmp_path, op, (2, 3, 4, 5), [-1, 1], 1, opset)


@pytest.mark.parametrize("op", OPS)
def test_reduce_all_axes_by_default(tmp_path, op):
    _check(tmp_path, op, (2, 3, 4, 5), None, 1)


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("noop", [0, 1])
def test_noop_with_empty_axes(tmp_path, op, noop):
    """noop_with_empty_axes=1 without axes reduces nothing, but onnxruntime still applies the element-wise steps
    (ReduceL2 gives sqrt(x^2), ReduceL1 |x|, ReduceSumSquare x^2)."""
    net = _check(tmp_path, op, (2, 3, 4), None, 1, opset=18, noop=noop)
    if noop and op in ("ReduceSum", "ReduceMean", "ReduceMax", "ReduceLogSumExp"):
        assert [layer.type for layer in net.layers] == ["Input", "Power"]  # a copy


def test_reduce_over_unit_axes_only(tmp_path):
    """Nothing to sum: ReduceL2 over unit axes is sqrt(x^2) element-wise (a Reshape around Power layers)."""
    _check(tmp_path, "ReduceL2", (2, 1, 3), [1], 0)


def test_log_sum_exp_large_values(tmp_path):
    """Inputs in the hundreds: exp(x) overflows float32, the max-shifted form stays finite (as onnxruntime)."""
    _check(tmp_path, "ReduceLogSumExp", (2, 8, 3), [1], 1, scale=200.0)


def test_global_mean_is_one_pooling(tmp_path):
    net = _check(tmp_path, "ReduceMean", (2, 3, 4, 5), [2, 3], 1)
    assert [layer.type for layer in net.layers] == ["Input", "Pooling"]


def test_scalar_output_refused(tmp_path):
    model = make_model(
        [helper.make_node("ReduceSum", ["x"], ["y"], keepdims=0, name="r")],
        {"x": (2, 3)},
        {"y": None},
        opset=11,
    )
    with pytest.raises(ConversionError, match=r"node 'r' \(ReduceSum, opset 11\): a rank-0"):
        convert(model, str(tmp_path / "m"), check=False)
    assert not list(tmp_path.iterdir())


def test_computed_axes_refused(tmp_path):
    nodes = [
        helper.make_node("Cast", ["a"], ["axes"], to=7),
        helper.make_node("ReduceSum", ["x", "axes"], ["y"], name="r"),
    ]
    model = make_model(nodes, {"x": (2, 3), "a": (1,)}, {"y": (2, 1)}, opset=13)
    with pytest.raises(
        ConversionError, match=r"node 'r' \(ReduceSum, opset 13\): input 'axes' must be a constant"
    ):
        convert(model, None, check=False)
