"""Test helper: one instance of each Caffe runtime per test process (so the pycaffe worker starts once,
whichever test modules use it), and the skip rule.

A runtime is skipped only when it is not installed here: pycaffe when no Caffe build is found (no
.caffe/, no ONNX2CAFFE_CAFFE_ROOT / ONNX2CAFFE_CAFFE_PYTHON), opencv when cv2 is missing, ncnn when the
ncnn wheel is missing. A Caffe that
is built but does not start is a test error, not a skip. A missing pycaffe fails instead of skipping when
the environment variable CI is set (CI builds real Caffe), and so does any missing runtime with
ONNX2CAFFE_REQUIRE_RUNTIMES=1.
"""

from __future__ import annotations

import atexit
import os

import pytest

from onnx2caffe.errors import RuntimeUnavailableError
from onnx2caffe.runtimes import ALL_RUNTIME_NAMES, Runtime, get_runtime

_instances: dict[str, Runtime] = {}


def _installed(name: str) -> str | None:
    """None when the runtime's files are present, else why not."""
    try:
        if name == "pycaffe":
            from onnx2caffe.runtimes.pycaffe import locate_caffe

            locate_caffe()
        elif name == "ncnn":
            from onnx2caffe.runtimes.ncnn import _ncnn

            _ncnn()
        else:
            from onnx2caffe.runtimes.opencv import _cv2

            _cv2()
    except RuntimeUnavailableError as e:
        return str(e)
    return None


def shared_runtime(name: str) -> Runtime:
    """The process-wide instance of runtime `name` (skips the test when it is not installed)."""
    assert name in ALL_RUNTIME_NAMES
    if name not in _instances:
        missing = _installed(name)
        if missing is not None:
            if os.environ.get("ONNX2CAFFE_REQUIRE_RUNTIMES") == "1":
                pytest.fail(f"ONNX2CAFFE_REQUIRE_RUNTIMES=1 but {missing}")
            if name == "pycaffe" and os.environ.get("CI"):
                pytest.fail(f"CI is set but real Caffe is not built: {missing}")
            pytest.skip(missing)
        _instances[name] = get_runtime(name)  # installed but broken: let the error fail the test
    return _instances[name]


@atexit.register
def _close_all() -> None:
    for rt in _instances.values():
        rt.close()
    _instances.clear()
