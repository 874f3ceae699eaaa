"""Shapes (issue 13): inferred shapes are trusted over declared ones and checked against them, dynamic inputs
are fixed with input shapes (real dynamic exports: torch with both exporters, ultralytics YOLOv8n), and the
size limits of limits.py hold whatever a mapper does. The CLI side of each refusal is in
tests/bad_inputs/test_sizes.py."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import onnx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper
from onnx_testing import make_model

from onnx2caffe import limits
from onnx2caffe.convert import convert
from onnx2caffe.errors import ConversionError, InputFileError
from onnx2caffe.onnx_graph import OnnxGraph, fix_input_shapes, format_dims
from onnx2caffe.registry import register, unregister

# ------------------------------------------------------------------------------------------ declared vs inferred

CHAIN = ("a", "b", "y")  # x -> Relu -> a -> Sigmoid -> b -> Flatten -> y


def _chain_model(x_shape, declared: dict) -> onnx.ModelProto:
    """x -> Relu -> a -> Sigmoid -> b -> Flatten -> y with `declared`: tensor -> dims list (ints, names,
    None for unknown) or "no shape" (a type without shape field); a and b go to value_info, y is the output
    (declared (N, K) when not given)."""

    def info(name):
        dims = declared.get(name, "no shape")
        if dims == "no shape" and name == "y":  # onnx's checker wants a shape field on graph outputs
            dims = ["N", "K"]
        return helper.make_tensor_value_info(name, TensorProto.FLOAT, None if dims == "no shape" else dims)

    graph = helper.make_graph(
        [
            helper.make_node("Relu", ["x"], ["a"], name="relu"),
            helper.make_node("Sigmoid", ["a"], ["b"], name="sigmoid"),
            helper.make_node("Flatten", ["b"], ["y"], name="flatten", axis=1),
        ],
        "chain",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x_shape))],
        [info("y")],
        value_info=[info(n) for n in ("a", "b") if n in declared],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
    onnx.checker.check_model(model)
    return model


DIM_KINDS = ("same", "symbolic", "unknown", "wrong")


@st.composite
def declared_shapes(draw):
    c, h, w = (draw(st.integers(1, 4)) for _ in range(3))
    x_shape = (1, c, h, w)
    inferred = {"a": list(x_shape), "b": list(x_shape), "y": [1, c * h * w]}
    declared, conflicts = {}, []
    for name in CHAIN:
        kind = draw(st.sampled_from(("absent", "no shape", "dims", "dims", "dims", "rank")))
        if kind == "absent":
            continue
        if kind == "no shape":
            declared[name] = "no shape"
            continue
        true = inferred[name]
        if kind == "rank":
            dims = true + [1] if draw(st.booleans()) or len(true) == 1 else true[:-1]
            declared[name] = dims
            conflicts.append(name)
            continue
        dims = []
        for i, d in enumerate(true):
            k = draw(st.sampled_from(DIM_KINDS))
            if k == "same":
                dims.append(d)
            elif k == "symbolic":
                dims.append(f"{name}_d{i}")
            elif k == "unknown":
                dims.append(None)
            else:
                dims.append(d + draw(st.integers(1, 3)))
        declared[name] = dims
        if any(isinstance(v, int) and v != t for v, t in zip(dims, true, strict=True)):
            conflicts.append(name)
    return x_shape, declared, inferred, conflicts


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(declared_shapes())
def test_declared_against_inferred(case):
    """Consistent declarations (static, symbolic, unknown dims, no shape) convert with the inferred shapes;
    a static dim or a rank that differs is refused, naming the tensor, the declared and the inferred shape."""
    x_shape, declared, inferred, conflicts = case
    model = _chain_model(x_shape, declared)
    if conflicts:
        name = conflicts[0]  # value_info (a, b) is checked before the outputs (y)
        with pytest.raises(InputFileError) as info:
            convert(model, None, check=False)
        msg = str(info.value)
        assert f"tensor '{name}'" in msg, msg
        assert f"declared with shape {format_dims(declared[name])}" in msg, msg
        assert f"inferred shape is {format_dims(inferred[name])}" in msg, msg
        assert "\n" not in msg
        return
    result = convert(model, None, check=False)
    graph = OnnxGraph.load(model)
    for name in CHAIN:
        assert graph.shape(name) == tuple(inferred[name])
    assert [layer.type for layer in result.net.layers] == ["Input", "ReLU", "Sigmoid", "Flatten"]


def test_symbolic_output_converts_and_checks(tmp_path, caffe_runtimes):
    """The issue's case 1: a static input, the output declared (N, 3, H, W) after a Resize whose mapper needs
    the output shape: converted with the inferred (1, 3, 8, 8) and checked on every runtime."""
    model = make_model(
        [helper.make_node("Resize", ["x", "", "s"], ["y"], name="up", mode="nearest")],
        {"x": (1, 3, 4, 4)},
        {"y": ("N", 3, "H", "W")},
        {"s": np.array([1, 1, 2, 2], np.float32)},
    )
    assert OnnxGraph.load(model).shape("y") == (1, 3, 8, 8)
    result = convert(model, str(tmp_path / "m"), runtimes=caffe_runtimes)
    assert result.ok and len(result.report) == len(caffe_runtimes)


def test_declared_shape_used_where_inference_cannot(tmp_path):
    """A custom op stops inference; its declared output shape (value_info) stands in and propagates."""

    @register("Opaque", domain="test.shapes")
    def _opaque(node, ctx):
        shape = ctx.shape(node.output(0))
        assert shape == (1, 3, 4, 4)
        return [ctx.layer(node.name, "ReLU", [ctx.blob(node.input(0))], [ctx.blob(node.output(0))])]

    try:
        graph = helper.make_graph(
            [
                helper.make_node("Opaque", ["x"], ["a"], name="opaque", domain="test.shapes"),
                helper.make_node("Relu", ["a"], ["y"], name="relu"),
            ],
            "g",
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 4, 4])],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", "c", "h", "w"])],
            value_info=[helper.make_tensor_value_info("a", TensorProto.FLOAT, [1, 3, 4, 4])],
        )
        model = helper.make_model(
            graph,
            opset_imports=[helper.make_opsetid("", 13), helper.make_opsetid("test.shapes", 1)],
            ir_version=8,
        )
        g = OnnxGraph.load(model)
        assert g.shape("a") == (1, 3, 4, 4) and g.shape("y") == (1, 3, 4, 4)
        convert(model, None, check=False)
    finally:
        unregister("Opaque", domain="test.shapes")


@pytest.mark.parametrize(
    "target, ok",
    [([1, 48], True), ([2, -1], True), ([1, 3, 100000, 40000], False), ([1, 47], False), ([6, 9], False)],
)
def test_reshape_element_count(target, ok):
    model = make_model(
        [helper.make_node("Reshape", ["x", "s"], ["y"], name="reshape")],
        {"x": (1, 3, 4, 4)},
        {"y": ["d"] * len(target)},
        {"s": np.array(target, np.int64)},
    )
    if ok:
        assert OnnxGraph.load(model).shape("y") is not None
        return
    with pytest.raises(InputFileError) as info:
        OnnxGraph.load(model)
    msg = str(info.value)
    assert "node 'reshape' (Reshape)" in msg and "(48 elements)" in msg, msg


@pytest.mark.parametrize(
    "op, const, why",
    [
        ("Add", np.zeros((1, 4, 8, 8), np.float32), "Incompatible dimensions"),
        ("Reshape", np.array([5, -1], np.int64), "incompatible shapes"),
    ],
)
def test_unknown_shape_names_the_inference_failure(op, const, why):
    """Operands that cannot broadcast, a Reshape target that cannot divide: ONNX inference leaves the output
    unknown, and the mapper's 'unknown shape' refusal says why (from ONNX's strict inference)."""
    model = make_model(
        [helper.make_node(op, ["x", "c"], ["y"], name="n")],
        {"x": (1, 3, 8, 8)},
        {"y": ["d0", "d1", "d2", "d3"][: 4 if op == "Add" else 2]},
        {"c": const},
    )
    with pytest.raises(ConversionError) as info:
        convert(model, None, check=False)
    assert "node 'n'" in str(info.value) and why in str(info.value), info.value


# ------------------------------------------------------------------------------------------ fixing input shapes


def _dynamic_two_inputs() -> onnx.ModelProto:
    graph = helper.make_graph(
        [helper.make_node("Add", ["a", "b"], ["y"], name="add")],
        "g",
        [
            helper.make_tensor_value_info("a", TensorProto.FLOAT, ["N", 3, "H", "W"]),
            helper.make_tensor_value_info("b", TensorProto.FLOAT, ["N", 3, "H", "W"]),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3, "H", "W"])],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)


def _input_dims(model, k):
    return [d.dim_value for d in model.graph.input[k].type.tensor_type.shape.dim]


@pytest.mark.parametrize(
    "shapes",
    [[(1, 3, 4, 5), (1, 3, 4, 5)], {"b": (1, 3, 4, 5), "a": (1, 3, 4, 5)}],
    ids=["in order", "by name"],
)
def test_fix_input_shapes(shapes):
    model = _dynamic_two_inputs()
    assert fix_input_shapes(model, shapes, "m.onnx")
    assert _input_dims(model, 0) == _input_dims(model, 1) == [1, 3, 4, 5]
    assert not fix_input_shapes(model, shapes, "m.onnx")  # nothing left to change
    graph = OnnxGraph.load(model)
    assert graph.shape("y") == (1, 3, 4, 5)


@pytest.mark.parametrize(
    "shapes, needles",
    [
        ([(1, 3, 4, 5)], ["1 --input-shape for 2 input(s)", "a, b"]),
        ({"c": (1, 3, 4, 5)}, ["no input named 'c'", "a, b"]),
        ({"a": (1, 4, 4, 5)}, ["dimension 1 of input 'a' is fixed at 3", "(N, 3, H, W)"]),
        ({"a": (1, 3, 4)}, ["has 3 dimensions", "input 'a' has 4"]),
    ],
)
def test_fix_input_shapes_refused(shapes, needles):
    with pytest.raises(InputFileError) as info:
        fix_input_shapes(_dynamic_two_inputs(), shapes, "m.onnx")
    for n in needles:
        assert n in str(info.value), info.value


def test_dynamic_input_error_names_the_way_out():
    with pytest.raises(InputFileError) as info:
        OnnxGraph.load(_dynamic_two_inputs())
    msg = str(info.value)
    assert "dynamic dimensions 0 ('N'), 2 ('H'), 3 ('W')" in msg, msg
    assert "--input-shape a=1,3,H,W --input-shape b=1,3,H,W" in msg, msg


class _Net:
    """A small CNN with a global pooling and a classifier: its dynamic export computes shapes at run time."""

    @staticmethod
    def build():
        import torch

        class Net(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.conv = torch.nn.Conv2d(3, 8, 3, padding=1)
                self.fc = torch.nn.Linear(8, 5)

            def forward(self, x):
                y = torch.relu(self.conv(x))
                return self.fc(torch.nn.functional.adaptive_avg_pool2d(y, 1).flatten(1))

        torch.manual_seed(0)
        return Net().eval()


@pytest.fixture(scope="module")
def torch_dynamic_exports(tmp_path_factory):
    """The same net exported with dynamic batch, height and width by both exporters (about 6 s)."""
    import warnings

    torch = pytest.importorskip("torch")
    folder = tmp_path_factory.mktemp("dynamic")
    net, x = _Net.build(), torch.zeros(1, 3, 16, 16)
    paths = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        paths["torchscript"] = folder / "ts.onnx"
        torch.onnx.export(
            net, (x,), str(paths["torchscript"]), dynamo=False, opset_version=13, input_names=["x"],
            output_names=["y"], dynamic_axes={"x": {0: "batch", 2: "h", 3: "w"}, "y": {0: "batch"}},
        )  # fmt: skip
        dim = torch.export.Dim
        paths["dynamo"] = folder / "dynamo.onnx"
        torch.onnx.export(
            net, (x,), str(paths["dynamo"]), dynamo=True, input_names=["x"], output_names=["y"],
            dynamic_shapes={"x": {0: dim("batch"), 2: dim("h"), 3: dim("w")}}, external_data=False,
        )  # fmt: skip
    return paths


@pytest.mark.parametrize("exporter", ["torchscript", "dynamo"])
def test_torch_dynamic_export_converts_with_input_shape(
    torch_dynamic_exports, tmp_path, caffe_runtimes, exporter
):
    path = torch_dynamic_exports[exporter]
    dims = onnx.load(str(path)).graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_param for d in dims] == ["batch", "", "h", "w"], "the export is not dynamic"
    with pytest.raises(InputFileError, match="--input-shape x=1,3,h,w"):
        convert(path, None, check=False)
    result = convert(path, str(tmp_path / "m"), runtimes=caffe_runtimes, input_shapes=[(2, 3, 24, 40)])
    assert result.ok and len(result.report) == len(caffe_runtimes)
    assert list(result.inputs.values()) == [(2, 3, 24, 40)]
    with pytest.raises(InputFileError, match="dimension 1 of input 'x' is fixed at 3"):
        convert(path, None, check=False, input_shapes={"x": (2, 4, 24, 40)})


def test_cli_input_shape_for_onnx_file(torch_dynamic_exports, tmp_path, capsys):
    """`convert X.onnx --input-shape NAME=DIMS` on the command line (OpenCV only, for speed)."""
    pytest.importorskip("cv2")
    from onnx2caffe.cli import main

    prefix = tmp_path / "out" / "m"
    path = torch_dynamic_exports["torchscript"]
    rc = main(
        ["convert", str(path), "-o", str(prefix), "--input-shape", "x=1,3,20,20", "--runtime", "opencv"]
    )
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert "opencv" in out and err == ""
    assert sorted(os.listdir(prefix.parent)) == [
        "m.caffemodel",
        "m.layers.json",
        "m.names.json",
        "m.prototxt",
    ]
    rc = main(["convert", str(path), "-o", str(prefix), "--input-shape", "x=1,3,20,20", "--opset", "13"])
    assert rc == 2 and "--opset: only for PyTorch models" in capsys.readouterr().err


@pytest.fixture(scope="module")
def yolo_dynamic(tmp_path_factory):
    """ultralytics YOLOv8n (random weights from its yaml, no download) exported with dynamic=True at opset 13,
    in a subprocess so its settings folder is the test's (about 5 s)."""
    pytest.importorskip("ultralytics")
    folder = tmp_path_factory.mktemp("yolo")
    env = dict(os.environ, YOLO_CONFIG_DIR=str(folder / "cfg"), YOLO_OFFLINE="1")
    code = (
        "from ultralytics import YOLO\n"
        "YOLO('yolov8n.yaml').export(format='onnx', dynamic=True, imgsz=320, opset=13, simplify=False)\n"
    )
    subprocess.run(
        [sys.executable, "-c", code], cwd=folder, env=env, check=True, capture_output=True, timeout=300
    )
    return folder / "yolov8n.onnx"


def test_yolov8n_dynamic_export(yolo_dynamic, tmp_path, caffe_runtimes):
    """The issue's case 5: refused without shapes (naming the way out), converted and checked with them."""
    with pytest.raises(InputFileError) as info:
        convert(yolo_dynamic, None, check=False)
    assert "--input-shape images=1,3,height,width" in str(info.value)
    result = convert(
        yolo_dynamic, str(tmp_path / "y"), runtimes=caffe_runtimes, input_shapes={"images": (1, 3, 320, 320)}
    )
    assert result.ok and len(result.report) == len(caffe_runtimes)
    assert result.outputs == ["output0"]
    with pytest.raises(InputFileError, match="dimension 1 of input 'images' is fixed at 3"):
        convert(yolo_dynamic, None, check=False, input_shapes=[(1, 4, 320, 320)])


# ------------------------------------------------------------------------------------------ size limits


def _custom_node_model(op="Big") -> onnx.ModelProto:
    graph = helper.make_graph(
        [helper.make_node(op, ["x"], ["y"], name="big", domain="test.shapes")],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 4, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 4, 4])],
    )
    return helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", 13), helper.make_opsetid("test.shapes", 1)],
        ir_version=8,
    )


@pytest.fixture
def custom_mapper():
    """Register a test mapper for test.shapes::Big (removed afterwards)."""
    registered = []

    def use(fn):
        registered.append(register("Big", domain="test.shapes")(fn))
        return fn

    yield use
    unregister("Big", domain="test.shapes")


def test_composition_memory_guard_holds_whatever_the_mapper_does(custom_mapper):
    """A mapper that allocates 3 GiB without asking is stopped at the allocation (Linux: RLIMIT_AS), and the
    node is refused with the size numpy was asked for. np.zeros maps lazily, so a broken guard costs no
    memory: the mapper then reports that its allocation went through."""
    if not sys.platform.startswith("linux"):
        pytest.skip("the address-space guard is Linux only")

    @custom_mapper
    def _big(node, ctx):
        np.zeros(3 * 2**30 // 4, np.float32)
        node.reject("the 3 GiB allocation went through")

    with pytest.raises(ConversionError) as info:
        convert(_custom_node_model(), None, check=False)
    msg = str(info.value)
    assert "node 'big'" in msg and "one node may use" in msg and "allocate 3.00 GiB" in msg, msg


def test_address_space_budget_restores_the_limit():
    import resource

    before = resource.getrlimit(resource.RLIMIT_AS)
    with limits.address_space_budget(2**30):
        inside = resource.getrlimit(resource.RLIMIT_AS)
        assert inside[0] != resource.RLIM_INFINITY and inside[0] <= limits._vm_size() + 2**30
        with pytest.raises(MemoryError):
            np.empty(2 * 2**30, np.uint8)
    assert resource.getrlimit(resource.RLIMIT_AS) == before


def test_check_array_refuses_before_allocating(custom_mapper):
    """MapContext.check_array: the caffemodel limit (a 4.8 GB kernel), the Caffe blob limit."""
    asked = {}

    @custom_mapper
    def _big(node, ctx):
        ctx.check_array(asked["shape"], what="the kernel")
        node.reject("not refused")

    for shape, needle in (((3, 1, 20000, 20000), "2 GiB it can hold"), ((2**31,), "a Caffe blob can hold")):
        asked["shape"] = shape
        with pytest.raises(ConversionError) as info:
            convert(_custom_node_model(), None, check=False)
        assert "node 'big'" in str(info.value) and "the kernel of shape" in str(info.value)
        assert needle in str(info.value), info.value


def test_caffemodel_running_total(custom_mapper, monkeypatch):
    """The blobs the mappers return are added up node by node: past the limit the node that crossed it is
    named, before any further node is mapped (the limit lowered to 1000 bytes to test with small blobs)."""
    monkeypatch.setattr(limits, "CAFFEMODEL_LIMIT", 1000)

    @custom_mapper
    def _big(node, ctx):
        return [
            ctx.layer(
                node.name, "Scale", [ctx.blob(node.input(0))], [ctx.blob(node.output(0))],
                blobs=[np.ones(300, np.float32)], scale_param={"axis": 0},
            )
        ]  # fmt: skip

    with pytest.raises(ConversionError) as info:
        convert(_custom_node_model(), None, check=False)
    assert "node 'big'" in str(info.value) and "1.17 KiB" in str(info.value), info.value


def test_weight_total_before_mapping(monkeypatch):
    monkeypatch.setattr(limits, "CAFFEMODEL_LIMIT", 100)
    w = np.ones((4, 3, 3, 3), np.float32)
    model = make_model(
        [helper.make_node("Conv", ["x", "w"], ["y"], name="conv")], {"x": (1, 3, 8, 8)}, {"y": None}, {"w": w}
    )
    with pytest.raises(ConversionError, match="weights are 432 bytes as float32, over the 100 bytes"):
        convert(model, None, check=False)


def test_tensor_over_caffe_blob_limit():
    model = make_model([helper.make_node("Relu", ["x"], ["y"])], {"x": (1, 3, 100000, 100000)}, {"y": None})
    with pytest.raises(ConversionError, match="input 'x' has shape \\(1, 3, 100000, 100000\\), 30000000000"):
        convert(model, None, check=False)


def test_check_memory_estimate_arithmetic():
    """x (1x3x8x8) -> Relu a -> Relu b -> Add(a, b) y: every tensor 768 bytes; at most three alive at once."""
    model = make_model(
        [
            helper.make_node("Relu", ["x"], ["a"]),
            helper.make_node("Relu", ["a"], ["b"]),
            helper.make_node("Add", ["a", "b"], ["y"]),
        ],
        {"x": (1, 3, 8, 8)},
        {"y": None},
    )
    graph = OnnxGraph.load(model)
    est = limits.estimate_check_memory(graph, 1000, ["pycaffe", "opencv"])
    t = 768
    assert (est.inputs, est.outputs, est.all_blobs, est.live_peak) == (t, t, 4 * t, 4 * t)
    assert est.stages["opencv"] == 2 * 1000 + t + 4 * t + 2 * t
    assert est.worker == 4 * t + 2000 + t + 2 * t + limits.WORKER_OVERHEAD
    assert est.total == est.held + est.stages["pycaffe"] + limits.LIBRARIES
    avail, where = limits.available_memory()
    assert avail is None or (avail > 0 and where)


def test_random_inputs_are_unchanged():
    """The chunked float32 draw gives exactly the values of rng.standard_normal(shape).astype(float32)."""
    for shapes in ([(1, 3, 8, 8)], [(5,), (3, 1000, 700)], [()]):
        a, b = np.random.default_rng(7), np.random.default_rng(7)
        for s in shapes:
            assert np.array_equal(a.standard_normal(s).astype(np.float32), limits.float32_normal(b, s, 1000))


def test_metrics_in_chunks(monkeypatch):
    """Chunked metrics agree with the whole-array formulas, non-finite rules included."""
    from onnx2caffe import compare

    rng = np.random.default_rng(0)
    r = rng.standard_normal(10007).astype(np.float32)
    o = r + rng.standard_normal(10007).astype(np.float32) * 1e-5
    r64, o64 = r.astype(np.float64), o.astype(np.float64)
    want = {
        "max_abs": float(np.max(np.abs(r64 - o64))),
        "max_rel": float(np.max(np.abs(r64 - o64)) / np.max(np.abs(r64))),
        "cosine": float(np.dot(r64, o64) / (np.linalg.norm(r64) * np.linalg.norm(o64))),
    }
    monkeypatch.setattr(compare, "_CHUNK", 1000)
    got = compare.metrics(r, o)
    assert got["max_abs"] == want["max_abs"] and got["max_rel"] == want["max_rel"]
    assert abs(got["cosine"] - want["cosine"]) < 1e-12
    bad = o.copy()
    bad[9999] = np.inf
    assert compare.metrics(r, bad)["max_rel"] == np.inf
    same = r.copy()
    same[5000] = np.nan
    assert compare.metrics(same, same.copy())["cosine"] == pytest.approx(1.0)


def test_caffe_blob_bytes_counts_what_real_caffe_allocates():
    """Every top blob (in-place and Reshape tops share memory), a 3x3 Convolution's im2col buffer and a MAX
    Pooling's indices; the pycaffe estimate takes the Caffe net's figure when it exceeds the ONNX graph's."""
    from onnx2caffe.caffe_net import CaffeNet

    net = CaffeNet("t")
    net.add_input("data", (1, 3, 8, 8))
    w = np.zeros((4, 3, 3, 3), np.float32)
    net.add_layer(
        "conv",
        "Convolution",
        ["data"],
        ["c"],
        blobs=[w],
        convolution_param={"num_output": 4, "kernel_size": [3], "pad": [1], "bias_term": False},
    )
    net.add_layer("relu", "ReLU", ["c"], ["c"])
    net.add_layer("pool", "Pooling", ["c"], ["p"], pooling_param={"pool": 0, "kernel_size": 2, "stride": 2})
    net.add_layer("flat", "Reshape", ["p"], ["r"], reshape_param={"shape": {"dim": [1, -1]}})
    # data 192 + conv top 256 + im2col 27 x 64 + pool top 64 + its indices 64; ReLU and Reshape nothing
    assert limits.caffe_blob_bytes(net) == 4 * (192 + 256 + 27 * 64 + 64 + 64)

    net.add_layer("odd", "NoSuchLayer", ["r"], ["z"])
    assert limits.caffe_blob_bytes(net) is None  # unknown layer: the ONNX-side estimate stands alone

    model = make_model([helper.make_node("Relu", ["x"], ["y"])], {"x": (1, 3, 8, 8)}, {"y": None})
    graph = OnnxGraph.load(model)
    small = limits.estimate_check_memory(graph, 0, ["pycaffe"])
    big = limits.estimate_check_memory(graph, 0, ["pycaffe"], caffe_blobs=10**6)
    assert small.all_blobs == 2 * 768 and big.all_blobs == 10**6
    assert big.worker - small.worker == 10**6 - 2 * 768
    assert limits.estimate_check_memory(graph, 0, ["pycaffe"], caffe_blobs=10).all_blobs == 2 * 768


def test_check_estimate_counts_the_smallest_segment():
    """When real Caffe can run the net in segments, the worker is its largest one-layer segment (weights
    included) instead of every blob, and our process adds the caffemodel it splits and the values carried
    across a cut; a segment plan bigger than the whole net changes nothing."""
    model = make_model([helper.make_node("Relu", ["x"], ["y"])], {"x": (1, 3, 8, 8)}, {"y": None})
    graph = OnnxGraph.load(model)
    whole = limits.estimate_check_memory(graph, 1000, ["pycaffe"], caffe_blobs=10**9)
    cut = limits.estimate_check_memory(
        graph, 1000, ["pycaffe"], caffe_blobs=10**9, caffe_segments=(10**6, 5000)
    )
    t = 768
    assert whole.worker == 10**9 + 2000 + 3 * t + limits.WORKER_OVERHEAD
    assert cut.worker == 10**6 + 3 * t + limits.WORKER_OVERHEAD
    assert cut.in_process["pycaffe"] == whole.in_process["pycaffe"] + 1000 + 5000
    assert cut.total < whole.total
    same = limits.estimate_check_memory(
        graph, 1000, ["pycaffe"], caffe_blobs=10**4, caffe_segments=(10**6, 0)
    )
    assert same.worker == limits.estimate_check_memory(graph, 1000, ["pycaffe"], caffe_blobs=10**4).worker
