"""Bad ONNX inputs to `onnx2caffe convert`: each one exits 2 with one stderr line naming the problem and the
file or node, no traceback, and writes nothing."""

from __future__ import annotations

import os
import time

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from ._util import assert_clean_error, files_under, run_cli, run_script, save, tiny_model


@pytest.fixture
def out(tmp_path):
    return tmp_path / "out"


def _convert(capsys, model, out, *extra):
    return run_cli(capsys, "convert", model, "-o", out / "m", "--no-check", *extra)


def test_missing_file_console_script(tmp_path):
    rc, _, err = run_script("convert", tmp_path / "nope.onnx", "-o", tmp_path / "out" / "m", "--no-check")
    assert_clean_error(rc, err, "nope.onnx", "no such file")
    assert files_under(tmp_path) == []


def test_missing_file(capsys, tmp_path, out):
    rc, _, err = _convert(capsys, tmp_path / "nope.onnx", out)
    assert_clean_error(rc, err, "nope.onnx", "no such file")
    assert files_under(out) == []


def test_empty_file_console_script(tmp_path):
    (tmp_path / "empty.onnx").write_bytes(b"")
    rc, _, err = run_script("convert", tmp_path / "empty.onnx", "-o", tmp_path / "out" / "m", "--no-check")
    assert_clean_error(rc, err, "empty.onnx", "empty")
    assert files_under(tmp_path / "out") == []


def test_folder_as_model(capsys, tmp_path, out):
    (tmp_path / "d.onnx").mkdir()
    rc, _, err = _convert(capsys, tmp_path / "d.onnx", out)
    assert_clean_error(rc, err, "d.onnx", "directory")
    assert files_under(out) == []


@pytest.mark.parametrize("seed", range(6))
def test_random_bytes(capsys, tmp_path, out, seed):
    rng = np.random.default_rng(seed)
    path = tmp_path / "rand.onnx"
    path.write_bytes(rng.integers(0, 256, size=int(rng.integers(1, 5000)), dtype=np.uint8).tobytes())
    rc, _, err = _convert(capsys, path, out)
    assert_clean_error(rc, err, "rand.onnx")
    assert files_under(out) == []


def test_text_file(capsys, tmp_path, out):
    path = tmp_path / "notes.onnx"
    path.write_text("this is not a model\n" * 20)
    rc, _, err = _convert(capsys, path, out)
    assert_clean_error(rc, err, "notes.onnx")
    assert files_under(out) == []


@pytest.mark.parametrize("keep", [1, 7, 0.25, 0.5, 0.9, -1])
def test_truncated_onnx(capsys, tmp_path, out, keep):
    data = tiny_model().SerializeToString()
    n = (
        keep
        if isinstance(keep, int) and keep > 0
        else (len(data) + keep if keep == -1 else int(len(data) * keep))
    )
    path = tmp_path / "cut.onnx"
    path.write_bytes(data[:n])
    rc, _, err = _convert(capsys, path, out)
    assert_clean_error(rc, err, "cut.onnx")
    assert files_under(out) == []


# ------------------------------------------------------------------------------------------- external data


def _external(tmp_path) -> tuple[str, bytes]:
    """tiny_model with its weight in model/w.bin; returns (model path, the weight file's bytes)."""
    folder = tmp_path / "model"
    folder.mkdir()
    path = str(folder / "m.onnx")
    onnx.save(
        tiny_model(), path, save_as_external_data=True, all_tensors_to_one_file=True, location="w.bin",
        size_threshold=0,
    )  # fmt: skip
    return path, (folder / "w.bin").read_bytes()


def _set_external(path: str, **fields: str) -> None:
    m = onnx.load(path, load_external_data=False)
    for t in m.graph.initializer:
        for e in t.external_data:
            if e.key in fields:
                e.value = fields[e.key]
    onnx.save(m, path)


def test_external_data_reference_sanity(capsys, tmp_path, out):
    """The unmodified external-data model converts (so the failures below come from the mutation)."""
    path, _ = _external(tmp_path)
    rc, _, err = _convert(capsys, path, out)
    assert rc == 0, err
    assert files_under(out) == ["m.caffemodel", "m.layers.json", "m.names.json", "m.prototxt"]


def test_external_data_missing(capsys, tmp_path, out):
    path, _ = _external(tmp_path)
    os.remove(os.path.join(os.path.dirname(path), "w.bin"))
    rc, _, err = _convert(capsys, path, out)
    assert_clean_error(rc, err, "m.onnx", "w.bin")
    assert files_under(out) == []


@pytest.mark.parametrize("location", ["../w.bin", "../../etc/passwd", "sub/../../w.bin"])
def test_external_data_outside_folder(capsys, tmp_path, out, location):
    path, data = _external(tmp_path)
    (tmp_path / "w.bin").write_bytes(data)  # a real file there, so only the location can be the problem
    _set_external(path, location=location)
    rc, _, err = _convert(capsys, path, out)
    assert_clean_error(rc, err, "m.onnx", location)
    assert files_under(out) == []


def test_external_data_absolute_path(capsys, tmp_path, out):
    path, data = _external(tmp_path)
    target = tmp_path / "abs.bin"
    target.write_bytes(data)
    _set_external(path, location=str(target))
    rc, _, err = _convert(capsys, path, out)
    assert_clean_error(rc, err, "m.onnx", "absolute")
    assert files_under(out) == []


def test_external_data_symlink_outside(capsys, tmp_path, out):
    path, data = _external(tmp_path)
    (tmp_path / "outside.bin").write_bytes(data)
    w = os.path.join(os.path.dirname(path), "w.bin")
    os.remove(w)
    os.symlink(tmp_path / "outside.bin", w)
    rc, _, err = _convert(capsys, path, out)
    assert_clean_error(rc, err, "m.onnx", "w.bin")
    assert files_under(out) == []


def test_external_data_fifo(capsys, tmp_path, out):
    """A FIFO in place of the data file must be refused, not block forever."""
    path, _ = _external(tmp_path)
    w = os.path.join(os.path.dirname(path), "w.bin")
    os.remove(w)
    os.mkfifo(w)
    rc, _, err = _convert(capsys, path, out)
    assert_clean_error(rc, err, "m.onnx", "w.bin")
    assert files_under(out) == []


def test_external_data_short_file(capsys, tmp_path, out):
    path, data = _external(tmp_path)
    (tmp_path / "model" / "w.bin").write_bytes(data[:100])
    rc, _, err = _convert(capsys, path, out)
    assert_clean_error(rc, err, "m.onnx")
    assert files_under(out) == []


@pytest.mark.parametrize("fields", [{"offset": "-4"}, {"offset": "abc"}, {"length": "12"}, {"length": "+1"}])
def test_external_data_bad_offset_or_length(capsys, tmp_path, out, fields):
    """`length` disagreeing with the tensor's shape (12 bytes for a 4x3x3x3 float tensor) is refused cleanly.

    Today: ValueError traceback ("cannot reshape array of size 3 into shape (4,3,3,3)") from
    numpy_helper.to_array in OnnxGraph.refresh (onnx2caffe/onnx_graph.py)."""
    path, data = _external(tmp_path)
    (tmp_path / "model" / "w.bin").write_bytes(data + b"\0" * 64)
    if fields.get("length") == "+1":
        fields = {"length": str(len(data) + 4)}
    _set_external(path, **fields)
    rc, _, err = _convert(capsys, path, out)
    assert_clean_error(rc, err, "m.onnx")
    assert files_under(out) == []


def test_inline_raw_data_wrong_size(capsys, tmp_path, out):
    """An initializer whose raw_data is shorter than its dims need: refused (by onnx's checker) cleanly."""
    m = tiny_model()
    m.graph.initializer[0].raw_data = m.graph.initializer[0].raw_data[:-8]
    path = save(m, tmp_path / "raw.onnx")
    rc, _, err = _convert(capsys, path, out)
    assert_clean_error(rc, err, "raw.onnx")
    assert files_under(out) == []


# ------------------------------------------------------------------------------------------- inputs


def _relu_model(elem_type, dims) -> onnx.ModelProto:
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"], name="relu")],
        "g",
        [helper.make_tensor_value_info("x", elem_type, dims)],
        [helper.make_tensor_value_info("y", elem_type, dims)],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)


@pytest.mark.parametrize("dims", [["N", 3, 8, 8], [1, 3, "H", "W"], [1, 3, None, 8], None])
def test_dynamic_input_shape(capsys, tmp_path, out, dims):
    path = save(_relu_model(TensorProto.FLOAT, dims), tmp_path / "dyn.onnx")
    rc, _, err = _convert(capsys, path, out)
    line = assert_clean_error(rc, err, "dyn.onnx")
    if dims is None:  # onnx's checker refuses a graph input without shape before our own check
        assert "shape" in line
    else:
        assert "'x'" in line and "dynamic" in line
        assert "--input-shape" in line  # says how to fix it
    assert files_under(out) == []


@pytest.mark.parametrize(
    "elem", [TensorProto.UINT8, TensorProto.INT64, TensorProto.FLOAT16, TensorProto.DOUBLE]
)
def test_non_float_input(capsys, tmp_path, out, elem):
    model = _relu_model(elem, [1, 3, 8, 8]) if elem != TensorProto.UINT8 else None
    if model is None:  # Relu has no uint8 kernel: Cast to float first
        graph = helper.make_graph(
            [helper.make_node("Cast", ["x"], ["y"], name="cast", to=TensorProto.FLOAT)],
            "g",
            [helper.make_tensor_value_info("x", elem, [1, 3, 8, 8])],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 8, 8])],
        )
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
    path = save(model, tmp_path / "typed.onnx")
    rc, _, err = _convert(capsys, path, out)
    assert_clean_error(rc, err, "typed.onnx", "'x'", TensorProto.DataType.Name(elem), "float32")
    assert files_under(out) == []


def test_no_default_opset(capsys, tmp_path, out):
    m = tiny_model()
    del m.opset_import[:]
    m.opset_import.append(helper.make_opsetid("com.example", 1))
    path = save(m, tmp_path / "noopset.onnx")
    rc, _, err = _convert(capsys, path, out)
    assert_clean_error(rc, err, "noopset.onnx")
    assert files_under(out) == []


def test_two_unsupported_ops(capsys, tmp_path, out):
    graph = helper.make_graph(
        [
            helper.make_node("Relu", ["x"], ["a"], name="ok_relu"),
            helper.make_node("Sin", ["a"], ["b"], name="first bad"),
            helper.make_node("Relu", ["b"], ["c"], name="ok_relu2"),
            helper.make_node("Cos", ["c"], ["y"], name="second_bad"),
        ],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 8, 8])],
    )
    path = save(
        helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8),
        tmp_path / "u.onnx",
    )
    out.mkdir()
    rc, _, err = _convert(capsys, path, out)
    assert_clean_error(rc, err, "u.onnx", "2 node", "'first bad'", "Sin", "'second_bad'", "Cos")
    assert files_under(out) == []


def test_two_unsupported_ops_console_script(tmp_path):
    graph = helper.make_graph(
        [
            helper.make_node("Sin", ["x"], ["b"], name="s1"),
            helper.make_node("Cos", ["b"], ["y"], name="e2"),
        ],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 8, 8])],
    )
    path = save(
        helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8),
        tmp_path / "u.onnx",
    )
    rc, _, err = run_script("convert", path, "-o", tmp_path / "out" / "m")
    assert_clean_error(rc, err, "u.onnx", "'s1'", "'e2'")
    assert files_under(tmp_path / "out") == []


# ------------------------------------------------------------------------------------------- size limits

TWO_GIB = 2**31


def test_onnx_file_over_2gib_refused_fast(capsys, tmp_path, out):
    """A sparse 2 GiB + 1 KiB file (no real data) is refused from its size alone, before parsing: fast,
    no memory, a message naming the 2 GB protobuf limit."""
    path = tmp_path / "huge.onnx"
    with open(path, "wb") as f:
        f.write(tiny_model().SerializeToString())
        f.truncate(TWO_GIB + 1024)
    t0 = time.perf_counter()
    rc, _, err = _convert(capsys, path, out)
    elapsed = time.perf_counter() - t0
    line = assert_clean_error(rc, err, "huge.onnx")
    assert "2 GB" in line or "2 GiB" in line or "2147483647" in line, line
    assert elapsed < 2.0, f"took {elapsed:.1f} s: the file was read before being refused"
    assert files_under(out) == []


def test_external_data_over_2gib_refused_fast(capsys, tmp_path, out):
    """Two weights of 1.1 GiB each in a sparse external file: the model cannot become one protobuf message
    (nor a caffemodel, which Caffe reads with the same 2 GB limit), so it is refused before the data is read.
    Today: onnx.load reads all 2.2 GB, then check_model fails with protobuf's 'too large' message."""
    folder = tmp_path / "model"
    folder.mkdir()
    n = (1100 * 2**20) // 4  # float32 count of 1.1 GiB
    rows = n // 1024
    graph = helper.make_graph(
        [
            helper.make_node("Gemm", ["x", "w1"], ["h"], name="fc1", transB=1),
            helper.make_node("Gemm", ["h", "w2"], ["y"], name="fc2"),
        ],
        "big",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1024])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1024])],
    )
    for i, name in enumerate(("w1", "w2")):
        t = onnx.TensorProto()
        t.name = name
        t.data_type = TensorProto.FLOAT
        t.dims.extend([rows, 1024] if i == 0 else [rows, 1024])
        t.data_location = onnx.TensorProto.EXTERNAL
        for k, v in (
            ("location", "w.bin"),
            ("offset", str(i * rows * 1024 * 4)),
            ("length", str(rows * 4096)),
        ):
            e = t.external_data.add()
            e.key, e.value = k, v
        graph.initializer.append(t)
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
    path = folder / "big.onnx"
    path.write_bytes(m.SerializeToString())
    with open(folder / "w.bin", "wb") as f:
        f.truncate(2 * rows * 4096)
    t0 = time.perf_counter()
    rc, _, err = _convert(capsys, path, out)
    elapsed = time.perf_counter() - t0
    line = assert_clean_error(rc, err, "big.onnx")
    assert "2 GB" in line or "2 GiB" in line or "2147483647" in line, line
    assert elapsed < 5.0, f"took {elapsed:.1f} s: the external data was read before being refused"
    assert files_under(out) == []


# ------------------------------------------------------------------------------------------- odd names

ODD_NAMES = [
    'in "quoted"',
    "with space",
    "new\nline",
    "tab\tand\\backslash",
    "it's",
    "ünïcode ☃",
    "line\u2028separator",
    "with_space",  # collides with 'with space' after sanitising
    "/slash/Conv_output_0",
]


def _chain_model(names: list[str], node_names: list[str]) -> onnx.ModelProto:
    ops = ["Relu", "Sigmoid", "Tanh"]
    nodes = [
        helper.make_node(ops[i % 3], [names[i]], [names[i + 1]], name=node_names[i])
        for i in range(len(names) - 1)
    ]
    graph = helper.make_graph(
        nodes,
        "odd",
        [helper.make_tensor_value_info(names[0], TensorProto.FLOAT, [1, 3, 4, 4])],
        [helper.make_tensor_value_info(names[-1], TensorProto.FLOAT, [1, 3, 4, 4])],
    )
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
    onnx.checker.check_model(m)
    return m


def _check_names_converted(model, tmp_path, caffe_runtimes):
    import json

    from onnx2caffe.caffe_net import CaffeNet
    from onnx2caffe.convert import convert

    res = convert(model, str(tmp_path / "names"), runtimes=caffe_runtimes, check=True)
    assert res.report and all(r["ok"] for r in res.report), res.report
    name_map = json.loads((tmp_path / "names.names.json").read_text(encoding="utf-8"))
    tensors = [model.graph.input[0].name] + [n.output[0] for n in model.graph.node]
    assert set(name_map) >= set(tensors)
    assert len({name_map[t] for t in tensors}) == len(tensors), "two tensors share a Caffe blob"
    back = CaffeNet.load(res.prototxt, res.caffemodel)
    assert [layer.name for layer in back.layers] == [layer.name for layer in res.net.layers]
    for layer in back.layers:
        for n in [layer.name, *layer.top, *layer.bottom]:
            assert "\n" not in n and '"' not in n and "\\" not in n


def test_odd_tensor_and_node_names(tmp_path, caffe_runtimes):
    """Quotes, spaces, newlines, backslashes, Unicode in tensor and node names: converted, checked on every
    runtime, distinct blobs, and the files read back."""
    names = ODD_NAMES
    node_names = [f"node {n}" for n in reversed(names[1:])]
    _check_names_converted(_chain_model(names, node_names), tmp_path, caffe_runtimes)


def test_node_named_like_the_graph_input(tmp_path, caffe_runtimes):
    """A node whose name equals the graph input's name (legal ONNX: node and tensor names are separate
    namespaces). Today: InvalidNameError "layer 'x': duplicate layer name", because build_net
    (onnx2caffe/convert.py) names the Input layer after the input blob while MapContext
    (onnx2caffe/registry.py) reserves node layer names in a separate namespace."""
    _check_names_converted(_chain_model(["x", "a", "y"], ["x", "b"]), tmp_path, caffe_runtimes)


def test_node_named_like_the_graph_input_after_sanitising(tmp_path, caffe_runtimes):
    """The same clash reached through sanitising: input 'in "x"' and node 'in_x_'-like names."""
    _check_names_converted(_chain_model(['in "x"', "a", "y"], ["in__x_", "n2"]), tmp_path, caffe_runtimes)


def test_empty_and_duplicate_node_names(tmp_path, caffe_runtimes):
    _check_names_converted(_chain_model(["x", "a", "b", "y"], ["", "dup", "dup"]), tmp_path, caffe_runtimes)


def test_control_character_names_clean(capsys, tmp_path, out):
    """A NUL and an escape in names: converted (sanitised) or refused with one clean line, never a crash."""
    path = save(_chain_model(["\x00x", "\x1b[31mred", "y"], ["n\x00", "\x7f"]), tmp_path / "ctl.onnx")
    rc, _, err = _convert(capsys, path, out)
    if rc != 0:
        assert_clean_error(rc, err, "ctl.onnx")
        assert files_under(out) == []
    else:
        assert files_under(out) == ["m.caffemodel", "m.layers.json", "m.names.json", "m.prototxt"]
        text = (out / "m.prototxt").read_text(encoding="utf-8")
        assert "\x00" not in text and "\x1b" not in text


# ------------------------------------------------------------------------------------------- initializers


def test_initializer_nan_weights_converted_or_refused(capsys, tmp_path, out):
    """NaN/Inf weights are data, not a format error: convert --no-check writes them (runtimes see NaNs)."""
    m = tiny_model()
    w = numpy_helper.to_array(m.graph.initializer[0]).copy()
    w.flat[0] = np.nan
    w.flat[1] = np.inf
    m.graph.initializer[0].CopyFrom(numpy_helper.from_array(w, "w"))
    path = save(m, tmp_path / "nan.onnx")
    rc, _, err = _convert(capsys, path, out)
    assert rc == 0 and "Traceback" not in err, err
