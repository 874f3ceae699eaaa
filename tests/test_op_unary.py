"""Element-wise unary ops (ELU family, Softplus/Mish, Softsign, Exp/Log/Cosh, Abs/Neg/Sign, Sqrt/Reciprocal/Pow,
Gelu-tanh) against onnxruntime on pycaffe and OpenCV: element by element over the value ranges where each
composition could break (range_testing.check_on_inputs), plus the standard seeded check on a few shapes.

Tolerances: |caffe - onnxruntime| <= RTOL * |onnxruntime| + ATOL per element, with
    ULP = 2^-23 (one float32 ulp, relative);
    ATOL only where both sides compute a cancelling float32 expression differently: exp(x) - 1 for x just below
    0 (ELU family: both lose 2^-24 absolute of exp's rounding near 1, times alpha), and OpenCV's float32
    log(1 + exp(x)) that drops exp(x) < 2^-24 (Softplus, Mish).
"""

from __future__ import annotations

import numpy as np
import pytest
from onnx import helper
from onnx_testing import check_conversion, make_model
from range_testing import check_on_inputs, edge_values

from onnx2caffe.convert import convert
from onnx2caffe.errors import ConversionError

ULP = 2.0**-23
EXP_NEAR_1 = 2.0**-23  # one ulp of exp(x) ~ 1 (x just below 0): what exp(x) - 1 can differ by absolutely

WIDE = [(-4, 4), (-1e-3, 1e-3), (-80, 80), (-1e30, 1e30)]
POSITIVE = [(0, 4), (1e-30, 1e30), (0, 1e-3)]

# id: (op, attrs, opset, ranges, rtol, atol)
CASES = {
    "elu": ("Elu", {}, 13, WIDE, 2 * ULP, EXP_NEAR_1),
    "elu_alpha0.3": ("Elu", {"alpha": 0.3}, 13, WIDE, 2 * ULP, 0.3 * EXP_NEAR_1),
    "elu_alpha2": ("Elu", {"alpha": 2.0}, 13, WIDE, 2 * ULP, 2 * EXP_NEAR_1),
    "selu": ("Selu", {}, 13, WIDE, 3 * ULP, 1.76 * EXP_NEAR_1),
    "selu_custom": ("Selu", {"alpha": 2.0, "gamma": 0.5}, 13, WIDE, 3 * ULP, 1.0 * EXP_NEAR_1),
    "celu": ("Celu", {}, 13, WIDE, 2 * ULP, EXP_NEAR_1),
    "celu_alpha0.3": ("Celu", {"alpha": 0.3}, 13, WIDE, 3 * ULP, 0.3 * EXP_NEAR_1),
    "celu_alpha3": ("Celu", {"alpha": 3.0}, 13, WIDE, 3 * ULP, 3 * EXP_NEAR_1),
    # OpenCV: log(1 + exp(x)) in float32 is 0 for x < -16.6 where softplus is exp(x) < 2^-24
    "softplus": ("Softplus", {}, 13, WIDE, 2 * ULP, 2.0**-24),
    # that absolute error times |x|: at most 16.6 * 2^-24 ~ 1e-6 (|x| e^x below x = -16.6)
    "mish": ("Mish", {}, 18, WIDE, 4 * ULP, 1.1e-6),
    "softsign": ("Softsign", {}, 13, WIDE, 2 * ULP, 0.0),
    # OpenCV's exp overflows from 88.3763 (see test_exp_overflow_edge): the ranges stop below
    "exp": ("Exp", {}, 13, [(-4, 4), (-1e-3, 1e-3), (-87, 88.3)], 2 * ULP, 0.0),
    "log": ("Log", {}, 13, POSITIVE, 2 * ULP, 0.0),
    "cosh": ("Cosh", {}, 13, [(-4, 4), (-1e-3, 1e-3), (-88, 88)], 2 * ULP, 0.0),
    "abs": ("Abs", {}, 13, WIDE, 0.0, 0.0),
    "neg": ("Neg", {}, 13, WIDE, 0.0, 0.0),
    "sign": ("Sign", {}, 13, WIDE + [(-1e-30, 1e-30)], 0.0, 0.0),
    "reciprocal": ("Reciprocal", {}, 13, WIDE, ULP, 0.0),
    "sqrt": ("Sqrt", {}, 13, POSITIVE, ULP, 0.0),
    # 0.5 * x * (1 + tanh(a)) cancels for a << 0: onnxruntime's tanh is up to 2 ulp of 1 off there (even below
    # -1: gelu(-5.13) comes out +3.1e-7 instead of -9.5e-8), so 0.5 * |x| * 2^-22 absolute, |x| <= 6
    "gelu_tanh": ("Gelu", {"approximate": "tanh"}, 20, [(-6, 6), (-1e-3, 1e-3)], 3 * ULP, 6 * 2.0**-23),
}


def _values(ranges, cols: int = 64) -> np.ndarray:
    x = np.concatenate([edge_values(lo, hi, 1024, seed=i) for i, (lo, hi) in enumerate(ranges)])
    x = np.concatenate([x, np.zeros((-x.size) % cols, np.float32)])
    return x.reshape(1, 1, -1, cols)  # 4-D: OpenCV's element-wise layers take their vectorised path


@pytest.mark.parametrize("case", list(CASES))
def test_unary_value_ranges(tmp_path, case):
    op, attrs, opset, ranges, rtol, atol = CASES[case]
    x = _values(ranges)
    model = make_model(
        [helper.make_node(op, ["x"], ["y"], **attrs)], {"x": x.shape}, {"y": None}, opset=opset
    )
    measured = check_on_inputs(model, tmp_path, {"x": x}, rtol=rtol, atol=atol)
    for max_rel, _ in measured.values():
        assert max_rel <= 1e-6  # the project's metric on the same inputs


@pytest.mark.parametrize("shape", [(2, 3, 5, 7), (4, 9), (1, 2, 3, 4, 5)])
@pytest.mark.parametrize(
    "case", ["elu_alpha0.3", "selu", "celu_alpha0.3", "softplus", "mish", "softsign", "exp"]
)
def test_unary_shapes(tmp_path, case, shape):
    op, attrs, opset, *_ = CASES[case]
    model = make_model([helper.make_node(op, ["x"], ["y"], **attrs)], {"x": shape}, {"y": None}, opset=opset)
    check_conversion(model, tmp_path, max_rel=1e-6, cos=0.999999)


@pytest.mark.parametrize("p", [2.0, 3.0, 0.5, -1.0, 1.5, -0.5, 0.0, 1.0, 4.0, 1.0 / 3.0])
def test_pow_constant_exponent(tmp_path, p):
    # negative bases: NaN for a non-integer exponent on every side (check_on_inputs requires NaN on both)
    x = _values([(-4, 4), (-1e-3, 1e-3), (-1e3, 1e3)])
    model = make_model(
        [helper.make_node("Pow", ["x", "p"], ["y"])],
        {"x": x.shape},
        {"y": None},
        initializers={"p": np.array(p, np.float32)},
    )
    check_on_inputs(model, tmp_path, {"x": x}, rtol=ULP)
    types = [layer.type for layer in convert(model, None, check=False).net.layers]
    if p in (2.0, 3.0):  # x * x and (x * x) * x: bit-exact with onnxruntime (rtol 0 would pass too)
        assert types == ["Input", "Eltwise"]


def test_pow_integer_typed_exponent(tmp_path):
    model = make_model(
        [helper.make_node("Pow", ["x", "p"], ["y"])],
        {"x": (2, 8)},
        {"y": None},
        initializers={"p": np.array(2)},
    )
    check_conversion(model, tmp_path, max_rel=0.0, cos=0.999999)


@pytest.mark.parametrize(
    "exponent",
    [
        np.array([1.0, 2.0, 2.0, 0.5], np.float32).reshape(1, 4, 1, 1),  # per channel, runs of equal values
        np.array([3.0, -1.0, 1.0], np.float32).reshape(3, 1),  # along H, broadcast over W
    ],
)
def test_pow_exponent_along_one_axis(tmp_path, exponent):
    shape = (2, 4, 3, 5)
    x = np.abs(np.random.default_rng(0).standard_normal(shape)).astype(np.float32) + 0.1
    model = make_model(
        [helper.make_node("Pow", ["x", "p"], ["y"])], {"x": shape}, {"y": None}, initializers={"p": exponent}
    )
    check_on_inputs(model, tmp_path, {"x": x}, rtol=ULP)


@pytest.mark.parametrize(
    "exponent,inputs,match",
    [
        (np.arange(6, dtype=np.float32).reshape(2, 3), {}, "varies along 2 axes"),
        (None, {"e": (2, 3)}, "exponent is computed at run time"),
        (np.array(1.0 / 3.0, np.float64), {}, "not a float32 value"),
    ],
)
def test_pow_refused(tmp_path, exponent, inputs, match):
    inits = {} if exponent is None else {"e": exponent}
    nodes = [helper.make_node("Pow", ["x", "e"], ["y"], name="the_pow")]
    model = make_model(nodes, {"x": (2, 3), **inputs}, {"y": None}, initializers=inits)
    with pytest.raises(ConversionError, match=f"node 'the_pow' \\(Pow, opset 13\\).*{match}"):
        convert(model, str(tmp_path / "out" / "m"), check=False)
    assert not (tmp_path / "out").exists()


def test_special_values(tmp_path):
    """Infinities, signed zeros and the largest floats (no subnormals: OpenCV flushes them to 0 in every
    layer, onnxruntime does not)."""
    x = np.array([[np.inf, -np.inf, 0.0, -0.0, 1e-37, -1e-37, 3e38, -3e38, 1.0, -2.0, 5.0, -0.5]], np.float32)
    for op in ("Sign", "Abs", "Neg", "Elu", "Softplus", "Exp", "Celu"):
        model = make_model([helper.make_node(op, ["x"], ["y"])], {"x": x.shape}, {"y": None})
        check_on_inputs(model, tmp_path / op, {"x": x}, rtol=2 * ULP, atol=2.0**-24)


def test_exp_overflow_edge(tmp_path):
    """exp(x) is finite up to x = 88.7228: real Caffe agrees with onnxruntime up to there; OpenCV's vectorised
    float32 exp (4-D blobs) returns inf from x = 88.3763 on (documented in the Exp mapper's notes)."""
    from caffe_runtimes import shared_runtime

    x = np.linspace(88.0, 88.72, 512, dtype=np.float32).reshape(1, 1, 8, -1)  # 4-D (2-D takes another path)
    model = make_model([helper.make_node("Exp", ["x"], ["y"])], {"x": x.shape}, {"y": None})
    check_on_inputs(model, tmp_path / "caffe", {"x": x}, rtol=2 * ULP, runtimes=[shared_runtime("pycaffe")])
    with pytest.raises(AssertionError, match=r"opencv y: \|error\| inf .*caffe inf"):
        check_on_inputs(model, tmp_path / "cv", {"x": x}, rtol=2 * ULP, runtimes=[shared_runtime("opencv")])


def test_celu_negative_alpha_refused(tmp_path):
    model = make_model(
        [helper.make_node("Celu", ["x"], ["y"], name="c", alpha=-1.0)], {"x": (2, 3)}, {"y": None}
    )
    with pytest.raises(ConversionError, match="attribute alpha=-1.0: Celu needs alpha > 0"):
        convert(model, str(tmp_path / "m"), check=False)


def test_selu_and_mish_layers():
    # the compositions the notes describe (cost)
    def types(op, opset=13, **attrs):
        model = make_model(
            [helper.make_node(op, ["x"], ["y"], **attrs)], {"x": (1, 3)}, {"y": None}, opset=opset
        )
        return [layer.type for layer in convert(model, None, check=False).net.layers[1:]]

    assert types("Selu") == ["ELU", "Power"]
    assert types("Mish", 18) == ["BNLL", "TanH", "Eltwise"]
    assert types("Celu") == ["ELU"]
    assert types("Celu", alpha=0.5) == ["ReLU", "Eltwise", "Power", "ELU", "Eltwise"]
    assert types("Softsign") == ["AbsVal", "Power", "Eltwise"]
    assert types("Sign") == ["Power"] * 4 + ["Eltwise", "Power", "Eltwise"]


def test_refusals_name_op_and_reason(tmp_path):
    """Ops with no exact Caffe form are refused by a mapper that says why; every such node is listed in the
    one error, and nothing is written."""
    nodes = [
        helper.make_node("Relu", ["x"], ["a"], name="ok"),
        helper.make_node("Erf", ["a"], ["b"], name="erf"),
        helper.make_node("Sin", ["b"], ["c"], name="sin"),
        helper.make_node("Cos", ["c"], ["d"], name="cos"),
        helper.make_node("Floor", ["d"], ["e"], name="floor"),
        helper.make_node("Gelu", ["e"], ["f"], name="gelu"),
        helper.make_node("Atan", ["f"], ["y"], name="atan"),
    ]
    model = make_model(nodes, {"x": (1, 3, 4, 4)}, {"y": None}, opset=20)
    with pytest.raises(ConversionError) as info:
        convert(model, str(tmp_path / "out" / "m"))
    msg = str(info.value)
    assert "cannot convert 6 node(s)" in msg and "\n" not in msg
    for expected in (
        "node 'erf' (Erf, opset 20): Erf (used by GELU) has no exact Caffe form: no BVLC Caffe layer computes erf",
        "node 'sin' (Sin, opset 20): Sin (e.g. in rotated-box decodes) has no exact Caffe form",
        "node 'cos' (Cos, opset 20): Cos",
        "node 'floor' (Floor, opset 20): Floor has no Caffe form: no BVLC Caffe layer computes an integer rounding",
        "node 'gelu' (Gelu, opset 20): attribute approximate='none': GELU's erf form has no exact Caffe form",
        "node 'atan' (Atan, opset 20): Atan has no exact Caffe form",
    ):
        assert expected in msg
    assert [e.node_name for e in info.value.errors] == ["erf", "sin", "cos", "floor", "gelu", "atan"]
    assert not (tmp_path / "out").exists()
