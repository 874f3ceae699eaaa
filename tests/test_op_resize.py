"""Resize / Upsample mapper -> depthwise Deconvolution with a fixed kernel (+ replicate padding by Slice/Concat for
linear), against onnxruntime on Caffe and OpenCV; refusals for everything without an exact form."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
from onnx import helper
from onnx_testing import check_conversion, make_model

from onnx2caffe import convert
from onnx2caffe.errors import ConversionError

# nearest: every output receives exactly one input times 1.0, so the result is a bit-exact copy.
NEAREST = dict(max_rel=0.0, cos=0.999999)
# linear: two products per axis (four in 2-D) with weights like 1/3 that float32 cannot hold exactly; onnxruntime
# derives its weights from a float32 coordinate, we round the exact fraction once. A few ulp of the largest value:
# 1e-6 relative covers it; a wrong tap, offset or edge gives errors of order 0.1 or more.
LINEAR = dict(max_rel=1e-6, cos=0.999999)

SHAPE = (2, 3, 5, 7)  # odd sizes, so edges and centres do not line up by accident


def _resize_model(mode, cmode, factors, shape=SHAPE, nearest_mode=None, by="scales", opset=13, **extra):
    attrs = {"mode": mode, "coordinate_transformation_mode": cmode, **extra}
    if nearest_mode is not None:
        attrs["nearest_mode"] = nearest_mode
    full = [1, 1, *factors]
    inits = {"roi": np.zeros(0, np.float32)}
    if by == "scales":
        inits["scales"] = np.array(full, np.float32)
        inputs = ["x", "roi", "scales"]
    else:
        inits["sizes"] = np.array([d * f for d, f in zip(shape, full, strict=True)], np.int64)
        inputs = ["x", "roi", "", "sizes"]
    node = helper.make_node("Resize", inputs, ["y"], **attrs)
    return make_model([node], {"x": shape}, {"y": None}, initializers=inits, opset=opset)


def _accepted(model) -> bool:
    try:
        convert(model, None, check=False)
    except ConversionError as exc:
        assert "not an exact fixed-kernel upsampling" in str(exc) or "not supported" in str(exc), str(exc)
        return False
    return True


def _ort(model, x):
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(
        None, {"x": x}
    )[0]


NEAREST_COMBOS = [
    (c, n)
    for c in ("half_pixel", "pytorch_half_pixel", "asymmetric", "tf_half_pixel_for_nn", "align_corners")
    for n in ("round_prefer_floor", "round_prefer_ceil", "floor", "ceil")
]


@pytest.mark.parametrize("factors", [(2, 2), (2, 3), (3, 1), (4, 2)])
@pytest.mark.parametrize(("cmode", "nearest_mode"), NEAREST_COMBOS)
def test_nearest_accepted_iff_exact(tmp_path, cmode, nearest_mode, factors):
    """The mapper accepts a nearest combination exactly when onnxruntime's output is the pixel replication
    (np.repeat) that a ones-kernel Deconvolution computes; accepted ones are then checked on Caffe/OpenCV."""
    model = _resize_model("nearest", cmode, factors, nearest_mode=nearest_mode)
    x = np.random.default_rng(0).standard_normal(SHAPE).astype(np.float32)
    replicated = np.repeat(np.repeat(x, factors[0], axis=2), factors[1], axis=3)
    is_replication = np.array_equal(_ort(model, x), replicated)
    assert _accepted(model) == is_replication
    if is_replication:
        net = check_conversion(model, tmp_path, **NEAREST)
        assert [layer.type for layer in net.layers] == ["Input", "Deconvolution"]


@pytest.mark.parametrize("by", ["scales", "sizes"])
@pytest.mark.parametrize("factors", [(2, 2), (3, 3), (2, 4), (8, 8), (1, 2)])
@pytest.mark.parametrize("cmode", ["half_pixel", "pytorch_half_pixel", "asymmetric"])
def test_linear(tmp_path, cmode, factors, by):
    model = _resize_model("linear", cmode, factors, by=by)
    net = check_conversion(model, tmp_path, **LINEAR)
    types = [layer.type for layer in net.layers]
    assert types.count("Deconvolution") == 1 and "Interp" not in types
    assert net.outputs == ["y"]


@pytest.mark.parametrize("shape", [(1, 2, 1, 1), (1, 4, 1, 5), (1, 2, 2, 3), (1, 1, 3, 2)])
def test_linear_small_sizes(tmp_path, shape):
    # sizes 1 and 2 take the special edge paths (broadcast, no middle slice)
    model = _resize_model("linear", "half_pixel", (3, 2), shape=shape, by="sizes")
    check_conversion(model, tmp_path, **LINEAR)


def test_deeplab_broadcast(tmp_path):
    # DeepLabV3's ASPP pooling branch: a 1x1 map resized to 28x28 (linear, half_pixel): every output = the input
    model = _resize_model("linear", "half_pixel", (28, 28), shape=(1, 16, 1, 1), by="sizes")
    net = check_conversion(model, tmp_path, max_rel=0.0, cos=0.999999)  # x * 1.0 only: bit-exact
    assert [layer.type for layer in net.layers] == ["Input", "Deconvolution"]


def test_opset18_axes_and_antialias(tmp_path):
    inits = {"sizes": np.array([10, 21], np.int64)}
    node = helper.make_node(
        "Resize",
        ["x", "", "", "sizes"],
        ["y"],
        mode="linear",
        axes=[2, 3],
        antialias=1,
        keep_aspect_ratio_policy="stretch",
    )
    model = make_model([node], {"x": SHAPE}, {"y": None}, initializers=inits, opset=18)
    check_conversion(model, tmp_path, **LINEAR)


def test_opset19_half_pixel_symmetric(tmp_path):
    model = _resize_model("linear", "half_pixel_symmetric", (2, 3), opset=19)
    check_conversion(model, tmp_path, **LINEAR)


@pytest.mark.parametrize("mode", ["nearest", "linear"])
@pytest.mark.parametrize("opset", [7, 9, 10])
def test_upsample_and_resize10(tmp_path, mode, opset):
    # Upsample (7-9) and Resize-10 use asymmetric coordinates (nearest: floor when upsampling)
    scales = np.array([1, 1, 2, 3], np.float32)
    if opset == 7:
        node, inits = helper.make_node("Upsample", ["x"], ["y"], mode=mode, scales=scales.tolist()), {}
    else:
        op = "Upsample" if opset == 9 else "Resize"
        node, inits = helper.make_node(op, ["x", "scales"], ["y"], mode=mode), {"scales": scales}
    model = make_model([node], {"x": SHAPE}, {"y": None}, initializers=inits, opset=opset)
    check_conversion(model, tmp_path, **(NEAREST if mode == "nearest" else LINEAR))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(mode="cubic", cmode="half_pixel", factors=(2, 2)), "cubic"),
        (dict(mode="linear", cmode="half_pixel", factors=(1.5, 2)), "integer"),
        (dict(mode="nearest", cmode="asymmetric", factors=(0.5, 1)), "integer"),
        (dict(mode="linear", cmode="align_corners", factors=(2, 2)), "align_corners"),
        (dict(mode="linear", cmode="tf_crop_and_resize", factors=(2, 2)), "tf_crop_and_resize"),
    ],
)
def test_refused(kwargs, match):
    model = _resize_model(kwargs["mode"], kwargs["cmode"], kwargs["factors"])
    with pytest.raises(ConversionError, match=match):
        convert(model, None, check=False)


def test_resize_channels_refused():
    inits = {"roi": np.zeros(0, np.float32), "scales": np.array([1, 2, 1, 1], np.float32)}
    node = helper.make_node("Resize", ["x", "roi", "scales"], ["y"], mode="nearest")
    model = make_model([node], {"x": SHAPE}, {"y": None}, initializers=inits, opset=13)
    with pytest.raises(ConversionError, match="N or C"):
        convert(model, None, check=False)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.parametrize(
    ("mode", "factor"), [("nearest", 2), ("bilinear", 2), ("bilinear", 8), ("nearest", 3)]
)
def test_torch_upsample_export(tmp_path, mode, factor):
    import io

    import onnx
    import torch

    class Net(torch.nn.Module):
        def forward(self, x):
            kw = {"align_corners": False} if mode == "bilinear" else {}
            return torch.nn.functional.interpolate(x, scale_factor=factor, mode=mode, **kw)

    buf = io.BytesIO()
    torch.onnx.export(Net(), (torch.randn(1, 3, 5, 7),), buf, dynamo=False, opset_version=13)
    model = onnx.load_from_string(buf.getvalue())
    assert "Resize" in [n.op_type for n in model.graph.node]
    check_conversion(model, tmp_path, **(NEAREST if mode == "nearest" else LINEAR))
