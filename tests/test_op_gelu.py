"""GELU (erf form) and Erf: the compositions of op_mappers/_erf.py on pycaffe and OpenCV, against the exact
functions (float64) and against onnxruntime; the fuse_gelu pass on the patterns torch's exporters write.

Bounds (op_mappers/_erf.py, measured over every float32 |x| <= 10 by benchmarks/gelu_bound.py), per element,
for |x| >= 2^-120 (below, subnormal intermediates: OpenCV flushes them, only |error| <= |x| holds):
- GELU: |error| <= (4e-7 + 2^-25 x^2) |GELU(x)| (a few roundings, and the rounding of x^2 in exp(-x^2 / 2):
  6.7e-7 at |x| = 3, 3.4e-6 at |x| = 10) while GELU(x) is a normal float32, and |error| <= 2e-7 |x| everywhere;
- Erf: |error| <= 2.5e-7 |erf(x)|.
Against onnxruntime, whose erf-based GELU cancels in 1 + erf for x < 0 (it is up to 1.2e-7 |x| off and 0 below
x = -5.9): |caffe - onnxruntime| <= 2e-7 |x| + 1.2e-7 |x| (GELU), <= 2.5e-7 + 1 ulp relative (Erf).
"""

from __future__ import annotations

import math

import numpy as np
import onnx
import pytest
from onnx import helper
from onnx_testing import check_conversion, make_model, runtimes_here
from range_testing import edge_values

from onnx2caffe.convert import convert, reference_outputs
from onnx2caffe.onnx_graph import OnnxGraph
from onnx2caffe.passes import run_passes

SQRT2 = np.float32(math.sqrt(2.0))
REL_FROM = 2.0**-120
GELU_ABS_X = 2e-7  # |error| / |x|, every x
ORT_GELU_ABS_X = 1.2e-7  # onnxruntime's own |error| / |x| (1 + erf cancelling for x < 0)
ERF_REL = 2.5e-7


def _gelu64(x):
    x = np.asarray(x, np.float64)
    q = 0.5 * np.frompyfunc(math.erfc, 1, 1)(np.abs(x) / math.sqrt(2.0)).astype(np.float64)
    return np.where(x < 0, x * q, x - x * q)


def _erf64(x):
    return np.frompyfunc(math.erf, 1, 1)(np.asarray(x, np.float64)).astype(np.float64)


def _gelu_rel(x):
    """The relative bound: a few roundings plus the rounding of x^2 in exp(-x^2 / 2), x^2 / 2 * 2^-24."""
    return 4e-7 + 2.0**-25 * np.asarray(x, np.float64) ** 2


def _inputs(ranges, cols=64):
    x = np.concatenate([edge_values(lo, hi, 4096, seed=i) for i, (lo, hi) in enumerate(ranges)])
    special = np.array([0.75, -0.75, np.nextafter(np.float32(0.75), 1), np.nextafter(np.float32(-0.75), -1)])
    x = np.concatenate([x, special.astype(np.float32), np.float32([1e-37, -1e-37, 3e38, -3e38, 1e20, -1e20])])
    x = np.concatenate([x, np.zeros((-x.size) % cols, np.float32)])
    return x.reshape(1, 1, -1, cols)


def _run(model, tmp_path, x):
    """{runtime: output} of the converted model on x, and onnxruntime's output."""
    result = convert(model, str(tmp_path / "model"), check=False)
    ref = reference_outputs(model.SerializeToString(), {"x": x}, ["y"])["y"]
    outs = {}
    for rt in runtimes_here():
        with rt.load(result.prototxt, result.caffemodel) as loaded:
            got = loaded.run({result.name_map["x"]: x}, outputs=[result.name_map["y"]])
        outs[rt.name] = np.asarray(got[result.name_map["y"]], np.float64).reshape(x.shape)
    return outs, np.asarray(ref, np.float64), result.net


RANGES = [(-10, 10), (-3, 3), (-1e-3, 1e-3), (-1e30, 1e30), (-14, -9)]


def test_gelu_bound(tmp_path):
    x = _inputs(RANGES)
    model = make_model([helper.make_node("Gelu", ["x"], ["y"])], {"x": x.shape}, {"y": None}, opset=20)
    outs, ort, net = _run(model, tmp_path, x)
    assert len(net.layers) - 1 == 13
    exact = _gelu64(x)
    ax = np.abs(x.astype(np.float64))
    normal = (ax >= REL_FROM) & (np.abs(exact) >= np.finfo(np.float32).tiny)
    for name, y in outs.items():
        assert np.isfinite(y).all(), name
        err = np.abs(y - exact)
        assert (err <= GELU_ABS_X * ax + 1e-45).all(), (name, x[err > GELU_ABS_X * ax + 1e-45][:4])
        rel = err[normal] / np.abs(exact[normal])
        bad = rel > _gelu_rel(x[normal])
        assert not bad.any(), (name, x[normal][bad][:4], rel[bad][:4])
        # against onnxruntime: both bounds added
        assert (np.abs(y - ort) <= (GELU_ABS_X + ORT_GELU_ABS_X) * ax + 1e-45).all(), name
    # onnxruntime's own GELU is 0 from x = -5.9 on; the composition keeps GELU(-10) = -7.6e-23 to 2.5e-6
    at = np.flatnonzero(x.reshape(-1) == np.float32(-10))
    assert ort.reshape(-1)[at][0] == 0.0 and all(y.reshape(-1)[at][0] < -7e-23 for y in outs.values())


def test_erf_bound(tmp_path):
    x = _inputs(RANGES[:4] + [(-4, 4)])
    model = make_model([helper.make_node("Erf", ["x"], ["y"])], {"x": x.shape}, {"y": None}, opset=13)
    outs, ort, net = _run(model, tmp_path, x)
    assert {layer.type for layer in net.layers[1:]} == {"AbsVal", "Power", "Eltwise", "Exp", "Sigmoid"}
    exact = _erf64(x)
    ax = np.abs(x.astype(np.float64))
    normal = ax >= REL_FROM
    for name, y in outs.items():
        assert np.isfinite(y).all(), name
        err = np.abs(y - exact)
        assert (err[normal] <= ERF_REL * np.abs(exact[normal])).all(), (
            name,
            x[normal][err[normal] > ERF_REL * np.abs(exact[normal])][:4],
        )
        assert (err[~normal] <= ax[~normal] * 1.13).all(), name
        # onnxruntime's erf is within 1 ulp (2^-23 relative)
        assert (np.abs(y - ort)[normal] <= (ERF_REL + 2.0**-23) * np.abs(ort[normal])).all(), name
    # both branches meet at |x| = 0.75 (each counted half there)
    for v in (0.75, -0.75):
        i = np.flatnonzero(x.reshape(-1) == np.float32(v))[0]
        for y in outs.values():
            assert abs(y.reshape(-1)[i] - math.erf(float(np.float32(v)))) <= ERF_REL * 0.72


@pytest.mark.parametrize("shape", [(2, 3, 5, 7), (4, 9), (1, 2, 3, 4, 5, 6)])
@pytest.mark.parametrize("op", ["Gelu", "Erf"])
def test_gelu_erf_shapes(tmp_path, op, shape):
    """Any rank: OpenCV's Eltwise takes at most 5 axes, rank 6 is viewed flat around each Eltwise."""
    opset = 20 if op == "Gelu" else 13
    model = make_model([helper.make_node(op, ["x"], ["y"])], {"x": shape}, {"y": None}, opset=opset)
    check_conversion(model, tmp_path, max_rel=1e-6, cos=0.999999)


# ------------------------------------------------------------------------------------------ fuse_gelu


def _gelu_pattern(variant: str):
    """torch's GELU as the exporters write it: (nodes, initializers, output)."""
    inits = {"sqrt2": np.array(SQRT2), "one": np.array(1.0, np.float32), "half": np.array(0.5, np.float32)}
    if variant == "mul_rsqrt2":
        inits["rsqrt2"] = np.array(np.float32(1 / math.sqrt(2)))
        nodes = [helper.make_node("Mul", ["rsqrt2", "x"], ["u"])]
    else:
        nodes = [helper.make_node("Div", ["x", "sqrt2"], ["u"])]
    nodes += [helper.make_node("Erf", ["u"], ["e"]), helper.make_node("Add", ["e", "one"], ["p"])]
    if variant in ("torchscript", "mul_rsqrt2"):  # Mul(x, p) -> Mul(., 0.5)
        nodes += [helper.make_node("Mul", ["x", "p"], ["m"]), helper.make_node("Mul", ["m", "half"], ["y"])]
    elif variant == "dynamo":  # Mul(0.5, p) -> Mul(x, .)
        nodes += [helper.make_node("Mul", ["half", "p"], ["m"]), helper.make_node("Mul", ["x", "m"], ["y"])]
    elif variant == "half_first":  # Mul(x, 0.5) -> Mul(., p)
        nodes += [helper.make_node("Mul", ["x", "half"], ["m"]), helper.make_node("Mul", ["m", "p"], ["y"])]
    elif variant == "no_half":  # the 0.5 folded into the next layer by a simplifier: 2 GELU(x)
        nodes += [helper.make_node("Mul", ["p", "x"], ["y"])]
    return nodes, inits, "y"


@pytest.mark.parametrize("variant", ["torchscript", "dynamo", "half_first", "no_half", "mul_rsqrt2"])
def test_fuse_gelu(tmp_path, variant):
    nodes, inits, out = _gelu_pattern(variant)
    x_shape = (2, 3, 8, 16)
    # a producer before x and a consumer after, as in a net
    nodes = [helper.make_node("Relu", ["in"], ["x"])] + nodes + [helper.make_node("Neg", [out], ["z"])]
    model = make_model(nodes, {"in": x_shape}, {"z": None}, initializers=inits, opset=13)
    g = OnnxGraph.load(model)
    assert "fuse_gelu" in run_passes(g)
    assert [n.op_type for n in g.graph.node] == ["Relu", "Gelu", "Neg"]
    gelu = g.graph.node[1]
    scale = {a.name: helper.get_attribute_value(a) for a in gelu.attribute}.get("scale", 1.0)
    assert scale == (2.0 if variant == "no_half" else 1.0)
    check_conversion(model, tmp_path, max_rel=1e-6, cos=0.999999)


@pytest.mark.parametrize("why", ["not_sqrt2", "erf_read_twice", "p_is_output", "other_factor"])
def test_fuse_gelu_leaves_other_patterns(tmp_path, why):
    nodes, inits, out = _gelu_pattern("torchscript")
    outputs = {out: None}
    if why == "not_sqrt2":
        inits["sqrt2"] = np.array(2.0, np.float32)
    elif why == "erf_read_twice":
        nodes.append(helper.make_node("Neg", ["e"], ["e2"]))
        outputs["e2"] = None
    elif why == "p_is_output":
        outputs["p"] = None
    elif why == "other_factor":  # x * p * w with w another activation: 2 GELU(x) = x * p fuses, * w stays
        nodes[4] = helper.make_node("Mul", ["m", "w"], ["y"])
    inputs = {"x": (2, 5, 7)} | ({"w": (2, 5, 7)} if why == "other_factor" else {})
    model = make_model(nodes, inputs, outputs, initializers=inits, opset=13)
    g = OnnxGraph.load(model)
    applied = run_passes(g)
    ops = [n.op_type for n in g.graph.node]
    if why == "other_factor":
        assert ops == ["Gelu", "Mul"] and g.graph.node[0].attribute[-1].f == 2.0
    else:
        assert "fuse_gelu" not in applied and "Erf" in ops
    check_conversion(model, tmp_path, max_rel=1e-6, cos=0.999999)  # the Erf mapper where not fused


@pytest.mark.parametrize("exporter,opset", [("torchscript", 13), ("dynamo", 18), ("dynamo", 20)])
def test_torch_gelu_exports(tmp_path, exporter, opset):
    """nn.GELU() after a Linear as torch writes it: fused (opset < 20) or the Gelu op (20): 13 layers."""
    torch = pytest.importorskip("torch")
    from onnx2caffe.exporters.torch_export import export_onnx, simplify

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.GELU(), torch.nn.Linear(32, 8)).eval()
    proto, _ = export_onnx(net, [(2, 16)], exporter=exporter, opset=opset)
    proto = simplify(proto)
    ops = [n.op_type for n in proto.graph.node]
    assert ("Gelu" in ops) == (opset >= 20) and ("Erf" in ops) == (opset < 20)
    g = OnnxGraph.load(proto)
    run_passes(g)
    assert "Erf" not in [n.op_type for n in g.graph.node]
    onnx.checker.check_model(proto)
    net = check_conversion(proto, tmp_path, max_rel=1e-6, cos=0.999999)
    assert sum(layer.type == "Exp" for layer in net.layers) == 1
