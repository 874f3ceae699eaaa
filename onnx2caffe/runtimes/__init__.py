"""Caffe runtimes that execute converted models.

    rt = get_runtime("pycaffe")            # real Caffe, in a worker process (see pycaffe.py)
    rt = get_runtime("opencv")             # cv2.dnn.readNetFromCaffe, in-process (see opencv.py)
    with rt.load("m.prototxt", "m.caffemodel") as model:
        outs = model.run({"data": x}, outputs=["prob"])

Both raise RuntimeUnavailableError (saying how to install them) when they cannot start, and
RuntimeExecutionError (one line, naming the file) when a model fails to load or run.
"""

from __future__ import annotations

import os
from pathlib import Path

from onnx2caffe.errors import RuntimeUnavailableError
from onnx2caffe.runtimes.base import LoadedModel, Runtime

RUNTIME_NAMES = ("pycaffe", "opencv")

__all__ = ["RUNTIME_NAMES", "LoadedModel", "Runtime", "available_runtimes", "get_runtime"]


def get_runtime(name: str, caffe_root: str | Path | None = None) -> Runtime:
    """A started runtime. caffe_root (pycaffe only): a folder built by `make caffe` /
    scripts/build_caffe.sh; default $ONNX2CAFFE_CAFFE_ROOT, $ONNX2CAFFE_CAFFE_PYTHON, then .caffe/."""
    if name == "pycaffe":
        from onnx2caffe.runtimes.pycaffe import PycaffeRuntime

        return PycaffeRuntime(caffe_root)
    if name == "opencv":
        from onnx2caffe.runtimes.opencv import OpenCVRuntime

        return OpenCVRuntime()
    raise RuntimeUnavailableError(f"unknown Caffe runtime {name!r}; choose one of {', '.join(RUNTIME_NAMES)}")


_available_cache: dict[tuple, bool] = {}


def available_runtimes() -> list[str]:
    """Names of the runtimes that start here (each one is tried once per process and configuration;
    pycaffe's check starts and stops its worker, about a second)."""
    names = []
    for name in RUNTIME_NAMES:
        key = (name, os.environ.get("ONNX2CAFFE_CAFFE_ROOT"), os.environ.get("ONNX2CAFFE_CAFFE_PYTHON"))
        if key not in _available_cache:
            try:
                get_runtime(name).close()
                _available_cache[key] = True
            except RuntimeUnavailableError:
                _available_cache[key] = False
        if _available_cache[key]:
            names.append(name)
    return names
