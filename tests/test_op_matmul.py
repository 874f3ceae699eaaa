"""MatMul on real Caffe and OpenCV vs onnxruntime: constant weights (InnerProduct / Convolution 1x1), products of
two activations (batched, broadcast batch axes, rank-1 operands, transposed operands folded by
fold_transpose_into_matmul), and every layout the product planner can choose."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import helper
from onnx2caffe.op_mappers import matmul as matmul_mod
from onnx_testing import check_conversion, make_model, runtimes_here

from onnx2caffe.convert import convert
from onnx2caffe.errors import ConversionError

# K-term dot products summed in another order than onnxruntime's GEMM (which may also fuse the multiply-add):
# |error| <= K * 2^-24 * sum_k |x_k y_k|; for the standard-normal inputs here (K <= 100) that is below 1e-5 of
# the largest output (measured: <= 4e-7 on both runtimes).
TOL = 1e-5
RNG = np.random.default_rng(3)


def _w(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


def _swap_last(name, rank, out):
    return helper.make_node("Transpose", [name], [out], perm=list(range(rank - 2)) + [rank - 1, rank - 2])


@pytest.mark.parametrize("x_shape", [(4, 10), (2, 5, 10), (2, 3, 4, 10)])
def test_matmul_constant_weight(tmp_path, x_shape):
    model = make_model(
        [helper.make_node("MatMul", ["x", "w"], ["y"])], {"x": x_shape}, {"y": None}, {"w": _w(10, 6)}
    )
    net = check_conversion(model, tmp_path, max_rel=TOL)
    assert [layer.type for layer in net.layers] == ["Input", "InnerProduct"]


@pytest.mark.parametrize("x_shape", [(10, 6), (3, 10, 6), (2, 3, 10, 1)])
def test_matmul_constant_left(tmp_path, x_shape):
    """constant (M, K) @ activation (..., K, N): Convolution 1x1 with the constant as weight."""
    model = make_model(
        [helper.make_node("MatMul", ["w", "x"], ["y"])], {"x": x_shape}, {"y": None}, {"w": _w(7, 10)}
    )
    net = check_conversion(model, tmp_path, max_rel=TOL)
    assert "Convolution" in [layer.type for layer in net.layers]


def test_matmul_batched_constant(tmp_path):
    """A 3-D constant has no weight layer: it becomes an exact constant blob and multiplies like an activation."""
    model = make_model(
        [helper.make_node("MatMul", ["x", "w"], ["y"])], {"x": (2, 3, 4)}, {"y": None}, {"w": _w(2, 4, 5)}
    )
    check_conversion(model, tmp_path, max_rel=TOL)


@pytest.mark.parametrize("bias_first", [False, True])
def test_matmul_add_fused(tmp_path, bias_first):
    nodes = [
        helper.make_node("MatMul", ["x", "w"], ["h"], name="fc"),
        helper.make_node("Add", ["b", "h"] if bias_first else ["h", "b"], ["y"], name="bias"),
    ]
    model = make_model(nodes, {"x": (2, 10)}, {"y": None}, {"w": _w(10, 6), "b": _w(6)})
    net = check_conversion(model, tmp_path, max_rel=TOL)
    assert [layer.type for layer in net.layers] == ["Input", "InnerProduct"]
    assert len(net.layer("fc").blobs) == 2


def test_matmul_add_rank3_not_fused(tmp_path):
    nodes = [helper.make_node("MatMul", ["x", "w"], ["h"]), helper.make_node("Add", ["h", "b"], ["y"])]
    model = make_model(nodes, {"x": (2, 3, 10)}, {"y": None}, {"w": _w(10, 6), "b": _w(6)})
    net = check_conversion(model, tmp_path, max_rel=TOL)
    assert [layer.type for layer in net.layers] == ["Input", "InnerProduct", "Scale"]


@pytest.mark.parametrize(
    "a_shape, b_shape",
    [
        ((3, 4), (4, 5)),  # plain 2-D
        ((2, 3, 4), (2, 4, 5)),  # batched
        ((1, 2, 100, 32), (1, 2, 32, 100)),  # attention scores, YOLO11 at 320 (q^T k, pre-transposed)
        ((2, 1, 3, 4), (1, 5, 4, 6)),  # batch axes broadcast both ways
        ((3, 4), (2, 2, 4, 5)),  # a batch-free left operand
        ((2, 2, 3, 4), (4, 5)),  # a batch-free right operand
        ((4,), (2, 4, 3)),  # a vector on the left: a row
        ((2, 3, 4), (4,)),  # a vector on the right: a column
        ((4,), (4,)),  # a dot product (rank-0 output is refused; see below): shaped (1, 1) -> refused
        ((1, 64, 64), (1, 64, 512)),  # MAnet's position attention at 256 x 256
        ((5, 1), (1, 6)),  # K = 1: an outer product
    ],
)
def test_matmul_two_activations(tmp_path, a_shape, b_shape):
    model = make_model(
        [helper.make_node("MatMul", ["a", "b"], ["y"])], {"a": a_shape, "b": b_shape}, {"y": None}
    )
    if len(a_shape) == len(b_shape) == 1:
        with pytest.raises(ConversionError, match="rank-0"):
            convert(model, None, check=False)
        return
    net = check_conversion(model, tmp_path, max_rel=TOL)
    assert {"Scale", "Eltwise"} & {layer.type for layer in net.layers}  # the products


@pytest.mark.parametrize(
    "a_shape, ta, b_shape, tb",
    [
        ((1, 2, 32, 100), True, (1, 2, 32, 100), False),  # YOLO11: q.transpose(-2, -1) @ k
        ((1, 2, 64, 100), False, (1, 2, 100, 100), True),  # YOLO11: v @ attn.transpose(-2, -1)
        ((1, 64, 64), True, (1, 64, 64), False),  # MAnet: x_center^T @ x_top
        ((1, 64, 64), False, (1, 512, 64), True),  # MAnet: sp_map @ x_bottom^T
        ((6, 5), True, (4, 6), True),  # both transposed, 2-D
    ],
)
def test_transposed_operands_are_folded(tmp_path, a_shape, ta, b_shape, tb):
    nodes, ins = [], ["a", "b"]
    if ta:
        nodes.append(_swap_last("a", len(a_shape), "at"))
        ins[0] = "at"
    if tb:
        nodes.append(_swap_last("b", len(b_shape), "bt"))
        ins[1] = "bt"
    nodes.append(helper.make_node("MatMul", ins, ["y"]))
    model = make_model(nodes, {"a": a_shape, "b": b_shape}, {"y": None})
    result = convert(model, None, runtimes=[], check=False)
    assert "fold_transpose_into_matmul" in result.passes_applied
    check_conversion(model, tmp_path, max_rel=TOL)


def test_transpose_shared_with_another_reader_is_kept(tmp_path):
    nodes = [
        _swap_last("a", 3, "at"),
        helper.make_node("MatMul", ["at", "b"], ["y"]),
        helper.make_node("Relu", ["at"], ["z"]),
    ]
    model = make_model(nodes, {"a": (2, 4, 3), "b": (2, 4, 5)}, {"y": None, "z": None})
    result = convert(model, None, runtimes=[], check=False)
    assert "fold_transpose_into_matmul" not in result.passes_applied
    check_conversion(model, tmp_path, max_rel=TOL)


@pytest.mark.parametrize(
    "ta, tb, chunk",
    [
        (False, False, None),
        (True, False, None),
        (False, True, None),
        (True, True, None),
        (False, True, 50),
        (True, False, 1),
    ],
)
def test_every_product_plan(tmp_path, monkeypatch, ta, tb, chunk):
    """Each layout / operand choice of the planner computes the same product: one model holds one MatMul per
    candidate plan, and the planner is made to hand out the candidates in turn. chunk: products formed in
    chunks of at most that many entries (50: 3 uneven chunks of the outer axis; 1: one chunk per entry of it)."""
    if chunk is not None:
        monkeypatch.setattr(matmul_mod, "CHUNK", chunk)
    a_shape = (2, 4, 3) if ta else (2, 3, 4)
    b_shape = (2, 5, 4) if tb else (2, 4, 5)
    sizes = {"B": 2, "M": 3, "K": 4, "N": 5}
    given = {"a": "BKM" if ta else "BMK", "b": "BNK" if tb else "BKN"}
    candidates = matmul_mod.plans(sizes, given, {"a": False, "b": False})
    assert len(candidates) >= 20
    nodes, outputs = [], {}
    if ta:
        nodes.append(_swap_last("a", 3, "at"))
    if tb:
        nodes.append(_swap_last("b", 3, "bt"))
    for i in range(len(candidates)):
        nodes.append(helper.make_node("MatMul", ["at" if ta else "a", "bt" if tb else "b"], [f"y{i}"]))
        outputs[f"y{i}"] = None
    model = make_model(nodes, {"a": a_shape, "b": b_shape}, outputs)
    handed = iter(candidates)
    monkeypatch.setattr(matmul_mod, "plans", lambda *args: [next(handed)])
    # one conversion (the patched planner hands each candidate out once): the Caffe runtimes, not ncnn's too
    net = check_conversion(model, tmp_path, max_rel=TOL, runtimes=runtimes_here())
    assert next(handed, None) is None  # every candidate was used
    joins = [layer for layer in net.layers if layer.name.endswith("/joined")]
    assert len(joins) == (0 if chunk is None else len(candidates))  # every product chunked and joined


def test_batch_free_scale_plans(tmp_path, monkeypatch):
    """Plans where a batch-free operand is the Scale's second bottom (broadcast over the batch axis too)."""
    sizes = {"B": 3, "M": 2, "K": 4, "N": 5}
    given = {"a": "BMK", "b": "BKN"}
    free_a = [p for p in matmul_mod.plans(sizes, given, {"a": True, "b": False}) if p[2] == "a"]
    free_b = [p for p in matmul_mod.plans(sizes, given, {"a": False, "b": True}) if p[2] == "b"]
    # without a batch axis of its own the operand's run can leave B out (e.g. "MKNB": B is broadcast as well)
    batched = {p[1] for p in matmul_mod.plans(sizes, given, {"a": False, "b": False}) if p[2] == "a"}
    assert "MKNB" in {p[1] for p in free_a} and "MKNB" not in batched
    nodes, outputs = [], {}
    for i in range(len(free_a)):
        nodes.append(helper.make_node("MatMul", ["a1", "b"], [f"ya{i}"]))
        outputs[f"ya{i}"] = None
    for i in range(len(free_b)):
        nodes.append(helper.make_node("MatMul", ["a", "b1"], [f"yb{i}"]))
        outputs[f"yb{i}"] = None
    model = make_model(nodes, {"a": (3, 2, 4), "b": (3, 4, 5), "a1": (2, 4), "b1": (4, 5)}, outputs)
    handed = iter(free_a + free_b)
    monkeypatch.setattr(matmul_mod, "plans", lambda *args: [next(handed)])
    check_conversion(model, tmp_path, max_rel=TOL, runtimes=runtimes_here())  # one conversion, as above
    assert next(handed, None) is None


def test_product_size_limit(monkeypatch):
    monkeypatch.setattr(matmul_mod, "MAX_PRODUCT", 1000)
    model = make_model(
        [helper.make_node("MatMul", ["a", "b"], ["y"], name="big")],
        {"a": (10, 11), "b": (11, 10)},
        {"y": None},
    )
    with pytest.raises(ConversionError, match=r"node 'big' \(MatMul, opset 13\): .*10x11x10.*MAX_PRODUCT"):
        convert(model, None, check=False)
