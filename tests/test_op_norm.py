"""LayerNorm (last axes and channel axis), GroupNorm: the ONNX ops, the patterns older exports write (fused by
the fuse_layer_norm, fuse_transposed_layer_norm and fuse_group_norm passes) and torch's own exports, against
onnxruntime on pycaffe and OpenCV.

Tolerance: the mean and variance are float32 sums over the normalised axes in another order than onnxruntime's,
(var + eps)^-0.5 is within an ulp of 1 / sqrt, and the product by it rounds once where onnxruntime divides: a
few ulp of the normalised values (|y| up to ~4 |gamma| + |beta|). Measured <= 5.4e-7 (768 features); 1e-6
relative to the largest output bounds it. An offset 50x the spread cancels ~6 digits in x - mean on both
sides: the float32 mean carries ~ulp(50 * n) / n, which 1 / std passes on (measured 3.4e-6; onnxruntime
accumulates in higher precision): 2e-5 for that case, as for InstanceNormalization.
"""

from __future__ import annotations

import io
import warnings

import numpy as np
import onnx
import pytest
from onnx import helper
from onnx_testing import check_conversion, make_model

from onnx2caffe.convert import convert
from onnx2caffe.errors import ConversionError
from onnx2caffe.onnx_graph import OnnxGraph
from onnx2caffe.passes import run_passes

MAX_REL = 1e-6
COS = 0.999999


def _rng(seed=0):
    return np.random.default_rng(seed)


def _types(net):
    return [layer.type for layer in net.layers[1:]]


# ------------------------------------------------------------------------------------------ LayerNormalization


@pytest.mark.parametrize(
    "shape,axis",
    [
        ((2, 7, 32), -1),
        ((1, 20, 384), -1),
        ((2, 4, 6, 8), 1),
        ((2, 4, 6, 8), 2),
        ((2, 4, 6, 8), 3),
        ((3, 10), 1),
    ],
)
@pytest.mark.parametrize("bias", [True, False])
def test_layer_normalization(tmp_path, shape, axis, bias):
    rng = _rng()
    norm_shape = shape[axis:]
    inits = {"g": rng.standard_normal(norm_shape).astype(np.float32)}
    inputs = ["x", "g"]
    if bias:
        inits["b"] = rng.standard_normal(norm_shape).astype(np.float32)
        inputs.append("b")
    node = helper.make_node("LayerNormalization", inputs, ["y"], axis=axis, epsilon=1e-5)
    model = make_model([node], {"x": shape}, {"y": None}, initializers=inits, opset=17)
    net = check_conversion(model, tmp_path, max_rel=MAX_REL, cos=COS)
    types = _types(net)
    assert types.count("MVN") == 1 and "Convolution" not in types and "BatchNorm" not in types


@pytest.mark.parametrize("eps", [1e-6, 1e-3])
@pytest.mark.parametrize(
    "offset,scale,max_rel", [(0.0, 1e-3, MAX_REL), (0.0, 1e3, MAX_REL), (50.0, 1.0, 2e-5)]
)
def test_layer_normalization_ranges(tmp_path, eps, offset, scale, max_rel):
    """Tiny spreads (where eps matters), huge ones, and a large offset (x = offset + scale * noise)."""
    rng = _rng(1)
    inits = {
        "s": np.full((1, 1, 1), scale, np.float32),
        "o": np.full((1, 1, 1), offset, np.float32),
        "g": rng.standard_normal(48).astype(np.float32),
        "b": rng.standard_normal(48).astype(np.float32),
    }
    nodes = [
        helper.make_node("Mul", ["x", "s"], ["xs"]),
        helper.make_node("Add", ["xs", "o"], ["z"]),
        helper.make_node("LayerNormalization", ["z", "g", "b"], ["y"], epsilon=eps),
    ]
    model = make_model(nodes, {"x": (2, 5, 48)}, {"y": None}, initializers=inits, opset=17)
    check_conversion(model, tmp_path, max_rel=max_rel, cos=COS)


def test_layer_normalization_mean_output_refused(tmp_path):
    g = np.ones(8, np.float32)
    node = helper.make_node("LayerNormalization", ["x", "g"], ["y", "m"], name="ln")
    model = make_model([node], {"x": (2, 8)}, {"y": None, "m": None}, initializers={"g": g}, opset=17)
    with pytest.raises(ConversionError, match="node 'ln' .*the Mean output is used"):
        convert(model, str(tmp_path / "m"), check=False)


# ------------------------------------------------------------------------------------------ fuse_layer_norm


def _decomposed(x, axes, eps, opset=13, square="Pow", divide="Div", affine=True, c=None):
    """The ReduceMean/Sub/Pow/ReduceMean/Add/Sqrt/Div [+Mul/Add] nodes and initializers of a LayerNorm over
    `axes` (TorchScript's LayerNorm below opset 17, or ConvNeXt's channel-first LayerNorm)."""
    inits = {"eps": np.array(eps, np.float32), "two": np.array(2.0, np.float32)}

    def mean(i, o):
        if opset >= 18:
            inits[f"{o}_axes"] = np.array(axes, np.int64)
            return helper.make_node("ReduceMean", [i, f"{o}_axes"], [o], keepdims=1)
        return helper.make_node("ReduceMean", [i], [o], axes=axes, keepdims=1)

    nodes = [mean(x, "m"), helper.make_node("Sub", [x, "m"], ["d"])]
    if square == "Pow":
        nodes.append(helper.make_node("Pow", ["d", "two"], ["p"]))
    else:
        nodes.append(helper.make_node("Mul", ["d", "d"], ["p"]))
    nodes += [
        mean("p", "v"),
        helper.make_node("Add", ["v", "eps"], ["ve"]),
        helper.make_node("Sqrt", ["ve"], ["s"]),
    ]
    if divide == "Div":
        nodes.append(helper.make_node("Div", ["d", "s"], ["n"]))
    else:
        nodes += [helper.make_node("Reciprocal", ["s"], ["r"]), helper.make_node("Mul", ["r", "d"], ["n"])]
    out = "n"
    if affine:
        rng = _rng(2)
        inits["gamma"] = rng.standard_normal(c).astype(np.float32)
        inits["beta"] = rng.standard_normal(c).astype(np.float32)
        nodes += [
            helper.make_node("Mul", ["gamma", "n"], ["ng"]),
            helper.make_node("Add", ["ng", "beta"], ["y"]),
        ]
        out = "y"
    return nodes, inits, out


@pytest.mark.parametrize(
    "shape,axes,param_shape",
    [
        ((2, 7, 32), [-1], (32,)),  # nn.LayerNorm(32) on (N, T, D)
        ((2, 3, 5, 6), [2, 3], (5, 6)),  # nn.LayerNorm((5, 6))
        ((1, 16, 5, 5), [1], (16, 1, 1)),  # ConvNeXt's channels-first LayerNorm
        ((2, 8, 9), [1], (8, 1)),  # the same on a 1-D signal
    ],
)
@pytest.mark.parametrize("variant", ["Pow/Div", "Mul/Reciprocal", "opset18"])
def test_fuse_layer_norm(tmp_path, shape, axes, param_shape, variant):
    square, divide = ("Mul", "Reciprocal") if variant == "Mul/Reciprocal" else ("Pow", "Div")
    opset = 18 if variant == "opset18" else 13
    nodes, inits, out = _decomposed("x", axes, 1e-5, opset, square, divide, c=param_shape)
    model = make_model(nodes, {"x": shape}, {out: None}, initializers=inits, opset=opset)
    g = OnnxGraph.load(model)
    assert "fuse_layer_norm" in run_passes(g)
    assert [n.op_type for n in g.graph.node] == ["LayerNorm"]
    net = check_conversion(model, tmp_path, max_rel=MAX_REL, cos=COS)
    channel = axes == [1]
    assert ("Convolution" in _types(net)) == channel and ("MVN" in _types(net)) != channel


def test_fuse_layer_norm_without_affine(tmp_path):
    nodes, inits, out = _decomposed("x", [-1], 1e-6, affine=False)
    model = make_model(nodes, {"x": (3, 4, 16)}, {out: None}, initializers=inits)
    net = check_conversion(model, tmp_path, max_rel=MAX_REL, cos=COS)
    assert _types(net)[-1] == "Reshape"  # no affine Scale


@pytest.mark.parametrize("why", ["d_is_output", "axes_differ", "middle_axis", "gamma_beyond_axes"])
def test_fuse_layer_norm_leaves_other_patterns(why):
    shape = (2, 4, 6, 8)
    axes = [2] if why == "middle_axis" else [-1]
    nodes, inits, out = _decomposed("x", axes, 1e-5, c=(8,) if why != "gamma_beyond_axes" else (6, 8))
    outputs = {out: None}
    if why == "d_is_output":
        outputs["d"] = None
    if why == "axes_differ":
        nodes[3] = helper.make_node("ReduceMean", ["p"], ["v"], axes=[2, 3], keepdims=1)
    if why == "gamma_beyond_axes":
        inits["gamma"] = inits["gamma"].reshape(6, 8)
        inits["beta"] = inits["beta"].reshape(6, 8)
    model = make_model(nodes, {"x": shape}, outputs, initializers=inits)
    g = OnnxGraph.load(model)
    applied = run_passes(g, ["fold_constants", "fuse_layer_norm"])
    if why == "gamma_beyond_axes":  # the normalisation fuses, the affine (varying over axis 2 too) stays
        assert [n.op_type for n in g.graph.node] == ["LayerNorm", "Mul", "Add"]
    else:
        assert "fuse_layer_norm" not in applied and "LayerNorm" not in [n.op_type for n in g.graph.node]


# ------------------------------------------------------------------------------------------ LayerNorm2d


@pytest.mark.parametrize("shape", [(1, 16, 5, 7), (2, 8, 12)])
@pytest.mark.parametrize("form", ["LayerNormalization", "decomposed"])
def test_fuse_transposed_layer_norm(tmp_path, shape, form):
    rank = len(shape)
    c = shape[1]
    to_last, to_first = [0, *range(2, rank), 1], [0, rank - 1, *range(1, rank - 1)]
    rng = _rng(3)
    if form == "LayerNormalization":
        inits = {
            "g": rng.standard_normal(c).astype(np.float32),
            "b": rng.standard_normal(c).astype(np.float32),
        }
        body = [helper.make_node("LayerNormalization", ["t", "g", "b"], ["n2"], epsilon=1e-6)]
        opset = 17
    else:
        body, inits, out = _decomposed("t", [-1], 1e-6, c=(c,))
        body.append(helper.make_node("Identity", [out], ["n2"]))
        body[-2].output[0] = "ln_out"  # (the helper names its output y)
        body[-1].input[0] = "ln_out"
        opset = 13
    nodes = [helper.make_node("Transpose", ["x"], ["t"], perm=to_last), *body]
    nodes.append(helper.make_node("Transpose", ["n2"], ["y"], perm=to_first))
    model = make_model(nodes, {"x": shape}, {"y": None}, initializers=inits, opset=opset)
    g = OnnxGraph.load(model)
    assert "fuse_transposed_layer_norm" in run_passes(g)
    assert [n.op_type for n in g.graph.node] == ["LayerNorm"]
    net = check_conversion(model, tmp_path, max_rel=MAX_REL, cos=COS)
    types = _types(net)
    assert types.count("Convolution") == 4 and "MVN" not in types
    assert types[-1] == "Scale" and ("Reshape" in types) == (rank != 4)


def test_fuse_transposed_layer_norm_needs_inverse_perms():
    c = 6
    nodes = [
        helper.make_node("Transpose", ["x"], ["t"], perm=[0, 2, 3, 1]),
        helper.make_node("LayerNormalization", ["t", "g"], ["n"]),
        helper.make_node("Transpose", ["n"], ["y"], perm=[0, 3, 2, 1]),
    ]
    model = make_model(
        nodes, {"x": (1, c, 4, 4)}, {"y": None}, initializers={"g": np.ones(c, np.float32)}, opset=17
    )
    g = OnnxGraph.load(model)
    assert "fuse_transposed_layer_norm" not in run_passes(g)


@pytest.mark.parametrize("c", [3, 96, 768])
def test_channel_layer_norm_widths(tmp_path, c):
    """1/C is rounded for C not a power of two and the sums run over up to 768 channels."""
    rng = _rng(4)
    inits = {"g": rng.standard_normal(c).astype(np.float32), "b": rng.standard_normal(c).astype(np.float32)}
    nodes = [
        helper.make_node("Transpose", ["x"], ["t"], perm=[0, 2, 3, 1]),
        helper.make_node("LayerNormalization", ["t", "g", "b"], ["n"], epsilon=1e-6),
        helper.make_node("Transpose", ["n"], ["y"], perm=[0, 3, 1, 2]),
    ]
    model = make_model(nodes, {"x": (1, c, 6, 5)}, {"y": None}, initializers=inits, opset=17)
    check_conversion(model, tmp_path, max_rel=MAX_REL, cos=COS)


# ------------------------------------------------------------------------------------------ GroupNorm


@pytest.mark.parametrize(
    "shape,groups",
    [((2, 16, 5, 5), 4), ((1, 32, 3, 3, 3), 8), ((2, 6, 10), 3), ((2, 6, 10), 1), ((2, 6, 4, 4), 6)],
)
def test_group_normalization_21(tmp_path, shape, groups):
    rng = _rng(5)
    c = shape[1]
    inits = {"s": rng.standard_normal(c).astype(np.float32), "b": rng.standard_normal(c).astype(np.float32)}
    node = helper.make_node("GroupNormalization", ["x", "s", "b"], ["y"], num_groups=groups, epsilon=1e-5)
    model = make_model([node], {"x": shape}, {"y": shape}, initializers=inits, opset=21)
    net = check_conversion(model, tmp_path, max_rel=MAX_REL, cos=COS)
    assert _types(net).count("MVN") == 1


def _torch_group_norm_nodes(shape, groups, affine=True):
    n = shape[0]
    rng = _rng(6)
    inits = {
        "gshape": np.array([n, groups, -1], np.int64),
        "xshape": np.array(shape, np.int64),
        "ones": np.ones(groups, np.float32),
        "zeros": np.zeros(groups, np.float32),
    }
    nodes = [
        helper.make_node("Reshape", ["x", "gshape"], ["r"]),
        helper.make_node("InstanceNormalization", ["r", "ones", "zeros"], ["i"], epsilon=1e-5),
        helper.make_node("Reshape", ["i", "xshape"], ["z"]),
    ]
    if not affine:
        return nodes, inits, "z"
    c = shape[1]
    param = (c,) + (1,) * (len(shape) - 2)
    inits["w"] = rng.standard_normal(param).astype(np.float32)
    inits["b"] = rng.standard_normal(param).astype(np.float32)
    nodes += [helper.make_node("Mul", ["z", "w"], ["zw"]), helper.make_node("Add", ["zw", "b"], ["y"])]
    return nodes, inits, "y"


@pytest.mark.parametrize("shape,groups", [((2, 16, 5, 5), 4), ((1, 8, 12), 2), ((1, 4, 2, 3, 3), 4)])
@pytest.mark.parametrize("affine", [True, False])
def test_fuse_group_norm(tmp_path, shape, groups, affine):
    nodes, inits, out = _torch_group_norm_nodes(shape, groups, affine)
    model = make_model(nodes, {"x": shape}, {out: None}, initializers=inits)
    g = OnnxGraph.load(model)
    assert "fuse_group_norm" in run_passes(g)
    assert [n.op_type for n in g.graph.node] == ["GroupNorm"]
    net = check_conversion(model, tmp_path, max_rel=MAX_REL, cos=COS)
    assert len(net.layers) - 1 == (9 if affine else 8)


def test_instance_norm_identity_affine_is_left_out(tmp_path):
    # torch's GroupNorm export when the pass does not apply (here: the grouped tensor is also an output)
    nodes, inits, _ = _torch_group_norm_nodes((1, 8, 4, 4), 2, affine=False)
    model = make_model(nodes, {"x": (1, 8, 4, 4)}, {"z": None, "r": None}, initializers=inits)
    net = check_conversion(model, tmp_path, max_rel=MAX_REL, cos=COS)
    assert "fuse_group_norm" not in convert(model, None, check=False).passes_applied
    assert _types(net).count("Scale") == 1  # the two-bottom Scale; no Scale(1, 0)


# ------------------------------------------------------------------------------------------ torch exports


class _ChannelsFirstLayerNorm:
    """ConvNeXt's LayerNorm(data_format="channels_first"), written out as its authors do."""

    @staticmethod
    def build(c):
        import torch

        class LN(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.weight = torch.nn.Parameter(torch.randn(c))
                self.bias = torch.nn.Parameter(torch.randn(c))

            def forward(self, x):
                u = x.mean(1, keepdim=True)
                s = (x - u).pow(2).mean(1, keepdim=True)
                x = (x - u) / torch.sqrt(s + 1e-6)
                return self.weight[:, None, None] * x + self.bias[:, None, None]

        return LN()


def _module(name):
    import timm
    import torch

    torch.manual_seed(0)
    mods = {
        "GroupNorm": (lambda: torch.nn.GroupNorm(4, 16), (2, 16, 5, 5)),
        "LayerNorm": (lambda: torch.nn.LayerNorm(32), (2, 7, 32)),
        "LayerNorm2d_timm": (lambda: timm.layers.LayerNorm2d(16), (1, 16, 5, 5)),
        "LayerNorm_channels_first": (lambda: _ChannelsFirstLayerNorm.build(16), (1, 16, 5, 5)),
    }
    make, shape = mods[name]
    m = make().eval()
    with torch.no_grad():
        for p in m.parameters():
            p.normal_()
    return m, torch.randn(shape)


@pytest.mark.parametrize("name", ["GroupNorm", "LayerNorm", "LayerNorm2d_timm", "LayerNorm_channels_first"])
@pytest.mark.parametrize("exporter", ["torchscript-13", "torchscript-17", "dynamo-18"])
def test_torch_exports(tmp_path, name, exporter):
    """What users convert: torch's own exports, fused and converted without transposes or reductions. The dynamo
    exports take ~2 s each."""
    import torch

    m, x = _module(name)
    kind, opset = exporter.split("-")
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(m, (x,), buf, dynamo=kind == "dynamo", opset_version=int(opset))
    model = onnx.load_from_string(buf.getvalue())
    net = check_conversion(model, tmp_path, max_rel=MAX_REL, cos=COS)
    types = set(_types(net))
    assert not types & {"Permute", "Reduction", "BatchNorm"}
    assert ("Convolution" in types) == (name in ("LayerNorm2d_timm", "LayerNorm_channels_first"))


def test_last_layer_takes_the_node_name(tmp_path):
    """With an identity affine the normalisation's last layer writes the output itself; it is named after the
    node, not after the output tensor (another node may be named like that tensor)."""
    c = 3
    inits = {"g": np.ones(c, np.float32), "b": np.zeros(c, np.float32)}
    nodes = [
        helper.make_node("InstanceNormalization", ["x", "g", "b"], ["y"], name="norm"),
        helper.make_node("Relu", ["y"], ["z"], name="y"),
    ]
    model = make_model(nodes, {"x": (1, c, 4, 4)}, {"z": None}, initializers=inits)
    net = check_conversion(model, tmp_path, max_rel=MAX_REL, cos=COS)
    assert [layer.name for layer in net.layers[-2:]] == ["norm", "y"]
