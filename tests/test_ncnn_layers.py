"""The ncnn writer layer by layer: hand-written Caffe nets (tests/ncnn_cases.py, BVLC and fork layers) run on
ncnn float32 and on real Caffe (pycaffe; OpenCV for Interp and ShuffleChannel, which the Caffe build lacks), and
every blob must agree: same shape, max |ncnn - caffe| <= 1e-4 * max |caffe|, cosine >= 0.99999 (ncnn's x86
kernels use polynomial exp/log/tanh/pow and other summation orders; a wrong layer gives 1e-2 or more).

The files are also checked against ncnn's own reading of them: ncnn loads the .param, its loader reads the
.bin in exactly the pieces the writer wrote (per weight blob, through a counting DataReader) and to the last
byte, ncnn's layer list (type, name, bottom and top blobs) is ours, and every ncnn Mat has the shape the
writer recorded for it.
"""

from __future__ import annotations

import ctypes

import numpy as np
import pytest
from caffe_runtimes import shared_runtime
from ncnn_cases import CASES, write_case

from onnx2caffe.compare import metrics
from onnx2caffe.ncnn import caffe_to_ncnn

ncnn = pytest.importorskip("ncnn")

MAX_REL = 1e-4
MIN_COSINE = 0.99999

_get = ctypes.pythonapi.PyCapsule_GetPointer
_get.restype, _get.argtypes = ctypes.c_void_p, [ctypes.py_object, ctypes.c_char_p]
_name = ctypes.pythonapi.PyCapsule_GetName
_name.restype, _name.argtypes = ctypes.c_char_p, [ctypes.py_object]


class CountingReader(ncnn.DataReader):
    """An ncnn DataReader over bytes that records the size of every read ncnn's loader makes."""

    def __init__(self, data: bytes) -> None:
        super().__init__()
        self.data, self.pos, self.reads = data, 0, []

    def scan(self, fmt, p):
        return 0

    def read(self, buf, size):
        n = min(size, len(self.data) - self.pos)
        ctypes.memmove(_get(buf, _name(buf)), self.data[self.pos : self.pos + n], n)
        self.reads.append(size)
        self.pos += n
        return n


def _input(shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


@pytest.mark.parametrize("name", list(CASES))
def test_blobs_match_caffe(name, tmp_path):
    text, blobs, shape, runtime = CASES[name]
    p, m = write_case(tmp_path, name, text, blobs, shape)
    ref_rt, nc_rt = shared_runtime(runtime), shared_runtime("ncnn")
    x = _input(shape)
    with nc_rt.load(p, m) as nm, ref_rt.load(p, m) as rm:
        names = [b for b in nm.blob_names() if b != "data" and b in rm.blob_names()]
        assert names
        ours = nm.run({"data": x}, names)
        ref = rm.run({"data": x}, names)
    for b in names:
        if name == "ssd_detection" and b == "det":
            _same_detections(ours[b], ref[b])
            continue
        r = ref[b]
        if runtime == "opencv" and r.ndim == 2 and r.shape[1] == 1 and ours[b].ndim == 1:
            r = r.reshape(-1)
        assert ours[b].shape == r.shape, (b, ours[b].shape, r.shape)
        m_ = metrics(r, ours[b])
        assert m_["max_rel"] <= MAX_REL and m_["cosine"] >= MIN_COSINE, (b, m_)


def _same_detections(ours, ref):
    """Caffe's rows (image, label, score, box) and ncnn's, both in Caffe's order (label, then score)."""
    assert ours.shape[:2] == ref.shape[:2] == (1, 1)
    ours, ref = ours.reshape(-1, 7), ref.reshape(-1, 7)
    assert len(ref) >= 5 and ref[0, 1] != -1, "the test head should detect something"
    assert len(set(ref[:, 2].tolist())) == len(ref), "scores tie: the order of the rows is not defined"
    assert ours.shape == ref.shape
    np.testing.assert_array_equal(ours[:, :2], ref[:, :2])
    np.testing.assert_allclose(ours[:, 2:], ref[:, 2:], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", list(CASES))
def test_files_read_back_by_ncnn(name, tmp_path):
    text, blobs, shape, _ = CASES[name]
    p, m = write_case(tmp_path, name, text, blobs, shape)
    model = caffe_to_ncnn(p, m)
    param, binf = tmp_path / "n.param", tmp_path / "n.bin"
    model.write(param, binf)
    data = binf.read_bytes()
    assert len(data) == model.bin_size()
    net = ncnn.Net()
    net.opt.use_fp16_storage = False
    assert net.load_param(str(param)) == 0
    reader = CountingReader(data)
    assert net.load_model(reader) == 0
    # ncnn read the .bin in the writer's pieces, to the last byte
    assert reader.reads == [n for _, n in model.weight_reads()]
    assert reader.pos == len(data)
    # ncnn's layers and blobs are ours
    blob_names = [b.name for b in net.blobs()]
    theirs = [
        (ly.type, ly.name, [blob_names[i] for i in ly.bottoms], [blob_names[i] for i in ly.tops])
        for ly in net.layers()
    ]
    assert theirs == [(ly.type, ly.name, ly.bottoms, ly.tops) for ly in model.layers]
    assert len(blob_names) == model.blob_count()
    # every Caffe blob: ncnn computes a Mat of the recorded shape
    ex = net.create_extractor()
    ex.input("data", ncnn.Mat(_input(shape)[0]).clone())
    for caffe_name, info in model.blobs.items():
        if info.layer_type == "DetectionOutput":
            continue
        ret, mat = ex.extract(info.ncnn)
        assert ret == 0, caffe_name
        assert tuple(np.array(mat).shape) == info.ncnn_shape, (caffe_name, info)
