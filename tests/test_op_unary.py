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
import onnx
import pytest
from onnx import helper
from onnx_testing import check_conversion, make_model
from range_testing import check_on_inputs, edge_values

from onnx2caffe.convert import convert
from onnx2caffe.errors import ConversionError
from onnx2caffe.onnx_graph import OnnxGraph
from onnx2caffe.passes import run_passes

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
        helper.make_node("Tan", ["a"], ["b"], name="tan"),
        helper.make_node("Sin", ["b"], ["c"], name="sin"),
        helper.make_node("Cos", ["c"], ["d"], name="cos"),
        helper.make_node("Floor", ["d"], ["e"], name="floor"),
        helper.make_node("Round", ["e"], ["f"], name="round"),
        helper.make_node("Atan", ["f"], ["y"], name="atan"),
    ]
    model = make_model(nodes, {"x": (1, 3, 4, 4)}, {"y": None}, opset=20)
    with pytest.raises(ConversionError) as info:
        convert(model, str(tmp_path / "out" / "m"))
    msg = str(info.value)
    assert "cannot convert 6 node(s)" in msg and "\n" not in msg
    for expected in (
        "node 'tan' (Tan, opset 20): Tan has no exact Caffe form: no BVLC Caffe layer computes a trigonometric",
        "node 'sin' (Sin, opset 20): Sin (e.g. in rotated-box decodes) has no exact Caffe form",
        "node 'cos' (Cos, opset 20): Cos",
        "node 'floor' (Floor, opset 20): Floor has no Caffe form: no BVLC Caffe layer computes an integer rounding",
        "node 'round' (Round, opset 20): Round has no Caffe form: no BVLC Caffe layer computes an integer rounding",
        "node 'atan' (Atan, opset 20): Atan has no exact Caffe form",
    ):
        assert expected in msg
    assert [e.node_name for e in info.value.errors] == ["tan", "sin", "cos", "floor", "round", "atan"]
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------------------------------ Cast, float64


def test_cast_float_to_float_is_a_copy(tmp_path):
    model = make_model(
        [
            helper.make_node("Cast", ["x"], ["c"], to=onnx.TensorProto.FLOAT),
            helper.make_node("Relu", ["c"], ["y"]),
        ],
        {"x": (2, 3, 4)},
        {"y": None},
    )
    check_conversion(model, tmp_path, max_rel=0.0, cos=0.999999)


@pytest.mark.parametrize(
    "to,match",
    [
        (onnx.TensorProto.FLOAT16, "attribute to='FLOAT16': rounding to FLOAT16 changes values"),
        (
            onnx.TensorProto.INT64,
            "attribute to='INT64': converting to the integer type INT64 rounds or truncates",
        ),
        (onnx.TensorProto.BOOL, "attribute to='BOOL': a boolean result has no Caffe form"),
        (onnx.TensorProto.DOUBLE, "attribute to='DOUBLE': float64 arithmetic after it cannot run in Caffe"),
    ],
)
def test_cast_refused(tmp_path, to, match):
    graph = helper.make_graph(
        [helper.make_node("Cast", ["x"], ["y"], name="cast", to=to)],
        "g",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [2, 3])],
        [helper.make_tensor_value_info("y", to, [2, 3])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
    with pytest.raises(ConversionError, match=f"node 'cast' \\(Cast, opset 13\\): {match}"):
        convert(model, str(tmp_path / "out" / "m"), check=False)
    assert not (tmp_path / "out").exists()


def _float64_island(shape):
    """x -> Cast(DOUBLE) -> Mul(per-channel float64) -> Add(float64 scalar) -> Exp -> Cast(FLOAT) -> Relu -> y"""
    rng = np.random.default_rng(7)
    inits = {
        "k": rng.uniform(0.1, 0.9, (shape[1], 1, 1)).astype(np.float64),  # not float32 values
        "c": np.array(np.pi / 10, np.float64),
    }
    nodes = [
        helper.make_node("Cast", ["x"], ["xd"], to=onnx.TensorProto.DOUBLE),
        helper.make_node("Mul", ["xd", "k"], ["m"]),
        helper.make_node("Add", ["m", "c"], ["a"]),
        helper.make_node("Exp", ["a"], ["e"]),
        helper.make_node("Cast", ["e"], ["ef"], to=onnx.TensorProto.FLOAT),
        helper.make_node("Relu", ["ef"], ["y"]),
    ]
    return make_model(nodes, {"x": shape}, {"y": None}, initializers=inits)


def test_demote_float64_island(tmp_path):
    """Mul, Add and Exp in float32 instead of float64, constants rounded once: per element within a few ulp
    (2^-24 per op and per constant, exp turning the argument's 2 roundings into |arg| * 2^-23 <= 4 * 2^-23)."""
    model = _float64_island((2, 3, 4, 5))
    g = OnnxGraph.load(model)
    assert "demote_float64" in run_passes(g)
    assert [n.op_type for n in g.graph.node] == ["Mul", "Add", "Exp", "Relu"]
    x = edge_values(-4, 4, 118)[:120].reshape(2, 3, 4, 5)
    check_on_inputs(model, tmp_path, {"x": x}, rtol=6 * ULP)


def test_demote_float64_leaves_a_float64_output():
    model = _float64_island((1, 2, 3, 4))  # k is (C, 1, 1): a rank-4 input keeps the shape
    model.graph.output[0].CopyFrom(helper.make_tensor_value_info("e", onnx.TensorProto.DOUBLE, [1, 2, 3, 4]))
    model.graph.node.pop()  # Relu
    model.graph.node.pop()  # Cast back
    g = OnnxGraph.load(model)
    assert "demote_float64" not in run_passes(g)
    with pytest.raises(ConversionError, match="float64 arithmetic"):
        convert(model, None, check=False)


def test_demote_float64_torch_buffer(tmp_path):
    """A float64 buffer (torch.from_numpy) multiplied with a float32 activation promotes the product to float64:
    both exporters write Cast(DOUBLE) ... Cast(FLOAT)."""
    import torch

    class Anchors(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.register_buffer("anchors", torch.from_numpy(np.linspace(0.3, 2.1, 4).reshape(1, 4, 1, 1)))

        def forward(self, x):
            return (torch.sigmoid(x) * self.anchors * 2.0 + 0.5).float()

    for dynamo in (False, True):
        model = _export(Anchors(), (1, 4, 3, 3), dynamo, 18 if dynamo else 13)
        net = check_conversion(model, tmp_path / str(dynamo), max_rel=1e-6, cos=0.999999)
        assert "Cast" not in str([layer.name for layer in net.layers])


# ------------------------------------------------------------------------------------------ torch exports


def _export(module, shape, dynamo: bool, opset: int):
    import io
    import warnings

    import torch

    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module.eval(), (torch.randn(shape),), buf, dynamo=dynamo, opset_version=opset)
    return onnx.load_from_string(buf.getvalue())


@pytest.mark.parametrize(
    "name,exporter",
    [
        ("ELU", "ts13"),
        ("SELU", "ts13"),
        ("CELU", "ts13"),
        ("Mish", "ts13"),  # Softplus + Tanh + Mul
        ("Mish", "dynamo18"),  # Mish
        ("Softplus", "dynamo18"),  # Softplus + Greater + Where (threshold 20)
        ("GELU_tanh", "ts13"),  # Mul/Add/Tanh, x * x * x as two Muls
        ("GELU_tanh", "dynamo18"),  # Pow(x, 3)
    ],
)
def test_torch_activation_exports(tmp_path, name, exporter):
    """torch's activations as its exporters write them (the dynamo exports take ~2 s each)."""
    import torch

    module = {
        "ELU": lambda: torch.nn.ELU(0.4),
        "SELU": torch.nn.SELU,
        "CELU": lambda: torch.nn.CELU(0.7),
        "Mish": torch.nn.Mish,
        "Softplus": torch.nn.Softplus,
        "GELU_tanh": lambda: torch.nn.GELU(approximate="tanh"),
    }[name]()
    model = _export(module, (2, 3, 6, 6), exporter.startswith("dynamo"), 18 if exporter == "dynamo18" else 13)
    check_conversion(model, tmp_path, max_rel=1e-6, cos=0.999999)


def test_remove_softplus_threshold():
    def model(t, out_is_where=True):
        nodes = [
            helper.make_node("Softplus", ["x"], ["sp"]),
            helper.make_node("Greater", ["x", "t"], ["big"]),
            helper.make_node("Where", ["big", "x", "sp"], ["y"]),
        ]
        return make_model(
            nodes, {"x": (2, 5)}, {"y": None}, initializers={"t": np.array(t, np.float32)}, opset=18
        )

    g = OnnxGraph.load(model(20.0))
    assert "remove_softplus_threshold" in run_passes(g)
    assert [n.op_type for n in g.graph.node] == ["Softplus"] and g.graph.node[0].output[0] == "y"
    # below 14.55609 softplus(x) differs from x for some x > t: the selection is kept (and Where is refused)
    g = OnnxGraph.load(model(10.0))
    assert "remove_softplus_threshold" not in run_passes(g)
    assert "Where" in [n.op_type for n in g.graph.node]


def test_softplus_is_x_above_the_threshold():
    """The fact the pass relies on: onnxruntime's Softplus returns x itself for every float32 x above
    14.55609 (checked here on every float32 from there to 64)."""
    from onnx2caffe.convert import reference_outputs
    from onnx2caffe.passes.remove_softplus_threshold import SOFTPLUS_IS_X_ABOVE

    lo = np.nextafter(np.float32(SOFTPLUS_IS_X_ABOVE), np.float32(np.inf))
    x = np.arange(lo.view(np.int32), np.float32(64).view(np.int32), dtype=np.int32).view(np.float32)
    x = x[: x.size - x.size % 1024].reshape(-1, 1024)
    model = make_model([helper.make_node("Softplus", ["x"], ["y"])], {"x": x.shape}, {"y": None})
    y = reference_outputs(model.SerializeToString(), {"x": x}, ["y"])["y"]
    assert np.array_equal(y, x)
    below = np.float32(SOFTPLUS_IS_X_ABOVE)
    model = make_model([helper.make_node("Softplus", ["x"], ["y"])], {"x": (1, 1)}, {"y": None})
    assert reference_outputs(model.SerializeToString(), {"x": below.reshape(1, 1)}, ["y"])["y"][0, 0] != below
