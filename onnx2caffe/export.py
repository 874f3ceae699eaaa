"""The export job: PyTorch model -> one self-contained, simplified, checked ``.onnx`` file.

``export(model, output, input_shapes, ...)`` loads the model (see
:func:`onnx2caffe.exporters.torch_export.load_model`), exports it with the torchscript (default) or dynamo
exporter, simplifies it with onnx-simplifier, checks it against PyTorch with onnxruntime on a seeded random
input, and only then writes ``output`` atomically. ``output`` is never one of the job's input files.

The model travels as a SplitModel (onnx2caffe/onnx_io.py): the exporter's output becomes a small skeleton
plus the weights copied once into arrays, onnx-simplifier and onnxruntime work without a copy of the layer
weights, and the .onnx is written from those arrays (the same bytes as serializing the whole ModelProto).
PyTorch's weights are released before the .onnx is written.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx

from onnx2caffe import progress
from onnx2caffe.errors import OutputFileError
from onnx2caffe.exporters.torch_export import (
    CHECK_MAX_REL,
    ExportError,
    load_model,
    model_source_files,
    torch_to_onnx,
)
from onnx2caffe.onnx_graph import PROTO_LIMIT
from onnx2caffe.onnx_io import SplitModel


@dataclass
class ExportResult:
    path: str | None  # the .onnx written (None when output was None)
    split: SplitModel  # the model written (weights as arrays); `model` gives it as a ModelProto
    exporter: str
    opset: int
    input_shapes: list[tuple[int, ...]]
    report: list[dict[str, Any]] = field(
        default_factory=list
    )  # per output: output, max_abs, max_rel, cosine, ok
    warnings: list[str] = field(
        default_factory=list
    )  # exporter warnings worth showing (tracer warnings, ...)
    inputs: dict[str, np.ndarray] = field(default_factory=dict)  # the check's inputs, by ONNX input name
    onnx_outputs: dict[str, np.ndarray] | None = None  # onnxruntime's outputs on them (None: not checked)
    pending: BackgroundSave | None = None  # export(background=True): the .onnx being written; wait() for it

    @property
    def model(self) -> onnx.ModelProto:
        """The whole ModelProto (built on first use: a copy of the weights)."""
        proto = self.__dict__.get("_model")
        if proto is None:
            proto = self.__dict__["_model"] = self.split.to_proto()
        return proto


def _same_file(a: str, b: str) -> bool:
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def export(
    model: Any,
    output: str | os.PathLike[str] | None,
    input_shapes: Any,
    exporter: str | None = None,
    opset: int | None = None,
    weights: str | os.PathLike[str] | None = None,
    unsafe_load: bool = False,
    model_kwargs: Mapping[str, Any] | None = None,
    seed: int = 0,
    simplify: bool = True,
    check: bool = True,
    input_names: Sequence[str] | None = None,
    output_names: Sequence[str] | None = None,
    max_rel: float = CHECK_MAX_REL,
    background: bool = False,
) -> ExportResult:
    """Export ``model`` (an nn.Module or a model string) to ``output``; returns what was written and the check.

    ``background=True`` writes the .onnx in a thread while the caller goes on (the one-step convert maps and
    writes the Caffe files meanwhile: on 2 cores the two ~500 MB writes of VGG-16 overlap); the result's
    ``pending.wait()`` must be called before the file is used, and raises what the write raised.

    Raises ExportError / InputFileError for the model side, ToleranceError when the ONNX model disagrees with
    PyTorch beyond ``max_rel`` (then nothing is written), OutputFileError when ``output`` cannot be written
    or would replace an input.
    """
    out_path = None if output is None else os.fspath(output)
    pending = None
    if out_path is not None:
        inputs = [] if not isinstance(model, (str, os.PathLike)) else model_source_files(os.fspath(model))
        if weights is not None:
            inputs.append(os.fspath(weights))
        for src in inputs:
            if _same_file(src, out_path):
                raise OutputFileError(f"refusing to write {out_path}: it is an input of this export ({src})")
        if os.path.isdir(out_path):
            raise OutputFileError(f"cannot write {out_path}: it is a folder (give the .onnx file name)")

    with progress.step("import torch"):
        import torch  # noqa: F401  (timed on its own: a fixed cost of every export)
    with progress.step("build model"):
        torch_model = load_model(model, weights=weights, unsafe_load=unsafe_load, model_kwargs=model_kwargs)
    # the dynamo exporter's temporary file goes beside the output (the disk that receives the model anyway)
    tmp_folder = None
    if out_path is not None and os.path.isdir(os.path.dirname(os.path.abspath(out_path))):
        tmp_folder = os.path.dirname(os.path.abspath(out_path))
    result = torch_to_onnx(
        torch_model,
        input_shapes,
        exporter=exporter,
        opset=opset,
        do_simplify=simplify,
        check=check,
        seed=seed,
        input_names=input_names,
        output_names=output_names,
        max_rel=max_rel,
        folder=tmp_folder,
    )
    del torch_model  # PyTorch's copy of the weights is not needed any more
    if out_path is not None:
        folder = os.path.dirname(os.path.abspath(out_path))
        try:
            os.makedirs(folder, exist_ok=True)  # as convert does for its prefix
        except OSError as err:
            raise OutputFileError(f"cannot create output folder {folder}: {err.strerror}") from None
        size = result.split.serialized_size()
        if size > PROTO_LIMIT:
            raise ExportError(
                f"cannot write {out_path} as a single .onnx file: {size} bytes, over protobuf's 2 GB "
                f"({PROTO_LIMIT}-byte) message limit"
            )
        if background:
            pending = BackgroundSave(result.split, out_path)
        else:
            with progress.step("write .onnx"):
                result.split.save(out_path)
    return ExportResult(
        out_path,
        result.split,
        result.exporter,
        result.opset,
        result.input_shapes,
        result.report,
        result.warnings,
        result.inputs,
        result.onnx_outputs,
        pending,
    )


class BackgroundSave:
    """SplitModel.save(path) in a thread (non-daemon: a normal exit waits for it).

    The model's bytes are fixed when the thread starts: the skeleton's pieces are serialised here, in the
    caller's thread, and the weights are the arrays the model holds now (nothing modifies an array in place:
    passes and mappers make new ones). So the caller may go on using the model, graph passes included,
    while the file is written, and the file is the model as exported."""

    def __init__(self, split: SplitModel, path: str) -> None:
        self.path = path
        self.error: BaseException | None = None
        parts = list(split._parts())
        size = sum(p.nbytes if isinstance(p, np.ndarray) else len(p) for p in parts)
        self._thread = threading.Thread(target=self._run, args=(parts, size), name="write .onnx")
        self._thread.start()

    def _run(self, parts, size: int) -> None:
        from .fileio import atomic_write, preallocate

        try:
            with atomic_write(self.path) as f:
                preallocate(f, size)
                for p in parts:
                    if isinstance(p, np.ndarray):
                        if p.nbytes:
                            f.write(memoryview(p).cast("B"))
                    else:
                        f.write(p)
        except BaseException as err:  # noqa: BLE001 - handed to the caller's thread by wait()
            self.error = err

    def wait(self, raise_error: bool = True) -> None:
        """Block until the file is written (or failed: its temporary file is gone); raise the write's error."""
        if self._thread.is_alive():
            with progress.step("write .onnx"):
                self._thread.join()
        if raise_error and self.error is not None:
            err, self.error = self.error, None
            raise err
