"""Differential testing: random small PyTorch networks built from the supported building blocks are exported
(torchscript exporter; the dynamo exporter on a subset), converted, and run on every installed Caffe runtime
(real Caffe and OpenCV). Each one must either agree with onnxruntime within the converter's tolerance
(max_rel <= 1e-4, cosine >= 0.99999) or be refused with a ConversionError (one clean message). Anything else
(a crash, a ToleranceError = a silently wrong model caught only by the check, an exporter failure) fails.

Profiles (tests/fuzz_profiles.py): "ci" (default) 25 derandomised examples; HYPOTHESIS_PROFILE=fuzz
(`make fuzz`) many more. Failures found are kept below as explicit regression tests.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from fuzz_profiles import fuzz_settings
from hypothesis import event, given, note
from hypothesis import strategies as st
from onnx2caffe.exporters.torch_export import ExportError, torch_to_onnx
from torch import nn

from onnx2caffe.compare import DEFAULT_MAX_REL, DEFAULT_MIN_COSINE
from onnx2caffe.convert import convert
from onnx2caffe.errors import ConversionError, ToleranceError

# Tolerances: the converter's own defaults (max abs error / max |ref| <= 1e-4, cosine >= 0.99999). float32
# kernels of Caffe/OpenCV and onnxruntime differ in summation order only, which for nets of <= 8 blocks on
# inputs of <= 16x16 stays around 1e-6 relative; any semantic difference is far larger.
MAX_REL, MIN_COS = DEFAULT_MAX_REL, DEFAULT_MIN_COSINE
STATS = {"examples": 0, "agreed": 0, "refused": 0, "export_refused": 0}

ACTIVATIONS = {
    "relu": nn.ReLU,
    "leaky": lambda: nn.LeakyReLU(0.13),
    "prelu": "prelu",
    "sigmoid": nn.Sigmoid,
    "tanh": nn.Tanh,
    "relu6": nn.ReLU6,
    "hardswish": nn.Hardswish,
    "hardsigmoid": nn.Hardsigmoid,
    "silu": nn.SiLU,
}


# --------------------------------------------------------------------------------------------- blocks


class Gate(nn.Module):
    """x * sigmoid(conv1x1(avgpool(x))): Mul with an (N, C, 1, 1) operand broadcast over H, W."""

    def __init__(self, c: int):
        super().__init__()
        self.fc = nn.Conv2d(c, c, 1)

    def forward(self, x):
        return x * torch.sigmoid(self.fc(nn.functional.adaptive_avg_pool2d(x, 1)))


class Residual(nn.Module):
    """x + conv(x) (same shape): an elementwise Add."""

    def __init__(self, c: int, k: int):
        super().__init__()
        self.conv = nn.Conv2d(c, c, k, padding=k // 2)

    def forward(self, x):
        return x + self.conv(x)


class BiasAdd(nn.Module):
    """x + b or x * b with a constant b of shape (1, C, 1, 1) or (1, 1, H, W) (broadcast from a constant)."""

    def __init__(self, shape, op: str):
        super().__init__()
        self.b = nn.Parameter(torch.randn(shape) * 0.5 + (1.0 if op == "mul" else 0.0))
        self.op = op

    def forward(self, x):
        return x * self.b if self.op == "mul" else x + self.b


class TwoBranchConcat(nn.Module):
    def __init__(self, c: int, c1: int, c2: int, k: int):
        super().__init__()
        self.a = nn.Conv2d(c, c1, 1)
        self.b = nn.Conv2d(c, c2, k, padding=k // 2)

    def forward(self, x):
        return torch.cat([self.a(x), self.b(x)], dim=1)


@dataclasses.dataclass
class Spec:
    """A generated network: its input shape and the block descriptions (for messages and reproduction)."""

    input_shape: tuple[int, int, int, int]
    blocks: list[dict]


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


@st.composite
def block(draw, shape):
    """One block applicable to an activation of `shape` (C, H, W); returns (description, new shape)."""
    c, h, w = shape
    kinds = ["conv", "act", "bn", "pool", "concat", "gate", "residual", "const", "convT"]
    if h * 2 <= 24 and w * 2 <= 24:
        kinds.append("upsample")
    kind = draw(st.sampled_from(kinds))
    if kind == "conv":
        k = draw(st.integers(1, min(5, h + 2, w + 2)))
        dil = draw(st.integers(1, 2))
        pad = draw(st.integers(0, 2))
        stride = draw(st.integers(1, 3))
        ek = dil * (k - 1) + 1
        if h + 2 * pad < ek or w + 2 * pad < ek:
            dil, pad = 1, k // 2
            ek = k
        g = draw(st.sampled_from([x for x in _divisors(c) if x <= 8]))
        out = g * draw(st.integers(1, max(1, 8 // g)))
        bias = draw(st.booleans())
        oh = (h + 2 * pad - ek) // stride + 1
        ow = (w + 2 * pad - ek) // stride + 1
        d = dict(kind=kind, cin=c, cout=out, k=k, stride=stride, pad=pad, dil=dil, groups=g, bias=bias)
        return d, (out, oh, ow)
    if kind == "convT":
        k = draw(st.integers(1, 4))
        stride = draw(st.integers(1, 3))
        pad = draw(st.integers(0, k - 1))
        opad = draw(st.integers(0, stride - 1)) if stride > 1 else 0
        g = draw(st.sampled_from([x for x in _divisors(c) if x <= 4]))
        out = g * draw(st.integers(1, max(1, 6 // g)))
        oh = (h - 1) * stride - 2 * pad + k + opad
        ow = (w - 1) * stride - 2 * pad + k + opad
        if oh < 1 or ow < 1 or oh > 32 or ow > 32:
            return dict(kind="act", act="relu"), shape
        return dict(kind=kind, cin=c, cout=out, k=k, stride=stride, pad=pad, opad=opad, groups=g), (
            out,
            oh,
            ow,
        )
    if kind == "act":
        return dict(kind=kind, act=draw(st.sampled_from(sorted(ACTIVATIONS)))), shape
    if kind == "bn":
        return dict(kind=kind, c=c, seed=draw(st.integers(0, 2**16))), shape
    if kind == "pool":
        op = draw(st.sampled_from(["max", "avg"]))
        k = draw(st.integers(1, min(4, h, w) if min(h, w) >= 1 else 1))
        stride = draw(st.integers(1, 3))
        pad = draw(st.integers(0, k // 2))
        ceil = draw(st.booleans())
        cip = draw(st.booleans())

        def size(n):
            if ceil:
                o = -(-(n + 2 * pad - k) // stride) + 1
                if (o - 1) * stride >= n + pad:  # PyTorch: the last window must start inside input + left pad
                    o -= 1
                return o
            return (n + 2 * pad - k) // stride + 1

        def torch_onnx_differ(n):
            # ONNX's ceil_mode keeps a last window that starts in the end padding, PyTorch drops it: the
            # exported model would have another shape than PyTorch's (the exporter's check refuses it).
            return ceil and (-(-(n + 2 * pad - k) // stride)) * stride >= n + pad

        if torch_onnx_differ(h) or torch_onnx_differ(w):
            ceil = False

        d = dict(kind=kind, op=op, k=k, stride=stride, pad=pad, ceil=ceil, count_include_pad=cip)
        return d, (c, size(h), size(w))
    if kind == "concat":
        c1, c2 = draw(st.integers(1, 4)), draw(st.integers(1, 4))
        k = draw(st.sampled_from([1, 3]))
        return dict(kind=kind, c=c, c1=c1, c2=c2, k=k), (c1 + c2, h, w)
    if kind == "gate":
        return dict(kind=kind, c=c), shape
    if kind == "residual":
        return dict(kind=kind, c=c, k=draw(st.sampled_from([1, 3]))), shape
    if kind == "const":
        op = draw(st.sampled_from(["add", "mul"]))
        bshape = draw(st.sampled_from([(1, c, 1, 1), (1, 1, h, w), (1, c, h, w)]))
        return dict(kind=kind, op=op, shape=bshape), shape
    # upsample
    scale = draw(st.sampled_from([2, 3] if h * 3 <= 24 and w * 3 <= 24 else [2]))
    mode = draw(st.sampled_from(["nearest", "bilinear"]))
    return dict(kind="upsample", scale=scale, mode=mode), (c, h * scale, w * scale)


@st.composite
def networks(draw):
    c = draw(st.integers(1, 6))
    h = draw(st.integers(3, 12))
    w = draw(st.integers(3, 12))
    shape = (c, h, w)
    blocks = []
    for _ in range(draw(st.integers(1, 6))):
        d, new = draw(block(shape))
        if min(new) < 1:
            continue
        blocks.append(d)
        shape = new
    if draw(st.booleans()):
        blocks.append(dict(kind="linear", fin=shape[0] * shape[1] * shape[2], fout=draw(st.integers(1, 10))))
    return Spec((1, c, h, w), blocks)


def build(spec: Spec, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    mods = []
    for d in spec.blocks:
        k = d["kind"]
        if k == "conv":
            mods.append(
                nn.Conv2d(
                    d["cin"], d["cout"], d["k"], d["stride"], d["pad"], d["dil"], d["groups"], d["bias"]
                )
            )
        elif k == "convT":
            mods.append(
                nn.ConvTranspose2d(
                    d["cin"], d["cout"], d["k"], d["stride"], d["pad"], d["opad"], groups=d["groups"]
                )
            )
        elif k == "act":
            a = ACTIVATIONS[d["act"]]
            if a == "prelu":
                p = nn.PReLU(1)
                with torch.no_grad():
                    p.weight.fill_(0.2)
                mods.append(p)
            else:
                mods.append(a())
        elif k == "bn":
            bn = nn.BatchNorm2d(d["c"])
            g = torch.Generator().manual_seed(d["seed"])
            with torch.no_grad():
                bn.running_mean.copy_(torch.randn(d["c"], generator=g) * 0.5)
                bn.running_var.copy_(torch.rand(d["c"], generator=g) * 1.5 + 0.5)
                bn.weight.copy_(torch.randn(d["c"], generator=g))
                bn.bias.copy_(torch.randn(d["c"], generator=g) * 0.5)
            mods.append(bn)
        elif k == "pool":
            if d["op"] == "max":
                mods.append(nn.MaxPool2d(d["k"], d["stride"], d["pad"], ceil_mode=d["ceil"]))
            else:
                mods.append(
                    nn.AvgPool2d(
                        d["k"],
                        d["stride"],
                        d["pad"],
                        ceil_mode=d["ceil"],
                        count_include_pad=d["count_include_pad"],
                    )
                )
        elif k == "concat":
            mods.append(TwoBranchConcat(d["c"], d["c1"], d["c2"], d["k"]))
        elif k == "gate":
            mods.append(Gate(d["c"]))
        elif k == "residual":
            mods.append(Residual(d["c"], d["k"]))
        elif k == "const":
            mods.append(BiasAdd(d["shape"], d["op"]))
        elif k == "upsample":
            mods.append(nn.Upsample(scale_factor=d["scale"], mode=d["mode"]))
        elif k == "linear":
            mods += [nn.Flatten(), nn.Linear(d["fin"], d["fout"])]
    return nn.Sequential(*mods).eval()


def check_network(spec: Spec, tmp_path, runtimes, exporter: str = "torchscript") -> str:
    """Export, convert, compare. Returns "agreed", "refused" (ConversionError) or "export_refused" (the
    exporter's own clean refusal); raises on anything else."""
    model = build(spec)
    try:
        exported = torch_to_onnx(model, [spec.input_shape], exporter=exporter)
    except (ExportError, ToleranceError) as err:  # the exporter's own refusal: not the converter's business
        assert "\n" not in str(err)
        return "export_refused"
    try:
        result = convert(
            exported.model, str(tmp_path / "net"), runtimes=runtimes, check=True, max_rel=MAX_REL,
            min_cosine=MIN_COS,
        )  # fmt: skip
    except ConversionError as err:
        msg = str(err)
        assert msg and "\n" not in msg and "Traceback" not in msg, msg
        return "refused"
    assert result.report, "no runtime compared anything"
    for row in result.report:
        assert row["ok"] and row["max_rel"] <= MAX_REL and row["cosine"] >= MIN_COS, row
    return "agreed"


@fuzz_settings("differential")
@given(spec=networks())
def test_random_networks_agree_or_are_refused(spec, tmp_path_factory, caffe_runtimes):
    note(repr(spec))
    tmp = tmp_path_factory.mktemp("diff")
    outcome = check_network(spec, tmp, caffe_runtimes)
    STATS["examples"] += 1
    STATS[outcome] += 1
    event(outcome)
    for d in spec.blocks:
        event(f"block {d['kind']}")


@fuzz_settings("dynamo")
@given(spec=networks())
def test_random_networks_dynamo_subset(spec, tmp_path_factory, caffe_runtimes):
    """The dynamo exporter (opset 18) on a few of the same networks: its graphs differ (Resize, ReduceMean)."""
    pytest.importorskip("onnxscript")
    note(repr(spec))
    outcome = check_network(spec, tmp_path_factory.mktemp("dyn"), caffe_runtimes, exporter="dynamo")
    event(outcome)


# --------------------------------------------------------------------------------------------- regressions
# Minimised failures found by the random tests above, kept as explicit cases.

# No converter failure was found (400 torchscript + 60 dynamo examples under the fuzz profile); these fixed
# networks pin the trickiest generated combinations so they run on every commit whatever hypothesis draws.
REGRESSIONS: dict[str, Spec] = {
    "avgpool_ceil_exclude_pad_after_strided_dilated_conv": Spec(
        (1, 3, 11, 9),
        [
            dict(kind="conv", cin=3, cout=4, k=3, stride=2, pad=2, dil=2, groups=1, bias=True),
            dict(kind="pool", op="avg", k=3, stride=2, pad=1, ceil=True, count_include_pad=False),
            dict(kind="act", act="hardswish"),
        ],
    ),
    "grouped_conv_transpose_then_gate": Spec(
        (1, 4, 5, 6),
        [
            dict(kind="convT", cin=4, cout=4, k=3, stride=2, pad=1, opad=1, groups=2),
            dict(kind="gate", c=4),
            dict(kind="bn", c=4, seed=7),
        ],
    ),
    "bilinear_x3_concat_linear": Spec(
        (1, 2, 4, 3),
        [
            dict(kind="upsample", scale=3, mode="bilinear"),
            dict(kind="concat", c=2, c1=3, c2=2, k=3),
            dict(kind="const", op="mul", shape=(1, 1, 12, 9)),
            dict(kind="linear", fin=5 * 12 * 9, fout=7),
        ],
    ),
}


@pytest.mark.parametrize("name", sorted(REGRESSIONS))
def test_regression(name, tmp_path, caffe_runtimes):
    assert check_network(REGRESSIONS[name], tmp_path, caffe_runtimes) in (
        "agreed",
        "refused",
        "export_refused",
    )


def test_stats_sane():
    """The generator itself produces valid PyTorch nets of the intended variety (cheap, no Caffe)."""
    from hypothesis import find

    spec = find(networks(), lambda s: {"pool", "conv", "upsample"} <= {b["kind"] for b in s.blocks})
    x = torch.from_numpy(np.zeros(spec.input_shape, np.float32))
    assert build(spec)(x).shape[0] == 1
