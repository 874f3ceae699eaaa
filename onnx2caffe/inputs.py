"""Input preparation for `onnx2caffe verify`: one float32 array per ONNX graph input.

Each input comes from, in this order of precedence:
  --input NAME=FILE.npy   a NumPy file (any real dtype, converted to float32); its shape must be the input's
                          shape, or that shape without a leading batch axis of 1 (which is then added);
  --image [NAME=]FILE     an image read with OpenCV (1 or 3 channels), resized to the input's H x W
                          (bilinear), then Caffe's transform: (pixel - mean) * scale, the mean given as
                          B,G,R (one value for all channels works too) whatever --pixel is, and the
                          channels reordered to RGB with --pixel RGB; NCHW float32, repeated over the batch;
  otherwise               the seeded standard-normal input of convert's check (convert.random_inputs), so
                          `verify --seed S` feeds exactly what `convert --seed S` checked.
NAME is an ONNX input name or the Caffe input blob it maps to; it may be left out when the model has one input.
Every problem (missing or garbage file, wrong shape, unknown name, ...) raises InputFileError (exit code 2).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import numpy as np

from .errors import InputFileError

PIXEL_ORDERS = ("BGR", "RGB")


class NamedShape(tuple):
    """A static input shape given for one named input (NAME=1,3,224,224): a tuple of ints with `.name`."""

    name: str

    def __new__(cls, dims, name: str):
        obj = super().__new__(cls, dims)
        obj.name = name
        return obj


def parse_input_shape(text: str) -> tuple[int, ...]:
    """'1,3,224,224' (or 1x3x224x224) -> (1, 3, 224, 224); 'NAME=1,3,224,224' -> a NamedShape (the name is
    everything before the last '=', so it may hold any character but that). InputFileError when bad."""
    from .exporters.torch_export import ExportError, parse_shape

    name, sep, dims = str(text).rpartition("=")
    try:
        shape = parse_shape(dims)
    except ExportError as err:
        raise InputFileError(str(err)) from None
    if sep and not name:
        raise InputFileError(f"bad input shape {text!r}: expected NAME=DIMS, e.g. images=1,3,224,224")
    return NamedShape(shape, name) if sep else shape


def split_named(spec: str, names: Sequence[str], what: str) -> tuple[str, str]:
    """'NAME=FILE' or 'FILE' -> (input name, file). NAME may be any of `names` (aliases allowed by the caller:
    `names` is the list of accepted spellings); a bare FILE needs exactly one input."""
    name, sep, path = spec.partition("=")
    if sep and name in names:
        return name, path
    if sep and not os.path.exists(spec):
        raise InputFileError(f"{what} {spec!r}: unknown input name {name!r} (inputs: {', '.join(names)})")
    if len(set(names)) != 1:
        raise InputFileError(
            f"{what} {spec!r}: the model has several inputs, write NAME=FILE ({', '.join(names)})"
        )
    return names[0], spec


def parse_floats(text: str, what: str) -> list[float]:
    try:
        values = [float(v) for v in text.replace(" ", "").split(",") if v != ""]
    except ValueError:
        raise InputFileError(f"{what} {text!r}: expected numbers separated by commas") from None
    if not values or not all(np.isfinite(values)):
        raise InputFileError(f"{what} {text!r}: expected finite numbers separated by commas")
    return values


def load_npy(path: str, shape: tuple[int, ...], name: str) -> np.ndarray:
    """A .npy file as a float32 array of `shape` (a missing leading batch axis of 1 is added)."""
    if not os.path.isfile(path):
        raise InputFileError(f"--input {name}: {path}: no such file")
    try:
        arr = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        text = " ".join(str(exc).split())[:200]
        raise InputFileError(f"--input {name}: {path}: not a readable .npy file ({text})") from None
    if isinstance(arr, np.lib.npyio.NpzFile):
        arr.close()
        raise InputFileError(f"--input {name}: {path}: is an .npz archive, expected a single .npy array")
    if arr.dtype.kind not in "biuf":
        raise InputFileError(f"--input {name}: {path}: dtype {arr.dtype} cannot be converted to float32")
    if tuple(arr.shape) != tuple(shape):
        if len(shape) >= 1 and shape[0] == 1 and tuple(arr.shape) == tuple(shape[1:]):
            arr = arr[None]
        else:
            raise InputFileError(
                f"--input {name}: {path}: shape {tuple(arr.shape)} does not match the input shape {tuple(shape)}"
            )
    return np.ascontiguousarray(arr, dtype=np.float32)


def load_image(
    path: str,
    shape: tuple[int, ...],
    name: str,
    mean: Sequence[float] | None = None,
    scale: float | None = None,
    pixel: str = "BGR",
) -> np.ndarray:
    """An image file as an (N, C, H, W) float32 array for an input of that shape (C = 1 or 3)."""
    if len(shape) != 4 or shape[1] not in (1, 3):
        raise InputFileError(
            f"--image {name}: the input shape {tuple(shape)} is not (N, C, H, W) with 1 or 3 channels"
        )
    if pixel not in PIXEL_ORDERS:
        raise InputFileError(f"--pixel {pixel!r}: expected one of {', '.join(PIXEL_ORDERS)}")
    n, c, h, w = shape
    m = None if mean is None else np.asarray(mean, dtype=np.float32).reshape(-1)
    if m is not None and m.size not in (1, c):
        raise InputFileError(f"--mean: {m.size} values for an input with {c} channel(s)")
    if not os.path.isfile(path):
        raise InputFileError(f"--image {name}: {path}: no such file")
    try:
        import cv2
    except ImportError:
        raise InputFileError(
            "--image needs OpenCV: pip install 'onnx2caffe[opencv]' (opencv-python-headless)"
        ) from None
    img = cv2.imread(path, cv2.IMREAD_COLOR if c == 3 else cv2.IMREAD_GRAYSCALE)
    if img is None:
        raise InputFileError(f"--image {name}: {path}: not an image OpenCV can read")
    if img.shape[:2] != (h, w):
        img = cv2.resize(img, (w, h), interpolation=cv2.INTER_LINEAR)
    x = img.astype(np.float32).reshape(h, w, c)  # channels last, B,G,R for colour images
    if m is not None:
        x = x - m.reshape(1, 1, -1)
    if scale is not None:
        x = x * np.float32(scale)
    if pixel == "RGB" and c == 3:
        x = x[:, :, ::-1]
    chw = np.ascontiguousarray(x.transpose(2, 0, 1))
    return np.ascontiguousarray(np.broadcast_to(chw, (n, c, h, w)), dtype=np.float32)


def prepare_inputs(
    graph,
    seed: int = 0,
    input_files: Sequence[str] = (),
    images: Sequence[str] = (),
    mean: str | Sequence[float] | None = None,
    scale: float | str | None = None,
    pixel: str = "BGR",
    aliases: Mapping[str, str] | None = None,
) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Arrays for every input of `graph` (an onnx_graph.OnnxGraph) from the specs above.

    aliases: other accepted spellings of input names (e.g. the Caffe input blob) -> ONNX input name.
    Returns (ONNX input name -> float32 array, ONNX input name -> where it came from)."""
    from .convert import random_inputs

    shapes = {t: tuple(graph.shape(t)) for t in graph.inputs}
    spelling = {t: t for t in shapes}
    for alias, target in (aliases or {}).items():
        if target in shapes:
            spelling.setdefault(alias, target)
    names = list(spelling)
    if isinstance(mean, str):
        mean = parse_floats(mean, "--mean")
    if isinstance(scale, str):
        values = parse_floats(scale, "--scale")
        if len(values) != 1:
            raise InputFileError(f"--scale {scale!r}: expected one number")
        scale = values[0]
    if not images and (mean is not None or scale is not None or pixel != "BGR"):
        raise InputFileError("--mean, --scale and --pixel apply only to --image inputs")

    arrays: dict[str, np.ndarray] = {}
    sources: dict[str, str] = {}
    for spec in input_files:
        key, path = split_named(spec, names, "--input")
        target = spelling[key]
        if target in arrays:
            raise InputFileError(f"--input {spec!r}: input {target!r} is given twice")
        arrays[target] = load_npy(path, shapes[target], target)
        sources[target] = f"file {path}"
    for spec in images:
        key, path = split_named(spec, names, "--image")
        target = spelling[key]
        if target in arrays:
            raise InputFileError(f"--image {spec!r}: input {target!r} is given twice")
        arrays[target] = load_image(path, shapes[target], target, mean, scale, pixel)
        sources[target] = f"image {path}"
    missing = [t for t in shapes if t not in arrays]
    if missing:
        rand = random_inputs(graph, seed)
        for t in missing:
            arrays[t] = rand[t]
            sources[t] = f"random (seed {seed})"
    return {t: arrays[t] for t in shapes}, {t: sources[t] for t in shapes}
