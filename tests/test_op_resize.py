"""Resize / Upsample -> per-axis copies, depthwise (de)convolutions or interpolation matrices, against onnxruntime
on Caffe and OpenCV, over every mode, coordinate mode, nearest mode, factor kind (integer, fractional, down, sizes),
opset signature and rank; plus the reference matrices themselves against onnxruntime."""

from __future__ import annotations

import io

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import helper
from onnx2caffe.op_mappers._resample_matrix import F32, AxisResize, axis_plan, dense, ort_matrix
from onnx_testing import check_conversion, make_model

from onnx2caffe import convert
from onnx2caffe.errors import ConversionError

# nearest / pick / gather copy values: any difference is a bug.
EXACT = dict(max_rel=0.0, cos=0.999999)
# linear and cubic: each output is a sum of products of float32 weights (2-4 non-zero per axis, the rest exact
# zeros) in two passes; onnxruntime rounds the products of both axes' weights instead. A few ulp of the largest
# value: 2e-6 relative covers it; a wrong tap, edge or offset gives errors of order 1e-2 or more.
INTERP = dict(max_rel=2e-6, cos=0.999999)

SHAPE = (2, 3, 5, 7)  # odd sizes, so edges and centres do not line up by accident
CMODES = ("half_pixel", "pytorch_half_pixel", "align_corners", "asymmetric", "half_pixel_symmetric")
NEAREST_MODES = ("round_prefer_floor", "round_prefer_ceil", "floor", "ceil")


def _types(net):
    return [layer.type for layer in net.layers]


def _resize_model(mode, cmode, hw, shape=SHAPE, by="scales", opset=13, **attrs):
    """A Resize of the last two axes: hw = (H, W) scales (by="scales") or output sizes (by="sizes")."""
    attrs = {"mode": mode, "coordinate_transformation_mode": cmode, **attrs}
    inits = {"roi": np.zeros(0, np.float32)}
    if by == "scales":
        inits["scales"] = np.array([1, 1, *hw], np.float32)
        inputs = ["x", "roi", "scales"]
    else:
        inits["sizes"] = np.array([*shape[:2], *hw], np.int64)
        inputs = ["x", "roi", "", "sizes"]
    node = helper.make_node("Resize", inputs, ["y"], **attrs)
    return make_model([node], {"x": shape}, {"y": None}, initializers=inits, opset=opset)


def _ort(model, x):
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    return sess.run(None, {"x": x})[0]


# ------------------------------------------------------------------------------------------ reference matrices
MATRIX_CASES = [
    # (n_in, scale or None, size or None)
    (5, 2.0, None),
    (5, 3.0, None),
    (7, 1.5, None),
    (6, 0.5, None),
    (9, 1 / 3, None),
    (13, 0.75, None),
    (1, 4.0, None),
    (17, None, 129),
    (7, None, 3),
    (10, None, 23),
]


@pytest.mark.parametrize(("n_in", "scale", "size"), MATRIX_CASES)
@pytest.mark.parametrize(
    ("mode", "extra"),
    [
        ("nearest", {"nearest_mode": "round_prefer_floor"}),
        ("nearest", {"nearest_mode": "round_prefer_ceil"}),
        ("nearest", {"nearest_mode": "floor"}),
        ("nearest", {"nearest_mode": "ceil"}),
        ("linear", {}),
        ("linear", {"antialias": 1}),
        ("linear", {"antialias": 1, "exclude_outside": 1}),
        ("cubic", {}),
        ("cubic", {"cubic_coeff_a": -0.5, "exclude_outside": 1}),
        ("cubic", {"antialias": 1}),
    ],
)
def test_reference_matrix_is_onnxruntimes(n_in, scale, size, mode, extra):
    """ort_matrix reproduces onnxruntime's weights: resizing the identity matrix along W returns them, one column
    per input. Nearest, linear and antialias are identical to the bit; cubic within 1 ulp (onnxruntime divides its
    coefficients by their sum inside the sum)."""
    for cmode in CMODES + ("tf_half_pixel_for_nn",):
        hw = (1, scale) if scale is not None else (n_in, size)
        model = _resize_model(
            mode, cmode, hw, shape=(1, 1, n_in, n_in), by="scales" if scale else "sizes", opset=19, **extra
        )
        got = _ort(model, np.eye(n_in, dtype=np.float32).reshape(1, 1, n_in, n_in))[0, 0].T
        n_out = got.shape[0]
        s32 = F32(scale) if scale is not None else F32(n_out) / F32(n_in)
        a = AxisResize(
            mode,
            cmode,
            extra.get("nearest_mode", "round_prefer_floor"),
            n_in,
            n_out,
            s32,
            F32(extra.get("cubic_coeff_a", -0.75)),
            bool(extra.get("exclude_outside")),
            bool(extra.get("antialias")),
        )
        mine = dense(ort_matrix(a), n_in)
        ulp = 0.0 if mode != "cubic" or extra.get("antialias") else 2.0**-24
        assert np.abs(mine - got).max() <= ulp, (cmode, mine, got)


# ------------------------------------------------------------------------------------------ nearest
@pytest.mark.parametrize("hw", [(2, 3), (0.5, 1), (1.5, 2.5), (0.6, 0.75), (4, 1)])
@pytest.mark.parametrize("cmode", CMODES + ("tf_half_pixel_for_nn",))
@pytest.mark.parametrize("nearest_mode", NEAREST_MODES)
def test_nearest(tmp_path, cmode, nearest_mode, hw):
    """Every nearest combination is a copy of onnxruntime's index choice: bit-exact."""
    model = _resize_model("nearest", cmode, hw, nearest_mode=nearest_mode)
    net = check_conversion(model, tmp_path, **EXACT)
    assert "Convolution" not in _types(net)  # copies (and along W a 0/1 matrix, exact for finite values)


def test_nearest_x2_forms(tmp_path):
    # YOLO's nn.Upsample(scale_factor=2): a 0/1 InnerProduct along W, then each row repeated by a Concat
    model = _resize_model("nearest", "asymmetric", (2, 2), nearest_mode="floor")
    net = check_conversion(model, tmp_path, **EXACT)
    assert [t for t in _types(net) if t != "Reshape"] == ["Input", "InnerProduct", "Concat"]


def test_nearest_half_is_one_pooling(tmp_path):
    model = _resize_model("nearest", "asymmetric", (0.5, 0.5), shape=(1, 3, 8, 9), nearest_mode="floor")
    net = check_conversion(model, tmp_path, **EXACT)
    assert _types(net).count("Pooling") == 1 and "Convolution" not in _types(net)


# ------------------------------------------------------------------------------------------ linear
LINEAR_SIZES = [
    ((2, 2), "scales"),
    ((3, 8), "scales"),
    ((1.5, 2.5), "scales"),  # fractional factors
    ((0.5, 0.4), "scales"),  # downsampling
    ((1, 3), "scales"),  # one axis only
    ((17, 8), "sizes"),  # odd sizes
    ((3, 29), "sizes"),
    ((2, 3), "sizes"),  # 5 -> 2, 7 -> 3: downsampling by sizes
]


@pytest.mark.parametrize(("hw", "by"), LINEAR_SIZES)
@pytest.mark.parametrize("cmode", CMODES)
def test_linear(tmp_path, cmode, hw, by):
    model = _resize_model("linear", cmode, hw, by=by)
    net = check_conversion(model, tmp_path, **INTERP)
    assert net.outputs == ["y"]


@pytest.mark.parametrize(
    ("shape", "sizes", "cmode", "forms"),
    [
        # the matrix along W (InnerProduct) and along H (1x1 Convolution)
        ((1, 4, 8, 8), (16, 16), "half_pixel", ["InnerProduct", "Convolution"]),  # bilinear x2
        ((1, 2, 17, 9), (129, 65), "align_corners", ["InnerProduct", "Convolution"]),
        ((1, 3, 16, 16), (64, 64), "align_corners", ["InnerProduct", "Convolution"]),  # smp's x4 on 16
        (
            (1, 2, 8, 8),
            (61, 61),
            "half_pixel",
            ["InnerProduct", "Convolution"],
        ),  # a 1/8 map back to the input
        # every output copies one input: 1 -> N broadcast (DeepLab's pooling branch), W by a 1-column matrix
        ((1, 16, 1, 1), (28, 28), "half_pixel", ["InnerProduct", "Concat"]),
        ((1, 16, 1, 1), (28, 28), "align_corners", ["InnerProduct", "Concat"]),
        ((1, 3, 9, 9), (5, 5), "align_corners", ["Pooling"]),  # coordinates 2 * o: one strided pick
    ],
)
def test_linear_forms(tmp_path, shape, sizes, cmode, forms):
    """Linear resizes are the matrix along each axis, except where every output copies one input."""
    model = _resize_model("linear", cmode, sizes, shape=shape, by="sizes")
    net = check_conversion(model, tmp_path, **(INTERP if "Convolution" in forms else EXACT))
    assert sorted(t for t in _types(net) if t not in ("Input", "Reshape", "Slice", "Silence")) == sorted(
        forms
    )


@pytest.mark.parametrize("shape", [(1, 2, 1, 1), (1, 4, 1, 5), (1, 2, 2, 3), (1, 1, 3, 2)])
@pytest.mark.parametrize("cmode", ["half_pixel", "align_corners"])
def test_linear_small_sizes(tmp_path, shape, cmode):
    # sizes 1 and 2 take the special edge paths (broadcast, no middle slice)
    model = _resize_model("linear", cmode, (3 * shape[2], 2 * shape[3] + 1), shape=shape, by="sizes")
    check_conversion(model, tmp_path, **INTERP)


# ------------------------------------------------------------------------------------------ cubic, antialias
@pytest.mark.parametrize("hw", [(2, 2), (1.5, 3), (0.5, 0.75)])
@pytest.mark.parametrize("cmode", ["half_pixel", "pytorch_half_pixel", "align_corners", "asymmetric"])
@pytest.mark.parametrize(("a", "exclude"), [(-0.75, 0), (-0.5, 0), (-0.75, 1)])
def test_cubic(tmp_path, cmode, hw, a, exclude):
    model = _resize_model("cubic", cmode, hw, cubic_coeff_a=a, exclude_outside=exclude)
    check_conversion(model, tmp_path, **INTERP)


@pytest.mark.parametrize("mode", ["linear", "cubic"])
@pytest.mark.parametrize("hw", [(0.5, 0.4), (0.25, 0.75), (2, 1.5)])
@pytest.mark.parametrize("exclude", [0, 1])
def test_antialias(tmp_path, mode, hw, exclude):
    model = _resize_model(
        mode, "half_pixel", hw, shape=(1, 2, 12, 15), opset=18, antialias=1, exclude_outside=exclude
    )
    check_conversion(model, tmp_path, **INTERP)


# ------------------------------------------------------------------------------------------ opsets, axes, ranks
@pytest.mark.parametrize("mode", ["nearest", "linear"])
@pytest.mark.parametrize("opset", [7, 9, 10])
@pytest.mark.parametrize("scales", [(2, 3), (1.5, 2)])
def test_upsample_and_resize10(tmp_path, mode, opset, scales):
    # Upsample (7-9) and Resize-10 use asymmetric coordinates (nearest: truncation when upsampling)
    scales = np.array([1, 1, *scales], np.float32)
    if opset == 7:
        node, inits = helper.make_node("Upsample", ["x"], ["y"], mode=mode, scales=scales.tolist()), {}
    else:
        op = "Upsample" if opset == 9 else "Resize"
        node, inits = helper.make_node(op, ["x", "scales"], ["y"], mode=mode), {"scales": scales}
    model = make_model([node], {"x": SHAPE}, {"y": None}, initializers=inits, opset=opset)
    check_conversion(model, tmp_path, **(EXACT if mode == "nearest" else INTERP))


def test_resize10_downsampling_nearest(tmp_path):
    # Resize-10 nearest rounds up when downsampling
    node = helper.make_node("Resize", ["x", "scales"], ["y"], mode="nearest")
    inits = {"scales": np.array([1, 1, 0.5, 0.6], np.float32)}
    model = make_model([node], {"x": (1, 2, 9, 10)}, {"y": None}, initializers=inits, opset=10)
    check_conversion(model, tmp_path, **EXACT)


@pytest.mark.parametrize(
    ("policy", "axes"),
    # onnxruntime matches negative axes against the policy's axis set literally, so those only with stretch
    [("stretch", [2, -1]), ("not_larger", [2, 3]), ("not_smaller", [3, 2])],
)
@pytest.mark.parametrize("mode", ["nearest", "linear"])
def test_opset18_axes_and_policy(tmp_path, policy, axes, mode):
    inits = {"sizes": np.array([10, 21], np.int64)}
    node = helper.make_node(
        "Resize", ["x", "", "", "sizes"], ["y"], mode=mode, axes=axes, keep_aspect_ratio_policy=policy
    )
    model = make_model([node], {"x": SHAPE}, {"y": None}, initializers=inits, opset=18)
    check_conversion(model, tmp_path, **(EXACT if mode == "nearest" else INTERP))


def test_opset18_scales_with_axes(tmp_path):
    inits = {"scales": np.array([2.5], np.float32)}
    node = helper.make_node("Resize", ["x", "", "scales"], ["y"], mode="linear", axes=[3])
    model = make_model([node], {"x": SHAPE}, {"y": None}, initializers=inits, opset=18)
    check_conversion(model, tmp_path, **INTERP)


@pytest.mark.parametrize("hw", [(2, 3), (1.3, 0.6)])
def test_opset19_half_pixel_symmetric(tmp_path, hw):
    model = _resize_model("linear", "half_pixel_symmetric", hw, opset=19)
    check_conversion(model, tmp_path, **INTERP)


@pytest.mark.parametrize(
    ("shape", "scales", "mode"),
    [
        ((2, 3, 7), (1, 1, 2.5), "linear"),  # 1-D interpolation of (N, C, L)
        ((2, 3, 8), (1, 1, 2), "nearest"),
        ((1, 2, 3, 4, 5), (1, 1, 2, 1.5, 2), "linear"),  # trilinear
        ((1, 2, 3, 4, 5), (1, 1, 2, 2, 2), "nearest"),
        ((1, 6, 4, 5), (1, 0.5, 1, 2), "nearest"),  # the channel axis too
        ((6, 10), (1.5, 0.5), "linear"),  # 2-D
    ],
)
def test_other_ranks(tmp_path, shape, scales, mode):
    inits = {"roi": np.zeros(0, np.float32), "scales": np.array(scales, np.float32)}
    node = helper.make_node(
        "Resize", ["x", "roi", "scales"], ["y"], mode=mode, coordinate_transformation_mode="half_pixel"
    )
    model = make_model([node], {"x": shape}, {"y": None}, initializers=inits, opset=13)
    check_conversion(model, tmp_path, **(EXACT if mode == "nearest" else INTERP))


def test_same_size_is_a_copy(tmp_path):
    # onnxruntime copies when no size changes, whatever the coordinate mode says
    model = _resize_model("linear", "align_corners", SHAPE[2:], by="sizes")
    net = check_conversion(model, tmp_path, **EXACT)
    assert _types(net) == ["Input", "Power"]


# ------------------------------------------------------------------------------------------ refusals
@pytest.mark.parametrize(
    ("attrs", "match"),
    [
        (dict(mode="linear", coordinate_transformation_mode="tf_crop_and_resize"), "tf_crop_and_resize"),
        (dict(mode="area", coordinate_transformation_mode="half_pixel"), "mode"),
        (
            dict(mode="nearest", coordinate_transformation_mode="half_pixel", nearest_mode="round"),
            "nearest_mode",
        ),
    ],
)
def test_refused(attrs, match):
    inits = {"roi": np.zeros(0, np.float32), "scales": np.array([1, 1, 2, 2], np.float32)}
    node = helper.make_node("Resize", ["x", "roi", "scales"], ["y"], **attrs)
    graph = helper.make_graph(
        [node],
        "t",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, list(SHAPE))],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [2, 3, 10, 14])],
        [onnx.numpy_helper.from_array(v, k) for k, v in inits.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    with pytest.raises(ConversionError, match=match):
        convert(model, None, check=False)


@pytest.mark.parametrize(
    ("mode", "n_in", "n_out", "last", "kind"),
    [
        ("nearest", 5, 10, False, "repeat"),
        ("nearest", 5, 10, True, "dense"),  # along W the 0/1 matrix
        ("nearest", 10, 5, True, "pick"),
        ("nearest", 5, 8, False, "gather"),
        ("nearest", 5, 5, False, "identity"),
        ("linear", 5, 15, False, "dense"),
        ("linear", 1, 7, False, "repeat"),
    ],
)
def test_axis_plan(mode, n_in, n_out, last, kind):
    a = AxisResize(mode, "asymmetric", "floor", n_in, n_out, F32(n_out) / F32(n_in))
    assert axis_plan(a, last_axis=last).kind == kind


# ------------------------------------------------------------------------------------------ torch exports
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.parametrize("dynamo", [False, True])
@pytest.mark.parametrize(
    "kwargs",
    [
        dict(scale_factor=2, mode="nearest"),
        dict(scale_factor=2, mode="bilinear", align_corners=False),
        dict(scale_factor=4, mode="bilinear", align_corners=True),
        dict(size=(13, 29), mode="bilinear", align_corners=False),
        dict(size=(13, 29), mode="bilinear", align_corners=True),
        dict(scale_factor=1.5, mode="bicubic", align_corners=False),
        dict(scale_factor=0.5, mode="bilinear", align_corners=False, antialias=True),
        dict(size=(7, 9), mode="nearest"),
    ],
)
def test_torch_interpolate_export(tmp_path, kwargs, dynamo):
    import torch

    class Net(torch.nn.Module):
        def forward(self, x):
            return torch.nn.functional.interpolate(x, **kwargs)

    if kwargs.get("antialias") and not dynamo:
        pytest.skip("the TorchScript exporter has no antialiased upsampling")
    x = torch.randn(1, 3, 6, 10)
    if dynamo:
        model = torch.onnx.export(Net().eval(), (x,), dynamo=True, verbose=False).model_proto
    else:
        buf = io.BytesIO()
        torch.onnx.export(Net().eval(), (x,), buf, dynamo=False, opset_version=13)
        model = onnx.load_from_string(buf.getvalue())
    assert "Resize" in [n.op_type for n in model.graph.node]
    check_conversion(model, tmp_path, **(EXACT if kwargs["mode"] == "nearest" else INTERP))
