"""Benchmark: deploy speed on OpenCV of unrolled recurrent layers, Caffe files vs the ONNX file.

A CRNN-sized text recogniser (VGG-style conv stack on a 32 x W grey image -> 512 x 1 x T features -> two
bidirectional LSTM (or GRU) layers of hidden size 256 with a Linear after each, log-softmax over 37 classes) and
its recurrent part alone (the two bidirectional layers on a (T, 1, 512) input), exported with the TorchScript
exporter (opset 13), converted without the check, then timed with OpenCV's dnn module on one thread: the Caffe
files (cv2.dnn.readNetFromCaffe) against cv2.dnn.readNetFromONNX of the same ONNX file, both with default
settings, runs interleaved, the median and the minimum of --runs forwards each. Prints the ratio Caffe / ONNX,
the layer counts and the file sizes.

Where the time goes: OpenCV runs ONNX LSTM / GRU nodes with its own recurrent layer, which keeps one copy of R
in cache for every step. The unrolled Caffe net has one InnerProduct per step whose weights OpenCV's Caffe
importer cannot share between layers (it reads each layer's blobs by layer name), so every step streams its own
copy of R (4H x H floats for an LSTM) from memory: T copies in the caffemodel and in memory.

    .venv/bin/python benchmarks/recurrent.py [--widths 128,256] [--kinds LSTM,GRU] [--runs 20] [--dir DIR]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import shutil
import tempfile
import time
import warnings

import numpy as np


def crnn(kind: str, hidden: int = 256, classes: int = 37, head_only: bool = False):
    import torch
    from torch import nn

    class Head(nn.Module):
        def __init__(self):
            super().__init__()
            rnn = getattr(nn, kind)
            self.rnn1 = rnn(512, hidden, bidirectional=True)
            self.emb1 = nn.Linear(2 * hidden, hidden)
            self.rnn2 = rnn(hidden, hidden, bidirectional=True)
            self.emb2 = nn.Linear(2 * hidden, classes)

        def forward(self, f):  # (T, N, 512)
            y, _ = self.rnn1(f)
            T, N, C = y.shape
            y = self.emb1(y.reshape(T * N, C)).reshape(T, N, -1)
            y, _ = self.rnn2(y)
            return self.emb2(y.reshape(T * N, -1)).reshape(T, N, -1)

    class CRNN(nn.Module):
        def __init__(self):
            super().__init__()

            def block(cin, cout, pool):
                return [nn.Conv2d(cin, cout, 3, 1, 1), nn.BatchNorm2d(cout), nn.ReLU()] + (
                    [pool] if pool else []
                )

            self.cnn = nn.Sequential(
                *block(1, 64, nn.MaxPool2d(2, 2)),
                *block(64, 128, nn.MaxPool2d(2, 2)),
                *block(128, 256, None),
                *block(256, 256, nn.MaxPool2d((2, 1), (2, 1))),
                *block(256, 512, None),
                *block(512, 512, nn.MaxPool2d((2, 1), (2, 1))),
                nn.Conv2d(512, 512, 2, 1, 0),
                nn.ReLU(),
            )
            self.head = Head()

        def forward(self, x):
            f = self.cnn(x).squeeze(2).permute(2, 0, 1)  # (T, N, 512)
            return self.head(f).log_softmax(2)

    torch.manual_seed(0)
    return (Head() if head_only else CRNN()).eval()


def export(model, shape, path: str) -> None:
    import torch

    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.randn(*shape),), path, dynamo=False, opset_version=13)


def timed(nets: dict, x: np.ndarray, runs: int) -> dict:
    times = {k: [] for k in nets}
    for net in nets.values():  # warm-up: the first forward allocates
        net.setInput(x)
        net.forward()
    for _ in range(runs):
        for k, net in nets.items():
            t0 = time.perf_counter()
            net.setInput(x)
            net.forward()
            times[k].append(time.perf_counter() - t0)
    return {k: (float(np.median(v)), float(np.min(v))) for k, v in times.items()}


def bench(label: str, model, shape, folder: str, runs: int) -> dict:
    import cv2

    from onnx2caffe.convert import convert

    path = os.path.join(folder, f"{label}.onnx")
    export(model, shape, path)
    prefix = os.path.join(folder, label)
    result = convert(path, prefix, check=False)
    nets = {
        "onnx": cv2.dnn.readNetFromONNX(path),
        "caffe": cv2.dnn.readNetFromCaffe(result.prototxt, result.caffemodel),
    }
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    t = timed(nets, x, runs)
    return {
        "label": label,
        "layers": len(result.net.layers),
        "onnx_mb": os.path.getsize(path) / 1e6,
        "caffemodel_mb": os.path.getsize(result.caffemodel) / 1e6,
        "onnx_ms": t["onnx"][0] * 1e3,
        "caffe_ms": t["caffe"][0] * 1e3,
        "ratio_median": t["caffe"][0] / t["onnx"][0],
        "ratio_min": t["caffe"][1] / t["onnx"][1],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--widths", default="128,256", help="image widths (T = W / 4 - 1 steps)")
    ap.add_argument("--kinds", default="LSTM,GRU")
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--dir", default=None, help="keep the files here (default: a temporary folder)")
    args = ap.parse_args()
    import cv2

    cv2.setNumThreads(1)
    folder = args.dir or tempfile.mkdtemp(prefix="onnx2caffe-recurrent-")
    os.makedirs(folder, exist_ok=True)
    rows = []
    try:
        for kind in args.kinds.split(","):
            for width in (int(w) for w in args.widths.split(",")):
                T = width // 4 - 1
                rows.append(bench(f"crnn_{kind}_T{T}", crnn(kind), (1, 1, 32, width), folder, args.runs))
                rows.append(
                    bench(f"{kind}x2_T{T}", crnn(kind, head_only=True), (T, 1, 512), folder, args.runs)
                )
                r = rows[-2:]
                for row in r:
                    print(
                        f"{row['label']:<16} layers {row['layers']:>5}  onnx {row['onnx_ms']:7.2f} ms  caffe "
                        f"{row['caffe_ms']:7.2f} ms  ratio {row['ratio_median']:.2f} (min {row['ratio_min']:.2f})  "
                        f"files {row['onnx_mb']:.0f} MB -> {row['caffemodel_mb']:.0f} MB",
                        flush=True,
                    )
    finally:
        if args.dir is None:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
