"""Caffe runtimes that execute converted models.

    rt = get_runtime("pycaffe")            # real Caffe, in a worker process (see pycaffe.py)
    rt = get_runtime("opencv")             # cv2.dnn.readNetFromCaffe, in-process (see opencv.py)
    rt = get_runtime("ncnn")               # the model converted to ncnn and run there (see ncnn.py)
    with rt.load("m.prototxt", "m.caffemodel") as model:
        outs = model.run({"data": x}, outputs=["prob"])

Which run by default. The Caffe runtimes (RUNTIME_NAMES: pycaffe, opencv) are the default of convert,
verify and `--runtime all`: they answer "is this Caffe model right", on real Caffe and on the most common
other consumer. ncnn (OTHER_RUNTIMES) runs only when asked (`--runtime ncnn`): it is not a Caffe
implementation but a target reached through one more conversion (onnx2caffe.ncnn), it cannot express
every Caffe model (5-D blobs, layers that mix the samples of a batch, ...), and a default check that
silently skipped it for such models would say little.

All raise RuntimeUnavailableError (saying how to install them) when they cannot start, and
RuntimeExecutionError (one line, naming the file) when a model fails to load or run.
"""

from __future__ import annotations

import os
from pathlib import Path

from onnx2caffe.errors import RuntimeUnavailableError
from onnx2caffe.runtimes.base import LoadedModel, Runtime

RUNTIME_NAMES = ("pycaffe", "opencv")  # the Caffe runtimes: the defaults, and what "all" means
OTHER_RUNTIMES = ("ncnn",)  # run only when named
ALL_RUNTIME_NAMES = RUNTIME_NAMES + OTHER_RUNTIMES

__all__ = [
    "ALL_RUNTIME_NAMES",
    "OTHER_RUNTIMES",
    "RUNTIME_NAMES",
    "LoadedModel",
    "Runtime",
    "available_runtimes",
    "get_runtime",
]


def get_runtime(name: str, caffe_root: str | Path | None = None) -> Runtime:
    """A started runtime. caffe_root (pycaffe only): a folder built by `make caffe` /
    scripts/build_caffe.sh; default $ONNX2CAFFE_CAFFE_ROOT, $ONNX2CAFFE_CAFFE_PYTHON, then .caffe/."""
    if name == "pycaffe":
        from onnx2caffe.runtimes.pycaffe import PycaffeRuntime

        return PycaffeRuntime(caffe_root)
    if name == "opencv":
        from onnx2caffe.runtimes.opencv import OpenCVRuntime

        return OpenCVRuntime()
    if name == "ncnn":
        from onnx2caffe.runtimes.ncnn import NcnnRuntime

        return NcnnRuntime()
    raise RuntimeUnavailableError(
        f"unknown Caffe runtime {name!r}; choose one of {', '.join(ALL_RUNTIME_NAMES)}"
    )


_available_cache: dict[tuple, bool] = {}


def available_runtimes(names: tuple[str, ...] = RUNTIME_NAMES) -> list[str]:
    """Which of `names` (default: the Caffe runtimes) start here (each one is tried once per process and
    configuration; pycaffe's check starts and stops its worker, about a second)."""
    found = []
    for name in names:
        key = (name, os.environ.get("ONNX2CAFFE_CAFFE_ROOT"), os.environ.get("ONNX2CAFFE_CAFFE_PYTHON"))
        if key not in _available_cache:
            try:
                get_runtime(name).close()
                _available_cache[key] = True
            except RuntimeUnavailableError:
                _available_cache[key] = False
        if _available_cache[key]:
            found.append(name)
    return found
