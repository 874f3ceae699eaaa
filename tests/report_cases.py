"""The small model the report-page tests convert: a Pad the passes fold into the next Conv, an Identity they
remove, and a LayerNormalization that becomes a composition of several Caffe layers."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper
from onnx_testing import make_model


def report_model() -> onnx.ModelProto:
    rng = np.random.default_rng(3)

    def w(*shape):
        return (rng.standard_normal(shape) * 0.3).astype(np.float32)

    nodes = [
        helper.make_node("Pad", ["x", "pads"], ["padded"], mode="constant", name="pad0"),
        helper.make_node("Conv", ["padded", "w1", "b1"], ["c1"], name="conv1"),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node("Identity", ["r1"], ["r1_copy"], name="copy"),
        helper.make_node("Conv", ["r1_copy", "w2", "b2"], ["c2"], pads=[1, 1, 1, 1], name="conv2"),
        helper.make_node("Flatten", ["c2"], ["f"], name="flat"),
        helper.make_node("LayerNormalization", ["f", "g", "beta"], ["n"], axis=-1, name="norm"),
        helper.make_node("Gemm", ["n", "wf", "bf"], ["logits"], transB=1, name="fc"),
    ]
    inits = {
        "pads": np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64),
        "w1": w(4, 3, 3, 3),
        "b1": w(4),
        "w2": w(4, 4, 3, 3),
        "b2": w(4),
        "g": w(4 * 8 * 8) + 1.0,
        "beta": w(4 * 8 * 8),
        "wf": w(5, 4 * 8 * 8),
        "bf": w(5),
    }
    return make_model(nodes, {"x": (1, 3, 8, 8)}, {"logits": None}, inits, opset=17)
