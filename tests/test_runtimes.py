"""The Caffe runtime interface (onnx2caffe.runtimes): availability messages, loading errors, blob
access, the pycaffe worker's crash recovery and speed. Layer numerics are in test_caffe_layers.py."""

from __future__ import annotations

import statistics
import sys
import time

import numpy as np
import pytest
from caffe_runtimes import shared_runtime

from onnx2caffe.caffe_net import CaffeNet
from onnx2caffe.errors import RuntimeExecutionError, RuntimeUnavailableError
from onnx2caffe.runtimes import RUNTIME_NAMES, available_runtimes, get_runtime

RNG = np.random.default_rng(20240601)


@pytest.fixture(scope="session", params=RUNTIME_NAMES)
def rt(request):
    return shared_runtime(request.param)


def small_net(tmp_path, name="small", num_output=6):
    """data(1,4,5,5) -> conv1 (3x3, pad 1) -> in-place ReLU -> Slice into a,b,c (1,2,3 channels)
    -> in-place Sigmoid on b -> Concat(a, b) = cat. Outputs: c and cat. Returns paths and weights."""
    w = RNG.standard_normal((num_output, 4, 3, 3)).astype(np.float32)
    b = RNG.standard_normal(num_output).astype(np.float32)
    net = CaffeNet(name)
    net.add_input("data", (1, 4, 5, 5))
    net.add_layer(
        "conv1",
        "Convolution",
        ["data"],
        ["conv1"],
        blobs=[w, b],
        convolution_param={"num_output": num_output, "kernel_size": [3], "pad": [1]},
    )
    net.add_layer("relu1", "ReLU", ["conv1"], ["conv1"])
    net.add_layer("sl", "Slice", ["conv1"], ["a", "b", "c"], slice_param={"axis": 1, "slice_point": [1, 3]})
    net.add_layer("sig", "Sigmoid", ["b"], ["b"])
    net.add_layer("cat", "Concat", ["a", "b"], ["cat"])
    proto, model = net.save(tmp_path / name)
    return proto, model, w, b


def small_net_reference(x, w, b):
    import torch

    conv = torch.nn.functional.conv2d(
        torch.from_numpy(x).double(), torch.from_numpy(w).double(), torch.from_numpy(b).double(), padding=1
    )
    relu = torch.relu(conv).numpy()
    sig = 1.0 / (1.0 + np.exp(-relu[:, 1:3]))
    return {
        "conv1": relu,
        "a": relu[:, :1],
        "b": sig,
        "c": relu[:, 3:],
        "cat": np.concatenate([relu[:, :1], sig], 1),
    }


# ---------------------------------------------------------------------------------------- availability


def test_runtime_names_and_unknown_runtime():
    assert RUNTIME_NAMES == ("pycaffe", "opencv")
    with pytest.raises(RuntimeUnavailableError, match="pycaffe, opencv"):
        get_runtime("tensorrt")


def test_pycaffe_bogus_root_says_how_to_get_it(tmp_path, monkeypatch):
    with pytest.raises(RuntimeUnavailableError) as err:
        get_runtime("pycaffe", caffe_root=tmp_path / "nowhere")
    msg = str(err.value)
    assert "\n" not in msg
    for needle in (
        str(tmp_path / "nowhere"),
        "make caffe",
        "ONNX2CAFFE_CAFFE_ROOT",
        "ONNX2CAFFE_CAFFE_PYTHON",
    ):
        assert needle in msg
    # The same through the environment, and available_runtimes() leaves pycaffe out.
    monkeypatch.setenv("ONNX2CAFFE_CAFFE_ROOT", str(tmp_path / "nowhere"))
    with pytest.raises(RuntimeUnavailableError, match="ONNX2CAFFE_CAFFE_ROOT"):
        get_runtime("pycaffe")
    assert "pycaffe" not in available_runtimes()


def test_pycaffe_python_without_caffe(monkeypatch):
    # Our own venv has no caffe module: the worker starts, fails to import caffe, and says so.
    monkeypatch.delenv("ONNX2CAFFE_CAFFE_ROOT", raising=False)
    monkeypatch.setenv("ONNX2CAFFE_CAFFE_PYTHON", sys.executable)
    with pytest.raises(RuntimeUnavailableError, match=r"cannot import caffe.*make caffe"):
        get_runtime("pycaffe")


def test_opencv_missing_says_how_to_get_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "cv2", None)  # makes `import cv2` raise ImportError
    with pytest.raises(RuntimeUnavailableError, match=r"onnx2caffe\[opencv\]"):
        get_runtime("opencv")


def test_available_runtimes_lists_started_ones(rt):
    assert rt.name in available_runtimes()


def test_supported_layer_types(rt):
    types = rt.supported_layer_types()
    assert isinstance(types, frozenset)
    common = set(
        "Input Convolution Deconvolution InnerProduct Pooling ReLU PReLU BatchNorm Scale Eltwise Concat "
        "Slice Reshape Flatten Softmax Sigmoid TanH Power".split()
    )
    assert common <= types
    assert "NoSuchLayer" not in types
    if rt.name == "pycaffe":  # the SSD additions of the tree `make caffe` builds
        assert {"Permute", "Normalize", "PriorBox", "DetectionOutput", "Threshold", "Bias"} <= types
    else:  # OpenCV's importer does not register these BVLC layers (caffe-facts.md)
        assert not {"Threshold", "Bias", "ArgMax", "Reduction", "Clip"} & types


# ------------------------------------------------------------------------------------- loading, running


def test_run_returns_caffe_blob_semantics(rt, tmp_path):
    proto, model, w, b = small_net(tmp_path)
    x = RNG.standard_normal((1, 4, 5, 5)).astype(np.float32)
    with rt.load(proto, model) as m:
        assert m.blob_names() == ["data", "conv1", "a", "b", "c", "cat"]
        assert m.input_names() == ["data"]
        assert m.output_names() == ["c", "cat"]
        outs = m.run({"data": x})
        assert sorted(outs) == ["c", "cat"]
        every = m.run({"data": x}, outputs=m.blob_names())
    ref = small_net_reference(x, w, b)
    assert np.array_equal(every["data"], x)
    for name, expected in ref.items():
        got = every[name]
        assert got.dtype == np.float32 and got.shape == expected.shape, name
        # In-place layers: conv1 is the ReLU'd value, b the sigmoid'd one (float32 noise: 1e-5).
        assert np.abs(got - expected).max() <= 1e-5 * max(1.0, np.abs(expected).max()), name
    assert np.array_equal(outs["cat"], every["cat"])


def test_every_output_of_a_multi_top_layer_survives_later_layers(rt, tmp_path):
    """Asking for every blob at once returns each top of a Slice as computed, even when later layers (which
    may reuse the buffers of tops nobody reads any more) are asked for too. OpenCV shields only output 0 of a
    requested layer from its buffer reuse; its runtime splits such requests into passes (runtimes/opencv.py)."""
    net = CaffeNet("tops")
    net.add_input("data", (1, 8, 6, 6))
    net.add_layer("sl", "Slice", ["data"], ["a", "b"], slice_param={"axis": 1, "slice_point": [4]})
    net.add_layer("pb", "Power", ["b"], ["pb"], power_param={"scale": 2.0})
    chain = "a"
    for i in range(6):  # layers after the last reader of b, whose outputs may land in b's buffer
        net.add_layer(f"p{i}", "Power", [chain], [f"p{i}"], power_param={"scale": 0.5, "shift": 1.0})
        chain = f"p{i}"
    net.add_layer("cat", "Concat", [chain, "pb"], ["cat"])
    proto, model = net.save(tmp_path / "tops")
    x = RNG.standard_normal((1, 8, 6, 6)).astype(np.float32)
    with rt.load(proto, model) as m:
        every = m.run({"data": x}, outputs=m.blob_names())
        for name in m.blob_names():
            alone = m.run({"data": x}, outputs=[name])[name]
            assert np.array_equal(every[name], alone), name
    assert np.array_equal(every["b"], x[:, 4:])


def test_in_place_on_input_dropout_and_split(rt, tmp_path):
    # ReLU in place on the input blob, an in-place Dropout (identity at TEST), a Split: every blob reads
    # as Caffe leaves it after the forward pass (data is the ReLU'd input).
    net = CaffeNet("inplace")
    net.add_input("data", (1, 3, 2, 2))
    net.add_layer("relu", "ReLU", ["data"], ["data"])
    net.add_layer("drop", "Dropout", ["data"], ["data"], dropout_param={"dropout_ratio": 0.5})
    net.add_layer("split", "Split", ["data"], ["s1", "s2"])
    net.add_layer("pw", "Power", ["s1"], ["p"], power_param={"scale": 2.0})
    net.add_layer("sum", "Eltwise", ["p", "s2"], ["out"])
    proto, model = net.save(tmp_path / "inplace")
    x = RNG.standard_normal((1, 3, 2, 2)).astype(np.float32)
    relu = np.maximum(x, 0)
    with rt.load(proto, model) as m:
        assert m.blob_names() == ["data", "s1", "s2", "p", "out"]
        assert m.output_names() == ["out"]
        got = m.run({"data": x}, outputs=m.blob_names())
    for name, ref in {"data": relu, "s1": relu, "s2": relu, "p": 2 * relu, "out": 3 * relu}.items():
        assert np.abs(got[name] - ref).max() <= 1e-6, name  # exact up to one rounding of 2x + x


def test_inputs_reshape_the_net(rt, tmp_path):
    proto, model, w, b = small_net(tmp_path)
    with rt.load(proto, model) as m:
        for shape in [(2, 4, 5, 5), (1, 4, 7, 3), (1, 4, 5, 5)]:
            x = RNG.standard_normal(shape)  # float64 in: converted to float32
            got = m.run({"data": x}, outputs=["cat"])["cat"]
            ref = small_net_reference(x.astype(np.float32), w, b)["cat"]
            assert got.shape == ref.shape
            assert np.abs(got - ref).max() <= 1e-5 * max(1.0, np.abs(ref).max())


def test_input_blob_roundtrip_is_bit_exact(rt, tmp_path):
    # The transport (npy over pipes for pycaffe) must not alter values: extremes, denormals, signed zero.
    proto, model, _, _ = small_net(tmp_path)
    x = RNG.standard_normal((1, 4, 5, 5)).astype(np.float32)
    special = [np.finfo(np.float32).max, np.finfo(np.float32).tiny, 1e-45, -0.0, -np.finfo(np.float32).max]
    x.flat[: len(special)] = special
    with rt.load(proto, model) as m:
        got = m.run({"data": x}, outputs=["data"])["data"]
    assert got.tobytes() == x.tobytes()


def test_unknown_blob_and_bad_inputs_are_clear_errors(rt, tmp_path):
    proto, model, _, _ = small_net(tmp_path)
    x = np.zeros((1, 4, 5, 5), np.float32)
    with rt.load(proto, model) as m:
        with pytest.raises(RuntimeExecutionError, match=r"no blob named 'nope'.*conv1"):
            m.run({"data": x}, outputs=["cat", "nope"])
        with pytest.raises(
            RuntimeExecutionError, match=r"unknown input\(s\) \['dat'\].*missing input\(s\) \['data'\]"
        ):
            m.run({"dat": x})
        assert m.run({"data": x}, outputs=["a"])["a"].shape == (1, 1, 5, 5)  # still usable


def test_missing_files_are_named(rt, tmp_path):
    proto, model, _, _ = small_net(tmp_path)
    with pytest.raises(RuntimeExecutionError, match=r"prototxt .*absent\.prototxt.*no such file"):
        rt.load(tmp_path / "absent.prototxt", model)
    with pytest.raises(RuntimeExecutionError, match=r"caffemodel .*absent\.caffemodel.*no such file"):
        rt.load(proto, tmp_path / "absent.caffemodel")


def test_bad_prototxt_names_the_file_and_runtime_keeps_working(rt, tmp_path):
    bad = tmp_path / "broken.prototxt"
    bad.write_text('layer { name: "data" type: "Input" top: "data" \n  input_param { shape { dim: 1 }\n')
    proto, model, w, b = small_net(tmp_path)
    with pytest.raises(RuntimeExecutionError) as err:
        rt.load(bad)
    assert "broken.prototxt" in str(err.value) and "\n" not in str(err.value)
    x = RNG.standard_normal((1, 4, 5, 5)).astype(np.float32)
    with rt.load(proto, model) as m:
        got = m.run({"data": x}, outputs=["c"])["c"]
    ref = small_net_reference(x, w, b)["c"]
    assert np.abs(got - ref).max() <= 1e-5 * max(1.0, np.abs(ref).max())


def test_weight_shape_mismatch_is_reported(rt, tmp_path):
    # Weights saved for 6 filters, prototxt asks for 7.
    _, model6, _, _ = small_net(tmp_path, "six", num_output=6)
    proto7, _, _, _ = small_net(tmp_path, "seven", num_output=7)
    x = np.zeros((1, 4, 5, 5), np.float32)
    with pytest.raises(RuntimeExecutionError) as err:
        with rt.load(proto7, model6) as m:  # pycaffe fails here, OpenCV when it runs the net
            m.run({"data": x})
    msg = str(err.value)
    assert "seven.prototxt" in msg and "\n" not in msg
    if rt.name == "pycaffe":
        assert "Cannot copy param 0 weights from layer 'conv1'; shape mismatch" in msg


# ------------------------------------------------------------------------------------ pycaffe's worker


@pytest.fixture
def own_pycaffe():
    """A separate pycaffe runtime for tests that kill its worker."""
    shared_runtime("pycaffe")  # skips when Caffe is not built
    rt = get_runtime("pycaffe")
    yield rt
    rt.close()


def test_pycaffe_abort_restarts_worker_and_reloads_models(own_pycaffe, tmp_path):
    rt = own_pycaffe
    proto, model, w, b = small_net(tmp_path)
    _, model6, _, _ = small_net(tmp_path, "six", num_output=6)
    proto7, _, _, _ = small_net(tmp_path, "seven", num_output=7)
    x = RNG.standard_normal((1, 4, 5, 5)).astype(np.float32)
    ref = small_net_reference(x, w, b)["cat"]
    good = rt.load(proto, model)
    pid = rt.worker_pid
    assert pid is not None
    # A Python-level error (syntax) is answered by the worker, which stays up.
    (tmp_path / "syntax.prototxt").write_text("layer { name: ")
    with pytest.raises(RuntimeExecutionError, match="syntax.prototxt"):
        rt.load(tmp_path / "syntax.prototxt")
    assert rt.worker_pid == pid
    # A Caffe CHECK failure aborts the worker: the message is Caffe's, from the worker's stderr.
    with pytest.raises(RuntimeExecutionError, match=r"Caffe aborted: net\.cpp:\d+\] Cannot copy param 0"):
        rt.load(proto7, model6)
    assert rt.worker_pid is None
    # The next call starts a new worker; the model loaded before the crash is loaded again.
    got = good.run({"data": x}, outputs=["cat"])["cat"]
    assert rt.worker_pid not in (None, pid)
    assert np.abs(got - ref).max() <= 1e-5 * max(1.0, np.abs(ref).max())
    with rt.load(proto, model) as again:
        assert np.array_equal(again.run({"data": x}, outputs=["cat"])["cat"], got)


def test_pycaffe_abort_during_forward(own_pycaffe, tmp_path):
    # Concat over two inputs whose heights stop matching when one is reshaped: Caffe CHECK-fails in
    # Concat's Reshape during the forward pass. (Not Eltwise: this Caffe tree commented out Eltwise's
    # shape check, so mismatched Eltwise bottoms are not caught at all.)
    net = CaffeNet("cat")
    net.add_input("x", (1, 2, 3, 3))
    net.add_input("y", (1, 2, 3, 3))
    net.add_layer("cat", "Concat", ["x", "y"], ["cat"], concat_param={"axis": 1})
    proto, model = net.save(tmp_path / "cat")
    with own_pycaffe.load(proto, model) as m:
        ones = np.ones((1, 2, 3, 3), np.float32)
        assert np.array_equal(m.run({"x": ones, "y": 2 * ones})["cat"], np.concatenate([ones, 2 * ones], 1))
        pid = own_pycaffe.worker_pid
        with pytest.raises(
            RuntimeExecutionError, match=r"running .*cat\.prototxt.*Caffe aborted: .*Check failed"
        ):
            m.run({"x": ones, "y": np.ones((1, 2, 4, 3), np.float32)})
        got = m.run({"x": ones, "y": ones})["cat"]  # restarted, reloaded
        assert own_pycaffe.worker_pid not in (None, pid)
        assert np.array_equal(got, np.ones((1, 4, 3, 3), np.float32))


def test_pycaffe_close_stops_worker(tmp_path):
    shared_runtime("pycaffe")
    with get_runtime("pycaffe") as rt:
        proc = rt._worker.proc
        assert proc.poll() is None
    assert proc.wait(timeout=10) == 0
    proto, model, _, _ = small_net(tmp_path)
    with pytest.raises(RuntimeExecutionError, match="closed"):
        rt.load(proto, model)


def test_pycaffe_worker_is_fast(tmp_path):
    # The worker is started once: loading and running a small net cost milliseconds, far below the
    # ~0.5 s that starting Python + importing caffe takes. Bounds are loose for a busy 2-core machine.
    rt = shared_runtime("pycaffe")
    proto, model, _, _ = small_net(tmp_path)
    x = RNG.standard_normal((1, 4, 5, 5)).astype(np.float32)
    loads, runs = [], []
    for _ in range(5):
        t0 = time.perf_counter()
        m = rt.load(proto, model)
        t1 = time.perf_counter()
        m.run({"data": x})
        t2 = time.perf_counter()
        m.close()
        loads.append(t1 - t0)
        runs.append(t2 - t1)
    assert statistics.median(loads) < 0.1, loads
    assert statistics.median(runs) < 0.05, runs
