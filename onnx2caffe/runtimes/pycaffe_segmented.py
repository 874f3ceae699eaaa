"""A net run on real Caffe in segments, for the pycaffe runtime (see onnx2caffe/caffe_segments.py).

At load the big caffemodel is read once and every segment's .prototxt and .caffemodel are written into a
temporary folder owned by the model (removed by close()). Each run loads one segment into the worker, feeds
it the values its inputs hold, runs it, takes back what later segments read and what was asked for, and frees
it before the next one: the worker holds one segment's blobs at a time. Every layer runs in real Caffe on
the values it would have read in the whole net, so the outputs are bitwise the whole net's.
"""

from __future__ import annotations

import shutil
import tempfile
import weakref
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from onnx2caffe.caffe_net import CaffeNet
from onnx2caffe.caffe_segments import Plan, write_segments
from onnx2caffe.errors import RuntimeExecutionError
from onnx2caffe.runtimes.base import LoadedModel, as_float32_inputs, check_inputs

if TYPE_CHECKING:
    from onnx2caffe.runtimes.pycaffe import PycaffeRuntime


class SegmentedPycaffeModel(LoadedModel):
    """A net too big for real Caffe's memory, run as consecutive segments (`segment_count` of them)."""

    def __init__(
        self, runtime: PycaffeRuntime, prototxt: Path, caffemodel: Path | None, net: CaffeNet, plan: Plan
    ) -> None:
        super().__init__(prototxt, caffemodel)
        self._rt = runtime
        self._closed = False
        self.folder = Path(tempfile.mkdtemp(prefix="onnx2caffe-segments-"))
        self._cleanup = weakref.finalize(self, shutil.rmtree, str(self.folder), True)
        try:
            self._files = write_segments(net, plan, self.folder)
        except BaseException:
            self._cleanup()
            raise
        self.segments = plan.segments
        self._inputs = list(plan.inputs)
        self._outputs = net.outputs
        names = dict.fromkeys(plan.inputs)
        for layer in net.layers:
            names.update(dict.fromkeys(layer.top))
        self._blobs = list(names)
        # what each segment's successors read: the values to keep after it runs
        self._read_after: list[set[str]] = []
        later: set[str] = set()
        for segment in reversed(self.segments):
            self._read_after.append(set(later))
            later |= set(segment.inputs)
        self._read_after.reverse()
        self._last_writer: dict[str, int] = {}
        for k, segment in enumerate(self.segments):
            for name in segment.writes:
                self._last_writer[name] = k

    @property
    def segment_count(self) -> int:
        return len(self.segments)

    def run(
        self, inputs: Mapping[str, np.ndarray], outputs: Sequence[str] | None = None
    ) -> dict[str, np.ndarray]:
        what = f"running {self.prototxt} failed"
        if self._closed:
            raise RuntimeExecutionError(f"pycaffe: model {self.prototxt} was closed")
        arrays = as_float32_inputs(inputs)
        if outputs is None:
            wanted = list(self._outputs)
        else:
            wanted = [outputs] if isinstance(outputs, str) else list(outputs)
        known = set(self._blobs)
        unknown = [n for n in wanted if n not in known]
        if unknown:
            raise RuntimeExecutionError(
                f"pycaffe: {self.prototxt.name} has no blob named {', '.join(map(repr, unknown))} "
                f"(blobs: {', '.join(self._blobs[:50])}{' ...' if len(self._blobs) > 50 else ''})"
            )
        check_inputs(f"pycaffe: {what}", arrays, self._inputs)
        values = dict(arrays)  # each blob's current value, while a later segment reads it
        result: dict[str, np.ndarray] = {}
        for k, segment in enumerate(self.segments):
            keep = self._read_after[k]
            final = {n for n in wanted if self._last_writer.get(n) == k}  # its last value is written here
            collect = [n for n in segment.writes if n in keep or n in final]
            feed = [(n, values[n]) for n in segment.inputs]
            out = self._run_segment(k, feed, collect, what)
            for name, arr in out:
                values[name] = arr
                if name in final:
                    result[name] = arr
            for name in [n for n in values if n not in keep]:
                del values[name]
        for name in wanted:
            if name not in result:  # an input no layer rewrites: its blob holds what was given
                result[name] = arrays[name]
        return {name: np.asarray(result[name], dtype=np.float32) for name in wanted}

    def _run_segment(self, k: int, feed, collect: list[str], what: str) -> list[tuple[str, np.ndarray]]:
        prototxt, caffemodel = self._files[k]
        segment = self.segments[k]
        where = (
            f"{what} (segment {k + 1} of {len(self.segments)}, layers {segment.start}..{segment.stop - 1})"
        )
        with self._rt._lock:
            generation, info = self._rt._load_handle(Path(prototxt), Path(caffemodel) if caffemodel else None)
            try:
                _, _, out = self._rt._call(
                    {"cmd": "run", "handle": int(info["handle"]), "outputs": collect}, feed, where
                )
            finally:
                self._rt._free(generation, int(info["handle"]))
        return out

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._cleanup()
