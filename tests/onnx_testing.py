"""Test helpers for mapper tests: build single-node ONNX models and check their conversion on real Caffe.

    model = make_model([helper.make_node("Relu", ["x"], ["y"])], inputs={"x": (1, 3, 8, 8)}, outputs={"y": None})
    net = check_conversion(model, tmp_path, max_rel=1e-5, cos=0.99999)

check_conversion converts, runs onnxruntime and every runtime of RUNTIMES installed here (one shared instance
per test process, see caffe_runtimes.py) and asserts agreement for every graph output. A runtime that is not
installed is left out; when none is, the test is skipped. Missing pycaffe FAILS the test when the environment
variable CI is set (CI builds real Caffe, and a silently skipped Caffe would prove nothing).

It then runs the same check on ncnn float32 (check_ncnn: the Caffe model converted by onnx2caffe.ncnn, run by the
ncnn wheel) wherever the converter can express the net in ncnn; a net it refuses (a 5-D blob, a layer mixing the
samples of the batch, ...) is recorded in NCNN_REFUSED and not checked there. ONNX2CAFFE_NCNN_CHECK=0 turns this off.
"""

from __future__ import annotations

import os

import numpy as np
import onnx
import pytest
from caffe_runtimes import shared_runtime
from onnx import helper, numpy_helper

from onnx2caffe.convert import convert
from onnx2caffe.errors import RuntimeExecutionError, RuntimeUnavailableError

RUNTIMES = ("pycaffe", "opencv")
# ncnn's tolerance (issue 10): its x86 kernels use polynomial exp/log/tanh and Winograd convolutions
NCNN_MAX_REL = 1e-4
NCNN_MIN_COSINE = 0.99999
NCNN_REFUSED: list[tuple[str, str]] = []  # (graph name, why) of the nets ncnn cannot express
NCNN_CHECKED: list[str] = []  # graph names of the nets checked on ncnn


def make_model(
    nodes,
    inputs: dict,
    outputs: dict,
    initializers: dict | None = None,
    opset: int = 13,
    name: str = "test",
    ir_version: int | None = None,
) -> onnx.ModelProto:
    """A checked ONNX model. inputs: name -> shape (float32); outputs: name -> shape or None (inferred);
    initializers: name -> np.ndarray (dtype kept)."""
    graph = helper.make_graph(
        list(nodes),
        name,
        [helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, list(s)) for n, s in inputs.items()],
        [
            helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, None if s is None else list(s))
            for n, s in outputs.items()
        ],
        [numpy_helper.from_array(np.asarray(v), n) for n, v in (initializers or {}).items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    # an IR version onnxruntime accepts for this opset
    model.ir_version = ir_version or min(model.ir_version, 10)
    if any(s is None for s in outputs.values()):
        inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True, data_prop=True)
        model.graph.ClearField("output")
        model.graph.output.extend(inferred.graph.output)
    onnx.checker.check_model(model)
    return model


def runtimes_here() -> list:
    """Shared instances of the installed runtimes (pytest.fail when pycaffe is missing and CI is set)."""
    found = []
    for name in RUNTIMES:
        try:
            found.append(shared_runtime(name))
        except pytest.skip.Exception as skip:
            if name == "pycaffe" and os.environ.get("CI"):
                pytest.fail(f"CI is set but real Caffe (pycaffe) is unavailable: {skip}")
    if not found:
        pytest.skip("no Caffe runtime installed (pycaffe or opencv)")
    return found


def check_conversion(
    model, tmp_path, max_rel: float = 1e-5, cos: float = 0.99999, seed: int = 0, runtimes=None
):
    """Convert `model` into tmp_path, compare every output of every installed runtime with onnxruntime and
    assert max_rel / cosine. Returns the CaffeNet."""
    rts = runtimes_here() if runtimes is None else runtimes
    result = convert(
        model, str(tmp_path / "model"), runtimes=rts, check=True, seed=seed, max_rel=max_rel, min_cosine=cos
    )
    seen = {(r["runtime"], r["output"]) for r in result.report}
    expected = {(rt.name, o.name) for rt in rts for o in model.graph.output}
    assert seen == expected, f"report covers {sorted(seen)}, expected {sorted(expected)}"
    for r in result.report:
        assert r["ok"], r
        assert r["max_rel"] <= max_rel and r["cosine"] >= cos, r
    if runtimes is None:
        check_ncnn(model, max_rel, cos, seed)
    return result.net


def ncnn_runtimes() -> list:
    """[the shared ncnn runtime] when the ncnn wheel is installed (and ONNX2CAFFE_NCNN_CHECK is not 0), else []."""
    if os.environ.get("ONNX2CAFFE_NCNN_CHECK") == "0":
        return []
    try:
        return [shared_runtime("ncnn")]
    except pytest.skip.Exception:
        return []


def check_ncnn(model, max_rel: float = NCNN_MAX_REL, cos: float = NCNN_MIN_COSINE, seed: int = 0):
    """The conversion's check on ncnn float32, with ncnn's tolerance (or the caller's, when looser). Returns the
    report rows, or None when ncnn is not installed or cannot express the net (recorded in NCNN_REFUSED)."""
    rts = ncnn_runtimes()
    if not rts:
        return None
    try:
        result = convert(
            model,
            None,
            runtimes=rts,
            check=True,
            seed=seed,
            max_rel=max(max_rel, NCNN_MAX_REL),
            min_cosine=min(cos, NCNN_MIN_COSINE),
        )
    except RuntimeUnavailableError as err:  # a Caffe layer type with no ncnn translator
        NCNN_REFUSED.append((model.graph.name, str(err)))
        return None
    except RuntimeExecutionError as err:
        if getattr(err, "unsupported", None) is None:
            raise
        NCNN_REFUSED.append((model.graph.name, str(err)))
        return None
    assert [r["runtime"] for r in result.report] == ["ncnn"] * len(model.graph.output), result.report
    NCNN_CHECKED.append(model.graph.name)
    return result.report
