"""Real Caffe in segments (onnx2caffe/caffe_segments.py, runtimes/pycaffe_segmented.py): a net cut into
consecutive ranges of layers, each loaded, run and freed on its own, must give bitwise the values of the
whole net, every blob included (Caffe's "a blob holds its last value" for in-place layers)."""

from __future__ import annotations

import numpy as np
import pytest
from caffe_runtimes import shared_runtime
from onnx import helper
from onnx_testing import check_conversion, make_model

from onnx2caffe.caffe_net import CaffeNet
from onnx2caffe.caffe_segments import plan_segments, smallest_peak
from onnx2caffe.runtimes import get_runtime
from onnx2caffe.runtimes.pycaffe import PycaffeModel
from onnx2caffe.runtimes.pycaffe_segmented import SegmentedPycaffeModel

RNG = np.random.default_rng(20261130)


@pytest.fixture(scope="module")
def seg_rt():
    shared_runtime("pycaffe")  # skips when Caffe is not built
    rt = get_runtime("pycaffe")
    yield rt
    rt.close()


def tricky_net(tmp_path):
    """Inputs data (1,4,6,6) and aux (1,2,6,6). conv1 -> in-place ReLU c1 -> conv2 c2 -> Slice a, b (2+4)
    -> in-place Sigmoid b -> conv3 c3 -> Eltwise PROD(c1, c3) e (c1 from several layers back) -> in-place
    ReLU e; Concat(a, aux) cat -> MAX Pooling p. Outputs e and p."""

    def conv(name, bottom, cin, cout, k):
        w = RNG.standard_normal((cout, cin, k, k)).astype(np.float32)
        b = RNG.standard_normal(cout).astype(np.float32)
        param = {"num_output": cout, "kernel_size": [k], "pad": [k // 2]}
        net.add_layer(name, "Convolution", [bottom], [name], blobs=[w, b], convolution_param=param)

    net = CaffeNet("tricky")
    net.add_input("data", (1, 4, 6, 6))
    net.add_input("aux", (1, 2, 6, 6))
    conv("c1", "data", 4, 6, 3)
    net.add_layer("relu1", "ReLU", ["c1"], ["c1"])
    conv("c2", "c1", 6, 6, 1)
    net.add_layer("sl", "Slice", ["c2"], ["a", "b"], slice_param={"axis": 1, "slice_point": [2]})
    net.add_layer("sig", "Sigmoid", ["b"], ["b"])
    conv("c3", "b", 4, 6, 3)
    net.add_layer("e", "Eltwise", ["c1", "c3"], ["e"], eltwise_param={"operation": 0})
    net.add_layer("relu_e", "ReLU", ["e"], ["e"])
    net.add_layer("cat", "Concat", ["a", "aux"], ["cat"])
    net.add_layer("p", "Pooling", ["cat"], ["p"], pooling_param={"pool": 0, "kernel_size": 2, "stride": 2})
    return net.save(tmp_path / "tricky")


def budget_for(net, segments):
    """The smallest budget that cuts `net` into exactly `segments` segments."""
    for budget in range(0, 10**6, 16):
        plan = plan_segments(net, budget)
        if len(plan.segments) == segments:
            return budget
    raise AssertionError(f"no budget gives {segments} segments")


def test_segments_are_bitwise_the_whole_net(seg_rt, tmp_path):
    proto, model = tricky_net(tmp_path)
    net = CaffeNet.load(proto, model)
    inputs = {
        "data": RNG.standard_normal((1, 4, 6, 6)).astype(np.float32),
        "aux": RNG.standard_normal((1, 2, 6, 6)).astype(np.float32),
    }
    seg_rt.segment_bytes = 10**12  # fits: one piece, as before
    with seg_rt.load(proto, model) as whole:
        assert isinstance(whole, PycaffeModel)
        outputs = whole.run(inputs)
        assert sorted(outputs) == ["e", "p"]
        names = ["data", "aux", "c1", "c2", "a", "b", "c3", "e", "cat", "p"]
        blobs = whole.run(inputs, names)
    assert np.all(blobs["b"] > 0) and np.all(blobs["e"] >= 0)  # the in-place layers' last values
    for segments in (2, 3, 10):  # 10: one layer each (budget 0)
        seg_rt.segment_bytes = budget_for(net, segments) if segments < 10 else 0
        with seg_rt.load(proto, model) as m:
            assert isinstance(m, SegmentedPycaffeModel) and m.segment_count == segments
            assert sorted(m.input_names()) == ["aux", "data"] and sorted(m.output_names()) == ["e", "p"]
            got = m.run(inputs)
            assert sorted(got) == ["e", "p"]
            for name in got:
                assert np.array_equal(got[name], outputs[name]), (segments, name)
            every = m.run(inputs, names)
            for name in names:
                assert every[name].tobytes() == blobs[name].tobytes(), (segments, name)
            single = m.run(inputs, "c1")
            assert list(single) == ["c1"] and np.array_equal(single["c1"], blobs["c1"])
            folder = m.folder
            assert len(list(folder.glob("*.prototxt"))) == segments
        assert not folder.exists()  # the segment files go with the model


def test_segment_plan_inputs_cross_several_cuts(tmp_path):
    proto, model = tricky_net(tmp_path)
    plan = plan_segments(CaffeNet.load(proto, model), 0)
    layers = [s.writes for s in plan.segments]
    assert layers[0] == ["c1"] and layers[1] == ["c1"]  # the in-place ReLU alone, rewriting c1
    inputs = [s.inputs for s in plan.segments]
    assert inputs[1] == ["c1"] and inputs[2] == ["c1"]  # c1 from the ReLU that rewrote it in place
    assert layers[3] == ["a", "b"] and inputs[3] == ["c2"]  # a multi-top layer
    assert inputs[6] == ["c1", "c3"]  # c1 from five segments back, after its in-place ReLU
    assert layers[8] == ["cat"] and inputs[8] == ["a", "aux"]  # a net input first read by a late segment


def test_segmented_input_and_blob_errors(seg_rt, tmp_path):
    proto, model = tricky_net(tmp_path)
    seg_rt.segment_bytes = 0
    with seg_rt.load(proto, model) as m:
        x = {"data": np.zeros((1, 4, 6, 6), np.float32)}
        with pytest.raises(Exception, match="missing input\\(s\\) \\['aux'\\]"):
            m.run(x)
        with pytest.raises(Exception, match="no blob named 'nope'"):
            m.run(dict(x, aux=np.zeros((1, 2, 6, 6), np.float32)), ["nope"])


def test_conversion_check_passes_in_segments(monkeypatch, tmp_path):
    """convert's check on real Caffe with one layer per segment (the budget forced to 0 bytes)."""
    rt = shared_runtime("pycaffe")
    runs = []
    original = SegmentedPycaffeModel.run

    def counting(self, *args, **kwargs):
        runs.append(self.segment_count)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(SegmentedPycaffeModel, "run", counting)
    monkeypatch.setenv("ONNX2CAFFE_PYCAFFE_SEGMENT_BYTES", "0")
    w = RNG.standard_normal((5, 3, 3, 3)).astype(np.float32)
    model = make_model(
        [
            helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
            helper.make_node("Relu", ["c"], ["r"]),
            helper.make_node("Sigmoid", ["r"], ["s"]),
            helper.make_node("Mul", ["c", "s"], ["y"]),
            helper.make_node("Concat", ["r", "y"], ["z"], axis=1),
        ],
        {"x": (1, 3, 8, 8)},
        {"y": None, "z": None},
        {"w": w},
    )
    check_conversion(model, tmp_path, runtimes=[rt])
    assert runs and min(runs) >= 4


def test_smallest_peak(tmp_path):
    proto, model = tricky_net(tmp_path)
    plan = plan_segments(CaffeNet.load(proto, model), 0)
    largest, carried = smallest_peak(CaffeNet.load(proto, model))
    assert largest == max(s.nbytes for s in plan.segments)
    # e's segment: its top (1, 6, 6, 6), its inputs c1 and c3 (the same shape), no weights
    assert plan.segments[6].nbytes == 4 * 3 * 216
    # the widest cut, before the Eltwise: c1 (216 floats), c3 (216), a (72) and aux (72) are alive
    assert carried == 4 * (216 + 216 + 72 + 72)
