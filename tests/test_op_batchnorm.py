"""BatchNormalization -> BatchNorm + Scale on real Caffe and OpenCV vs onnxruntime."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import helper
from onnx_testing import check_conversion, make_model

from onnx2caffe.convert import convert
from onnx2caffe.errors import ConversionError

# (x - mean) / sqrt(var + eps) * gamma + beta in a different operation order: a few float32 roundings
TOL = 1e-5


def _bn_model(shape, eps, opset=13, outputs=("y",), **attrs):
    rng = np.random.default_rng(2)
    c = shape[1]
    inits = {
        "g": rng.uniform(0.5, 2, c).astype(np.float32),
        "b": rng.standard_normal(c).astype(np.float32),
        "m": rng.standard_normal(c).astype(np.float32),
        "v": rng.uniform(0.1, 3, c).astype(np.float32),
    }
    node = helper.make_node(
        "BatchNormalization", ["x", "g", "b", "m", "v"], list(outputs), name="bn", epsilon=eps, **attrs
    )
    return make_model([node], {"x": shape}, dict.fromkeys(outputs), inits, opset=opset)


@pytest.mark.parametrize("shape", [(2, 5, 7, 3), (3, 4), (2, 6, 9), (1, 3, 1), (2, 3, 4, 5, 2)])
@pytest.mark.parametrize("eps", [1e-5, 1e-3])
def test_batchnorm(tmp_path, shape, eps):
    net = check_conversion(_bn_model(shape, eps, momentum=0.9), tmp_path, max_rel=TOL)
    bn = net.layer("bn")
    assert bn.proto.batch_norm_param.use_global_stats
    np.testing.assert_array_equal(bn.blobs[2], [1.0])


def test_batchnorm_opset15(tmp_path):
    check_conversion(_bn_model((1, 3, 4, 4), 1e-5, opset=15, training_mode=0), tmp_path, max_rel=TOL)


def test_training_mode_rejected(tmp_path):
    model = _bn_model((1, 3, 4, 4), 1e-5, opset=15, outputs=("y", "rm", "rv"), training_mode=1)
    with pytest.raises(
        ConversionError, match=r"node 'bn' \(BatchNormalization, opset 15\): training outputs"
    ):
        convert(model, str(tmp_path / "m"), check=False)
