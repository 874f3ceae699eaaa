"""Benchmark: peak memory (RSS) of `onnx2caffe convert` as a multiple of the model's weight size.

Two models, written as ONNX files first (built directly with onnx.helper, random weights, no PyTorch):
  * vgg16      torchvision's VGG-16 layout: 13 convolutions + 3 fully connected layers, 138,357,544 float32
               parameters (553 MB) on a 1x3x224x224 input
  * synthetic  3 Gemm layers of 11264 x 11264 float32 (1.52 GB of weights) on a 1x11264 input

Each conversion (--no-check: the check runs onnxruntime and Caffe on the weights again, in other processes)
runs in a fresh subprocess; the child reports its own peak RSS (VmHWM). A second subprocess runs the steps
of convert() one by one (onnx load + check as convert loads a file, passes incl. fold_constants, mapping to
Caffe layers, writing) and reads VmRSS after each step and VmHWM (peak) during it (the peak is reset before
each step through /proc/self/clear_refs), to show which step holds how many copies of the weights.

    .venv/bin/python benchmarks/memory.py [--dir DIR] [--models vgg16,synthetic] [--keep]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

VGG16_CFG = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]


def _write_model(path: str, nodes, inputs, outputs, weights: dict[str, np.ndarray]) -> int:
    """Write an ONNX model whose initializers hold `weights`; returns the weight bytes."""
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph(
        nodes,
        os.path.basename(path),
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in inputs],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in outputs],
    )
    total = 0
    for name in list(weights):
        arr = weights.pop(name)  # drop our reference as soon as it is serialised into the graph
        graph.initializer.append(numpy_helper.from_array(arr, name))
        total += arr.nbytes
        del arr
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
    with open(path, "wb") as f:
        f.write(model.SerializeToString())
    return total


def build_vgg16(path: str) -> int:
    from onnx import helper

    rng = np.random.default_rng(0)
    nodes, weights, x, c, i = [], {}, "input", 3, 0
    for v in VGG16_CFG:
        if v == "M":
            nodes.append(helper.make_node("MaxPool", [x], [f"pool{i}"], kernel_shape=[2, 2], strides=[2, 2]))
            x = f"pool{i}"
        else:
            weights[f"conv{i}.w"] = (rng.standard_normal((v, c, 3, 3), np.float32) * 0.05).astype(np.float32)
            weights[f"conv{i}.b"] = np.zeros(v, np.float32)
            nodes.append(
                helper.make_node("Conv", [x, f"conv{i}.w", f"conv{i}.b"], [f"conv{i}"], pads=[1, 1, 1, 1])
            )
            nodes.append(helper.make_node("Relu", [f"conv{i}"], [f"relu{i}"]))
            x, c = f"relu{i}", v
        i += 1
    nodes.append(helper.make_node("Flatten", [x], ["flat"], axis=1))
    x = "flat"
    for j, (fin, fout) in enumerate([(25088, 4096), (4096, 4096), (4096, 1000)]):
        weights[f"fc{j}.w"] = (rng.standard_normal((fout, fin), np.float32) * 0.01).astype(np.float32)
        weights[f"fc{j}.b"] = np.zeros(fout, np.float32)
        nodes.append(helper.make_node("Gemm", [x, f"fc{j}.w", f"fc{j}.b"], [f"fc{j}"], transB=1))
        x = f"fc{j}"
        if j < 2:
            nodes.append(helper.make_node("Relu", [x], [f"fc{j}.relu"]))
            x = f"fc{j}.relu"
    return _write_model(path, nodes, [("input", [1, 3, 224, 224])], [(x, [1, 1000])], weights)


def build_synthetic(path: str, n: int = 11264, layers: int = 3) -> int:
    from onnx import helper

    nodes, weights, x = [], {}, "input"
    for j in range(layers):
        weights[f"w{j}"] = np.full((n, n), 1.0 / n, np.float32)
        nodes.append(helper.make_node("Gemm", [x, f"w{j}"], [f"fc{j}"], transB=1))
        x = f"fc{j}"
    return _write_model(path, nodes, [("input", [1, n])], [(x, [1, n])], weights)


# --------------------------------------------------------------------------------------------- children

_STEPS_CHILD = r"""
import json, os, sys, time
def status():
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmRSS", "VmHWM"):
                out[k] = int(v.split()[0]) * 1024
    return out
def reset_peak():
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False
import onnx2caffe.convert, onnx2caffe.onnx_graph, onnx2caffe.passes, onnx2caffe.caffe_net
from onnx2caffe import op_mappers
op_mappers.load_all()
from onnx2caffe.convert import build_net, load_with_shapes
from onnx2caffe.passes import run_passes
src, prefix = sys.argv[1], sys.argv[2]
rows = [dict(step="imports", **status(), seconds=0.0)]
state = {}
def step(name, fn):
    can_reset = reset_peak()
    t = time.perf_counter()
    fn()
    rows.append(dict(step=name, **status(), seconds=time.perf_counter() - t, peak_reset=can_reset))
# as convert loads a file: the graph with its weights as arrays (and the reference, sharing them)
step("onnx load + check", lambda: state.__setitem__("g", load_with_shapes(src, None)[0]))
step("passes (fold_constants, ...)", lambda: run_passes(state["g"]))
step("mapping to Caffe layers", lambda: state.__setitem__("net", build_net(state["g"], "m")[0]))
step("writing prototxt + caffemodel", lambda: state["net"].save(prefix))
state.clear()
print(json.dumps(rows))
"""


def run_convert(onnx_path: str, prefix: str) -> tuple[int, float]:
    """`onnx2caffe convert --no-check` in a fresh child; (its peak RSS in bytes, seconds)."""
    code = (
        "import sys\n"
        "from onnx2caffe.cli import main\n"
        "rc = main(['convert', sys.argv[1], '-o', sys.argv[2], '--no-check'])\n"
        # VmHWM belongs to this process's own address space; ru_maxrss would carry over the parent's peak
        # across fork + exec (Linux keeps the larger of the two), and the parent built the models.
        "print([int(l.split()[1]) * 1024 for l in open('/proc/self/status') if l.startswith('VmHWM')][0])\n"
        "sys.exit(rc)\n"
    )
    t = time.perf_counter()
    p = subprocess.run([sys.executable, "-c", code, onnx_path, prefix], capture_output=True, text=True)
    if p.returncode != 0:
        raise SystemExit(f"convert failed ({p.returncode}): {p.stderr.strip()}")
    return int(p.stdout.strip().splitlines()[-1]), time.perf_counter() - t


def run_steps(onnx_path: str, prefix: str) -> list[dict]:
    p = subprocess.run(
        [sys.executable, "-c", _STEPS_CHILD, onnx_path, prefix], capture_output=True, text=True
    )
    if p.returncode != 0:
        raise SystemExit(f"step run failed ({p.returncode}): {p.stderr.strip()[-2000:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def baseline_rss() -> int:
    code = (
        "import onnx2caffe.convert, onnx2caffe.cli_convert\n"
        "from onnx2caffe import op_mappers\nop_mappers.load_all()\n"
        "print([int(l.split()[1]) * 1024 for l in open('/proc/self/status') if l.startswith('VmHWM')][0])\n"
    )
    return int(
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--dir", default=None, help="folder for the ONNX and Caffe files (default: a temp folder)"
    )
    ap.add_argument("--models", default="vgg16,synthetic")
    ap.add_argument("--keep", action="store_true", help="keep the files")
    args = ap.parse_args()
    work = args.dir or tempfile.mkdtemp(prefix="onnx2caffe-mem-")
    os.makedirs(work, exist_ok=True)
    builders = {"vgg16": build_vgg16, "synthetic": build_synthetic}
    mb = 2**20
    base = baseline_rss()
    print(f"baseline (python + onnx2caffe imports): {base / mb:.0f} MB")
    try:
        for name in args.models.split(","):
            onnx_path = os.path.join(work, f"{name}.onnx")
            t = time.perf_counter()
            weights = builders[name](onnx_path)
            print(f"\n{name}: weights {weights / mb:.0f} MB, ONNX file {os.path.getsize(onnx_path) / mb:.0f} MB "
                  f"(built in {time.perf_counter() - t:.1f} s)")  # fmt: skip
            peak, secs = run_convert(onnx_path, os.path.join(work, f"{name}_cli"))
            print(
                f"  convert --no-check: peak RSS {peak / mb:.0f} MB = {peak / weights:.2f} x weights "
                f"({(peak - base) / weights:.2f} x above the baseline), {secs:.1f} s"
            )
            rows = run_steps(onnx_path, os.path.join(work, f"{name}_steps"))
            print(f"  {'step':<32} {'RSS after':>10} {'peak in step':>13} {'peak/weights':>13} {'s':>6}")
            for r in rows:
                print(
                    f"  {r['step']:<32} {r['VmRSS'] / mb:>8.0f}MB {r['VmHWM'] / mb:>11.0f}MB "
                    f"{r['VmHWM'] / weights:>12.2f}x {r['seconds']:>6.1f}"
                )
            os.remove(onnx_path)
    finally:
        if not args.keep and not args.dir:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
