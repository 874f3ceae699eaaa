"""Caffe layer semantics on both runtimes, against independent float64 torch/numpy computations that
follow Caffe's documented behaviour (layer sources' comments and caffe.proto; see
/work/shared/notes/caffe-facts.md). Every net is built by hand with onnx2caffe.caffe_net (no ONNX).

Tolerance: max |got - ref| <= 1e-5 * max(1, max |ref|) for every checked blob. The runtimes compute in
float32 (unit roundoff 6e-8); the largest reduction here sums under 100 products of O(1) values, whose
rounding error stays around 1e-6 relative to the output scale, so 1e-5 is float32 noise with margin
while any semantic difference (a missing bias, a wrong divisor, a shifted window) is far above it.

Where a runtime disagrees with Caffe's documented semantics or cannot load a layer, the case is an
xfail(strict=True) naming the runtime and the measured difference (see KNOWN below): it must keep
failing, and the tolerance is never loosened for it.
"""

from __future__ import annotations

import math
import zlib

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from caffe_runtimes import shared_runtime

from onnx2caffe.caffe_net import CaffeNet
from onnx2caffe.errors import RuntimeExecutionError
from onnx2caffe.proto import caffe_pb2

RUNTIMES = ("pycaffe", "opencv")

# (runtime, test name, case id) -> reason. Filled from measurements on this machine (OpenCV 4.x,
# brocolli-caffe 9.0.2); strict, so a fixed runtime makes the test fail until the entry is removed.
KNOWN: dict[tuple[str, str, str], str] = {
    (
        "opencv",
        "deconv",
        "dilation2",
    ): "OpenCV ignores Deconvolution dilation: output 5x5 where Caffe gives 7x7",
    ("opencv", "ip", "transpose"): "OpenCV ignores inner_product_param.transpose: max abs error 7.65",
    ("opencv", "slice", "equal_split_3"): "OpenCV cannot run a Slice without slice_point (even split over "
    "the tops): 'splits > 0 && inpShape[axis_rw] % splits == 0' fails",
    ("opencv", "flatten", "axis0"): "OpenCV's Flatten with axis 0 gives shape (120, 1), Caffe (120,)",
    (
        "opencv",
        "conv",
        "depthwise3x3_on_1x1",
    ): "OpenCV's depthwise 3x3 kernel is wrong when the input height or "
    "width is 1 (max abs error ~2): the converter trims such kernels to the one tap that reads the input",
    (
        "opencv",
        "conv",
        "depthwise3x3_on_1xW",
    ): "OpenCV's depthwise 3x3 kernel is wrong when the input height or width is 1 (max abs error ~3)",
}


def grid(test: str, cases: dict) -> list:
    """pytest params (runtime, case) for every runtime x case, with KNOWN xfails attached."""
    params = []
    for rt_name in RUNTIMES:
        for case_id, case in cases.items():
            reason = KNOWN.get((rt_name, test, case_id))
            marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
            params.append(pytest.param(rt_name, case, id=f"{rt_name}-{case_id}", marks=marks))
    return params


def rng_for(*key) -> np.random.Generator:
    """A generator seeded by the case (stable across processes, unlike hash())."""
    return np.random.default_rng(zlib.crc32(repr(key).encode()))


def run_net(rt_name: str, net: CaffeNet, feeds: dict, outputs: list[str], tmp_path) -> dict[str, np.ndarray]:
    rt = shared_runtime(rt_name)
    proto, model = net.save(tmp_path / "net")
    with rt.load(proto, model) as m:
        return m.run(feeds, outputs=outputs)


def assert_close(got: dict, refs: dict) -> None:
    for name, ref in refs.items():
        ref = np.asarray(ref, dtype=np.float64)
        assert got[name].shape == ref.shape, (
            f"{name}: shape {got[name].shape}, Caffe semantics give {ref.shape}"
        )
        err = float(np.abs(got[name].astype(np.float64) - ref).max()) if ref.size else 0.0
        bound = 1e-5 * max(1.0, float(np.abs(ref).max()) if ref.size else 0.0)
        assert err <= bound, f"{name}: max abs error {err:.3g} > {bound:.3g}"


def check(rt_name, net, feeds, refs, tmp_path):
    got = run_net(rt_name, net, feeds, list(refs), tmp_path)
    assert_close(got, refs)


def t64(a):
    return torch.from_numpy(np.asarray(a, dtype=np.float64))


def spatial_params(form: str, prefix: str, hw: tuple[int, int], repeated: bool = True) -> dict:
    """Caffe's ways of writing a 2-D kernel/stride/pad: one value, *_h/*_w, or (repeated fields of
    ConvolutionParameter only) two values."""
    if form == "hw":
        return {f"{prefix}_h": hw[0], f"{prefix}_w": hw[1]}
    if form == "list" and repeated:
        return {{"kernel": "kernel_size"}.get(prefix, prefix): list(hw)}
    assert hw[0] == hw[1], "square form needs equal values"
    value = hw[0]
    key = {"kernel": "kernel_size"}.get(prefix, prefix)
    return {key: [value] if repeated else value}


# ------------------------------------------------------------------------------------------ Convolution

# C, O, (H, W), kernel, stride, pad, dilation, group, bias, form
CONV_CASES = {
    "3x3": (4, 6, (9, 11), (3, 3), (1, 1), (1, 1), (1, 1), 1, True, "sq"),
    "group2_stride2": (4, 6, (10, 9), (3, 3), (2, 2), (1, 1), (1, 1), 2, True, "sq"),
    "depthwise_nobias": (6, 6, (8, 8), (3, 3), (1, 1), (1, 1), (1, 1), 6, False, "sq"),
    "dilation2": (3, 5, (11, 10), (3, 3), (1, 1), (2, 2), (2, 2), 1, True, "sq"),
    "dilation2x3_stride1x2": (3, 4, (12, 13), (3, 3), (1, 2), (2, 3), (2, 3), 1, True, "hw"),
    "kernel3x1_stride2x1_nobias": (4, 5, (9, 7), (3, 1), (2, 1), (1, 0), (1, 1), 1, False, "hw"),
    "kernel1x5_stride1x3_pad0x2": (2, 3, (6, 11), (1, 5), (1, 3), (0, 2), (1, 1), 1, True, "hw"),
    "kernel2x3_as_list": (3, 4, (7, 8), (2, 3), (1, 2), (1, 1), (1, 1), 1, True, "list"),
    "1x1_stride2": (8, 4, (7, 7), (1, 1), (2, 2), (0, 0), (1, 1), 1, True, "sq"),
    "group4_kernel2x3": (8, 12, (9, 10), (2, 3), (2, 1), (0, 1), (1, 1), 4, True, "hw"),
    "depthwise3x3_on_1x1": (8, 8, (1, 1), (3, 3), (1, 1), (1, 1), (1, 1), 8, True, "sq"),
    "depthwise3x3_on_1xW": (8, 8, (1, 6), (3, 3), (1, 1), (1, 1), (1, 1), 8, True, "sq"),
}


@pytest.mark.parametrize("rt_name,case", grid("conv", CONV_CASES))
def test_convolution(rt_name, case, tmp_path):
    c, o, (h, w), k, s, p, d, g, bias, form = case
    rng = rng_for("conv", case)
    x = rng.standard_normal((2, c, h, w)).astype(np.float32)
    weight = rng.standard_normal((o, c // g, *k)).astype(np.float32)
    b = rng.standard_normal(o).astype(np.float32)
    param = {"num_output": o, "group": g, "bias_term": bias}
    param.update(spatial_params("list" if form == "list" else form, "kernel", k))
    param.update(spatial_params("hw" if form == "list" else form, "stride", s))
    param.update(spatial_params("hw" if form == "list" else form, "pad", p))
    param["dilation"] = [d[0]] if d[0] == d[1] else list(d)
    net = CaffeNet("conv")
    net.add_input("data", x.shape)
    net.add_layer("conv", "Convolution", ["data"], ["out"], blobs=[weight, b] if bias else [weight],
                  convolution_param=param)  # fmt: skip
    ref = F.conv2d(t64(x), t64(weight), t64(b) if bias else None, stride=s, padding=p, dilation=d, groups=g)
    check(rt_name, net, {"data": x}, {"out": ref.numpy()}, tmp_path)


# ---------------------------------------------------------------------------------------- Deconvolution

# C_in, O, (H, W), kernel, stride, pad, dilation, group, bias, form. Caffe's weight is
# (C_in, O / group, kH, kW); output size (H - 1) * stride - 2 * pad + dilation * (k - 1) + 1.
DECONV_CASES = {
    "k3_s2_p1": (4, 6, (5, 6), (3, 3), (2, 2), (1, 1), (1, 1), 1, True, "sq"),
    "k4_s2_p1_group2": (4, 6, (5, 5), (4, 4), (2, 2), (1, 1), (1, 1), 2, True, "sq"),
    "depthwise_k3_nobias": (4, 4, (6, 6), (3, 3), (1, 1), (0, 0), (1, 1), 4, False, "sq"),
    "kernel2x3_stride2x1_pad0x1": (3, 5, (4, 6), (2, 3), (2, 1), (0, 1), (1, 1), 1, True, "hw"),
    "dilation2": (3, 2, (5, 5), (3, 3), (1, 1), (1, 1), (2, 2), 1, True, "sq"),
}


@pytest.mark.parametrize("rt_name,case", grid("deconv", DECONV_CASES))
def test_deconvolution(rt_name, case, tmp_path):
    c, o, (h, w), k, s, p, d, g, bias, form = case
    rng = rng_for("deconv", case)
    x = rng.standard_normal((1, c, h, w)).astype(np.float32)
    weight = rng.standard_normal((c, o // g, *k)).astype(np.float32)
    b = rng.standard_normal(o).astype(np.float32)
    param = {"num_output": o, "group": g, "bias_term": bias}
    for prefix, value in (("kernel", k), ("stride", s), ("pad", p)):
        param.update(spatial_params(form, prefix, value))
    param["dilation"] = [d[0]] if d[0] == d[1] else list(d)
    net = CaffeNet("deconv")
    net.add_input("data", x.shape)
    net.add_layer("deconv", "Deconvolution", ["data"], ["out"], blobs=[weight, b] if bias else [weight],
                  convolution_param=param)  # fmt: skip
    ref = F.conv_transpose2d(
        t64(x), t64(weight), t64(b) if bias else None, stride=s, padding=p, groups=g, dilation=d
    )
    expected_hw = tuple((n - 1) * s[i] - 2 * p[i] + d[i] * (k[i] - 1) + 1 for i, n in enumerate((h, w)))
    assert tuple(ref.shape[2:]) == expected_hw
    check(rt_name, net, {"data": x}, {"out": ref.numpy()}, tmp_path)


# ----------------------------------------------------------------------------------------- InnerProduct

# input shape, num_output, axis (None: default 1), transpose, bias
IP_CASES = {
    "axis1": ((2, 3, 4, 5), 7, None, False, True),
    "axis2": ((2, 3, 4, 5), 6, 2, False, True),
    "transpose": ((3, 10), 4, None, True, True),
    "nobias_1x1_spatial": ((2, 8, 1, 1), 5, None, False, False),
}


@pytest.mark.parametrize("rt_name,case", grid("ip", IP_CASES))
def test_inner_product(rt_name, case, tmp_path):
    shape, n, axis, transpose, bias = case
    rng = rng_for("ip", case)
    x = rng.standard_normal(shape).astype(np.float32)
    ax = 1 if axis is None else axis
    k = math.prod(shape[ax:])
    weight = rng.standard_normal((k, n) if transpose else (n, k)).astype(np.float32)
    b = rng.standard_normal(n).astype(np.float32)
    param = {"num_output": n, "bias_term": bias}
    if axis is not None:
        param["axis"] = axis
    if transpose:
        param["transpose"] = True
    net = CaffeNet("ip")
    net.add_input("data", shape)
    net.add_layer("ip", "InnerProduct", ["data"], ["out"], blobs=[weight, b] if bias else [weight],
                  inner_product_param=param)  # fmt: skip
    flat = x.astype(np.float64).reshape(*shape[:ax], k)
    ref = flat @ (weight.astype(np.float64) if transpose else weight.astype(np.float64).T)
    if bias:
        ref = ref + b
    check(rt_name, net, {"data": x}, {"out": ref}, tmp_path)


# ---------------------------------------------------------------------------------------------- Pooling


def caffe_pool_out(size: int, k: int, s: int, p: int) -> int:
    """Caffe's pooled size: ceil((size + 2p - k) / s) + 1, minus one if the last window would start at or
    beyond size + p (it must start inside the input or its left/top padding)."""
    out = -(-(size + 2 * p - k) // s) + 1
    if p > 0 and (out - 1) * s >= size + p:
        out -= 1
    return out


def caffe_pool_reference(x: np.ndarray, mode: str, k, s, p) -> np.ndarray:
    """Window by window: MAX over the window clipped to the input; AVE = sum over the clipped window
    divided by the window clipped to size + pad (padding counts, the area beyond it does not)."""
    n, c, h, w = x.shape
    oh, ow = caffe_pool_out(h, k[0], s[0], p[0]), caffe_pool_out(w, k[1], s[1], p[1])
    out = np.empty((n, c, oh, ow))
    xt = torch.from_numpy(x.astype(np.float64))
    for i in range(oh):
        hs, he = i * s[0] - p[0], min(i * s[0] - p[0] + k[0], h + p[0])
        for j in range(ow):
            ws, we = j * s[1] - p[1], min(j * s[1] - p[1] + k[1], w + p[1])
            win = xt[:, :, max(hs, 0) : min(he, h), max(ws, 0) : min(we, w)]
            if mode == "MAX":
                out[:, :, i, j] = win.amax(dim=(2, 3)).numpy()
            else:
                out[:, :, i, j] = (win.sum(dim=(2, 3)) / ((he - hs) * (we - ws))).numpy()
    return out


# (H, W), kernel, stride, pad, form; comments give what Caffe's rounding does there.
POOL_CASES = {
    "k3s2p1_h8": ((8, 8), (3, 3), (2, 2), (1, 1), "sq"),  # ceil: 5 (floor would give 4)
    "k2s2_h7w6": ((7, 6), (2, 2), (2, 2), (0, 0), "sq"),  # 4 x 3: a half window at the bottom
    "k3s3p1_h5": ((5, 5), (3, 3), (3, 3), (1, 1), "sq"),  # ceil gives 3, last-window rule cuts to 2
    "k4s3p2_h10": ((10, 10), (4, 4), (3, 3), (2, 2), "sq"),  # 5 cut to 4; last window ends in padding
    "k3s2p0_h6": ((6, 6), (3, 3), (2, 2), (0, 0), "sq"),  # last window clipped: AVE divides by 2*k
    "k2s1p1_h4": ((4, 5), (2, 2), (1, 1), (1, 1), "sq"),  # windows half in padding (AVE counts it)
    "k3x2_s2x2_p1x0": ((9, 6), (3, 2), (2, 2), (1, 0), "hw"),
    "k2x3_s1x2_p0x1": ((5, 7), (2, 3), (1, 2), (0, 1), "hw"),
}


@pytest.mark.parametrize("mode", ["MAX", "AVE"])
@pytest.mark.parametrize("rt_name,case", grid("pool", POOL_CASES))
def test_pooling(rt_name, case, mode, tmp_path):
    (h, w), k, s, p, form = case
    x = rng_for("pool", case, mode).standard_normal((2, 3, h, w)).astype(np.float32)
    param = {"pool": mode}
    for prefix, value in (("kernel", k), ("stride", s), ("pad", p)):
        param.update(spatial_params(form, prefix, value, repeated=False))
    net = CaffeNet("pool")
    net.add_input("data", x.shape)
    net.add_layer("pool", "Pooling", ["data"], ["out"], pooling_param=param)
    check(rt_name, net, {"data": x}, {"out": caffe_pool_reference(x, mode, k, s, p)}, tmp_path)


@pytest.mark.parametrize("mode", ["MAX", "AVE"])
@pytest.mark.parametrize("rt_name", RUNTIMES)
def test_global_pooling(rt_name, mode, tmp_path):
    x = rng_for("gpool", mode).standard_normal((2, 3, 5, 7)).astype(np.float32)
    net = CaffeNet("gpool")
    net.add_input("data", x.shape)
    net.add_layer("pool", "Pooling", ["data"], ["out"], pooling_param={"pool": mode, "global_pooling": True})
    x64 = x.astype(np.float64)
    ref = x64.max(axis=(2, 3), keepdims=True) if mode == "MAX" else x64.mean(axis=(2, 3), keepdims=True)
    check(rt_name, net, {"data": x}, {"out": ref}, tmp_path)


# ------------------------------------------------------------------------------------------ activations


@pytest.mark.parametrize(
    "rt_name,slope", grid("relu", {"default": None, "0.1": 0.1, "1.5": 1.5, "-0.3": -0.3})
)
def test_relu_negative_slope(rt_name, slope, tmp_path):
    x = rng_for("relu", slope).standard_normal((2, 3, 4, 5)).astype(np.float32)
    net = CaffeNet("relu")
    net.add_input("data", x.shape)
    net.add_layer(
        "relu", "ReLU", ["data"], ["out"], **({"relu_param": {"negative_slope": slope}} if slope else {})
    )
    x64 = x.astype(np.float64)
    ref = np.where(x64 > 0, x64, (slope or 0.0) * x64)
    check(rt_name, net, {"data": x}, {"out": ref}, tmp_path)


def write_caffemodel_legacy_dims(path, layer: str, layer_type: str, values: np.ndarray) -> None:
    """A caffemodel whose one blob uses the deprecated 4-D fields num/channels/height/width = 1, 1, 1, n
    instead of `shape` (Caffe matches legacy dims against its blob shape from the right)."""
    net = caffe_pb2.NetParameter()
    lp = net.layer.add(name=layer, type=layer_type)
    bp = lp.blobs.add(num=1, channels=1, height=1, width=values.size)
    bp.data.extend(float(v) for v in values.ravel())
    path.write_bytes(net.SerializeToString())


def prelu_net(x_shape, slopes: np.ndarray, shared: bool) -> CaffeNet:
    net = CaffeNet("prelu")
    net.add_input("data", x_shape)
    net.add_layer("prelu", "PReLU", ["data"], ["out"], blobs=[slopes], prelu_param={"channel_shared": shared})
    return net


@pytest.mark.parametrize("rt_name,shared", grid("prelu", {"per_channel": False, "channel_shared": True}))
def test_prelu(rt_name, shared, tmp_path):
    rng = rng_for("prelu", shared)
    x = rng.standard_normal((2, 5, 3, 4)).astype(np.float32)
    slopes = rng.uniform(-0.5, 1.5, size=(1,) if shared else (5,)).astype(np.float32)
    net = prelu_net(x.shape, slopes, shared)
    proto, model = net.save(tmp_path / "net")
    if shared:  # the one encoding of the shared slope that both runtimes load (see the next test)
        write_caffemodel_legacy_dims(tmp_path / "net.caffemodel", "prelu", "PReLU", slopes)
    with shared_runtime(rt_name).load(proto, model) as m:
        got = m.run({"data": x}, outputs=["out"])
    x64 = x.astype(np.float64)
    a = slopes[0] if shared else slopes.astype(np.float64)[None, :, None, None]
    assert_close(got, {"out": np.where(x64 > 0, x64, a * x64)})


@pytest.mark.parametrize("rt_name", RUNTIMES)
@pytest.mark.parametrize("encoding", ["shape_0d", "shape_1", "legacy_1x1x1x1"])
def test_prelu_channel_shared_blob_encodings(rt_name, encoding, tmp_path):
    """Caffe sizes a channel_shared PReLU slope as a 0-D blob and rejects shape (1,); OpenCV cannot
    read a 0-D blob at all. Only the legacy 4-D dims (1, 1, 1, 1) load on both."""
    x = -np.ones((1, 3, 2, 2), np.float32)
    slope = np.array(0.25, np.float32)
    net = prelu_net(x.shape, slope.reshape(1) if encoding == "shape_1" else slope, True)
    proto, model = net.save(tmp_path / "net")
    if encoding == "legacy_1x1x1x1":
        write_caffemodel_legacy_dims(tmp_path / "net.caffemodel", "prelu", "PReLU", slope.reshape(1))
    rt = shared_runtime(rt_name)
    fails = (rt_name, encoding) in {("pycaffe", "shape_1"), ("opencv", "shape_0d")}
    if fails:
        with pytest.raises(
            RuntimeExecutionError, match="shape mismatch" if rt_name == "pycaffe" else "net.prototxt"
        ):
            with rt.load(proto, model) as m:
                m.run({"data": x})
    else:
        with rt.load(proto, model) as m:
            assert np.array_equal(m.run({"data": x})["out"], np.full(x.shape, -0.25, np.float32))


@pytest.mark.parametrize("rt_name,kind", grid("unary", {"Sigmoid": "Sigmoid", "TanH": "TanH"}))
def test_sigmoid_tanh(rt_name, kind, tmp_path):
    x = (4 * rng_for("unary", kind).standard_normal((2, 3, 4, 5))).astype(np.float32)
    net = CaffeNet(kind)
    net.add_input("data", x.shape)
    net.add_layer("act", kind, ["data"], ["out"])
    x64 = x.astype(np.float64)
    ref = 1.0 / (1.0 + np.exp(-x64)) if kind == "Sigmoid" else np.tanh(x64)
    check(rt_name, net, {"data": x}, {"out": ref}, tmp_path)


# (power, scale, shift); None: the field is left at its default (1, 1, 0). Output (shift + scale x)^power.
POWER_CASES = {
    "defaults": (None, None, None),
    "square_half_plus1": (2.0, 0.5, 1.0),
    "sqrt": (0.5, 2.0, 3.0),
    "cube_negated": (3.0, -1.0, 0.2),
    "affine_only": (1.0, 2.0, -1.0),
    "reciprocal": (-1.0, 1.0, 2.5),
    "power0": (0.0, 3.0, 1.0),
}


@pytest.mark.parametrize("rt_name,case", grid("power", POWER_CASES))
def test_power(rt_name, case, tmp_path):
    power, scale, shift = case
    x = rng_for("power", case).uniform(-1, 1, size=(2, 3, 4, 5)).astype(np.float32)
    param = {k: v for k, v in zip(("power", "scale", "shift"), case, strict=True) if v is not None}
    net = CaffeNet("power")
    net.add_input("data", x.shape)
    net.add_layer("power", "Power", ["data"], ["out"], power_param=param)
    p, a, b = (1.0 if power is None else power), (1.0 if scale is None else scale), (shift or 0.0)
    ref = np.power(b + a * x.astype(np.float64), p)
    check(rt_name, net, {"data": x}, {"out": ref}, tmp_path)


# ------------------------------------------------------------------------------------ BatchNorm + Scale

# scale factor f (blobs are mean*f, var*f, [f]), eps (None: default 1e-5), Scale bias_term
BN_CASES = {
    "f1_default_eps": (1.0, None, True),
    "f2.5_eps1e-3": (2.5, 1e-3, True),
    "f0.5_scale_nobias": (0.5, 1e-4, False),
}


@pytest.mark.parametrize("rt_name,case", grid("bn", BN_CASES))
def test_batchnorm_scale(rt_name, case, tmp_path):
    f, eps, bias = case
    rng = rng_for("bn", case)
    c = 4
    x = rng.standard_normal((2, c, 3, 5)).astype(np.float32)
    mean = rng.standard_normal(c).astype(np.float32)
    var = rng.uniform(0.5, 2.0, c).astype(np.float32)
    gamma = rng.uniform(0.5, 1.5, c).astype(np.float32)
    beta = rng.standard_normal(c).astype(np.float32)
    bn_param = {"use_global_stats": True}
    if eps is not None:
        bn_param["eps"] = eps
    net = CaffeNet("bn")
    net.add_input("data", x.shape)
    net.add_layer("bn", "BatchNorm", ["data"], ["bn"], blobs=[mean * f, var * f, np.array([f], np.float32)],
                  batch_norm_param=bn_param)  # fmt: skip
    net.add_layer("scale", "Scale", ["bn"], ["out"], blobs=[gamma, beta] if bias else [gamma],
                  scale_param={"bias_term": bias})  # fmt: skip
    # Caffe divides the stored statistics by the third blob (f).
    m64, v64 = (mean * f).astype(np.float64) / f, (var * f).astype(np.float64) / f
    bn = (x.astype(np.float64) - m64[None, :, None, None]) / np.sqrt(v64 + (1e-5 if eps is None else eps))[
        None, :, None, None
    ]
    out = bn * gamma.astype(np.float64)[None, :, None, None]
    if bias:
        out = out + beta.astype(np.float64)[None, :, None, None]
    check(rt_name, net, {"data": x}, {"bn": bn, "out": out}, tmp_path)


# ------------------------------------------------------------------------------------------------ Scale

# x shape, second-bottom / learned shape, axis (None: default 1), num_axes, two bottoms?, bias_term
SCALE_CASES = {
    "gate_NC_axis0": ((2, 3, 4, 5), (2, 3), 0, None, True, False),
    "bottom_C_axis1": ((2, 3, 4, 5), (3,), None, None, True, False),
    "bottom_CH_axis1": ((2, 3, 4, 5), (3, 4), 1, None, True, False),
    "learned_C_bias": ((2, 3, 4, 5), (3,), None, None, False, True),
    "learned_CH_num_axes2": ((2, 3, 4, 5), (3, 4), 1, 2, False, False),
}


@pytest.mark.parametrize("rt_name,case", grid("scale", SCALE_CASES))
def test_scale(rt_name, case, tmp_path):
    xshape, sshape, axis, num_axes, two_bottoms, bias = case
    rng = rng_for("scale", case)
    x = rng.standard_normal(xshape).astype(np.float32)
    s = rng.standard_normal(sshape).astype(np.float32)
    beta = rng.standard_normal(sshape).astype(np.float32)
    param = {"bias_term": bias}
    if axis is not None:
        param["axis"] = axis
    if num_axes is not None:
        param["num_axes"] = num_axes
    net = CaffeNet("scale")
    net.add_input("data", xshape)
    feeds = {"data": x}
    if two_bottoms:
        net.add_input("s", sshape)
        feeds["s"] = s
        net.add_layer("scale", "Scale", ["data", "s"], ["out"], scale_param=param)
    else:
        net.add_layer(
            "scale", "Scale", ["data"], ["out"], blobs=[s, beta] if bias else [s], scale_param=param
        )
    ax = 1 if axis is None else axis
    bshape = (1,) * ax + sshape + (1,) * (len(xshape) - ax - len(sshape))
    ref = x.astype(np.float64) * s.astype(np.float64).reshape(bshape)
    if bias:
        ref = ref + beta.astype(np.float64).reshape(bshape)
    check(rt_name, net, feeds, {"out": ref}, tmp_path)


# ---------------------------------------------------------------------------------------------- Eltwise

# operation, number of inputs, coefficients
ELTWISE_CASES = {
    "sum": ("SUM", 3, None),
    "sum_coeff": ("SUM", 3, [0.5, -2.0, 1.5]),
    "prod": ("PROD", 2, None),
    "prod3": ("PROD", 3, None),
    "max": ("MAX", 3, None),
}


@pytest.mark.parametrize("rt_name,case", grid("eltwise", ELTWISE_CASES))
def test_eltwise(rt_name, case, tmp_path):
    op, n, coeff = case
    rng = rng_for("eltwise", case)
    xs = [rng.standard_normal((2, 3, 4, 5)).astype(np.float32) for _ in range(n)]
    net = CaffeNet("eltwise")
    for i in range(n):
        net.add_input(f"x{i}", xs[i].shape)
    param = {"operation": op}
    if coeff is not None:
        param["coeff"] = coeff
    net.add_layer("elt", "Eltwise", [f"x{i}" for i in range(n)], ["out"], eltwise_param=param)
    x64 = [x.astype(np.float64) for x in xs]
    if op == "SUM":
        ref = sum((1.0 if coeff is None else coeff[i]) * x64[i] for i in range(n))
    elif op == "PROD":
        ref = np.prod(x64, axis=0)
    else:
        ref = np.max(x64, axis=0)
    check(rt_name, net, {f"x{i}": xs[i] for i in range(n)}, {"out": ref}, tmp_path)


# ------------------------------------------------------------------------------------- Concat and Slice


@pytest.mark.parametrize(
    "rt_name,axis", grid("concat", {"axis1": 1, "axis2": 2, "axis3": 3, "axis0": 0, "axis-1": -1})
)
def test_concat(rt_name, axis, tmp_path):
    rng = rng_for("concat", axis)
    base = [2, 3, 4, 5]
    shapes = []
    for extra in (0, 2, 1):
        shape = list(base)
        shape[axis] += extra
        shapes.append(tuple(shape))
    xs = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    net = CaffeNet("concat")
    for i, s in enumerate(shapes):
        net.add_input(f"x{i}", s)
    net.add_layer("cat", "Concat", ["x0", "x1", "x2"], ["out"], concat_param={"axis": axis})
    check(
        rt_name, net, {f"x{i}": x for i, x in enumerate(xs)}, {"out": np.concatenate(xs, axis=axis)}, tmp_path
    )


# input shape, axis (None: default 1), slice points, number of tops
SLICE_CASES = {
    "axis1_points1_3": ((2, 6, 4, 5), None, [1, 3], 3),
    "axis2_point3": ((2, 6, 4, 5), 2, [3], 2),
    "equal_split_3": ((2, 6, 4, 5), 1, [], 3),
    "axis-1_points2_4": ((2, 6, 4, 5), -1, [2, 4], 3),
}


@pytest.mark.parametrize("rt_name,case", grid("slice", SLICE_CASES))
def test_slice(rt_name, case, tmp_path):
    shape, axis, points, ntops = case
    x = rng_for("slice", case).standard_normal(shape).astype(np.float32)
    param = {}
    if axis is not None:
        param["axis"] = axis
    if points:
        param["slice_point"] = points
    tops = [f"part{i}" for i in range(ntops)]
    net = CaffeNet("slice")
    net.add_input("data", shape)
    net.add_layer("slice", "Slice", ["data"], tops, slice_param=param)
    ax = 1 if axis is None else axis
    pieces = np.split(x, points, axis=ax) if points else np.split(x, ntops, axis=ax)
    check(rt_name, net, {"data": x}, dict(zip(tops, pieces, strict=True)), tmp_path)


# --------------------------------------------------------------------------- Reshape, Flatten, Softmax

# reshape_param.shape dims, axis, num_axes, expected shape for input (2, 3, 4, 5)
RESHAPE_CASES = {
    "0_-1": ([0, -1], None, None, (2, 60)),
    "0_3_-1_1": ([0, 3, -1, 1], None, None, (2, 3, 20, 1)),
    "-1_10": ([-1, 10], None, None, (12, 10)),
    "0_0_5_4": ([0, 0, 5, 4], None, None, (2, 3, 5, 4)),
    "axis1_num_axes2_-1": ([-1], 1, 2, (2, 12, 5)),
}


@pytest.mark.parametrize("rt_name,case", grid("reshape", RESHAPE_CASES))
def test_reshape(rt_name, case, tmp_path):
    dims, axis, num_axes, expected = case
    x = rng_for("reshape", case).standard_normal((2, 3, 4, 5)).astype(np.float32)
    param = {"shape": {"dim": dims}}
    if axis is not None:
        param["axis"] = axis
    if num_axes is not None:
        param["num_axes"] = num_axes
    net = CaffeNet("reshape")
    net.add_input("data", x.shape)
    net.add_layer("reshape", "Reshape", ["data"], ["out"], reshape_param=param)
    check(rt_name, net, {"data": x}, {"out": x.reshape(expected)}, tmp_path)


# axis, end_axis, expected shape for input (2, 3, 4, 5)
FLATTEN_CASES = {
    "default": (None, None, (2, 60)),
    "axis2": (2, None, (2, 3, 20)),
    "axis1_end2": (1, 2, (2, 12, 5)),
    "axis0": (0, None, (120,)),
}


@pytest.mark.parametrize("rt_name,case", grid("flatten", FLATTEN_CASES))
def test_flatten(rt_name, case, tmp_path):
    axis, end_axis, expected = case
    x = rng_for("flatten", case).standard_normal((2, 3, 4, 5)).astype(np.float32)
    param = {k: v for k, v in (("axis", axis), ("end_axis", end_axis)) if v is not None}
    net = CaffeNet("flatten")
    net.add_input("data", x.shape)
    net.add_layer("flatten", "Flatten", ["data"], ["out"], **({"flatten_param": param} if param else {}))
    check(rt_name, net, {"data": x}, {"out": x.reshape(expected)}, tmp_path)


@pytest.mark.parametrize("rt_name,axis", grid("softmax", {"default": None, "2": 2, "3": 3, "-1": -1, "0": 0}))
def test_softmax(rt_name, axis, tmp_path):
    x = (3 * rng_for("softmax", axis).standard_normal((2, 3, 4, 5))).astype(np.float32)
    net = CaffeNet("softmax")
    net.add_input("data", x.shape)
    net.add_layer(
        "softmax",
        "Softmax",
        ["data"],
        ["out"],
        **({"softmax_param": {"axis": axis}} if axis is not None else {}),
    )
    ref = torch.softmax(t64(x), dim=1 if axis is None else axis).numpy()
    check(rt_name, net, {"data": x}, {"out": ref}, tmp_path)
