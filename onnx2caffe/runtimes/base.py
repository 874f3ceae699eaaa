"""The small interface every Caffe runtime implements (see onnx2caffe.runtimes for the entry points)."""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np


class LoadedModel(abc.ABC):
    """A Caffe model (prototxt + caffemodel) loaded into a runtime, ready to run."""

    def __init__(self, prototxt: Path, caffemodel: Path | None) -> None:
        self.prototxt = prototxt
        self.caffemodel = caffemodel

    @abc.abstractmethod
    def run(
        self, inputs: Mapping[str, np.ndarray], outputs: Sequence[str] | None = None
    ) -> dict[str, np.ndarray]:
        """Run a forward pass. inputs: blob name -> array (converted to float32; its shape reshapes the
        input). outputs: blob names to return (None: the net's outputs). Returns name -> float32 array.
        Raises RuntimeExecutionError."""

    # Each runtime fills these three lists when it loads a model.
    _blobs: list[str]
    _inputs: list[str]
    _outputs: list[str]

    def blob_names(self) -> list[str]:
        """Every blob name that run(..., outputs=[...]) accepts, inputs included, in network order."""
        return list(self._blobs)

    def input_names(self) -> list[str]:
        """The net's input blobs (Input layers or legacy `input:` fields)."""
        return list(self._inputs)

    def output_names(self) -> list[str]:
        """The blobs returned by run(..., outputs=None)."""
        return list(self._outputs)

    def close(self) -> None:  # noqa: B027 - optional hook, most models need nothing
        """Release the model. Safe to call twice."""

    def __enter__(self) -> LoadedModel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Runtime(abc.ABC):
    """A way to execute Caffe models: real Caffe (pycaffe) or OpenCV's Caffe importer."""

    name: str = ""

    @abc.abstractmethod
    def supported_layer_types(self) -> frozenset[str]:
        """Caffe layer type strings ("Convolution", ...) that this runtime can load."""

    @abc.abstractmethod
    def load(self, prototxt: str | Path, caffemodel: str | Path | None = None) -> LoadedModel:
        """Load a model. Raises RuntimeExecutionError (one line naming the file) on failure."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release the runtime (and every model loaded by it). Safe to call twice."""

    def __enter__(self) -> Runtime:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"


def check_inputs(where: str, given: Mapping[str, np.ndarray], expected: Sequence[str]) -> None:
    """RuntimeExecutionError "WHERE: unknown input(s) [...]; missing input(s) [...] (the net's inputs are
    [...])" unless `given` names exactly the net's inputs `expected`."""
    from onnx2caffe.errors import RuntimeExecutionError

    unknown = [n for n in given if n not in expected]
    missing = [n for n in expected if n not in given]
    if unknown or missing:
        parts = ([f"unknown input(s) {unknown}"] if unknown else []) + (
            [f"missing input(s) {missing}"] if missing else []
        )
        raise RuntimeExecutionError(f"{where}: {'; '.join(parts)} (the net's inputs are {list(expected)})")


def as_float32_inputs(inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """C-contiguous float32 copies of the given input arrays (names must be strings)."""
    out = {}
    for name, value in inputs.items():
        if not isinstance(name, str):
            raise TypeError(f"input names must be str, got {name!r}")
        out[name] = np.ascontiguousarray(np.asarray(value, dtype=np.float32))
    return out


def check_files(
    runtime: str, prototxt: str | Path, caffemodel: str | Path | None
) -> tuple[Path, Path | None]:
    """Resolve the model paths; RuntimeExecutionError naming the file when one is missing."""
    from onnx2caffe.errors import RuntimeExecutionError

    paths = []
    for kind, p in (("prototxt", prototxt), ("caffemodel", caffemodel)):
        if p is None:
            paths.append(None)
            continue
        path = Path(p).resolve()
        if not path.is_file():
            raise RuntimeExecutionError(f"{runtime}: cannot load {kind} {str(p)!r}: no such file")
        paths.append(path)
    return paths[0], paths[1]
