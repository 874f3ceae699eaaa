"""Calibration inputs: listing, decoding and preprocessing, in a thread pool (OpenCV releases the GIL).

An image file is decoded with cv2.imread (BGR, or grey for a 1-channel net), resized to the net's input
size (bilinear), converted to RGB when asked, and normalised per channel as ``(x - mean) * norm``
(mean and norm in the order of the net's input channels). A ``.npy`` file is an already preprocessed
input: a float array of shape (C, H, W) or (1, C, H, W), used as it is.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np


class BadInput(Exception):
    """One calibration file cannot be used (the message says why); the job skips it."""


@dataclass(frozen=True)
class Preprocess:
    channels: int
    height: int
    width: int
    mean: tuple[float, ...] = (0.0, 0.0, 0.0)
    norm: tuple[float, ...] = (1.0,)
    pixel: str = "BGR"  # channel order fed to the net: BGR (as decoded) or RGB


def list_inputs(folder: str | os.PathLike[str]) -> list[Path]:
    """Every regular, non-hidden file under folder (recursively), sorted by path."""
    root = Path(folder)
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in filenames:
            if not name.startswith("."):
                found.append(Path(dirpath) / name)
    return sorted(found)


def _per_channel(values: Sequence[float], channels: int, what: str) -> np.ndarray:
    v = np.asarray(values, dtype=np.float32).ravel()
    if v.size == 1:
        v = np.repeat(v, channels)
    if v.size < channels:
        raise ValueError(f"{what} has {v.size} values, the net's input has {channels} channels")
    return v[:channels]


def load_input(path: Path, pre: Preprocess) -> np.ndarray:
    """The (1, C, H, W) float32 net input for one file; BadInput when it cannot be used."""
    if path.suffix.lower() == ".npy":
        try:
            a = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as e:
            raise BadInput(f"cannot read {path}: {e}") from None
        if a.ndim == 3:
            a = a[None]
        if a.shape != (1, pre.channels, pre.height, pre.width) or a.dtype.kind not in "fiu":
            raise BadInput(
                f"{path}: array of shape {a.shape} ({a.dtype}), expected ({pre.channels}, {pre.height}, "
                f"{pre.width}) numbers"
            )
        return np.ascontiguousarray(a, dtype=np.float32)
    import cv2

    flag = cv2.IMREAD_GRAYSCALE if pre.channels == 1 else cv2.IMREAD_COLOR
    img = cv2.imread(str(path), flag)
    if img is None:
        raise BadInput(f"{path}: cannot decode as an image")
    if pre.channels not in (1, 3):
        raise BadInput(f"{path}: the net's input has {pre.channels} channels; images give 1 or 3 (use .npy)")
    if img.shape[:2] != (pre.height, pre.width):
        img = cv2.resize(img, (pre.width, pre.height), interpolation=cv2.INTER_LINEAR)
    if img.ndim == 2:
        img = img[:, :, None]
    elif pre.pixel == "RGB":
        img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    mean = _per_channel(pre.mean, pre.channels, "--mean")
    norm = _per_channel(pre.norm, pre.channels, "--norm")
    x = (img.astype(np.float32) - mean) * norm
    return np.ascontiguousarray(x.transpose(2, 0, 1)[None])


def iter_inputs(
    paths: Sequence[Path], pre: Preprocess, workers: int
) -> Iterator[tuple[int, Path, np.ndarray | BadInput]]:
    """(index, path, input or BadInput) in order, decoded ahead by a pool of `workers` threads."""

    def job(i: int) -> tuple[int, Path, np.ndarray | BadInput]:
        try:
            return i, paths[i], load_input(paths[i], pre)
        except BadInput as e:
            return i, paths[i], e

    if workers <= 1:
        for i in range(len(paths)):
            yield job(i)
        return
    ahead = 2 * workers
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="calib-decode") as pool:
        pending = []
        nxt = 0
        while nxt < len(paths) and len(pending) < ahead:
            pending.append(pool.submit(job, nxt))
            nxt += 1
        while pending:
            fut = pending.pop(0)
            if nxt < len(paths):
                pending.append(pool.submit(job, nxt))
                nxt += 1
            yield fut.result()
